#!/usr/bin/env bash
# Boot to READY, BIOS against UEFI, under TCG, through qmpd, in one run:
#
#   bios  vmlinuz + initrd.img given to QEMU (-kernel/-initrd, SeaBIOS)
#   uefi  efi.img (a unified kernel image on an EFI system partition)
#         under OVMF, --firmware uefi, the VM's own NVRAM as an fd
#
# Each round starts one VM of each kind, one after the other (the order
# alternates between rounds), and times `qdesk vm start` until the
# guest's "QDESK GUEST READY" line is in its serial log; then the VM is
# quit. Medians with [min-max] over ROUNDS rounds, and the median of the
# per-round ratios uefi / bios (each pair sees the same machine load).
#
# usage: bench/fw-boot.sh [--rounds N] [BUILD]
#   BUILD  meson build dir with qmpd/qmpd and cli/qdesk (default build/)
#
# Needs root (qmpd does), the guests (scripts/mkguest) and the ovmf
# package. Prints a markdown table; figures go in bench/fw-README.md.
set -u

top=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
ROUNDS=5
BUILD=
while [ $# -gt 0 ]; do
	case $1 in
	--rounds)	ROUNDS=$2; shift ;;
	-h|--help)	sed -n '2,18p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
	-*)		echo "fw-boot: unknown option $1" >&2; exit 2 ;;
	*)		BUILD=$1 ;;
	esac
	shift
done
case $ROUNDS in ''|*[!0-9]*|0) echo "fw-boot: --rounds needs a number > 0" >&2; exit 2 ;; esac
BUILD=$(cd "${BUILD:-$top/build}" && pwd) || exit 2
. "$top/bench/lib.sh" fw-boot
G=$BUILD/guests
for f in "$G/vmlinuz" "$G/initrd.img" "$G/efi.img" /usr/share/OVMF/OVMF_CODE_4M.fd; do
	[ -f "$f" ] || die "$f missing: scripts/setup"
done

bench_qmpd_start "$T/state"
"$QDESK" vm create bios --accel tcg --memory 256 --display none \
    --kernel "$G/vmlinuz" --initrd "$G/initrd.img" \
    --append "console=ttyS0" >/dev/null || die "create bios"
cp "$G/efi.img" "$T/efi.img"
"$QDESK" vm create uefi --accel tcg --memory 256 --display none \
    --firmware uefi --disk "$T/efi.img" >/dev/null || die "create uefi"

# Milliseconds from `vm start` to READY on the VM's console.
boot_ms() { # VM
	local log=$STATE/vms/$1/serial.log t0 t1 n

	# QEMU appends to the log: the next READY is one more than now.
	n=$(grep -a -c "QDESK GUEST READY" "$log" 2>/dev/null)
	n=$((${n:-0} + 1))
	t0=$(date +%s%N)
	"$QDESK" vm start "$1" >/dev/null || die "start $1"
	for _ in $(seq 1 6000); do
		[ "$(grep -a -c "QDESK GUEST READY" "$log" 2>/dev/null)" -ge $n ] &&
			break
		sleep 0.02
	done
	t1=$(date +%s%N)
	[ "$(grep -a -c "QDESK GUEST READY" "$log" 2>/dev/null)" -ge $n ] ||
		die "$1: no READY in 120 s"
	"$QDESK" vm stop "$1" --force >/dev/null || die "stop $1"
	echo $(((t1 - t0) / 1000000))
}

bios=()
uefi=()
ratios=()
for r in $(seq 1 "$ROUNDS"); do
	if [ $((r % 2)) = 1 ]; then
		b=$(boot_ms bios) || exit 1
		u=$(boot_ms uefi) || exit 1
	else
		u=$(boot_ms uefi) || exit 1
		b=$(boot_ms bios) || exit 1
	fi
	bios+=("$b")
	uefi+=("$u")
	ratios+=("$(awk -v u="$u" -v b="$b" 'BEGIN { printf "%.2f", u / b }')")
	note "round $r: bios $b ms, uefi $u ms"
done

# "median [min-max]" of the arguments.
stats() { printf '%s\n' "$@" | sort -n | awk '{ v[NR] = $1 }
    END { m = NR % 2 ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2
          printf "%s [%s-%s]", m, v[1], v[NR] }'; }

echo "| boot to READY, TCG (median of $ROUNDS, ms) | time | uefi / bios |"
echo "|---|---|---|"
echo "| bios: -kernel vmlinuz -initrd initrd.img (SeaBIOS) | $(stats "${bios[@]}") | |"
echo "| uefi: efi.img under OVMF, --firmware uefi | $(stats "${uefi[@]}") | $(stats "${ratios[@]}" | cut -d' ' -f1)x |"
