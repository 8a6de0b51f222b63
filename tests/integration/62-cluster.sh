#!/usr/bin/env bash
# test: idle  (two hosts with tiny KVM desktops, no TCG: its time is leases and fence delays waited out, 8 s of CPU in 20 s)
# scripts/cluster, the one-machine cluster: `up 3` writes build/cluster/env
# with every host's namespace, state dir, socket and address, etcd's
# endpoints and the shared directory; each host's qmpd runs in its own
# namespace and answers there; etcd answers from inside every host's
# namespace and the hosts reach each other over the cluster bridge, while
# the host's own network has none of it; `status` shows every host; a
# second `up` is refused; a cluster of another name (`--name`) comes up
# beside it with namespaces, etcd and files of its own, and goes down
# leaving the first untouched; `down` leaves no namespace, process,
# bridge or file behind; and an `up` that fails half-way takes itself
# down. This test alone uses the checkout's default (unnamed) cluster.
. "$(dirname "$0")/lib.sh"

[ "$(id -u)" = 0 ] || skip "needs root (network namespaces)"
CLUSTER=$top/scripts/cluster
# QDESK_ETCD_DRIVE runs another build of it (e.g. with ASan).
DRIVE=${QDESK_ETCD_DRIVE:-$top/build/cluster/etcd-drive}
ENVFILE=$top/build/cluster/env
RUN=$top/build/cluster/run
# The checkout's default cluster: two runs of this test take turns (the
# other cluster tests each have a named one). Its qmpds on this test's VM
# uid range (lib.sh).
unset QDESK_CLUSTER
test_lock cluster-default
OTHER=62-$$
QDESK_QMPD=$(qmpd_uids_wrap "${QDESK_QMPD:-$top/build/qmpd/qmpd}")
export QDESK_QMPD
[ -e "$ENVFILE" ] && fail "a cluster is already up in this checkout: scripts/cluster down"
EXTRA_CLEANUP='"$CLUSTER" down >/dev/null 2>&1; "$CLUSTER" --name "$OTHER" down >/dev/null 2>&1'

# Nothing of ours: no namespace named, no process naming the run dir.
assert_gone() {
	local ns
	for ns in "$@"; do
		ip netns list | awk '{print $1}' | grep -qx "$ns" &&
			fail "$1: namespace $ns is still there"
	done
	pgrep -f "$RUN/" >/dev/null &&
		fail "processes of the cluster left: $(pgrep -af "$RUN/")"
	[ -e "$ENVFILE" ] && fail "build/cluster/env is still there"
	[ -e "$RUN" ] && fail "build/cluster/run is still there"
	ip link show qdcbr0 >/dev/null 2>&1 && fail "a cluster bridge on the host"
	return 0
}

out=$("$CLUSTER" up 3 2>&1) || fail "cluster up 3: $out"
[ -f "$ENVFILE" ] || fail "no build/cluster/env"
echo "$out" | grep -qF ". $ENVFILE" || fail "up does not say how to use it: $out"
# shellcheck disable=SC1090
. "$ENVFILE"
[ "$HOSTS" = "h1 h2 h3" ] || fail "HOSTS=$HOSTS"
[ -d "$SHARED" ] || fail "SHARED=$SHARED is not a directory"
[ "$(echo "$ETCD" | tr ',' '\n' | grep -c '^http://')" = 3 ] ||
	fail "ETCD=$ETCD is not three endpoints"
all_ns=("$ETCD_NETNS")
addrs=
for h in $HOSTS; do
	ns=${h}_NETNS state=${h}_STATE sock=${h}_SOCKET addr=${h}_ADDR
	ns=${!ns} state=${!state} sock=${!sock} addr=${!addr}
	[ -n "$ns" ] && [ -n "$state" ] && [ -n "$sock" ] && [ -n "$addr" ] ||
		fail "$h: a variable is missing from env"
	all_ns+=("$ns")
	addrs="$addrs $addr"
	# Its qmpd answers in its namespace, on its own state dir...
	got=$(ip netns exec "$ns" "$QDESK_BIN" --socket "$sock" --json status) ||
		fail "$h: qmpd does not answer: $got"
	[ "$(echo "$got" | jq -r .state_dir)" = "$state" ] ||
		fail "$h: qmpd runs on $(echo "$got" | jq -r .state_dir), not $state"
	# ... and runs in that namespace.
	pid=$(echo "$got" | jq -r .pid)
	[ "$(ip netns identify "$pid")" = "$ns" ] ||
		fail "$h: qmpd $pid is in namespace '$(ip netns identify "$pid")', not $ns"
	ip -n "$ns" -o addr show dev eth0 | grep -q "inet $addr/" ||
		fail "$h: eth0 has no $addr"
	# etcd answers from inside it, and sees what the others wrote.
	out=$(ip netns exec "$ns" "$DRIVE" -e "$ETCD" -t 3000 put "hosts/$h" "$addr") ||
		fail "$h: etcd put from its namespace: $out"
done
for h in $HOSTS; do
	ns=${h}_NETNS
	out=$(ip netns exec "${!ns}" "$DRIVE" -e "$ETCD" get -p hosts/) ||
		fail "$h: etcd range from its namespace: $out"
	[ "$(echo "$out" | tail -n 1)" = "count 3" ] || fail "$h sees: $out"
done
[ "$(echo "$addrs" | tr ' ' '\n' | grep . | sort -u | wc -l)" = 3 ] ||
	fail "host addresses are not distinct:$addrs"
# The hosts reach each other over the cluster bridge.
ip netns exec "$h3_NETNS" timeout 10 socat -T 5 \
    "TCP-LISTEN:7000,bind=$h3_ADDR,reuseaddr" SYSTEM:"echo hello-from-h3" &
listener=$!
for i in $(seq 1 50); do
	out=$(ip netns exec "$h1_NETNS" socat -T 2 - "TCP:$h3_ADDR:7000" \
	    </dev/null 2>&1) && break
	sleep 0.1
done
kill "$listener" 2>/dev/null
wait "$listener" 2>/dev/null
[ "$out" = hello-from-h3 ] || fail "h1 cannot reach h3 ($h3_ADDR): $out"
# The host's own network has none of it.
subnet=${h1_ADDR%.*}
ip -o addr | grep -q " $subnet\." && fail "an address of $subnet.0/24 on the host"
log "up 3: env, qmpds, etcd from each namespace: ok"

# The cluster CA, a certificate per host, and the broker with its portal.
[ -f "$CA/ca.pem" ] && [ -f "$ADMIN_CERT/cert.pem" ] || fail "no CA or admin cert: CA=$CA"
for h in $HOSTS; do
	c=${h}_CERT
	openssl x509 -in "${!c}/cert.pem" -noout -subject | grep -q "CN = host:$h" ||
		fail "$h: no host certificate in ${!c}"
done
code=$(ip netns exec "$ETCD_NETNS" curl -sk -o /dev/null -w '%{http_code}' "$PORTAL/") ||
	fail "the portal $PORTAL does not answer"
[ "$code" = 200 ] || fail "the portal $PORTAL answered $code"
[ -d "$BROKER_STATE" ] || fail "BROKER_STATE=$BROKER_STATE"
log "up 3: cluster CA, host certificates, the broker's portal: ok"

out=$("$CLUSTER" status 2>&1) || fail "cluster status: $out"
for h in $HOSTS; do
	echo "$out" | grep -q "^== $h " || fail "status does not show $h: $out"
done
[ "$(echo "$out" | grep -c '^state_dir:')" = 3 ] || fail "status: $out"
[ "$(echo "$out" | grep -c 'is healthy')" = 3 ] || fail "status, etcd: $out"
# ... and `qdesk host list`: every host, up, with its address.
hl=$(echo "$out" | sed -n '/^== hosts, as h1 sees them/,/^== etcd/p')
for h in $HOSTS; do
	addr=${h}_ADDR
	echo "$hl" | grep -Eq "^$h +${!addr} +up " ||
		fail "status's host list has no '$h ${!addr} up' line: $hl"
done

out=$("$CLUSTER" up 2 2>&1) && fail "a second up was accepted: $out"
echo "$out" | grep -q "already up" || fail "a second up: $out"

# A cluster of another name, beside it: its own namespaces, etcd, files.
out=$("$CLUSTER" up 1 --name "$OTHER" 2>&1) || fail "cluster up 1 --name $OTHER: $out"
oenv=$top/build/clusters/$OTHER/env
[ -f "$oenv" ] || fail "no build/clusters/$OTHER/env"
o_etcd_ns=$(. "$oenv" && echo "$ETCD_NETNS") o_h1_ns=$(. "$oenv" && echo "$h1_NETNS")
o_h1_sock=$(. "$oenv" && echo "$h1_SOCKET") o_etcd=$(. "$oenv" && echo "$ETCD")
o_run=$(. "$oenv" && echo "$RUN_DIR")
[ "$o_run" = "$top/build/clusters/$OTHER/run" ] || fail "$OTHER: RUN_DIR=$o_run"
for ns in "${all_ns[@]}"; do
	[ "$ns" = "$o_etcd_ns" ] || [ "$ns" = "$o_h1_ns" ] &&
		fail "$OTHER shares namespace $ns with the default cluster"
done
ip netns exec "$o_h1_ns" "$QDESK_BIN" --socket "$o_h1_sock" status >/dev/null ||
	fail "$OTHER: h1's qmpd does not answer"
# Its etcd is its own: none of the default cluster's keys.
out=$(ip netns exec "$o_h1_ns" "$DRIVE" -e "$o_etcd" get -p hosts/h) ||
	fail "$OTHER: etcd range: $out"
echo "$out" | grep -q "^hosts/h[23]" && fail "$OTHER's etcd has the default cluster's keys: $out"
out=$(QDESK_CLUSTER=$OTHER "$CLUSTER" status 2>&1) || fail "status of $OTHER: $out"
[ "$(echo "$out" | grep -c '^state_dir:')" = 1 ] || fail "status of $OTHER: $out"
out=$("$CLUSTER" --name "$OTHER" up 1 2>&1) && fail "a second up of $OTHER was accepted"
echo "$out" | grep -q "named $OTHER is already up" || fail "a second up of $OTHER: $out"
out=$("$CLUSTER" down --name "$OTHER" 2>&1) || fail "down of $OTHER: $out"
ip netns list | awk '{print $1}' | grep -qx "$o_h1_ns" && fail "$OTHER: $o_h1_ns left"
[ -e "$top/build/clusters/$OTHER" ] && fail "build/clusters/$OTHER left"
pgrep -f "$o_run/" >/dev/null && fail "processes of $OTHER left: $(pgrep -af "$o_run/")"
# The default one did not notice.
ip netns exec "$h1_NETNS" "$QDESK_BIN" --socket "$h1_SOCKET" status >/dev/null ||
	fail "h1 of the default cluster stopped answering after $OTHER went down"
out=$("$CLUSTER" status 2>&1) || fail "status after $OTHER went down: $out"
out=$("$CLUSTER" --name 'Bad/name' status 2>&1); [ $? = 2 ] || fail "a bad name: $out"
log "a named cluster beside the default one, and down without touching it: ok"

# down after a failure: a desktop runs on h2 and h2's qmpd is killed
# (-9), so its QEMU and its fencing watchdog are left without their
# qmpd; down ends them too, by their pid files, before the watchdog's
# deadline would have.
accel=tcg
[ -r /dev/kvm ] && accel=kvm
cp "$GUESTS/boot.img" "$SHARED/d.img"
q_h() { local ns=${1}_NETNS sock=${1}_SOCKET; shift; ip netns exec "${!ns}" "$QDESK_BIN" --socket "${!sock}" "$@"; }
out=$(q_h h1 vm create d --accel $accel --disk "$SHARED/d.img" --memory 32 \
    --display none --host h2 2>&1) || fail "vm create d: $out"
out=$(q_h h1 vm start d 2>&1) || fail "vm start d: $out"
qpid=$(cat "$h2_STATE/vms/d/qemu.pid") && alive "$qpid" || fail "d's QEMU is not running on h2"
[ -f "$h2_STATE/cluster-watchdog.pid" ] && wpid=$(cat "$h2_STATE/cluster-watchdog.pid") &&
    alive "$wpid" || fail "h2 has no fencing watchdog running"
kill -9 "$(cat "$h2_PIDFILE")"
qmpd_pids=$(cat "$RUN"/h*/qmpd.pid)
out=$("$CLUSTER" down 2>&1) || fail "cluster down: $out"
alive "$qpid" && fail "d's QEMU $qpid (h2's qmpd killed) still runs after down"
alive "$wpid" && fail "h2's watchdog $wpid still runs after down"
assert_gone "${all_ns[@]}"
for pid in $qmpd_pids; do
	kill -0 "$pid" 2>/dev/null && fail "qmpd $pid still runs after down"
done
log "down, h2's qmpd killed with a desktop running: nothing left: ok"

# An up that fails half-way (no qmpd can start) takes itself down.
out=$(QDESK_QMPD=/bin/false "$CLUSTER" up 2 2>&1) && fail "up with a broken qmpd succeeded"
echo "$out" | grep -q "qmpd of h1 exited" || fail "failed up said: $out"
assert_gone "${all_ns[@]}"
out=$("$CLUSTER" down 2>&1) || fail "down after a failed up: $out"
# Bad input.
out=$("$CLUSTER" up 0 2>&1) && fail "up 0 accepted"
[ "$out" = 'cluster: up: N must be a number of hosts from 1 to 40, not "0"' ] ||
	fail "up 0 said: $out"
out=$("$CLUSTER" status 2>&1) && fail "status with no cluster succeeded"
out=$("$CLUSTER" frobnicate 2>&1); [ $? = 2 ] || fail "an unknown verb: $out"
log "a failed up cleans up, bad input is refused: ok"
exit 0
