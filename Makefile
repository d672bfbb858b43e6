# wsbroker — `make` builds the release library and the C examples,
# `make test` runs every test, `make bench` the benchmark.

CARGO   ?= cargo
CC      ?= gcc
CXX     ?= g++
BUILD   := build
LIBDIR  := target/release
CFLAGS  := -std=c11 -Wall -Wextra -Werror -O2 -g -Iinclude
SAN     := -fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=undefined
LDLIBS  := -lpthread -ldl -lm
VENV    := .venv
PY      := $(VENV)/bin/python
PYTEST  := $(PY) -m pytest -q -p no:cacheprovider

EXAMPLES := echo_server echo_poll client achex_service webtalk_backend appws_client appws_service
BINS     := $(addprefix $(BUILD)/,$(EXAMPLES))
ASAN     := $(addprefix $(BUILD)/asan/,$(EXAMPLES))
EX_DEPS  := include/wsbroker.h $(wildcard examples-c/*.h) $(LIBDIR)/libwsbroker.so

PYDIR := bindings/python
CSDIR := bindings/csharp
CSOUT := $(BUILD)/csharp
MCS   ?= mcs
MONO  ?= mono

.PHONY: all lib examples test test-rust test-interop test-python test-csharp lint header bindings \
	python-wheel bench fuzz clean run-echo $(LIBDIR)/libwsbroker.so

all: examples

lib: $(LIBDIR)/libwsbroker.so

# Cargo decides what is stale; the phony target just asks it every time.
$(LIBDIR)/libwsbroker.so:
	$(CARGO) build --release --lib

examples: $(BINS) $(ASAN)

# Dynamic linking, with an rpath so the examples run from the tree.
$(BUILD)/%: examples-c/%.c $(EX_DEPS)
	@mkdir -p $(BUILD)
	$(CC) $(CFLAGS) $< -o $@ -L$(LIBDIR) -lwsbroker -Wl,-rpath,'$$ORIGIN/../$(LIBDIR)' $(LDLIBS)

# Static linking, under AddressSanitizer + UBSan.
$(BUILD)/asan/%: examples-c/%.c $(EX_DEPS)
	@mkdir -p $(BUILD)/asan
	$(CC) $(CFLAGS) $(SAN) $< -o $@ $(LIBDIR)/libwsbroker.a $(LDLIBS)

run-echo: $(BUILD)/echo_server
	$(BUILD)/echo_server 8765

# Regenerates include/wsbroker.h from src/ffi, then the bindings' declarations (commit the results).
header:
	WSB_UPDATE_HEADER=1 $(CARGO) build --lib
	python3 scripts/gen_bindings.py
	python3 scripts/gen_api_reference.py

bindings:
	python3 scripts/gen_bindings.py

lint:
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --all-targets -- -D warnings
	python3 scripts/gen_bindings.py --check
	python3 scripts/gen_api_reference.py --check

test-rust:
	$(CARGO) test

test-interop: examples
	$(CARGO) build --release --bin wsbroker
	WSB_EXAMPLES=$(BUILD)/asan WSBROKER_BIN=$(abspath $(LIBDIR))/wsbroker $(PYTEST) tests/appws tests/interop tests/conformance tests/client_interop tests/client_conformance tests/examples tests/daemon

# ---- Python ----

python-wheel: lib
	cp $(LIBDIR)/libwsbroker.so $(PYDIR)/wsbroker/libwsbroker.so
	strip --strip-debug $(PYDIR)/wsbroker/libwsbroker.so
	$(PY) -m pip wheel --no-build-isolation --no-deps --no-index -w $(BUILD)/wheels ./$(PYDIR); \
	  status=$$?; rm -f $(PYDIR)/wsbroker/libwsbroker.so; exit $$status

test-python: lib
	WSBROKER_LIB=$(abspath $(LIBDIR))/libwsbroker.so $(PYTEST) $(PYDIR)/tests

# ---- C# ----

$(CSOUT)/Wsbroker.dll: $(wildcard $(CSDIR)/src/*.cs) $(CSDIR)/src/Wsbroker.dll.config
	@mkdir -p $(CSOUT)
	$(MCS) -target:library -unsafe -langversion:7 -warnaserror -out:$@ $(CSDIR)/src/*.cs
	cp $(CSDIR)/src/Wsbroker.dll.config $(CSOUT)/

$(CSOUT)/WsbrokerTests.exe: $(wildcard $(CSDIR)/tests/*.cs) $(CSOUT)/Wsbroker.dll
	$(MCS) -langversion:7 -warnaserror -r:$(CSOUT)/Wsbroker.dll -r:System.dll -r:System.Core.dll -out:$@ $(CSDIR)/tests/*.cs

test-csharp: lib $(CSOUT)/WsbrokerTests.exe
	cd $(CSOUT) && LD_LIBRARY_PATH=$(abspath $(LIBDIR)) $(MONO) --debug WsbrokerTests.exe

# ---- fuzzing (not part of `make test`) ----

FUZZ_SECS    ?= 60
FUZZ_CARGO   ?= cargo +nightly
FUZZ_TARGETS := $(sort $(basename $(notdir $(wildcard fuzz/fuzz_targets/*.rs))))

# Every cargo-fuzz target, one at a time, FUZZ_SECS seconds each; stops at the first crash.
fuzz:
	@command -v cargo-fuzz >/dev/null || $(CARGO) install cargo-fuzz --locked
	cd fuzz && for t in $(FUZZ_TARGETS); do \
	  echo "== $$t ($(FUZZ_SECS) s)"; \
	  $(FUZZ_CARGO) fuzz run $$t -- -max_total_time=$(FUZZ_SECS) || exit 1; \
	done

# ---- everything ----

test: lint test-rust examples test-interop test-cpp test-install test-python test-csharp

bench: examples
	$(CARGO) build --release --bin wsbroker
	bash bench/run.sh
	bash bench/client/run.sh
	bash bench/broker.sh

clean:
	$(CARGO) clean
	rm -rf $(BUILD)

# Fragments that define test-cpp, test-install and install (kept last so
# that `all` stays the default goal).
include tests/cpp/Makefile
include packaging/install.mk
