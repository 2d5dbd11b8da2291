#!/usr/bin/env bash
# Writes a throw-away PKI for the C tests into DIR (EC P-256): a server identity; a client
# hierarchy root -> intermediate -> leaf; and two unrelated client CAs, ca_a and ca_b,
# with client_a issued directly by ca_a, so that at verify depth 0 client_a verifies
# against ca_a (X509_V_OK) and not against ca_b.
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
root() { # name subject
  key "$1"
  openssl req -x509 -new -key "$1.key" -subj "$2" -days 30 \
    -addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign,cRLSign" \
    -out "$1.pem" 2>/dev/null
}
issue() { # name subject issuer extfile
  key "$1"
  openssl req -new -key "$1.key" -subj "$2" -out "$1.csr" 2>/dev/null
  openssl x509 -req -in "$1.csr" -CA "$3.pem" -CAkey "$3.key" -CAcreateserial -days 30 \
    -extfile "$4" -out "$1.pem" 2>/dev/null
}
root root "/O=kong-client-tls C tests/CN=C Root CA"
issue intermediate "/O=kong-client-tls C tests/CN=C Intermediate CA" root ca.ext
issue leaf "/O=kong-client-tls C tests/CN=C client" intermediate leaf.ext
issue server "/O=kong-client-tls C tests/CN=localhost" root leaf.ext
cat leaf.pem intermediate.pem > chain.pem
root ca_a "/O=kong-client-tls C tests/CN=C Client CA A"
root ca_b "/O=kong-client-tls C tests/CN=C Client CA B"
issue client_a "/O=kong-client-tls C tests/CN=C client of A" ca_a leaf.ext
