#!/usr/bin/env bash
# Runs the real-nginx suites (tests/nginx_e2e.rs, tests/nginx_alpn.rs,
# tests/nginx_session.rs) on one stack, with the library built here, on the host:
#
#   tests/distro/run.sh <host|trixie|sid|other suite> [more cargo test args]
#
# host: this machine's nginx. Anything else: a Debian root of that suite, made (once,
# cached) by tests/distro/make-root.sh, whose nginx runs the suites (KCT_NGINX_ROOT, see
# tests/support/nginx.rs) while the clients stay on the host. Prints one line per suite and a
# last line for the stack; with KCT_MATRIX_OUT=<file>, also appends one tab-separated line
# per suite to that file:
#
#   stack  nginx version  lua-nginx-module version  OpenSSL version  suite  passed  failed
#
# Exits non-zero when a test failed or did not run. KCT_CACHE, KCT_DEBIAN_MIRROR: see
# make-root.sh; KCT_SUITE_TIMEOUT: seconds for the whole cargo test run (default 900).
# dpkg-query's ${...} fields are meant literally.
# shellcheck disable=SC2016
set -euo pipefail

stack="${1:?usage: $0 <host|trixie|sid> [more cargo test args]}"
shift
here="$(cd "$(dirname "$0")" && pwd)"
repo="$(cd "$here/../.." && pwd)"
cd "$repo"
CARGO="${CARGO:-cargo}"
suites=(nginx_e2e nginx_alpn nginx_session nginx_misdirected nginx_ca_names)
test_args=()
for suite in "${suites[@]}"; do test_args+=(--test "$suite"); done

if [ "$stack" = host ]; then
  root=""
  run_in() { "$@"; }
else
  root="${KCT_CACHE:-$HOME/.cache/kong-client-tls}/roots/$stack"
  "$here/make-root.sh" "$stack" "$root"
  run_in() { chroot "$root" "$@"; }
fi

# Versions as the stack's own dpkg and nginx report them. "1:0.10.28-2" -> "0.10.28".
upstream() { sed -e 's/^[0-9]*://' -e 's/-[^-]*$//' -e 's/+.*$//'; }
pkg_version() {
  run_in dpkg-query -W -f '${Version}\n' "$1" 2>/dev/null | head -n 1 | upstream
}
nginx_version="$(run_in /usr/sbin/nginx -v 2>&1 | sed -n 's|.*nginx/\([^ ]*\).*|\1|p')"
lua_version="$(pkg_version libnginx-mod-http-lua)"
# The libssl package is libssl3 up to Debian 12, libssl3t64 after.
ssl_pkg="$(run_in dpkg-query -W -f '${Package} ${Status}\n' 'libssl3*' 2>/dev/null \
           | awk '/ installed$/ { print $1; exit }')"
openssl_version="$(pkg_version "$ssl_pkg")"
stack_desc="nginx/$nginx_version lua-nginx-module $lua_version OpenSSL $openssl_version"

# The library as a user of this stack would get it: built here, whatever the stack.
"$CARGO" build --release --lib

log="$(mktemp "${TMPDIR:-/tmp}/kct-distro-$stack.XXXXXX")"
trap 'rm -f "$log"' EXIT
start=$(date +%s)
set +e
KCT_NGINX_ROOT="$root" timeout "${KCT_SUITE_TIMEOUT:-900}" \
  "$CARGO" test --release --no-fail-fast "${test_args[@]}" "$@" \
  2>&1 | tee "$log"
status=${PIPESTATUS[0]}
set -e
elapsed=$(( $(date +%s) - start ))

# "Running tests/<suite>.rs (...)" then, for that binary, "test result: ... N passed; M
# failed; ...". A binary that did not report (build error, crash, timeout) counts as one
# failure.
total_pass=0
total_fail=0
for suite in "${suites[@]}"; do
  result="$(awk -v s="tests/$suite.rs" '
    $1 == "Running" { cur = ($2 == s) }
    cur && /^test result:/ { print; exit }' "$log")"
  if [ -n "$result" ]; then
    passed="$(sed -n 's/.* \([0-9]*\) passed.*/\1/p' <<<"$result")"
    failed="$(sed -n 's/.* \([0-9]*\) failed.*/\1/p' <<<"$result")"
  else
    passed=0
    failed=1
    echo "$suite: no test result (did not build, crashed or timed out)"
  fi
  total_pass=$((total_pass + passed))
  total_fail=$((total_fail + failed))
  echo "$suite $stack $stack_desc: $passed passed, $failed failed"
  if [ -n "${KCT_MATRIX_OUT:-}" ]; then
    printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$stack" "$nginx_version" "$lua_version" \
      "$openssl_version" "$suite" "$passed" "$failed" >> "$KCT_MATRIX_OUT"
  fi
done
echo "nginx-e2e $stack $stack_desc: $total_pass passed, $total_fail failed (${elapsed}s)"
if [ "$status" -ne 0 ] || [ "$total_fail" -ne 0 ]; then
  exit 1
fi
