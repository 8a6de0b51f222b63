#!/usr/bin/env bash
# Live migration between two qmpds on this machine (issue 14): downtime
# p50/max over N migrations back and forth of an idle TCG Linux guest
# (qmpd's figure: source STOP to target cont; and the largest gap in the
# guest's 50 ms serial counter, seen from the host), total time against
# guest RAM, and --storage copy time against disk size. Figures, never
# assertions; notes in bench/migrate-README.md.
#
# Then the busy guest under KVM (bench/migrate-busy.sh): boot sectors
# that dirty RAM at 0, 8 and 64 MiB/s and check every page, N
# migrations of each at each RAM size; --no-busy skips them, --no-tcg
# skips the TCG rows above.
#
# libvirt's `virsh migrate --live` between two session libvirtds runs
# last, on the same guests, as the anchor (bench/migrate-libvirt.sh);
# --no-libvirt skips it.
#
# usage: bench/migrate.sh [-n N] [--rams "256 1024"] [--disks "16 256"]
#                         [--no-tcg] [--no-busy] [--no-libvirt] [BUILD]
set -u

top=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
N=10
RAMS="256 1024"
DISKS="16 256"
LIBVIRT=1
TCG=1
BUSY=1
while [ $# -gt 0 ]; do
	case $1 in
	-n) N=$2; shift 2 ;;
	--rams) RAMS=$2; shift 2 ;;
	--disks) DISKS=$2; shift 2 ;;
	--no-libvirt) LIBVIRT=; shift ;;
	--no-tcg) TCG=; shift ;;
	--no-busy) BUSY=; shift ;;
	*) break ;;
	esac
done
BUILD=${1:-$top/build}
. "$top/bench/lib.sh" migrate
. "$top/bench/migrate-libvirt.sh"
. "$top/bench/migrate-busy.sh"
GUESTS=$BUILD/guests

# Two qmpds: A through lib.sh, B by hand (stopped the same way on exit).
STATE_B=$T/b
QMPD_B=
bench_qmpd_start "$T/a" --vm-uids 2000092000-2000092999
"$QMPD" -f --state-dir "$STATE_B" --vm-uids 2000093000-2000093999 \
    >>"$T/qmpd-b.log" 2>&1 &
QMPD_B=$!
stop_b() {
	kill -TERM "$QMPD_B" 2>/dev/null
	wait "$QMPD_B" 2>/dev/null
	bench_kill_qemus "$STATE_B"
	[ -n "${FOLLOW:-}" ] && kill "$FOLLOW" 2>/dev/null
}
trap 'st=$?; stop_b; lv_down; (exit $st); bench_cleanup' EXIT
for i in $(seq 1 400); do
	QDESK_SOCKET=$STATE_B/qmpd.sock "$QDESK" status >/dev/null 2>&1 && break
	sleep 0.05
done
A=$T/a
B=$STATE_B
qa() { QDESK_SOCKET=$A/qmpd.sock "$QDESK" "$@"; }
qb() { QDESK_SOCKET=$B/qmpd.sock "$QDESK" "$@"; }
on() { [ "$1" = "$A" ] && echo "$B" || echo "$A"; }
qon() { local s=$1; shift; QDESK_SOCKET=$s/qmpd.sock "$QDESK" "$@"; }

# A guest with the serial counter; $1 name, $2 MiB, $3 disk file or "".
boot() {
	local i
	qa vm create "$1" --accel tcg --memory "$2" --kernel "$GUESTS/vmlinuz" \
	    --initrd "$GUESTS/initrd.img" --append "console=ttyS0" \
	    ${3:+--disk "$3" --disk-format raw} >/dev/null || die "create $1"
	qa vm start "$1" >/dev/null || die "start $1"
	for i in $(seq 1 900); do
		grep -aq "# " "$A/vms/$1/serial.log" 2>/dev/null && break
		sleep 0.1
	done
	printf '%s\n' 'i=0; while :; do read up x </proc/uptime; echo "CTR $i $up"; i=$((i+1)); usleep 50000; done >/dev/ttyS0 2>&1 &' |
	    socat -t1 - "UNIX-CONNECT:$A/vms/$1/serial.sock" >/dev/null 2>&1
	sleep 3
}

# The gap between the source's last counter line and the target's first
# in a serial-follow.py log, in ms (-1: one side missing).
follow_gap() {
	python3 - "$1" <<'PY'
import sys
rows = [l.split() for l in open(sys.argv[1])]
rows = [(float(r[0]), int(r[1])) for r in rows if len(r) >= 4 and r[2] == "CTR"]
src = [r for r in rows if r[1] == 0]
dst = [r for r in rows if r[1] == 1]
print(int((dst[0][0] - src[-1][0]) * 1000) if src and dst else -1)
PY
}

# One migration of $1 from state dir $2; prints "downtime total ram disk gap".
migrate() {
	local vm=$1 from=$2 to out gap
	to=$(on "$from")
	: >"$T/follow"
	python3 "$top/tests/lib/serial-follow.py" "$T/follow" \
	    "$from/vms/$vm/serial.log" "$to/vms/$vm/serial.log" &
	FOLLOW=$!
	sleep 0.3
	out=$(qon "$from" --json vm migrate "$vm" "unix:$to/qmpd.sock" \
	    ${4:+--storage "$4"} --timeout 600) || die "migrate $vm: $out"
	sleep 1.5
	kill "$FOLLOW"; FOLLOW=
	gap=$(follow_gap "$T/follow")
	jq -r --arg gap "$gap" '.migration | "\(.downtime_ms) \(.total_ms) \(.ram_mb) \(.disk_mb) \($gap)"' <<<"$out"
}

pct() {	# p50 and max of the numbers on stdin
	sort -n | awk '{ v[NR] = $1 } END { printf "%d %d", v[int((NR + 1) / 2)], v[NR] }'
}

# The TCG Linux guest's rows: idle downtime, RAM sizes, --storage copy.
bench_tcg() {
	note "downtime over $N migrations of an idle 256 MiB guest (shared, no disk)"
	boot idle 256 ""
	here=$A
	: >"$T/idle"
	for i in $(seq 1 "$N"); do
		migrate idle "$here" >>"$T/idle"
		here=$(on "$here")
	done
	read -r dp50 dmax <<<"$(cut -d' ' -f1 "$T/idle" | pct)"
	read -r gp50 gmax <<<"$(cut -d' ' -f5 "$T/idle" | pct)"
	read -r tp50 tmax <<<"$(cut -d' ' -f2 "$T/idle" | pct)"
	printf 'downtime (STOP->cont) p50 %d ms max %d ms; counter gap p50 %d ms max %d ms; total p50 %d ms max %d ms (n=%d)\n' \
	    "$dp50" "$dmax" "$gp50" "$gmax" "$tp50" "$tmax" "$N"
	qon "$here" vm stop idle --force >/dev/null 2>&1
	qon "$here" vm delete idle >/dev/null 2>&1

	for ram in $RAMS; do
		boot "r$ram" "$ram" ""
		read -r d t r x g <<<"$(migrate "r$ram" "$A")"
		printf 'RAM %5d MiB: total %d ms, downtime %d ms, %d MiB sent, counter gap %d ms\n' \
		    "$ram" "$t" "$d" "$r" "$g"
		qb vm stop "r$ram" --force >/dev/null 2>&1
		qb vm delete "r$ram" >/dev/null 2>&1
	done

	for mb in $DISKS; do
		head -c $((mb << 20)) /dev/urandom >"$T/d$mb.raw"
		boot "d$mb" 256 "$T/d$mb.raw"
		read -r d t r x g <<<"$(migrate "d$mb" "$A" "" copy)"
		cmp -s "$T/d$mb.raw" "$B/disks/d$mb.raw" || note "d$mb: the copy differs"
		printf 'copy %5d MiB disk: total %d ms, downtime %d ms, %d MiB disk, %d MiB RAM\n' \
		    "$mb" "$t" "$d" "$x" "$r"
		qb vm stop "d$mb" --force >/dev/null 2>&1
		qb vm delete "d$mb" >/dev/null 2>&1
	done
}

[ -n "$TCG" ] && bench_tcg
[ -n "$BUSY" ] && bench_busy
[ -n "$LIBVIRT" ] && bench_libvirt_migrate
note "load average: $(cut -d' ' -f1-3 /proc/loadavg)"
