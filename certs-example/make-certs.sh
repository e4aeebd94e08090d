#!/bin/sh
# Creates demo certificate material for mailcloak's mutual TLS with the
# openssl command line: a demo CA, a server certificate for the cluster name,
# one client certificate per Postfix node, and a second CA for a CA rotation
# drill. Every private key is generated here, on the machine that runs the
# script; none is shipped. For tests and drills only: the keys are not
# encrypted and the CAs have no revocation infrastructure beyond a CRL file.
#
#   make-certs.sh OUTDIR [CLUSTER_NAME] [NODE ...]
#
# Defaults: CLUSTER_NAME mailcloak.example.internal, nodes mx1 mx2.
set -eu

[ $# -ge 1 ] || { echo "usage: $0 OUTDIR [CLUSTER_NAME] [NODE ...]" >&2; exit 2; }
out=$1
shift
cluster=${1:-mailcloak.example.internal}
[ $# -ge 1 ] && shift
nodes=${*:-"mx1 mx2"}
days=${CERT_DAYS:-365}

mkdir -p "$out"
umask 077

# Creates a self-signed CA: $1 file stem, $2 common name.
make_ca() {
    openssl req -x509 -new -nodes -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 \
        -keyout "$out/$1.key" -out "$out/$1.crt" -days "$days" -subj "/CN=$2" \
        -addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign,cRLSign" \
        2>/dev/null
}

# Issues a leaf certificate: $1 CA stem, $2 file stem, $3 CN, $4 extended key usage, $5 subjectAltName.
issue() {
    openssl req -new -nodes -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 \
        -keyout "$out/$2.key" -out "$out/$2.csr" -subj "/CN=$3" 2>/dev/null
    printf 'basicConstraints=critical,CA:FALSE\nkeyUsage=critical,digitalSignature\nextendedKeyUsage=%s\nsubjectAltName=%s\n' \
        "$4" "$5" >"$out/$2.ext"
    openssl x509 -req -in "$out/$2.csr" -CA "$out/$1.crt" -CAkey "$out/$1.key" -CAcreateserial \
        -out "$out/$2.crt" -days "$days" -extfile "$out/$2.ext" 2>/dev/null
    rm -f "$out/$2.csr" "$out/$2.ext"
}

make_ca ca "mailcloak demo CA"
make_ca ca2 "mailcloak demo CA 2"
issue ca server "$cluster" serverAuth "DNS:$cluster,DNS:localhost,IP:127.0.0.1,IP:::1"
issue ca2 server-ca2 "$cluster" serverAuth "DNS:$cluster,DNS:localhost,IP:127.0.0.1,IP:::1"
for node in $nodes; do
    issue ca "client-$node" "$node" clientAuth "DNS:$node,URI:spiffe://mail.example/node/$node"
    issue ca2 "client-$node-ca2" "$node" clientAuth "DNS:$node,URI:spiffe://mail.example/node/$node"
done
cat "$out/ca.crt" "$out/ca2.crt" >"$out/ca-bundle-overlap.crt"

# An RSA server key, to show that RSA and ECDSA keys both work.
openssl req -new -nodes -newkey rsa:2048 -keyout "$out/server-rsa.key" -out "$out/server-rsa.csr" \
    -subj "/CN=$cluster" 2>/dev/null
printf 'basicConstraints=critical,CA:FALSE\nkeyUsage=critical,digitalSignature,keyEncipherment\nextendedKeyUsage=serverAuth\nsubjectAltName=DNS:%s,DNS:localhost,IP:127.0.0.1,IP:::1\n' \
    "$cluster" >"$out/server-rsa.ext"
openssl x509 -req -in "$out/server-rsa.csr" -CA "$out/ca.crt" -CAkey "$out/ca.key" -CAcreateserial \
    -out "$out/server-rsa.crt" -days "$days" -extfile "$out/server-rsa.ext" 2>/dev/null
rm -f "$out/server-rsa.csr" "$out/server-rsa.ext"

# Negative cases for drills and tests: a client certificate that has
# expired, one that the CA revoked (listed in ca.crl), and one signed by a
# CA that the server does not trust. `openssl ca` keeps the demo CA's
# database in ca-db/, from which the CRL is made.
mkdir -p "$out/ca-db"
: >"$out/ca-db/index.txt"
echo 1000 >"$out/ca-db/crlnumber"
openssl rand -hex 8 >"$out/ca-db/serial"
cat >"$out/ca-db/openssl.cnf" <<EOF
[ca]
default_ca = demo
[demo]
dir = $out/ca-db
database = \$dir/index.txt
new_certs_dir = \$dir
serial = \$dir/serial
crlnumber = \$dir/crlnumber
certificate = $out/ca.crt
private_key = $out/ca.key
default_md = sha256
default_crl_days = $days
policy = any
unique_subject = no
copy_extensions = none
[any]
commonName = supplied
[client]
basicConstraints = critical,CA:FALSE
keyUsage = critical,digitalSignature
extendedKeyUsage = clientAuth
EOF

# Signs a client certificate with `openssl ca`: $1 file stem, $2 CN, then more `openssl ca` options.
ca_issue() {
    stem=$1
    name=$2
    shift 2
    openssl req -new -nodes -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 \
        -keyout "$out/$stem.key" -out "$out/$stem.csr" -subj "/CN=$name" 2>/dev/null
    openssl ca -batch -notext -config "$out/ca-db/openssl.cnf" -extensions client \
        -in "$out/$stem.csr" -out "$out/$stem.crt" "$@" 2>/dev/null
    rm -f "$out/$stem.csr"
}
ca_issue client-expired expired-node -startdate 20200101000000Z -enddate 20200201000000Z
ca_issue client-revoked revoked-node -days "$days"
openssl ca -batch -config "$out/ca-db/openssl.cnf" -revoke "$out/client-revoked.crt" 2>/dev/null
openssl ca -batch -config "$out/ca-db/openssl.cnf" -gencrl -out "$out/ca.crl" 2>/dev/null
issue ca2 client-foreign foreign-node clientAuth "DNS:foreign-node"
chmod 0644 "$out"/*.crt "$out/ca.crl"
echo "wrote demo CA, server and client certificates to $out"
