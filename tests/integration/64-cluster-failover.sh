#!/usr/bin/env bash
# Failover and fencing (issue 13), on `scripts/cluster up 3` with a 3 s
# lease and a 2 s fence delay. Desktops whose disks are on the shared
# store (`qdesk image store add shared DIR --shared`) and one whose disk
# is not:
#  - kill -9 a host's qmpd and QEMUs and take its link down: within 30 s
#    its shared-store desktop runs on another host, `host list` says it
#    is down, the other desktop shows "host down"; the host comes back:
#    it restarts its own desktop, and nothing runs twice.
#  - partition a host (link down, qmpd alive): it kills its own desktops
#    (its log's fence timestamp) before another host starts them (that
#    host's log), and after the partition it does not start them again.
#  - kill -9 only a host's qmpd (its QEMUs live on) and take its link
#    down: its watchdog kills them before another host starts them.
# A watcher checks every host's process table all along: no desktop ever
# runs on two hosts at once.
. "$(dirname "$0")/lib.sh"

[ "$(id -u)" = 0 ] || skip "needs root (network namespaces)"
[ -r /dev/kvm ] || skip "no /dev/kvm"
. "$top/tests/lib/cluster-lib.sh"
cluster_test_up 3

wait_host() {
	local on=$1 h=$2 want=$3 t=${4:-30} i
	for i in $(seq 1 $((t * 10))); do
		[ "$(host_state "$on" "$h")" = "$want" ] && return 0
		sleep 0.1
	done
	fail "$on says $h is $(host_state "$on" "$h"), not $want after $t s"
}

# A host with a shared-store desktop running: sets victim and pvm.
pick_victim() {
	local h vm
	victim=
	for h in "$@"; do
		for vm in f1 f2 f3; do
			[ "$(runs_on "$vm")" = "$h" ] && { victim=$h; pvm=$vm; return 0; }
		done
	done
	fail "no shared-store desktop on $*"
}
# Wait until pvm runs on another host than victim: sets w.
wait_elsewhere() {
	local i
	for i in $(seq 1 300); do
		w=$(runs_on "$pvm")
		[ -n "$w" ] && [ "$w" != "$victim" ] && return 0
		sleep 0.1
	done
	fail "$pvm not running elsewhere after 30 s"
}
# The victim's log line matching $1 (a fence, with its time) is older
# than w's log line saying it started pvm.
fenced_first() {
	local vlog=${victim}_LOG wlog=${w}_LOG fence started
	fence=$(grep "$1" "${!vlog}" | tail -n 1 |
	    sed 's/.*fenced at \([^ ]*\) .*/\1/')
	started=$(grep "cluster: $pvm: placed here .* starting at " "${!wlog}" |
	    tail -n 1 | sed 's/.*starting at //')
	[ -n "$fence" ] || fail "$victim logged no fence: $(grep cluster: "${!vlog}" | tail -5)"
	[ -n "$started" ] || fail "$w logged no start of $pvm"
	[[ "$fence" < "$started" ]] || fail "$victim fenced at $fence, $w started $pvm at $started"
	log "$victim fenced at $fence, $pvm started on $w at $started"
}

hqq h1 image store add shared "$SHARED" --shared >/dev/null
for i in 1 2 3; do
	cp "$GUESTS/boot.img" "$SHARED/f$i.img"
	hqq h1 vm create "f$i" --accel kvm --disk "$SHARED/f$i.img" --memory 64 \
	    --display none >/dev/null
done
cp "$GUESTS/boot.img" "$T/loc.img"
chmod 711 "$T"
hqq h1 vm create loc --accel kvm --disk "$T/loc.img" --memory 64 \
    --display none --host h2 >/dev/null
for vm in f1 f2 f3 loc; do
	hqq h3 vm start "$vm" >/dev/null
done
for vm in f1 f2 f3 loc; do
	[ "$(runs_on "$vm" | wc -w)" = 1 ] || fail "$vm runs on '$(runs_on "$vm")'"
done
[ "$(runs_on loc)" = h2 ] || fail "loc runs on $(runs_on loc)"

# The watcher: every desktop on at most one host.
watch_twice f1 f2 f3 loc

# 1. h2 dies: qmpd and QEMUs killed, link down.
victim=h2
moved=
for vm in f1 f2 f3; do
	[ "$(runs_on "$vm")" = $victim ] && moved="$moved $vm"
done
moved=${moved# }
[ -n "$moved" ] || fail "no shared-store desktop on $victim"
host_die h2
t0=$DIED_AT
# One deadline for all of them, from the death: within 30 s each runs
# elsewhere (a wait per desktop would allow 30 s more for each).
for vm in $moved; do
	until_moved "$vm" $victim 30
	log "$vm runs on $w $(( $(date +%s%3N) - t0 )) ms after $victim died"
	# vm show follows once w's record lists it (it may say starting).
	for i in $(seq 1 50); do
		[ "$(hq h1 --json vm show "$vm" | jq -r '.state + " " + .host')" = "running $w" ] &&
			break
		sleep 0.1
	done
	[ "$(hq h1 --json vm show "$vm" | jq -r '.state + " " + .host')" = "running $w" ] ||
		fail "vm show $vm (runs on $w): $(hq h1 --json vm show "$vm" | jq -c .)"
done
[ "$(host_state h1 h2)" = down ] || fail "h1 says h2 is $(host_state h1 h2)"
[ "$(hq h3 --json vm show loc | jq -r '.state + " " + .host')" = "host down h2" ] ||
	fail "loc: $(hq h3 --json vm show loc)"
out=$(hq h1 vm start loc 2>&1) && fail "start of loc on a down host: $out"
echo "$out" | grep -q "its host h2 is down and its disk is not on a shared store" ||
	fail "start of loc said: $out"
log "kill -9 of h2: its shared-store desktop elsewhere, loc waits: ok"

# h2 returns: loc (still placed there) runs there again, the others not.
host_back h2
wait_host h1 h2 up
for i in $(seq 1 100); do
	[ "$(runs_on loc)" = h2 ] && break
	sleep 0.1
done
[ "$(runs_on loc)" = h2 ] || fail "loc runs on '$(runs_on loc)' after h2 came back"
sleep 2
for vm in $moved; do
	[ "$(runs_on "$vm")" != h2 ] || fail "$vm is back on h2"
	[ "$(runs_on "$vm" | wc -w)" = 1 ] || fail "$vm runs on '$(runs_on "$vm")'"
done
log "h2 back: loc restarted there, nothing twice: ok"

# 2. Partition a host with a shared-store desktop, its qmpd alive.
pick_victim h1 h3
vns=${victim}_NETNS
[ $victim = h1 ] && other=h3 || other=h1
ip -n "${!vns}" link set eth0 down
wait_elsewhere
fenced_first "cluster: fenced at "
log "partition of $victim: it fenced before $pvm started on $w: ok"
# Back: it joins again and does not start what now runs elsewhere.
ip -n "${!vns}" link set eth0 up
wait_host "$other" $victim up
sleep 2
[ "$(runs_on "$pvm")" = "$w" ] || fail "$pvm runs on '$(runs_on "$pvm")' after $victim returned"
[ "$(host_state $victim $victim)" = up ] || fail "$victim does not see itself up"
log "partition over: $victim rejoined: ok"

# 3. Only qmpd dies (kill -9, link down): its QEMUs outlive it, so its
# watchdog kills them when the lease may expire, before any other host
# starts them.
pick_victim $HOSTS
vns=${victim}_NETNS vpf=${victim}_PIDFILE vst=${victim}_STATE
qpid=$(cat "${!vst}/vms/$pvm/qemu.pid")
kill -9 "$(cat "${!vpf}")"
ip -n "${!vns}" link set eth0 down
wait_elsewhere
alive "$qpid" && fail "$pvm's QEMU $qpid on $victim outlived its dead qmpd"
fenced_first "cluster: watchdog: .* fenced at "
log "qmpd of $victim killed: its watchdog fenced before $pvm started on $w: ok"
host_back $victim
wait_host "$w" $victim up
sleep 2
[ "$(runs_on "$pvm")" = "$w" ] || fail "$pvm runs on '$(runs_on "$pvm")' after $victim returned"

watch_twice_end
log "nothing ran twice: ok"
exit 0
