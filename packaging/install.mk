# Included by the top-level Makefile (`include packaging/install.mk`), which defines LIBDIR
# (where cargo leaves the library) and the `lib` target.
#   make install [PREFIX=/usr/local] [DESTDIR=staging] [INSTALL_LIBDIR=lib]
# See packaging/install.sh for the layout.

PREFIX         ?= /usr/local
INSTALL_LIBDIR ?= lib

.PHONY: install

install: lib
	sh packaging/install.sh --prefix "$(PREFIX)" --destdir "$(DESTDIR)" --libdir "$(INSTALL_LIBDIR)" --build "$(LIBDIR)"
