#!/usr/bin/env bash
# A Linux guest under TCG: it boots to READY, its screen is a real image,
# it reboots, and a plain `vm stop` powers it off through ACPI (no force).
. "$(dirname "$0")/lib.sh"

start_qmpd
qq vm create desk --accel tcg --memory 256 --kernel "$GUESTS/vmlinuz" \
    --initrd "$GUESTS/initrd.img" --append "console=tty0 console=ttyS0 no_timer_check" >/dev/null
qq vm start desk >/dev/null
[ "$(vm_field desk accel_used)" = tcg ] || fail "not under tcg"
port=$(vm_field desk spice.port)
[ "$port" -ge 5900 ] 2>/dev/null || fail "no SPICE port: $port"
wait_console desk "QDESK GUEST READY" 60

# Screenshot: a PNG by default, a PPM on request; the screen is not blank.
qq vm screenshot desk "$T/screen.png" >/dev/null
head -c 8 "$T/screen.png" | od -An -tx1 | grep -q "89 50 4e 47 0d 0a 1a 0a" ||
	fail "screenshot is not a PNG"
qq vm screenshot desk "$T/screen.ppm" >/dev/null
python3 - "$T/screen.ppm" <<'PY' || fail "the screen is blank"
import sys
data = open(sys.argv[1], 'rb').read()
parts = data.split(b'\n', 3)
assert parts[0] == b'P6', parts[0]
w, h = map(int, parts[1].split())
pixels = parts[3]
assert len(pixels) >= w * h * 3, (len(pixels), w, h)
distinct = len(set(pixels[i:i + 3] for i in range(0, w * h * 3, 3 * 7)))
print("screen %dx%d, %d distinct colours sampled" % (w, h, distinct), file=sys.stderr)
sys.exit(0 if distinct > 1 else 1)
PY

# Reboot: the guest comes up a second time.
qq vm reboot desk >/dev/null
for i in $(seq 1 600); do
	[ "$(grep -c "QDESK GUEST READY" "$STATE/vms/desk/serial.log")" -ge 2 ] && break
	sleep 0.1
done
[ "$(grep -c "QDESK GUEST READY" "$STATE/vms/desk/serial.log")" -ge 2 ] ||
	fail "no second READY after reboot"
[ "$(vm_field desk state)" = running ] || fail "not running after reboot"

# A clean stop: ACPI power button, the guest powers itself off.
t0=$(date +%s)
qq vm stop desk --timeout 45 >/dev/null
t1=$(date +%s)
[ "$(vm_field desk state)" = stopped ] || fail "not stopped"
[ "$(vm_field desk reason)" = "guest powered off" ] ||
	fail "stop went the force path: $(vm_field desk reason)"
log "ACPI stop took $((t1 - t0)) s"
log ok
