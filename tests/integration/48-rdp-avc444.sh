#!/usr/bin/env bash
# RDP gateway, AVC444 (issue 12): a real xfreerdp with /gfx:avc444 gets
# H.264 in two views (AVC444v2), one with /gfx:avc420 keeps AVC420. The
# Linux console shows lines of coloured text; the gateway runs without
# the lossless refinement (-r -1), so what the client shows is the H.264
# picture itself. Against QEMU's screendump, AVC444's window must be as
# close as AVC420's (RMSE) and its colour error (RMSE of the Cb and Cr
# planes) well below AVC420's, whose 4:2:0 chroma smears the text's
# colour edges. Each session goes through the transport bench's relay
# (bench/transport/delay-relay.py, no delay), which counts its bytes on
# the wire both ways.
. "$(dirname "$0")/lib.sh"
. "$top/tests/lib/rdp-test-lib.sh"
rdp_require
command -v socat >/dev/null || skip "socat is not installed (scripts/setup)"

RDP_GW_ARGS="-r -1"

alice_desktop "$GUESTS/vmlinuz" "$GUESTS/initrd.img" "console=tty0 console=ttyS0 no_timer_check"

rdp_relay

# session ARGS...: an xfreerdp through the relay; sets client and win.
session() {
	HOME=$T xfreerdp /cert:ignore /v:127.0.0.1:"$RELAY_PORT" /u:alice \
	    /p:alice-pw-1 "$@" >"$T/xf-alice.log" 2>&1 &
	client=$!
	RDP_CLIENT_PIDS="$RDP_CLIENT_PIDS $client"
	win=$(rdp_window "$client") ||
	    rdp_fail "no xfreerdp window: $(tail -3 "$T/xf-alice.log")"
}

# session_end: the client quits; its line of the relay's count is there.
session_end() {
	local ended lines
	ended=$(grep -c "(alice on d1): session ended after" "$RDP_LOG")
	lines=$(wc -l <"$T/wire.txt" 2>/dev/null || echo 0)
	kill "$client"
	wait "$client" 2>/dev/null
	for i in $(seq 1 100); do
		[ "$(grep -c "(alice on d1): session ended after" "$RDP_LOG")" -gt "$ended" ] &&
		    [ "$(wc -l <"$T/wire.txt" 2>/dev/null || echo 0)" -gt "$lines" ] && return 0
		sleep 0.1
	done
	rdp_fail "the session did not end, or the relay did not count it"
}

# chroma A B: RMSE of the Cb and Cr planes only (Y set to 0 in both).
chroma() {
	convert "$1" -colorspace YCbCr -channel R -evaluate set 0 +channel \
	    "$T/ca.png"
	convert "$2" -colorspace YCbCr -channel R -evaluate set 0 +channel \
	    "$T/cb.png"
	compare -metric RMSE "$T/ca.png" "$T/cb.png" null: 2>&1 |
	    sed -n 's/.*(\(.*\)).*/\1/p'
}

# measure MODE: once the picture stops changing, RMSE and chroma RMSE of
# the client's window against the screendump; sets rmse and cerr.
measure() {
	local prev=x r i
	for i in $(seq 1 30); do
		r=$(rdp_compare "$win" d1) || rdp_fail "screenshot failed"
		[ "$r" = "$prev" ] && break
		prev=$r
		sleep 1
	done
	rmse=$r
	cerr=$(chroma "$T/client-crop.png" "$T/qmp.ppm")
	mkdir -p "$top/build/test-results"
	cp "$T/client-crop.png" "$top/build/test-results/48-rdp-avc444-$1.png"
	cp "$T/qmp.ppm" "$top/build/test-results/48-rdp-avc444-screendump.ppm"
	cp "$T/xf-alice.log" "$top/build/test-results/48-rdp-avc444-xf-$1.log"
	log "$1: client vs screendump RMSE $rmse, chroma RMSE $cerr"
}

# The first session boots d1 (AVC420), then the console gets its
# coloured text and the cursor goes (it would blink into the picture).
session /gfx:avc420
wait_gw_log "(alice on d1): logged in" 30
wait_console d1 "QDESK GUEST READY" 90
wait_gw_log "(alice on d1): console now 720x400" 30
sleep 2
serial_send d1 'clear >/dev/tty1; printf "\033[?25l" >/dev/tty1; for i in 1 2 3; do for c in 31 32 33 34 35 36; do printf "\033[1;%sm%s %s\033[0m\n" $c "QDESK colour text $c: The quick brown fox jumps over" "the lazy dog 0123456789" >/dev/tty1; done; done; echo QDESK-COLOUR-DONE'
wait_console d1 QDESK-COLOUR-DONE 20
sleep 1
session_end

# Each codec on a fresh session: its first frame is the whole console.
for mode in avc420 avc444; do
	session /gfx:$mode
	wait_gw_log "(alice on d1): graphics pipeline caps .* codec $mode" 30
	sleep 2
	measure "$mode"
	eval "rmse_$mode=\$rmse cerr_$mode=\$cerr"
	if grep -iE "(avc4[24][04]|h264|yuv).*(fail|error)" "$T/xf-alice.log" >&2; then
		rdp_fail "$mode: the client could not decode a frame"
	fi
	session_end
	set -- $(tail -1 "$T/wire.txt")
	[ "${2:-0}" -gt 0 ] && [ "${4:-0}" -gt 0 ] ||
		rdp_fail "$mode: the relay counted no bytes ($*)"
	line=$(grep "event=rdp.gfx" "$RDP_LOG" | grep "codec=$mode" | tail -1)
	[ -n "$line" ] || rdp_fail "$mode: no rdp.gfx line for the session"
	frames=$(tr ' ' '\n' <<<"$line" | sed -n 's/^frames=//p')
	acks=$(tr ' ' '\n' <<<"$line" | sed -n 's/^acks=//p')
	bytes=$(tr ' ' '\n' <<<"$line" | sed -n 's/^bytes=//p')
	[ "${frames:-0}" -gt 0 ] && [ "${acks:-0}" -gt 0 ] ||
		rdp_fail "$mode: frames $frames, acks $acks"
	log "$mode: $frames frames, $acks acks, $bytes bytes of surface commands; on the wire $2 bytes down, $4 up"
done

# The AVC444 client gets the whole picture as well as AVC420's, and the
# colour edges AVC420 smears.
python3 -c "import sys; sys.exit(0 if $rmse_avc444 <= $rmse_avc420 * 1.05 + 0.002 else 1)" ||
	rdp_fail "AVC444 RMSE $rmse_avc444 worse than AVC420's $rmse_avc420"
python3 -c "import sys; sys.exit(0 if $cerr_avc444 < $cerr_avc420 * 0.7 else 1)" ||
	rdp_fail "AVC444 colour error $cerr_avc444 not well below AVC420's $cerr_avc420"
log "AVC444 colour error $(python3 -c "print(round($cerr_avc444 / $cerr_avc420, 2))")x AVC420's"
log ok
