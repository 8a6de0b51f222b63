#!/usr/bin/env bash
# Robustness of the VM lifecycle: two VMs on one writable disk file (by
# any name, a hard link included) are q_refused at create and at start,
# naming the other VM; SPICE ports that another listener holds are
# skipped at create and at start; a QEMU whose pidfile is gone is still
# found and re-attached by a restarted qmpd (a live QEMU is never lost),
# one whose monitor is gone is ended, not left behind; and a QEMU that
# refuses to start says why.
. "$(dirname "$0")/lib.sh"

mkdir -m 755 "$T/bin"
cat >"$T/bin/qemu" <<EOS
#!/bin/sh
if [ -r "$T/fail" ]; then
	echo "qemu-system-x86_64: -blockdev node-name=x: the failure the test asked for" >&2
	exit 1
fi
exec /usr/bin/qemu-system-x86_64 "\$@"
EOS
chmod 755 "$T/bin/qemu"
start_qmpd --qemu "$T/bin/qemu"
accel=tcg
q --json status | jq -e '.accels | index("kvm")' >/dev/null && accel=kvm
tiny=(--accel $accel --memory 32)

# --- one disk file, two VMs.
disk=$(tiny_disk a)
qq vm create a "${tiny[@]}" --display none --disk "$disk" >/dev/null
q_refused "is already the disk of VM a" vm create b "${tiny[@]}" --disk "$disk"
ln "$disk" "$T/a-again.img"
q_refused "is already the disk of VM a" vm create b "${tiny[@]}" --disk "$T/a-again.img"
q_status 1 vm show b
qq vm create b "${tiny[@]}" --display none --disk "$(tiny_disk b)" >/dev/null
rm "$T/b.img"
ln "$disk" "$T/b.img"
q_refused "is already the disk of VM a" vm start b
[ "$(vm_field b state)" = stopped ] || fail "b is $(vm_field b state)"
rm "$T/b.img"
cp "$GUESTS/boot.img" "$T/b.img"
qq vm start b >/dev/null
qq vm kill b >/dev/null

# --- SPICE ports someone else listens on are skipped.
# hold_port [PORT | lowest]: a listener on PORT, or on the lowest port
# of qmpd's range (lib.sh's SPICE_PORTS) that can be bound now: the one
# qmpd would hand out next. Sets HELD to the port (not in a subshell:
# the listener's pid must reach the clean-up).
listeners=()
hold_port() {
	local out=$T/listen.$RANDOM
	python3 -c 'import socket, sys, time
skip = set(int(p) for p in sys.argv[2:])
ports = [int(sys.argv[1])] if sys.argv[1] != "lowest" else range('"$SPICE_PORTS_FIRST"', '"$((SPICE_PORTS_LAST + 1))"')
for p in ports:
    if p in skip:
        continue
    s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        s.bind(("127.0.0.1", p))
    except OSError:
        s.close(); continue
    s.listen(1); print(p, flush=True); time.sleep(600)
print("none", flush=True)' "$@" >"$out" 2>&1 &
	listeners+=($!)
	for i in $(seq 1 50); do
		[ -s "$out" ] && break
		sleep 0.1
	done
	HELD=$(head -1 "$out")
	case $HELD in
	[0-9]*) ;;
	*) fail "cannot hold a port ($*): $(cat "$out")" ;;
	esac
}
EXTRA_CLEANUP='for p in "${listeners[@]}"; do kill $p 2>/dev/null; done'
qq vm create s1 "${tiny[@]}" --disk "$(tiny_disk s1)" >/dev/null
p1=$(vm_field s1 spice.port)
hold_port lowest "$p1"
held=$HELD
qq vm create s2 "${tiny[@]}" --disk "$(tiny_disk s2)" >/dev/null
p2=$(vm_field s2 spice.port)
[ "$p2" != "$held" ] || fail "s2 got port $p2, which another listener holds"
[ "$p2" != "$p1" ] || fail "s1 and s2 share port $p1"
# Taken after create: the start moves to a free port instead of crashing.
hold_port "$p2"
qq vm start s2 >/dev/null
[ "$(vm_field s2 state)" = running ] || fail "s2 is $(vm_field s2 state): $(vm_field s2 reason)"
p2b=$(vm_field s2 spice.port)
[ "$p2b" != "$p2" ] && [ "$p2b" != "$held" ] ||
	fail "s2 runs on port $p2b, which another listener holds"
qq vm kill s2 >/dev/null

# --- a restarted qmpd finds a QEMU whose pidfile is gone.
qq vm start a >/dev/null
pa=$(vm_field a pid)
kill9_qmpd
rm -f "$STATE/vms/a/qemu.pid"
start_qmpd --qemu "$T/bin/qemu"
[ "$(vm_field a state)" = running ] && [ "$(vm_field a pid)" = "$pa" ] ||
	fail "a was lost: $(vm_field a state) $(vm_field a reason), pid $(vm_field a pid)"
grep -q "found its QEMU as pid $pa" "$QMPD_LOG" || fail "the search was not logged"
qq vm pause a >/dev/null
qq vm resume a >/dev/null

# --- ...and ends one whose monitor is gone, rather than leave it behind.
kill9_qmpd
rm -f "$STATE/vms/a/qmp.sock"
start_qmpd --qemu "$T/bin/qemu"
qq vm wait a crashed --timeout 10 >/dev/null
case $(vm_field a reason) in *QMP*) ;; *) fail "a's reason: $(vm_field a reason)" ;; esac
for i in $(seq 1 50); do alive "$pa" || break; sleep 0.1; done
alive "$pa" && fail "a's unreachable QEMU $pa was left running"
[ "$(vm_field a pid)" = null ] || fail "a still has pid $(vm_field a pid)"

# --- a QEMU that refuses to start: the reason is its own last line.
touch "$T/fail"
q_status 1 vm start a
grep -q "the failure the test asked for" "$T/last.err" ||
	fail "a failed start: $(cat "$T/last.err")"
case $(vm_field a reason) in *"the failure the test asked for"*) ;;
	*) fail "a's reason: $(vm_field a reason)" ;; esac
rm -f "$T/fail"
qq vm start a >/dev/null
log ok
