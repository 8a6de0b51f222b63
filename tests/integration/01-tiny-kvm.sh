#!/usr/bin/env bash
# The tiny boot-sector guest under KVM: create, start, its line on the
# serial console, pause, resume, kill, delete.
. "$(dirname "$0")/lib.sh"

[ -r /dev/kvm ] || skip "no /dev/kvm"
start_qmpd
q --json status | jq -e '.accels | index("kvm")' >/dev/null ||
	skip "qmpd says KVM is not usable here"

disk=$(tiny_disk tiny)
qq vm create tiny --accel kvm --disk "$disk" --memory 32 --display none >/dev/null
[ "$(vm_field tiny state)" = stopped ] || fail "a new VM is not stopped"
# The event stream sees every state change.
q --json events --vm tiny > "$T/events" 2>&1 &
events_pid=$!
EXTRA_CLEANUP='kill $events_pid 2>/dev/null'
sleep 0.2
qq vm start tiny >/dev/null
[ "$(vm_field tiny state)" = running ] || fail "vm start did not end running"
[ "$(vm_field tiny accel_used)" = kvm ] || fail "not running under kvm"
pid=$(vm_field tiny pid)
[ "$pid" = "$(vm_pid tiny)" ] || fail "pid $pid is not the pidfile's"
alive "$pid" || fail "QEMU pid $pid is not alive"
# QEMU runs as the VM's own uid (the owner of its runtime dir), never root.
quid=$(stat -c %u /proc/$pid)
[ "$quid" != 0 ] || fail "QEMU runs as root"
[ "$quid" = "$(stat -c %u "$STATE/vms/tiny")" ] ||
	fail "QEMU runs as uid $quid, not its runtime dir's owner"
# ...inside its seccomp sandbox, with no capabilities.
grep -q "^Seccomp:[[:space:]]*2" /proc/$pid/status || fail "QEMU has no seccomp filter"
grep -q "^CapEff:[[:space:]]*0000000000000000" /proc/$pid/status || fail "QEMU has capabilities"
# ...and holding none of qmpd's own fds: no state database, no client.
ls -l /proc/$pid/fd > "$T/fds"
grep -q "data.mdb\|lock.mdb" "$T/fds" && fail "QEMU inherited qmpd's LMDB: $(cat "$T/fds")"
# No open file is shared between qmpd and QEMU (a leaked fd would be).
shared=$(comm -12 <(readlink /proc/$QMPD_PID/fd/* | sort -u) \
    <(readlink /proc/$pid/fd/* | grep -v -e /dev/null -e qemu.log | sort -u))
[ -z "$shared" ] || fail "QEMU shares fds with qmpd: $shared"
wait_console tiny "QDESK TINY GUEST UP" 30
q vm console tiny | grep -q "QDESK TINY GUEST UP" || fail "vm console lacks the line"

qq vm pause tiny >/dev/null
[ "$(vm_field tiny state)" = paused ] || fail "not paused"
q_status 1 vm pause tiny
grep -q InvalidState "$T/last.err" || fail "pausing a paused VM: $(cat "$T/last.err")"
qq vm resume tiny >/dev/null
[ "$(vm_field tiny state)" = running ] || fail "not running after resume"

q_status 1 vm delete tiny
grep -q "stop it first" "$T/last.err" || fail "delete of a running VM was not refused"

qq vm kill tiny >/dev/null
[ "$(vm_field tiny state)" = stopped ] || fail "not stopped after kill"
[ "$(vm_field tiny reason)" = "killed by admin" ] || fail "reason: $(vm_field tiny reason)"
alive "$pid" && fail "QEMU $pid still alive after kill"
for s in starting running paused stopped; do
	grep -q "\"state\":\"$s\"" "$T/events" || fail "no $s event: $(cat "$T/events")"
done
kill $events_pid 2>/dev/null
qq vm delete tiny >/dev/null
q_status 1 vm show tiny
grep -q NotFound "$T/last.err" || fail "deleted VM still shows"
[ -d "$STATE/vms/tiny" ] && fail "runtime dir left behind"
log ok
