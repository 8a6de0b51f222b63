#!/usr/bin/env bash
# RDP gateway, AVC420 at 1920x1080 on natural motion (issue 12): a real
# xfreerdp with /gfx:avc420 on video-kvm.img (a KVM guest painting
# video.img's scene at 1920x1080, 30 frames/s) keeps receiving frames:
# its window keeps changing, the gateway's frames are acknowledged with
# never more in flight than the pacing window (4), the gateway read the
# VNC stream on its reader thread, and the client decoded without error.
# The session goes through the transport bench's relay, which counts its
# bytes on the wire; frames/s and Mbit/s are printed as figures, never
# asserted (they follow the machine's load). Then the guest is paused:
# the lossless refinement of the still screen goes at about the H.264
# stream's rate (bytes a second on the wire, still against motion, in
# this run), not as the whole 1080p screen at once.
. "$(dirname "$0")/lib.sh"
. "$top/tests/lib/rdp-test-lib.sh"
rdp_require
[ -r /dev/kvm ] || skip "no /dev/kvm"
command -v socat >/dev/null || skip "socat is not installed (scripts/setup)"

SECS=${RDP_AVC1080_SECS:-8}

start_qmpd --broker-user nobody
q --json status | jq -e '.accels | index("kvm")' >/dev/null ||
	skip "qmpd says KVM is not usable here"
cp --sparse=always "$GUESTS/video-kvm.img" "$T/video-kvm.img"
qq vm create d1 --accel kvm --memory 64 --disk "$T/video-kvm.img" \
    --disk-format raw >/dev/null
printf 'alice-pw-1\n' | qq user add alice --password-stdin >/dev/null
qq desktop assign alice d1 >/dev/null
qq vm start d1 >/dev/null
wait_console d1 "QDESK VIDEO UP 1920x1080 kvm" 120
start_gateway
XVFB_SCREEN=1920x1080x24 xvfb_start

rdp_relay

HOME=$T xfreerdp /cert:ignore /v:127.0.0.1:"$RELAY_PORT" /u:alice \
    /p:alice-pw-1 /gfx:avc420 /size:1920x1080 >"$T/xf-alice.log" 2>&1 &
client=$!
RDP_CLIENT_PIDS="$RDP_CLIENT_PIDS $client"
wait_gw_log "(alice on d1): logged in" 60
wait_gw_log "(alice on d1): graphics pipeline caps .* codec avc420" 30
win=$(rdp_window "$client") ||
	rdp_fail "no xfreerdp window: $(tail -3 "$T/xf-alice.log")"

# Frames keep arriving: each look at the client's window differs from
# the one before (the guest's scene moves every frame).
sleep 1
import -window "$win" "$T/look-0.png" 2>/dev/null || rdp_fail "screenshot failed"
for i in 1 2 3; do
	sleep $((SECS / 4 > 0 ? SECS / 4 : 1))
	import -window "$win" "$T/look-$i.png" 2>/dev/null ||
		rdp_fail "screenshot failed"
	ae=$(compare -metric AE "$T/look-$((i - 1)).png" "$T/look-$i.png" \
	    null: 2>&1 | awk '{ printf "%d", $1 }' || true)
	[ "${ae:-0}" -gt 0 ] ||
		rdp_fail "the client's picture stood still between looks $((i - 1)) and $i"
	log "look $i: $ae pixels changed since look $((i - 1))"
done
[ "$(identify -format '%wx%h' "$T/look-3.png")" = 1920x1080 ] ||
	rdp_fail "client window $(identify -format '%wx%h' "$T/look-3.png"), not 1920x1080"
mkdir -p "$top/build/test-results"
cp "$T/look-3.png" "$top/build/test-results/57-rdp-avc1080-client.png"

# The refinement after motion. Bytes on the wire so far: the relay's
# TCP connection with the client, both ways (the kernel's count; the
# relay's own is written only when the connection ends).
wire() {
	ss -tinH state established "( sport = :$RELAY_PORT )" |
	    grep -o 'bytes_\(sent\|received\):[0-9]*' |
	    awk -F: '{ n += $2 } END { print n + 0 }'
}
now() { date +%s.%N; }
m0=$(wire) mt0=$(now)
sleep 3
m1=$(wire) mt1=$(now)
refines0=$(grep -c "RDP: lossless refinement of" "$RDP_LOG" || true)
qq vm pause d1 >/dev/null
s0=$(wire) st0=$(now)
# The still screen's refinement starts once the gateway's quiet time
# is over (1 s, up to 8 s after refinements motion undid).
for i in $(seq 1 300); do
	[ "$(grep -c "RDP: lossless refinement of" "$RDP_LOG" || true)" -gt \
	    "$refines0" ] && break
	sleep 0.1
done
[ "$(grep -c "RDP: lossless refinement of" "$RDP_LOG" || true)" -gt \
    "$refines0" ] || rdp_fail "no lossless refinement after the guest stood still"
sleep 4
s1=$(wire) st1=$(now)
qq vm resume d1 >/dev/null
mrate=$(awk -v b=$((m1 - m0)) -v a="$mt0" -v z="$mt1" \
    'BEGIN { printf "%.0f", b / (z - a) }')
srate=$(awk -v b=$((s1 - s0)) -v a="$st0" -v z="$st1" \
    'BEGIN { printf "%.0f", b / (z - a) }')
log "wire: motion $((mrate * 8 / 1000)) Kbit/s, still (refinement)" \
    "$((srate * 8 / 1000)) Kbit/s; $(grep "RDP: lossless refinement of" \
    "$RDP_LOG" | tail -1 | sed 's/.*RDP: //')"
# At most twice the motion's rate (or the refinement's least rate,
# 64000 bytes/s, for a starved guest's trickle): the refinement's
# budget is the lossy stream's rate plus a second of burst; the whole
# screen at once was 5-9 MB in a few seconds.
[ "$srate" -le $((2 * (mrate > 64000 ? mrate : 64000))) ] ||
	rdp_fail "the still screen's refinement took $srate bytes/s on the" \
	    "wire, motion $mrate"

# The client quits; the gateway's line and the relay's count are there.
lines=$(wc -l <"$T/wire.txt" 2>/dev/null || echo 0)
kill "$client"
wait "$client" 2>/dev/null
for i in $(seq 1 100); do
	grep -q "(alice on d1): session ended after" "$RDP_LOG" &&
	    [ "$(wc -l <"$T/wire.txt" 2>/dev/null || echo 0)" -gt "$lines" ] && break
	sleep 0.1
done
cp "$T/xf-alice.log" "$top/build/test-results/57-rdp-avc1080-xf.log"
if grep -iE "(avc420|h264|yuv).*(fail|error)" "$T/xf-alice.log" >&2; then
	rdp_fail "the client could not decode a frame"
fi
line=$(grep "event=rdp.gfx" "$RDP_LOG" | grep "codec=avc420" | tail -1)
[ -n "$line" ] || rdp_fail "no rdp.gfx line for the session"
field() { tr ' ' '\n' <<<"$line" | sed -n "s/^$1=//p"; }
frames=$(field frames) acked=$(field acked) acks=$(field acks)
held=$(field held) ms=$(field ms) x264ms=$(field x264ms)
rtiles=$(field refinetiles) rbytes=$(field refinebytes)
[ "${frames:-0}" -gt 1 ] && [ "${acks:-0}" -gt 0 ] ||
	rdp_fail "frames $frames, acks $acks"
[ "${rtiles:-0}" -gt 0 ] && [ "${rbytes:-0}" -gt 0 ] ||
	rdp_fail "the gateway refined no tiles ($rtiles, $rbytes bytes)"
# Pacing: the client acknowledged all but the last frames in flight.
[ $((frames - acked)) -ge 0 ] && [ $((frames - acked)) -le 4 ] ||
	rdp_fail "$frames frames sent, the client acknowledged up to $acked"
grep -q "(alice on d1): VNC reader thread: .* bytes" "$RDP_LOG" ||
	rdp_fail "the gateway did not read the console on its reader thread"
# The refresh nudge went with the requests while frames flowed
# (rdp-rfb-nudge.c): at least one, and never more than one an update the
# reader thread read (the session may end with updates it read still
# unparsed: on a loaded machine, dozens).
line=$(grep "(alice on d1): VNC reader thread:" "$RDP_LOG" | tail -1)
nudges=$(sed -n 's/.*, \([0-9]*\) refresh nudges.*/\1/p' <<<"$line")
updates=$(sed -n 's/.* bytes, \([0-9]*\) updates,.*/\1/p' <<<"$line")
[ "${nudges:-0}" -gt 0 ] && [ "$nudges" -le "${updates:-0}" ] ||
	rdp_fail "refresh nudges: ${nudges:-none} for ${updates:-no} updates read: $line"
# QEMU took qdesk's malloc settings (qmpd/vm-spawn.c), unless this
# test's environment gave its own.
if [ -z "${GLIBC_TUNABLES+set}" ]; then
	tr '\0' '\n' <"/proc/$(vm_pid d1)/environ" |
	    grep -q '^GLIBC_TUNABLES=glibc.malloc.mmap_threshold=' ||
		rdp_fail "QEMU runs without qdesk's GLIBC_TUNABLES"
fi
set -- $(tail -1 "$T/wire.txt")
[ "${2:-0}" -gt 0 ] || rdp_fail "the relay counted no bytes ($*)"
log "figures: $frames frames, $acked acknowledged, $held held, over $ms ms:" \
    "$(awk -v a="$acked" -v m="$ms" 'BEGIN { printf "%.1f", a * 1000 / m }')" \
    "frames/s, $(awk -v b="$2" -v m="$ms" 'BEGIN { printf "%.2f", b * 8 / m / 1000 }')" \
    "Mbit/s down on the wire (login included), x264" \
    "$(awk -v x="$x264ms" -v f="$frames" 'BEGIN { printf "%.1f", x / f }') ms a frame;" \
    "guest $(grep -a 'QDESK VIDEO FPS' "$STATE/vms/d1/serial.log" | tail -1 | tr -d '\r' | sed 's/QDESK VIDEO //')"
log ok
