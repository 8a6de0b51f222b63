#!/usr/bin/env bash
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

# The guest's own account of its sound card when a step fails: the
# kernel's snd/HDA lines and ALSA's card list, typed into its shell and
# copied from the console between two markers (the quotes keep the
# console's echo of the typed line from matching).
snd_fail() {
	local f=$STATE/vms/d1/serial.log i
	serial_send d1 'echo QDESK SND DIAG B""EGIN; dmesg | grep -i -e snd -e hda -e azx -e codec | tail -n 30; cat /proc/asound/cards; echo QDESK SND DIAG E""ND'
	for i in $(seq 1 100); do
		grep -q "^QDESK SND DIAG END" "$f" && break
		sleep 0.1
	done
	log "the guest's sound lines (dmesg, /proc/asound/cards):"
	tr -d '\r' <"$f" | sed -n '/^QDESK SND DIAG BEGIN/,/^QDESK SND DIAG END/p' >&2
	fail "$@"
}

# snd_wait PATTERN SECONDS: PATTERN on d1's console, or snd_fail.
snd_wait() {
	local i
	for i in $(seq 1 $(($2 * 10))); do
		grep -q "$1" "$STATE/vms/d1/serial.log" && return 0
		sleep 0.1
	done
	snd_fail "d1: '$1' not on the console after $2 s: $(tail -c 300 "$STATE/vms/d1/serial.log")"
}

start_qmpd --broker-user nobody
# no_timer_check: the kernel's boot-time check that the IO-APIC timer
# ticks counts PIT ticks within ~60 ms of host TSC; a TCG vCPU that the
# busy host does not schedule in that window panics ("IO-APIC + timer
# doesn't work!", 1 boot in 4 at load 30). KVM guests skip it the same way.
qq vm create d1 --accel tcg --memory 512 --kernel "$GUESTS/vmlinuz-usb" \
    --initrd "$GUESTS/initrd-desktop.img" \
    --append "console=ttyS0 no_timer_check" \
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
# The HDA codec may be probed after the shell is up (snd_hda_intel
# probes on a workqueue, slow under TCG on a busy machine): wait for the
# PCM node, or the tone finds none. The guest gives up after 60 s of its
# own, so its shell is free to answer snd_fail. The echo's quotes keep
# the console's own echo of this line from matching.
serial_send d1 'i=0; until [ -e /dev/snd/pcmC0D0p ] || [ $i -ge 300 ]; do sleep 0.2; i=$((i+1)); done; [ -e /dev/snd/pcmC0D0p ] && echo QDESK PCM U""P || echo QDESK PCM N""ONE'
snd_wait "QDESK PCM [UN][PO]" 120
grep -q "QDESK PCM UP" "$STATE/vms/d1/serial.log" ||
	snd_fail "no /dev/snd/pcmC0D0p in the guest after 60 s"
serial_send d1 "qdesk-tone 2"
snd_wait "QDESK TONE PLAYED" 60
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
	snd_fail "the second tone did not play: $(tail -c 300 "$STATE/vms/d1/serial.log")"
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
