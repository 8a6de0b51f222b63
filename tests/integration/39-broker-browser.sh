#!/usr/bin/env bash
# test: idle  (most of it is a 75 s hold of an idle browser console: it waits, it does not compute)
# The browser console: POST /api/desktops/NAME/console {"type":"browser"}
# gives a WebSocket address with a one-time ticket; the WebSocket (checked
# with a small client, tests/lib/ws-probe.py) needs the session cookie,
# this host's Origin and a live, unused ticket of that user for that
# desktop, then carries QEMU's VNC stream (RFB greeting, ping/pong, close;
# an unmasked client frame closes it with 1002). The page console.html and
# noVNC's modules, served from the novnc package's files. Then in real
# headless Chromium (tests/lib/console.mjs): "Open in browser" on the
# portal connects; the canvas's pixels match QEMU's screendump (RMSE under
# 0.02, and not one colour); a line typed on the page runs in the guest
# (serial log); bob's page is refused and his WebSocket with alice's
# ticket gets 403; a stale and a reused ticket get 403; after
# QDESK_CONSOLE_HOLD (75) s idle, past every broker timer (evhttp's 60 s),
# the console is still connected and still types (the suite's one hold of
# two minutes and more is remote-viewer's, 36). Screenshots in build/test-results/39-broker-browser*.png.
. "$(dirname "$0")/lib.sh"
. "$top/tests/lib/broker-lib.sh"

WSPROBE=$top/tests/lib/ws-probe.py

start_qmpd --broker-user "$BROKER_USER"
add_user alice alice-pw-1
add_user bob bob-pw-2
qq vm create d1 --accel tcg --memory 256 --kernel "$GUESTS/vmlinuz" \
    --initrd "$GUESTS/initrd.img" --append "console=tty0 console=ttyS0 no_timer_check" \
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

# --- in real headless Chromium (as 32-broker-portal drives it) -------------
HOLD=${QDESK_CONSOLE_HOLD:-75}
need_playwright fail
cp "$top/tests/lib/console.mjs" "$NODE_DIR/console.mjs"
mkdir -p "$RESULTS"
# The canvas's pixels against QEMU's own screendump, over its size.
cat >"$T/compare.sh" <<EOF2
"$QDESK_BIN" vm screenshot d1 "$T/qmp.ppm" >/dev/null || exit 1
size=\$(identify -format '%wx%h' "$T/qmp.ppm")
convert "\$1" -crop "\$size+0+0" +repage "$T/canvas-crop.png"
compare -metric RMSE "$T/canvas-crop.png" "$T/qmp.ppm" null: 2>&1 |
    sed -n 's/.*(\\(.*\\)).*/\\1/p'
EOF2
log "browser console in chromium, then $HOLD s idle"
out=$(cd "$NODE_DIR" && ALICE=alice ALICE_PW=alice-pw-1 BOB=bob BOB_PW=bob-pw-2 \
    COMPARE_CMD="bash $T/compare.sh \"\$1\"" \
    timeout $((HOLD + 200)) node console.mjs "$URL/" d1 "$T/console" \
    "$STATE/vms/d1/serial.log" 6 "$HOLD" 2>"$T/console.err") ||
	broker_fail "the console in chromium: $(tail -5 "$T/console.err")"
printf '%s\n' "$out" >"$T/console.json"
cp "$T/console"/*.png "$RESULTS/"
j() { jq -r ".$1" "$T/console.json"; }
log "canvas $(j canvas), RMSE against the screendump $(j rmse)"
[ "$(j button)" = "Open in browser" ] || fail "the portal's button says '$(j button)'"
[ "$(j url)" = "$URL/console.html?desktop=d1" ] || fail "the console tab is at $(j url)"
# Not a blank screen that matches a blank screen: the console's text is on it.
colours=$(convert "$RESULTS/39-broker-browser.png" -format '%k' info:)
[ "$colours" -gt 1 ] || fail "the canvas is one colour"
[ "$(j typed)" = true ] && [ "$(j typed_after_hold)" = true ] ||
	fail "typing: $(cat "$T/console.json")"
[ "$(j bob_page)" = "This desktop is not yours." ] || fail "bob's console page says: $(j bob_page)"
[ "$(j bob_ws)" != open ] || fail "bob's WebSocket with alice's ticket opened"
grep -q "browser console of d1 refused: the console ticket is not this user's" "$BROKER_LOG" ||
	fail "the broker did not refuse bob's WebSocket for the ticket's owner"
[ "$(j stale_ws)" != open ] || fail "a stale ticket opened a WebSocket"
[ "$(grep -c "browser console of d1 refused: the console ticket has expired" "$BROKER_LOG")" -ge 2 ] ||
	fail "the broker did not refuse the stale ticket in chromium"
[ "$(j first_ws)" = open ] && [ "$(j reused_ws)" != open ] ||
	fail "a ticket in chromium: first $(j first_ws), reused $(j reused_ws)"
# Chromium itself saw the 403s: bob's, the stale and the reused ticket's.
[ "$(j bob_ws_403)" = 1 ] && [ "$(j alice_ws_403)" = 2 ] ||
	fail "403s seen by chromium: bob $(j bob_ws_403), alice $(j alice_ws_403) (want 1, 2)"
[ "$(j state_after_hold)" = connected ] || fail "after $HOLD s: $(j state_after_hold)"
# noVNC took the broker's continuous updates (QEMU has none): it asked
# for its first, full update only, and the typing above still showed.
for i in $(seq 1 50); do
	grep -q "browser console of d1 closed.*continuous" "$BROKER_LOG" && break
	sleep 0.2
done
line=$(grep "browser console of d1 closed.*continuous" "$BROKER_LOG" | tail -1)
[ -n "$line" ] || fail "no browser console took continuous updates"
printf '%s\n' "$line" | grep -q "browser: 1 update requests" ||
	fail "noVNC still asked for updates itself: $line"
[ "$(j 'errors | length')" = 0 ] || fail "page errors: $(j errors)"
kill -0 "$BROKER_PID" || fail "the broker died"
log "screenshots: $RESULTS/39-broker-browser.png (canvas), -page.png, -after.png"
log ok
