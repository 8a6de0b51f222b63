# Shared by the cluster's TLS and broker tests (66, 67), after
# tests/integration/lib.sh: a network namespace of the test's own (NS,
# loopback only) with a one-member etcd in it (ETCD), the cluster CA made
# by `qdesk cluster init` (CA), and etcd's gateway from the shell. The
# namespace, etcd and whatever the test adds to NET_PIDS (ended with
# TERM) go at exit, by PID and name. Start a daemon in the namespace with
# `ip netns exec "$NS" CMD &`, never through inns (a function: $! would
# be the subshell's, and the daemon would outlive the test).
NS=qdnet-${TEST_NAME%%-*}-$$
ETCD=http://127.0.0.1:23799
ETCD_PID=
NET_PIDS=
CA=$T/ca

net_cleanup() {
	local p
	for p in $NET_PIDS; do
		kill -TERM "$p" 2>/dev/null
		wait "$p" 2>/dev/null
	done
	if [ -n "$ETCD_PID" ] && tr '\0' ' ' <"/proc/$ETCD_PID/cmdline" \
	    2>/dev/null | grep -q -- "--data-dir $T/etcd "; then
		kill -9 "$ETCD_PID"
		wait "$ETCD_PID" 2>/dev/null
	fi
	ip netns del "$NS" 2>/dev/null
}
EXTRA_CLEANUP=net_cleanup

inns() { ip netns exec "$NS" "$@"; }

# The namespace and etcd in it.
net_up() {
	ip netns add "$NS" || fail "cannot create namespace $NS"
	inns ip link set lo up
	ip netns exec "$NS" etcd --name t --data-dir "$T/etcd" \
	    --listen-client-urls "$ETCD" --advertise-client-urls "$ETCD" \
	    --listen-peer-urls http://127.0.0.1:23798 \
	    --initial-advertise-peer-urls http://127.0.0.1:23798 \
	    --initial-cluster t=http://127.0.0.1:23798 \
	    --logger zap --log-level warn >"$T/etcd.log" 2>&1 &
	ETCD_PID=$!
}

# qdesk cluster init into $CA; the first calls may meet etcd starting.
# Its output in CLUSTER_INIT.
cluster_init() {
	local i
	for i in $(seq 1 50); do
		CLUSTER_INIT=$(inns "$QDESK_BIN" cluster init --etcd "$ETCD" \
		    --dir "$CA" 2>&1) && return 0
		sleep 0.2
	done
	fail "cluster init: $CLUSTER_INIT; $(tail -n 3 "$T/etcd.log")"
}

# etcd's gateway: eget KEY (the value), eput KEY VALUE, edel KEY; keys
# under /qdesk/v1/.
b64() { printf '%s' "$1" | base64 -w0; }
eget() {
	inns curl -sf "$ETCD/v3/kv/range" -d "{\"key\":\"$(b64 "/qdesk/v1/$1")\"}" |
	    jq -r '.kvs[0].value' | base64 -d
}
eput() {
	inns curl -sf "$ETCD/v3/kv/put" -d "{\"key\":\"$(b64 "/qdesk/v1/$1")\",\"value\":\"$(b64 "$2")\"}" >/dev/null ||
		fail "etcd put $1"
}
edel() {
	inns curl -sf "$ETCD/v3/kv/deleterange" -d "{\"key\":\"$(b64 "/qdesk/v1/$1")\"}" >/dev/null ||
		fail "etcd delete $1"
}
