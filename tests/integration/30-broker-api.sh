#!/usr/bin/env bash
# test: idle  (the broker and tiny KVM desktops, no TCG: its time is timeouts and slow clients waited for, not CPU)
# The broker's HTTPS API with curl, against a real qmpd (broker role) and
# tiny SPICE desktops under KVM: login, wrong password, lockout, CSRF and
# body rules, my desktops, start, console passwords that spice-probe
# accepts, a second console that does not cut the first, expiry, another
# user refused without touching the VM, the .vv file, logout.
. "$(dirname "$0")/lib.sh"
. "$top/tests/lib/broker-lib.sh"

start_qmpd --broker-user "$BROKER_USER"
need_kvm
add_user alice alice-pw-1
add_user bob bob-pw-2
add_user carol carol-pw-3
add_desktop d1 alice
add_desktop d2 bob
start_broker --console-ttl 8

# --- the daemon itself -------------------------------------------------
[ "$(awk '/^Uid:/ {print $2}' /proc/$BROKER_PID/status)" = \
    "$(id -u $BROKER_USER)" ] || fail "the broker does not run as $BROKER_USER"
[ "$(stat -c '%a %U' "$STATE/broker/key.pem")" = "600 $BROKER_USER" ] ||
	fail "key.pem: $(stat -c '%a %U' "$STATE/broker/key.pem")"
[ "$(stat -c '%a %U' "$STATE/broker/cert.pem")" = "600 $BROKER_USER" ] ||
	fail "cert.pem: $(stat -c '%a %U' "$STATE/broker/cert.pem")"
served=$(openssl s_client -connect "127.0.0.1:$HTTPS_PORT" </dev/null \
    2>/dev/null | openssl x509 -noout -fingerprint -sha256)
[ -n "$served" ] && [ "$served" = "$(openssl x509 -noout -fingerprint \
    -sha256 -in "$STATE/broker/cert.pem")" ] ||
	fail "the HTTPS certificate is not the one in $STATE/broker"

# --- logging in ---------------------------------------------------------
api alice GET /api/desktops
expect 401 "desktops before login"
login alice wrong-password
expect 401
[ "$(field error)" = "wrong user name or password" ] || fail "401 says: $BODY"
login nosuchuser whatever
expect 401 "unknown user"

# The session cookie: 256 random bits, HttpOnly, Secure, SameSite=Strict.
curl -sk -D "$T/login.h" -o /dev/null -c "$T/jar.alice" -X POST \
    -H 'X-Qdesk: 1' -H 'Content-Type: application/json' \
    --data '{"user":"alice","password":"alice-pw-1"}' "$URL/api/login"
grep -qiE '^Set-Cookie: qdesk_session=[0-9a-f]{64}; Path=/; Secure; HttpOnly; SameSite=Strict' \
    "$T/login.h" || fail "login cookie: $(grep -i set-cookie "$T/login.h")"
api alice GET /api/me
expect 200
[ "$(field login)" = alice ] && [ "$(field name)" = "User alice" ] ||
	fail "/api/me: $BODY"

# --- what a request must look like --------------------------------------
code=$(curl -sk -o /dev/null -w '%{http_code}' -b "$T/jar.alice" -X POST \
    "$URL/api/desktops/d1/start")
[ "$code" = 403 ] || fail "a POST without X-Qdesk got $code"
code=$(curl -sk -o /dev/null -w '%{http_code}' -b "$T/jar.alice" -X POST \
    -H 'X-Qdesk: 1' -H 'Origin: https://evil.example' \
    "$URL/api/desktops/d1/start")
[ "$code" = 403 ] || fail "a POST from another origin got $code"
[ "$(vm_field d1 state)" = stopped ] || fail "a refused POST started d1"
code=$(curl -sk -o /dev/null -w '%{http_code}' -X POST -H 'X-Qdesk: 1' \
    -H 'Content-Type: text/plain' --data 'user=alice' "$URL/api/login")
[ "$code" = 415 ] || fail "a non-JSON login got $code"
code=$(curl -sk -o /dev/null -w '%{http_code}' -X POST -H 'X-Qdesk: 1' \
    -H 'Content-Type: application/json' --data '{"user":' "$URL/api/login")
[ "$code" = 400 ] || fail "broken JSON got $code"
head -c 100000 /dev/zero | tr '\0' 'a' >"$T/big"
code=$(curl -sk -o /dev/null -w '%{http_code}' -X POST -H 'X-Qdesk: 1' \
    -H 'Content-Type: application/json' --data-binary @"$T/big" \
    "$URL/api/login")
[ "$code" = 413 ] || fail "a 100 kB body got $code"
api alice GET /api/nothing-here
expect 404
api alice GET /api/desktops/d1/start
expect 405 "GET on a POST route"

# --- my desktops, start -------------------------------------------------
api alice GET /api/desktops
expect 200
[ "$(printf '%s' "$BODY" | jq -c '[.[].name]')" = '["d1"]' ] ||
	fail "alice's desktops: $BODY"
[ "$(printf '%s' "$BODY" | jq -r '.[0].state')" = stopped ] ||
	fail "d1 is not stopped: $BODY"
login bob bob-pw-2
expect 200
api bob GET /api/desktops
[ "$(printf '%s' "$BODY" | jq -c '[.[].name]')" = '["d2"]' ] ||
	fail "bob's desktops: $BODY"

api alice POST /api/desktops/d1/start
expect 200
[ "$(field state)" = running ] || fail "start answered $BODY"
[ "$(vm_field d1 state)" = running ] || fail "d1 is not running"
api alice POST /api/desktops/d1/console
expect 200 "console of a running desktop"

# --- console passwords --------------------------------------------------
pw1=$(field password)
port=$(field port)
[ "$(field uri)" = "spice://127.0.0.1?tls-port=$port&password=$pw1" ] ||
	fail "console uri: $(field uri)"
spice_trust
[ "$(field proxy)" = "http://127.0.0.1:$PROXY_PORT" ] ||
	fail "console proxy: $(field proxy)"
case $(field ticket) in qdesk-d1-*) ;; *) fail "ticket: $(field ticket)" ;; esac
[ "$port" = "$(vm_field d1 spice.port)" ] || fail "port $port is not d1's"
probe "$pw1" "$port" >/dev/null || fail "spice-probe refused the console password"
probe wrong-password "$port" 2>/dev/null
[ $? = 1 ] || fail "spice-probe accepted a wrong password"

# --- SPICE over TLS only ----------------------------------------------------
# The CA is the host's, made by qmpd, its key root's alone; d1 has a key
# and certificate of its own, signed by it, readable by d1's uid alone.
cmp -s "$SPICE_CA" "$STATE/spice-tls/ca-cert.pem" ||
	fail "the console's ca is not qmpd's SPICE CA"
[ "$(stat -c '%a %U %G' "$STATE/spice-tls/ca-key.pem")" = "600 root root" ] ||
	fail "SPICE CA key: $(stat -c '%a %U %G' "$STATE/spice-tls/ca-key.pem")"
d1uid=$(stat -c %u "$STATE/vms/d1")
[ "$(stat -c '%a %u' "$STATE/vms/d1/tls/server-key.pem")" = "600 $d1uid" ] ||
	fail "d1's SPICE key: $(stat -c '%a %u' "$STATE/vms/d1/tls/server-key.pem")"
openssl verify -CAfile "$STATE/spice-tls/ca-cert.pem" \
    "$STATE/vms/d1/tls/server-cert.pem" >/dev/null 2>&1 ||
	fail "d1's SPICE certificate is not signed by the CA"
[ "$SPICE_SUBJECT" = CN=qdesk-spice-d1 ] || fail "host_subject: $SPICE_SUBJECT"
# No plaintext SPICE on the port, a foreign certificate is not trusted,
# and the subject is checked.
"$PROBE" 127.0.0.1 "$port" "$pw1" >"$T/plain.out" 2>&1
[ $? = 2 ] || fail "a plaintext link was not refused: $(cat "$T/plain.out")"
"$PROBE" 127.0.0.1 "$port" "$pw1" --ca "$STATE/broker/cert.pem" >"$T/foreign.out" 2>&1
[ $? = 2 ] && grep -q "certificate not trusted" "$T/foreign.out" ||
	fail "a foreign CA was trusted: $(cat "$T/foreign.out")"
"$PROBE" 127.0.0.1 "$port" "$pw1" --ca "$SPICE_CA" --host-subject CN=other \
    >"$T/subject.out" 2>&1
[ $? = 2 ] && grep -q "certificate subject" "$T/subject.out" ||
	fail "a wrong subject was accepted: $(cat "$T/subject.out")"

# A viewer linked with the first password stays up through a second
# console request (connected=keep); the first password no longer links.
probe "$pw1" "$port" --hold 6 >"$T/hold.out" 2>&1 &
hold=$!
for i in $(seq 1 50); do
	grep -q accepted "$T/hold.out" && break
	sleep 0.1
done
grep -q accepted "$T/hold.out" || fail "the long-lived probe did not link: $(cat "$T/hold.out")"
api alice POST /api/desktops/d1/console
expect 200 "second console request"
pw2=$(field password)
expires2=$(field expires)
[ "$pw2" != "$pw1" ] || fail "the second console request reused the password"
probe "$pw1" "$port" 2>/dev/null
[ $? = 1 ] || fail "the first password still links after the second request"
wait $hold
rc=$?
[ $rc = 0 ] || fail "the second console request cut the first viewer (exit $rc): $(cat "$T/hold.out")"

# After its expiry the password is refused.
now=$(date +%s)
[ "$expires2" -gt "$now" ] && [ "$expires2" -le $((now + 9)) ] ||
	fail "expires $expires2 is not within --console-ttl 8 of $now"
sleep $((expires2 - now + 1))
probe "$pw2" "$port" 2>/dev/null
[ $? = 1 ] || fail "the console password still works after its expiry"

# --- another user's desktop ---------------------------------------------
api alice POST /api/desktops/d1/console
pw3=$(field password)
for action in console start shutdown reboot; do
	api bob POST "/api/desktops/d1/$action"
	expect 403 "bob: $action of alice's d1"
done
api bob GET /api/desktops/d1/console.vv
expect 403 "bob: .vv of alice's d1"
api bob POST /api/desktops/nosuchvm/console
expect 403 "bob: a desktop that does not exist"
api bob POST /api/desktops/BAD%20NAME/console
expect 404 "a name that cannot be a VM's"
[ "$(vm_field d1 state)" = running ] || fail "bob changed d1's state"
probe "$pw3" "$port" >/dev/null ||
	fail "bob's refused console request changed d1's password"
grep -q "user bob from 127.0.0.1 POST /api/desktops/d1/console refused: PermissionDenied" "$BROKER_LOG" ||
	fail "the broker did not log bob's refusal"

# --- the .vv file ---------------------------------------------------------
curl -sk -D "$T/vv.h" -o "$T/d1.vv" -b "$T/jar.alice" \
    "$URL/api/desktops/d1/console.vv"
grep -qi '^Content-Type: application/x-virt-viewer' "$T/vv.h" ||
	fail ".vv content type: $(cat "$T/vv.h")"
grep -qi '^Content-Disposition: attachment; filename="d1.vv"' "$T/vv.h" ||
	fail ".vv disposition: $(cat "$T/vv.h")"
vv() { sed -n "s/^$1=//p" "$T/d1.vv"; }
[ "$(head -1 "$T/d1.vv")" = "[virt-viewer]" ] && [ "$(vv type)" = spice ] &&
    [ "$(vv tls-port)" = "$port" ] && [ -z "$(vv port)" ] &&
    [ "$(vv host-subject)" = "$SPICE_SUBJECT" ] &&
    [ "$(vv secure-channels)" = all ] && [ "$(vv delete-this-file)" = 1 ] &&
    [ "$(vv secure-attention)" = ctrl+alt+end ] &&
    [ "$(vv toggle-fullscreen)" = shift+f11 ] &&
    [ "$(vv release-cursor)" = shift+f12 ] &&
    [ "$(vv title)" = "d1 (qdesk)" ] &&
    [ "$(vv proxy)" = "http://127.0.0.1:$PROXY_PORT" ] ||
	fail "the .vv file: $(cat "$T/d1.vv")"
case $(vv host) in qdesk-d1-*) ;; *) fail ".vv host is not a ticket: $(vv host)" ;; esac
vv_ca "$T/d1.vv" >"$T/vv-ca.pem"
cmp -s "$T/vv-ca.pem" "$SPICE_CA" || fail "the .vv ca= is not the certificate: $(vv ca)"
"$PROBE" 127.0.0.1 "$port" "$(vv password)" --ca "$T/vv-ca.pem" \
    --host-subject "$(vv host-subject)" >/dev/null ||
	fail "the .vv password, ca and host-subject do not link"

# The .rdp file for the broker's RDP gateway, for her own desktops only.
api alice GET /api/me
if [ "$(field rdp)" = true ]; then
	api alice GET /api/desktops/d1/console.rdp
	expect 200 "console.rdp"
	printf '%s' "$BODY" | grep -q "^full address:s:127.0.0.1:$RDP_PORT" &&
	    printf '%s' "$BODY" | grep -q "^username:s:.*alice" ||
		fail "the .rdp file: $BODY"
	api bob GET /api/desktops/d1/console.rdp
	expect 403 "bob: .rdp of alice's d1"
else
	log "built without FreeRDP: console.rdp must say so"
	api alice GET /api/desktops/d1/console.rdp
	expect 501 "console.rdp without the gateway"
fi

# --- lockout: five failures lock the login, even for the right password --
for i in 1 2 3 4 5; do
	login carol "wrong-$i"
	expect 401 "failure $i"
done
curl -sk -D "$T/lock.h" -o "$T/lock.body" -w '%{http_code}' -X POST \
    -H 'X-Qdesk: 1' -H 'Content-Type: application/json' \
    --data '{"user":"carol","password":"carol-pw-3"}' "$URL/api/login" \
    >"$T/lock.code"
[ "$(cat "$T/lock.code")" = 429 ] ||
	fail "a locked login got $(cat "$T/lock.code"): $(cat "$T/lock.body")"
grep -qiE '^Retry-After: [0-9]+' "$T/lock.h" || fail "429 without Retry-After"
jq -r .error "$T/lock.body" | grep -q "try again in [0-9]* s" ||
	fail "the 429 does not say how long: $(cat "$T/lock.body")"
login alice alice-pw-1
expect 200 "another user is not locked"

# --- logout -------------------------------------------------------------
sid=$(awk '$6 == "qdesk_session" {print $7}' "$T/jar.alice")
api alice POST /api/logout
expect 200
api alice GET /api/desktops
expect 401 "after logout"
code=$(curl -sk -o /dev/null -w '%{http_code}' -H "Cookie: qdesk_session=$sid" \
    "$URL/api/desktops")
[ "$code" = 401 ] || fail "the old session cookie still works ($code)"
api bob GET /api/desktops
expect 200 "bob's session outlives alice's logout"

kill -0 "$BROKER_PID" || broker_fail "the broker died"

# --- idle sessions -----------------------------------------------------------
# The portal's background refresh (X-Qdesk-Background: 1) does not keep a
# session up: with --session-idle 3, an unattended tab is logged out,
# while a user who keeps acting stays in.
stop_broker
start_broker --session-idle 3
bg() {
	curl -sk -o /dev/null -w '%{http_code}' -b "$T/jar.alice" \
	    -H 'X-Qdesk-Background: 1' "$URL/api/desktops"
}
# A refusal is right only once 3 s have passed since the login reached
# the broker, which is no earlier than we sent it (tl): on a loaded
# machine the loop's count of seconds says nothing.
tl=$(date +%s%N)
login alice alice-pw-1
expect 200 "login for the idle check"
for i in 1 2 3 4 5; do
	code=$(bg)
	ms=$(( ($(date +%s%N) - tl) / 1000000 ))
	[ "$code" = 200 ] || [ "$ms" -ge 3000 ] ||
		fail "a background refresh was refused $ms ms after the login was sent ($code)"
	sleep 1
done
api alice GET /api/desktops
expect 401 "an unattended tab after the idle time"
login alice alice-pw-1
for i in 1 2 3 4 5; do
	api alice GET /api/desktops
	expect 200 "a user acting every second, $i s in"
	sleep 1
done

kill -0 "$BROKER_PID" || broker_fail "the broker died"
log ok
