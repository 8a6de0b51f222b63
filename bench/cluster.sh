#!/usr/bin/env bash
# bench/cluster.sh: the cluster's figures (issue 13), on `scripts/cluster
# up 3` with its default lease (5 s) and fence delay (5 s):
#
#   - placement latency: `qdesk vm start` asked of h1 until the desktop
#     runs on the host placement picked (placement CAS, that host's
#     watch, its boot, its record), N tiny KVM desktops one after the
#     other; on 3 hosts, then on 1 (h2 and h3 drained), and against a
#     single-host qmpd's vm start of the same guest;
#   - etcd requests per start: KV calls (Range, Put, Txn, DeleteRange)
#     counted by the three members' own metrics over the starts, less
#     what the same time costs idle (each host's record every 5/3 s);
#   - failover time: kill -9 the qmpd and QEMU of the host running a
#     shared-store desktop and take its link down, until the desktop's
#     QEMU runs on another host (process tables), R rounds.
#
#   bench/cluster.sh [N [R]]       (defaults 10 and 3; root; a build)
#
# Prints one line per figure; bench/cluster-README.md keeps them.
set -u
top=$(cd "$(dirname "$0")/.." && pwd)
BUILD=${BUILD:-$top/build}
. "$top/bench/lib.sh" cluster
N=${1:-10}
R=${2:-3}
CLUSTER=$top/scripts/cluster
ENVFILE=$top/build/cluster/env
GUESTS=$BUILD/guests
[ -e "$ENVFILE" ] && die "a cluster is up in this checkout: scripts/cluster down"
trap '"$CLUSTER" down >/dev/null 2>&1; bench_cleanup' EXIT

ms() { date +%s%3N; }
# tests/lib/cluster-lib.sh's hq and runs_on, with what they need.
QDESK_BIN=$QDESK
fail() { die "$@"; }
alive() { [ -d "/proc/$1" ]; }
. "$top/tests/lib/cluster-lib.sh"
# KV calls the three members have handled so far.
etcd_kv_calls() {
	local u
	for u in ${ETCD//,/ }; do
		ip netns exec "$ETCD_NETNS" curl -s "$u/metrics"
	done | awk '/^grpc_server_handled_total/ && /etcdserverpb.KV/ &&
	    /grpc_type="unary"/ { n += $2 } END { print n + 0 }'
}
median() { sort -n | awk '{ a[NR] = $1 } END { print a[int((NR + 1) / 2)] }'; }
# Start d1..dN from h1, one after the other: per start ms on stdout.
start_all() {
	local i t
	for i in $(seq 1 "$N"); do
		t=$(ms)
		hq h1 vm start "d$i" >/dev/null || die "vm start d$i: $(hq h1 vm start "d$i" 2>&1)"
		echo $(( $(ms) - t ))
	done
}
stop_all() {
	local i
	for i in $(seq 1 "$N"); do hq h1 vm stop "d$i" --force >/dev/null; done
}

out=$("$CLUSTER" up 3 2>&1) || die "cluster up: $out"
. "$ENVFILE"
hq h1 image store add shared "$SHARED" --shared >/dev/null
for i in $(seq 1 "$N"); do
	cp "$GUESTS/boot.img" "$SHARED/d$i.img"
	hq h1 vm create "d$i" --accel kvm --disk "$SHARED/d$i.img" --memory 32 \
	    --display none >/dev/null || die "vm create d$i"
done

# Idle cost of the same span, then the starts on 3 hosts.
c0=$(etcd_kv_calls); t0=$(ms)
start_all >"$T/three"
c1=$(etcd_kv_calls); t1=$(ms)
sleep $(( (t1 - t0 + 999) / 1000 ))
c2=$(etcd_kv_calls); t2=$(ms)
idle=$(( (c2 - c1) * (t1 - t0) / (t2 - t1) ))
spread=$(for i in $(seq 1 "$N"); do runs_on "d$i"; done | sort | uniq -c | tr -s ' \n' ' ')
echo "placement on 3 hosts: vm start median $(median <"$T/three") ms, max $(sort -n "$T/three" | tail -1) ms over $N (spread:$spread)"
echo "etcd KV calls per start: $(awk -v a=$((c1 - c0)) -v b=$idle -v n=$N 'BEGIN { printf "%.1f", (a - b) / n }') ($((c1 - c0)) during the starts, $idle of them the idle rate)"
stop_all

hq h1 host drain h2 >/dev/null; hq h1 host drain h3 >/dev/null
sleep 1
start_all >"$T/one"
echo "placement on 1 host (2 drained): vm start median $(median <"$T/one") ms, max $(sort -n "$T/one" | tail -1) ms over $N"
stop_all
hq h1 host undrain h2 >/dev/null; hq h1 host undrain h3 >/dev/null

# The same guest on a single-host qmpd, for the floor.
bench_qmpd_start "$T/single"
for i in $(seq 1 "$N"); do
	cp "$GUESTS/boot.img" "$T/s$i.img"
	"$QDESK" vm create "s$i" --accel kvm --disk "$T/s$i.img" --memory 32 \
	    --display none >/dev/null || die "single vm create"
	t=$(ms); "$QDESK" vm start "s$i" >/dev/null || die "single vm start"
	echo $(( $(ms) - t ))
done >"$T/single.ms"
echo "single host (no cluster): vm start median $(median <"$T/single.ms") ms over $N"

# Failover rounds: the host of d1 dies; until d1 runs elsewhere.
sleep 2
for r in $(seq 1 "$R"); do
	hq h1 vm start d1 >/dev/null || die "start d1"
	v=$(runs_on d1)
	ns=${v}_NETNS pf=${v}_PIDFILE st=${v}_STATE conf=${v}_CONF lg=${v}_LOG
	kill -9 "$(cat "${!pf}")" "$(cat "${!st}/vms/d1/qemu.pid")"
	ip -n "${!ns}" link set eth0 down
	t=$(ms)
	for i in $(seq 1 600); do
		w=$(runs_on d1)
		[ -n "$w" ] && [ "$w" != "$v" ] && break
		sleep 0.05
	done
	[ -n "$w" ] && [ "$w" != "$v" ] || die "d1 did not fail over from $v"
	echo "failover round $r: d1 from $v to $w in $(( $(ms) - t )) ms (lease 5 s + fence delay 5 s + start)"
	ip -n "${!ns}" link set eth0 up
	setsid ip netns exec "${!ns}" "$QMPD" -f --state-dir "${!st}" \
	    --cluster "${!conf}" >>"${!lg}" 2>&1 </dev/null &
	echo $! >"${!pf}"
	for i in $(seq 1 300); do
		[ "$(hq h1 --json host list 2>/dev/null | jq -r ".hosts[] | select(.name == \"$v\") | .state")" = up ] && break
		sleep 0.1
	done
done
