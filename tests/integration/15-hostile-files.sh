#!/usr/bin/env bash
# Root never follows a link or opens a FIFO where another user can write.
# As the unprivileged owner of each such directory (a VM's runtime dir:
# its QEMU's uid; DIR/broker: the broker's user), a link to a root-only
# file and a FIFO are planted under every name qmpd or the broker opens
# there: qemu.log (made fresh at start, read for a failed start's
# reason), qemu.pid (read at re-attach), serial.log (vm console), and the
# broker's cert.pem and key.pem (read as root before the drop). The
# root-only file is never truncated or shown, and every daemon answers
# (or refuses to start with a one-line reason) instead of hanging.
. "$(dirname "$0")/lib.sh"
. "$top/tests/lib/broker-lib.sh"

command -v setpriv >/dev/null || fail "no setpriv (util-linux)"

victim=$T/victim
printf 'root secret 42\n' >"$victim"
chmod 600 "$victim"
victim_sum=$(sha256sum <"$victim")
victim_ok() {
	[ "$(sha256sum <"$victim")" = "$victim_sum" ] ||
		fail "$1: the root-only file was changed: $(cat "$victim")"
}

# A QEMU that turns hostile at start when $T/evil says how: it plants a
# link or FIFO under the name given, as the VM's own uid, and exits, so
# qmpd reads its "reason" from what was planted. Otherwise the real one.
mkdir -m 755 "$T/bin"
cat >"$T/bin/qemu" <<EOS
#!/bin/sh
if [ -r "$T/evil" ]; then
	set -- \$(cat "$T/evil")
	cd "$STATE/vms/\$1" || exit 3
	rm -f "\$2"
	case \$3 in
	link) ln -s "$victim" "\$2" ;;
	fifo) mkfifo "\$2" ;;
	esac
	exit 1
fi
exec /usr/bin/qemu-system-x86_64 "\$@"
EOS
chmod 755 "$T/bin/qemu"
: >"$T/evil.off"
chmod 644 "$T/evil.off"

start_qmpd --qemu "$T/bin/qemu" --broker-user "$BROKER_USER"
accel=tcg
q --json status | jq -e '.accels | index("kvm")' >/dev/null && accel=kvm
qq vm create t1 --accel $accel --disk "$(tiny_disk t1)" --memory 32 \
    --display none >/dev/null
qq vm start t1 >/dev/null
wait_console t1 "QDESK TINY GUEST UP" 30
vmuid=$(stat -c %u "$STATE/vms/t1")
vmgid=$(stat -c %g "$STATE/vms/t1")
[ "$vmuid" != 0 ] || fail "t1's runtime dir belongs to root"
as_vm() { setpriv --reuid "$vmuid" --regid "$vmgid" --clear-groups "$@"; }
as_vm test -w "$STATE/vms/t1" || fail "the VM's uid cannot write its own dir"

# Answers within 5 s, or the loop is stuck.
answers() {
	timeout 5 "$QDESK_BIN" status >/dev/null 2>&1 ||
		fail "$1: qmpd stopped answering"
}

# vm console: serial.log as a link to the root file, then as a FIFO.
as_vm sh -c "cd '$STATE/vms/t1' && rm -f serial.log && ln -s '$victim' serial.log"
out=$(timeout 5 "$QDESK_BIN" vm console t1 2>&1)
rc=$?
[ $rc = 1 ] || fail "vm console through a link: exit $rc: $out"
case $out in *"root secret"*) fail "vm console showed the root-only file" ;; esac
case $out in *"symbolic link"*) ;; *) fail "vm console through a link: $out" ;; esac
as_vm sh -c "cd '$STATE/vms/t1' && rm -f serial.log && mkfifo serial.log"
out=$(timeout 5 "$QDESK_BIN" vm console t1 2>&1)
rc=$?
[ $rc = 1 ] || fail "vm console on a FIFO: exit $rc (124: it hung): $out"
case $out in *"not a regular file"*) ;; *) fail "vm console on a FIFO: $out" ;; esac
answers "vm console on a FIFO"
victim_ok "vm console"
# (A FIFO there would stall the VM's own next QEMU: its uid's business.)
as_vm rm -f "$STATE/vms/t1/serial.log"

# qemu.pid, read by a restarted qmpd: a FIFO made a restarted qmpd hang.
for kind in link fifo; do
	[ "$(vm_field t1 state)" = running ] || qq vm start t1 >/dev/null
	pid=$(vm_field t1 pid)
	stop_qmpd
	if [ $kind = link ]; then
		as_vm sh -c "cd '$STATE/vms/t1' && rm -f qemu.pid && ln -s '$victim' qemu.pid"
		want="is a symbolic link, refused"
	else
		as_vm sh -c "cd '$STATE/vms/t1' && rm -f qemu.pid && mkfifo qemu.pid"
		want="not a regular file, refused"
	fi
	start_qmpd --qemu "$T/bin/qemu" --broker-user "$BROKER_USER"
	answers "qemu.pid as a $kind"
	grep -q "qemu.pid: $want" "$QMPD_LOG" ||
		fail "qemu.pid as a $kind: no refusal logged"
	victim_ok "qemu.pid as a $kind"
	# Its QEMU is found all the same (by uid and command line), not lost.
	[ "$(vm_field t1 state)" = running ] && [ "$(vm_field t1 pid)" = "$pid" ] ||
		fail "qemu.pid as a $kind: t1 is $(vm_field t1 state), pid $(vm_field t1 pid)"
	kill -9 "$pid" 2>/dev/null
	qq vm wait t1 crashed --timeout 10 >/dev/null
	as_vm rm -f "$STATE/vms/t1/qemu.pid"
done

# qemu.log: made by root at every start. A link or FIFO left in its place
# is removed, not followed: the start works and the root file is intact.
for kind in link fifo; do
	if [ $kind = link ]; then
		as_vm sh -c "cd '$STATE/vms/t1' && rm -f qemu.log && ln -s '$victim' qemu.log"
	else
		as_vm sh -c "cd '$STATE/vms/t1' && rm -f qemu.log && mkfifo qemu.log"
	fi
	timeout 20 "$QDESK_BIN" vm start t1 >/dev/null 2>&1 ||
		fail "vm start over a planted qemu.log $kind: $(vm_field t1 reason)"
	[ -f "$STATE/vms/t1/qemu.log" ] && [ ! -L "$STATE/vms/t1/qemu.log" ] ||
		fail "qemu.log is not a fresh file after a start over a $kind"
	victim_ok "qemu.log as a $kind"
	qq vm stop t1 --force >/dev/null
done

# tls/: qmpd writes the VM's SPICE key and certificates there at each
# start. Links and FIFOs in their place are removed, not written through.
for f in server-key.pem server-cert.pem ca-cert.pem; do
	as_vm sh -c "cd '$STATE/vms/t1/tls' && rm -f $f && ln -s '$victim' $f"
done
as_vm sh -c "cd '$STATE/vms/t1/tls' && rm -f server-key.pem && mkfifo server-key.pem"
timeout 20 "$QDESK_BIN" vm start t1 >/dev/null 2>&1 ||
	fail "vm start over planted tls files: $(vm_field t1 reason)"
victim_ok "tls files"
for f in server-key.pem server-cert.pem ca-cert.pem; do
	[ -f "$STATE/vms/t1/tls/$f" ] && [ ! -L "$STATE/vms/t1/tls/$f" ] ||
		fail "tls/$f is not a fresh file"
done
qq vm stop t1 --force >/dev/null
# The tls dir itself as a link: refused, the start fails with the reason.
as_vm sh -c "cd '$STATE/vms/t1' && rm -rf tls && ln -s '$T' tls"
q_status 1 vm start t1
grep -q "vms/t1/tls: .*refused" "$T/last.err" ||
	fail "a tls link: $(cat "$T/last.err")"
victim_ok "tls as a link"
[ -e "$T/server-key.pem" ] && fail "a key was written through the tls link"
as_vm rm -f "$STATE/vms/t1/tls"
answers "tls as a link"

# qemu.log read back for a failed start's reason, after a QEMU that put a
# link or FIFO there and died: refused, and the reason is its exit status.
for kind in link fifo; do
	printf 't1 qemu.log %s\n' $kind >"$T/evil.off"
	mv "$T/evil.off" "$T/evil"
	timeout 20 "$QDESK_BIN" vm start t1 >/dev/null 2>&1
	qq vm wait t1 crashed --timeout 10 >/dev/null
	answers "qemu.log as a $kind after a failed start"
	reason=$(vm_field t1 reason)
	case $reason in *"root secret"*) fail "the reason shows the root file" ;; esac
	case $reason in *"status 1"*) ;; *) fail "reason after a $kind: $reason" ;; esac
	victim_ok "qemu.log read back as a $kind"
	mv "$T/evil" "$T/evil.off"
done
grep -q "qemu.log: is a symbolic link, refused" "$QMPD_LOG" ||
	fail "no refusal of the qemu.log link logged"
grep -q "qemu.log: not a regular file, refused" "$QMPD_LOG" ||
	fail "no refusal of the qemu.log FIFO logged"

# The broker reads cert.pem and key.pem as root in DIR/broker, which its
# own user owns. Made once; then each replaced by a link and by a FIFO.
start_broker
stop_broker
bdir=$STATE/broker
[ "$(stat -c %U "$bdir")" = "$BROKER_USER" ] || fail "$bdir is not the broker's"
as_broker() { setpriv --reuid "$BROKER_USER" --regid "$(id -g "$BROKER_USER")" --clear-groups "$@"; }
for f in cert.pem key.pem; do
	as_broker cp "$bdir/$f" "$bdir/$f.keep"
	for kind in link fifo; do
		if [ $kind = link ]; then
			as_broker sh -c "cd '$bdir' && rm -f $f && ln -s '$victim' $f"
		else
			as_broker sh -c "cd '$bdir' && rm -f $f && mkfifo $f"
		fi
		: >"$BROKER_LOG"
		timeout 10 "$BROKER" -f --state-dir "$STATE" --user "$BROKER_USER" \
		    --https "127.0.0.1:$HTTPS_PORT" \
		    --spice-proxy "127.0.0.1:$PROXY_PORT" \
		    --rdp "127.0.0.1:$RDP_PORT" >>"$BROKER_LOG" 2>&1
		rc=$?
		[ $rc != 124 ] || fail "the broker hung on $f as a $kind"
		[ $rc != 0 ] || fail "the broker ran with $f as a $kind"
		grep -q "$f: .*refused" "$BROKER_LOG" ||
			fail "broker with $f as a $kind: $(tail -3 "$BROKER_LOG")"
		grep -q "root secret" "$BROKER_LOG" && fail "the broker showed the root file"
		victim_ok "broker $f as a $kind"
	done
	as_broker mv -f "$bdir/$f.keep" "$bdir/$f"
done
start_broker
answers "after the broker tests"
log ok
