#!/bin/sh
# Assembles BENCHMARKS.md (on stdout) from the fragments the benches wrote into $1
# (target/bench): summary-*.md, group1.md, group1-instr.md, group2.md, group3.md,
# group4.md, group5.md, group6.md, group6-instr.md.
set -eu
dir=$1
frag() { if [ -s "$dir/$1" ]; then cat "$dir/$1"; else echo "_($1 was not produced: see the make bench output)_"; fi; }
# Group $1 again on each OpenSSL the benches also ran against ($dir/openssl-<v>/), for
# the versions that have the file $2 ("": all): a heading, the text $3 (@V@: the
# version), then the fragments $4....
per_openssl() {
  group=$1 needs=$2 text=$3; shift 3
  for sub in "$dir"/openssl-*/; do
    [ -d "$sub" ] || continue
    [ -z "$needs" ] || [ -s "$sub/$needs" ] || continue
    v=${sub%/}; v=${v##*/openssl-}
    printf '\n### Group %s on OpenSSL %s\n\n%s\n' "$group" "$v" "$(printf '%s\n' "$text" | sed "s/@V@/$v/g")"
    for f; do echo; frag "openssl-$v/$f"; done
  done
}
ver() { v=$(dpkg-query -W -f='${Version}' "$1" 2>/dev/null); echo "${v:-not installed}"; }
# The LuaJIT that nginx's lua module really loads, and the package it comes from.
luajit_so=$(ldd /usr/lib/nginx/modules/ngx_http_lua_module.so 2>/dev/null | awk '/libluajit/ {print $3; exit}')
luajit_pkg=$( [ -n "$luajit_so" ] && dpkg -S "$(readlink -f "$luajit_so")" 2>/dev/null | head -1 | cut -d: -f1)

cat <<EOF
# Benchmarks

Written by \`make bench\` (issue 5) on $(date -u '+%Y-%m-%d %H:%M UTC'), commit $(git rev-parse --short HEAD 2>/dev/null || echo unknown)$(git diff --quiet HEAD -- src lua 2>/dev/null || echo " (src/ or lua/ modified)").
Do not edit by hand: run \`make bench\` again (about 10 minutes on 2 cores).

This machine is shared and noisy, so every comparison is measured side by side in one run,
interleaved (A B A B …), and reported as a ratio of medians with its spread; absolute
numbers move from run to run, ratios hold. "Spread" is the 25th–75th percentile.

## Machine and versions

| what | value |
|---|---|
| CPU | $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ *//'), $(nproc) cores |
| memory | $(awk '/MemTotal/ {printf "%.1f GiB", $2/1048576}' /proc/meminfo) |
| OS | $(. /etc/os-release && echo "$PRETTY_NAME"), kernel $(uname -r) |
| load average at report time | $(cut -d' ' -f1-3 /proc/loadavg) |
| rustc | $(rustc --version 2>/dev/null || echo unknown) |
| OpenSSL | $(openssl version 2>/dev/null || echo unknown) |
| nginx | $(nginx -v 2>&1 | sed 's/.*: //') (Debian $(ver nginx)) |
| lua-nginx-module | Debian libnginx-mod-http-lua $(ver libnginx-mod-http-lua) |
| lua-resty-core | $(ver lua-resty-core) |
| LuaJIT (loaded by the lua module) | ${luajit_pkg:-unknown} $( [ -n "$luajit_pkg" ] && ver "$luajit_pkg") |
| valgrind | $(valgrind --version 2>/dev/null || echo "not installed") |

## Summary

| group | comparison | result | goal | verdict |
|---|---|---|---|---|
EOF
# Group 1, 5 and 6 rows name the OpenSSL they ran on: the system's, then each line swapped
# in (openssl-*/, written by `make bench` with the bench binary on that libssl.so.3).
system_openssl=$(openssl version | awk '{ print "OpenSSL " $2 }')
{
  cat "$dir"/summary-*.md 2>/dev/null | sed -E "s/^\| ([156]) \|/| \1 ($system_openssl) |/"
  for sub in "$dir"/openssl-*/; do
    [ -d "$sub" ] || continue
    v=$(basename "$sub"); v="OpenSSL ${v#openssl-}"
    grep -E '^\| [156] \|' "$sub/summary-calls.md" 2>/dev/null | sed -E "s/^\| ([156]) \|/| \1 ($v) |/"
  done
} | sort -s -t"|" -k2,2n || true
cat <<'EOF'

### Reading the results

Each goal is checked twice: in time (what the issue asks; medians of interleaved runs)
and in instructions counted by callgrind (deterministic, so immune to the other
processes on this machine). Where the two disagree, the spread columns show why: on this
2-core machine shared with two compiling engineers, a single run moves by ±5–10 %, and
even medians of 24 interleaved rounds move by 2–3 % from one `make bench` to the next,
which is more than the 1–3 % margins of the group 1 and group 3 goals. A verdict that
flips between runs while the instruction count stays put is noise; a goal missed in
instructions is a real cost, and `benches/PROFILE.md` says where it goes.
EOF
cat <<EOF

## Group 1: cost of each call inside a handshake

Whole TLS handshakes in one thread, client and server \`SSL\`s of the same process talking
through in-memory pipes (no sockets, no threads), created and freed per handshake. The
server runs an empty certificate callback and an empty client hello callback (as nginx
runs \`ssl_certificate_by_lua\` / \`ssl_client_hello_by_lua\`); B makes one of our calls
from one of them, A does not. Handshakes of A and B alternate one by one (A B B A …);
each handshake's thread CPU time is measured on its own; a sample is the median of its
handshakes per side, and the ratio B/A is taken within each sample. The table gives the
median of those ratios and their spread. The server key is ECDSA P-256 or RSA-2048; the
client certificate (when one is sent) is issued directly by the CA with the same key
type. For \`request_client_certificate\` the baseline is the static setup nginx uses for
\`ssl_verify_client optional_no_ca\` + \`ssl_client_certificate\` (verify mode PEER with an
accept-all callback, CA list and store on the context), with depth 0 like Kong's call.

$(frag group1.md)

### Instruction counts (callgrind: immune to noise)

$(frag group1-instr.md)
$(per_openssl 1 "" "The same bench binary (built against the system's OpenSSL $(openssl version | awk '{print $2}') headers) with OpenSSL @V@'s
libssl.so.3 first on LD_LIBRARY_PATH (built by \`tests/openssl/build.sh\`), as inside OpenResty. Same method as above." group1.md group1-instr.md)

## Group 2: chain retrieval (client sends leaf + 2 intermediates)

Server-side, after a TLS 1.3 handshake in which the client sent leaf + 2 intermediates.
"Anchor" is lua-kong-nginx-module's algorithm, re-implemented in the bench only: on every
call a fresh memory BIO, \`PEM_write_bio_X509\` of the leaf and of each certificate of the
peer chain, then \`BIO_read\` into the caller's buffer. First calls: each fresh
connection gets exactly one call, anchor or ours alternately, timed on its own (medians
compared). Repeated calls: batches on one connection, interleaved, per-call CPU time.
Both produce byte-identical PEM (checked).

$(frag group2.md)

## Group 4: what \`disable_http2_alpn\` costs a TLS 1.3 resumption offering h2

$(frag group4.md)

## Group 5: what the client hello form of \`request_client_certificate\` saves a reconnecting mutual-TLS client

Issue 12. Called from the client hello callback with \`ca_certs\`, \`request_client_certificate\`
binds the session to what it verifies, so a client that comes back with its session
resumes; called from the certificate callback (Kong's placement) it makes the session
unresumable, as Kong's \`disable_session_reuse\` pairing does. The saving is the ratio of
CPU per reconnection, hello form / Kong's pairing.

$(frag group5.md)
$(per_openssl 5 group5.md "The same bench binary with OpenSSL @V@'s libssl.so.3 first on LD_LIBRARY_PATH, as for group 1." group5.md)

## Group 6: server CPU per full mutual-TLS handshake against the CA set size

Issue 18. \`request_client_certificate(ca)\` gets the CA set on every connection; the
static configuration nginx uses for \`ssl_verify_client optional_no_ca\` +
\`ssl_client_certificate\` builds its verify store and CA list once, with the context.
The ratios say what a full handshake costs the server with our call, in either form,
over the static configuration with the same CAs.

$(frag group6.md)

### Instruction counts (callgrind: immune to noise)

$(frag group6-instr.md)
$(per_openssl 6 group6.md "The same bench binary with OpenSSL @V@'s libssl.so.3 first on LD_LIBRARY_PATH, as for group 1." group6.md group6-instr.md)

## Group 3: through nginx

$(frag group3.md)
EOF
