#!/usr/bin/env bash
# Login throttles (issue 10 item 4, the broker's side): the portal and the
# RDP gateway share one throttle per client address (20 failures at once,
# then one try per 3 s); an attempt is charged as it arrives and given
# back when it succeeds, so a burst of queued wrong attempts cannot
# outrun it, while a user logging in again and again is never slowed; a
# password over qmpd's 256-byte limit fails at once, on the portal and
# over RDP, without a round trip to qmpd. The broker runs with
# --login-refill 60 (a token back a minute after the last refused try,
# not 3 s): the checks below then never race the refill, however slow
# the machine is.
. "$(dirname "$0")/lib.sh"
. "$top/tests/lib/broker-lib.sh"
. "$top/tests/lib/xvfb.sh"

xvfb_need xfreerdp
EXTRA_CLEANUP='stop_broker; xvfb_stop'

# qmpd_saw PATTERN: how many user.auth failures qmpd logged for it.
qmpd_saw() { grep -c "login $1 from .* refused" "$QMPD_LOG"; }

start_qmpd --broker-user "$BROKER_USER"
add_user alice alice-pw-1
start_broker --login-refill 60
grep -q "rdp 127.0.0.1:$RDP_PORT" "$BROKER_LOG" ||
	fail "this broker was built without FreeRDP: $(grep ready "$BROKER_LOG")"
xvfb_start

# --- successes cost nothing: 25 logins in a row, past the burst of 20 ---
for i in $(seq 1 25); do
	api "a$i" POST /api/login '{"user":"alice","password":"alice-pw-1"}'
	expect 200 "login $i of alice in a row"
done

# --- over the length limit: refused at once, qmpd never asked -----------
long=$(head -c 300 /dev/zero | tr '\0' x)
login alice "$long"
expect 401 "a 300-byte password on the portal"
grep -q "login from 127.0.0.1 failed: user name or password over its length limit" \
    "$BROKER_LOG" || broker_fail "the portal's over-long password is not logged"
# RDP carries at most 255 UTF-16 characters: 200 'é' are 400 bytes here.
xf /v:"127.0.0.1:$RDP_PORT" /u:alice /p:"$(printf 'é%.0s' $(seq 1 200))" &&
	broker_fail "a 400-byte RDP password was accepted"
grep -q "login alice refused: user name or password over its length limit" \
    "$BROKER_LOG" || broker_fail "the RDP over-long password is not logged: $(tail -n 3 "$T/xf.log")"
[ "$(qmpd_saw alice)" = 0 ] || fail "qmpd was asked about an over-long password"

# --- 40 wrong attempts at once: at most the burst reach qmpd ------------
t0=$SECONDS
seq 1 40 | xargs -P 40 -I{} curl -sk -o "$T/flood.{}" -H 'X-Qdesk: 1' \
    -H 'Content-Type: application/json' \
    --data '{"user":"nobody{}","password":"wrong"}' "$URL/api/login"
throttled=$(grep -l "too many failed logins from your address" "$T"/flood.* | wc -l)
asked=$(qmpd_saw 'nobody[0-9]*')
log "40 wrong logins at once: $asked reached qmpd, $throttled throttled"
# The burst, plus a token per 60 s if the flood itself took that long.
most=$((20 + (SECONDS - t0) / 60))
[ "$asked" -le "$most" ] && [ $((asked + throttled)) = 40 ] ||
	broker_fail "the throttle let $asked of 40 queued wrong logins reach qmpd, over $most ($throttled throttled)"

# --- RDP shares the throttle: even the right password waits -------------
xf /v:"127.0.0.1:$RDP_PORT" /u:alice /p:alice-pw-1 && broker_fail "RDP logged in past the exhausted throttle"
grep -q "login refused: too many failed logins from 127.0.0.1" "$BROKER_LOG" ||
	broker_fail "RDP did not go through the portal's throttle: $(tail -n 3 "$T/xf.log")"
grep -q "login alice from RDP" "$QMPD_LOG" &&
	fail "qmpd was asked about an RDP login the throttle refused"
login alice alice-pw-1
expect 429 "the portal after the flood"

kill -0 "$BROKER_PID" || broker_fail "the broker died"
log ok
