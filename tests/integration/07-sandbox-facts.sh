#!/usr/bin/env bash
# Why qmpd launches QEMU itself (fork, setsid, fork, exec as qdesk-vm):
# under the seccomp sandbox qmpd uses, -daemonize and -runas are killed
# with SIGSYS. If a QEMU update changes that, this test says so.
. "$(dirname "$0")/lib.sh"

sandbox=on,obsolete=deny,elevateprivileges=deny,spawn=deny,resourcecontrol=deny
timeout 10 qemu-system-x86_64 -machine none -nodefaults -display none -S \
    -sandbox $sandbox -daemonize -pidfile "$T/d.pid" 2>/dev/null
rc=$?
[ $rc -eq 159 ] || fail "-daemonize under spawn=deny: exit $rc, expected SIGSYS (159)"
timeout 10 qemu-system-x86_64 -machine none -nodefaults -display none -S \
    -sandbox $sandbox -runas nobody 2>/dev/null &
p=$!
wait $p
rc=$?
[ $rc -eq 159 ] || fail "-runas under elevateprivileges=deny: exit $rc, expected SIGSYS (159)"
log ok
