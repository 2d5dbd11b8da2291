#!/usr/bin/env bash
# The kong-client-tls demo (`make run`): Kong's kong.client.tls API inside a stock nginx.
#
# Builds the library, makes demo certificates, starts nginx on 127.0.0.1 with
# examples/nginx.conf.template, runs a scripted set of client requests and prints what
# each one got, then keeps serving until Ctrl-C (or exits at once with DEMO_ONCE=1).
# nginx is stopped on every exit path.
#
# Environment: DEMO_HTTPS_PORT (default 9443), DEMO_UPSTREAM_PORT (default 9080),
# DEMO_ONCE=1, NGINX (default nginx), CARGO (default cargo), KCT_NGINX_ROOT (run the nginx
# of a Debian root made by tests/distro/make-root.sh instead, with the library built here;
# the clients stay on this host; needs root).
set -euo pipefail

ROOT="$(cd "$(dirname "$0")/.." && pwd)"
DEMO="$ROOT/target/demo"
CERTS="$DEMO/certs"
HTTPS_PORT="${DEMO_HTTPS_PORT:-9443}"
UPSTREAM_PORT="${DEMO_UPSTREAM_PORT:-9080}"
NGINX="${NGINX:-nginx}"
CARGO="${CARGO:-cargo}"
LIBDIR="$ROOT/target/release"

bold() { printf '\033[1m%s\033[0m\n' "$*"; }

# -- build and certificates --------------------------------------------------------------
"$CARGO" build --release --lib
"$ROOT/examples/demo-certs.sh" "$CERTS"

# -- nginx -----------------------------------------------------------------------------------
mkdir -p "$DEMO/logs" "$DEMO/tmp"
sed -e "s|@PREFIX@|$DEMO|g" -e "s|@ROOT@|$ROOT|g" -e "s|@LIBDIR@|$LIBDIR|g" \
    -e "s|@HTTPS_PORT@|$HTTPS_PORT|g" -e "s|@UPSTREAM_PORT@|$UPSTREAM_PORT|g" \
    "$ROOT/examples/nginx.conf.template" > "$DEMO/nginx.conf"
: > "$DEMO/logs/error.log"

if [ -n "${KCT_NGINX_ROOT:-}" ]; then
  # The root's nginx, chrooted, with the clone (config, certificates, Lua, library)
  # bind-mounted at the same path; the script execs nginx, so $! is nginx's pid.
  NGINX_CMD=("$ROOT/tests/distro/in-root.sh" "$KCT_NGINX_ROOT" "$ROOT" -- /usr/sbin/nginx)
  NGINX_VERSION="$(chroot "$KCT_NGINX_ROOT" /usr/sbin/nginx -v 2>&1)"
else
  NGINX_CMD=("$NGINX")
  NGINX_VERSION="$("$NGINX" -v 2>&1)"
fi
"${NGINX_CMD[@]}" -p "$DEMO" -c "$DEMO/nginx.conf" -e "$DEMO/logs/error.log" &
NGINX_PID=$!
stop_nginx() {
  if kill -0 "$NGINX_PID" 2>/dev/null; then
    kill -QUIT "$NGINX_PID" 2>/dev/null || true
    for _ in $(seq 50); do kill -0 "$NGINX_PID" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$NGINX_PID" 2>/dev/null || true
  fi
  wait "$NGINX_PID" 2>/dev/null || true
}
trap stop_nginx EXIT
trap 'echo; echo "stopping nginx"; exit 0' INT TERM

for _ in $(seq 100); do
  if (exec 3<>"/dev/tcp/127.0.0.1/$HTTPS_PORT") 2>/dev/null \
     && (exec 3<>"/dev/tcp/127.0.0.1/$UPSTREAM_PORT") 2>/dev/null; then
    break
  fi
  if ! kill -0 "$NGINX_PID" 2>/dev/null; then
    echo "nginx did not start; its error log:"; cat "$DEMO/logs/error.log"; exit 1
  fi
  sleep 0.1
done

bold "nginx ${NGINX_VERSION##*nginx/}${KCT_NGINX_ROOT:+ (in $KCT_NGINX_ROOT)} is up (pid $NGINX_PID), stock packages + libkong_client_tls.so:"
echo "  https://mtls.demo.test:$HTTPS_PORT/    mutual TLS requested (CA list), no session reuse"
echo "  https://public.demo.test:$HTTPS_PORT/  plain TLS"
echo "  http://127.0.0.1:$UPSTREAM_PORT/        the upstream (echoes what the gateway forwards)"
echo "  config: $DEMO/nginx.conf   error log: $DEMO/logs/error.log"
echo

# -- the scripted requests -------------------------------------------------------------------
failures=0
RESOLVE=(--resolve "mtls.demo.test:$HTTPS_PORT:127.0.0.1" --resolve "public.demo.test:$HTTPS_PORT:127.0.0.1"
         --resolve "bound.demo.test:$HTTPS_PORT:127.0.0.1")
CURL=(curl -sS --max-time 10 --cacert "$CERTS/server-ca.pem" "${RESOLVE[@]}")

# step TITLE EXPECTED-SUBSTRING COMMAND...: runs COMMAND, prints its output, checks it.
step() {
  local title="$1" expect="$2"; shift 2
  bold "== $title"
  echo "\$ ${*//$CERTS\//}"
  local out
  out="$("$@" 2>&1 || true)"
  printf '%s\n' "$out" | sed 's/^/  /'
  if printf '%s' "$out" | grep -qF -- "$expect"; then
    echo "  -> as expected ($expect)"
  else
    echo "  -> UNEXPECTED: wanted \"$expect\""
    failures=$((failures + 1))
  fi
  echo
}

step "public.demo.test: plain TLS, no client certificate asked, nothing forwarded" \
  "host=public.demo.test client_verify=- client chain=0" \
  "${CURL[@]}" "https://public.demo.test:$HTTPS_PORT/"

step "mtls.demo.test with the demo client certificate: chain forwarded, verdict SUCCESS" \
  "client_verify=SUCCESS client chain=2 PEM certificate(s) (leaf: CN=demo client" \
  "${CURL[@]}" --cert "$CERTS/client-chain.pem" --key "$CERTS/client.key" \
  "https://mtls.demo.test:$HTTPS_PORT/"

step "mtls.demo.test without a certificate: the Lua check says NONE (401)" \
  "mtls.demo.test needs a client certificate" \
  "${CURL[@]}" -i "https://mtls.demo.test:$HTTPS_PORT/"

step "mtls.demo.test with a certificate from another CA: FAILED:<reason> (403)" \
  "X-Demo-Client-Verify: FAILED:issuer not allowed: CN=rogue CA" \
  "${CURL[@]}" -i --cert "$CERTS/rogue.pem" --key "$CERTS/rogue.key" \
  "https://mtls.demo.test:$HTTPS_PORT/"

step "verified on mtls.demo.test, asking for public.demo.test on that connection: 421, as nginx's ssl_verify_client" \
  "HTTP/1.1 421 Misdirected Request" \
  "${CURL[@]}" -i --http1.1 --cert "$CERTS/client-chain.pem" --key "$CERTS/client.key" \
  -H "Host: public.demo.test" "https://mtls.demo.test:$HTTPS_PORT/"

step "what a client sees: the CA list in mtls.demo.test's CertificateRequest" \
  "CN = kong-client-tls demo root CA" \
  sh -c "openssl s_client -connect 127.0.0.1:$HTTPS_PORT -servername mtls.demo.test </dev/null 2>/dev/null \
         | sed -n '/Acceptable client certificate CA names/,/Requested Signature/p' | sed '\$d'"

step "public.demo.test has no CertificateRequest at all" \
  "No client certificate CA names sent" \
  sh -c "openssl s_client -connect 127.0.0.1:$HTTPS_PORT -servername public.demo.test </dev/null 2>/dev/null \
         | grep -E 'client certificate CA names'"

# Session reuse: a session saved from a first connection is offered on a second one.
resume() { # resume NAME TLSFLAG [OFFER_TO]: prints "New"/"Reused" of the second handshake
  local sess="$DEMO/session-$1$2.pem" to="${3:-$1}"
  # A whole request with Connection: close, and -ign_eof: s_client then reads until the
  # server closes, so a TLS 1.3 ticket (sent after the handshake) is always received.
  local request="GET / HTTP/1.1\r\nHost: $1\r\nConnection: close\r\n\r\n"
  rm -f "$sess"
  printf '%b' "$request" | openssl s_client -connect "127.0.0.1:$HTTPS_PORT" -servername "$1" "$2" \
    -cert "$CERTS/client.pem" -key "$CERTS/client.key" -ign_eof -sess_out "$sess" >/dev/null 2>&1 || true
  if [ ! -s "$sess" ]; then
    echo "New, no second try: the server issued nothing to resume (no session ID, no ticket)"
    return
  fi
  printf '%b' "$request" | openssl s_client -connect "127.0.0.1:$HTTPS_PORT" -servername "$to" "$2" \
    -cert "$CERTS/client.pem" -key "$CERTS/client.key" -ign_eof -sess_in "$sess" 2>/dev/null \
    | grep -E '^(New|Reused),' || true
}
for v in -tls1_2 -tls1_3; do
  step "public.demo.test resumes its TLS session ($v)" "Reused," resume public.demo.test "$v"
  step "mtls.demo.test never resumes: certificate-phase request ($v)" "New," resume mtls.demo.test "$v"
  step "bound.demo.test resumes its mutual-TLS session: client_hello-phase request ($v)" \
    "Reused," resume bound.demo.test "$v"
  step "a bound.demo.test session offered to public.demo.test: full handshake ($v)" \
    "New," resume bound.demo.test "$v" public.demo.test
  step "a public.demo.test session offered to bound.demo.test: full handshake ($v)" \
    "New," resume public.demo.test "$v" bound.demo.test
done

bold "== the log phase: what Kong's serializer reports as request.tls.client_verify"
grep -o 'demo log: .*' "$DEMO/logs/error.log" | sed -e 's/ while logging request.*//' -e 's/^/  /' | tail -n 12
echo "  (nginx's own \$ssl_client_verify uses verify depth 0, exactly as Kong's"
echo "   request_client_certificate does, so a leaf + intermediate chain reads FAILED there;"
echo "   Kong plugins check the chain in Lua and record their verdict with set_client_verify.)"
echo

if [ "$failures" -eq 0 ]; then
  bold "every scripted request got the expected outcome"
else
  bold "$failures scripted request(s) did NOT get the expected outcome"
fi
if grep -E '\[(alert|crit|emerg)\]|exited on signal' "$DEMO/logs/error.log"; then
  bold "nginx's error log shows a problem (above)"
  failures=$((failures + 1))
fi

if [ "${DEMO_ONCE:-0}" = 1 ]; then
  exit $((failures > 0))
fi

echo
bold "nginx keeps serving; try it yourself (Ctrl-C stops it):"
echo "  curl --cacert $CERTS/server-ca.pem --resolve mtls.demo.test:$HTTPS_PORT:127.0.0.1 \\"
echo "       --cert $CERTS/client-chain.pem --key $CERTS/client.key https://mtls.demo.test:$HTTPS_PORT/"
echo "  tail -f $DEMO/logs/error.log"
while kill -0 "$NGINX_PID" 2>/dev/null; do sleep 1; done
