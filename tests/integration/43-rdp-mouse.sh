#!/usr/bin/env bash
# RDP gateway, mouse: a real xfreerdp under Xvfb moves and clicks the mouse
# (xdotool) and the guest's USB tablet (qemu-xhci + usb-tablet, in every
# qdesk VM) reports it: the guest dumps the tablet's evdev events to its
# serial line and the test checks that EV_ABS events arrived, that their
# X/Y (0..32767 over the screen) match where the pointer went, and that the
# left button went down and up. The guest: vmlinuz-usb + initrd-usb.img.
. "$(dirname "$0")/lib.sh"
. "$top/tests/lib/rdp-test-lib.sh"
rdp_require
command -v socat >/dev/null || skip "socat is not installed"

# The USB guest (scripts/mkguest): the generic Debian kernel, as the cloud
# one has no USB; booted PVH, it draws no text console (the screen keeps
# SeaBIOS's 720x400 text), which is all the scaling below needs.
[ -f "$GUESTS/vmlinuz-usb" ] && [ -f "$GUESTS/initrd-usb.img" ] ||
	skip "$GUESTS/vmlinuz-usb is not built (scripts/mkguest)"
alice_desktop "$GUESTS/vmlinuz-usb" "$GUESTS/initrd-usb.img" "console=ttyS0 no_timer_check"
alice_window

# The tablet's events on the serial line (rdp-test-lib.sh).
wait_console d1 "# " 20
tablet_watch d1
log "tablet is /dev/input/$TABLET_EV"
grep -a "Tablet" "$STATE/vms/d1/serial.log" | head -n 3 >&2
sleep 2

# Move to two points and click at the second. QEMU scales the RFB position
# to 0..32767 over the console's 720x400: x * 32767 / 719, y * 32767 / 399.
xdotool mousemove --window "$win" 180 100
sleep 1
xdotool mousemove --window "$win" 540 300
sleep 1
xdotool click 1
sleep 2

python3 - "$STATE/vms/d1/serial.log" "$top/tests/lib" <<'EOF' || rdp_fail "the tablet's events do not match"
import sys
sys.path.insert(0, sys.argv[2])
from tablet_events import tablet_events
evs, absx, absy, btn = tablet_events(sys.argv[1])
print("events %d, ABS_X %s, ABS_Y %s, BTN_LEFT %s" % (len(evs), absx, absy, btn),
      file=sys.stderr)
if not absx or not absy:
    sys.exit("no EV_ABS events from the tablet")
def near(vals, want):
    return any(abs(v - want) <= 32767 * 0.02 for v in vals)
ok = True
for (x, y) in ((180, 100), (540, 300)):
    wx, wy = x * 32767 // 719, y * 32767 // 399
    if not (near(absx, wx) and near(absy, wy)):
        print("no event near (%d, %d) = abs (%d, %d)" % (x, y, wx, wy),
              file=sys.stderr)
        ok = False
if absx[-1] < 32767 * 0.70 or absy[-1] < 32767 * 0.70:
    print("last position (%d, %d) is not the click at 3/4 of the screen"
          % (absx[-1], absy[-1]), file=sys.stderr)
    ok = False
if btn[:2] != [1, 0]:
    print("no left button press and release", file=sys.stderr)
    ok = False
sys.exit(0 if ok else 1)
EOF
log ok
