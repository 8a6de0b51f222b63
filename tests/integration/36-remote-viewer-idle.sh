#!/usr/bin/env bash
# test: idle  (holds a real remote-viewer idle for two minutes: it waits, it does not compute)
# A real remote-viewer (virt-viewer) under Xvfb opens the portal's .vv
# file, which sends it through the broker's SPICE proxy, and then sits idle
# for two minutes as a user reading the screen would: it must still be
# linked at the end (process alive, main channel never closed, qmpd's
# session still open). Issue 10 item 0: the proxy used to cut an idle
# tunnel after 10 s. This is the suite's one long hold of a real client
# (past every broker timer: the request head's 10 s, evhttp's 60 s); the
# browser console's (39) is shorter.
. "$(dirname "$0")/lib.sh"
. "$top/tests/lib/broker-lib.sh"
. "$top/tests/lib/xvfb.sh"

IDLE=120
RV_PID=
rv_cleanup() {
	[ -n "$RV_PID" ] && kill "$RV_PID" 2>/dev/null && wait "$RV_PID" 2>/dev/null
	xvfb_stop
	stop_broker
}
EXTRA_CLEANUP=rv_cleanup

xvfb_need remote-viewer

start_qmpd --broker-user "$BROKER_USER"
need_kvm
add_user alice alice-pw-1
add_desktop d1 alice
start_broker

login alice alice-pw-1
expect 200
api alice POST /api/desktops/d1/start
expect 200
curl -sk -o "$T/d1.vv" -w '%{http_code}' -b "$T/jar.alice" \
    "$URL/api/desktops/d1/console.vv" >"$T/vv.code"
[ "$(cat "$T/vv.code")" = 200 ] || broker_fail "console.vv: HTTP $(cat "$T/vv.code")"
grep -q "^proxy=http://127.0.0.1:$PROXY_PORT" "$T/d1.vv" ||
	fail "the .vv file does not go through the proxy: $(grep proxy "$T/d1.vv")"

xvfb_start
HOME=$T remote-viewer --debug "$T/d1.vv" >"$T/rv.log" 2>&1 &
RV_PID=$!

# Linked: qmpd records alice's session, through the proxy (via is set).
# open_since prints the start of the open proxied session, or null.
open_since() {
	q --json session list --vm d1 |
	    jq -r '[.sessions[] | select(.end == null and .via != null)][0].start'
}
start=null
for i in $(seq 1 300); do
	start=$(open_since)
	[ "$start" != null ] && break
	alive "$RV_PID" || broker_fail "remote-viewer exited: $(tail -n 20 "$T/rv.log")"
	sleep 0.1
done
[ "$start" != null ] || broker_fail "remote-viewer did not link through the proxy: $(tail -n 20 "$T/rv.log")"
grep -q "proxy: 127.0.0.1 tunnelled to d1" "$BROKER_LOG" ||
	broker_fail "remote-viewer did not come through the proxy"
log "remote-viewer linked through the proxy; idle for $IDLE s"

# Idle: nobody touches it. Look every 5 s so a cut fails at once.
end=$((SECONDS + IDLE))
while [ $SECONDS -lt $end ]; do
	sleep 5
	alive "$RV_PID" || broker_fail "remote-viewer exited after $((SECONDS - end + IDLE)) s idle: $(tail -n 20 "$T/rv.log")"
	[ "$(open_since)" = "$start" ] ||
		broker_fail "the session ended after $((SECONDS - end + IDLE)) s idle: $(q --json session list --vm d1)"
	! grep -q "main channel: closed" "$T/rv.log" ||
		broker_fail "remote-viewer's main channel closed: $(grep -m1 'main channel: closed' "$T/rv.log")"
done
grep -q "closed the tunnel" "$BROKER_LOG" &&
	broker_fail "the proxy closed a tunnel: $(grep -m1 'closed the tunnel' "$BROKER_LOG")"
log ok
