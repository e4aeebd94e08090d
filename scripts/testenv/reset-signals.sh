# Sourced by the testenv scripts before anything else, from bash.
#
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
