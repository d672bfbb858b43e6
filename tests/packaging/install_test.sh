#!/usr/bin/env bash
# Installs into a temporary prefix with `make install PREFIX=...` (the documented command), then
# builds examples-c/echo_server.c (and a C++ program) against the installed tree only: with
# pkg-config (wsbroker: shared; wsbroker-static: the archive) and with CMake (wsbroker::wsbroker,
# wsbroker::static). Static binaries must not need libwsbroker.so (ldd). Each program then runs
# briefly: an echo through a real WebSocket client. A staged install (DESTDIR) is checked too.
# Ends with "N passed, M failed"; exits 1 if anything failed.
#
# Environment: WSB_LIBDIR (default target/release), PY (default .venv/bin/python), CC, CXX, MAKE.
# Needs pkg-config and cmake. Run from anywhere.
set -uo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/../.."
REPO=$PWD
LIBDIR=${WSB_LIBDIR:-target/release}
PY=${PY:-.venv/bin/python}
CC=${CC:-gcc}
CXX=${CXX:-g++}
MAKE=${MAKE:-make}
TMP=$(mktemp -d)
trap 'rm -rf "$TMP"' EXIT
PREFIX=$TMP/prefix

passed=0
failed=0
run() {
    local name=$1 log
    shift
    if log=$("$@" 2>&1); then
        passed=$((passed + 1))
        echo "PASS $name"
    else
        failed=$((failed + 1))
        echo "FAIL $name"
        printf '%s\n' "$log" | tail -40
    fi
}
finish() {
    echo "$passed passed, $failed failed"
    [[ $failed -eq 0 ]]
    exit
}

for tool in pkg-config cmake; do
    command -v $tool >/dev/null || run "$tool is installed" false
done
((failed)) && finish

# DESTDIR and MAKEFLAGS from an enclosing make must not leak into the installs below.
run "make install PREFIX=..." env -u DESTDIR -u MAKEFLAGS -u MAKELEVEL "$MAKE" --no-print-directory -C "$REPO" \
    install PREFIX="$PREFIX" LIBDIR="$LIBDIR"
((failed)) && finish

# A staged install: files under DESTDIR, paths in the pkg-config files without it.
STAGE=$TMP/stage
run "make install DESTDIR=... stages under DESTDIR" bash -c "env -u MAKEFLAGS -u MAKELEVEL '$MAKE' --no-print-directory -C '$REPO' \
    install PREFIX=/opt/wsb DESTDIR='$STAGE' LIBDIR='$LIBDIR' >/dev/null \
    && test -f '$STAGE/opt/wsb/lib/libwsbroker.a' && test -f '$STAGE/opt/wsb/include/wsbroker/compat/barracuda_wss.hpp' \
    && grep -qx 'prefix=/opt/wsb' '$STAGE/opt/wsb/lib/pkgconfig/wsbroker.pc' \
    && grep -qx 'prefix=/opt/wsb' '$STAGE/opt/wsb/lib/pkgconfig/wsbroker-static.pc' && test ! -e /opt/wsb/lib/libwsbroker.a"

# The sources are copied out so nothing from the repository's include/ can leak in.
SRC=$TMP/src
mkdir -p "$SRC" "$TMP/out"
cp examples-c/echo_server.c examples-c/common.h "$SRC/"

export PKG_CONFIG_PATH=$PREFIX/lib/pkgconfig
run "pkg-config --modversion" bash -c '[[ $(pkg-config --modversion wsbroker) == 0.* ]]'
run "pkg-config shared build" bash -c "$CC -std=c11 -Wall -Wextra -Werror '$SRC/echo_server.c' -o '$TMP/out/echo_pc' \
    \$(pkg-config --cflags --libs wsbroker) -Wl,-rpath,\$(pkg-config --variable=libdir wsbroker)"
run "pkg-config shared binary uses the installed library" bash -c "ldd '$TMP/out/echo_pc' | grep -q '$PREFIX/lib/libwsbroker.so'"
# The documented static recipe, exactly: the shared library sits next to the archive.
run "pkg-config static build (wsbroker-static)" bash -c "$CC -std=c11 -Wall -Wextra -Werror '$SRC/echo_server.c' \
    -o '$TMP/out/echo_pc_static' \$(pkg-config --cflags --libs wsbroker-static)"
run "pkg-config static binary does not need libwsbroker.so" bash -c "ldd '$TMP/out/echo_pc_static' && ! ldd '$TMP/out/echo_pc_static' | grep -q libwsbroker"
run "pkg-config C++ static build (wsbroker-static)" bash -c "$CXX -std=c++17 -Wall -Wextra -Werror '$REPO/tests/packaging/consumer/hello.cpp' \
    -o '$TMP/out/hello_pc_static' \$(pkg-config --cflags --libs wsbroker-static) && ! ldd '$TMP/out/hello_pc_static' | grep -q libwsbroker"
run "pkg-config C++ build" bash -c "$CXX -std=c++17 -Wall -Wextra -Werror '$REPO/tests/packaging/consumer/hello.cpp' -o '$TMP/out/hello_pc' \
    \$(pkg-config --cflags --libs wsbroker) -Wl,-rpath,\$(pkg-config --variable=libdir wsbroker)"

run "cmake configure" cmake -S tests/packaging/consumer -B "$TMP/cmake" -DCMAKE_PREFIX_PATH="$PREFIX" \
    -DWSB_EXAMPLES_DIR="$SRC" -DCMAKE_C_COMPILER="$CC" -DCMAKE_CXX_COMPILER="$CXX" -DCMAKE_BUILD_TYPE=Release
run "cmake build" cmake --build "$TMP/cmake"
run "cmake wsbroker::static binary does not need libwsbroker.so" bash -c "ldd '$TMP/cmake/echo_static' && ! ldd '$TMP/cmake/echo_static' | grep -q libwsbroker"
run "cmake wsbroker::wsbroker binary uses the installed library" bash -c "ldd '$TMP/cmake/echo_shared' | grep -q '$PREFIX/lib/libwsbroker.so'"
# find_version REQUEST: configures a project that only calls find_package(wsbroker REQUEST).
find_version() {
    local dir
    dir=$(mktemp -d -p "$TMP")
    printf 'cmake_minimum_required(VERSION 3.16)\nproject(p C)\nfind_package(wsbroker %s REQUIRED)\n' "$1" >"$dir/CMakeLists.txt"
    cmake -S "$dir" -B "$dir/build" -DCMAKE_PREFIX_PATH="$PREFIX"
}
run "cmake finds any version" find_version ""
refuses() { ! find_version "$1"; }
run "cmake finds 0.1" find_version 0.1
run "cmake refuses a newer minor" refuses 0.99
run "cmake refuses another major" refuses 1.0

for bin in echo_pc echo_pc_static; do
    run "run $bin" "$PY" tests/packaging/echo_check.py "$TMP/out/$bin"
done
for bin in echo_shared echo_static; do
    run "run cmake $bin" "$PY" tests/packaging/echo_check.py "$TMP/cmake/$bin"
done
run "run hello_pc" "$TMP/out/hello_pc"
run "run hello_pc_static" "$TMP/out/hello_pc_static"
run "run cmake hello_cpp" "$TMP/cmake/hello_cpp"

finish
