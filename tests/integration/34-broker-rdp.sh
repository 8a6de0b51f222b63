#!/usr/bin/env bash
# The RDP gateway inside qdesk-broker (the gateway's own tests, 4*.sh, run
# it alone): a real xfreerdp under Xvfb logs in on the broker's --rdp port
# with the broker's own certificate; a wrong password is refused and
# counts toward the same lockout as the portal; the portal's .rdp file,
# given to xfreerdp as is, lands on the desktop it names; the broker warns
# about its own self-signed certificate, and not about a CA-signed one.
. "$(dirname "$0")/lib.sh"
. "$top/tests/lib/broker-lib.sh"
. "$top/tests/lib/xvfb.sh"

xvfb_need xfreerdp
EXTRA_CLEANUP='stop_broker; xvfb_stop'

alice_and_bob
start_broker
grep -q "rdp 127.0.0.1:$RDP_PORT" "$BROKER_LOG" ||
	skip "this broker was built without FreeRDP: $(grep ready "$BROKER_LOG")"

xvfb_start

# The gateway serves the broker's certificate.
served=$(openssl s_client -connect "127.0.0.1:$RDP_PORT" </dev/null 2>/dev/null |
    openssl x509 -noout -fingerprint -sha256 2>/dev/null)
if [ -n "$served" ]; then
	[ "$served" = "$(openssl x509 -noout -fingerprint -sha256 \
	    -in "$STATE/broker/cert.pem")" ] ||
		fail "the RDP certificate is not the broker's"
fi

xf /v:"127.0.0.1:$RDP_PORT" /u:alice /p:wrong-password &&
	broker_fail "a wrong RDP password was accepted"
grep -q "login alice refused" "$BROKER_LOG" ||
	broker_fail "the refused RDP login is not logged"
xf /v:"127.0.0.1:$RDP_PORT" /u:bob /p:bob-pw-2 /d:d1 &&
	broker_fail "bob opened alice's desktop over RDP"
[ "$(vm_field d1 state)" = stopped ] || fail "bob's attempt started d1"

# The portal's .rdp file, as mstsc or xfreerdp would get it.
login alice alice-pw-1
expect 200
curl -sk -o "$T/d1.rdp" -b "$T/jar.alice" "$URL/api/desktops/d1/console.rdp"
grep -q "^full address:s:127.0.0.1:$RDP_PORT" "$T/d1.rdp" ||
	fail "the .rdp file: $(cat "$T/d1.rdp")"
xf "$T/d1.rdp" /p:alice-pw-1 ||
	broker_fail "xfreerdp with the portal's .rdp file: $(tail -n 5 "$T/xf.log")"
grep -q "(alice on d1): logged in" "$BROKER_LOG" ||
	broker_fail "the RDP login did not land on d1"
[ "$(vm_field d1 state)" = running ] ||
	fail "the RDP login did not start d1: $(vm_field d1 state)"

# RDP failures count in the portal's lockout: five lock the login.
for i in 1 2 3 4 5; do
	xf /v:"127.0.0.1:$RDP_PORT" /u:alice /p:"wrong-$i"
done
login alice alice-pw-1
expect 429 "the portal after five RDP failures"

# Its own self-signed certificate: .rdp files let clients connect without
# verifying it, and the broker warns at start.
grep -q "^authentication level:i:0" "$T/d1.rdp" ||
	fail "the .rdp file with a self-signed certificate: $(grep authentication "$T/d1.rdp")"
grep -q "serving a self-signed certificate ($STATE/broker/cert.pem)" "$BROKER_LOG" ||
	broker_fail "no warning about the self-signed certificate"

# A real certificate (signed by a CA of the test's own): no warning, and
# the .rdp file asks the client to verify it.
kill -0 "$BROKER_PID" || broker_fail "the broker died"
stop_broker
openssl req -x509 -newkey rsa:2048 -nodes -days 2 -subj /CN=qdesk-test-ca \
    -keyout "$T/ca.key" -out "$T/ca.pem" >/dev/null 2>&1 &&
openssl req -newkey rsa:2048 -nodes -subj /CN=127.0.0.1 \
    -keyout "$T/real.key" -out "$T/real.csr" >/dev/null 2>&1 &&
openssl x509 -req -in "$T/real.csr" -CA "$T/ca.pem" -CAkey "$T/ca.key" \
    -CAcreateserial -days 2 -out "$T/real.pem" >/dev/null 2>&1 ||
	fail "openssl could not make a CA and a certificate"
mark=$(wc -l <"$BROKER_LOG")
start_broker --cert "$T/real.pem" --key "$T/real.key"
tail -n +"$((mark + 1))" "$BROKER_LOG" | grep -q "self-signed" &&
	broker_fail "a CA-signed certificate was called self-signed"
login bob bob-pw-2	# alice is locked out by now
expect 200
curl -sk -o "$T/d2.rdp" -b "$T/jar.bob" "$URL/api/desktops/d2/console.rdp"
grep -q "^authentication level:i:2" "$T/d2.rdp" ||
	fail "the .rdp file with a real certificate: $(cat "$T/d2.rdp")"

kill -0 "$BROKER_PID" || broker_fail "the broker died"
log ok
