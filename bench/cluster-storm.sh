#!/usr/bin/env bash
# bench/cluster-storm.sh: a login storm on the cluster (issue 13). N tiny
# KVM desktops (boot-sector guests, 32 MiB, linked clones of one template)
# asked to start at once, the requests spread over the hosts as a broker
# would send them (`qdesk vm start` from each host in turn, as
# bench/cluster.sh asks them: its cluster has no portal users yet), on
# `scripts/cluster up 3`:
#
#   - first on 3 hosts, then on 1 (h2 and h3 drained): per desktop the
#     time from the storm's start until its `vm start` answered running
#     (p50, p95, max) and until all ran (total);
#   - etcd KV calls per start, counted by the members' own metrics less
#     the idle rate of the same span (as bench/cluster.sh does);
#   - the template is imported on h1 only: before the storm one desktop
#     pinned to h2 and one to h3 make them fetch it (the copy's time, from
#     their logs), so the storm itself measures placement and boots.
#
#   bench/cluster-storm.sh [N]        (default 60; root; a build)
#
# The lease is LEASE s (default 15, not the cluster's 5): on this 2-core
# machine a storm of 60 starved etcd long enough that a host lost its
# 5 s lease and fenced its desktops mid-storm (see cluster-README.md).
set -u
top=$(cd "$(dirname "$0")/.." && pwd)
BUILD=${BUILD:-$top/build}
. "$top/bench/lib.sh" cluster-storm
N=${1:-60}
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
# KV calls the three members have handled so far (bench/cluster.sh's).
etcd_kv_calls() {
	local u
	for u in ${ETCD//,/ }; do
		ip netns exec "$ETCD_NETNS" curl -s "$u/metrics"
	done | awk '/^grpc_server_handled_total/ && /etcdserverpb.KV/ &&
	    /grpc_type="unary"/ { n += $2 } END { print n + 0 }'
}
# p50 p95 max of the numbers on stdin.
pct() {
	sort -n | awk '{ a[NR] = $1 } END {
	    i = int((NR * 50 + 99) / 100); j = int((NR * 95 + 99) / 100);
	    printf "p50 %d ms, p95 %d ms, max %d ms", a[i], a[j], a[NR] }'
}

# All N at once, request i to host i mod the hosts given: per desktop the
# ms from the storm's start to its answer, in $T/$1.ms; spread in $T/$1.on.
storm() {
	local tag=$1 i t0 h
	shift
	local -a via=("$@")
	t0=$(ms)
	for i in $(seq 1 "$N"); do
		h=${via[$(( i % ${#via[@]} ))]}
		( out=$(hq "$h" vm start "s$i" 2>&1)
		  [ "$out" = "s$i: running" ] || echo "s$i via $h: $out" >>"$T/$tag.err"
		  echo $(( $(ms) - t0 )) >>"$T/$tag.ms" ) &
	done
	wait
	[ -s "$T/$tag.err" ] && die "starts failed: $(head -3 "$T/$tag.err")"
	for i in $(seq 1 "$N"); do runs_on "s$i"; done | sort | uniq -c |
	    awk '{ printf " %s=%s", $2, $1 }' >"$T/$tag.on"
}
stop_all() {
	local i
	for i in $(seq 1 "$N"); do hq h1 vm stop "s$i" --force >/dev/null & done
	wait
}

out=$(QDESK_LEASE_TTL=${LEASE:-15} "$CLUSTER" up 3 2>&1) || die "cluster up: $out"
# shellcheck disable=SC1090
. "$ENVFILE"
hq h1 image import stormtpl "$GUESTS/boot.img" >/dev/null || die "import"
for i in $(seq 1 100); do
	grep -q "cluster: template stormtpl published" "$h1_LOG" && break
	sleep 0.1
done
grep -q "cluster: template stormtpl published" "$h1_LOG" || die "never published"
# h2 and h3 fetch the template, at once.
for h in h2 h3; do
	hq h1 vm create "w$h" --from stormtpl --accel kvm --memory 32 \
	    --display none --host "$h" >/dev/null || die "vm create w$h"
	hq h1 vm start "w$h" >/dev/null &
done
wait
for h in h2 h3; do
	lg=${h}_LOG
	echo "template fetch on $h: $(sed -n 's/.*template stormtpl fetched from host h1: \([0-9]*\) bytes.* in \([0-9]*\) ms/\1 bytes in \2 ms/p' "${!lg}")"
	hq h1 vm stop "w$h" --force >/dev/null
done
for i in $(seq 1 "$N"); do
	hq h1 vm create "s$i" --from stormtpl --accel kvm --memory 32 \
	    --display none >/dev/null || die "vm create s$i"
done

c0=$(etcd_kv_calls); t0=$(ms)
storm three h1 h2 h3
c1=$(etcd_kv_calls); t1=$(ms)
sleep $(( (t1 - t0 + 999) / 1000 ))
c2=$(etcd_kv_calls); t2=$(ms)
idle=$(( (c2 - c1) * (t1 - t0) / (t2 - t1) ))
echo "storm of $N on 3 hosts: all running in $(sort -n "$T/three.ms" | tail -1) ms; per desktop $(pct <"$T/three.ms") (spread:$(cat "$T/three.on"))"
echo "  etcd KV calls per start: $(awk -v a=$((c1 - c0)) -v b=$idle -v n="$N" 'BEGIN { printf "%.1f", (a - b) / n }') ($((c1 - c0)) during the storm, $idle of them the idle rate)"
stop_all

hq h1 host drain h2 >/dev/null; hq h1 host drain h3 >/dev/null
sleep 2
c0=$(etcd_kv_calls); t0=$(ms)
storm one h1 h2 h3
c1=$(etcd_kv_calls); t1=$(ms)
sleep $(( (t1 - t0 + 999) / 1000 ))
c2=$(etcd_kv_calls); t2=$(ms)
idle=$(( (c2 - c1) * (t1 - t0) / (t2 - t1) ))
echo "storm of $N on 1 host (h2, h3 drained): all running in $(sort -n "$T/one.ms" | tail -1) ms; per desktop $(pct <"$T/one.ms") (spread:$(cat "$T/one.on"))"
echo "  etcd KV calls per start: $(awk -v a=$((c1 - c0)) -v b=$idle -v n="$N" 'BEGIN { printf "%.1f", (a - b) / n }') ($((c1 - c0)) during the storm, $idle of them the idle rate)"
stop_all
