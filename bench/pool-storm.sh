#!/usr/bin/env bash
# Boot storm: N tiny boot-sector desktops (KVM) of a floating pool asked
# for at once — N users' desktop.acquire pipelined on one broker-role
# connection, as a Monday-morning login storm reaches qmpd — with qmpd's
# --boot-cap at 2, 4 and 0 (no cap). Figures: the time from the first
# request until the last desktop is running (every acquire answered),
# the median acquire, and the most VMs "starting" at once, counted from
# qmpd's own vm.state events. Median over RUNS runs, each on a fresh qmpd.
#
# usage: bench/pool-storm.sh [--runs N] [--desktops N] [--caps "2 4 0"] [BUILD]
#
# Needs root and the user qdesk-vm. Private state dir under /tmp, its own
# qmpd and QEMUs, all ended by pid on exit. Figures in bench/pool-README.md.
set -u

top=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
RUNS=3
N=10
CAPS="2 4 0"
BUILD=
while [ $# -gt 0 ]; do
	case $1 in
	--runs)		RUNS=$2; shift ;;
	--desktops)	N=$2; shift ;;
	--caps)		CAPS=$2; shift ;;
	-h|--help)	sed -n '2,14p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
	-*)		echo "pool-storm: unknown option $1" >&2; exit 2 ;;
	*)		BUILD=$1 ;;
	esac
	shift
done
BUILD=$(cd "${BUILD:-$top/build}" && pwd) || exit 2
. "$top/bench/lib.sh" pool-storm
[ -r /dev/kvm ] || die "no /dev/kvm"

# One storm on a fresh qmpd with boot cap $1: prints "total median max".
storm() {
	bench_qmpd_start "$T/state-$1-$2" --boot-cap "$1"
	"$QDESK" image import tiny "$top/build/guests/boot.img" --format raw >/dev/null ||
		die "import failed"
	"$QDESK" pool create storm --template tiny --size "$N" --accel kvm \
	    --memory 32 --display none >/dev/null || die "pool create failed"
	for i in $(seq 1 "$N"); do
		echo "pw-u$i" | "$QDESK" user add "u$i" --password-stdin >/dev/null
	done
	python3 - "$QDESK_SOCKET" "$N" <<'PY'
import json, socket, sys, time, threading
path, n = sys.argv[1], int(sys.argv[2])
def conn():
    s = socket.socket(socket.AF_UNIX); s.connect(path)
    f = s.makefile("rw"); f.readline(); return f
ev = conn()
ev.write(json.dumps({"id": 0, "cmd": "events.subscribe", "args": {}}) + "\n"); ev.flush()
ev.readline()
starting, peak, done = set(), [0], threading.Event()
def watch():
    for line in ev:
        e = json.loads(line)
        if e.get("event") != "vm.state":
            continue
        if e["state"] == "starting":
            starting.add(e["vm"])
        else:
            starting.discard(e["vm"])
        peak[0] = max(peak[0], len(starting))
threading.Thread(target=watch, daemon=True).start()
f = conn()
t0 = time.monotonic()
for i in range(n):
    f.write(json.dumps({"id": i, "cmd": "desktop.acquire",
        "args": {"login": "u%d" % (i + 1)}}) + "\n")
f.flush()
times = []
for i in range(n):
    r = json.loads(f.readline())
    if "error" in r or r["return"]["state"] != "running":
        sys.exit("acquire failed: %s" % r)
    times.append(time.monotonic() - t0)
time.sleep(0.2)
times.sort()
print("%.3f %.3f %d" % (times[-1], times[len(times) // 2], peak[0]))
PY
	bench_qmpd_stop
}

echo "| boot cap | all $N running (s) | median acquire (s) | most starting at once |"
echo "|---|---|---|---|"
for cap in $CAPS; do
	: >"$T/res"
	for r in $(seq 1 "$RUNS"); do
		storm "$cap" "$r" >>"$T/res" || die "storm with cap $cap failed"
	done
	label=$cap
	[ "$cap" = 0 ] && label=none
	python3 - "$label" "$T/res" <<'PY'
import statistics, sys
rows = [l.split() for l in open(sys.argv[2]) if l.strip()]
tot = statistics.median(float(r[0]) for r in rows)
med = statistics.median(float(r[1]) for r in rows)
print("| %s | %.2f | %.2f | %d |" % (sys.argv[1], tot, med,
    max(int(r[2]) for r in rows)))
PY
done
