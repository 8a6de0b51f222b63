#!/usr/bin/env bash
# kill -9 of qmpd with three VMs running: a new qmpd finds all three still
# running, with the same QEMU pids, and they obey pause, resume and stop.
. "$(dirname "$0")/lib.sh"

start_qmpd
accel=tcg
q --json status | jq -e '.accels | index("kvm")' >/dev/null && accel=kvm
qq vm create t1 --accel $accel --disk "$(tiny_disk t1)" --memory 32 --display none >/dev/null
qq vm create t2 --accel $accel --disk "$(tiny_disk t2)" --memory 32 >/dev/null
qq vm create lin --accel tcg --memory 256 --kernel "$GUESTS/vmlinuz" \
    --initrd "$GUESTS/initrd.img" --append "console=ttyS0 no_timer_check" >/dev/null
for v in t1 t2 lin; do qq vm start $v >/dev/null; done
wait_console lin "QDESK GUEST READY" 60
declare -A pids
for v in t1 t2 lin; do pids[$v]=$(vm_field $v pid); done

kill9_qmpd
for v in t1 t2 lin; do
	alive "${pids[$v]}" || fail "$v's QEMU died with qmpd"
done
start_qmpd
for v in t1 t2 lin; do
	[ "$(vm_field $v state)" = running ] || fail "$v is $(vm_field $v state) after restart"
	[ "$(vm_field $v pid)" = "${pids[$v]}" ] || fail "$v has a new pid"
done
grep -q "re-attached to QEMU pid ${pids[lin]}" "$QMPD_LOG" || fail "no re-attach logged"

qq vm pause t1 >/dev/null
[ "$(vm_field t1 state)" = paused ] || fail "t1 not paused"
qq vm resume t1 >/dev/null
qq vm stop t2 --force >/dev/null
[ "$(vm_field t2 state)" = stopped ] || fail "t2 not stopped"
alive "${pids[t2]}" && fail "t2's QEMU still alive"
qq vm stop lin --timeout 45 >/dev/null
[ "$(vm_field lin reason)" = "guest powered off" ] || fail "lin: $(vm_field lin reason)"

# A re-attached QEMU that dies is still noticed (it is not our child now).
kill -9 "${pids[t1]}"
qq vm wait t1 crashed --timeout 5 >/dev/null
log ok
