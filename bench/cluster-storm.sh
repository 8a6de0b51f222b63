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
#     their logs), so the storm itself measures placement and boots;
#   - then a portal-login storm, on 3 hosts and on 1 (h2, h3 drained): N
#     users of a floating stateless pool of N (one pool per row, its
#     department theirs) log in through the broker's portal at once, each
#     from an address of its own (the broker's login throttle counts per
#     address), list their desktops (the pool hands one out and starts
#     it) and ask for its console: per user the time from the storm's
#     start until they hold a running desktop and a console ticket.
#
#   bench/cluster-storm.sh [N]        (default 60; root; a build)
#   ROWS=portal bench/cluster-storm.sh [N]   (the portal rows only)
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

# One user's portal session, from source address $2: login, the desktop
# list (the floating pool hands one out and starts it), its console
# ticket. Appends the ms since $3 to $T/$4.ms, the desktop to $T/$4.desk,
# or a line to $T/$4.err.
portal_user() {
	local u=$1 src=$2 t0=$3 tag=$4 code d
	local -a c=(ip netns exec "$ETCD_NETNS" curl -sSk --max-time 300
	    --interface "$src" -b "$T/jar-$u" -c "$T/jar-$u" -o "$T/$u.body"
	    -w '%{http_code}' --stderr "$T/$u.curl")
	local -a post=(-X POST -H 'X-Qdesk: 1' -H 'Content-Type: application/json')
	code=$("${c[@]}" "${post[@]}" --data "{\"user\":\"$u\",\"password\":\"pw-$u-secret\"}" "$PORTAL/api/login")
	[ "$code" = 200 ] || { echo "$u login: $code $(cat "$T/$u.body" "$T/$u.curl")" >>"$T/$tag.err"; return; }
	code=$("${c[@]}" "$PORTAL/api/desktops")
	d=$(jq -r '.[0] | select(.state == "running") | .name' "$T/$u.body" 2>/dev/null)
	[ "$code" = 200 ] && [ -n "$d" ] ||
		{ echo "$u desktops: $code $(cat "$T/$u.body" "$T/$u.curl")" >>"$T/$tag.err"; return; }
	code=$("${c[@]}" "${post[@]}" --data '{}' "$PORTAL/api/desktops/$d/console")
	[ "$code" = 200 ] && jq -e '.password and .port' "$T/$u.body" >/dev/null 2>&1 ||
		{ echo "$u console of $d: $code $(cat "$T/$u.body" "$T/$u.curl")" >>"$T/$tag.err"; return; }
	echo $(( $(ms) - t0 )) >>"$T/$tag.ms"
	echo "$d" >>"$T/$tag.desk"
}
# The portal storm $1: pool $1 of N (floating, stateless, department $1),
# its N users, all logging in at once; the spread in $T/$1.on.
portal_storm() {
	local tag=$1 i t0
	hq h1 dept add "$tag" >/dev/null || die "dept add $tag"
	for i in $(seq 1 "$N"); do
		echo "pw-$tag-u$i-secret" | hq h1 user add "$tag-u$i" --dept "$tag" \
		    --password-stdin >/dev/null || die "user add $tag-u$i"
	done
	hq h1 pool create "$tag" --template stormtpl --size "$N" --mode floating \
	    --stateless --dept "$tag" --accel kvm --memory 32 --display spice \
	    --listen 0.0.0.0 >/dev/null || die "pool create $tag"
	cluster_wait_user "$tag-u$N"
	PC0=$(etcd_kv_calls)
	t0=$(ms)
	for i in $(seq 1 "$N"); do
		portal_user "$tag-u$i" "10.250.$(( i / 200 )).$(( i % 200 + 1 ))" "$t0" "$tag" &
	done
	wait
	PC1=$(etcd_kv_calls)
	if [ -s "$T/$tag.err" ]; then
		grep -h -e "$tag-u" "$(dirname "$BROKER_STATE")/broker.log" | grep -v "logged in" | tail -n 5 >&2
		die "portal storm $tag: $(wc -l <"$T/$tag.err") user(s) failed: $(head -3 "$T/$tag.err")"
	fi
	while read -r d; do runs_on "$d"; done <"$T/$tag.desk" | sort | uniq -c |
	    awk '{ printf " %s=%s", $2, $1 }' >"$T/$tag.on"
}
# Every user of pool $1 logs out: the desktops go back (stopped, reset).
portal_logout() {
	local i
	for i in $(seq 1 "$N"); do
		ip netns exec "$ETCD_NETNS" curl -sk --max-time 60 -o /dev/null \
		    -b "$T/jar-$1-u$i" -X POST -H 'X-Qdesk: 1' "$PORTAL/api/logout" &
	done
	wait
	for i in $(seq 1 1200); do
		[ "$(hq h1 --json pool show "$1" | jq .running)" = 0 ] && return 0
		sleep 0.1
	done
	die "pool $1 still runs desktops 120 s after its users logged out"
}
portal_rows() {
	local i
	# A source address per user (their own, as an office's PCs have).
	for i in $(seq 1 "$N"); do
		ip -n "$ETCD_NETNS" addr add "10.250.$(( i / 200 )).$(( i % 200 + 1 ))/32" dev lo ||
			die "cannot add a client address"
	done
	hq h1 host undrain h2 >/dev/null; hq h1 host undrain h3 >/dev/null
	sleep 2
	portal_storm pt3
	echo "portal login storm of $N users on 3 hosts (floating stateless pool): every user with a running desktop and a console ticket in $(sort -n "$T/pt3.ms" | tail -1) ms; per user $(pct <"$T/pt3.ms") (spread:$(cat "$T/pt3.on")); etcd KV calls per login $(awk -v a=$((PC1 - PC0)) -v n="$N" 'BEGIN { printf "%.1f", a / n }') (the idle rate included)"
	portal_logout pt3
	hq h1 host drain h2 >/dev/null; hq h1 host drain h3 >/dev/null
	sleep 2
	portal_storm pt1
	echo "portal login storm of $N users on 1 host (h2, h3 drained): every user with a running desktop and a console ticket in $(sort -n "$T/pt1.ms" | tail -1) ms; per user $(pct <"$T/pt1.ms") (spread:$(cat "$T/pt1.on")); etcd KV calls per login $(awk -v a=$((PC1 - PC0)) -v n="$N" 'BEGIN { printf "%.1f", a / n }') (the idle rate included)"
	portal_logout pt1
}
if [ "${ROWS:-}" = portal ]; then
	portal_rows
	exit 0
fi

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

portal_rows
