#!/bin/sh
# A test PKI for trying the servers with mutual TLS: a CA, a server certificate for
# 127.0.0.1 and localhost, and a client certificate, all EC P-256, valid 30 days.
#   examples/make-test-pki.sh [DIR]        (default: ./pki)
# Writes DIR/ca.pem, ca.key, server.pem, server.key, client.pem, client.key. The keys are
# unencrypted and for tests only: never use them for anything real.
set -eu
dir=${1:-pki}
mkdir -p "$dir"
cd "$dir"
umask 077
days=30
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days "$days" \
  -subj "/CN=payhsm test CA" -keyout ca.key -out ca.pem 2>/dev/null
leaf() { # name, subject CN, extensions
  printf '%s\n' "$3" >"$1.ext"
  openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -subj "/CN=$2" \
    -keyout "$1.key" -out "$1.csr" 2>/dev/null
  openssl x509 -req -in "$1.csr" -CA ca.pem -CAkey ca.key -CAcreateserial -days "$days" \
    -extfile "$1.ext" -out "$1.pem" 2>/dev/null
  rm -f "$1.csr" "$1.ext"
}
leaf server localhost "subjectAltName=IP:127.0.0.1,DNS:localhost
extendedKeyUsage=serverAuth"
leaf client "payhsm test client" "extendedKeyUsage=clientAuth"
rm -f ca.srl
chmod 644 ca.pem server.pem client.pem
echo "test PKI in $dir: ca.pem, server.pem/.key, client.pem/.key"
