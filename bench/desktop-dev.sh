#!/usr/bin/env bash
# Issue 11's device benchmarks, through qmpd, under TCG (this machine's
# nested KVM cannot run a Linux guest):
#
# 1. SPICE display on the 1024x768 redraw guest (boot-redraw.img, every
#    pixel rewritten each frame): --video qxl against --video vga, one
#    after the other, each for SECS seconds of spice-probe --display
#    (TLS, straight to QEMU): frames/s and bytes/s the viewer receives.
# 2. Density: N idle Linux desktops of 512 MiB (the generic kernel with
#    initrd-desktop.img), once without a balloon, once with --balloon
#    (free page reporting), and once more with the balloon and KSM on where
#    /sys/kernel/mm/ksm exists (its settings are put back afterwards). Each
#    guest, once booted, uses and frees 256 MiB (dd through a 256 MiB
#    buffer), as a desktop does that opened and closed a program; host
#    memory used is the sum of the QEMU processes' RSS, read after SETTLE
#    seconds of idling.
#
#   bench/desktop-dev.sh [BUILD]     as root; N=4, about 4 minutes on 2 cores
#
# N defaults to 4 (DEV_N): each Linux guest under TCG needs about 10 s of
# CPU to boot (the generic kernel's xz decompression and modules), so 4
# guests booting at once keep both cores busy for 20-40 s per run, and 3
# runs fit in a few minutes; the per-desktop figures are what scales.
set -uo pipefail
top=$(cd "$(dirname "$0")/.." && pwd)
BUILD=${1:-$top/build}
GUESTS=$BUILD/guests
PROBE=$BUILD/broker/spice-probe
N=${DEV_N:-4}
SECS=${DEV_SECS:-10}
SETTLE=${DEV_SETTLE:-20}
. "$top/bench/lib.sh" desktop-dev
[ -x "$PROBE" ] || die "no $PROBE: build first"
[ -f "$GUESTS/vmlinuz-usb" ] && [ -f "$GUESTS/initrd-desktop.img" ] &&
    [ -f "$GUESTS/boot-redraw.img" ] || die "no guests: scripts/mkguest"

KSM=/sys/kernel/mm/ksm
KSM_RUN=
KSM_SCAN=
ksm_restore() {
	[ -n "$KSM_RUN" ] || return 0
	echo "$KSM_SCAN" >"$KSM/pages_to_scan"
	echo "$KSM_RUN" >"$KSM/run"
}
trap 'ksm_restore; bench_cleanup' EXIT

# wait_serial VM PATTERN SECONDS
wait_serial() {
	local i
	for i in $(seq 1 $(($3 * 10))); do
		grep -a -q "$2" "$STATE/vms/$1/serial.log" 2>/dev/null && return 0
		sleep 0.1
	done
	die "$1: no '$2' on its console after $3 s"
}

rss_sum() {
	local f pid kb sum=0
	for f in "$STATE"/vms/*/qemu.pid; do
		pid=$(cat "$f")
		kb=$(awk '/^VmRSS:/ {print $2}' "/proc/$pid/status" 2>/dev/null)
		sum=$((sum + ${kb:-0}))
	done
	echo $((sum / 1024))
}

bench_qmpd_start "$T/state"

# 1. qxl against vga on the redraw guest.
for video in qxl vga; do
	cp "$GUESTS/boot-redraw.img" "$T/redraw-$video.img"
	"$QDESK" vm create "r-$video" --accel tcg --memory 32 \
	    --disk "$T/redraw-$video.img" --video "$video" >/dev/null ||
		die "vm create r-$video"
	"$QDESK" vm start "r-$video" >/dev/null || die "vm start r-$video"
	wait_serial "r-$video" "QDESK REDRAW UP" 60
	tk=$("$QDESK" --json vm ticket "r-$video" --expires 120)
	jq -r .ca <<<"$tk" | sed '/^$/d' >"$T/ca.pem"
	"$PROBE" 127.0.0.1 "$(jq -r .port <<<"$tk")" \
	    "$(jq -r .password <<<"$tk")" --ca "$T/ca.pem" \
	    --host-subject "$(jq -r .host_subject <<<"$tk")" \
	    --display "$SECS" >"$T/display-$video" 2>&1 ||
		die "spice-probe: $(cat "$T/display-$video")"
	echo "display --video $video: $(grep '^display' "$T/display-$video")"
	"$QDESK" vm kill "r-$video" >/dev/null
done

# 2. Density: one run of N desktops; $1 names it, the rest are flags.
density() {
	local run=$1 i t0 secs boot used idle ksm=
	shift
	t0=$(date +%s)
	for i in $(seq 1 "$N"); do
		"$QDESK" vm create "$run-$i" --accel tcg --memory 512 \
		    --kernel "$GUESTS/vmlinuz-usb" \
		    --initrd "$GUESTS/initrd-desktop.img" \
		    --append "console=ttyS0 quiet" "$@" >/dev/null ||
			die "vm create $run-$i"
		"$QDESK" vm start "$run-$i" >/dev/null || die "vm start $run-$i"
	done
	for i in $(seq 1 "$N"); do
		wait_serial "$run-$i" "QDESK GUEST READY" 300
	done
	secs=$(( $(date +%s) - t0 ))
	boot=$(rss_sum)
	for i in $(seq 1 "$N"); do
		printf 'dd if=/dev/zero of=/dev/null bs=256M count=1 2>/dev/null; echo USED-DONE\n' |
		    socat -t1 - "UNIX-CONNECT:$STATE/vms/$run-$i/serial.sock" >/dev/null 2>&1
	done
	for i in $(seq 1 "$N"); do
		wait_serial "$run-$i" "^USED-DONE" 120
	done
	used=$(rss_sum)
	sleep "$SETTLE"
	idle=$(rss_sum)
	[ "$(cat "$KSM/run" 2>/dev/null)" = 1 ] && ksm=", KSM pages_sharing $(cat "$KSM/pages_sharing") pages_shared $(cat "$KSM/pages_shared")"
	echo "density $run: $N x 512 MiB, all READY in $secs s: QEMU RSS sum after boot $boot MiB, after 256 MiB used and freed $used MiB, after ${SETTLE} s idle $idle MiB ($((idle / N)) MiB a desktop)$ksm"
	for i in $(seq 1 "$N"); do
		"$QDESK" vm kill "$run-$i" >/dev/null
		"$QDESK" vm delete "$run-$i" >/dev/null
	done
}

density plain
density balloon --balloon
if [ -d "$KSM" ]; then
	KSM_RUN=$(cat "$KSM/run")
	KSM_SCAN=$(cat "$KSM/pages_to_scan")
	echo 1 >"$KSM/run"
	echo 5000 >"$KSM/pages_to_scan"
	density balloon-ksm --balloon
	ksm_restore
else
	echo "KSM: no $KSM on this host"
fi
