#!/usr/bin/env bash
# RDP gateway, the clipboard across a reconnect (issue 12): text copied in
# the guest while a client is connected, never pasted there, is what the
# next client of the same user finds in its clipboard. QEMU 7.2's VNC
# server tells a new connection nothing about the clipboard it has, so the
# gateway fetches the guest's text when the guest copies and keeps it per
# user and desktop (rdp-clip-cache.c). Then the other way, in the new
# session: text copied on the client reaches the guest. Then a copy in
# the guest while no session is open: the ended session's VNC stream
# stayed as the desktop's clipboard keeper (rdp-clip-keep.c), fetched it,
# and the next client gets that text, not the one kept before.
. "$(dirname "$0")/lib.sh"
. "$top/tests/lib/rdp-test-lib.sh"
rdp_require
command -v xclip >/dev/null || skip "xclip is not installed (scripts/setup installs it)"

alice_desktop "$GUESTS/vmlinuz" "$GUESTS/initrd.img" "console=ttyS0 no_timer_check" \
    --display none --clipboard

xclip_out() {
	timeout 10 xclip -o -selection clipboard 2>/dev/null
}

# Session 1: the guest copies; nobody pastes on the client.
rdp_client alice1 /u:alice /p:alice-pw-1 +clipboard
client=$RDP_CLIENT
wait_gw_log "(alice on d1): logged in" 30
wait_console d1 "QDESK GUEST READY" 90
wait_console d1 "QDESK CLIP UP" 10
wait_console d1 "built-in shell" 30	# ash's banner: it reads lines now
sleep 1
want=$(printf 'QDESK-KEPT caf\303\251 42')
serial_send d1 "qdesk-clip set \"\$(printf 'QDESK-KEPT caf\\303\\251 42')\""
wait_console d1 "QDESK CLIP SET QDESK-KEPT" 20
# The gateway asked for the text at once: the agent sent it, and the
# gateway kept it (before the client leaves: a race otherwise).
wait_console d1 "QDESK CLIP SENT" 20
wait_gw_log "RDP clipboard: the guest's text ([0-9]* bytes) kept for alice on d1" 20

# Disconnect; the client's X clipboard has no owner any more.
kill "$client"
wait "$client" 2>/dev/null
wait_gw_log "(alice on d1): session ended" 20
got=$(xclip_out) || got=
[ -z "$got" ] || fail "the X clipboard still has '$got' with no client"

# Session 2: the new client is offered the guest's text at once.
rdp_client alice2 /u:alice /p:alice-pw-1 +clipboard
client=$RDP_CLIENT
for i in $(seq 1 60); do
	[ "$(grep -c "(alice on d1): logged in" "$RDP_LOG")" -ge 2 ] && break
	sleep 0.5
done
got=
for i in $(seq 1 60); do
	got=$(xclip_out) || got=
	[ "$got" = "$want" ] && break
	sleep 0.5
done
[ "$got" = "$want" ] ||
	rdp_fail "after the reconnect the client's clipboard has '$got', not '$want'"
log "kept across the reconnect: '$got'"

# Client to guest still works in the new session.
sent='QDESK-C2G after reconnect'
printf '%s' "$sent" | xclip -i -selection clipboard &
RDP_CLIENT_PIDS="$RDP_CLIENT_PIDS $!"
wait_console d1 "QDESK CLIP GOT $sent" 30
log "client to guest after the reconnect: ok"

kill "$client"
wait "$client" 2>/dev/null
wait_gw_log "(alice on d1): clipboard: 1 texts" 20
grep "(alice on d1): clipboard: " "$RDP_LOG" >&2

# wait_gw_count PATTERN N SECONDS: the gateway log has N such lines.
wait_gw_count() {
	local i
	for i in $(seq 1 $(($3 * 10))); do
		[ "$(grep -c -- "$1" "$RDP_LOG")" -ge "$2" ] && return 0
		sleep 0.1
	done
	rdp_fail "fewer than $2 lines '$1' in the gateway log after ${3}s"
}

# No session open: the guest copies; the keeper of the ended session
# (both sessions ended with their client, so two keepers were started)
# fetches the text at once and keeps it.
wait_gw_count "RDP clipboard keeper for alice on d1: the guest's clipboard is watched" 2 20
kept=$(grep -c "the guest's text ([0-9]* bytes) kept for alice on d1" "$RDP_LOG")
new="QDESK-OFFLINE-$$-$RANDOM"
serial_send d1 "qdesk-clip set '$new'"
wait_console d1 "QDESK CLIP SET $new" 20
wait_gw_count "the guest's text ([0-9]* bytes) kept for alice on d1" $((kept + 1)) 20
log "copied in the guest with no session open: kept by the keeper"

# Session 3: the new client gets the offline copy, not the older text.
rdp_client alice3 /u:alice /p:alice-pw-1 +clipboard
client=$RDP_CLIENT
wait_gw_count "(alice on d1): logged in" 3 30
wait_gw_log "RDP clipboard keeper for alice on d1: a new session has the clipboard" 30
got=
for i in $(seq 1 60); do
	got=$(xclip_out) || got=
	[ "$got" = "$new" ] && break
	sleep 0.5
done
[ "$got" = "$new" ] ||
	rdp_fail "the copy made with no session open did not reach the new client: its clipboard has '$got', not '$new'"
log "copied with no session open, offered to the next client: '$got'"
kill "$client"
wait "$client" 2>/dev/null
wait_gw_count "(alice on d1): session ended" 3 20
log ok
