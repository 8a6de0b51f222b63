#!/usr/bin/env bash
# The browser console: POST /api/desktops/NAME/console {"type":"browser"}
# gives a WebSocket address with a one-time ticket; the WebSocket (checked
# with a small client, broker/test/ws-probe.py) needs the session cookie,
# this host's Origin and a live, unused ticket of that user for that
# desktop, then carries QEMU's VNC stream (RFB greeting, ping/pong, close;
# an unmasked client frame closes it with 1002). The page console.html and
# noVNC's modules, served from the novnc package's files.
. "$(dirname "$0")/lib.sh"
. "$top/broker/test/broker-lib.sh"

WSPROBE=$top/broker/test/ws-probe.py

start_qmpd --broker-user "$BROKER_USER"
add_user alice alice-pw-1
add_user bob bob-pw-2
qq vm create d1 --accel tcg --memory 256 --kernel "$GUESTS/vmlinuz" \
    --initrd "$GUESTS/initrd.img" --append "console=tty0 console=ttyS0" \
    >/dev/null
qq desktop assign alice d1 >/dev/null
start_broker --console-ttl 6

login alice alice-pw-1
expect 200
login bob bob-pw-2
expect 200
cookie() { awk '$6 == "qdesk_session" {print $7}' "$T/jar.$1"; }

# --- the API ------------------------------------------------------------
api alice POST /api/desktops/d1/console '{"type":"browser"}'
expect 409 "a browser console of a stopped desktop"
api alice POST /api/desktops/d1/start
expect 200
wait_console d1 "QDESK GUEST READY" 90
api alice POST /api/desktops/d1/console '{"type":"telnet"}'
expect 400 "an unknown console type"
[ "$(field error)" = "no console type 'telnet': spice or browser" ] ||
	fail "unknown type says: $BODY"
api alice POST /api/desktops/d1/console '{"type":7}'
expect 400 "a type that is not a string"
api bob POST /api/desktops/d1/console '{"type":"browser"}'
expect 403 "bob's browser console of alice's desktop"
# No type is still SPICE.
api alice POST /api/desktops/d1/console
expect 200
[ -n "$(field password)" ] && [ "$(field ws)" = null ] ||
	fail "no type did not answer SPICE: $BODY"

# ticket: a fresh browser console address for alice; sets WS.
ticket() {
	api alice POST /api/desktops/d1/console '{"type":"browser"}'
	expect 200 "a browser console"
	WS=$(field ws)
	printf '%s' "$WS" | grep -qE '^/api/desktops/d1/console\.ws\?ticket=[0-9a-f]{64}$' ||
		fail "the ws address: $BODY"
	local exp
	exp=$(field expires)
	[ "$exp" -gt "$(date +%s)" ] && [ "$exp" -le "$(( $(date +%s) + 7 ))" ] ||
		fail "expires $exp is not within the TTL: $BODY"
}
probe() { timeout 30 python3 "$WSPROBE" "$URL" "$@" 2>"$T/probe.err"; }

# --- the WebSocket ------------------------------------------------------
ticket
out=$(probe "$WS" "$(cookie alice)") || fail "ws-probe: $(cat "$T/probe.err")"
[ "$(printf '%s\n' "$out" | head -n 1)" = 101 ] ||
	broker_fail "the WebSocket did not open: $out"
printf '%s\n' "$out" | sed -n 2p | grep -q '^RFB 003\.008$' ||
	fail "no RFB greeting over the WebSocket: $out"
printf '%s\n' "$out" | grep -qx pong || fail "no pong: $out"
printf '%s\n' "$out" | grep -qx 'close 1000' || fail "no close 1000: $out"
# Used once: the same ticket again is refused.
[ "$(probe "$WS" "$(cookie alice)")" = 403 ] || fail "a reused ticket was not refused"
# Another user's cookie with alice's ticket.
ticket
[ "$(probe "$WS" "$(cookie bob)")" = 403 ] || fail "bob's cookie with alice's ticket was not refused"
# Another origin.
ticket
[ "$(probe "$WS" "$(cookie alice)" https://evil.example)" = 403 ] ||
	fail "another origin was not refused"
# No cookie at all.
ticket
[ "$(probe "$WS" nosuchsession)" = 401 ] || fail "no session was not refused"
# A stale ticket (the TTL is 6 s).
ticket
sleep 8
[ "$(probe "$WS" "$(cookie alice)")" = 403 ] || fail "a stale ticket was not refused"
grep -q "console ticket has expired" "$BROKER_LOG" || fail "the log does not say the ticket expired"
# No ticket, a made-up one, and a plain GET.
[ "$(probe /api/desktops/d1/console.ws "$(cookie alice)")" = 403 ] || fail "no ticket was not refused"
[ "$(probe "/api/desktops/d1/console.ws?ticket=$(printf '%064d' 0)" "$(cookie alice)")" = 403 ] ||
	fail "a made-up ticket was not refused"
api alice GET /api/desktops/d1/console.ws
expect 400 "a GET that is not an upgrade"
# An unmasked client frame breaks RFC 6455: closed with 1002.
ticket
out=$(probe "$WS" "$(cookie alice)" "$URL" --unmasked) || fail "ws-probe: $(cat "$T/probe.err")"
printf '%s\n' "$out" | grep -qx 'close 1002' || fail "an unmasked frame got: $out"
grep -q "browser console of d1 closed" "$BROKER_LOG" || fail "the broker does not log the close"

# --- the page and noVNC, from the novnc package --------------------------
hdr() { curl -sk -D - -o "$T/page" "$URL$1" | tr -d '\r'; }
h=$(hdr /console.html)
printf '%s\n' "$h" | head -n 1 | grep -q ' 200' || fail "console.html: $h"
printf '%s\n' "$h" | grep -qi "^Content-Security-Policy: default-src 'self';" ||
	fail "console.html's CSP: $h"
grep -q 'src="/console.js"' "$T/page" || fail "console.html does not load console.js"
grep -q "from '/novnc/core/rfb.js'" "$top/broker/portal/console.js" ||
	fail "console.js does not import the package's noVNC"
h=$(hdr /novnc/core/rfb.js)
printf '%s\n' "$h" | grep -qi '^Content-Type: text/javascript' ||
	fail "rfb.js: $h"
cmp -s "$T/page" /usr/share/novnc/core/rfb.js || fail "rfb.js is not the package's"
h=$(hdr /novnc/vendor/pako/lib/zlib/inflate.js)
cmp -s "$T/page" /usr/share/novnc/vendor/pako/lib/zlib/inflate.js ||
	fail "pako's inflate.js is not the package's: $h"
for bad in /novnc/core/../../../etc/passwd /novnc/core/nothing.js /novnc/vnc.html; do
	code=$(curl -sk -o /dev/null -w '%{http_code}' --path-as-is "$URL$bad")
	[ "$code" = 404 ] || fail "$bad got $code"
done

kill -0 "$BROKER_PID" || fail "the broker died"
log ok
