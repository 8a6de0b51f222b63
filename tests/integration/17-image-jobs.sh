#!/usr/bin/env bash
# Jobs over qcow2 metadata a guest's QEMU wrote (image flatten, merging a
# snapshot away) never parse it as root: each runs as a QEMU block job
# (-machine none, in its sandbox) as the VM's own uid, or as the helper
# uid (the range's last) for an image no VM runs on, and gets every file
# as an fd (/dev/fdset/N), never a path into the store. The data comes
# through whole.
. "$(dirname "$0")/lib.sh"

# A QEMU that notes who ran it and how, then is the real one.
mkdir -m 755 "$T/bin"
mkdir -m 1777 "$T/calls"
: >"$T/calls/log"
chmod 666 "$T/calls/log"
cat >"$T/bin/qemu" <<EOS
#!/bin/sh
printf '%s %s\n' "\$(id -u)" "\$*" >>"$T/calls/log"
exec /usr/bin/qemu-system-x86_64 "\$@"
EOS
chmod 755 "$T/bin/qemu"
start_qmpd --qemu "$T/bin/qemu" --vm-uids "$VM_UIDS"
helper=$VM_UIDS_LAST

img_file() { echo "$STATE/images/$(q --json image show "$1" | jq -r .file)"; }
# The job runs of the log: "UID ARGS" lines with -machine none.
jobs_since() { tail -n +"$1" "$T/calls/log" | grep -- '-machine none'; }
# check_job FROM UID WHAT: exactly one job since line FROM, as UID, on fds.
check_job() {
	local j
	j=$(jobs_since "$1")
	[ -n "$j" ] || fail "$3: no QEMU block job ran"
	[ "$(wc -l <<<"$j")" = 1 ] || fail "$3: more than one job: $j"
	[ "${j%% *}" = "$2" ] || fail "$3: the job ran as uid ${j%% *}, not $2"
	grep -q "/dev/fdset/" <<<"$j" || fail "$3: the job got no fd: $j"
	grep -q "$STATE/images" <<<"$j" && fail "$3: the job got a store path: $j"
	grep -q "sandbox on" <<<"$j" || fail "$3: the job ran unsandboxed: $j"
}
# read_ok FILE OFFSET PATTERN: 64 KiB of PATTERN at OFFSET in FILE.
read_ok() {
	qemu-io -r -f qcow2 -c "read -q -P $3 $2 64k" "$1" >"$T/io.out" 2>&1 &&
	    ! grep -q "Pattern verification failed" "$T/io.out"
}

qemu-img create -q -f qcow2 "$T/src.qcow2" 16M
qemu-io -f qcow2 -c "write -q -P 0x5a 0 64k" "$T/src.qcow2" >/dev/null
qq image import base "$T/src.qcow2" >/dev/null

# An image no VM runs on: the helper uid.
qq image clone base c1 >/dev/null
qemu-io -f qcow2 -c "write -q -P 0x44 1M 64k" "$(img_file c1)" >/dev/null
from=$(($(wc -l <"$T/calls/log") + 1))
qq image flatten c1 >/dev/null
check_job "$from" "$helper" "flatten c1"
[ "$(q --json image show c1 | jq -r .parent)" = null ] || fail "c1 still has a parent"
read_ok "$(img_file c1)" 0 0x5a || fail "c1 lost base's data: $(cat "$T/io.out")"
read_ok "$(img_file c1)" 1M 0x44 || fail "c1 lost its own data: $(cat "$T/io.out")"

# A VM's disk: the VM's own uid, for the merge and the flatten.
qq vm create v --accel tcg --memory 32 --display none --from base >/dev/null
qq vm start v >/dev/null
uv=$(stat -c %u "$STATE/vms/v")
[ "$uv" != 0 ] && [ "$uv" != "$helper" ] || fail "v's uid: $uv"
qq vm stop v --force >/dev/null
qq vm snapshot v s1 >/dev/null
qemu-io -f qcow2 -c "write -q -P 0x66 2M 64k" "$(img_file v.s1)" >/dev/null 2>&1 ||
	fail "writing into the snapshot by hand"
qemu-io -f qcow2 -c "write -q -P 0x77 3M 64k" "$(img_file v-disk)" >/dev/null
from=$(($(wc -l <"$T/calls/log") + 1))
qq vm snapshot-rm v s1 >/dev/null
check_job "$from" "$uv" "merging s1 into v-disk"
[ "$(q --json image show v-disk | jq -r .parent)" = base ] || fail "v-disk is not back on base"
read_ok "$(img_file v-disk)" 2M 0x66 || fail "the merge lost s1's data"
read_ok "$(img_file v-disk)" 3M 0x77 || fail "the merge lost v-disk's data"
qemu-img info --backing-chain "$(img_file v-disk)" | grep -q fdset &&
	fail "v-disk names an fd set as its backing file"
qq image verify >/dev/null

from=$(($(wc -l <"$T/calls/log") + 1))
qq image flatten v-disk >/dev/null
check_job "$from" "$uv" "flatten v-disk"
read_ok "$(img_file v-disk)" 0 0x5a || fail "v-disk lost base's data"
read_ok "$(img_file v-disk)" 3M 0x77 || fail "v-disk lost its own data"
qq image verify >/dev/null
qq vm start v >/dev/null
[ "$(vm_field v state)" = running ] || fail "v does not start on its flat disk"
log ok
