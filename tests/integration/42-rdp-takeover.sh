#!/usr/bin/env bash
# RDP gateway, takeover: a second login of the same user to the same
# desktop takes it over. The first xfreerdp is told why (error info
# "disconnected by another connection", its exit status 5) and the gateway
# logs it; the second client shows the console, and is let go when the
# desktop is killed. The tiny KVM guest's VGA text screen is the console.
. "$(dirname "$0")/lib.sh"
. "$top/tests/lib/rdp-test-lib.sh"
rdp_require

start_qmpd --broker-user nobody
disk=$(tiny_disk d1)
qq vm create d1 --accel kvm --disk "$disk" --memory 32 --display none >/dev/null
printf 'alice-pw-1\n' | qq user add alice --password-stdin >/dev/null
qq desktop assign alice d1 >/dev/null
qq vm start d1 >/dev/null
wait_console d1 "QDESK TINY GUEST UP" 30
start_gateway
xvfb_start

rdp_client first /u:alice /p:alice-pw-1
first=$RDP_CLIENT
wait_gw_log "(alice on d1): logged in" 30
rdp_window "$first" >/dev/null || rdp_fail "no window for the first client"
kill -0 "$first" 2>/dev/null || rdp_fail "the first client ended early"

rdp_client second /u:alice /p:alice-pw-1
second=$RDP_CLIENT
wait_gw_log "session on d1 from .* is taken over by a new login" 30
rdp_gone "$first" || rdp_fail "the first client is still connected"
wait "$first"
status=$?
[ "$status" = 5 ] ||
	rdp_fail "first client exit $status, not 5 (connection replaced)"
grep -q "ERRINFO_DISCONNECTED_BY_OTHER_CONNECTION" "$T/xf-first.log" ||
	rdp_fail "the first client was not told why"
wait_gw_log "disconnected: alice logged in to d1 again from" 10

# The second client has the console.
kill -0 "$second" 2>/dev/null || rdp_fail "the second client ended"
win=$(rdp_window "$second") || rdp_fail "no window for the second client"
sleep 2
rmse=$(rdp_compare "$win" d1) || rdp_fail "screenshot failed"
log "second client vs screendump RMSE $rmse"
python3 -c "import sys; sys.exit(0 if $rmse < 0.02 else 1)" ||
	rdp_fail "the second client does not show the console (RMSE $rmse)"

# The desktop goes away under the session: the client is told, the
# gateway says why.
qq vm kill d1 >/dev/null
wait_gw_log "session ended after .*VNC connection closed" 20
rdp_gone "$second" || rdp_fail "the client stays on a dead desktop"
log ok
