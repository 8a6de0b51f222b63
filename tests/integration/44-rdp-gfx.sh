#!/usr/bin/env bash
# RDP gateway, graphics pipeline (MS-RDPEGFX): real xfreerdp clients under
# Xvfb log in to the same Linux desktop one after the other, with
# /gfx:avc420 (H.264), with /gfx (RemoteFX progressive) and without the
# pipeline (planar bitmap updates). Each must show the guest's console as
# QEMU's own screendump has it (after motion stops the gateway sends the
# lossy area again lossless, so the text is exact), and a command typed
# into its window must run in the guest (serial log). The gateway's log
# must say which path and codec each session used, with its frames and
# the client's frame acknowledgements, and that typing's small commands
# went as ClearCodec glyphs.
. "$(dirname "$0")/lib.sh"
. "$top/tests/lib/rdp-test-lib.sh"
rdp_require

# rdp_match: the client's window shows the console (RMSE < 0.02; the
# cursor blinks and refinement follows motion: retry for a while).
rdp_match() {
	local what=$1 best=1 rmse i
	for i in $(seq 1 20); do
		rmse=$(rdp_compare "$win" d1) || rdp_fail "screenshot failed"
		best=$(python3 -c "print(min($best, $rmse))")
		python3 -c "import sys; sys.exit(0 if $rmse < 0.02 else 1)" &&
			break
		sleep 0.5
	done
	log "$what: client vs screendump RMSE $best"
	python3 -c "import sys; sys.exit(0 if $best < 0.02 else 1)" ||
		rdp_fail "$what: the client does not show the console (RMSE $best)"
}

# rdp_type MODE: a command typed into the window runs in the guest.
rdp_type() {
	xdotool mousemove --window "$win" 100 100
	xdotool windowfocus --sync "$win" 2>/dev/null || xdotool windowfocus "$win"
	xdotool type --delay 40 "echo QDESK-GFX-$1-\$((6*7)) > /dev/ttyS0"
	xdotool key Return
	wait_console d1 "QDESK-GFX-$1-42" 20
}

# gfx_field MODE FIELD: FIELD of the session's rdp.gfx event.
gfx_field() {
	grep "event=rdp.gfx" "$RDP_LOG" | grep "codec=$1" | tail -1 |
	    tr ' ' '\n' | sed -n "s/^$2=//p"
}

alice_desktop "$GUESTS/vmlinuz" "$GUESTS/initrd.img" "console=tty0 console=ttyS0 no_timer_check"

n=0
for mode in avc420 progressive planar; do
	case $mode in
	avc420)		args=/gfx:avc420 ;;
	progressive)	args=/gfx ;;
	planar)		args=/network:lan ;;	# not autodetect, which turns gfx on
	esac
	ended=$(grep -c "(alice on d1): session ended after" "$RDP_LOG")
	if [ $n -eq 0 ]; then
		# The first login boots d1; the client follows it to 720x400.
		rdp_client alice /u:alice /p:alice-pw-1 $args
		client=$RDP_CLIENT
		wait_gw_log "(alice on d1): logged in" 30
		wait_console d1 "QDESK GUEST READY" 90
		wait_gw_log "(alice on d1): console now 720x400" 30
		win=$(rdp_window "$client") || rdp_fail "no xfreerdp window"
		sleep 3		# the shell prompt on tty1
	else
		# The window comes after the login: wait for the gateway to
		# log this client's (TLS and login took over 10 s at load
		# 10-13, and the window search alone gave up).
		logins=$(grep -c "(alice on d1): logged in" "$RDP_LOG")
		rdp_client alice /u:alice /p:alice-pw-1 $args
		client=$RDP_CLIENT
		for i in $(seq 1 600); do
			[ "$(grep -c "(alice on d1): logged in" "$RDP_LOG")" -gt "$logins" ] && break
			kill -0 "$client" 2>/dev/null ||
				rdp_fail "xfreerdp ended: $(tail -3 "$T/xf-alice.log")"
			sleep 0.1
		done
		win=$(rdp_window "$client") || rdp_fail "no xfreerdp window"
	fi
	n=$((n + 1))
	if [ "$mode" != planar ]; then
		wait_gw_log "(alice on d1): graphics pipeline caps .* codec $mode" 30
	fi
	rdp_match "$mode"
	rdp_type "$mode"
	sleep 1
	rdp_match "$mode, after typing"
	cp "$T/client.png" "$top/build/test-results/44-rdp-gfx-$mode.png" 2>/dev/null

	# The client decoded every frame (FreeRDP logs decoder failures).
	if grep -iE "(avc420|h264|progressive|planar).*(fail|error)" \
	    "$T/xf-alice.log" >&2; then
		rdp_fail "$mode: the client could not decode a frame"
	fi
	kill "$client"
	wait "$client" 2>/dev/null
	for i in $(seq 1 100); do
		[ "$(grep -c "(alice on d1): session ended after" "$RDP_LOG")" -gt "$ended" ] && break
		sleep 0.1
	done
	[ "$(grep -c "(alice on d1): session ended after" "$RDP_LOG")" -gt "$ended" ] ||
		rdp_fail "$mode: the session did not end"
	if [ "$mode" = planar ]; then
		# No pipeline: bitmap updates, and no gfx line for the session.
		[ "$(grep -c "event=rdp.gfx" "$RDP_LOG")" -eq 2 ] ||
			rdp_fail "planar: the session used the graphics pipeline"
		tiles=$(grep "(alice on d1): session ended after" "$RDP_LOG" |
		    tail -1 | sed -nE 's/.* ([0-9]+) tiles.*/\1/p')
		[ "${tiles:-0}" -gt 0 ] || rdp_fail "planar: no bitmap tiles sent"
		log "planar: $tiles tiles of bitmap updates"
		continue
	fi
	for i in $(seq 1 100); do
		[ -n "$(gfx_field "$mode" frames)" ] && break
		sleep 0.1
	done
	frames=$(gfx_field "$mode" frames)
	acks=$(gfx_field "$mode" acks)
	lossy=$(gfx_field "$mode" lossy)
	refines=$(gfx_field "$mode" refines)
	glyphs=$(gfx_field "$mode" glyphs)
	log "$mode: $frames frames, $acks acks, $lossy lossy, $refines refinements, $glyphs ClearCodec glyphs ($(gfx_field "$mode" glyphhits) from the cache)"
	[ "${frames:-0}" -gt 0 ] || rdp_fail "$mode: no gfx frames"
	[ "${acks:-0}" -gt 0 ] || rdp_fail "$mode: the client acknowledged no frame"
	[ "${lossy:-0}" -gt 0 ] || rdp_fail "$mode: no frame used $mode"
	[ "${refines:-0}" -gt 0 ] || rdp_fail "$mode: no lossless refinement"
	# Typing's small commands go as glyphs (the screen above is exact).
	[ "${glyphs:-0}" -gt 0 ] || rdp_fail "$mode: no ClearCodec glyph for the typing"
done
log ok
