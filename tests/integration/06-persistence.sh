#!/usr/bin/env bash
# Definitions survive kill -9 of qmpd between two creates: what was
# acknowledged is on disk.
. "$(dirname "$0")/lib.sh"

start_qmpd
qq vm create first --accel tcg --disk "$(tiny_disk first)" --memory 48 --vcpus 2 --display none --restart on-crash >/dev/null
kill9_qmpd
start_qmpd
qq vm create second --accel tcg --kernel "$GUESTS/vmlinuz" --initrd "$GUESTS/initrd.img" --append "console=ttyS0 no_timer_check" --autostart --display none >/dev/null
uuid=$(vm_field second uuid)
kill9_qmpd
start_qmpd
[ "$(q --json vm list | jq '.vms | length')" = 2 ] || fail "not two VMs after restarts"
[ "$(vm_field first memory)" = 48 ] || fail "first lost its memory size"
[ "$(vm_field first vcpus)" = 2 ] || fail "first lost its vcpus"
[ "$(vm_field first restart)" = on-crash ] || fail "first lost its restart policy"
[ "$(vm_field second uuid)" = "$uuid" ] || fail "second changed uuid"
[ "$(vm_field second autostart)" = true ] || fail "second lost autostart"
# autostart: qmpd started it at daemon start.
qq vm wait second running --timeout 20 >/dev/null
# Many autostart VMs: staggered 250 ms apart, all come up.
for i in 1 2 3 4 5 6; do
	qq vm create auto$i --accel tcg --disk "$(tiny_disk auto$i)" --memory 16 --display none --autostart >/dev/null
done
kill9_qmpd
start_qmpd
for i in 1 2 3 4 5 6; do
	qq vm wait auto$i running --timeout 30 >/dev/null
done
q_status 1 vm create first --disk "$(tiny_disk x)"
grep -q AlreadyExists "$T/last.err" || fail "duplicate create: $(cat "$T/last.err")"
log ok
