#!/usr/bin/env bash
# C++ binding tests: every header function is used by wsbroker.hpp (api_coverage.py), every
# header compiles alone, wsbroker.hpp links from two translation units, and the test programs
# run under AddressSanitizer + UBSan against real WebSocket clients (drive.py) or, for wsb::Client
# and wsb::AppWebsocketClient, real WebSocket servers (client_peer.py); the AppWebsocket client,
# app service and broker test each other and wsb::Client (hpp_appws_broker, with certificates
# from tests/pki.sh). Ends with "N passed, M failed"; exits 1 if anything failed.
#
# Environment: WSB_LIBDIR (default target/release, holding libwsbroker.a), WSB_BUILD_DIR
# (default build/cpp), PY (default .venv/bin/python), CC, CXX. Run from the repository root.
set -uo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/../.."
LIBDIR=${WSB_LIBDIR:-target/release}
OUT=${WSB_BUILD_DIR:-build/cpp}
PY=${PY:-.venv/bin/python}
CC=${CC:-gcc}
CXX=${CXX:-g++}

WARN="-Wall -Wextra -Wpedantic -Werror"
CXXWARN="$WARN -Wconversion -Wshadow -Wold-style-cast -Wnon-virtual-dtor"
SAN="-fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=undefined"
INC="-Iinclude -Ibindings/cpp"
LDLIBS="$LIBDIR/libwsbroker.a -lpthread -ldl -lm"
export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1:abort_on_error=0}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1}

passed=0
failed=0
pass() { passed=$((passed + 1)); echo "PASS $1"; }
fail() { failed=$((failed + 1)); echo "FAIL $1"; }

# run NAME CMD...: one test; its output is shown only when it fails.
run() {
    local name=$1 log
    shift
    if log=$("$@" 2>&1); then
        pass "$name"
    else
        fail "$name"
        printf '%s\n' "$log" | tail -60
    fi
}

# compile_alone NAME LANG STD FLAGS HEADER: the header as the only include of a source file.
compile_alone() {
    local name=$1 lang=$2 std=$3 flags=$4 header=$5 compiler=$CXX
    [[ $lang == c ]] && compiler=$CC
    run "$name" bash -c "printf '#include \"%s\"\n' '$header' | $compiler -x $lang -std=$std $flags $INC -fsyntax-only -"
}

mkdir -p "$OUT"
run "every header function is wrapped by wsbroker.hpp" "$PY" tests/cpp/api_coverage.py
if [[ ! -f $LIBDIR/libwsbroker.a ]]; then
    fail "library: $LIBDIR/libwsbroker.a is missing (cargo build --release --lib)"
    echo "$passed passed, $failed failed"
    exit 1
fi

compile_alone "wsbroker.h as C99" c c99 "$WARN" wsbroker.h
compile_alone "wsbroker.h as C11" c c11 "$WARN" wsbroker.h
compile_alone "wsbroker.h as C++17" c++ c++17 "$CXXWARN" wsbroker.h
for h in wsbroker.hpp compat/barracuda_wss.hpp compat/achex_client.hpp compat/appwebsocket_client.hpp; do
    compile_alone "$h as C++17" c++ c++17 "$CXXWARN" "$h"
    compile_alone "$h as C++20" c++ c++20 "$CXXWARN" "$h"
    compile_alone "$h with -fno-exceptions" c++ c++17 "$CXXWARN -fno-exceptions" "$h"
    compile_alone "$h with WSB_NO_EXCEPTIONS" c++ c++17 "$CXXWARN -DWSB_NO_EXCEPTIONS" "$h"
done

# build NAME SOURCES...: a test program, ASan + UBSan, statically linked.
build() {
    local name=$1
    shift
    run "build $name" $CXX -std=c++17 $CXXWARN -g -O1 $SAN $INC "$@" -o "$OUT/$name" $LDLIBS
}

# selfcheck NAME CMD...: a self-checking program; status 0 and no sanitizer report.
selfcheck() {
    local name=$1 log rc
    shift
    log=$("$@" 2>&1)
    rc=$?
    if [[ $rc -eq 0 ]] && ! grep -qE "AddressSanitizer|LeakSanitizer|runtime error:" <<<"$log"; then
        pass "$name"
    else
        fail "$name (status $rc)"
        printf '%s\n' "$log" | tail -60
    fi
}

# One binary from two translation units that both include every C++ header.
build hpp_test tests/cpp/hpp_main.cpp tests/cpp/hpp_second.cpp
build hpp_client tests/cpp/hpp_client.cpp
build hpp_appws_broker tests/cpp/hpp_appws_broker.cpp
build barracuda_chat tests/cpp/barracuda_chat.cpp
build barracuda_close tests/cpp/barracuda_close.cpp
build compat_clients tests/cpp/compat_clients.cpp

if [[ -x $OUT/hpp_test ]]; then
    selfcheck "hpp_test unit" "$OUT/hpp_test" unit
    run "drive hpp-callback" "$PY" tests/cpp/drive.py hpp-callback "$OUT/hpp_test" callback
    run "drive hpp-queue" "$PY" tests/cpp/drive.py hpp-queue "$OUT/hpp_test" queue
fi
[[ -x $OUT/hpp_client ]] && run "hpp_client against websockets" "$PY" tests/cpp/client_peer.py "$OUT/hpp_client"
if [[ -x $OUT/hpp_appws_broker ]]; then
    rm -rf "$OUT/pki"
    run "test certificates (tests/pki.sh)" bash tests/pki.sh "$OUT/pki"
    selfcheck "AppWebsocketClient + AppService + Broker" "$OUT/hpp_appws_broker" "$OUT/pki"
fi
[[ -x $OUT/barracuda_chat ]] && run "drive barracuda-chat" "$PY" tests/cpp/drive.py barracuda-chat "$OUT/barracuda_chat"
[[ -x $OUT/compat_clients ]] && selfcheck "achex + appwebsocket shims" "$OUT/compat_clients"
[[ -x $OUT/barracuda_close ]] && run "drive barracuda-close" "$PY" tests/cpp/drive.py barracuda-close "$OUT/barracuda_close"

echo "$passed passed, $failed failed"
[[ $failed -eq 0 ]]
