#!/usr/bin/env bash
# The soak (issue 9, tests/soak.rs) on one or more stacks, one after the other:
#
#   tests/soak/run.sh <host|trixie|sid>[:connections]...
#
# host: this machine's nginx; anything else: the nginx of a Debian root of that suite,
# made once and cached by tests/distro/make-root.sh (KCT_NGINX_ROOT). SOAK_CONNECTIONS
# (default 100000) and SOAK_CLIENTS go through to the soak. With SOAK_REPORT=<file>, the
# figures of every stack are written there with the command, the date and the versions
# (`make soak`: docs/reliability/soak.md, a part of RELIABILITY.md); never edit that file
# by hand. Exits non-zero when a stack's soak failed (the report is written anyway,
# saying so).
set -euo pipefail

[ $# -gt 0 ] || { echo "usage: $0 <host|trixie|sid>..." >&2; exit 2; }
here="$(cd "$(dirname "$0")" && pwd)"
repo="$(cd "$here/../.." && pwd)"
cd "$repo"
CARGO="${CARGO:-cargo}"
connections="${SOAK_CONNECTIONS:-100000}"
out="$(mktemp -d)"
trap 'rm -rf "$out"' EXIT

"$CARGO" build --release --lib
"$CARGO" test --release --test soak --no-run

status=0
stacks=()
for spec in "$@"; do
  stack="${spec%%:*}"
  stacks+=("$stack")
  n="$connections"
  [ "$spec" = "$stack" ] || n="${spec#*:}"
  root=""
  if [ "$stack" != host ]; then
    root="${KCT_CACHE:-$HOME/.cache/kong-client-tls}/roots/$stack"
    "$repo/tests/distro/make-root.sh" "$stack" "$root" >/dev/null
  fi
  echo "== soak on $stack: $n connections"
  start=$(date +%s)
  if ! SOAK_RUN=1 SOAK_CONNECTIONS="$n" SOAK_OUT="$out/$stack.md" \
       KCT_NGINX_ROOT="$root" "$CARGO" test --release --test soak; then
    status=1
    [ -s "$out/$stack.md" ] || echo "### $stack: the soak did not finish (see its output)" > "$out/$stack.md"
  fi
  echo "== soak on $stack: $(( $(date +%s) - start )) s in all"
done

if [ -n "${SOAK_REPORT:-}" ]; then
  {
    echo "## The soak"
    echo
    echo "Written by \`tests/soak/run.sh\` (\`make soak\`); do not edit by hand."
    echo
    echo "- Command: \`SOAK_CONNECTIONS=$connections tests/soak/run.sh $*\` (\`make soak\`)"
    echo "- Date: $(date -u '+%Y-%m-%d %H:%M UTC'), commit $(git rev-parse --short HEAD 2>/dev/null || echo '?')"
    echo "- Machine: $(nproc) CPUs, $(uname -sr)"
    echo
    echo "What runs (tests/soak.rs): two nginx instances (\`master_process on; worker_processes 1\`),"
    echo "each with an ECDSA and an RSA server on one port each (\`http2\` on, TLS 1.2 and 1.3,"
    echo "a shared session cache, a ticket key file), using every function of the API:"
    echo "\`request_client_certificate\` in \`ssl_client_hello_by_lua*\` and in"
    echo "\`ssl_certificate_by_lua*\`, with and without \`ca_certs\`, \`disable_session_reuse\` and"
    echo "\`disable_http2_alpn\` on some names, \`set_client_verify\` in access and"
    echo "\`get_full_client_certificate_chain\` in content. Client processes mix full handshakes"
    echo "(trusted, untrusted and no client certificate), resumption attempts (TLS 1.3 tickets,"
    echo "TLS 1.2 tickets and session IDs, and sessions of one name offered to another), ALPN"
    echo "offers (h2,http/1.1 / h2 / none), HelloRetryRequests, keep-alive connections of 10"
    echo "requests, and resets after the"
    echo "ClientHello, after the client Certificate and in the middle of a 1 MiB response; every"
    echo "reply is checked (status, verify result and override, chain, resumption, ALPN or alert)."
    echo "*steady* (two thirds of the connections) is left alone: its worker's RSS must not grow"
    echo "by more than 1 MiB after warm-up (the first 20 % of the run, at least 10,000"
    echo "connections), and its worker must not change."
    echo "*churn* gets 20 reloads, one binary upgrade and one worker killed with SIGKILL."
    echo
    for stack in "${stacks[@]}"; do
      cat "$out/$stack.md"
      echo
    done
  } > "$SOAK_REPORT"
  echo "wrote $SOAK_REPORT"
fi
exit "$status"
