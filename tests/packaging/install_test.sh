#!/usr/bin/env bash
# Installs into a temporary prefix with packaging/install.sh, then builds examples-c/echo_server.c
# (and a C++ program) against the installed tree only: with pkg-config (shared and static) and
# with CMake (wsbroker::wsbroker, wsbroker::static). Each program then runs briefly: an echo
# through a real WebSocket client. Ends with "N passed, M failed"; exits 1 if anything failed.
#
# Environment: WSB_LIBDIR (default target/release), PY (default .venv/bin/python), CC, CXX.
# Needs pkg-config and cmake. Run from anywhere.
set -uo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/../.."
REPO=$PWD
LIBDIR=${WSB_LIBDIR:-target/release}
PY=${PY:-.venv/bin/python}
CC=${CC:-gcc}
CXX=${CXX:-g++}
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

run "install" sh packaging/install.sh --prefix "$PREFIX" --destdir "" --build "$LIBDIR"
((failed)) && finish

# The sources are copied out so nothing from the repository's include/ can leak in.
SRC=$TMP/src
mkdir -p "$SRC" "$TMP/out"
cp examples-c/echo_server.c examples-c/common.h "$SRC/"

export PKG_CONFIG_PATH=$PREFIX/lib/pkgconfig
run "pkg-config --modversion" bash -c '[[ $(pkg-config --modversion wsbroker) == 0.* ]]'
run "pkg-config shared build" bash -c "$CC -std=c11 -Wall -Wextra -Werror '$SRC/echo_server.c' -o '$TMP/out/echo_pc' \
    \$(pkg-config --cflags --libs wsbroker) -Wl,-rpath,\$(pkg-config --variable=libdir wsbroker)"
run "pkg-config shared binary uses the installed library" bash -c "ldd '$TMP/out/echo_pc' | grep -q '$PREFIX/lib/libwsbroker.so'"
run "pkg-config static build" bash -c "$CC -std=c11 -Wall -Wextra -Werror \$(pkg-config --cflags wsbroker) '$SRC/echo_server.c' \
    -o '$TMP/out/echo_pc_static' \$(pkg-config --variable=libdir wsbroker)/libwsbroker.a \$(pkg-config --static --libs-only-l wsbroker | sed 's/-lwsbroker//')"
run "pkg-config C++ build" bash -c "$CXX -std=c++17 -Wall -Wextra -Werror '$REPO/tests/packaging/consumer/hello.cpp' -o '$TMP/out/hello_pc' \
    \$(pkg-config --cflags --libs wsbroker) -Wl,-rpath,\$(pkg-config --variable=libdir wsbroker)"

run "cmake configure" cmake -S tests/packaging/consumer -B "$TMP/cmake" -DCMAKE_PREFIX_PATH="$PREFIX" \
    -DWSB_EXAMPLES_DIR="$SRC" -DCMAKE_C_COMPILER="$CC" -DCMAKE_CXX_COMPILER="$CXX" -DCMAKE_BUILD_TYPE=Release
run "cmake build" cmake --build "$TMP/cmake"
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
run "run cmake hello_cpp" "$TMP/cmake/hello_cpp"

finish
