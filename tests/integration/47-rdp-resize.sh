#!/usr/bin/env bash
# RDP gateway, dynamic resolution (issue 12): xfreerdp /dynamic-resolution
# under Xvfb on a virtio-vga desktop (generic kernel, virtio_gpu DRM and
# fbcon): when its X window is resized (xdotool windowsize), the Display
# Control channel's layout becomes a SetDesktopSize to QEMU, the guest's
# framebuffer (QEMU's screendump) takes that size, the gateway follows and
# the client shows the console exactly. A burst of resizes asks the guest
# at most twice. A desktop on std VGA (the boot-sector guest) cannot
# resize: QEMU refuses once, the gateway asks no more, the size stays and
# the session stays up.
. "$(dirname "$0")/lib.sh"
. "$top/tests/lib/rdp-test-lib.sh"
rdp_require

start_qmpd --broker-user nobody
qq vm create d1 --accel tcg --memory 512 --kernel "$GUESTS/vmlinuz-usb" \
    --initrd "$GUESTS/initrd-desktop.img" --append "console=ttyS0 no_timer_check" \
    --video virtio >/dev/null
qq vm create d2 --memory 64 --disk "$(tiny_disk d2)" >/dev/null
printf 'alice-pw-1\n' | qq user add alice --password-stdin >/dev/null
printf 'bob-pw-1\n' | qq user add bob --password-stdin >/dev/null
qq desktop assign alice d1 >/dev/null
qq desktop assign bob d2 >/dev/null
start_gateway
xvfb_start

# screendump_size VM: QEMU's own framebuffer size, WxH.
screendump_size() {
	q vm screenshot "$1" "$T/size.ppm" >/dev/null || return 1
	identify -format '%wx%h' "$T/size.ppm"
}

# wait_screendump VM WxH SECONDS
wait_screendump() {
	local i s=
	for i in $(seq 1 $(($3 * 2))); do
		s=$(screendump_size "$1") && [ "$s" = "$2" ] && return 0
		sleep 0.5
	done
	rdp_fail "$1's framebuffer is $s, not $2, after $3 s"
}

# window_is WIN WxH SECONDS: the client's X window takes that size.
window_is() {
	local i g=
	for i in $(seq 1 $(($3 * 10))); do
		g=$(xdotool getwindowgeometry "$1" | sed -n 's/ *Geometry: //p')
		[ "$g" = "$2" ] && return 0
		sleep 0.1
	done
	rdp_fail "client window is $g, not $2"
}

# matches WIN VM: the client's picture is the screendump (RMSE < 0.02).
matches() {
	local i rmse best=1
	for i in $(seq 1 20); do
		rmse=$(rdp_compare "$1" "$2") || rdp_fail "screenshot failed"
		best=$(python3 -c "print(min($best, $rmse))")
		python3 -c "import sys; sys.exit(0 if $rmse < 0.02 else 1)" &&
			return 0
		sleep 0.5
	done
	rdp_fail "the client does not show $2's console (best RMSE $best)"
}

# resize_client USER VM READY: USER's xfreerdp with /dynamic-resolution
# (password USER-pw-1) logs in, VM boots to READY, the Display Control
# channel is open. Its pid in RDP_CLIENT.
resize_client() {
	rdp_client "$1" /u:"$1" /p:"$1-pw-1" /dynamic-resolution
	wait_gw_log "($1 on $2): logged in" 30
	wait_console "$2" "$3" 120
	wait_gw_log "($1 on $2): display control channel open" 30
}

asks() { grep -c "($1 on $2): client window .*: asking the guest" "$RDP_LOG"; }

# --- A guest that follows: virtio-gpu.
resize_client alice d1 "QDESK GUEST READY"
alice=$RDP_CLIENT
# fbcon on virtio_gpu: QEMU's default virtio-gpu mode.
wait_gw_log "(alice on d1): console now 1280x800" 60
win=$(rdp_window "$alice") || rdp_fail "no xfreerdp window"
window_is "$win" 1280x800 20

t0=$(date +%s%N)
xdotool windowsize "$win" 800 600
wait_gw_log "(alice on d1): client window 800x600: asking the guest" 20
wait_screendump d1 800x600 30
wait_gw_log "(alice on d1): console now 800x600" 20
window_is "$win" 800x600 20
t1=$(date +%s%N)
log "window resize to guest 800x600 and back to the client: $(((t1 - t0) / 1000000)) ms"
sleep 1
matches "$win" d1

# A burst (a window being dragged): the guest is asked at most twice and
# ends at the last size.
n0=$(asks alice d1)
for s in "900 700" "960 680" "1000 700" "1024 640"; do
	xdotool windowsize "$win" $s
	sleep 0.05
done
wait_screendump d1 1024x640 30
wait_gw_log "(alice on d1): console now 1024x640" 20
window_is "$win" 1024x640 20
sleep 2
n1=$(asks alice d1)
log "burst of 4 sizes: $((n1 - n0)) asked of the guest"
[ $((n1 - n0)) -ge 1 ] && [ $((n1 - n0)) -le 2 ] ||
	rdp_fail "a burst of 4 sizes asked the guest $((n1 - n0)) times"
[ "$(screendump_size d1)" = 1024x640 ] || rdp_fail "d1 left 1024x640"
matches "$win" d1
kill -0 "$alice" 2>/dev/null || rdp_fail "alice's client exited"
# One client at a time in the X server (window searches stay simple).
kill "$alice"
rdp_gone "$alice" || rdp_fail "alice's client did not end"

# --- A guest that cannot resize: std VGA, the boot sector's text screen.
resize_client bob d2 "QDESK TINY GUEST UP"
bob=$RDP_CLIENT
wait_gw_log "(bob on d2): .*console \(now \)\?720x400" 30
before=$(screendump_size d2)
bwin=$(rdp_window "$bob") || rdp_fail "no xfreerdp window for bob"
xdotool windowsize "$bwin" 800 600
wait_gw_log "(bob on d2): client window 800x600: asking the guest" 20
wait_gw_log "(bob on d2): the desktop's display cannot resize" 20
xdotool windowsize "$bwin" 900 640
sleep 3
[ "$(asks bob d2)" = 1 ] || rdp_fail "the gateway asked d2 $(asks bob d2) times"
[ "$(screendump_size d2)" = "$before" ] ||
	rdp_fail "d2's framebuffer changed: $before -> $(screendump_size d2)"
kill -0 "$bob" 2>/dev/null || rdp_fail "bob's client exited"
grep -q "(bob on d2): session ended" "$RDP_LOG" && rdp_fail "bob's session ended"
log "d2 stays $before; the session stays up"
cp "$T/client.png" "$top/build/test-results/47-rdp-resize.png" 2>/dev/null
log ok
