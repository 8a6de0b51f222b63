#!/usr/bin/env bash
# RDP clipboard, client to guest, with the X owner of the client's
# clipboard slow to answer (what CI's load 20 did to test 45 by chance).
# xfreerdp 2 announces a copy twice: at once every format it knows, then,
# once the owner answered TARGETS, the owner's. The first list reaches
# the guest as a grab, and the guest's agent asks for its text while the
# owner is stopped; the request made then is answered empty or late. The
# guest must get the client's real text, never an empty one before it.
# Steps: the guest copies (xfreerdp owns the client's X clipboard), then
# xfreerdp stopped while xclip takes the clipboard, xclip stopped
# (it owns the clipboard, answers nothing), xfreerdp resumed (its first
# list goes out, the guest asks), xclip resumed 3 s later.
. "$(dirname "$0")/lib.sh"
. "$top/tests/lib/rdp-test-lib.sh"
rdp_require
command -v xclip >/dev/null || skip "xclip is not installed (scripts/setup installs it)"

alice_desktop "$GUESTS/vmlinuz" "$GUESTS/initrd.img" "console=ttyS0 no_timer_check" \
    --display none --clipboard

rdp_client alice /u:alice /p:alice-pw-1 +clipboard
client=$RDP_CLIENT
wait_gw_log "(alice on d1): logged in" 30
wait_console d1 "QDESK CLIP UP" 90

# The guest copies first: xfreerdp owns the client's X clipboard, so
# xclip taking it is a SelectionClear, after which xfreerdp sends its
# early list (as in test 45).
wait_console d1 "built-in shell" 30
sleep 1
serial_send d1 "qdesk-clip set QDESK-G2C-first"
wait_console d1 "QDESK CLIP SET QDESK-G2C-first" 20
for i in $(seq 1 60); do
	[ "$(timeout 10 xclip -o -selection clipboard 2>/dev/null)" = \
	    QDESK-G2C-first ] && break
	sleep 0.5
done
[ "$i" -lt 60 ] || rdp_fail "the guest's text never reached the client"

sent=$(printf 'QDESK-C2G stall\nline two')
kill -STOP "$client"
printf '%s' "$sent" | xclip -quiet -i -selection clipboard 2>/dev/null &
owner=$!
sleep 0.5
RDP_CLIENT_PIDS="$RDP_CLIENT_PIDS $owner"
# xclip owns the clipboard once it answers a TARGETS request of ours.
for i in $(seq 1 100); do
	timeout 5 xclip -o -selection clipboard -t TARGETS 2>/dev/null |
	    grep -q UTF8_STRING && break
	sleep 0.1
done
[ "$i" -lt 100 ] || fail "xclip did not take the clipboard"
kill -STOP "$owner"
lists=$(grep -c "RDP clipboard: the client has" "$RDP_LOG")
kill -CONT "$client"
# The first list reached the gateway, and the guest had time to ask.
for i in $(seq 1 100); do
	[ "$(grep -c "RDP clipboard: the client has" "$RDP_LOG")" -gt "$lists" ] &&
		break
	sleep 0.1
done
sleep 3
kill -CONT "$owner"

wait_console d1 "QDESK CLIP GOT QDESK-C2G" 30
n=$(printf '%s' "$sent" | wc -c)
expect=$(printf 'QDESK CLIP GOT QDESK-C2G stall\\nline two (%d bytes)' "$n")
line=$(grep -ao "QDESK CLIP GOT.*" "$STATE/vms/d1/serial.log" | tr -d "\r")
log "the guest got: $line"
[ "$(printf '%s\n' "$line" | tail -n1)" = "$expect" ] ||
	rdp_fail "the guest's last text is not '$expect'"
printf '%s\n' "$line" | grep -q "QDESK CLIP GOT  (0 bytes)" &&
	rdp_fail "the guest was handed an empty clipboard"
log ok
