#!/usr/bin/env bash
# Writes a throw-away PKI for the C tests into DIR: a server identity, and a client
# hierarchy root -> intermediate -> leaf (EC P-256).
set -euo pipefail
dir=$1
mkdir -p "$dir"
cd "$dir"
key() { openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$1.key" 2>/dev/null; }
ca_ext='basicConstraints=critical,CA:TRUE
keyUsage=critical,keyCertSign,cRLSign'
leaf_ext='basicConstraints=CA:FALSE
keyUsage=digitalSignature,keyEncipherment'
printf '%s\n' "$ca_ext" > ca.ext
printf '%s\n' "$leaf_ext" > leaf.ext
key root
openssl req -x509 -new -key root.key -subj "/O=kong-client-tls C tests/CN=C Root CA" -days 30 \
  -addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign,cRLSign" \
  -out root.pem 2>/dev/null
issue() { # name subject issuer extfile
  key "$1"
  openssl req -new -key "$1.key" -subj "$2" -out "$1.csr" 2>/dev/null
  openssl x509 -req -in "$1.csr" -CA "$3.pem" -CAkey "$3.key" -CAcreateserial -days 30 \
    -extfile "$4" -out "$1.pem" 2>/dev/null
}
issue intermediate "/O=kong-client-tls C tests/CN=C Intermediate CA" root ca.ext
issue leaf "/O=kong-client-tls C tests/CN=C client" intermediate leaf.ext
issue server "/O=kong-client-tls C tests/CN=localhost" root leaf.ext
cat leaf.pem intermediate.pem > chain.pem
