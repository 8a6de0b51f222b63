#!/usr/bin/env bash
# RDP gateway, a client that cannot resize (issue 12, "otherwise the client
# scales"). rdp-fixed-client (tests/rdp-fixed-client.c: FreeRDP 2 without
# the DesktopResize capability, which xfreerdp always announces) logs in
# to a virtio-gpu desktop whose console changes resolution mid-session
# (fbcon takes virtio-gpu's 1280x800 as the guest boots, as in test 47).
# The client keeps its size; the gateway scales the guest's whole picture
# into it (aspect kept, black bars): white marks the guest draws in its
# top-left and bottom-right corners are where the scaling puts them, the
# picture is QEMU's screendump scaled, and a click at a scaled position
# reaches the guest's USB tablet at the guest position under it.
. "$(dirname "$0")/lib.sh"
. "$top/tests/lib/rdp-test-lib.sh"
rdp_require
CLIENT=$top/build/broker/rdp/rdp-fixed-client
[ -x "$CLIENT" ] || fail "$CLIENT is not built (ninja -C build)"
[ -f "$GUESTS/vmlinuz-usb" ] && [ -f "$GUESTS/initrd-desktop.img" ] ||
	skip "$GUESTS/initrd-desktop.img is not built (scripts/mkguest)"

start_qmpd --broker-user nobody
qq vm create d1 --accel tcg --memory 512 --kernel "$GUESTS/vmlinuz-usb" \
    --initrd "$GUESTS/initrd-desktop.img" --append "console=ttyS0 no_timer_check" \
    --video virtio >/dev/null
printf 'alice-pw-1\n' | qq user add alice --password-stdin >/dev/null
qq desktop assign alice d1 >/dev/null
start_gateway

# The client reads its commands from a fifo (fd 7 here).
mkfifo "$T/cmd"
RDP_PASSWORD=alice-pw-1 "$CLIENT" 127.0.0.1 "$RDP_PORT" alice - \
    <"$T/cmd" >"$T/fixed.out" 2>"$T/fixed.err" &
RDP_CLIENT_PIDS="$RDP_CLIENT_PIDS $!"
exec 7>"$T/cmd"

# wait_out PATTERN N SECONDS: the client said N such lines.
wait_out() {
	local i
	for i in $(seq 1 $(($3 * 10))); do
		[ "$(grep -c -- "$1" "$T/fixed.out")" -ge "$2" ] && return 0
		sleep 0.1
	done
	rdp_fail "the client did not say '$1' ($(cat "$T/fixed.out" "$T/fixed.err" | tail -n 5))"
}
wait_out "^connected " 1 60
csize=$(sed -n 's/^connected //p' "$T/fixed.out")
log "the client's fixed size: $csize"
grep -q "(alice on d1): .*DesktopResize\|(alice on d1): logged in" "$RDP_LOG" ||
	rdp_fail "alice's session is not in the gateway log"

# The guest's console goes 1280x800; the client keeps its size.
wait_gw_log "(alice on d1): console now 1280x800, the client cannot resize: scaled into its $csize" 120
line=$(grep "(alice on d1): console now 1280x800, the client cannot resize" "$RDP_LOG" | tail -n1)
read -r pw ph ox oy < <(sed -n 's/.*(\([0-9]*\)x\([0-9]*\) at +\([0-9]*\)+\([0-9]*\)).*/\1 \2 \3 \4/p' <<<"$line")
log "scaled: 1280x800 -> ${pw}x${ph} at +$ox+$oy in $csize"
wait_console d1 "QDESK GUEST READY" 120
wait_console d1 "# " 20

# Marks: 8 reverse-video cells at the first and the last cells of fbcon.
serial_send d1 "printf '\\033[2J\\033[1;1H\\033[7m        \\033[999;999H\\033[7D        \\033[0m\\033[20;20H' >/dev/tty1; echo QDESK-MARKS"
wait_console d1 "QDESK-MARKS" 20

# judge: the client's picture has the marks where the scaling puts them,
# black bars, and is the screendump scaled (RMSE < 0.1).
judge() {
	python3 - "$T/client.ppm" "$T/qmp-scaled.ppm" "$pw" "$ph" "$ox" "$oy" <<'PY'
import sys
def ppm(p):
    d = open(p, "rb").read()
    parts = d.split(maxsplit=4)
    w, h = int(parts[1]), int(parts[2])
    return w, h, parts[4][-w * h * 3:]
cw, ch, c = ppm(sys.argv[1])
sw, sh, s = ppm(sys.argv[2])
pw, ph, ox, oy = map(int, sys.argv[3:7])
def mean(x, y, w, h, img=c, iw=cw):
    t = n = 0
    for yy in range(y, y + h):
        for xx in range(x, x + w):
            i = (yy * iw + xx) * 3
            t += img[i] + img[i + 1] + img[i + 2]
            n += 3
    return t / n / 255
sx, sy = pw / 1280, ph / 800
# Guest marks: x 0-63 and 1216-1279 (8 cells of 8), y 0-15 and 784-799.
tl = mean(ox + int(8 * sx), oy + int(4 * sy), int(48 * sx), int(8 * sy))
br = mean(ox + int(1224 * sx), oy + int(788 * sy), int(48 * sx), int(8 * sy))
mid = mean(ox + int(900 * sx), oy + int(788 * sy), int(200 * sx), int(8 * sy))
bars = 0.0
if ox > 1:
    bars = max(mean(0, 0, ox - 1, ch), mean(ox + pw + 1, 0, cw - ox - pw - 1, ch))
if oy > 1:
    bars = max(bars, mean(0, 0, cw, oy - 1), mean(0, oy + ph + 1, cw, ch - oy - ph - 1))
err = 0.0
for yy in range(ph):
    for xx in range(pw):
        i = ((oy + yy) * cw + ox + xx) * 3
        j = (yy * sw + xx) * 3
        for k in range(3):
            err += (c[i + k] - s[j + k]) ** 2
rmse = (err / (pw * ph * 3)) ** 0.5 / 255
print("top-left %.2f bottom-right %.2f between %.2f bars %.2f rmse %.3f" %
      (tl, br, mid, bars, rmse))
sys.exit(0 if tl > 0.5 and br > 0.5 and mid < 0.2 and bars < 0.02 and rmse < 0.1 else 1)
PY
}
ok=
shots=0
for i in $(seq 1 30); do
	shots=$((shots + 1))
	echo "shot $T/client.ppm" >&7
	wait_out "^shot " "$shots" 20
	grep -q "^shot $csize" "$T/fixed.out" || rdp_fail "the client's picture is not $csize: $(tail -n1 "$T/fixed.out")"
	q vm screenshot d1 "$T/qmp.ppm" >/dev/null || fail "screendump failed"
	convert "$T/qmp.ppm" -filter Box -resize "${pw}x${ph}!" "$T/qmp-scaled.ppm"
	if verdict=$(judge); then
		ok=1
		break
	fi
	sleep 1
done
convert "$T/client.ppm" "$top/build/test-results/93-rdp-scale-fixed.png" 2>/dev/null
[ -n "$ok" ] || rdp_fail "the client does not show the guest's whole screen scaled: $verdict"
log "the whole guest, scaled: $verdict"

# The click: the tablet's events on the serial line (rdp-test-lib.sh).
tablet_watch d1
sleep 2
# Guest (960, 600), three quarters of the screen, where the client shows it.
cx=$((ox + 960 * pw / 1280)) cy=$((oy + 600 * ph / 800))
echo "click $cx $cy" >&7
wait_out "^click" 1 10
sleep 2
python3 - "$STATE/vms/d1/serial.log" "$top/tests/lib" <<'EOF' || rdp_fail "the click did not reach the guest at (960, 600)"
import sys
sys.path.insert(0, sys.argv[2])
from tablet_events import tablet_events
evs, absx, absy, btn = tablet_events(sys.argv[1])
print("ABS_X %s, ABS_Y %s, BTN_LEFT %s" % (absx, absy, btn), file=sys.stderr)
wx, wy = 960 * 32767 // 1279, 600 * 32767 // 799
if not absx or not absy:
    sys.exit("no EV_ABS events from the tablet")
if abs(absx[-1] - wx) > 32767 * 0.01 or abs(absy[-1] - wy) > 32767 * 0.01:
    sys.exit("the click is at abs (%d, %d), not (%d, %d)" % (absx[-1], absy[-1], wx, wy))
if btn[:2] != [1, 0]:
    sys.exit("no left button press and release")
EOF
log "click at client ($cx, $cy) reached the guest at (960, 600)"
echo quit >&7
exec 7>&-
log ok
