#!/usr/bin/env bash
# Live migration between two qmpds without a cluster (issue 14), the
# target's qmpd dying after its switchover's placement step (none
# without a cluster: it goes on at once) but before `cont`
# (QDESK_TEST_HOOK=die-before-cont:desk, qmpd/test-hook.c). With no
# placement to say who owns the desktop, the source owns it: its
# migrate.finish is cut off, it resumes its own copy and says so; the
# target's paused half is killed by its restarted qmpd (its note says it
# was a half, and there is no etcd to name it). Exactly one QEMU of desk
# is left, the source's, in the same boot, its counter going on.
. "$(dirname "$0")/lib.sh"

grep -q "QDESK_TEST_HOOKS" "$top/build/build.ninja" ||
	fail "qmpd is built without test hooks (meson configure build -Dtest_hooks=true)"
STATE2=$T/state2
QMPD2_PID=
EXTRA_CLEANUP='cleanup2'
cleanup2() {
	if [ -n "$QMPD2_PID" ]; then
		kill -TERM "$QMPD2_PID" 2>/dev/null
		for i in $(seq 1 50); do
			alive "$QMPD2_PID" || break
			sleep 0.1
		done
	fi
	kill_qemus "$STATE2"
}
q2() { QDESK_SOCKET=$STATE2/qmpd.sock "$QDESK_BIN" "$@"; }
B=unix:$STATE2/qmpd.sock
# (This test's slot of uids and SPICE ports, lib.sh, in halves.)
UIDS_A=$VM_UIDS_FIRST-$((VM_UIDS_FIRST + 499))
UIDS_B=$((VM_UIDS_FIRST + 500))-$VM_UIDS_LAST
PORTS_B=$((SPICE_PORTS_FIRST + 50))-$SPICE_PORTS_LAST
# start_qmpd2 [ENV=VALUE]: the second qmpd, optionally armed.
start_qmpd2() {
	local i
	# In a subshell: bash then says nothing when the hook kills it.
	( env "$@" "$QMPD" -f -v --state-dir "$STATE2" --vm-uids "$UIDS_B" \
	    --spice-ports "$PORTS_B" >>"$T/qmpd2.log" 2>&1 &
	echo $! >"$T/qmpd2.pid" )
	QMPD2_PID=$(cat "$T/qmpd2.pid")
	for i in $(seq 1 400); do
		[ -S "$STATE2/qmpd.sock" ] && q2 status >/dev/null 2>&1 && return 0
		sleep 0.05
	done
	fail "the second qmpd did not come up: $(tail -n 3 "$T/qmpd2.log")"
}
ctr_last() { tr -d '\r' <"$STATE/vms/desk/serial.log" | grep -a "^CTR [0-9][0-9]*$" | tail -n 1 | tr -dc 0-9; }

start_qmpd --vm-uids "$UIDS_A" --spice-ports "$SPICE_PORTS_FIRST-$((SPICE_PORTS_FIRST + 49))"
start_qmpd2 QDESK_TEST_HOOK=die-before-cont:desk
qq vm create desk --accel tcg --memory 256 --kernel "$GUESTS/vmlinuz" \
    --initrd "$GUESTS/initrd.img" --append "console=ttyS0 no_timer_check" --display none >/dev/null
qq vm start desk >/dev/null
wait_console desk "QDESK GUEST READY" 90
wait_console desk "# " 30
pid_a=$(vm_pid desk)
serial_send desk 'i=0; while :; do echo "CTR $i"; i=$((i+1)); usleep 50000; done >/dev/ttyS0 2>&1 &'
wait_console desk "CTR 20" 30

rc=0
out=$(q --json vm migrate desk "$B" 2>&1) || rc=$?
[ "$rc" != 0 ] || fail "the migration reported success with the target's qmpd dead before cont: $out"
for i in $(seq 1 100); do
	alive "$QMPD2_PID" || break
	sleep 0.1
done
alive "$QMPD2_PID" && fail "the target's qmpd is alive after the migration: $out"
QMPD2_PID=
grep -q "desk: test hook die-before-cont: qmpd dies here" "$T/qmpd2.log" ||
	fail "the target's qmpd did not die at the hook: $(tail -n 5 "$T/qmpd2.log"); migrate: $out"
echo "$out" | grep -q "keeps running here" || fail "the answer does not say where desk runs: $out"
log "target's qmpd died before cont; migrate said: $out"
[ "$(vm_field desk state)" = running ] || fail "desk on the source is $(vm_field desk state)"
[ "$(vm_pid desk)" = "$pid_a" ] && alive "$pid_a" || fail "the source's QEMU is not the one that ran desk"
n=$(ctr_last)
for i in $(seq 1 100); do
	[ "$(ctr_last)" -gt "$n" ] && break
	sleep 0.1
done
[ "$(ctr_last)" -gt "$n" ] || fail "desk's counter does not move on the source after the failed switchover"
# The half on B: its QEMU lives, paused, until B's qmpd comes back.
pid_b=$(cat "$STATE2/vms/desk/qemu.pid" 2>/dev/null)
[ -n "$pid_b" ] && alive "$pid_b" || fail "no half of desk on the target to reconcile"
[ -e "$STATE2/incoming/desk" ] || fail "no note of the half on the target"

start_qmpd2
for i in $(seq 1 200); do
	alive "$pid_b" || break
	sleep 0.1
done
alive "$pid_b" && fail "the restarted target kept its half's QEMU"
grep -q "desk: incoming half without a cluster: it goes" "$T/qmpd2.log" ||
	fail "the restarted target did not say why its half went: $(tail -n 5 "$T/qmpd2.log")"
for i in $(seq 1 100); do
	[ ! -e "$STATE2/vms/desk" ] && [ ! -e "$STATE2/incoming/desk" ] && break
	sleep 0.1
done
for f in vms/desk incoming/desk; do
	[ -e "$STATE2/$f" ] && fail "the target kept $f of the half"
done
q2 vm show desk >/dev/null 2>&1 && fail "the target still has a record of desk"
[ "$(console_count desk "QDESK GUEST READY")" = 1 ] || fail "desk booted again on the source"
n=$(ctr_last)
for i in $(seq 1 100); do
	[ "$(ctr_last)" -gt "$n" ] && break
	sleep 0.1
done
[ "$(ctr_last)" -gt "$n" ] || fail "desk's counter stopped on the source"
log "one copy of desk afterwards, the source's (same QEMU, same boot, counter at $(ctr_last)), none on the target: ok"
qq vm stop desk --force >/dev/null
log "ok"
