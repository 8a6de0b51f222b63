#!/usr/bin/env bash
# kill -9 of a VM's QEMU: crashed within 2 s; with --restart on-crash the
# VM comes back by itself with a new QEMU.
. "$(dirname "$0")/lib.sh"

start_qmpd
accel=tcg
q --json status | jq -e '.accels | index("kvm")' >/dev/null && accel=kvm

qq vm create plain --accel $accel --disk "$(tiny_disk plain)" --memory 32 --display none >/dev/null
qq vm create phoenix --accel $accel --disk "$(tiny_disk phoenix)" --memory 32 --display none --restart on-crash >/dev/null
qq vm start plain >/dev/null
qq vm start phoenix >/dev/null

pid=$(vm_pid plain)
kill -9 "$pid"
t0=$(date +%s%N)
for i in $(seq 1 40); do
	[ "$(vm_field plain state)" = crashed ] && break
	sleep 0.05
done
ms=$(( ($(date +%s%N) - t0) / 1000000 ))
[ "$(vm_field plain state)" = crashed ] || fail "plain is $(vm_field plain state) after kill -9"
[ $ms -le 2000 ] || fail "crash noticed after $ms ms"
vm_field plain reason | grep -q "signal 9" || fail "reason: $(vm_field plain reason)"
log "crash seen after $ms ms"
sleep 1.5
[ "$(vm_field plain state)" = crashed ] || fail "plain restarted without a policy"

old=$(vm_pid phoenix)
kill -9 "$old"
qq vm wait phoenix crashed --timeout 5 >/dev/null
qq vm wait phoenix running --timeout 20 >/dev/null
new=$(vm_field phoenix pid)
[ -n "$new" ] && [ "$new" != "$old" ] || fail "phoenix did not get a new QEMU ($old -> $new)"
alive "$new" || fail "new QEMU not alive"
qq vm kill phoenix >/dev/null
sleep 1.5
[ "$(vm_field phoenix state)" = stopped ] || fail "an admin kill was restarted"
log ok
