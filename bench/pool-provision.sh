#!/usr/bin/env bash
# Pool provisioning: one `qdesk pool create` of N desktops (default 50)
# through qmpd — N linked clones of the template and N VM definitions,
# each committed to LMDB, no boot — total and per desktop; then the same
# pool grown by N more (pool resize), and removed (pool rm, clones and
# definitions). Median over RUNS runs, each on a fresh qmpd and state dir.
# The template is the Linux test image, build/guests/rootfs.qcow2.
#
# usage: bench/pool-provision.sh [--runs N] [--desktops N] [BUILD]
#
# Needs root and the user qdesk-vm. Private state dir under /tmp, its own
# qmpd, removed on exit. Figures in bench/pool-README.md.
set -u

top=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
RUNS=3
N=50
BUILD=
while [ $# -gt 0 ]; do
	case $1 in
	--runs)		RUNS=$2; shift ;;
	--desktops)	N=$2; shift ;;
	-h|--help)	sed -n '2,12p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
	-*)		echo "pool-provision: unknown option $1" >&2; exit 2 ;;
	*)		BUILD=$1 ;;
	esac
	shift
done
BUILD=$(cd "${BUILD:-$top/build}" && pwd) || exit 2
BASE=$top/build/guests/rootfs.qcow2
. "$top/bench/lib.sh" pool-provision
[ -r "$BASE" ] || die "no $BASE (scripts/build-guests)"

now() { date +%s.%N; }
: >"$T/res"
for r in $(seq 1 "$RUNS"); do
	bench_qmpd_start "$T/state-$r"
	"$QDESK" image import base "$BASE" --format qcow2 >/dev/null ||
		die "import failed"
	t0=$(now)
	"$QDESK" pool create p --template base --size "$N" --accel tcg \
	    --memory 256 --display spice >/dev/null || die "pool create failed"
	t1=$(now)
	"$QDESK" pool resize p $((2 * N)) >/dev/null || die "pool resize failed"
	t2=$(now)
	[ "$("$QDESK" --json pool show p | jq .count)" = $((2 * N)) ] ||
		die "the pool does not have $((2 * N)) desktops"
	"$QDESK" pool rm p >/dev/null || die "pool rm failed"
	for i in $(seq 1 200); do
		[ "$("$QDESK" --json vm list | jq '.vms | length')" = 0 ] && break
		sleep 0.05
	done
	t3=$(now)
	echo "$t0 $t1 $t2 $t3" >>"$T/res"
	bench_qmpd_stop
done
python3 - "$N" "$T/res" <<'PY'
import statistics, sys
n = int(sys.argv[1])
rows = [[float(x) for x in l.split()] for l in open(sys.argv[2])]
c = statistics.median(r[1] - r[0] for r in rows)
g = statistics.median(r[2] - r[1] for r in rows)
d = statistics.median(r[3] - r[2] for r in rows)
print("| step | total (s) | per desktop (ms) |")
print("|---|---|---|")
print("| pool create, %d desktops | %.3f | %.1f |" % (n, c, 1000 * c / n))
print("| pool resize %d -> %d | %.3f | %.1f |" % (n, 2 * n, g, 1000 * g / n))
print("| pool rm, %d desktops (until vm list is empty) | %.3f | %.1f |" %
    (2 * n, d, 1000 * d / (2 * n)))
PY
