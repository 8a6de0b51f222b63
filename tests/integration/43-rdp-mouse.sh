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

# The tablet's event device (it appears ~0.3 s after READY, once the xHCI
# port is enumerated). The pattern needs a digit: the echoed command line
# itself does not match.
wait_console d1 "# " 20
for i in $(seq 1 20); do
	serial_send d1 'for d in /sys/class/input/event*; do grep -q "USB Tablet" $d/device/name && echo QDESK-TABLET=${d##*/}; done'
	grep -q "QDESK-TABLET=event[0-9]" "$STATE/vms/d1/serial.log" && break
	sleep 1
done
wait_console d1 "QDESK-TABLET=event[0-9]" 5
ev=$(grep -ao "QDESK-TABLET=event[0-9]*" "$STATE/vms/d1/serial.log" | head -n1)
ev=${ev#QDESK-TABLET=}
log "tablet is /dev/input/$ev"
grep -a "Tablet" "$STATE/vms/d1/serial.log" | head -n 3 >&2

# Each struct input_event (24 bytes on x86_64) as one line "QEV <hex>" on
# the serial line; hexdump writes straight to the tty (line buffered).
serial_send d1 "hexdump -v -e '\"QEV \" 24/1 \"%02x\" \"\\n\"' /dev/input/$ev > /dev/ttyS0 &"
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
