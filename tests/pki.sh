#!/usr/bin/env bash
# Makes a test PKI with openssl in DIR (created if missing), for the TLS tests of the bindings:
#   ca.pem                      a CA ("wsbroker test CA")
#   server.pem, server.key      signed by it, for 127.0.0.1 and localhost (serverAuth)
#   client.pem, client.key      signed by it, CN "wsbroker test client" (clientAuth)
# usage: tests/pki.sh DIR
set -euo pipefail

dir=${1:?usage: $0 DIR}
mkdir -p "$dir"
cd "$dir"
# openssl, quiet unless it fails.
ossl() {
    local out
    if ! out=$(openssl "$@" 2>&1); then
        printf 'openssl %s failed:\n%s\n' "$*" "$out" >&2
        return 1
    fi
}

ossl req -x509 -newkey rsa:2048 -nodes -keyout ca.key -out ca.pem -days 2 -subj "/CN=wsbroker test CA" \
    -addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign,cRLSign"
leaf() { # NAME SUBJECT EXTENSIONS
    ossl req -newkey rsa:2048 -nodes -keyout "$1.key" -out "$1.csr" -subj "$2"
    printf '%s\nbasicConstraints=CA:FALSE\nkeyUsage=digitalSignature,keyEncipherment\n' "$3" >"$1.cnf"
    ossl x509 -req -in "$1.csr" -CA ca.pem -CAkey ca.key -CAcreateserial -out "$1.pem" -days 2 -extfile "$1.cnf"
}
leaf server "/CN=127.0.0.1" "subjectAltName=IP:127.0.0.1,DNS:localhost
extendedKeyUsage=serverAuth"
leaf client "/CN=wsbroker test client" "extendedKeyUsage=clientAuth"
