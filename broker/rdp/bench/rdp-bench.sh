#!/usr/bin/env bash
# RDP gateway benchmark (issue 6): a Linux guest under TCG, its console
# seen through the gateway by a real xfreerdp under Xvfb.
#   1. key to screen: keys typed one by one into an idle shell; the gateway
#      measures from each key press to the next screen update it sends;
#   2. full-screen redraw: the guest prints dmesg to its console in a loop
#      (every frame scrolls the whole text screen); frames per second,
#      bitmap bytes per second to the client, gateway CPU per frame;
#   3. the same at 1024x768x32: build/guests/boot-redraw.img (redraw.s, a
#      boot sector that rewrites every pixel of a Bochs VBE screen for
#      ever), checked first with two `qdesk vm screenshot`s (1024x768, and
#      they differ);
#   4. the same guest, the same seconds, seen by a direct SPICE client
#      instead: tests/spice-probe --display (TLS, the display channel
#      linked as a viewer links it) counts frames and bytes on the wire.
# Not part of the test suite. Prints one summary block; the raw session
# lines from the gateway log follow it.
#
#   broker/rdp/bench/rdp-bench.sh [SECONDS]     (default 20)
#
# Limits: 1 and 2 use the Linux guest's VGA text console, 720x400 (the
# kernel has no framebuffer driver for QEMU's VGA); only 3 is at 1024x768,
# and it has no shell to type into, so key-to-screen latency is measured
# at 720x400 only. The SPICE figures are a client's wire figures (it
# decodes nothing); a frame is a burst of updates (spice-probe.c).
secs=${1:-20}
. "$(dirname "$0")/../../../tests/integration/lib.sh"
. "$top/tests/lib/rdp-test-lib.sh"
rdp_require

cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }

start_qmpd --broker-user nobody
qq vm create d1 --accel tcg --memory 256 --kernel "$GUESTS/vmlinuz" \
    --initrd "$GUESTS/initrd.img" --append "console=tty0 console=ttyS0" >/dev/null
printf 'bench-pw\n' | qq user add alice --password-stdin >/dev/null
qq desktop assign alice d1 >/dev/null
# 3's guest: a boot sector on a private copy of boot-redraw.img, VGA.
cp "$GUESTS/boot-redraw.img" "$T/redraw.img"
qq vm create d2 --accel tcg --memory 32 --display spice --disk "$T/redraw.img" \
    --disk-format raw >/dev/null
printf 'bench-pw\n' | qq user add bob --password-stdin >/dev/null
qq desktop assign bob d2 >/dev/null
qq vm start d1 >/dev/null
wait_console d1 "QDESK GUEST READY" 90
start_gateway
xvfb_start

# 1. Key to screen, on an idle console.
rdp_client keys /u:alice /p:bench-pw
keys=$RDP_CLIENT
wait_gw_log "(alice on d1): logged in" 30
win=$(rdp_window "$keys") || rdp_fail "no client window"
sleep 3
xdotool mousemove --window "$win" 100 100
xdotool windowfocus "$win"
for c in q w e r t y u i o p a s d f g h j k l z; do
	xdotool key "$c"
	sleep 0.3
done
xdotool key ctrl+u

# 2. Full-screen redraw; a second login takes over and ends session 1,
# which logs its numbers.
serial_send d1 'while :; do dmesg > /dev/tty1; done &'
sleep 2
rdp_client load /u:alice /p:bench-pw
wait_gw_log "session ended after" 30
t0=$(cpu_ticks "$RDP_GW_PID")
sleep "$secs"
t1=$(cpu_ticks "$RDP_GW_PID")
kill "$RDP_CLIENT"
wait_gw_log "session ended after .*frames.*$" 10
sleep 1
serial_send d1 'kill %1'
qq vm kill d1 >/dev/null

# 3. 1024x768x32, every frame a full-screen change.
qq vm start d2 >/dev/null
wait_console d2 "QDESK REDRAW UP" 30
sleep 2
q vm screenshot d2 "$T/r1.ppm" >/dev/null || fail "d2: screenshot failed"
sleep 0.5
q vm screenshot d2 "$T/r2.ppm" >/dev/null || fail "d2: screenshot failed"
size=$(identify -format '%wx%h' "$T/r1.ppm")
[ "$size" = 1024x768 ] || fail "d2: screen is $size, not 1024x768"
cmp -s "$T/r1.ppm" "$T/r2.ppm" && fail "d2: the screen does not change"
log "d2: qdesk vm screenshot: $size, two shots 0.5 s apart differ"
rdp_client redraw /u:bob /p:bench-pw
wait_gw_log "(bob on d2): .*console.*1024x768" 30
sleep 2
r0=$(cpu_ticks "$RDP_GW_PID")
q0=$(cpu_ticks "$(vm_pid d2)")
sleep "$secs"
r1=$(cpu_ticks "$RDP_GW_PID")
q1=$(cpu_ticks "$(vm_pid d2)")
kill "$RDP_CLIENT"
wait_gw_log "(bob on d2): session ended after" 10

# 4. The same guest through SPICE (TLS), straight to QEMU.
tk=$(q --json vm ticket d2 --expires 120)
jq -r .ca <<<"$tk" | sed '/^$/d' >"$T/spice-ca.pem"
s0=$(cpu_ticks "$(vm_pid d2)")
"$top/build/broker/spice-probe" 127.0.0.1 "$(jq -r .port <<<"$tk")" \
    "$(jq -r .password <<<"$tk")" --ca "$T/spice-ca.pem" \
    --host-subject "$(jq -r .host_subject <<<"$tk")" --display "$secs" \
    >"$T/spice.out" 2>&1 || fail "spice-probe: $(cat "$T/spice.out")"
s1=$(cpu_ticks "$(vm_pid d2)")
qq vm kill d2 >/dev/null

hz=$(getconf CLK_TCK)
python3 - "$RDP_LOG" "$t0" "$t1" "$hz" "$secs" "$r0" "$r1" "$q0" "$q1" "$s0" "$s1" "$T/spice.out" <<'PY'
import re, sys
log, t0, t1, hz, secs = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5])
r0, r1, q0, q1, s0, s1 = (int(x) for x in sys.argv[6:12])
spice = [l for l in open(sys.argv[12]) if l.startswith("display ")][-1]
allends = [l for l in open(log) if "session ended after" in l]
ends = [l for l in allends if "on d1)" in l]
big = [l for l in allends if "on d2)" in l][-1]
pat = re.compile(r"after ([\d.]+) s .*?; (\d+) frames, (\d+) updates, (\d+) tiles, (\d+) bytes of bitmaps, (\d+) waits for the client; key to screen (\d+) ms average, (\d+) ms worst, (\d+) keys")
m1 = pat.search(ends[0]); m2 = pat.search(ends[-1])
print("RDP gateway benchmark, 720x400 VGA text console, TCG guest, xfreerdp under Xvfb")
print("key to screen (idle shell): %s ms average, %s ms worst over %s keys" % (m1.group(7), m1.group(8), m1.group(9)))
d, frames, tiles, nbytes = float(m2.group(1)), int(m2.group(2)), int(m2.group(4)), int(m2.group(5))
cpu = (t1 - t0) / hz
print("full-screen redraw: %.1f frames/s, %.0f KiB/s of bitmaps, %.1f tiles/frame over %.1f s, %s waits for the client" %
      (frames / d, nbytes / d / 1024, tiles / max(frames, 1), d, m2.group(6)))
print("gateway CPU during %d s of redraw: %.2f s (%.0f%% of one core), %.2f ms per frame" %
      (secs, cpu, 100 * cpu / secs, 1000 * cpu / max(frames * secs / d, 1)))
m3 = pat.search(big)
d, frames, tiles, nbytes = float(m3.group(1)), int(m3.group(2)), int(m3.group(4)), int(m3.group(5))
cpu, qcpu = (r1 - r0) / hz, (q1 - q0) / hz
print("1024x768x32 redraw (boot-redraw.img): %.1f frames/s, %.0f KiB/s of bitmaps, %.1f tiles/frame over %.1f s (whole session), %s waits for the client" %
      (frames / d, nbytes / d / 1024, tiles / max(frames, 1), d, m3.group(6)))
print("  during %d s of it: gateway CPU %.2f s (%.0f%% of one core, %.2f ms per frame), QEMU CPU %.2f s (%.0f%%)" %
      (secs, cpu, 100 * cpu / secs, 1000 * cpu / max(frames * secs / d, 1), qcpu, 100 * qcpu / secs))
ms = re.search(r"display (\d+x\d+): ([\d.]+) s, (\d+) frames .*?, (\d+) draws, (\d+) stream frames, (\d+) bytes", spice)
sd, sf, sb = float(ms.group(2)), int(ms.group(3)), int(ms.group(6))
print("same guest, direct SPICE client (TLS, spice-probe --display) at %s: %.1f frames/s, %.0f KiB/s, %s draws, %s stream frames over %.1f s; QEMU CPU %.0f%%" %
      (ms.group(1), sf / sd, sb / sd / 1024, ms.group(4), ms.group(5), sd, 100 * (s1 - s0) / hz / secs))
print("  RDP gateway / SPICE: %.2fx the frames, %.2fx the bytes" %
      ((frames / d) / max(sf / sd, 0.001), (nbytes / d) / max(sb / sd, 1)))
for l in allends:
    print("  " + l.strip())
PY
log ok
