# Shared by the cluster tests (62- to 91-): a cluster of the test's own
# (scripts/cluster --name up), qdesk on one of its hosts, and where a desktop's
# QEMU runs according to every host's process table, and what its etcd
# holds (eget, placement). Sourced after tests/integration/lib.sh.

CLUSTER=$top/scripts/cluster
# A test's cluster is its own (scripts/cluster --name, through
# $QDESK_CLUSTER): its namespaces and files are named after the test and
# its pid, so cluster tests run beside each other and beside a cluster
# someone has up in this checkout. Short: it is part of socket paths.
# The benches (bench/cluster*.sh) source this file too, without lib.sh:
# they use the checkout's one cluster (build/cluster/env) as they are.
if [ -n "${TEST_NAME:-}" ]; then
	QDESK_CLUSTER=${TEST_NAME%%-*}-$$
	export QDESK_CLUSTER
	ENVFILE=$top/build/clusters/$QDESK_CLUSTER/env
	# The hosts' qmpds on this test's VM uid range (lib.sh).
	QDESK_QMPD=$(qmpd_uids_wrap "${QDESK_QMPD:-$top/build/qmpd/qmpd}")
	export QDESK_QMPD
fi

# Where a failed cluster test keeps its hosts' and broker's logs.
CLUSTER_KEEP=$top/build/test-results/${TEST_NAME:-bench}-logs

# cluster_test_logs STATUS: when the test failed (STATUS not 0), before
# `cluster down` removes them, keep every host's qmpd log and the
# broker's in $CLUSTER_KEEP and print each host's last lines and whether
# its qmpd still runs: a qmpd that died says why at the end of its log
# (a sanitizer's or glibc's report, a fatal line), and CI shows only
# what the test printed.
cluster_test_logs() {
	local h lf pf pid how
	[ "$1" = 0 ] || [ -z "${HOSTS:-}" ] && return 0
	mkdir -p "$CLUSTER_KEEP"
	for h in $HOSTS; do
		lf=${h}_LOG pf=${h}_PIDFILE
		cp "${!lf}" "$CLUSTER_KEEP/$h.log" 2>/dev/null
		pid=$(cat "${!pf}" 2>/dev/null)
		how="running, pid $pid"
		alive "$pid" || how="NOT running: pid ${pid:-?} is gone"
		log "last lines of $h's qmpd log (qmpd $how; all of it in $CLUSTER_KEEP/$h.log):"
		tail -n 30 "${!lf}" 2>/dev/null | sed "s/^/  $h| /" >&2
	done
	cp "$RUN_DIR/broker.log" "$CLUSTER_KEEP/" 2>/dev/null
	return 0
}

# Up N hosts, with a lease of TTL s (3) and a fence delay of D s (2);
# env sourced (RUN_DIR: the cluster's files): cluster_test_up N [TTL [D]]
# On failure the logs are kept and shown (cluster_test_logs).
cluster_test_up() {
	local out
	[ -e "$ENVFILE" ] &&
		fail "cluster $QDESK_CLUSTER is already up: scripts/cluster --name $QDESK_CLUSTER down"
	rm -rf "$CLUSTER_KEEP"
	# cleanup (lib.sh) runs this with its exit status in $status.
	EXTRA_CLEANUP="${EXTRA_CLEANUP:-}${EXTRA_CLEANUP:+; }cluster_test_logs \"\$status\"; \"\$CLUSTER\" down >/dev/null 2>&1"
	out=$(QDESK_LEASE_TTL=${2:-3} QDESK_FENCE_DELAY=${3:-2} "$CLUSTER" up "$1" 2>&1) ||
		fail "cluster up $1: $out"
	# shellcheck disable=SC1090
	. "$ENVFILE"
}

# The cluster's etcd, through the tests' client (cluster/etcd-drive):
# inet CMD... runs CMD in etcd's namespace; eget KEY prints the value of
# /qdesk/v1/KEY (empty when there is none); placement VM prints VM's
# placement record as host h1 reads it.
DRIVE=$top/build/cluster/etcd-drive
inet() { ip netns exec "$ETCD_NETNS" "$@"; }
eget() { inet "$DRIVE" -e "$ETCD" get "/qdesk/v1/$1" | sed -n "s|^/qdesk/v1/$1=||p"; }
placement() {
	ip netns exec "$h1_NETNS" "$DRIVE" -e "$ETCD" get "/qdesk/v1/placement/$1" |
	    grep -o '{.*}' | tail -n 1
}

# qdesk on host h, from its namespace: hq h ARGS...
hq() {
	local h=$1 ns sock
	shift
	ns=${h}_NETNS sock=${h}_SOCKET
	ip netns exec "${!ns}" "$QDESK_BIN" --socket "${!sock}" "$@"
}

# hq, failing the test on an error.
hqq() {
	local out
	out=$(hq "$@" 2>&1) || fail "on $1: qdesk ${*:2}: $out"
	printf '%s\n' "$out"
}
# until_ok SECONDS WHAT CMD: until CMD (a shell condition) holds, else
# fail with WHAT.
until_ok() {
	local secs=$1 what=$2 cmd=$3 i
	for i in $(seq 1 $((secs * 10))); do
		eval "$cmd" && return 0
		sleep 0.1
	done
	fail "not after ${secs}s: $what"
}

# A host's state dir and qmpd log; the other host of two (h1, h2).
state_of() { local s=${1}_STATE; echo "${!s}"; }
log_of() { local s=${1}_LOG; echo "${!s}"; }
other() { [ "$1" = h1 ] && echo h2 || echo h1; }

# hwait_console H VM PATTERN [SECONDS]: until the serial log of VM on
# host H shows PATTERN (a grep pattern), else fail with the log's tail.
hwait_console() {
	local h=$1 vm=$2 pattern=$3 timeout=${4:-30} i log
	log=$(state_of "$h")/vms/$vm/serial.log
	for i in $(seq 1 $((timeout * 10))); do
		grep -aq -- "$pattern" "$log" 2>/dev/null && return 0
		sleep 0.1
	done
	fail "$vm on $h: '$pattern' not on the console after $timeout s: $(tail -c 400 "$log" 2>/dev/null | tr -d '\r')"
}

# hguest_sh H VM CMD [SECONDS]: CMD on the guest's serial shell on host
# H; its exit status.
SEQ=0
hguest_sh() {
	local h=$1 vm=$2 cmd=$3 timeout=${4:-20} n i st log
	SEQ=$((SEQ + 1))
	n=$SEQ
	log=$(state_of "$h")/vms/$vm/serial.log
	printf '%s\n' "$cmd; echo QDN$n=\$?" |
	    socat -t1 - "UNIX-CONNECT:$(state_of "$h")/vms/$vm/serial.sock" >/dev/null 2>&1
	for i in $(seq 1 $((timeout * 10))); do
		st=$(grep -ao "QDN$n=[0-9][0-9]*" "$log" 2>/dev/null | tail -n 1)
		if [ -n "$st" ]; then
			return "${st#QDN$n=}"
		fi
		sleep 0.1
	done
	fail "$vm on $h: no answer to '$cmd' after $timeout s"
}


# The hosts whose process tables run VM's QEMU (its pidfile's pid alive,
# its command line naming that host's VM dir), space-separated.
runs_on() {
	local vm=$1 h st pid where=
	for h in $HOSTS; do
		st=${h}_STATE
		pid=$(cat "${!st}/vms/$vm/qemu.pid" 2>/dev/null) || continue
		alive "$pid" && tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null |
		    grep -q -- "${!st}/vms/$vm/" && where="$where $h"
	done
	echo "${where# }"
}

# runs_on_throughout VM: where VM runs, sampled every 0.1 s for at least
# 2 s and at least 20 times (on a busy machine a sample can take longer
# than the window), as "COUNT HOSTS" lines; one line with one host is
# the only good answer.
runs_on_throughout() {
	local vm=$1 n=0 end=$((SECONDS + 2))
	while [ "$n" -lt 20 ] || [ "$SECONDS" -lt "$end" ]; do
		runs_on "$vm"
		n=$((n + 1))
		sleep 0.1
	done | sort | uniq -c | sed 's/^ *//'
}

# Host h as host O sees it (up, draining, down or nothing): host_state O H
host_state() {
	hq "$1" --json host list | jq -r ".hosts[] | select(.name == \"$2\") | .state"
}

# watch_twice VM...: a watcher in the background that looks at every
# host's process table every 0.2 s and notes, with the time, any of the
# VMs running on two hosts at once; watch_twice_end stops it and fails
# the test if it noted one. Cleanup stops it too, before the cluster goes.
WATCHER=
watch_twice() {
	( while :; do
		for vm in "$@"; do
			w=$(runs_on "$vm")
			[ "$(echo "$w" | wc -w)" -gt 1 ] &&
				echo "$(date +%T.%N) $vm runs on $w" >>"$T/twice"
		done
		sleep 0.2
	done ) &
	WATCHER=$!
	EXTRA_CLEANUP="[ -n \"\${WATCHER:-}\" ] && kill \$WATCHER 2>/dev/null; ${EXTRA_CLEANUP:-}"
}
watch_twice_end() {
	kill "$WATCHER" 2>/dev/null
	wait "$WATCHER" 2>/dev/null
	WATCHER=
	[ -s "$T/twice" ] && fail "a desktop ran on two hosts at once: $(cat "$T/twice")"
	return 0
}

# host_die H: host H dies as a machine does: its qmpd and every QEMU in
# its process table killed (-9), its link down; DIED_AT is the time in
# ms, for one deadline from the death.
host_die() {
	local h=$1 st pf ns f pid
	st=${h}_STATE pf=${h}_PIDFILE ns=${h}_NETNS
	kill -9 "$(cat "${!pf}")"
	for f in "${!st}"/vms/*/qemu.pid; do
		pid=$(cat "$f" 2>/dev/null) || continue
		alive "$pid" && tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null |
		    grep -q -- "${!st}/vms/" && kill -9 "$pid"
	done
	ip -n "${!ns}" link set eth0 down
	DIED_AT=$(date +%s%3N)
}

# host_back H: host H's link up and its qmpd started again (after
# host_die, or a kill of its qmpd alone); returns once it answers.
host_back() {
	local ns=${1}_NETNS
	ip -n "${!ns}" link set eth0 up
	cluster_qmpd_start "$1"
}

# until_moved VM FROM SECONDS: until VM runs on one host other than FROM
# (process tables), at most SECONDS after DIED_AT (one deadline from the
# death, however many desktops wait on it); sets w to that host.
until_moved() {
	local vm=$1 from=$2 secs=$3 o
	while :; do
		w=$(runs_on "$vm")
		[ -n "$w" ] && [ "$w" != "$from" ] && break
		if [ "$(date +%s%3N)" -ge $((DIED_AT + secs * 1000)) ]; then
			o=$(other_than "$from")
			fail "$vm not running on a host other than $from $secs s after its death (runs on '$w'; $o says $(hq "$o" --json vm show "$vm" | jq -c '{state,host,reason}'))"
		fi
		sleep 0.1
	done
	[ "$(echo "$w" | wc -w)" = 1 ] || fail "$vm runs on '$w'"
}
# The first host of $HOSTS that is not $1.
other_than() {
	local h
	for h in $HOSTS; do
		[ "$h" != "$1" ] && { echo "$h"; return; }
	done
}

# tpl_on_every_host: the tiny boot image imported as template tpl on
# every host, each host's record in etcd listing it (placement clones it
# where it places, and places only where it is listed).
tpl_on_every_host() {
	local h
	for h in $HOSTS; do
		cp "$GUESTS/boot.img" "$T/tpl-$h.img"
		hqq "$h" image import tpl "$T/tpl-$h.img" --format raw >/dev/null
	done
	for h in $HOSTS; do
		until_ok 30 "host $h's record lists template tpl" \
		    "eget hosts/$h | grep -q '\"tpl\"'"
	done
}

# cluster_etcd_members: cluster/etcd-members.sh loaded for this cluster's
# etcd, so etcd_member_kill N and etcd_member_start N act on its members
# (ETCD, which that file sets to one member, keeps every endpoint).
cluster_etcd_members() {
	local endpoints=$ETCD
	ETCD_DIR=$RUN_DIR/etcd ETCD_ADDR=${ETCD#http://}
	ETCD_ADDR=${ETCD_ADDR%%:*} ETCD_PORT=2379 ETCD_RUN="setsid ip netns exec $ETCD_NETNS"
	. "$top/cluster/etcd-members.sh"
	ETCD=$endpoints
}

# hosts_see H STATE: until every host sees host H in STATE (up,
# draining, down), up to 20 s each, else fail with that host's list.
hosts_see() {
	local h
	for h in $HOSTS; do
		until_ok 20 "$h sees $1 $2" "[ \"\$(host_state $h $1 2>/dev/null)\" = $2 ]"
	done
}

# The serial log of VM on host H; a line typed on its serial console:
# hserial_log H VM, hserial_send H VM LINE.
hserial_log() { echo "$(state_of "$1")/vms/$2/serial.log"; }
hserial_send() {
	printf '%s\n' "$3" | socat -t1 - "UNIX-CONNECT:$(state_of "$1")/vms/$2/serial.sock" >/dev/null 2>&1
}
# hguest_sum H VM: the guest's checksum of its whole disk, read past its
# page cache (what the disk holds, not what the guest remembers).
hguest_sum() {
	local n i
	n=$(grep -ac "^SUM " "$(hserial_log "$1" "$2")" 2>/dev/null)
	hserial_send "$1" "$2" 'echo 3 >/proc/sys/vm/drop_caches; echo "SUM $(md5sum </dev/vda | cut -c1-32)"'
	for i in $(seq 1 600); do
		[ "$(grep -ac "^SUM " "$(hserial_log "$1" "$2")")" -gt "${n:-0}" ] && break
		sleep 0.1
	done
	grep -a "^SUM " "$(hserial_log "$1" "$2")" | tail -n 1 | tr -d '\r' | cut -d' ' -f2
}

# shared_store_add: image store "shared" on $SHARED/images (STORE), the
# cluster's NFS stand-in, added on h1 and seen by every host.
# shared_rec H NAME: image NAME's record in host H's index of it, or
# nothing.
shared_store_add() {
	local h
	STORE=$SHARED/images
	mkdir -p "$STORE"
	hqq h1 image store add shared "$STORE" --shared >/dev/null
	for h in $HOSTS; do
		until_ok 10 "$h sees store shared" "hq $h image list --store shared >/dev/null 2>&1"
	done
}
shared_rec() { hq "$1" --json image show "$2" --store shared 2>/dev/null; }

# Wait until every host's watch has user $1 (users are the cluster's,
# in etcd: added on one host, seen by the others a moment later).
cluster_wait_user() {
	local h i
	for h in $HOSTS; do
		for i in $(seq 1 100); do
			hq "$h" --json user list 2>/dev/null | grep -q "\"$1\"" && break
			sleep 0.1
		done
	done
}

# Wait until every host's view has all of $HOSTS up (up to 10 s a host,
# like cluster_wait_user: the step after says what is missing).
cluster_wait_up() {
	local h i n
	n=$(set -- $HOSTS; echo $#)
	for h in $HOSTS; do
		for i in $(seq 1 100); do
			[ "$(hq "$h" --json host list | jq -r '[.hosts[] | select(.state == "up")] | length')" = "$n" ] && break
			sleep 0.1
		done
	done
}

# The portal's API, from the broker's namespace, with one cookie jar:
# api METHOD PATH [BODY] sets CODE and BODY; field NAME reads BODY.
api() {
	local method=$1 path=$2 body=${3:-}
	local args=(-sk -o "$T/api.body" -w '%{http_code}' -b "$T/jar" -c "$T/jar" -X "$method")
	if [ "$method" = POST ]; then
		args+=(-H 'X-Qdesk: 1' -H 'Content-Type: application/json' --data "${body:-{\}}")
	fi
	CODE=$(ip netns exec "$ETCD_NETNS" curl "${args[@]}" "$PORTAL$path") || CODE=000
	BODY=$(cat "$T/api.body" 2>/dev/null)
}
field() { printf '%s' "$BODY" | jq -r ".$1"; }

# cluster_race SOCK1 LOGIN1 SOCK2 LOGIN2: desktop.acquire for LOGIN1 on
# host socket SOCK1 and for LOGIN2 on SOCK2, sent at the same moment
# (one process: both connections greeted first, then both requests, so
# neither host is a python start-up ahead and both usually claim before
# either's watch shows the other's claim); prints the two replies, one
# a line, in that order.
cluster_race() {
	python3 - "$@" <<'EOF'
import json, socket, sys
a = sys.argv[1:]
conns = []
for sock, login in ((a[0], a[1]), (a[2], a[3])):
    s = socket.socket(socket.AF_UNIX)
    s.settimeout(200)
    s.connect(sock)
    f = s.makefile("r")
    f.readline()
    line = json.dumps({"id": 1, "cmd": "desktop.acquire",
        "args": {"login": login}}) + "\n"
    conns.append((s, f, line.encode()))
for s, f, line in conns:
    s.sendall(line)
for s, f, line in conns:
    print(f.readline().strip())
EOF
}

# Stop host h's qmpd (SIGTERM: its QEMUs run on) and start it again on
# the same state dir and cluster file: cluster_qmpd_restart h
cluster_qmpd_restart() {
	local h=$1 pf pid i
	pf=${h}_PIDFILE
	pid=$(cat "${!pf}")
	kill "$pid" 2>/dev/null
	for i in $(seq 1 300); do
		alive "$pid" || break
		sleep 0.1
	done
	alive "$pid" && fail "qmpd of $h did not exit on SIGTERM"
	cluster_qmpd_start "$h"
}

# cluster_qmpd_start H: host H's qmpd started again (it is not running:
# stopped, or killed by the test), as scripts/cluster started it; returns
# once it answers.
cluster_qmpd_start() {
	local h=$1 ns st conf lg pf i
	ns=${h}_NETNS st=${h}_STATE conf=${h}_CONF lg=${h}_LOG pf=${h}_PIDFILE
	# In a subshell: bash then says nothing when a test kills it.
	( setsid ip netns exec "${!ns}" "$QMPD" -f -v --state-dir "${!st}" \
	    --cluster "${!conf}" >>"${!lg}" 2>&1 </dev/null &
	echo $! >"${!pf}" )
	for i in $(seq 1 300); do
		hq "$h" status >/dev/null 2>&1 && return 0
		sleep 0.1
	done
	fail "qmpd of $h did not come back: $(tail -n 5 "${!lg}")"
}
