# Shell functions shared by demo.sh and bench.sh: a throwaway PostgreSQL
# database, the Keycloak development directory, and the demo data. Source it
# from the repository root with `demo_dir` set to a folder the functions own.

# Starts PostgreSQL on 127.0.0.1:$1 under $demo_dir/pg, creates the database
# mailcloak, and sets database_url.
demo_start_postgres() {
    admin_url=$(scripts/testenv/postgres.sh start "$demo_dir/pg" "$1")
    psql "$admin_url" -qtAc "SELECT 1 FROM pg_database WHERE datname = 'mailcloak'" | grep -q 1 \
        || psql "$admin_url" -qc "CREATE DATABASE mailcloak"
    database_url="postgresql://postgres@127.0.0.1:$1/mailcloak"
}

demo_stop_postgres() {
    scripts/testenv/postgres.sh stop "$demo_dir/pg" >/dev/null 2>&1 || true
}

# Starts the Keycloak development directory on 127.0.0.1:$1 with the demo
# realm and sets keycloak_pid; waits until it accepts requests.
demo_start_keycloak() {
    python3 dev/keycloak-dev/keycloak_dev.py --port "$1" --data dev/keycloak-dev/demo-realm.json \
        >"$demo_dir/keycloak-dev.log" 2>&1 &
    keycloak_pid=$!
    tries=0
    until grep -q '^listening' "$demo_dir/keycloak-dev.log" 2>/dev/null; do
        tries=$((tries + 1))
        if [ "$tries" -gt 50 ]; then
            echo "Keycloak development directory did not start; see $demo_dir/keycloak-dev.log" >&2
            return 1
        fi
        sleep 0.1
    done
}

demo_stop_keycloak() {
    [ -n "${keycloak_pid:-}" ] && kill "$keycloak_pid" 2>/dev/null || true
}

# Migrates and seeds the demo data with mailcloakctl at $1; safe to repeat.
demo_seed() {
    ctl=$1
    MAILCLOAK_DATABASE_URL="$database_url"
    export MAILCLOAK_DATABASE_URL
    "$ctl" migrate >/dev/null
    "$ctl" domains list | grep -q '^example.com' || "$ctl" domains add example.com
    "$ctl" aliases list | grep -q '^sales@example.com' || "$ctl" aliases add sales@example.com alice
    "$ctl" aliases list | grep -q '^support@example.com' || "$ctl" aliases add support@example.com bob
    if ! "$ctl" apps list | grep -q '^crm'; then
        printf 'demo-app-secret\n' | "$ctl" apps add crm --secret-stdin
        "$ctl" apps allow crm noreply@example.com
    fi
}

# Writes a configuration for a listener on 127.0.0.1:$1 with $2 reactor threads to
# $3. With $4, a certificate folder from certs-example/make-certs.sh, the
# listener terminates mutual TLS and grants node mx1 policy and every map.
demo_write_config() {
    if [ -n "${4:-}" ]; then
        listener_tls="
    tls:
      certificate: $4/server.crt
      key: $4/server.key
      client_ca: $4/ca.crt
      crl: [$4/ca.crl]
    acl:
      - name: mx1
        identities: [\"uri:spiffe://mail.example/node/mx1\"]
        services: [policy, \"socketmap:*\"]"
    else
        listener_tls=""
    fi
    cat >"$3" <<YAML
listeners:
  - name: demo
    address: "tcp:127.0.0.1:$1"$listener_tls
server:
  reactor_threads: $2
  # The demo runs as whoever starts it, often root on a throwaway machine.
  allow_root: true
database:
  url: "$database_url"
identity:
  provider: keycloak
  keycloak:
    base_url: "http://127.0.0.1:$keycloak_port"
    realm: mail
    client_id: mailcloak
    client_secret: demo-secret
log:
  level: info
YAML
}

# Starts stunnel as Postfix node mx1 would run it, from
# deploy/postfix-node/stunnel-mailcloak.conf: plain on 127.0.0.1:$1, mutual
# TLS to 127.0.0.1:$2, with the certificates in $3. Sets stunnel_pid.
demo_start_stunnel() {
    sed -e 's/^foreground = no/foreground = yes/' \
        -e "s|^pid = .*|pid =|" \
        -e "s|^output = .*|output = $demo_dir/stunnel.log|" \
        -e '/^setuid/d' -e '/^setgid/d' \
        -e "s|^accept = 127.0.0.1:10027|accept = 127.0.0.1:$1|" \
        -e "s|^connect = .*|connect = 127.0.0.1:$2|" \
        -e "s|/etc/stunnel/mailcloak/client\\.|$3/client-mx1.|" \
        -e "s|/etc/stunnel/mailcloak/ca.crt|$3/ca.crt|" \
        deploy/postfix-node/stunnel-mailcloak.conf >"$demo_dir/stunnel.conf"
    stunnel4 "$demo_dir/stunnel.conf" >"$demo_dir/stunnel.out" 2>&1 &
    stunnel_pid=$!
}

demo_stop_stunnel() {
    [ -n "${stunnel_pid:-}" ] && kill "$stunnel_pid" 2>/dev/null || true
}
