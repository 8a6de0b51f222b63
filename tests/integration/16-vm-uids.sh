#!/usr/bin/env bash
# One uid per VM. Two running desktops run QEMU as two different uids from
# qmpd's range, neither root, each with its own gid and group kvm. As VM
# a's uid, VM b's disk, serial socket and SPICE key cannot be opened, and
# b's QEMU can be neither signalled nor traced (while a's own can); no
# QEMU uid can read the SPICE CA key, which no VM's dir holds. The uid is
# kept across stop/start and a qmpd kill -9 (re-attach checks it), freed
# at delete, and refused when the range is used up; a bad or taken range
# stops qmpd with a one-line reason.
. "$(dirname "$0")/lib.sh"

command -v setpriv >/dev/null || fail "no setpriv (util-linux)"
# Without --vm-uids, qmpd takes its default range. The VMs below run on
# this test's own range (lib.sh): others' qmpds (tests beside this one,
# other checkouts) run VMs on the default one, and which of its uids are
# free is theirs to change.
QMPD=$top/build/qmpd/qmpd start_qmpd
[ "$(q --json status | jq -r .vm_user)" = "uids 2000000000-2000099999" ] ||
	fail "qmpd's default VM uid range: $(q --json status | jq -c .vm_user)"
stop_qmpd
start_qmpd
[ "$(q --json status | jq -r .vm_user)" = "uids $VM_UIDS" ] ||
	fail "--vm-uids $VM_UIDS: $(q --json status | jq -c .vm_user)"
accel=tcg
q --json status | jq -e '.accels | index("kvm")' >/dev/null && accel=kvm
for v in a b; do
	qq vm create $v --accel $accel --disk "$(tiny_disk $v)" --memory 32 >/dev/null
	qq vm start $v >/dev/null
done
wait_console a "QDESK TINY GUEST UP" 30
wait_console b "QDESK TINY GUEST UP" 30
pa=$(vm_field a pid)
pb=$(vm_field b pid)
ua=$(stat -c %u /proc/$pa)
ub=$(stat -c %u /proc/$pb)
[ "$ua" != 0 ] && [ "$ub" != 0 ] || fail "a QEMU runs as root: $ua $ub"
[ "$ua" != "$ub" ] || fail "a and b share uid $ua"
for u in $ua $ub; do
	[ "$u" -ge "$VM_UIDS_FIRST" ] && [ "$u" -lt "$VM_UIDS_LAST" ] ||
		fail "uid $u is outside the range $VM_UIDS"
	getent passwd "$u" >/dev/null && fail "uid $u belongs to a user"
done
kvm_gid=$(getent group kvm | cut -d: -f3)
for v in a b; do
	p=$(vm_field $v pid)
	u=$(stat -c %u /proc/$p)
	[ "$(stat -c %u "$STATE/vms/$v")" = "$u" ] || fail "$v's runtime dir is not its uid's"
	[ "$(stat -c %a "$STATE/vms/$v")" = 700 ] || fail "$v's runtime dir is not 0700"
	awk '/^Gid:/ {print $2, $3, $4, $5}' /proc/$p/status | grep -qx "$u $u $u $u" ||
		fail "$v's QEMU gids: $(grep ^Gid: /proc/$p/status)"
	groups=$(awk '/^Groups:/ {$1 = ""; print}' /proc/$p/status | xargs)
	[ "$groups" = "$kvm_gid" ] || fail "$v's QEMU groups: '$groups', wanted kvm ($kvm_gid)"
	[ "$(stat -c '%a %u' "$STATE/vms/$v/tls/server-key.pem")" = "600 $u" ] ||
		fail "$v's SPICE key: $(stat -c '%a %u' "$STATE/vms/$v/tls/server-key.pem")"
done

as_uid() { local u=$1; shift; setpriv --reuid "$u" --regid "$u" --clear-groups "$@"; }
# ptrace(PTRACE_SEIZE) as uid $1 on pid $2: 0 when it worked. SEIZE, not
# ATTACH: ATTACH sends the QEMU a SIGSTOP, and a DETACH before that stop
# has landed fails, so under load the stop landed after this tracer was
# gone and left the QEMU stopped (CI, once: its next QMP command timed out
# at 30 s). SEIZE stops nothing; the tracer's exit detaches it.
ptrace_as() {
	as_uid "$1" /usr/bin/python3 -c '
import ctypes, sys
libc = ctypes.CDLL(None, use_errno=True)
pid = int(sys.argv[1])
sys.exit(0 if libc.ptrace(0x4206, pid, 0, 0) == 0 else 1)
' "$2"
}

# The checks below would pass for nothing if a could not act at all: it
# can read its own key and signal its own QEMU.
as_uid "$ua" cat "$STATE/vms/a/tls/server-key.pem" >/dev/null ||
	fail "a's uid cannot read its own SPICE key"
as_uid "$ua" kill -0 "$pa" || fail "a's uid cannot signal its own QEMU"
ptrace_as "$ua" "$pa" 2>/dev/null && log "(a's uid may trace its own QEMU)"

as_uid "$ua" cat "$T/b.img" >/dev/null 2>&1 && fail "a's uid opened b's disk"
as_uid "$ua" dd if="$STATE/vms/b/serial.log" of=/dev/null count=1 2>/dev/null &&
	fail "a's uid read b's console log"
as_uid "$ua" socat -u OPEN:/dev/null "UNIX-CONNECT:$STATE/vms/b/serial.sock" 2>/dev/null &&
	fail "a's uid opened b's serial socket"
[ -S "$STATE/vms/b/serial.sock" ] || fail "b has no serial socket to try"
as_uid "$ua" cat "$STATE/vms/b/tls/server-key.pem" >/dev/null 2>&1 &&
	fail "a's uid read b's SPICE key"
as_uid "$ua" kill -0 "$pb" 2>/dev/null && fail "a's uid may signal b's QEMU"
ptrace_as "$ua" "$pb" 2>/dev/null && fail "a's uid traced b's QEMU"
alive "$pb" || fail "b's QEMU died"

# The CA key: root's alone, and in no VM's x509-dir.
ca_key=$STATE/spice-tls/ca-key.pem
[ "$(stat -c '%a %u %g' "$ca_key")" = "600 0 0" ] ||
	fail "CA key: $(stat -c '%a %u %g' "$ca_key")"
for u in $ua $ub; do
	as_uid "$u" cat "$ca_key" >/dev/null 2>&1 && fail "uid $u read the CA key"
done
for v in a b; do
	for f in "$STATE/vms/$v/tls/"*; do
		cmp -s "$f" "$ca_key" && fail "$v's $f is the CA key"
	done
	openssl verify -CAfile "$STATE/spice-tls/ca-cert.pem" \
	    "$STATE/vms/$v/tls/server-cert.pem" >/dev/null ||
		fail "$v's certificate is not the CA's"
	readlink /proc/$(vm_field $v pid)/fd/* | grep -q spice-tls &&
		fail "$v's QEMU holds a file of DIR/spice-tls"
done
[ "$(q --json vm ticket a | jq -r .host_subject)" = CN=qdesk-spice-a ] ||
	fail "a's ticket names another subject"

# Kept: across a stop and start, and a kill -9 of qmpd (re-attach checks).
qq vm stop a --force >/dev/null
qq vm start a >/dev/null
[ "$(stat -c %u /proc/$(vm_field a pid))" = "$ua" ] || fail "a changed uid at restart"
pa=$(vm_field a pid)
kill9_qmpd
start_qmpd
[ "$(vm_field a state)" = running ] && [ "$(vm_field a pid)" = "$pa" ] ||
	fail "a was not re-attached: $(vm_field a state) $(vm_field a reason)"

# Freed at delete: the next VM gets b's uid back.
qq vm kill b >/dev/null
qq vm delete b >/dev/null
qq vm create c --accel $accel --disk "$(tiny_disk c)" --memory 32 --display none >/dev/null
qq vm start c >/dev/null
[ "$(stat -c %u /proc/$(vm_field c pid))" = "$ub" ] ||
	fail "c did not get b's freed uid $ub"

# A range that is used up refuses the next VM, with the reason.
stop_qmpd
# (The range's last uid is kept for image jobs, never given to a VM.)
start_qmpd --vm-uids "$ua-$((ub + 1))"
qq vm create d --accel $accel --disk "$(tiny_disk d)" --memory 32 --display none >/dev/null
q_status 1 vm start d
grep -q "every uid of $ua-$((ub + 1)) is taken" "$T/last.err" ||
	fail "a full range: $(cat "$T/last.err")"
[ "$(vm_field a state)" = running ] || fail "a is $(vm_field a state)"
stop_qmpd

# Bad ranges, and ranges someone else holds: qmpd says why and exits.
bad_range() {
	local out
	out=$(timeout 10 "$QMPD" -f --state-dir "$T/other" --vm-uids "$1" 2>&1)
	[ $? = 1 ] || fail "--vm-uids $1 was taken: $out"
	grep -q "$2" <<<"$out" || fail "--vm-uids $1: $out"
	[ "$(wc -l <<<"$out")" = 1 ] || fail "--vm-uids $1: more than one line: $out"
}
bad_range 5-3 "want 1000 <= FIRST < LAST"
bad_range 0-100 "want 1000 <= FIRST < LAST"
bad_range 3000-3000 "want 1000 <= FIRST < LAST"
bad_range 12x "want FIRST-LAST"
nob=$(id -u nobody)
bad_range "$((nob - 1))-$((nob + 1))" "range $((nob - 1))-$((nob + 1)) is not free (user "
log ok
