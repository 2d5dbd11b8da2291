#!/usr/bin/env bash
# The OpenSSL matrix: the in-process suites (Rust: lib, core, session_binding, alpn, alpn_wire, lua_unit,
# misdirected, host_names, ca_names;
# C: tests/c, plain and under valgrind) against OpenSSL release lines.
#
#   tests/openssl/matrix.sh 3.0 3.5          # some lines
#   tests/openssl/matrix.sh all              # 3.0 (the host's) and every line of versions.txt
#
# 1.1.1 is not supported: for it, the matrix checks that building against it stops with
# build.rs's clear message (mode "refused").
#   MATRIX_MODES=swap tests/openssl/matrix.sh 3.5
#
# Two ways per line (MATRIX_MODES, default "swap build"):
#   swap   the suites built on this host, against its OpenSSL 3.0 headers, run with the
#          line's libssl.so.3 put first on LD_LIBRARY_PATH: one binary on another host's
#          libssl, as inside OpenResty. 3.x only (4.0 is libssl.so.4, another ABI).
#   build  the crate and the suites built against the line's headers (OPENSSL_DIR) in a
#          target directory of its own under the cache, run with its libraries.
# Line 3.0 is the host's own libssl (mode "system"). Each run checks with ldd that every
# binary that links libssl really loads the line's before its result counts.
#
# One TSV row per line × mode × suite goes to $KCT_MATRIX_OUT (default
# target/matrix/openssl.tsv, rewritten per run): line, OpenSSL version, mode, suite, passed,
# failed. A table is printed at the end; the exit status is non-zero if anything failed.
set -uo pipefail
cd "$(dirname "$0")/../.." || exit 2
here=tests/openssl
cache=${KCT_CACHE:-$HOME/.cache/kong-client-tls}
out=${KCT_MATRIX_OUT:-target/matrix/openssl.tsv}
modes=${MATRIX_MODES:-swap build}
cargo=${CARGO:-cargo}
suites=(--lib --test core --test session_binding --test alpn --test alpn_wire --test lua_unit
        --test misdirected --test host_names --test ca_names)

lines=()
for arg in "$@"; do
  if [ "$arg" = all ]; then
    lines+=(3.0)
    while read -r line _; do
      case "$line" in ''|'#'*) ;; *) lines+=("$line") ;; esac
    done < "$here/versions.txt"
  else
    lines+=("$arg")
  fi
done
[ ${#lines[@]} -gt 0 ] || { echo "usage: $0 LINE... | all" >&2; exit 2; }

mkdir -p "$(dirname "$out")"
: > "$out"
failed_any=0

record() { # line version mode suite passed failed
  printf '%s\t%s\t%s\t%s\t%s\t%s\n' "$@" >> "$out"
  [ "$6" = 0 ] && [ "$5" != 0 ] || failed_any=1
}

# Sets `passed` and `failed` from the last line of file $2 matching $1 ("N passed ... M
# failed"); no such line (a crash, a build error) counts as one failure.
counts() {
  local summary
  summary=$(grep -E "$1" "$2" | tail -n 1)
  passed=$(sed -nE 's/.* ([0-9]+) passed.*/\1/p' <<<"$summary")
  failed=$(sed -nE 's/.* ([0-9]+) failed.*/\1/p' <<<"$summary")
  [ -n "$summary" ] || { passed=0 failed=1; }
}

# Test executables of `suites` in the target dir of the current environment.
executables() {
  "$cargo" test --release --no-run --message-format=json "${suites[@]}" 2>/dev/null |
    python3 -c '
import json, sys
for line in sys.stdin:
    m = json.loads(line)
    if m.get("reason") == "compiler-artifact" and m.get("executable") and m["profile"]["test"]:
        print(m["target"]["name"], m["executable"])'
}

# Runs the Rust suites and the C tests with LD_LIBRARY_PATH=$libdir (empty: the system's).
run_suites() { # line version mode libdir [make args...]
  local line=$1 version=$2 mode=$3 libdir=$4
  shift 4
  local log list name exe libssl
  log=$(mktemp)
  if ! "$cargo" build --release --lib >"$log" 2>&1 || ! list=$(executables) || [ -z "$list" ]; then
    echo "== $line $mode: build failed" >&2
    tail -30 "$log" >&2
    record "$line" "$version" "$mode" build 0 1
    rm -f "$log"
    return
  fi
  while read -r name exe; do
    libssl=$(LD_LIBRARY_PATH=$libdir ldd "$exe" | awk '/libssl\.so/ { print $3 }')
    # (A binary that links no libssl at all, like the wire-format tests, has nothing to swap.)
    if [ -n "$libdir" ] && [ -n "$libssl" ] && [ "${libssl#"$libdir"/}" = "$libssl" ]; then
      echo "== $line $mode $name: loads $libssl, not $libdir" >&2
      record "$line" "$version" "$mode" "$name" 0 1
      continue
    fi
    LD_LIBRARY_PATH=$libdir "$exe" --test-threads=2 >"$log" 2>&1
    counts '^test result:' "$log"
    [ "$failed" = 0 ] || { echo "== $line $mode $name:" >&2; grep -vE '^test .* ok$' "$log" | tail -40 >&2; }
    record "$line" "$version" "$mode" "$name" "$passed" "$failed"
  done <<<"$list"
  make -s test-c CTEST_DIR="$(mktemp -d)" "$@" >"$log" 2>&1
  counts '^c tests:' "$log"
  [ "$failed" = 0 ] || { echo "== $line $mode c:" >&2; tail -40 "$log" >&2; }
  record "$line" "$version" "$mode" c "$passed" "$failed"
  rm -f "$log"
}

for line in "${lines[@]}"; do
  if [ "$line" = 3.0 ]; then
    version=$(openssl version | awk '{ print $2 }')
    echo "== OpenSSL $version (system)" >&2
    run_suites 3.0 "$version" system ""
    continue
  fi
  prefix=$("$here/build.sh" "$line") || { record "$line" "?" build openssl-build 0 1; continue; }
  version=$(basename "$prefix")
  if [ "$line" = 1.1.1 ]; then
    # Not supported: building against it must stop with build.rs's clear message.
    echo "== OpenSSL $version: the build must refuse it" >&2
    log=$(mktemp)
    if OPENSSL_DIR=$prefix CARGO_TARGET_DIR=$cache/target/openssl-$version \
         "$cargo" build --release --lib >"$log" 2>&1; then
      echo "== OpenSSL $version: the build did not refuse it" >&2
      record "$line" "$version" refused build-refusal 0 1
    elif grep -q 'kong-client-tls needs OpenSSL 3.0 or newer' "$log"; then
      record "$line" "$version" refused build-refusal 1 0
    else
      echo "== OpenSSL $version: the build failed, but not with build.rs's message:" >&2
      tail -20 "$log" >&2
      record "$line" "$version" refused build-refusal 0 1
    fi
    rm -f "$log"
    continue
  fi
  for mode in $modes; do
    case "$mode" in
      swap)
        if [ ! -e "$prefix/lib/libssl.so.3" ]; then
          echo "== OpenSSL $version swap: n/a (no libssl.so.3; another ABI)" >&2
          continue
        fi
        echo "== OpenSSL $version swap (host build, its libssl.so.3)" >&2
        run_suites "$line" "$version" swap "$prefix/lib" OPENSSL_RUN_PREFIX="$prefix"
        ;;
      build)
        echo "== OpenSSL $version build (its headers)" >&2
        OPENSSL_DIR=$prefix CARGO_TARGET_DIR=$cache/target/openssl-$version \
          run_suites "$line" "$version" build "$prefix/lib" \
          OPENSSL_BUILD_PREFIX="$prefix" OPENSSL_RUN_PREFIX="$prefix"
        ;;
      *) echo "unknown mode $mode" >&2; exit 2 ;;
    esac
  done
done

echo
printf '%-6s %-8s %-7s %-12s %s\n' line version mode suite result
while IFS=$'\t' read -r line version mode suite passed failed; do
  printf '%-6s %-8s %-7s %-12s %s passed, %s failed\n' "$line" "$version" "$mode" "$suite" "$passed" "$failed"
done < "$out"
exit $failed_any
