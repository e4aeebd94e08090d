#!/bin/bash
# Runs a private Postfix instance (Debian's postfix package, 3.7) on loopback
# for end-to-end tests and the demo. The instance has its own configuration,
# queue, data and mail directories under DIR and leaves the system instance
# alone: /etc/postfix is never changed, and of its main.cf only
# multi_instance_directories is read (by postfix-script).
#
#   postfix.sh start DIR SMTP_PORT MAILCLOAK_HOSTPORT [--sasl-path PATH] [NAME=VALUE ...]
#   postfix.sh stop DIR
#   postfix.sh status DIR
#
# smtpd listens on 127.0.0.1:SMTP_PORT (smtpd_delay_reject=yes, the default)
# and on 127.0.0.1:SMTP_PORT+1 (smtpd_delay_reject=no, so that sender checks
# run at MAIL FROM). The policy service and the three socketmap tables
# (domain, alias, mailbox) are all on MAILCLOAK_HOSTPORT, for example
# 127.0.0.1:10040. See scripts/testenv/README.md for the layout under DIR.
#
# Must run as root: the Postfix master runs as root and drops to the postfix
# user. Needs no change in /etc/postfix because root may start an instance
# with any configuration directory (`postfix -c DIR/etc`).
set -euo pipefail

# Foundation's Process on Linux starts children with almost every signal
# blocked, and daemons keep that mask, so a master started that way ignores
# SIGTERM. Run again with an empty signal mask and default dispositions
# (perl is part of every Debian system). grep reads its own mask, inherited
# from this shell: bash's own status shows SIGCHLD blocked while it waits.
if [[ ${TESTENV_SIGNALS_RESET:-} != 1 ]] &&
    ! grep -Eq '^SigBlk:[[:space:]]*0+$' /proc/self/status; then
    export TESTENV_SIGNALS_RESET=1
    exec perl -MPOSIX -e '
        $SIG{$_} = "DEFAULT" for qw(HUP INT QUIT PIPE ALRM TERM CHLD USR1 USR2);
        sigprocmask(SIG_SETMASK, POSIX::SigSet->new) or die "sigprocmask: $!\n";
        exec { $ARGV[0] } @ARGV or die "exec $ARGV[0]: $!\n";
    ' /bin/bash "$0" "$@"
fi
unset TESTENV_SIGNALS_RESET

readonly READY_TIMEOUT_SECONDS=10
readonly STOP_TIMEOUT_SECONDS=10
# The capture transports run as this user and write mail under DIR.
readonly MAIL_USER=nobody

die() {
    echo "postfix.sh: $*" >&2
    exit 1
}

usage() {
    cat >&2 <<'EOF'
usage: postfix.sh start DIR SMTP_PORT MAILCLOAK_HOSTPORT [--sasl-path PATH] [NAME=VALUE ...]
       postfix.sh stop DIR
       postfix.sh status DIR
  DIR                 directory of the instance (created if missing)
  SMTP_PORT           smtpd port on 127.0.0.1; SMTP_PORT+1 is the smtpd_delay_reject=no port
  MAILCLOAK_HOSTPORT  policy and socketmap endpoint, 127.x.x.x:PORT
  --sasl-path PATH    enable Dovecot SASL (AUTH) with smtpd_sasl_path=PATH,
                      for example inet:127.0.0.1:12345
  NAME=VALUE          extra main.cf setting, applied last with postconf -e
EOF
    exit 2
}

# Checks that a value is a TCP port number in 1..65534 (SMTP_PORT+1 must fit).
check_port() {
    local name=$1 value=$2
    [[ $value =~ ^[0-9]{1,5}$ ]] && ((value >= 1 && value <= 65534)) ||
        die "invalid $name '$value': expected a port number from 1 to 65534"
}

# Succeeds while a process exists and has not exited. An exited daemon stays
# a zombie until PID 1 reaps it, and its /proc entry remains meanwhile.
is_running() {
    local stat state
    read -r stat 2>/dev/null <"/proc/$1/stat" || return 1
    # The state is the first field after the command name in parentheses.
    state=${stat##*) }
    [[ ${state%% *} != Z ]]
}

# Prints the master process id when the instance in DIR is running.
master_pid() {
    local dir=$1 pid_file=$1/spool/pid/master.pid pid
    [[ -r $pid_file ]] || return 1
    pid=$(tr -d ' \n' <"$pid_file")
    [[ $pid =~ ^[0-9]+$ ]] || return 1
    # A stale pid file can name a process of someone else: trust it only when
    # that process is a Postfix master started with this configuration.
    is_running "$pid" || return 1
    tr '\0' ' ' <"/proc/$pid/cmdline" | grep -q 'master' || return 1
    tr '\0' '\n' <"/proc/$pid/environ" 2>/dev/null | grep -qx "MAIL_CONFIG=$dir/etc" || return 1
    echo "$pid"
}

# Waits until smtpd on a 127.0.0.1 port sends its 220 greeting. The master
# accepts connections even when smtpd fails to start, so a connect alone
# proves nothing. Gives up early when the log shows a fatal error after byte
# LOG_OFFSET (an smtpd that cannot start is retried only after 60 s).
wait_for_greeting() {
    local port=$1 log=$2 log_offset=$3 deadline=$((SECONDS + READY_TIMEOUT_SECONDS)) line
    while ((SECONDS < deadline)); do
        if line=$(
            exec 3<>"/dev/tcp/127.0.0.1/$port" || exit 1
            IFS= read -r -t 2 reply <&3 || exit 1
            printf 'QUIT\r\n' >&3
            printf '%s' "$reply"
        ) 2>/dev/null && [[ $line == 220\ * ]]; then
            return 0
        fi
        if tail -c +$((log_offset + 1)) "$log" | grep -m 1 ': fatal: ' >&2; then
            return 1
        fi
        sleep 0.2
    done
    return 1
}

write_main_cf() {
    local dir=$1 smtp_port=$2 mailcloak=$3
    cat >"$dir/etc/main.cf" <<EOF
# Generated by scripts/testenv/postfix.sh; rewritten on every start.
compatibility_level = 3.6
config_directory = $dir/etc
queue_directory = $dir/spool
data_directory = $dir/data
maillog_file = $dir/postfix.log
maillog_file_prefixes = $dir

myhostname = mx.test
mydomain = test
myorigin = \$myhostname
mydestination =
local_recipient_maps =
local_transport = error:5.1.1 local delivery is disabled in the test instance
alias_maps =
alias_database =
inet_interfaces = 127.0.0.1
inet_protocols = ipv4
# 127.0.0.1 is not in mynetworks, so tests from loopback are remote clients.
mynetworks = 127.0.0.2/32
smtpd_banner = \$myhostname ESMTP
biff = no

# No DNS: the instance only talks to loopback.
smtpd_peername_lookup = no
smtp_dns_support_level = disabled
smtp_host_lookup = native
lmtp_host_lookup = native
# Reply without the 1 s pause that follows the 10th error in a session.
smtpd_error_sleep_time = 0s

# XCLIENT lets a test set the client address and a SASL login
# (sasl_method then arrives as XCLIENT).
smtpd_authorized_xclient_hosts = 127.0.0.0/8

# Domains, aliases and mailboxes are looked up in mailcloak's socketmap tables.
virtual_mailbox_domains = socketmap:inet:$mailcloak:domain
virtual_alias_maps = socketmap:inet:$mailcloak:alias
virtual_mailbox_maps = socketmap:inet:$mailcloak:mailbox
# virtual(8) rejects socketmap tables ("not allowed for security-sensitive
# data"), so a pipe(8) transport stores each message as one file in a folder
# named after the final recipient: DIR/mail/<address>/<queue id> for
# mailcloak's domains and DIR/relay/<address>/<queue id> for other domains.
# Nothing leaves the host: master.cf has no smtp or lmtp client service.
virtual_transport = mailcapture
default_transport = relaycapture
relay_transport = relaycapture

# The policy service alone decides relay and recipient access. smtpd exits
# with a fatal error unless reject_unauth_destination (or reject, defer...)
# appears in the list before any "permit". "check_client_access static:OK"
# permits every client, so reject_unauth_destination is never reached.
# On SMTP_PORT the policy service is asked once per RCPT TO; master.cf adds
# it to the sender restrictions of the SMTP_PORT+1 service, where it is also
# asked at MAIL FROM (protocol_state=MAIL).
mailcloak_policy = check_policy_service { inet:$mailcloak, timeout=10s,
    { default_action = 451 4.3.5 Policy service unavailable } }
smtpd_relay_restrictions =
smtpd_sender_restrictions =
smtpd_recipient_restrictions =
    \$mailcloak_policy,
    check_client_access static:OK,
    reject_unauth_destination
EOF
}

write_sasl_settings() {
    local dir=$1 sasl_path=$2
    cat >>"$dir/etc/main.cf" <<EOF

# SASL through a Dovecot auth service; AUTH is offered without TLS.
smtpd_sasl_auth_enable = yes
smtpd_sasl_type = dovecot
smtpd_sasl_path = $sasl_path
smtpd_sasl_security_options = noanonymous
smtpd_tls_auth_only = no
EOF
}

write_master_cf() {
    local dir=$1 smtp_port=$2
    cat >"$dir/etc/master.cf" <<EOF
# Generated by scripts/testenv/postfix.sh; rewritten on every start.
# No service runs chrooted, and there is no smtp or lmtp client.
# service type  private unpriv  chroot  wakeup  maxproc command + args
127.0.0.1:$smtp_port inet n - n - - smtpd
127.0.0.1:$((smtp_port + 1)) inet n - n - - smtpd
  -o syslog_name=postfix/smtpd-nodelay
  -o smtpd_delay_reject=no
  -o smtpd_sender_restrictions=\$mailcloak_policy
pickup    unix  n       -       n       60      1       pickup
cleanup   unix  n       -       n       -       0       cleanup
qmgr      unix  n       -       n       300     1       qmgr
rewrite   unix  -       -       n       -       -       trivial-rewrite
bounce    unix  -       -       n       -       0       bounce
defer     unix  -       -       n       -       0       bounce
trace     unix  -       -       n       -       0       bounce
verify    unix  -       -       n       -       1       verify
flush     unix  n       -       n       1000?   0       flush
proxymap  unix  -       -       n       -       -       proxymap
proxywrite unix -       -       n       -       1       proxymap
showq     unix  n       -       n       -       -       showq
error     unix  -       -       n       -       -       error
retry     unix  -       -       n       -       -       error
discard   unix  -       -       n       -       -       discard
anvil     unix  -       -       n       -       1       anvil
scache    unix  -       -       n       -       1       scache
postlog   unix-dgram n  -       n       -       1       postlogd
mailcapture unix -      n       n       -       -       pipe
  flags=FRDOhu> user=$MAIL_USER argv=$dir/etc/capture.sh $dir/mail \${recipient} \${queue_id}
relaycapture unix -     n       n       -       -       pipe
  flags=FRDOhu> user=$MAIL_USER argv=$dir/etc/capture.sh $dir/relay \${recipient} \${queue_id}
EOF
}

# Writes the program that the capture transports run.
write_capture_script() {
    local dir=$1
    cat >"$dir/etc/capture.sh" <<'EOF'
#!/bin/sh
# Generated by scripts/testenv/postfix.sh.
# Usage: capture.sh DIRECTORY RECIPIENT QUEUE_ID
# Stores the message on standard input, with its From_ line, as the file
# DIRECTORY/RECIPIENT/QUEUE_ID. Exit status 65 (EX_DATAERR) bounces the
# message, 75 (EX_TEMPFAIL) defers it.
case $2 in
    '' | */* | .*)
        echo "recipient '$2' cannot be used as a folder name" >&2
        exit 65
        ;;
esac
case $3 in
    '' | *[!0-9A-Za-z]*)
        echo "invalid queue id '$3'" >&2
        exit 65
        ;;
esac
mailbox=$1/$2
mkdir -p "$mailbox" || exit 75
temporary=$mailbox/.incoming.$$
if ! cat >"$temporary"; then
    rm -f "$temporary"
    exit 75
fi
name=$3
[ ! -e "$mailbox/$name" ] || name=$3.$$
# rename(2) is atomic, so a reader sees the whole message or no file.
mv "$temporary" "$mailbox/$name" || exit 75
EOF
    chmod 755 "$dir/etc/capture.sh"
}

# Creates the directories of the instance except the queue subdirectories.
prepare_dirs() {
    local dir=$1
    mkdir -p "$dir/etc" "$dir/spool" "$dir/data" "$dir/mail" "$dir/relay"
    chmod 755 "$dir" "$dir/etc" "$dir/spool"
    chown root:root "$dir/etc" "$dir/spool"
    chown postfix:postfix "$dir/data"
    chmod 700 "$dir/data"
    chown "$MAIL_USER:" "$dir/mail" "$dir/relay"
    chmod 755 "$dir/mail" "$dir/relay"
    touch "$dir/postfix.log"
    # Delivery agents run as MAIL_USER and open absolute paths under DIR.
    runuser -u "$MAIL_USER" -- test -w "$dir/mail" ||
        die "$dir/mail is not writable by $MAIL_USER: make every parent directory of $dir searchable (chmod o+x)"
}

cmd_start() {
    (($# >= 3)) || usage
    local dir=$1 smtp_port=$2 mailcloak=$3 sasl_path=""
    shift 3
    [[ $dir == /* ]] || dir=$PWD/$dir
    check_port SMTP_PORT "$smtp_port"
    [[ $mailcloak =~ ^127\.[0-9]{1,3}\.[0-9]{1,3}\.[0-9]{1,3}:([0-9]{1,5})$ ]] ||
        die "invalid MAILCLOAK_HOSTPORT '$mailcloak': expected 127.x.x.x:PORT (loopback only)"
    check_port MAILCLOAK_HOSTPORT "${BASH_REMATCH[1]}"

    local settings=()
    while (($# > 0)); do
        case $1 in
            --sasl-path)
                (($# >= 2)) || die "--sasl-path needs a value, for example inet:127.0.0.1:12345"
                sasl_path=$2
                shift 2
                ;;
            *=*)
                settings+=("$1")
                shift
                ;;
            *) die "invalid argument '$1': expected --sasl-path PATH or NAME=VALUE" ;;
        esac
    done

    # Restart a running instance so that it runs with the new arguments.
    if master_pid "$dir" >/dev/null; then
        cmd_stop "$dir"
    fi

    prepare_dirs "$dir"
    write_main_cf "$dir" "$smtp_port" "$mailcloak"
    [[ -z $sasl_path ]] || write_sasl_settings "$dir" "$sasl_path"
    write_master_cf "$dir" "$smtp_port"
    write_capture_script "$dir"
    if ((${#settings[@]} > 0)); then
        postconf -c "$dir/etc" -e "${settings[@]}"
    fi

    # postfix(1) paused 1.5 s before starting when main.cf had just been
    # written (seen with strace on 3.7.11): backdate the files.
    touch -d '-10 seconds' "$dir/etc/main.cf" "$dir/etc/master.cf"

    # "postfix start" first runs "postfix-script check-fatal", which creates
    # the queue directories and checks their owners.
    local log_offset
    log_offset=$(stat -c %s "$dir/postfix.log")
    postfix -c "$dir/etc" start 2>>"$dir/postfix.log" ||
        die "postfix start failed; see $dir/postfix.log"
    local port
    for port in "$smtp_port" "$((smtp_port + 1))"; do
        if ! wait_for_greeting "$port" "$dir/postfix.log" "$log_offset"; then
            cmd_stop "$dir" >&2
            die "smtpd sent no 220 greeting on 127.0.0.1:$port; see $dir/postfix.log"
        fi
    done
    echo "postfix: pid $(master_pid "$dir") smtp 127.0.0.1:$smtp_port nodelay 127.0.0.1:$((smtp_port + 1)) mailcloak $mailcloak log $dir/postfix.log"
}

cmd_stop() {
    (($# == 1)) || usage
    local dir=$1 pid deadline
    [[ $dir == /* ]] || dir=$PWD/$dir
    pid=$(master_pid "$dir") || {
        echo "postfix: not running in $dir"
        return 0
    }
    postfix -c "$dir/etc" stop 2>>"$dir/postfix.log" || true
    # "postfix stop" only signals the master: wait for it to exit.
    deadline=$((SECONDS + STOP_TIMEOUT_SECONDS))
    while is_running "$pid" && ((SECONDS < deadline)); do
        sleep 0.1
    done
    if is_running "$pid"; then
        kill -KILL "$pid" 2>/dev/null || true
        echo "postfix: master $pid did not exit within ${STOP_TIMEOUT_SECONDS}s; killed" >&2
    fi
    echo "postfix: stopped pid $pid"
}

cmd_status() {
    (($# == 1)) || usage
    local dir=$1 pid
    [[ $dir == /* ]] || dir=$PWD/$dir
    if pid=$(master_pid "$dir"); then
        echo "postfix: running pid $pid"
    else
        echo "postfix: not running in $dir"
        return 1
    fi
}

(($# >= 1)) || usage
[[ $(id -u) == 0 ]] || die "must run as root (the Postfix master runs as root)"
command=$1
shift
case $command in
    start) cmd_start "$@" ;;
    stop) cmd_stop "$@" ;;
    status) cmd_status "$@" ;;
    *) usage ;;
esac
