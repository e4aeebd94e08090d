#!/bin/sh
# Sets up and runs a local mailcloak demo on loopback: installs what is
# missing, builds in release mode, starts a throwaway PostgreSQL cluster and
# the Keycloak development directory, migrates and seeds demo data, makes
# demo certificates, and runs mailcloak with a mutual-TLS listener on
# 127.0.0.1:10443. A stunnel client, set up as on a Postfix node, gives
# Postfix's tools a plain endpoint on 127.0.0.1:10027. Ctrl-C stops everything.
# Its files live under /tmp/mailcloak-demo.
set -eu

cd "$(dirname "$0")/.."
[ -x /opt/swift/usr/bin/swift ] && PATH="/opt/swift/usr/bin:$PATH"
export PATH
. scripts/lib/demo-env.sh

port=${MAILCLOAK_DEMO_PORT:-10027}
tls_port=${MAILCLOAK_DEMO_TLS_PORT:-10443}
pg_port=${MAILCLOAK_DEMO_PG_PORT:-15433}
keycloak_port=${MAILCLOAK_DEMO_KEYCLOAK_PORT:-18080}
demo_dir=/tmp/mailcloak-demo

scripts/install-deps.sh
swift build -c release --product mailcloak
swift build -c release --product mailcloakctl
bin=$(swift build -c release --show-bin-path)

# Start from empty data each time: stop a cluster an earlier run left behind, then remove it.
[ -d "$demo_dir/pg" ] && demo_stop_postgres
rm -rf "$demo_dir"
mkdir -p "$demo_dir"
chmod 0755 "$demo_dir"
mailcloak_pid=""
cleanup() {
    [ -n "$mailcloak_pid" ] && kill "$mailcloak_pid" 2>/dev/null && wait "$mailcloak_pid" 2>/dev/null
    demo_stop_stunnel
    demo_stop_keycloak
    demo_stop_postgres
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

demo_start_postgres "$pg_port"
demo_start_keycloak "$keycloak_port"
demo_seed "$bin/mailcloakctl"
certs-example/make-certs.sh "$demo_dir/certs" mailcloak.example.internal mx1 >/dev/null
demo_write_config "$tls_port" 0 "$demo_dir/mailcloak.yaml" "$demo_dir/certs"
"$bin/mailcloak" check --config "$demo_dir/mailcloak.yaml" || true

cat <<TEXT

mailcloak demo is starting: mutual TLS on 127.0.0.1:$tls_port, reached through the
stunnel client of node mx1 on 127.0.0.1:$port, as a Postfix node reaches it.
Try, from another shell:
  postmap -q sales@example.com socketmap:inet:127.0.0.1:$port:alias     # alice@example.com
  postmap -q example.com socketmap:inet:127.0.0.1:$port:domain          # example.com
  postmap -q alice@example.com socketmap:inet:127.0.0.1:$port:mailbox   # alice@example.com
  postmap -q nobody@example.com socketmap:inet:127.0.0.1:$port:mailbox  # (not found, exit 1)
  printf 'request=smtpd_access_policy\\nprotocol_state=RCPT\\nsender=x@remote.test\\nrecipient=nobody@example.com\\n\\n' \\
      | python3 -c 'import socket,sys; s=socket.create_connection(("127.0.0.1",$port)); s.sendall(sys.stdin.buffer.read()); print(s.recv(200).decode())'
                                                                      # action=550 5.1.1 No such user
  $bin/mailcloakctl --database-url $database_url aliases add info@example.com bob
  sleep 1; postmap -q info@example.com socketmap:inet:127.0.0.1:$port:alias   # bob@example.com
Stop with Ctrl-C (or kill -TERM $$).

TEXT
# In the background with wait, so that the traps run as soon as a signal arrives.
"$bin/mailcloak" serve --config "$demo_dir/mailcloak.yaml" &
mailcloak_pid=$!
demo_start_stunnel "$port" "$tls_port" "$demo_dir/certs"
wait "$mailcloak_pid"
