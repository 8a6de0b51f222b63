#!/usr/bin/env bash
# video-kvm.img and video-kvm768.img (scripts/guest/video-kvm.c): under
# KVM through qmpd they set their Bochs VBE mode (the screendump's size),
# say "QDESK VIDEO UP", keep counting frames, and the screen moves and is
# not flat (a photo-like picture, not a test pattern).
. "$(dirname "$0")/lib.sh"

[ -r /dev/kvm ] || skip "no /dev/kvm"
start_qmpd
q --json status | jq -e '.accels | index("kvm")' >/dev/null ||
	skip "qmpd says KVM is not usable here"

for g in video-kvm:1920x1080 video-kvm768:1024x768; do
	n=${g%%:*} size=${g#*:}
	cp --sparse=always "$GUESTS/$n.img" "$T/$n.img"
	qq vm create "$n" --accel kvm --memory 64 --disk "$T/$n.img" \
	    --disk-format raw >/dev/null
	qq vm start "$n" >/dev/null
	[ "$(vm_field "$n" accel_used)" = kvm ] || fail "$n is not under kvm"
	wait_console "$n" "QDESK VIDEO UP $size kvm" 120
	# Two of its once-a-second lines: the counter moves (it would
	# stop if the PIT's interrupt or the ring-3 trap broke).
	wait_console "$n" "QDESK VIDEO FPS=.*frames=" 30
	f0=$(grep -a -o 'frames=[0-9]*' "$STATE/vms/$n/serial.log" | tail -1)
	q vm screenshot "$n" "$T/$n-a.ppm" >/dev/null
	sleep 2
	q vm screenshot "$n" "$T/$n-b.ppm" >/dev/null
	f1=$(grep -a -o 'frames=[0-9]*' "$STATE/vms/$n/serial.log" | tail -1)
	[ "${f1#frames=}" -gt "${f0#frames=}" ] ||
		fail "$n: the frame counter stood still ($f0, then $f1)"
	[ "$(identify -format '%wx%h' "$T/$n-a.ppm")" = "$size" ] ||
		fail "$n: screen $(identify -format '%wx%h' "$T/$n-a.ppm"), not $size"
	# Natural-image content: many colours and a picture that moved.
	colours=$(identify -format '%k' "$T/$n-a.ppm")
	[ "$colours" -gt 5000 ] || fail "$n: only $colours colours on the screen"
	# (compare prints large counts as 2.07e+06)
	diff=$(compare -metric AE "$T/$n-a.ppm" "$T/$n-b.ppm" null: 2>&1 |
	    awk '{ printf "%d", $1 }' || true)
	[ "${diff:-0}" -gt 100000 ] ||
		fail "$n: only ${diff} pixels changed in 2 s"
	log "$n: $size, $colours colours, $diff pixels changed in 2 s, $(grep -a 'QDESK VIDEO FPS' "$STATE/vms/$n/serial.log" | tail -1 | tr -d '\r')"
	qq vm kill "$n" >/dev/null
done
log ok
