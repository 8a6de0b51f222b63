#!/usr/bin/env bash
# Live migration of a busy guest under KVM (issue 14): busy-fast.img
# (scripts/guest/busy.s) rewrites 236 MiB of its 256 at 64 MiB/s and
# checks each page's previous value before it rewrites it. It moves to
# the other qmpd and back while it writes; afterwards it runs on, same
# boot (no second "QDESK BUSY UP", its tick count goes on), and a full
# pass on the side it ended on finds no stale page (no "CORRUPT", bad
# count 0). Figures: bench/migrate.sh, bench/migrate-README.md.
. "$(dirname "$0")/lib.sh"

[ -r /dev/kvm ] || skip "no /dev/kvm"
[ -f "$GUESTS/busy-fast.img" ] || fail "no $GUESTS/busy-fast.img: run scripts/mkguest"

STATE2=$T/state2
QMPD2_PID=
EXTRA_CLEANUP='cleanup2'
cleanup2() {
	if [ -n "$QMPD2_PID" ]; then
		kill -TERM "$QMPD2_PID" 2>/dev/null
		wait "$QMPD2_PID" 2>/dev/null
	fi
	kill_qemus "$STATE2"
}

q2() { QDESK_SOCKET=$STATE2/qmpd.sock "$QDESK_BIN" "$@"; }
# (This test's slot of uids and SPICE ports, lib.sh, in halves.)
start_qmpd --vm-uids "$VM_UIDS_FIRST-$((VM_UIDS_FIRST + 499))" \
    --spice-ports "$SPICE_PORTS_FIRST-$((SPICE_PORTS_FIRST + 49))"
q --json status | jq -e '.accels | index("kvm")' >/dev/null ||
	skip "qmpd says KVM is not usable here"
"$QMPD" -f -v --state-dir "$STATE2" \
    --vm-uids "$((VM_UIDS_FIRST + 500))-$VM_UIDS_LAST" \
    --spice-ports "$((SPICE_PORTS_FIRST + 50))-$SPICE_PORTS_LAST" \
    >>"$T/qmpd2.log" 2>&1 &
QMPD2_PID=$!
for i in $(seq 1 400); do
	[ -S "$STATE2/qmpd.sock" ] && q2 status >/dev/null 2>&1 && break
	sleep 0.05
done
q2 status >/dev/null 2>&1 || fail "the second qmpd did not come up: $(tail -n 3 "$T/qmpd2.log")"

# The last counter line of a log as "tick pass page bad", in decimal.
last_ctr() {
	local l
	# Whole lines only (the last one once its \r is there): the guest
	# may be half-way through writing one.
	l=$(sed -n -e '$!{/^CTR /p}' -e '${/^CTR .*\r$/p}' "$1" 2>/dev/null |
	    tail -n 1 | tr -d '\r')
	[ -n "$l" ] && [ "$(wc -w <<<"$l")" = 5 ] || return 1
	set -- $l
	echo "$((16#$2)) $((16#$3)) $((16#$4)) $((16#$5))"
}
# The last counter line of log $1, once there is one (30 s at most): a
# VM's serial log is new on each side it moves to, and its first line
# comes a moment after the switch.
wait_ctr() {
	local i
	for i in $(seq 1 300); do
		last_ctr "$1" && return 0
		sleep 0.1
	done
	return 1
}
# Wait until the guest's pass in log $1 reaches $2.
wait_pass() {
	local i t p g b
	for i in $(seq 1 $(($3 * 10))); do
		read -r t p g b <<<"$(last_ctr "$1")"
		[ -n "$p" ] && [ "$p" -ge "$2" ] && return 0
		sleep 0.1
	done
	fail "busy guest not at pass $2 after $3 s: $(tail -n 1 "$1")"
}

cp "$GUESTS/busy-fast.img" "$T/busy.img"
qq vm create busy --accel kvm --memory 256 --disk "$T/busy.img" \
    --disk-format raw >/dev/null
qq vm start busy >/dev/null
[ "$(vm_field busy accel_used)" = kvm ] || fail "not running under kvm"
wait_console busy "QDESK BUSY UP" 120
# Pass 1 on: every page it writes is checked from now on.
wait_pass "$STATE/vms/busy/serial.log" 1 60

out=$(qq --json vm migrate busy "unix:$STATE2/qmpd.sock" --timeout 60) ||
	fail "migrate to the second qmpd: $out"
jq -e '.migration.downtime_ms >= 0' <<<"$out" >/dev/null ||
	fail "no downtime figure: $out"
log "there: $(jq -c .migration <<<"$out")"
c=$(wait_ctr "$STATE2/vms/busy/serial.log") ||
	fail "no counter on the target: $(tail -c 300 "$STATE2/vms/busy/serial.log")"
read -r t1 p1 g1 b1 <<<"$c"
out=$(q2 --json vm migrate busy "unix:$STATE/qmpd.sock" --timeout 60) ||
	fail "migrate back: $out"
log "back: $(jq -c .migration <<<"$out")"

# One full pass on this side after the last move, and a bit: every page
# the guest dirtied has been checked since.
f=$STATE/vms/busy/serial.log
c=$(wait_ctr "$f") || fail "no counter after the move back: $(tail -c 300 "$f")"
read -r t p g b <<<"$c"
wait_pass "$f" $((p + 2)) 90
read -r t2 p2 g2 b2 <<<"$(last_ctr "$f")"
grep -aq CORRUPT "$f" "$STATE2/vms/busy/serial.log" 2>/dev/null &&
	fail "the guest found a stale page after migration: $(grep -a '^CTR ' "$f" | tail -n 1)"
[ "$b2" = 0 ] || fail "the guest counts $b2 bad pages"
grep -aq "QDESK BUSY UP" "$f" && fail "the guest booted again on its way back"
[ "$t2" -gt "$t1" ] || fail "the tick count did not go on ($t1, then $t2)"
[ "$(vm_field busy state)" = running ] || fail "not running: $(vm_field busy state)"
[ -d "$STATE2/vms/busy" ] && fail "the second qmpd still has the VM"
log "memory intact after 2 moves (pass $p2, $b2 bad pages)"
qq vm stop busy --force >/dev/null
log ok
