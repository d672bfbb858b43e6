# wsbroker — `make` builds the release library and the C examples,
# `make test` runs every test, `make bench` the benchmark.

CARGO   ?= cargo
CC      ?= gcc
BUILD   := build
LIBDIR  := target/release
CFLAGS  := -std=c11 -Wall -Wextra -Werror -O2 -g -Iinclude
SAN     := -fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=undefined
LDLIBS  := -lpthread -ldl -lm
VENV    := .venv
PY      := $(VENV)/bin/python

EXAMPLES := echo_server echo_poll
BINS     := $(addprefix $(BUILD)/,$(EXAMPLES))
ASAN     := $(addprefix $(BUILD)/asan/,$(EXAMPLES))
EX_DEPS  := include/wsbroker.h examples-c/common.h $(LIBDIR)/libwsbroker.so

.PHONY: all lib examples test test-rust test-c lint header bench clean run-echo $(LIBDIR)/libwsbroker.so

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

# Regenerates include/wsbroker.h from src/ffi (commit the result).
header:
	WSB_UPDATE_HEADER=1 $(CARGO) build --lib

lint:
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --all-targets -- -D warnings

test-rust:
	$(CARGO) test

test: lint test-rust examples
	$(PY) -m pytest -q tests/interop tests/conformance

bench: examples
	bash bench/run.sh

clean:
	$(CARGO) clean
	rm -rf $(BUILD)
