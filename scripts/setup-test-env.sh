#!/usr/bin/env bash
# Install what the test suites need beyond the Rust toolchain:
#   Debian packages  valgrind, mono (mcs + runtime), chromium, redis-server, hyperfine
#   .venv/           Python venv with requirements-test.txt (websockets, pytest, kosoku)
#   node_modules/    the `ws` package pinned in package.json / package-lock.json
# Safe to re-run: each step checks first and does nothing when already satisfied,
# so a warm machine pays a few hundred milliseconds.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
export DEBIAN_FRONTEND=noninteractive

log() { printf 'setup-test-env: %s\n' "$*" >&2; }

# ---------------------------------------------------------------- apt
# command name -> Debian package that provides it
declare -A APT_FOR=(
    [valgrind]=valgrind
    [mcs]=mono-mcs
    [mono]=mono-runtime
    [chromium]=chromium
    [redis-server]=redis-server
    [hyperfine]=hyperfine
    [cmake]=cmake
    [pkg-config]=pkg-config
    [openssl]=openssl
)
missing=()
for cmd in "${!APT_FOR[@]}"; do
    command -v "$cmd" >/dev/null 2>&1 || missing+=("${APT_FOR[$cmd]}")
done
# The venv module is split out on Debian's own python3; probe it directly.
PYTHON=${PYTHON:-python3}
if ! "$PYTHON" -c 'import venv, ensurepip' >/dev/null 2>&1; then
    missing+=(python3-venv)
fi
if ((${#missing[@]})); then
    sudo=()
    [[ $(id -u) -eq 0 ]] || sudo=(sudo)
    log "installing: ${missing[*]}"
    "${sudo[@]}" apt-get update -qq
    "${sudo[@]}" apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

# ---------------------------------------------------------------- python venv
req_stamp=.venv/.requirements-test.sha256
want=$(sha256sum requirements-test.txt | cut -d' ' -f1)
if [[ ! -x .venv/bin/python ]]; then
    log "creating .venv"
    "$PYTHON" -m venv .venv
fi
if [[ ! -f $req_stamp || $(cat "$req_stamp") != "$want" ]]; then
    log "installing requirements-test.txt into .venv"
    .venv/bin/python -m pip install --quiet --disable-pip-version-check -r requirements-test.txt
    printf '%s\n' "$want" >"$req_stamp"
fi

# ---------------------------------------------------------------- node
if ! command -v node >/dev/null 2>&1 || ! command -v npm >/dev/null 2>&1; then
    log "node and npm are required (Node 20 ships with this machine image)"
    exit 1
fi
lock_stamp=node_modules/.package-lock.sha256
want=$(cat package.json package-lock.json | sha256sum | cut -d' ' -f1)
if [[ ! -f $lock_stamp || $(cat "$lock_stamp") != "$want" || ! -d node_modules/ws ]]; then
    log "npm ci"
    npm ci --no-audit --no-fund --loglevel=error >/dev/null
    printf '%s\n' "$want" >"$lock_stamp"
fi

log "ok"
