#!/usr/bin/env bash
# Makes the demo's throw-away PKI with the openssl command line (`make demo-certs`):
#   server-ca.pem / server.pem / server.key       the gateway's certificate (both names)
#   client-cas.pem                                the CA list mtls.demo.test sends
#   client.pem, client.key, client-chain.pem      the demo client: leaf, key, leaf+intermediate
#   rogue.pem, rogue.key                          a client certificate from an unrelated CA
# Existing files are kept; delete the directory to start over.
set -euo pipefail
DIR="${1:-$(cd "$(dirname "$0")/.." && pwd)/target/demo/certs}"
mkdir -p "$DIR"
cd "$DIR"
if [ -s client-chain.pem ] && [ -s rogue.pem ] && [ -s server.pem ]; then
  echo "demo certificates: $DIR (kept)"
  exit 0
fi

key() { openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$1.key" 2>/dev/null; }
ext() { printf '%s\n' "$@" > ext.cnf; }
# ca NAME SUBJECT: a self-signed root
ca() {
  key "$1"
  ext "basicConstraints=critical,CA:TRUE" "keyUsage=critical,keyCertSign,cRLSign" \
      "subjectKeyIdentifier=hash"
  openssl req -new -x509 -key "$1.key" -subj "$2" -days 30 -out "$1.pem" \
      -extensions v3 -config <(printf '[req]\ndistinguished_name=dn\n[dn]\n[v3]\n'; cat ext.cnf)
}
# issue NAME SUBJECT ISSUER EXT...: a certificate signed by ISSUER
issue() {
  local name="$1" subj="$2" issuer="$3"; shift 3
  key "$name"
  ext "$@"
  openssl req -new -key "$name.key" -subj "$subj" -out "$name.csr"
  openssl x509 -req -in "$name.csr" -CA "$issuer.pem" -CAkey "$issuer.key" -CAcreateserial \
      -days 30 -extfile ext.cnf -out "$name.pem" 2>/dev/null
  rm -f "$name.csr"
}

ca server-ca "/O=kong-client-tls demo/CN=kong-client-tls demo server CA"
issue server "/O=kong-client-tls demo/CN=mtls.demo.test" server-ca \
  "basicConstraints=CA:FALSE" "keyUsage=digitalSignature" "extendedKeyUsage=serverAuth" \
  "subjectAltName=DNS:mtls.demo.test,DNS:public.demo.test"

ca client-root "/O=kong-client-tls demo/CN=kong-client-tls demo root CA"
issue client-intermediate "/O=kong-client-tls demo/CN=kong-client-tls demo intermediate CA" \
  client-root "basicConstraints=critical,CA:TRUE,pathlen:0" "keyUsage=critical,keyCertSign,cRLSign"
issue client "/O=kong-client-tls demo/CN=demo client" client-intermediate \
  "basicConstraints=CA:FALSE" "keyUsage=digitalSignature" "extendedKeyUsage=clientAuth"
cat client.pem client-intermediate.pem > client-chain.pem
cat client-root.pem client-intermediate.pem > client-cas.pem

ca rogue-ca "/O=elsewhere/CN=rogue CA"
issue rogue "/O=elsewhere/CN=rogue client" rogue-ca \
  "basicConstraints=CA:FALSE" "keyUsage=digitalSignature" "extendedKeyUsage=clientAuth"

rm -f ext.cnf ./*.srl
chmod 0644 ./*.pem
echo "demo certificates: $DIR (new)"
