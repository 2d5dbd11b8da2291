# kong-client-tls: the front door. `make run` shows the demo, `make test` proves it.
CARGO   ?= cargo
CC      ?= cc
CXX     ?= g++
PREFIX  ?= /usr/local
DESTDIR ?=
LIBDIR  ?= $(PREFIX)/lib
INCDIR  ?= $(PREFIX)/include
LUADIR  ?= $(PREFIX)/share/lua/5.1
PKGCONFIGDIR ?= $(LIBDIR)/pkgconfig
# The libdir the .pc names, when the files are staged elsewhere (`make deb`).
PC_LIBDIR ?= $(LIBDIR)
# Run after installing to (and uninstalling from) the live system; LDCONFIG=: skips it.
LDCONFIG ?= ldconfig

# The one version (Cargo.toml's), and the ABI number of the SONAME derived from it
# (build.rs: libkong_client_tls.so.<major>; README, "Versions").
VERSION := $(shell sed -n 's/^version = "\(.*\)"$$/\1/p' Cargo.toml | head -n 1)
SOMAJOR := $(firstword $(subst ., ,$(VERSION)))
SONAME  := libkong_client_tls.so.$(SOMAJOR)

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
# -isystem, as /usr/include is: -pedantic judges our header, not OpenSSL's (whose
# sha.h uses `long long`, which C89 lacks).
CFLAGS_TEST += -isystem $(OPENSSL_BUILD_PREFIX)/include
LDLIBS_TEST := -L$(OPENSSL_BUILD_PREFIX)/lib $(LDLIBS_TEST)
endif
CTEST_ENV := $(if $(OPENSSL_RUN_PREFIX),env LD_LIBRARY_PATH=$(OPENSSL_RUN_PREFIX)/lib)

# Debian packages the build, the tests and the demo need.
APT_PACKAGES := gcc g++ make perl pkg-config libssl-dev openssl curl valgrind python3 \
                nginx libnginx-mod-http-lua lua-resty-core lua-check debootstrap shellcheck \
                luarocks dpkg-dev

.PHONY: all build deps test test-rust test-c test-abi test-openssl test-distros test-matrix \
        platforms lint header install uninstall clean run bench fuzz test-sanitizers \
        test-nginx-valgrind
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
	$(MAKE) test-packaging
	$(MAKE) test-openssl OPENSSL_LINES=3.5 MATRIX_MODES=swap
	$(MAKE) test-distros DISTROS=trixie

# What `make test` needs beyond the host, made side by side with the library (`-j3`): the
# first time, OpenSSL 3.5 compiles while debootstrap downloads Debian 13; later, both are
# cached outside the clone and this takes no time.
.PHONY: test-prereqs openssl-lts root-trixie root-bookworm
test-prereqs: build openssl-lts root-trixie root-bookworm cargo-deb
openssl-lts:
	@tests/openssl/build.sh 3.5 >/dev/null
root-trixie:
	@tests/distro/make-root.sh trixie >/dev/null
root-bookworm:
	@tests/distro/make-root.sh bookworm >/dev/null

# Each road a user installs by (tests/packaging/): the API page against the module; the C
# road (make install, pkg-config dynamic and static, examples/c-server against curl and
# openssl s_client); the rock into a local tree, served by nginx; install_pdk with
# examples/kong-plugin; then the .debs (one version everywhere, and apt in a clean Debian
# 12 root with stock nginx). Each script prints its checks; nginx and the example servers
# listen on free 127.0.0.1 ports and are stopped at exit, pass or fail.
.PHONY: test-packaging
test-packaging: build
	@python3 tests/packaging/api_doc.py
	@tests/packaging/c.sh
	@tests/packaging/rock.sh
	@tests/packaging/pdk.sh
	@$(MAKE) --no-print-directory deb CARGO_DEB_FLAGS=--fast >/dev/null
	@tests/packaging/versions.sh
	@tests/packaging/deb.sh bookworm

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
	@mkdir -p $(MATRIX_DIR) && { git rev-parse --short HEAD 2>/dev/null || echo unknown; } > $(MATRIX_DIR)/commit
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
# The header must also compile on its own as C89, C99 and C++.
CTEST_DIR ?= $(RELEASE)/ctests
test-c: build
	@mkdir -p $(CTEST_DIR)
	$(CC) -std=c89 -pedantic $(filter-out -std=c99,$(CFLAGS_TEST)) -c tests/c/header_compiles.c -o $(CTEST_DIR)/header_c89.o
	$(CC) -std=c99 -pedantic $(filter-out -std=c99,$(CFLAGS_TEST)) -c tests/c/header_compiles.c -o $(CTEST_DIR)/header_c.o
	$(CXX) -x c++ -std=c++11 $(filter-out -std=c99,$(CFLAGS_TEST)) -c tests/c/header_compiles.c -o $(CTEST_DIR)/header_cxx.o
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
	luacheck --no-color lua/ examples/ tests/nginx/ tests/packaging/
	shellcheck -x .ci/run $$(git ls-files '*.sh' 2>/dev/null || find . -name '*.sh' -not -path './target/*' -not -path './fuzz/target/*')

# Rewrites the committed header from the Rust sources.
header:
	KONG_CLIENT_TLS_WRITE_HEADER=1 $(CARGO) build --release --lib

# The shared library as libkong_client_tls.so.<version> with the SONAME link (.so.<major>)
# and the development link (.so), the static library, the header, the Lua module and the
# pkg-config file. ldconfig runs when installing to the live system (no DESTDIR).
install: build
	install -d $(DESTDIR)$(LIBDIR) $(DESTDIR)$(INCDIR) $(DESTDIR)$(LUADIR) $(DESTDIR)$(PKGCONFIGDIR)
	install -m 0755 $(SO) $(DESTDIR)$(LIBDIR)/libkong_client_tls.so.$(VERSION)
	ln -sf libkong_client_tls.so.$(VERSION) $(DESTDIR)$(LIBDIR)/$(SONAME)
	ln -sf $(SONAME) $(DESTDIR)$(LIBDIR)/libkong_client_tls.so
	install -m 0644 $(STATICLIB) $(DESTDIR)$(LIBDIR)/libkong_client_tls.a
	install -m 0644 $(HEADER) $(DESTDIR)$(INCDIR)/kong_client_tls.h
	install -m 0644 lua/kong_client_tls.lua $(DESTDIR)$(LUADIR)/kong_client_tls.lua
	sed -e 's|@PREFIX@|$(PREFIX)|' -e 's|@LIBDIR@|$(call pc_path,$(PC_LIBDIR))|' \
	    -e 's|@INCDIR@|$(call pc_path,$(INCDIR))|' \
	    -e 's|@VERSION@|$(VERSION)|' packaging/kong_client_tls.pc.in \
	    > $(DESTDIR)$(PKGCONFIGDIR)/kong_client_tls.pc
	@if [ -z "$(DESTDIR)" ] && [ "$$(id -u)" = 0 ]; then echo $(LDCONFIG); $(LDCONFIG); fi

# A path under PREFIX as the .pc writes it, relative to ${prefix}: the file then still works
# from a staged tree with `pkg-config --define-prefix` or `--define-variable=prefix=...`.
pc_path = $(patsubst $(PREFIX)/%,$${prefix}/%,$(1))

uninstall:
	rm -f $(DESTDIR)$(LIBDIR)/libkong_client_tls.so.$(VERSION) $(DESTDIR)$(LIBDIR)/$(SONAME) \
	      $(DESTDIR)$(LIBDIR)/libkong_client_tls.so $(DESTDIR)$(LIBDIR)/libkong_client_tls.a \
	      $(DESTDIR)$(INCDIR)/kong_client_tls.h $(DESTDIR)$(LUADIR)/kong_client_tls.lua \
	      $(DESTDIR)$(PKGCONFIGDIR)/kong_client_tls.pc
	@if [ -z "$(DESTDIR)" ] && [ "$$(id -u)" = 0 ]; then echo $(LDCONFIG); $(LDCONFIG); fi

# `luarocks make` (kong-client-tls-<version>-1.rockspec) runs `make rock-build`, then this with
# the rock's directories: the module and the library (as lib?.so, which the module finds
# through the tree's package.cpath), and for C the header, the static library and a .pc
# in the rock's own directory under c/.
.PHONY: rock-build install-rock rock
# luarocks passes CC=gcc, which make exports: without it, cargo reuses the build of
# `make build` instead of rebuilding openssl-sys for a changed CC.
rock-build:
	env -u CC $(CARGO) build --release --lib
install-rock:
	@test -n "$(ROCK_PREFIX)" && test -n "$(ROCK_LUADIR)" && test -n "$(ROCK_LIBDIR)" || \
	  { echo "install-rock: run by luarocks make (ROCK_PREFIX, ROCK_LUADIR, ROCK_LIBDIR)"; exit 1; }
	install -d $(ROCK_LUADIR) $(ROCK_LIBDIR) $(ROCK_PREFIX)/c/include $(ROCK_PREFIX)/c/lib/pkgconfig
	install -m 0644 lua/kong_client_tls.lua $(ROCK_LUADIR)/kong_client_tls.lua
	install -m 0755 $(SO) $(ROCK_LIBDIR)/libkong_client_tls.so
	install -m 0644 $(HEADER) $(ROCK_PREFIX)/c/include/kong_client_tls.h
	install -m 0644 $(STATICLIB) $(ROCK_PREFIX)/c/lib/libkong_client_tls.a
	install -m 0755 $(SO) $(ROCK_PREFIX)/c/lib/libkong_client_tls.so
	sed -e 's|@PREFIX@|$(ROCK_PREFIX)/c|' -e 's|@LIBDIR@|$${prefix}/lib|' \
	    -e 's|@INCDIR@|$${prefix}/include|' -e 's|@VERSION@|$(VERSION)|' \
	    packaging/kong_client_tls.pc.in > $(ROCK_PREFIX)/c/lib/pkgconfig/kong_client_tls.pc

# The rock into a local tree, as a Lua developer would: ROCK_TREE (default
# target/rocks), then the paths to give nginx.
ROCK_TREE ?= $(TARGET_DIR)/rocks
rock:
	luarocks --lua-version 5.1 make --tree $(ROCK_TREE) kong-client-tls-$(VERSION)-1.rockspec
	@echo "lua_package_path \"$(abspath $(ROCK_TREE))/share/lua/5.1/?.lua;;\";"
	@echo "lua_package_cpath \"$(abspath $(ROCK_TREE))/lib/lua/5.1/?.so;;\";"

# Debian packages (cargo-deb, built once into KCT_CACHE/tools and reused): the staged
# `make install` of target/release/deb, packed as described by [package.metadata.deb]
# of Cargo.toml, into target/release/debian/kong-client-tls{,-dev}_<version>-1_<arch>.deb.
KCT_CACHE ?= $(HOME)/.cache/kong-client-tls
CARGO_DEB_VERSION := 3.8.0
CARGO_DEB := $(KCT_CACHE)/tools/cargo-deb-$(CARGO_DEB_VERSION)/bin/cargo-deb
MULTIARCH := $(shell dpkg-architecture -qDEB_HOST_MULTIARCH 2>/dev/null || $(CC) -print-multiarch)
DEB_STAGE := $(abspath $(RELEASE)/deb)
DEB_DIR   := $(RELEASE)/debian
CARGO_DEB_FLAGS ?=
.PHONY: deb cargo-deb
cargo-deb: $(CARGO_DEB)
$(CARGO_DEB):
	env -u CARGO_TARGET_DIR $(CARGO) install --locked --quiet --version $(CARGO_DEB_VERSION) \
	  --root $(KCT_CACHE)/tools/cargo-deb-$(CARGO_DEB_VERSION) cargo-deb
deb: build $(CARGO_DEB)
	@rm -rf $(DEB_STAGE) $(DEB_DIR) && mkdir -p $(DEB_DIR)
	@# Staged flat in usr/lib: cargo-deb's --multiarch moves usr/lib/ to usr/lib/<tuple>/,
	@# which the .pc names.
	@$(MAKE) --no-print-directory install DESTDIR=$(DEB_STAGE) PREFIX=/usr \
	  PC_LIBDIR=/usr/lib/$(MULTIARCH) >/dev/null
	$(CARGO_DEB) --no-build --strip --multiarch same $(CARGO_DEB_FLAGS) -o $(DEB_DIR)/
	$(CARGO_DEB) --no-build --strip --multiarch same $(CARGO_DEB_FLAGS) --variant dev -o $(DEB_DIR)/
	@for d in $(DEB_DIR)/*.deb; do echo "== $$d"; dpkg-deb -I $$d | sed -n 's/^ \(Package\|Version\|Depends\|Recommends\):/  \1:/p'; dpkg-deb -c $$d | awk '{print "  " $$6, $$7, $$8}'; done

# The demo: stock nginx on 127.0.0.1 with examples/nginx.conf.template, scripted requests,
# then serving until Ctrl-C (DEMO_ONCE=1: exit after the script). See examples/demo.sh.
run: deps build demo-certs
	DEMO_ONCE=$(DEMO_ONCE) CARGO=$(CARGO) examples/demo.sh

# The demo's throw-away certificates, in target/demo/certs (kept once made).
.PHONY: demo-certs
demo-certs:
	examples/demo-certs.sh target/demo/certs

# Fuzzes each of FUZZ_TARGETS for FUZZ_SECONDS (libFuzzer via cargo-fuzz; the stable
# toolchain accepts its sanitizer flags with RUSTC_BOOTSTRAP): the ClientHello
# parser/rewriter and the host-name comparison. New inputs go to fuzz/target/corpus/<target>;
# the committed seeds in fuzz/corpus/client_hello stay as they are.
FUZZ_TARGETS ?= client_hello host
fuzz:
	@command -v cargo-fuzz >/dev/null || $(CARGO) install cargo-fuzz --locked
	@set -e; for t in $(FUZZ_TARGETS); do \
	  mkdir -p fuzz/target/corpus/$$t; seeds=; [ ! -d fuzz/corpus/$$t ] || seeds=corpus/$$t; \
	  (cd fuzz && RUSTC_BOOTSTRAP=1 $(CARGO) fuzz run $$t target/corpus/$$t $$seeds \
	    -- -max_total_time=$(FUZZ_SECONDS)); \
	done

# The in-process suites with the library under AddressSanitizer (LeakSanitizer included)
# and Rust's own undefined-behaviour checks (the preconditions of unsafe std calls, via
# debug assertions, and integer overflow), then the C tests linking that library, built
# with GCC's -fsanitize=address,undefined. Own target dir: every crate is rebuilt
# instrumented. The stable toolchain accepts -Zsanitizer with RUSTC_BOOTSTRAP, as for
# `make fuzz`. CI runs it (.ci/run).
SAN_DIR     := $(TARGET_DIR)/sanitizers
SAN_TRIPLE  := $(shell rustc -vV 2>/dev/null | sed -n 's/^host: //p')
# --export-dynamic: lua_unit dlopen()s the instrumented library, which needs the ASan
# runtime linked into the test executable.
SAN_RUST    := RUSTC_BOOTSTRAP=1 CARGO_TARGET_DIR=$(CURDIR)/$(SAN_DIR) \
               RUSTFLAGS="-Zsanitizer=address -Cdebug-assertions=on -Coverflow-checks=on \
               -Clink-arg=-Wl,--export-dynamic"
SAN_LIB_DIR := $(SAN_DIR)/$(SAN_TRIPLE)/release
SAN_SUITES  := --lib --test core --test alpn --test alpn_wire --test session_binding --test lua_unit \
               --test misdirected --test host_names --test ca_names
test-sanitizers:
	$(SAN_RUST) $(CARGO) build --release --lib --target $(SAN_TRIPLE)
	ASAN_OPTIONS=detect_leaks=1 $(SAN_RUST) $(CARGO) test --release --no-fail-fast \
	  --target $(SAN_TRIPLE) $(SAN_SUITES)
	@mkdir -p $(SAN_DIR)/ctests && rm -rf $(SAN_DIR)/ctests/pki && tests/c/make-pki.sh $(SAN_DIR)/ctests/pki
	$(CC) $(CFLAGS_TEST) -shared -fPIC tests/c/fake_openssl_version.c -o $(SAN_DIR)/ctests/fake_openssl_version.so
	@set -e; for src in tests/c/test_*.c; do \
	  bin=$(SAN_DIR)/ctests/$$(basename $$src .c); \
	  $(CC) $(CFLAGS_TEST) -fsanitize=address,undefined -fno-sanitize-recover=all \
	    $$src -o $$bin $(SAN_LIB_DIR)/libkong_client_tls.a $(LDLIBS_TEST); \
	  ASAN_OPTIONS=detect_leaks=1:verify_asan_link_order=0 $$bin $(SAN_DIR)/ctests/pki; \
	done; echo "c tests under ASan+UBSan: all passed"
	@# (verify_asan_link_order=0: test_unverified_openssl re-runs itself with a preloaded
	@# OpenSSL_version_num shim, which would otherwise come before GCC's ASan runtime.)

# The nginx suites once more with every nginx (and its workers) under valgrind memcheck
# (KCT_NGINX_WRAPPER, honoured by tests/support/nginx.rs), then the logs checked: no
# memory error anywhere, no definite leak through the library. Host nginx only. CI runs it.
VG_NGINX_DIR := $(TARGET_DIR)/valgrind-nginx
test-nginx-valgrind: build
	@rm -rf $(VG_NGINX_DIR) && mkdir -p $(VG_NGINX_DIR)
	KCT_NGINX_WRAPPER="valgrind --leak-check=full --show-leak-kinds=definite --num-callers=40 \
	  --log-file=$(abspath $(VG_NGINX_DIR))/vg.%p" \
	  $(CARGO) test --release --test nginx_e2e --test nginx_alpn --test nginx_session --test nginx_misdirected --test nginx_ca_names -- --test-threads=1
	tests/valgrind/check-nginx.sh $(VG_NGINX_DIR)

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

# Hostile ClientHellos (issue 9, section 5). `make fuzz-nginx`: tests/nginx_hostile.rs
# against real nginx (host; KCT_NGINX_ROOT for a Debian root) for HOSTILE_INPUTS inputs or
# HOSTILE_SECONDS, whichever ends first (`cargo test` runs a smoke run of 5000); writes
# target/reliability/fuzz-nginx.md. `make fuzz-parser`: libFuzzer on the parser for
# FUZZ_RUNS executions, then fuzz/report.sh writes target/reliability/fuzz-parser.md.
# `make fuzz-report`: both fragments into docs/reliability/fuzz.md. All niced.
HOSTILE_INPUTS  ?= 1000000
HOSTILE_SECONDS ?= 3600
FUZZ_RUNS       ?= 10000000
RELIABILITY_DIR := $(TARGET_DIR)/reliability
.PHONY: fuzz-nginx fuzz-parser fuzz-report
fuzz-nginx: build
	HOSTILE_INPUTS=$(HOSTILE_INPUTS) HOSTILE_SECONDS=$(HOSTILE_SECONDS) \
	  nice $(CARGO) test --release --test nginx_hostile -- --nocapture
fuzz-parser:
	@command -v cargo-fuzz >/dev/null || $(CARGO) install cargo-fuzz --locked
	@mkdir -p fuzz/target/corpus $(RELIABILITY_DIR)
	cd fuzz && RUSTC_BOOTSTRAP=1 nice $(CARGO) fuzz run client_hello target/corpus corpus/client_hello \
	  -- -runs=$(FUZZ_RUNS) -print_final_stats=1 > $(abspath $(RELIABILITY_DIR))/fuzz-parser.log 2>&1 \
	  || { tail -n 40 $(abspath $(RELIABILITY_DIR))/fuzz-parser.log; exit 1; }
	fuzz/report.sh $(RELIABILITY_DIR)/fuzz-parser.log fuzz/target/corpus > $(RELIABILITY_DIR)/fuzz-parser.md
	@cat $(RELIABILITY_DIR)/fuzz-parser.md
fuzz-report:
	@mkdir -p docs/reliability
	@for f in fuzz-nginx fuzz-parser; do test -s $(RELIABILITY_DIR)/$$f.md || \
	  { echo "no $(RELIABILITY_DIR)/$$f.md: run make $$f first"; exit 1; }; done
	{ echo "<!-- Written by make fuzz-report from <target>/reliability/fuzz-{nginx,parser}.md; do not edit. -->"; \
	  echo; cat $(RELIABILITY_DIR)/fuzz-nginx.md; echo; cat $(RELIABILITY_DIR)/fuzz-parser.md; } \
	  > docs/reliability/fuzz.md
	$(MAKE) reliability

# RELIABILITY.md: the parts the tools wrote into docs/reliability/ (make soak, make
# fuzz-report, make memory-report), put together. Each of those targets ends with it.
RELIABILITY_PARTS := docs/reliability/soak.md docs/reliability/fuzz.md docs/reliability/memory.md
.PHONY: reliability memory-report
reliability:
	@for f in $(RELIABILITY_PARTS); do test -s $$f || { echo "$$f is missing"; exit 1; }; done
	{ echo "# Reliability"; echo; \
	  echo "<!-- Put together by make reliability from $(RELIABILITY_PARTS); do not edit. -->"; \
	  echo; echo "What each part measures, and the command that wrote it, is in its first lines:"; \
	  echo "the soak (\`make soak\`), hostile ClientHellos and the parser fuzzer (\`make fuzz-nginx\`,"; \
	  echo "\`make fuzz-parser\`, \`make fuzz-report\`), memory errors and undefined behaviour"; \
	  echo "(\`make memory-report\`: \`make test-sanitizers\` and \`make test-nginx-valgrind\`)."; \
	  for f in $(RELIABILITY_PARTS); do echo; sed '/^<!-- .* -->$$/d' $$f; done; } > RELIABILITY.md
	@echo "wrote RELIABILITY.md"
memory-report: build
	@mkdir -p docs/reliability
	tests/reliability/memory.sh docs/reliability/memory.md; rc=$$?; $(MAKE) reliability; exit $$rc

# Soak (issue 9): real nginx with every API function under mixed load from several client
# processes, 20 reloads, a binary upgrade and a killed worker (tests/soak.rs). `make soak`:
# SOAK_CONNECTIONS (100000) on the host, then in the Debian 13 root, writes docs/reliability/soak.md
# and RELIABILITY.md.
# `make soak-ci`: 20000 on the host, no report (CI runs it after `make test`).
.PHONY: soak soak-ci
SOAK_CONNECTIONS ?= 100000
SOAK_STACKS ?= host trixie
SOAK_CI_STACKS ?= host
soak: deps build
	SOAK_CONNECTIONS=$(SOAK_CONNECTIONS) SOAK_REPORT=docs/reliability/soak.md \
	  tests/soak/run.sh $(SOAK_STACKS); rc=$$?; $(MAKE) reliability; exit $$rc
soak-ci: deps build
	SOAK_CONNECTIONS=20000 tests/soak/run.sh $(SOAK_CI_STACKS)
