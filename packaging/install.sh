#!/bin/sh
# Installs libwsbroker, its headers, a pkg-config file and a CMake package.
#
#   packaging/install.sh [--prefix DIR] [--destdir DIR] [--libdir NAME] [--build DIR]
#
# --prefix   where the files will live (default /usr/local); written into wsbroker.pc.
# --destdir  staging root prepended to every path (packagers' DESTDIR; default none).
# --libdir   library directory under the prefix (default lib).
# --build    where cargo left libwsbroker.so/.a (default target/release).
#
# Layout under PREFIX:
#   LIBDIR/libwsbroker.so (+ the SONAME link and the real file if the library has a SONAME)
#   LIBDIR/libwsbroker.a
#   LIBDIR/pkgconfig/wsbroker.pc         (shared: -lwsbroker)
#   LIBDIR/pkgconfig/wsbroker-static.pc  (the archive by path, with its system libraries)
#   LIBDIR/cmake/wsbroker/wsbrokerConfig.cmake, wsbrokerConfigVersion.cmake
#   include/wsbroker.h
#   include/wsbroker/wsbroker.hpp, include/wsbroker/compat/*.hpp
set -eu

cd "$(dirname "$0")/.."
prefix=/usr/local
destdir=
libdir=lib
build=target/release
while [ $# -gt 0 ]; do
    case $1 in
    --prefix) prefix=$2; shift 2 ;;
    --destdir) destdir=$2; shift 2 ;;
    --libdir) libdir=$2; shift 2 ;;
    --build) build=$2; shift 2 ;;
    *) echo "install.sh: unknown argument $1" >&2; exit 2 ;;
    esac
done
case $prefix in
/*) ;;
*) echo "install.sh: --prefix must be absolute (got $prefix)" >&2; exit 2 ;;
esac
case $libdir in
/* | *..*) echo "install.sh: --libdir is a relative name under the prefix (got $libdir)" >&2; exit 2 ;;
esac
for f in "$build/libwsbroker.so" "$build/libwsbroker.a" include/wsbroker.h; do
    [ -f "$f" ] || { echo "install.sh: $f is missing (cargo build --release --lib)" >&2; exit 1; }
done

# The version comes from the header the library was generated with.
macro() { sed -n "s/^#define $1 \\([0-9]*\\)\$/\\1/p" include/wsbroker.h; }
major=$(macro WSB_VERSION_MAJOR)
minor=$(macro WSB_VERSION_MINOR)
patch=$(macro WSB_VERSION_PATCH)
[ -n "$major" ] && [ -n "$minor" ] && [ -n "$patch" ] || { echo "install.sh: no version in wsbroker.h" >&2; exit 1; }
version=$major.$minor.$patch

root=$destdir$prefix
lib=$root/$libdir
mkdir -p "$lib/pkgconfig" "$lib/cmake/wsbroker" "$root/include/wsbroker/compat"

# With a SONAME (e.g. libwsbroker.so.0.1) the usual chain is installed:
# libwsbroker.so -> SONAME -> libwsbroker.so.X.Y.Z. Without one, programs record
# "libwsbroker.so" itself, so that is the only file.
soname=$(objdump -p "$build/libwsbroker.so" 2>/dev/null | awk '$1 == "SONAME" { print $2 }')
if [ -n "$soname" ]; then
    real=libwsbroker.so.$version
    install -m 755 "$build/libwsbroker.so" "$lib/$real"
    [ "$soname" = "$real" ] || ln -sfn "$real" "$lib/$soname"
    ln -sfn "$soname" "$lib/libwsbroker.so"
    shared_file=$real
    soname_property="IMPORTED_SONAME \"$soname\""
else
    install -m 755 "$build/libwsbroker.so" "$lib/libwsbroker.so"
    shared_file=libwsbroker.so
    # Linked by path, a library without SONAME would be recorded by its full path.
    soname_property="IMPORTED_NO_SONAME TRUE"
fi
install -m 644 "$build/libwsbroker.a" "$lib/libwsbroker.a"

install -m 644 include/wsbroker.h "$root/include/wsbroker.h"
install -m 644 bindings/cpp/wsbroker.hpp "$root/include/wsbroker/wsbroker.hpp"
for h in bindings/cpp/compat/*.hpp; do
    install -m 644 "$h" "$root/include/wsbroker/compat/$(basename "$h")"
done

# From LIBDIR/cmake/wsbroker back to the prefix: one ".." per path component.
rel=../..
IFS=/
for _ in $libdir; do rel=$rel/..; done
unset IFS

subst() {
    sed -e "s|@PREFIX@|$prefix|g" -e "s|@LIBDIR@|$libdir|g" -e "s|@VERSION@|$version|g" \
        -e "s|@VERSION_MAJOR@|$major|g" -e "s|@VERSION_MINOR@|$minor|g" -e "s|@REL_PREFIX@|$rel|g" \
        -e "s|@SHARED_FILE@|$shared_file|g" -e "s|@SONAME_PROPERTY@|$soname_property|g" \
        -e "s|@SIZEOF_VOID_P@|$(getconf LONG_BIT | awk '{ print $1 / 8 }')|g" "$1" >"$2"
    chmod 644 "$2"
}
subst pkgconfig/wsbroker.pc.in "$lib/pkgconfig/wsbroker.pc"
subst pkgconfig/wsbroker-static.pc.in "$lib/pkgconfig/wsbroker-static.pc"
subst cmake/wsbrokerConfig.cmake.in "$lib/cmake/wsbroker/wsbrokerConfig.cmake"
subst cmake/wsbrokerConfigVersion.cmake.in "$lib/cmake/wsbroker/wsbrokerConfigVersion.cmake"
echo "installed wsbroker $version into $root"
