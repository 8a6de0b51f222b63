#!/usr/bin/env bash
# test: exclusive  (its TCG guest probes the HDA codec at boot: with other guests beside it on 2 cores the probe failed and no PCM device appeared, 2 fresh-clone CI runs in 2 on 2026-12-03)
# RDP gateway, sound from the guest (issue 12): a desktop with --audio and
# no SPICE (HDA on QEMU's none audio backend, captured by QEMU's VNC
# server: -vnc none,audiodev=audio0). The desktop guest (generic kernel,
# snd_hda_intel) plays a 440 Hz tone with qdesk-tone (scripts/guest/
# pcm-tone.c, ALSA PCM ioctls).
#  - xfreerdp whose rdpsnd takes only 22050 Hz: the gateway never asks
#    QEMU to capture, and reports no sound for that session;
#  - xfreerdp with /sound:sys:fake (rdpsnd, FreeRDP's fake player, which
#    confirms each block it "plays"): the gateway counts PCM bytes from
#    QEMU, frames passed to the client, and blocks the client confirmed.
. "$(dirname "$0")/lib.sh"
. "$top/tests/lib/rdp-test-lib.sh"
rdp_require

start_qmpd --broker-user nobody
qq vm create d1 --accel tcg --memory 512 --kernel "$GUESTS/vmlinuz-usb" \
    --initrd "$GUESTS/initrd-desktop.img" --append "console=ttyS0" \
    --display none --audio >/dev/null
printf 'alice-pw-1\n' | qq user add alice --password-stdin >/dev/null
qq desktop assign alice d1 >/dev/null
start_gateway
xvfb_start

# First a client whose rdpsnd plays no 44100 Hz PCM (xfreerdp 2 always
# joins rdpsnd, with its fake player at least): it boots the desktop and
# gets no sound; QEMU is never asked to capture for it.
rdp_client nosound /u:alice /p:alice-pw-1 /sound:sys:fake,rate:22050
client=$RDP_CLIENT
wait_gw_log "(alice on d1): logged in" 30
wait_console d1 "QDESK GUEST READY" 120
tr '\0' ' ' <"/proc/$(vm_pid d1)/cmdline" | grep -q -- "-vnc none,audiodev=audio0" ||
	fail "QEMU's VNC server does not capture audio0"
wait_console d1 "built-in shell" 30	# ash's banner: it reads lines now
sleep 1
# The HDA codec is probed after the shell is up (snd_hda_intel probes
# on a workqueue, slow under TCG on a busy machine): wait for the PCM
# node, or the tone finds none. The echo's quotes keep the console's own
# echo of this line from matching.
serial_send d1 'until [ -e /dev/snd/pcmC0D0p ]; do sleep 0.2; done; echo QDESK PCM U""P'
wait_console d1 "QDESK PCM UP" 60
serial_send d1 "qdesk-tone 2"
wait_console d1 "QDESK TONE PLAYED" 60
kill "$client"
wait "$client" 2>/dev/null
wait_gw_log "(alice on d1): session ended" 20
grep -q "(alice on d1): sound:" "$RDP_LOG" &&
	rdp_fail "a client without a matching format got sound"
grep -q "sound: the client plays no 16-bit 44100 Hz stereo PCM" "$RDP_LOG" ||
	rdp_fail "the gateway did not say why that client got no sound"
grep -q "RDP sound: capture on" "$RDP_LOG" &&
	rdp_fail "QEMU captured sound for a client that cannot play it"

# Then one with rdpsnd: the tone reaches it.
rdp_client sound /u:alice /p:alice-pw-1 /sound:sys:fake
client=$RDP_CLIENT
wait_gw_log "(alice on d1): logged in" 30
# rdpsnd's format exchange after activation, then QEMU's capture (-v).
wait_gw_log "RDP sound: capture on" 30
serial_send d1 "qdesk-tone 3"
for i in $(seq 1 600); do
	[ "$(grep -c "QDESK TONE PLAYED" "$STATE/vms/d1/serial.log")" -gt 1 ] && break
	sleep 0.1
done
[ "$(grep -c "QDESK TONE PLAYED" "$STATE/vms/d1/serial.log")" -gt 1 ] ||
	fail "the second tone did not play: $(tail -c 300 "$STATE/vms/d1/serial.log")"
sleep 1
kill "$client"
wait "$client" 2>/dev/null
wait_gw_log "(alice on d1): sound: " 20
line=$(grep "(alice on d1): sound: " "$RDP_LOG" | tail -n1)
log "$line"
read -r pcm frames blocks <<<"$(sed -n 's/.*sound: \([0-9]*\) bytes of PCM from QEMU, \([0-9]*\) frames .* to the client, \([0-9]*\) blocks played.*/\1 \2 \3/p' <<<"$line")"
# 3 s of 44100 Hz stereo S16 is 529200 bytes; TCG and a busy host may
# lose some, but most of it must arrive, and the client must play it.
[ "${pcm:-0}" -gt 100000 ] || rdp_fail "only ${pcm:-0} bytes of PCM came from QEMU"
[ "${frames:-0}" -gt 25000 ] || rdp_fail "only ${frames:-0} frames went to the client"
[ "${blocks:-0}" -gt 0 ] || rdp_fail "the client confirmed no block"
log ok
