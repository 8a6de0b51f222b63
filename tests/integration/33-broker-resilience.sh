#!/usr/bin/env bash
# The broker when things go wrong around it: qmpd killed in the middle of
# a request (the user gets a 503 that says so, not a hang), qmpd away (503,
# health down), qmpd back (the broker redials, sessions carry on, desktops
# kept running); garbage on the HTTPS and proxy ports, and a client that
# never sends its CONNECT, cost nothing but their own connection.
. "$(dirname "$0")/lib.sh"
. "$top/broker/test/broker-lib.sh"

start_qmpd --broker-user "$BROKER_USER"
need_kvm
add_user alice alice-pw-1
add_desktop d1 alice
add_desktop d2 alice
start_broker

login alice alice-pw-1
expect 200
api alice POST /api/desktops/d1/start
expect 200

# --- qmpd dies with a start in flight ----------------------------------
# d2's start waits for the guest to run; qmpd dies first.
curl -sk -o "$T/start.body" -w '%{http_code}' -b "$T/jar.alice" -X POST \
    -H 'X-Qdesk: 1' "$URL/api/desktops/d2/start" >"$T/start.code" &
starter=$!
for i in $(seq 1 50); do
	grep -q "request desktop.power" <(tail -n 5 "$QMPD_LOG") && break
	sleep 0.05
done
kill9_qmpd
wait $starter
[ "$(cat "$T/start.code")" = 503 ] ||
	fail "a start cut short by qmpd's death got $(cat "$T/start.code"): $(cat "$T/start.body")"
grep -q "qmpd went away" "$T/start.body" ||
	fail "the cut-short start does not say why: $(cat "$T/start.body")"
api alice GET /api/desktops
expect 503 "desktops while qmpd is away"
printf '%s' "$(field error)" | grep -q "not reachable" ||
	fail "the 503 does not say why: $BODY"
code=$(curl -sk -o /dev/null -w '%{http_code}' "$URL/api/health")
[ "$code" = 503 ] || fail "health says $code with qmpd away"
grep -q "lost qmpd" "$BROKER_LOG" || broker_fail "the broker did not notice"

# --- qmpd comes back ------------------------------------------------------
start_qmpd --broker-user "$BROKER_USER"
for i in $(seq 1 100); do
	curl -skf "$URL/api/health" >/dev/null && break
	sleep 0.1
done
curl -skf "$URL/api/health" >/dev/null ||
	broker_fail "the broker did not redial qmpd within 10 s"
api alice GET /api/desktops
expect 200 "the session outlived qmpd's restart"
[ "$(printf '%s' "$BODY" | jq -r '.[] | select(.name == "d1") | .state')" = running ] ||
	fail "d1 after qmpd's restart: $BODY"
api alice POST /api/desktops/d1/console
expect 200 "console after qmpd's restart"
probe "$(field password)" "$(field port)" >/dev/null ||
	fail "the console password after qmpd's restart does not link"

# --- garbage ---------------------------------------------------------------
# Plain HTTP and random bytes on the HTTPS port.
printf 'GET / HTTP/1.1\r\nHost: x\r\n\r\n' | socat -t2 - "TCP:127.0.0.1:$HTTPS_PORT" >/dev/null 2>&1
head -c 5000 /dev/urandom | socat -t2 - "TCP:127.0.0.1:$HTTPS_PORT" >/dev/null 2>&1
head -c 20000 /dev/urandom | socat -t2 - "TCP:127.0.0.1:$PROXY_PORT" >/dev/null 2>&1
# A request head that never ends.
first=$( (printf 'CONNECT x:1 HTTP/1.1\r\n'; head -c 9000 /dev/zero | tr '\0' a) |
    socat -t3 - "TCP:127.0.0.1:$PROXY_PORT" | head -1 | tr -d '\r')
[ "$first" = "HTTP/1.1 431 Request Header Fields Too Large" ] ||
	fail "an endless CONNECT head: '$first'"
# A client that connects and says nothing is dropped after 10 s.
start=$(date +%s)
timeout 20 socat -u "TCP:127.0.0.1:$PROXY_PORT" - >/dev/null 2>&1
took=$(( $(date +%s) - start ))
[ $took -ge 9 ] && [ $took -le 13 ] ||
	fail "a silent proxy client was dropped after $took s, not 10"
grep -q "sent no CONNECT within 10 s" "$BROKER_LOG" ||
	broker_fail "the silent proxy client's drop is not logged"

kill -0 "$BROKER_PID" || broker_fail "the broker died"
api alice GET /api/desktops
expect 200 "after the garbage"
log ok
