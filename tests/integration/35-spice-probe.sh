#!/usr/bin/env bash
# spice-probe itself, against a bare QEMU (no qmpd, no broker), so the
# other tests can trust its verdicts: no password set, the right one, a
# wrong one, after expire_password, --hold through a password change
# with connected=keep (held) and connected=disconnect (cut, exit 3), over
# TLS as qmpd's VMs speak it and in plaintext, and --display counting the
# screen's updates.
. "$(dirname "$0")/lib.sh"
. "$top/tests/lib/broker-lib.sh"

QEMU_PID=
EXTRA_CLEANUP='[ -n "$QEMU_PID" ] && kill -9 "$QEMU_PID" 2>/dev/null && wait "$QEMU_PID" 2>/dev/null'
port=$(free_port)

# QEMU never as root, here either: as qdesk-vm, in a dir of its own, with
# a certificate of the test's own for its TLS port and a plaintext port.
mkdir -p "$T/q/tls" && chown -R qdesk-vm "$T/q"
openssl req -x509 -newkey rsa:2048 -nodes -days 2 -subj /CN=probe-test \
    -addext basicConstraints=critical,CA:TRUE -keyout "$T/q/tls/server-key.pem" \
    -out "$T/q/tls/server-cert.pem" 2>"$T/openssl.log" ||
	fail "openssl: $(cat "$T/openssl.log")"
cp "$T/q/tls/server-cert.pem" "$T/q/tls/ca-cert.pem"
chown -R qdesk-vm "$T/q/tls"
SPICE_CA=$T/q/tls/ca-cert.pem
SPICE_SUBJECT=CN=probe-test
plain=$(free_port)
setpriv --reuid qdesk-vm --regid "$(id -g qdesk-vm)" --clear-groups \
    qemu-system-x86_64 -accel tcg -machine pc -nodefaults -display none -S \
    -device qxl-vga \
    -spice "tls-port=$port,port=$plain,addr=127.0.0.1,x509-dir=$T/q/tls" \
    -qmp "unix:$T/q/qmp.sock,server=on,wait=off" >"$T/qemu.log" 2>&1 &
QEMU_PID=$!
for i in $(seq 1 100); do
	[ -S "$T/q/qmp.sock" ] && break
	sleep 0.05
done
[ -S "$T/q/qmp.sock" ] || fail "QEMU did not come up: $(cat "$T/qemu.log")"

# One QMP command on a fresh connection; fails the test on an error.
qmp() {
	local out
	out=$(printf '{"execute":"qmp_capabilities"}\n%s\n' "$1" |
	    socat -t0.5 - "UNIX-CONNECT:$T/q/qmp.sock")
	printf '%s' "$out" | tail -1 | grep -q '"return"' ||
		fail "QMP $1: $out"
}

# status WANT PASSWORD [args]: spice-probe's exit status is WANT.
status() {
	local want=$1 rc
	shift
	probe "$1" "$port" "${@:2}" >"$T/probe.out" 2>&1
	rc=$?
	[ $rc = "$want" ] || fail "spice-probe $*: exit $rc, wanted $want: $(cat "$T/probe.out")"
}

status 1 anything			# ticketing on, no password yet
qmp '{"execute":"set_password","arguments":{"protocol":"spice","password":"secret-1"}}'
status 0 secret-1
status 1 secret-2
grep -q "password refused" "$T/probe.out" || fail "refusal not explained"

# connected=keep: a linked session survives a new password.
probe secret-1 "$port" --hold 4 >"$T/hold.out" 2>&1 &
hold=$!
sleep 1
qmp '{"execute":"set_password","arguments":{"protocol":"spice","password":"secret-2","connected":"keep"}}'
wait $hold || fail "--hold was cut by a connected=keep change: $(cat "$T/hold.out")"
status 1 secret-1
status 0 secret-2

# connected=disconnect cuts it: the probe says so with exit 3.
probe secret-2 "$port" --hold 20 >"$T/hold.out" 2>&1 &
hold=$!
sleep 1
qmp '{"execute":"set_password","arguments":{"protocol":"spice","password":"secret-3","connected":"disconnect"}}'
wait $hold
rc=$?
[ $rc = 3 ] || fail "a cut session gave exit $rc, not 3: $(cat "$T/hold.out")"

# Plaintext on a plain port, TLS refused on it; the display channel.
"$PROBE" 127.0.0.1 "$plain" secret-3 >"$T/probe.out" 2>&1 ||
	fail "plaintext link: $(cat "$T/probe.out")"
"$PROBE" 127.0.0.1 "$plain" secret-3 --ca "$SPICE_CA" >"$T/probe.out" 2>&1
[ $? = 2 ] && grep -q "TLS handshake" "$T/probe.out" ||
	fail "TLS to a plain port: $(cat "$T/probe.out")"
status 0 secret-3 --display 2
grep -Eq "^display [0-9]+x[0-9]+: .* [1-9][0-9]* frames .* [1-9][0-9]* bytes" \
    "$T/probe.out" || fail "--display counted nothing: $(cat "$T/probe.out")"
log "$(grep ^display "$T/probe.out")"

# After expiry the password is refused.
qmp '{"execute":"expire_password","arguments":{"protocol":"spice","time":"now"}}'
status 1 secret-3

# Not SPICE at all, or nothing listening: exit 2.
other=$(free_port)
printf 'HTTP/1.0 400 Bad Request\r\n\r\n0123456789abcdef' >"$T/notspice"
socat -u "OPEN:$T/notspice" "TCP-LISTEN:$other,bind=127.0.0.1,reuseaddr" &
server=$!
sleep 0.3
"$PROBE" 127.0.0.1 "$other" x --timeout 3 >"$T/probe.out" 2>&1
rc=$?
kill $server 2>/dev/null
wait $server 2>/dev/null
[ $rc = 2 ] && grep -q "not a SPICE server" "$T/probe.out" ||
	fail "an HTTP server gave exit $rc: $(cat "$T/probe.out")"
"$PROBE" 127.0.0.1 "$(free_port)" x >/dev/null 2>&1
[ $? = 2 ] || fail "a closed port did not give exit 2"
log ok
