#!/usr/bin/env bash
# Image store benchmarks, in one run, medians over RUNS runs:
#
#  1. Clone time against the base's size: image.clone over a 1 GiB and a
#     20 GiB base (each with data written at its start, middle and end),
#     CLONES clones of each per run through one admin connection, the two
#     bases alternating; the median call of each. The ratio 20 GiB / 1 GiB
#     should be near 1.0: a clone is O(1).
#  2. Provisioning N desktops: N vm.create --from base (a linked clone and
#     a VM definition each, all committed to LMDB) through qmpd, against N
#     `qemu-img create -f qcow2 -b base -F qcow2` processes (clones only,
#     no definitions), and against N `qdesk vm create --from` processes.
#
# usage: bench/img-clone.sh [--runs N] [--clones N] [--desktops N] [BUILD]
#   BUILD  meson build dir with qmpd/qmpd and cli/qdesk (default build/)
#
# Needs root (qmpd does) and the user qdesk-vm (scripts/setup). Everything
# runs on a private state dir under /tmp with its own qmpd, removed on
# exit. Prints a markdown table; figures go in bench/img-README.md.
set -u

top=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
RUNS=5
CLONES=200
DESKTOPS=100
BUILD=
while [ $# -gt 0 ]; do
	case $1 in
	--runs)		RUNS=$2; shift ;;
	--clones)	CLONES=$2; shift ;;
	--desktops)	DESKTOPS=$2; shift ;;
	-h|--help)	sed -n '2,18p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
	-*)		echo "img-clone: unknown option $1" >&2; exit 2 ;;
	*)		BUILD=$1 ;;
	esac
	shift
done
BUILD=$(cd "${BUILD:-$top/build}" && pwd) || exit 2
. "$top/bench/lib.sh" img-clone
id qdesk-vm >/dev/null 2>&1 || die "no user qdesk-vm: run scripts/setup"
command -v qemu-img >/dev/null || die "no qemu-img"

bench_qmpd_start "$T/state"

# Two bases, not empty: 64 MiB written at the start, middle and end.
for g in 1 20; do
	qemu-img create -q -f qcow2 "$T/base$g.qcow2" "${g}G"
	for off in 0 $((g * 512 - 64)) $((g * 1024 - 64)); do
		qemu-io -f qcow2 -c "write -q -P 0x5a ${off}M 64M" \
		    "$T/base$g.qcow2" || die "qemu-io"
	done
	"$QDESK" image import "base$g" "$T/base$g.qcow2" >/dev/null ||
		die "import base$g"
	rm -f "$T/base$g.qcow2"
done
BASEFILE=$STATE/images/$("$QDESK" --json image show base1 | jq -r .file)

# The timing client: one admin connection, requests one after another.
cat > "$T/drive.py" <<'PY'
import json, socket, sys, time

sock, mode, n, arg, run = sys.argv[1], sys.argv[2], int(sys.argv[3]), \
    sys.argv[4], sys.argv[5]
s = socket.socket(socket.AF_UNIX)
s.connect(sock)
f = s.makefile("rwb")
f.readline()
rid = 0

def call(cmd, args):
    global rid
    rid += 1
    f.write(json.dumps({"id": rid, "cmd": cmd, "args": args}).encode() +
        b"\n")
    f.flush()
    while True:
        m = json.loads(f.readline())
        if m.get("id") == rid and "progress" not in m:
            break
    if "return" not in m:
        sys.exit("%s: %s" % (cmd, m))
    return m["return"]

if mode == "clone":
    # Alternate the two bases call by call, so that load on this machine
    # falls on both alike; per-call medians.
    bases = arg.split(",")
    times = {b: [] for b in bases}
    names = []
    for i in range(n):
        for b in bases:
            nm = "c%s-%s-%d" % (run, b, i)
            t0 = time.perf_counter()
            call("image.clone", {"parent": b, "name": nm})
            times[b].append(time.perf_counter() - t0)
            names.append(nm)
    for nm in names:
        call("image.rm", {"name": nm})
    med = lambda v: sorted(v)[len(v) // 2]
    print(" ".join("%.1f" % (med(times[b]) * 1e6) for b in bases))
    sys.exit(0)
elif mode == "vms":
    names = ["d%s-%d" % (run, i) for i in range(n)]
    t0 = time.perf_counter()
    for nm in names:
        call("vm.create", {"name": nm, "from": arg, "display": "none"})
    t = time.perf_counter() - t0
    for nm in names:
        call("vm.delete", {"name": nm})
print("%.1f" % (t * 1e6 / n))
PY

# median of numbers
median() { printf '%s\n' "$@" | sort -g | awk '{ a[NR] = $1 } END {
	print (NR % 2) ? a[(NR + 1) / 2] : (a[NR / 2] + a[NR / 2 + 1]) / 2 }'; }

# Microseconds per process for N runs of a command line, argument i.
per_process() {
	local n=$1 t0 t1 i
	shift
	t0=$(date +%s%N)
	for i in $(seq 1 "$n"); do
		"$@" "$i" >/dev/null 2>&1 || die "$* $i failed"
	done
	t1=$(date +%s%N)
	echo $(( (t1 - t0) / 1000 / n ))
}
qemu_img_clone() {
	qemu-img create -q -f qcow2 -b "$BASEFILE" -F qcow2 "$T/qi/c$1.qcow2"
}
cli_vm_create() {
	"$QDESK" vm create "p$RUN-$1" --from base1 --display none
}

c1=() c20=() api=() qi=() cli=()
for RUN in $(seq 1 "$RUNS"); do
	pair=$(python3 "$T/drive.py" "$QDESK_SOCKET" clone "$CLONES" \
	    base1,base20 "$RUN") || die "clone run"
	c1+=("${pair% *}")
	c20+=("${pair#* }")
	api+=("$(python3 "$T/drive.py" "$QDESK_SOCKET" vms "$DESKTOPS" base1 "$RUN")") ||
		die "vm run"
	mkdir -p "$T/qi"
	sync
	qi+=("$(per_process "$DESKTOPS" qemu_img_clone)")
	rm -rf "$T/qi"
	cli+=("$(per_process "$DESKTOPS" cli_vm_create)")
	for i in $(seq 1 "$DESKTOPS"); do
		"$QDESK" vm delete "p$RUN-$i" >/dev/null || die "vm delete"
	done
	note "run $RUN: clone 1G ${c1[-1]} us, 20G ${c20[-1]} us; desktops:" \
	    "api ${api[-1]} us, qemu-img ${qi[-1]} us, cli ${cli[-1]} us"
done

# Ratios within each run (the same load on both sides), then their median.
rr() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.3f", a / b }'; }
rsize=() rapi=() rcli=()
for i in $(seq 0 $((RUNS - 1))); do
	rsize+=("$(rr "${c20[$i]}" "${c1[$i]}")")
	rapi+=("$(rr "${qi[$i]}" "${api[$i]}")")
	rcli+=("$(rr "${qi[$i]}" "${cli[$i]}")")
done
m1=$(median "${c1[@]}")
m20=$(median "${c20[@]}")
ma=$(median "${api[@]}")
mq=$(median "${qi[@]}")
mc=$(median "${cli[@]}")
r() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.2f", a / b }'; }
ms() { awk -v a="$1" 'BEGIN { printf "%.2f", a / 1000 }'; }

echo "| measure (median of $RUNS runs) | per item | ratio (median of per-run ratios) |"
echo "|---|---|---|"
echo "| image.clone over a 1 GiB base (median call of $CLONES) | $(ms "$m1") ms | 1.00 |"
echo "| image.clone over a 20 GiB base (median call of $CLONES) | $(ms "$m20") ms | $(median "${rsize[@]}") (20 GiB / 1 GiB) |"
echo "| $DESKTOPS x vm.create --from, one connection (clone + definition) | $(ms "$ma") ms | $(median "${rapi[@]}")x faster than qemu-img |"
echo "| $DESKTOPS x qemu-img create -b (clone only, a process each) | $(ms "$mq") ms | 1.00 |"
echo "| $DESKTOPS x qdesk vm create --from (a CLI process each) | $(ms "$mc") ms | $(median "${rcli[@]}")x faster than qemu-img |"
