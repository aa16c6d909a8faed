#!/usr/bin/env bash
# Regenerates the TLS test fixtures (valid for 100 years): a CA, a server
# certificate for the name "prom.internal" only (so tests must use
# tls_config.server_name to reach 127.0.0.1), and a client certificate.
set -euo pipefail
cd "$(dirname "$0")"
days=36500
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes \
  -keyout ca.key -out ca.pem -days $days -subj "/CN=strata test CA" \
  -addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign,cRLSign"
for who in server client; do
  openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes \
    -keyout $who.key -out $who.csr -subj "/CN=$who"
done
printf 'subjectAltName=DNS:prom.internal\nextendedKeyUsage=serverAuth\nbasicConstraints=CA:FALSE\n' > server.ext
printf 'extendedKeyUsage=clientAuth\nbasicConstraints=CA:FALSE\n' > client.ext
for who in server client; do
  openssl x509 -req -in $who.csr -CA ca.pem -CAkey ca.key -CAcreateserial \
    -out $who.pem -days $days -extfile $who.ext
done
rm -f ./*.csr ./*.ext ca.srl ca.key
