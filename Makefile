# kong-client-tls: the front door. `make run` shows the demo, `make test` proves it.
CARGO   ?= cargo
CC      ?= cc
CXX     ?= g++
PREFIX  ?= /usr/local
DESTDIR ?=
LIBDIR  ?= $(PREFIX)/lib
INCDIR  ?= $(PREFIX)/include
LUADIR  ?= $(PREFIX)/share/lua/5.1

# CARGO_TARGET_DIR is honoured, so the OpenSSL matrix can keep one build per line.
TARGET_DIR := $(or $(CARGO_TARGET_DIR),target)
RELEASE   := $(TARGET_DIR)/release
SO        := $(RELEASE)/libkong_client_tls.so
STATICLIB := $(RELEASE)/libkong_client_tls.a
HEADER    := include/kong_client_tls.h
CFLAGS_TEST := -std=c99 -Wall -Wextra -Werror -O1 -g -Iinclude
LDLIBS_TEST := -lssl -lcrypto -lgcc_s -lutil -lrt -lpthread -lm -ldl -lc
# The OpenSSL matrix (tests/openssl/matrix.sh) builds the C tests against another
# OpenSSL's headers (OPENSSL_BUILD_PREFIX) and/or runs them with another libssl
# (OPENSSL_RUN_PREFIX, through LD_LIBRARY_PATH). Both empty: the system's.
OPENSSL_BUILD_PREFIX ?=
OPENSSL_RUN_PREFIX ?=
ifneq ($(OPENSSL_BUILD_PREFIX),)
CFLAGS_TEST += -I$(OPENSSL_BUILD_PREFIX)/include
LDLIBS_TEST := -L$(OPENSSL_BUILD_PREFIX)/lib $(LDLIBS_TEST)
endif
CTEST_ENV := $(if $(OPENSSL_RUN_PREFIX),env LD_LIBRARY_PATH=$(OPENSSL_RUN_PREFIX)/lib)

# Debian packages the build, the tests and the demo need.
APT_PACKAGES := gcc g++ make perl pkg-config libssl-dev openssl curl valgrind python3 \
                nginx libnginx-mod-http-lua lua-resty-core lua-check debootstrap shellcheck

.PHONY: all build deps test test-rust test-c test-abi test-openssl test-distros test-matrix \
        platforms lint header install uninstall clean run bench fuzz
FUZZ_SECONDS ?= 60

all: build

build:
	$(CARGO) build --release --lib

deps:
	@missing=""; for p in $(APT_PACKAGES); do \
	  dpkg-query -W -f='$${Status}' $$p 2>/dev/null | grep -q "ok installed" || missing="$$missing $$p"; \
	done; \
	if [ -n "$$missing" ]; then \
	  echo "installing:$$missing"; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $$missing; \
	fi

# The host's stack (Debian 12: OpenSSL 3.0, nginx 1.22), then the LTS OpenSSL 3.5 swapped
# in under the same binaries, then Debian 13's nginx 1.26 / OpenSSL 3.5 in a debootstrap
# root. `make test-matrix` runs every OpenSSL line and distribution (CI does).
test: deps
	$(MAKE) -j3 test-prereqs
	$(MAKE) test-rust
	$(MAKE) test-c
	$(MAKE) test-abi
	$(MAKE) test-openssl OPENSSL_LINES=3.5 MATRIX_MODES=swap
	$(MAKE) test-distros DISTROS=trixie

# What `make test` needs beyond the host, made side by side with the library (`-j3`): the
# first time, OpenSSL 3.5 compiles while debootstrap downloads Debian 13; later, both are
# cached outside the clone and this takes no time.
.PHONY: test-prereqs openssl-lts root-trixie
test-prereqs: build openssl-lts root-trixie
openssl-lts:
	@tests/openssl/build.sh 3.5 >/dev/null
root-trixie:
	@tests/distro/make-root.sh trixie >/dev/null

# The OpenSSL matrix (tests/openssl/matrix.sh): each line built once from the openssl-src
# crate's source into ~/.cache/kong-client-tls (KCT_CACHE), then the in-process suites.
OPENSSL_LINES ?= all
MATRIX_MODES ?= swap build
MATRIX_DIR := $(TARGET_DIR)/matrix
test-openssl: build
	@mkdir -p $(MATRIX_DIR)
	MATRIX_MODES="$(MATRIX_MODES)" KCT_MATRIX_OUT=$(CURDIR)/$(MATRIX_DIR)/openssl.tsv \
	  tests/openssl/matrix.sh $(OPENSSL_LINES)

# The real-nginx suites on Debian's nginx of each distribution (tests/distro/run.sh), with
# the library built here; `host` is this machine's nginx.
DISTROS ?= host trixie sid
test-distros: build
	@mkdir -p $(MATRIX_DIR)
	@rm -f $(MATRIX_DIR)/nginx.tsv
	@rc=0; for d in $(DISTROS); do \
	  KCT_MATRIX_OUT=$(CURDIR)/$(MATRIX_DIR)/nginx.tsv tests/distro/run.sh $$d || rc=1; \
	done; exit $$rc

# Everything: every OpenSSL line both ways, the three distributions, and the platform
# table the README would get from it (target/matrix/platforms.md). The last line counts
# the suite runs ("matrix: N passed, M failed"; a suite counts as passed only when it ran
# tests and none failed).
test-matrix: deps build
	@rc=0; \
	$(MAKE) test-openssl OPENSSL_LINES=all || rc=1; \
	$(MAKE) test-distros DISTROS="host trixie sid" || rc=1; \
	python3 tests/matrix/platforms.py $(MATRIX_DIR) > $(MATRIX_DIR)/platforms.md; \
	cat $(MATRIX_DIR)/platforms.md; \
	awk -F'\t' '$$(NF-1) > 0 && $$NF == 0 { p++ } !($$(NF-1) > 0 && $$NF == 0) { f++ } \
	  END { printf "matrix: %d passed, %d failed\n", p, f }' \
	  $(MATRIX_DIR)/openssl.tsv $(MATRIX_DIR)/nginx.tsv; exit $$rc

# Runs the whole matrix and writes its table into README.md ("Supported platforms").
platforms: test-matrix
	python3 tests/matrix/platforms.py $(MATRIX_DIR) README.md

# The shared library exports only our API, defines no OpenSSL symbol (no second copy of
# OpenSSL inside it) and binds the system libssl.so.3 dynamically.
test-abi: build
	@nm -D --defined-only $(SO) | awk '{print $$3}' | grep -v '^_' > $(RELEASE)/exports.txt
	@if grep -Ev '^kong_client_tls_' $(RELEASE)/exports.txt; then echo "unexpected exports above"; exit 1; fi
	@if nm -D --defined-only $(SO) | grep -E ' (SSL|X509|EVP|CRYPTO)_'; then echo "OpenSSL symbols defined in $(SO)"; exit 1; fi
	@ldd $(SO) | grep -q 'libssl.so.3 =>' || { echo "$(SO) does not link libssl.so.3"; exit 1; }
	@echo "abi: $$(wc -l < $(RELEASE)/exports.txt) kong_client_tls_* exports, no OpenSSL definitions, links libssl.so.3"

test-rust:
	$(CARGO) test --release --all-targets

# C programs against the header and the static library, then again under valgrind.
# The header must also compile on its own as C99 and as C++.
CTEST_DIR ?= $(RELEASE)/ctests
test-c: build
	@mkdir -p $(CTEST_DIR)
	$(CC) -std=c99 -pedantic $(filter-out -std=c99,$(CFLAGS_TEST)) -c tests/c/header_compiles.c -o $(CTEST_DIR)/header_c.o
	$(CXX) -x c++ -std=c++11 -Wall -Wextra -Werror -Iinclude -c tests/c/header_compiles.c -o $(CTEST_DIR)/header_cxx.o
	@rm -rf $(CTEST_DIR)/pki && tests/c/make-pki.sh $(CTEST_DIR)/pki
	$(CC) $(CFLAGS_TEST) -shared -fPIC tests/c/fake_openssl_version.c -o $(CTEST_DIR)/fake_openssl_version.so
	@set -e; pass=0; fail=0; for src in tests/c/test_*.c; do \
	  bin=$(CTEST_DIR)/$$(basename $$src .c); \
	  $(CC) $(CFLAGS_TEST) $$src -o $$bin $(STATICLIB) $(LDLIBS_TEST); \
	  if $(CTEST_ENV) $$bin $(CTEST_DIR)/pki && \
	     $(CTEST_ENV) valgrind -q --error-exitcode=1 --leak-check=full --errors-for-leak-kinds=definite $$bin $(CTEST_DIR)/pki; \
	  then pass=$$((pass+1)); else echo "FAILED: $$src"; fail=$$((fail+1)); fi; \
	done; \
	echo "c tests: $$pass passed, $$fail failed"; test $$fail -eq 0

lint:
	$(CARGO) fmt --check
	$(CARGO) clippy --release --all-targets -- -D warnings
	$(CARGO) test --release --test header
	luacheck --no-color lua/ examples/ tests/nginx/
	shellcheck tests/openssl/*.sh tests/distro/*.sh

# Rewrites the committed header from the Rust sources.
header:
	KONG_CLIENT_TLS_WRITE_HEADER=1 $(CARGO) build --release --lib

install: build
	install -d $(DESTDIR)$(LIBDIR) $(DESTDIR)$(INCDIR) $(DESTDIR)$(LUADIR)
	install -m 0755 $(SO) $(DESTDIR)$(LIBDIR)/libkong_client_tls.so
	install -m 0644 $(STATICLIB) $(DESTDIR)$(LIBDIR)/libkong_client_tls.a
	install -m 0644 $(HEADER) $(DESTDIR)$(INCDIR)/kong_client_tls.h
	install -m 0644 lua/kong_client_tls.lua $(DESTDIR)$(LUADIR)/kong_client_tls.lua

uninstall:
	rm -f $(DESTDIR)$(LIBDIR)/libkong_client_tls.so $(DESTDIR)$(LIBDIR)/libkong_client_tls.a \
	      $(DESTDIR)$(INCDIR)/kong_client_tls.h $(DESTDIR)$(LUADIR)/kong_client_tls.lua

# The demo: stock nginx on 127.0.0.1 with examples/nginx.conf.template, scripted requests,
# then serving until Ctrl-C (DEMO_ONCE=1: exit after the script). See examples/demo.sh.
run: deps build demo-certs
	DEMO_ONCE=$(DEMO_ONCE) CARGO=$(CARGO) examples/demo.sh

# The demo's throw-away certificates, in target/demo/certs (kept once made).
.PHONY: demo-certs
demo-certs:
	examples/demo-certs.sh target/demo/certs

# Fuzzes the ClientHello parser/rewriter for FUZZ_SECONDS (libFuzzer via cargo-fuzz; the
# stable toolchain accepts its sanitizer flags with RUSTC_BOOTSTRAP). New inputs go to
# fuzz/target/corpus; the committed seeds in fuzz/corpus/client_hello stay as they are.
fuzz:
	@command -v cargo-fuzz >/dev/null || $(CARGO) install cargo-fuzz --locked
	@mkdir -p fuzz/target/corpus
	cd fuzz && RUSTC_BOOTSTRAP=1 $(CARGO) fuzz run client_hello target/corpus corpus/client_hello \
	  -- -max_total_time=$(FUZZ_SECONDS)

# Benchmarks (issue 5): runs every group, writes BENCHMARKS.md, prints the ratios.
# Not part of `make test`. KCT_BENCH_SCALE=0.3 gives a quick, rougher run.
BENCH_DIR := target/bench
BENCH_OPENSSL_LINES ?= 3.5
bench: deps build
	@rm -rf $(BENCH_DIR) && mkdir -p $(BENCH_DIR)
	KCT_BENCH_DIR=$(CURDIR)/$(BENCH_DIR) $(CARGO) bench --bench calls
	@# Group 1 again on the LTS line, with its libssl.so.3 swapped in (issue 8).
	set -e; for line in $(BENCH_OPENSSL_LINES); do \
	  prefix=$$(tests/openssl/build.sh $$line); dir=$(CURDIR)/$(BENCH_DIR)/openssl-$$(basename $$prefix); \
	  mkdir -p $$dir; \
	  LD_LIBRARY_PATH=$$prefix/lib KCT_BENCH_DIR=$$dir KCT_BENCH_SKIP=2,4 $(CARGO) bench --bench calls; \
	done
	KCT_BENCH_DIR=$(CURDIR)/$(BENCH_DIR) $(CARGO) bench --bench nginx
	sh benches/report.sh $(BENCH_DIR) > BENCHMARKS.md
	@echo "== wrote BENCHMARKS.md; summary:"; sed -n '/^## Summary/,/^## Group 1/p' BENCHMARKS.md | grep '^|'

clean:
	$(CARGO) clean

# Soak (issue 9): real nginx with every API function under mixed load from several client
# processes, 20 reloads, a binary upgrade and a killed worker (tests/soak.rs). `make soak`:
# SOAK_CONNECTIONS (100000) on the host, then in the Debian 13 root, writes RELIABILITY.md.
# `make soak-ci`: 20000 on the host, no report (CI runs it after `make test`).
.PHONY: soak soak-ci
SOAK_CONNECTIONS ?= 100000
SOAK_STACKS ?= host trixie
SOAK_CI_STACKS ?= host
soak: deps build
	SOAK_CONNECTIONS=$(SOAK_CONNECTIONS) SOAK_REPORT=RELIABILITY.md tests/soak/run.sh $(SOAK_STACKS)
soak-ci: deps build
	SOAK_CONNECTIONS=20000 tests/soak/run.sh $(SOAK_CI_STACKS)
