#!/usr/bin/env bash
# RDP gateway, clipboard both ways (issue 12): a desktop created with
# --clipboard (qemu-vdagent on com.redhat.spice.0) and a real xfreerdp
# under Xvfb. In the guest, qdesk-clip (scripts/guest/vdagent-clip.c)
# speaks the vdagent protocol as spice-vdagent would.
#  - Guest to client: text set as the guest's clipboard ("qdesk-clip set",
#    typed on the serial console) is what xclip reads from the client's X
#    CLIPBOARD (UTF-8 with non-ASCII: the extended VNC clipboard, cliprdr's
#    CF_UNICODETEXT).
#  - Client to guest: text put in the client's X CLIPBOARD with xclip
#    reaches the guest's agent, which prints it on the serial line.
#  - The gateway's end-of-session line counts both.
. "$(dirname "$0")/lib.sh"
. "$top/tests/lib/rdp-test-lib.sh"
rdp_require
command -v xclip >/dev/null || skip "xclip is not installed (scripts/setup installs it)"

alice_desktop "$GUESTS/vmlinuz" "$GUESTS/initrd.img" "console=ttyS0 no_timer_check" \
    --display none --clipboard
[ "$(vm_field d1 clipboard)" = true ] || fail "d1 has no clipboard"

# The client's X clipboard, as an X application pastes it.
xclip_out() {
	timeout 10 xclip -o -selection clipboard 2>/dev/null
}

rdp_client alice /u:alice /p:alice-pw-1 +clipboard
client=$RDP_CLIENT
wait_gw_log "(alice on d1): logged in" 30
wait_console d1 "QDESK GUEST READY" 90
wait_console d1 "QDESK CLIP UP" 10
tr '\0' ' ' <"/proc/$(vm_pid d1)/cmdline" |
    grep -q "qemu-vdagent,id=vdagent,name=vdagent,clipboard=on" ||
	fail "QEMU runs without the qemu-vdagent chardev"

# Guest to client. The text has é and € (UTF-8 in the guest, UTF-16 on
# the RDP side); printf in the guest makes the bytes, so the serial line
# carries ASCII only.
want=$(printf 'QDESK-G2C caf\303\251 \342\202\254 42')
wait_console d1 "built-in shell" 30	# ash's banner: it reads lines now
sleep 1
serial_send d1 "qdesk-clip set \"\$(printf 'QDESK-G2C caf\\303\\251 \\342\\202\\254 42')\""
wait_console d1 "QDESK CLIP SET QDESK-G2C" 20
got=
for i in $(seq 1 30); do
	got=$(xclip_out) || got=
	[ "$got" = "$want" ] && break
	sleep 0.5
done
[ "$got" = "$want" ] ||
	rdp_fail "the client's clipboard has '$got', not '$want'"
wait_console d1 "QDESK CLIP SENT" 5
log "guest to client: '$got'"

# Client to guest: an X application (xclip) owns the client's clipboard;
# xfreerdp announces it, the guest's agent asks for it and prints it.
sent=$(printf 'QDESK-C2G na\303\257ve\nsecond line')
printf '%s' "$sent" | xclip -i -selection clipboard &
RDP_CLIENT_PIDS="$RDP_CLIENT_PIDS $!"
wait_console d1 "QDESK CLIP GOT QDESK-C2G" 30
line=$(grep -a "QDESK CLIP GOT QDESK-C2G" "$STATE/vms/d1/serial.log" | tail -n1 | tr -d '\r')
n=$(printf '%s' "$sent" | wc -c)
expect=$(printf 'QDESK CLIP GOT QDESK-C2G na\303\257ve\\nsecond line (%d bytes)' "$n")
[ "$line" = "$expect" ] ||
	rdp_fail "the guest got '$line', not '$expect'"
log "client to guest: '$line'"

# Both ways counted, when the session ends.
kill "$client"
wait "$client" 2>/dev/null
wait_gw_log "(alice on d1): clipboard: " 20
grep "(alice on d1): clipboard: " "$RDP_LOG" | tail -n1 >&2
grep -q "clipboard: [1-9][0-9]* texts ([1-9][0-9]* bytes) to the client, [1-9][0-9]* ([1-9][0-9]* bytes) to the guest" "$RDP_LOG" ||
	rdp_fail "the gateway did not count both ways"
log ok
