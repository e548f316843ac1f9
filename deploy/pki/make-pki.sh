#!/usr/bin/env bash
# Generates a throwaway development/test PKI for uop-federation (see README.md next to this file).
#
#   make-pki.sh [--force] OUTDIR [CITY...]      (default cities: helsinki tallinn)
#
# Per city: OUTDIR/<city>/{ca.pem,ca.key,node.pem,node.key}. Deliberately broken certificates for
# negative tests: OUTDIR/bad/{other-ca.pem,other-ca.key} plus, per city C,
# {other-ca,wrong-san,expired}-C.{pem,key}. A chain through an intermediate CA, per city C:
# OUTDIR/C/intermediate/{ca.pem,ca.key} (issued by C's root ca.pem) and
# OUTDIR/C/intermediate/{node.pem,node.key}, where node.pem holds the leaf followed by the
# intermediate (what a node presents); leaf.pem is the leaf alone.
#
# Idempotent: a city whose node.pem exists and is valid (verifies against its ca.pem, matches
# node.key, names the city, not expiring within 30 days) is left alone; missing or broken bad
# certificates are (re)made. --force regenerates everything. Uses only the openssl CLI,
# ECDSA P-256 keys, SHA-256 signatures. Quiet on success: prints the absolute OUTDIR. Private
# keys are only ever written to files (mode 0600), never printed.
set -euo pipefail

prog=${0##*/}
usage() { echo "usage: $prog [--force] OUTDIR [CITY...]" >&2; exit 2; }

force=0
args=()
for a in "$@"; do
  case "$a" in
    --force) force=1 ;;
    -h|--help) usage ;;
    -*) echo "$prog: unknown option: $a" >&2; usage ;;
    *) args+=("$a") ;;
  esac
done
[[ ${#args[@]} -ge 1 ]] || usage
outdir=${args[0]}
cities=("${args[@]:1}")
[[ ${#cities[@]} -gt 0 ]] || cities=(helsinki tallinn)
for c in "${cities[@]}"; do
  # Cities become DNS labels, SPIFFE trust domains and file names.
  [[ "$c" =~ ^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$ && "$c" != bad && "$c" != evil ]] || {
    echo "$prog: invalid city name '$c' (want a lowercase DNS label, not 'bad'/'evil')" >&2; exit 2; }
done
command -v openssl >/dev/null || { echo "$prog: openssl not found" >&2; exit 1; }

mkdir -p "$outdir"                          # with the caller's umask; an existing dir is left as is
outdir=$(cd "$outdir" && pwd -P)
umask 077                                   # keys are born 0600; certificates are chmod'ed 0644
export OPENSSL_CONF=/dev/null               # no system openssl.cnf defaults leak into our certs
work=$(mktemp -d "$outdir/.make-pki.XXXXXX")   # same filesystem => final mv is an atomic rename
log=$work/openssl.log
trap 'rm -rf "$work"' EXIT

# Runs a command with its output captured; on failure shows the log (never contains key material:
# keys are only written with -out) and aborts.
run() {
  if ! "$@" >>"$log" 2>&1; then
    echo "$prog: command failed: $*" >&2
    cat "$log" >&2
    exit 1
  fi
}
quiet() { "$@" >/dev/null 2>&1; }

CA_DAYS=3650
NODE_DAYS=730
EXPIRED_START=20200101000000Z
EXPIRED_END=20210101000000Z
RENEW_BEFORE=$((30 * 86400))                # regenerate a city whose node cert expires within 30d

node_san() { echo "DNS:uopd.$1.example,URI:spiffe://$1.example/uopd,DNS:localhost,IP:127.0.0.1"; }

gen_key() { run openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 \
              -pkeyopt ec_param_enc:named_curve -out "$1"; chmod 0600 "$1"; }

serial() { echo "0x$(openssl rand -hex 16)"; }

# make_ca KEY PEM CN
make_ca() {
  local key=$1 pem=$2 cn=$3 cfg
  cfg=$(mktemp "$work/ca.XXXXXX.cnf")
  cat >"$cfg" <<EOF
[req]
distinguished_name = dn
prompt             = no
x509_extensions    = v3_ca
[dn]
CN = $cn
[v3_ca]
basicConstraints       = critical,CA:TRUE
keyUsage               = critical,keyCertSign,cRLSign
subjectKeyIdentifier   = hash
authorityKeyIdentifier = keyid:always
EOF
  gen_key "$key"
  run openssl req -new -x509 -config "$cfg" -key "$key" -sha256 -days "$CA_DAYS" \
    -set_serial "$(serial)" -out "$pem"
  chmod 0644 "$pem"
}

# make_leaf KEY PEM CA_PEM CA_KEY CN SAN [STARTDATE ENDDATE]
# Without dates the cert is valid from now for NODE_DAYS. With dates it is issued by `openssl ca`
# (the only openssl-3.0 CLI that can backdate) from a throwaway database under $work.
make_leaf() {
  local key=$1 pem=$2 ca_pem=$3 ca_key=$4 cn=$5 san=$6 start=${7:-} end=${8:-}
  local d
  d=$(mktemp -d "$work/leaf.XXXXXX")
  cat >"$d/req.cnf" <<EOF
[req]
distinguished_name = dn
prompt             = no
[dn]
CN = $cn
EOF
  cat >"$d/ext.cnf" <<EOF
[leaf]
basicConstraints       = critical,CA:FALSE
keyUsage               = critical,digitalSignature
extendedKeyUsage       = serverAuth,clientAuth
subjectAltName         = $san
subjectKeyIdentifier   = hash
authorityKeyIdentifier = keyid,issuer
EOF
  gen_key "$key"
  run openssl req -new -config "$d/req.cnf" -key "$key" -sha256 -out "$d/req.csr"
  if [[ -z "$start" ]]; then
    run openssl x509 -req -in "$d/req.csr" -CA "$ca_pem" -CAkey "$ca_key" -set_serial "$(serial)" \
      -sha256 -days "$NODE_DAYS" -extfile "$d/ext.cnf" -extensions leaf -out "$pem"
  else
    mkdir "$d/certs"
    : >"$d/index.txt"
    openssl rand -hex 16 >"$d/serial"
    cat >"$d/ca.cnf" <<EOF
[ca]
default_ca = throwaway
[throwaway]
database         = $d/index.txt
new_certs_dir    = $d/certs
serial           = $d/serial
default_md       = sha256
policy           = policy_any
unique_subject   = no
email_in_dn      = no
copy_extensions  = none
[policy_any]
commonName = supplied
EOF
    run openssl ca -batch -notext -config "$d/ca.cnf" -cert "$ca_pem" -keyfile "$ca_key" \
      -in "$d/req.csr" -startdate "$start" -enddate "$end" \
      -extfile "$d/ext.cnf" -extensions leaf -out "$pem"
  fi
  chmod 0644 "$pem"
}

# make_intermediate KEY PEM ROOT_PEM ROOT_KEY CN: a CA certificate issued by the root.
make_intermediate() {
  local key=$1 pem=$2 root_pem=$3 root_key=$4 cn=$5 d
  d=$(mktemp -d "$work/int.XXXXXX")
  cat >"$d/req.cnf" <<EOF
[req]
distinguished_name = dn
prompt             = no
[dn]
CN = $cn
EOF
  cat >"$d/ext.cnf" <<EOF
[v3_int]
basicConstraints       = critical,CA:TRUE,pathlen:0
keyUsage               = critical,keyCertSign,cRLSign
subjectKeyIdentifier   = hash
authorityKeyIdentifier = keyid:always
EOF
  gen_key "$key"
  run openssl req -new -config "$d/req.cnf" -key "$key" -sha256 -out "$d/req.csr"
  run openssl x509 -req -in "$d/req.csr" -CA "$root_pem" -CAkey "$root_key" \
    -set_serial "$(serial)" -sha256 -days "$CA_DAYS" -extfile "$d/ext.cnf" -extensions v3_int \
    -out "$pem"
  chmod 0644 "$pem"
}

same_key() {  # same_key CERT KEY: the key is the certificate's private key
  local a b
  a=$(openssl x509 -in "$1" -noout -pubkey 2>/dev/null) || return 1
  b=$(openssl pkey -in "$2" -pubout 2>/dev/null) || return 1
  [[ -n "$a" && "$a" == "$b" ]]
}

ca_ok() {     # ca_ok PEM KEY: a usable, self-signed CA with its key
  [[ -s "$1" && -s "$2" ]] && same_key "$1" "$2" &&
    quiet openssl verify -x509_strict -CAfile "$1" "$1" &&
    quiet openssl x509 -in "$1" -noout -checkend "$RENEW_BEFORE"
}

# leaf_ok PEM KEY CA_PEM HOST [expired]: signed by CA_PEM, matches KEY, valid for HOST, and either
# currently valid for > RENEW_BEFORE or (with "expired") already expired.
leaf_ok() {
  local pem=$1 key=$2 ca=$3 host=$4 mode=${5:-}
  [[ -s "$pem" && -s "$key" ]] && same_key "$pem" "$key" &&
    [[ $(openssl x509 -in "$pem" -noout -checkhost "$host" 2>/dev/null) == *"does match"* ]] ||
    return 1
  if [[ "$mode" == expired ]]; then
    quiet openssl verify -no_check_time -CAfile "$ca" "$pem" &&
      ! quiet openssl x509 -in "$pem" -noout -checkend 0
  else
    quiet openssl verify -x509_strict -purpose sslserver -CAfile "$ca" "$pem" &&
      quiet openssl verify -x509_strict -purpose sslclient -CAfile "$ca" "$pem" &&
      quiet openssl x509 -in "$pem" -noout -checkend "$RENEW_BEFORE"
  fi
}

# install_files SRCDIR DSTDIR NAME...: rename into place; certificates last so that a present
# .pem implies its key is there too.
install_files() {
  local src=$1 dst=$2 f
  shift 2
  mkdir -p "$dst"
  chmod 0755 "$dst"
  for f in "$@"; do [[ "$f" == *.key ]] && mv -f "$src/$f" "$dst/$f"; done
  for f in "$@"; do [[ "$f" != *.key ]] && mv -f "$src/$f" "$dst/$f"; done
  return 0
}

bad=$outdir/bad

# --- rogue CA (shared by all cities) ---------------------------------------------------------
rogue_new=0
if [[ $force -eq 1 ]] || ! ca_ok "$bad/other-ca.pem" "$bad/other-ca.key"; then
  s=$(mktemp -d "$work/rogue.XXXXXX")
  make_ca "$s/other-ca.key" "$s/other-ca.pem" "Rogue UOP CA"
  install_files "$s" "$bad" other-ca.key other-ca.pem
  rogue_new=1
fi

for c in "${cities[@]}"; do
  dir=$outdir/$c
  host=uopd.$c.example
  san=$(node_san "$c")

  # --- the city's CA and node certificate ------------------------------------------------------
  city_new=0
  if [[ $force -eq 1 ]] || ! ca_ok "$dir/ca.pem" "$dir/ca.key" ||
     ! leaf_ok "$dir/node.pem" "$dir/node.key" "$dir/ca.pem" "$host"; then
    s=$(mktemp -d "$work/$c.XXXXXX")
    make_ca "$s/ca.key" "$s/ca.pem" "$c UOP CA"
    make_leaf "$s/node.key" "$s/node.pem" "$s/ca.pem" "$s/ca.key" "$host" "$san"
    install_files "$s" "$dir" ca.key ca.pem node.key node.pem
    city_new=1
  fi

  # --- a node certificate issued through an intermediate CA ----------------------------------
  idir=$dir/intermediate
  if [[ $city_new -eq 1 ]] || ! [[ -s "$idir/ca.pem" && -s "$idir/node.pem" ]] ||
     ! quiet openssl verify -x509_strict -CAfile "$dir/ca.pem" "$idir/ca.pem" ||
     ! same_key "$idir/leaf.pem" "$idir/node.key" ||
     ! quiet openssl x509 -in "$idir/leaf.pem" -noout -checkend "$RENEW_BEFORE" ||
     ! quiet openssl verify -x509_strict -CAfile "$dir/ca.pem" -untrusted "$idir/ca.pem" \
       "$idir/leaf.pem"; then
    s=$(mktemp -d "$work/int-$c.XXXXXX")
    make_intermediate "$s/ca.key" "$s/ca.pem" "$dir/ca.pem" "$dir/ca.key" "$c UOP intermediate CA"
    make_leaf "$s/node.key" "$s/leaf.pem" "$s/ca.pem" "$s/ca.key" "$host" "$san"
    cat "$s/leaf.pem" "$s/ca.pem" >"$s/node.pem"
    chmod 0644 "$s/node.pem"
    install_files "$s" "$idir" ca.key node.key ca.pem leaf.pem node.pem
  fi

  # --- deliberately bad certificates -----------------------------------------------------------
  s=$(mktemp -d "$work/bad-$c.XXXXXX")
  # Same names as the node cert, but issued by the rogue CA: must fail chain validation.
  if [[ $rogue_new -eq 1 ]] ||
     ! leaf_ok "$bad/other-ca-$c.pem" "$bad/other-ca-$c.key" "$bad/other-ca.pem" "$host"; then
    make_leaf "$s/other-ca-$c.key" "$s/other-ca-$c.pem" "$bad/other-ca.pem" "$bad/other-ca.key" \
      "$host" "$san"
    install_files "$s" "$bad" "other-ca-$c.key" "other-ca-$c.pem"
  fi
  # Issued by the city's real CA, but for another identity: must fail name/SPIFFE-ID checks.
  if [[ $city_new -eq 1 ]] ||
     ! leaf_ok "$bad/wrong-san-$c.pem" "$bad/wrong-san-$c.key" "$dir/ca.pem" uopd.evil.example; then
    make_leaf "$s/wrong-san-$c.key" "$s/wrong-san-$c.pem" "$dir/ca.pem" "$dir/ca.key" \
      uopd.evil.example "$(node_san evil)"
    install_files "$s" "$bad" "wrong-san-$c.key" "wrong-san-$c.pem"
  fi
  # Right CA, right names, but expired: must fail the validity-period check.
  if [[ $city_new -eq 1 ]] ||
     ! leaf_ok "$bad/expired-$c.pem" "$bad/expired-$c.key" "$dir/ca.pem" "$host" expired; then
    make_leaf "$s/expired-$c.key" "$s/expired-$c.pem" "$dir/ca.pem" "$dir/ca.key" \
      "$host" "$san" "$EXPIRED_START" "$EXPIRED_END"
    install_files "$s" "$bad" "expired-$c.key" "expired-$c.pem"
  fi
done

echo "$outdir"
