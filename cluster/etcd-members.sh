# shellcheck shell=bash
# A 3-member etcd for tests and scripts/cluster, sourced (bash).  Set
# before use:
#
#   ETCD_DIR	where the data dirs, logs and pid files go (required)
#   ETCD_ADDR	the address members listen on (127.0.0.1)
#   ETCD_PORT	member N's client port is ETCD_PORT+N-1, its peer port
#		ETCD_PORT+N+9 (23790)
#   ETCD_RUN	a command prefix, e.g. "ip netns exec NS" (none)
#
# then etcd_members_up (sets ETCD to the endpoint URLs), etcd_member_kill
# N, etcd_member_start N (a restart keeps the member's data) and
# etcd_members_down, which ends every member by its pid file, and only a
# process whose command line names this ETCD_DIR.

ETCD_ADDR=${ETCD_ADDR:-127.0.0.1}
ETCD_PORT=${ETCD_PORT:-23790}
ETCD_RUN=${ETCD_RUN:-}
ETCD=

etcd_member_url() { echo "http://$ETCD_ADDR:$((ETCD_PORT + $1 - 1))"; }

etcd_member_peer() { echo "http://$ETCD_ADDR:$((ETCD_PORT + $1 + 9))"; }

# Is member N's pid file naming a live etcd of this ETCD_DIR?
etcd_member_pid() {
	local pid
	pid=$(cat "$ETCD_DIR/m$1.pid" 2>/dev/null) || return 1
	[ -n "$pid" ] || return 1
	{ tr '\0' ' ' <"/proc/$pid/cmdline"; } 2>/dev/null |
	    grep -q -- "--data-dir $ETCD_DIR/m$1 " || return 1
	echo "$pid"
}

etcd_member_start() {
	local n=$1 i cluster=
	for i in 1 2 3; do
		cluster=$cluster${cluster:+,}m$i=$(etcd_member_peer "$i")
	done
	mkdir -p "$ETCD_DIR"
	# shellcheck disable=SC2086
	$ETCD_RUN etcd --name "m$n" --data-dir "$ETCD_DIR/m$n" \
	    --listen-client-urls "$(etcd_member_url "$n")" \
	    --advertise-client-urls "$(etcd_member_url "$n")" \
	    --listen-peer-urls "$(etcd_member_peer "$n")" \
	    --initial-advertise-peer-urls "$(etcd_member_peer "$n")" \
	    --initial-cluster "$cluster" --initial-cluster-state new \
	    --initial-cluster-token "qdesk-$$" \
	    --logger zap --log-level warn --log-outputs stderr \
	    >>"$ETCD_DIR/m$n.log" 2>&1 &
	echo $! >"$ETCD_DIR/m$n.pid"
}

etcd_member_kill() {
	local pid
	pid=$(etcd_member_pid "$1") || return 0
	kill -9 "$pid" 2>/dev/null
	# Our child: reap it quietly; else wait for it to go.
	wait "$pid" 2>/dev/null
	while kill -0 "$pid" 2>/dev/null; do sleep 0.05; done
}

# Wait until member N (or, without N, the cluster) answers a read.
etcd_wait() {
	local eps i
	eps=${1:+$(etcd_member_url "$1")}
	eps=${eps:-$ETCD}
	for i in $(seq 1 200); do
		# shellcheck disable=SC2086
		ETCDCTL_API=3 $ETCD_RUN etcdctl --endpoints="$eps" \
		    --command-timeout=2s get health-probe >/dev/null 2>&1 &&
			return 0
		sleep 0.1
	done
	echo "etcd at $eps did not answer within 20 s" >&2
	return 1
}

etcd_members_up() {
	local i
	ETCD=
	for i in 1 2 3; do
		ETCD=$ETCD${ETCD:+,}$(etcd_member_url "$i")
		etcd_member_start "$i"
	done
	etcd_wait
}

etcd_members_down() {
	local i
	for i in 1 2 3; do
		etcd_member_kill "$i"
		rm -f "$ETCD_DIR/m$i.pid"
	done
}
