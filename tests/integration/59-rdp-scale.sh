#!/usr/bin/env bash
# RDP gateway, a client window smaller than the guest (issue 12: "otherwise
# the client scales"). xfreerdp opens the portal's .rdp file (rdp-gw-test
# -F writes it as the broker serves it: "smart sizing:i:1") and asks for
# 640x360 in its connect request; the guest's console is 720x400 and
# cannot follow the window (std VGA text mode). The gateway answers with
# the guest's whole size, which the client takes; then its window is
# made 640x360 (a smaller screen, a user dragging it) and the client
# scales the whole desktop into it instead of cropping: white blocks the
# guest draws in its top-left and bottom-right corners (the first and
# the last 8 cells of the screen) are at the window's corners, where a
# client that cropped at 640x360 would show none of the second.
. "$(dirname "$0")/lib.sh"
. "$top/tests/lib/rdp-test-lib.sh"
rdp_require

alice_desktop "$GUESTS/vmlinuz" "$GUESTS/initrd.img" "console=tty0 console=ttyS0 no_timer_check"
"$RDP_GW" -F alice:d1 -l 127.0.0.1 -p "$RDP_PORT" >"$T/d1.rdp" ||
	fail "rdp-gw-test -F did not write the .rdp file"
grep -q "^smart sizing:i:1" "$T/d1.rdp" ||
	fail "the .rdp file does not ask the client to scale: $(cat "$T/d1.rdp")"

# The file first, as a user opening it would; then what a test needs.
HOME=$T xfreerdp "$T/d1.rdp" /cert:ignore /p:alice-pw-1 /size:640x360 \
    >"$T/xf-alice.log" 2>&1 &
client=$!
RDP_CLIENT_PIDS="$RDP_CLIENT_PIDS $client"
wait_gw_log "(alice on d1): logged in" 30
wait_console d1 "QDESK GUEST READY" 90
wait_gw_log "(alice on d1): console now 720x400" 30
grep -q "(alice on d1): logged in, console .* (the client asked for 640x360)" \
    "$RDP_LOG" || rdp_fail "the client did not ask for 640x360"
win=$(rdp_window "$client") || rdp_fail "no xfreerdp window"
# The client took the size the gateway answered, not the one it asked.
geom=
for i in $(seq 1 50); do
	geom=$(xdotool getwindowgeometry "$win" | sed -n 's/ *Geometry: //p')
	[ "$geom" = 720x400 ] && break
	sleep 0.1
done
[ "$geom" = 720x400 ] || rdp_fail "client window is $geom, not the guest's 720x400"

# The marks: reverse-video cells in the corners of the 80x25 console.
wait_console d1 "built-in shell" 30
sleep 1
serial_send d1 "printf '\\033[2J\\033[1;1H\\033[7m        \\033[25;73H        \\033[0m\\033[12;40H' >/dev/tty1; echo QDESK-MARKS"
wait_console d1 "QDESK-MARKS" 20

# A smaller window: the client scales into it.
xdotool windowsize "$win" 640 360
geom=
for i in $(seq 1 50); do
	geom=$(xdotool getwindowgeometry "$win" | sed -n 's/ *Geometry: //p')
	[ "$geom" = 640x360 ] && break
	sleep 0.1
done
[ "$geom" = 640x360 ] || rdp_fail "client window is $geom, not 640x360"

# mean X Y W H: the mean grey (0..1) of that part of the client's window.
mean() {
	convert "$T/client.png" -crop "${3}x${4}+${1}+${2}" +repage \
	    -colorspace gray -format '%[fx:mean]' info:
}
bright() { python3 -c "import sys; sys.exit(0 if $1 > 0.5 else 1)"; }
dark() { python3 -c "import sys; sys.exit(0 if $1 < 0.2 else 1)"; }

# Scaled by 640/720 and 360/400 (8/9, 9/10), the last 8 cells of the last
# row (x 648-719, y 384-399) fall at x 576-639, y 346-359.
ok=
for i in $(seq 1 40); do
	import -window "$win" "$T/client.png" 2>/dev/null || { sleep 0.5; continue; }
	br=$(mean 584 349 48 8) tl=$(mean 4 2 48 8) mid=$(mean 420 349 120 8)
	if bright "$br" && bright "$tl" && dark "$mid"; then
		ok=1
		break
	fi
	sleep 0.5
done
cp "$T/client.png" "$top/build/test-results/59-rdp-scale.png" 2>/dev/null
[ -n "$ok" ] || rdp_fail "the client's window does not show the guest's" \
    "corners scaled (bottom right $br, top left $tl, beside them $mid)"
log "scaled: bottom-right mark $br, top-left mark $tl, between $mid"

# And the whole picture is the guest's, scaled (RMSE against QEMU's
# screendump resized to the window).
q vm screenshot d1 "$T/qmp.ppm" >/dev/null || fail "screendump failed"
convert "$T/qmp.ppm" -resize '640x360!' "$T/qmp-scaled.png"
rmse=$(compare -metric RMSE "$T/client.png" "$T/qmp-scaled.png" null: 2>&1 |
    sed -n 's/.*(\(.*\)).*/\1/p')
log "client vs the scaled screendump: RMSE $rmse"
python3 -c "import sys; sys.exit(0 if $rmse < 0.1 else 1)" ||
	rdp_fail "the client's picture is not the guest's scaled (RMSE $rmse)"
log ok
