#!/usr/bin/env bash
# NIC hotplug in a cluster (issues 13/14), on `scripts/cluster up 2`:
# vm nic-add and nic-rm on a running desktop change its definition in
# etcd (vms/VM's "nets", by CAS) as well as its QEMU, so every host sees
# the NICs it has. Each host has nat networks nic87a (10.87.0.0/24) and
# nic87b (10.88.0.0/24); a TCG Linux guest boots with a NIC on nic87a.
#  - nic-add on its host: the other host's vm show lists nic87b; asked
#    of the other host it is refused with the host's name; nic-rm: gone
#    on the other host too.
#  - a NIC added again, then vm migrate: the target's record has both;
#    the boot-time NIC removed on the target: the source's view (etcd's)
#    follows.
#  - the target dies (qmpd and QEMU killed, link down): the other host
#    restarts the desktop from etcd's definition, with the NIC on nic87b
#    only (its QEMU gets one netdev). The dead host comes back with a
#    stale stopped copy: a NIC added where the desktop runs reaches it.
#  - a desktop never started: nic-add from any host writes etcd alone;
#    nic-rm, with no copy to find the MAC in, is refused with one line.
#  - etcd refusing the write (a test hook makes its CAS fail): nic-add
#    adds nothing (no NIC, no TAP) and says why in one line; a hotplug
#    failing after etcd took the NIC (a test hook): etcd goes back. etcd
#    without quorum: nic-add adds nothing either.
. "$(dirname "$0")/lib.sh"

[ "$(id -u)" = 0 ] || skip "needs root (network namespaces)"
for t in ip nft dnsmasq jq etcdctl; do
	command -v $t >/dev/null 2>&1 || skip "$t not installed"
done
[ -c /dev/net/tun ] || skip "no /dev/net/tun"
[ -f "$GUESTS/vmlinuz" ] || skip "no tiny guests: run scripts/mkguest"
. "$top/tests/lib/cluster-lib.sh"
grep -q "QDESK_TEST_HOOKS" "$top/build/build.ninja" ||
	fail "qmpd is built without test hooks (meson configure build -Dtest_hooks=true)"

# qmpd/test-hook.c: an etcd write of a NIC on nic87c never matches (its
# CAS fails as a concurrent change would make it), a hotplug on nic87d
# fails after etcd took it.
export QDESK_TEST_HOOK=nic-cas:nic87c,nic-plug:nic87d
RESULTS=$top/build/test-results/$TEST_NAME
EXTRA_CLEANUP='mkdir -p "$RESULTS"; for h in $HOSTS; do cp "$RUN_DIR/$h/qmpd.log" "$RESULTS/$h.log"; done'
cluster_test_up 2

# What host H's vm show says of desk's NICs' networks: its local record's
# (.nics) where it runs it, etcd's (.nets) elsewhere.
nets_on() {
	hq "$1" --json vm show desk 2>/dev/null |
	    jq -r '[(.nics // [] | .[].network), (.nets // [] | .[])] | join(" ")'
}

# Until host H's vm show lists networks WANT (the watch takes a moment).
wait_nets() { # H WANT WHAT
	local i
	for i in $(seq 1 50); do
		[ "$(nets_on "$1")" = "$2" ] && return 0
		sleep 0.1
	done
	fail "$3: vm show on $1 lists '$(nets_on "$1")', not '$2'"
}

for h in $HOSTS; do
	hqq "$h" net create nic87a --subnet 10.87.0.0/24 >/dev/null
	hqq "$h" net create nic87b --subnet 10.88.0.0/24 >/dev/null
done
hqq h1 vm create desk --accel tcg --memory 256 \
    --kernel "$GUESTS/vmlinuz" --initrd "$GUESTS/initrd.img" \
    --append "console=ttyS0 no_timer_check" --display none --net nic87a >/dev/null
hqq h1 vm start desk >/dev/null
src=$(runs_on desk)
case $src in h1|h2) ;; *) fail "desk runs on '$src'" ;; esac
dst=$(other "$src")
# The guest's ACPI must be up to let a NIC go.
hwait_console "$src" desk "QDESK IP=eth0 10.87.0" 120
mac0=$(hqq "$src" --json vm show desk | jq -r '.nics[0].mac')

# nic-add on the desktop's host: the other host sees it.
t0=$(date +%s%N)
out=$(hq "$src" --json vm nic-add desk nic87b) || fail "nic-add: $out"
log "nic-add in a cluster took $(( ($(date +%s%N) - t0) / 1000000 )) ms"
mac=$(echo "$out" | jq -r .mac)
[ "$(nets_on "$src")" = "nic87a nic87b" ] || fail "on $src: $(nets_on "$src")"
wait_nets "$dst" "nic87a nic87b" "after nic-add on $src"
log "nic-add on $src: $dst lists the NIC: ok"

# Asked of a host that does not run it: refused, naming the host.
out=$(hq "$dst" vm nic-add desk nic87b 2>&1) && fail "nic-add on $dst: $out"
echo "$out" | grep -q "VM desk runs on host $src: change its NICs there" ||
	fail "nic-add on $dst said: $out"
[ "$(nets_on "$src")" = "nic87a nic87b" ] || fail "refused nic-add changed $src: $(nets_on "$src")"

# nic-rm: gone everywhere.
t0=$(date +%s%N)
hqq "$src" vm nic-rm desk "$mac" >/dev/null
log "nic-rm in a cluster took $(( ($(date +%s%N) - t0) / 1000000 )) ms"
[ "$(nets_on "$src")" = "nic87a" ] || fail "after nic-rm on $src: $(nets_on "$src")"
wait_nets "$dst" "nic87a" "after nic-rm on $src"
log "nic-rm on $src: gone on $dst: ok"

# etcd refuses the write: nothing added (no NIC, no TAP), one line. A
# hotplug that fails after etcd took the NIC: etcd's definition goes
# back before the answer.
etcd_nets() {
	ETCDCTL_API=3 ip netns exec "$ETCD_NETNS" etcdctl --endpoints="$ETCD" \
	    --command-timeout=5s get /qdesk/v1/vms/desk --print-value-only |
	    jq -r '.def.nets // [] | join(" ")'
}
[ "$(etcd_nets)" = nic87a ] || fail "etcd's vms/desk: $(etcd_nets)"
hqq "$src" net create nic87c --subnet 10.89.0.0/24 >/dev/null
hqq "$src" net create nic87d --subnet 10.90.0.0/24 >/dev/null
sns=${src}_NETNS
taps() { ip -n "${!sns}" -o link show | grep -c ' qtap'; }
ntaps=$(taps)
out=$(hq "$src" vm nic-add desk nic87c 2>&1) && fail "nic-add, etcd refusing: $out"
[ "$(printf '%s\n' "$out" | wc -l)" = 1 ] || fail "nic-add, etcd refusing, not one line: $out"
echo "$out" | grep -q "vm nic-add desk: etcd did not take the NIC, nothing added: the definition changed meanwhile" ||
	fail "nic-add, etcd refusing, said: $out"
[ "$(nets_on "$src")" = nic87a ] || fail "nic-add, etcd refusing, changed desk: $(nets_on "$src")"
[ "$(taps)" = "$ntaps" ] || fail "nic-add, etcd refusing, left a TAP"
[ "$(etcd_nets)" = nic87a ] || fail "nic-add, etcd refusing: etcd has $(etcd_nets)"
log "etcd refusing the write: '$out'"
out=$(hq "$src" vm nic-add desk nic87d 2>&1) && fail "nic-add, hotplug failing: $out"
echo "$out" | grep -q "test hook: no hotplug" || fail "nic-add, hotplug failing, said: $out"
[ "$(etcd_nets)" = nic87a ] || fail "a failed hotplug left etcd with $(etcd_nets)"
[ "$(nets_on "$src")" = nic87a ] || fail "a failed hotplug changed desk: $(nets_on "$src")"
wait_nets "$dst" nic87a "after a failed hotplug"
log "a hotplug failing after etcd took the NIC: etcd's definition back: ok"

# Added again, then the desktop migrates: the target has both NICs.
out=$(hq "$src" --json vm nic-add desk nic87b) || fail "nic-add again: $out"
mac=$(echo "$out" | jq -r .mac)
wait_nets "$dst" "nic87a nic87b" "after the second nic-add"
out=$(hq "$src" --json vm migrate desk "$dst" 2>&1) || fail "migrate: $out"
[ "$(runs_on desk)" = "$dst" ] || fail "after migrate desk runs on '$(runs_on desk)'"
got=$(hqq "$dst" --json vm show desk | jq -r '[.nics[] | .network + " " + .mac] | join(",")')
[ "$got" = "nic87a $mac0,nic87b $mac" ] || fail "NICs on $dst after migrate: $got"
wait_nets "$src" "nic87a nic87b" "after the migration"
log "migrated to $dst with the hot-added NIC: ok"

# The boot-time NIC removed on the target: the source's view follows.
hqq "$dst" vm nic-rm desk "$mac0" >/dev/null
[ "$(nets_on "$dst")" = "nic87b" ] || fail "after nic-rm on $dst: $(nets_on "$dst")"
wait_nets "$src" "nic87b" "after nic-rm on $dst"
log "nic-rm on $dst: $src's view follows: ok"

# The target dies: the desktop restarts on the other host from etcd's
# definition (it has no record there since it migrated away).
dpf=${dst}_PIDFILE dns=${dst}_NETNS
kill -9 "$(cat "${!dpf}")"
kill -9 "$(cat "$(state_of "$dst")/vms/desk/qemu.pid")"
ip -n "${!dns}" link set eth0 down
t0=$(date +%s%3N)
for i in $(seq 1 400); do
	[ "$(runs_on desk)" = "$src" ] && break
	sleep 0.1
done
[ "$(runs_on desk)" = "$src" ] || fail "desk not restarted on $src after $dst died"
log "desk runs on $src $(( $(date +%s%3N) - t0 )) ms after $dst died"
got=$(hqq "$src" --json vm show desk | jq -r '[.nics[].network] | join(" ")')
[ "$got" = "nic87b" ] || fail "after failover desk's NICs on $src: $got"
pid=$(cat "$(state_of "$src")/vms/desk/qemu.pid")
n=$(tr '\0' '\n' <"/proc/$pid/cmdline" | grep -c '^tap,')
[ "$n" = 1 ] || fail "desk's QEMU on $src has $n netdevs: $(tr '\0' ' ' <"/proc/$pid/cmdline")"
log "failover restarted desk on $src with its NIC on nic87b: ok"

# The dead host returns with a stale stopped copy of desk: a NIC added
# where desk runs reaches that copy too (the watch), before any start.
ip -n "${!dns}" link set eth0 up
dst_qmpd_start() {
	local ns=${dst}_NETNS st=${dst}_STATE conf=${dst}_CONF lg=${dst}_LOG \
	    pf=${dst}_PIDFILE i
	setsid ip netns exec "${!ns}" "$QMPD" -f -v --state-dir "${!st}" \
	    --cluster "${!conf}" >>"${!lg}" 2>&1 </dev/null &
	echo $! >"${!pf}"
	for i in $(seq 1 300); do
		hq "$dst" status >/dev/null 2>&1 && return 0
		sleep 0.1
	done
	fail "qmpd of $dst did not come back: $(tail -n 5 "${!lg}")"
}
dst_qmpd_start
copy_on() { # H NET: the VMs whose NICs on NET host H's records hold
	hq "$1" --json net show "$2" 2>/dev/null | jq -r '.vms | join(" ")'
}
for i in $(seq 1 150); do
	[ "$(copy_on "$dst" nic87b)" = desk ] && break
	sleep 0.1
done
[ "$(copy_on "$dst" nic87b)" = desk ] || fail "$dst has no copy of desk on nic87b"
[ -z "$(copy_on "$dst" nic87a)" ] || fail "$dst's copy of desk is on nic87a: $(copy_on "$dst" nic87a)"
out=$(hq "$src" --json vm nic-add desk nic87a) || fail "nic-add after failover: $out"
for i in $(seq 1 100); do
	[ "$(copy_on "$dst" nic87a)" = desk ] && break
	sleep 0.1
done
[ "$(copy_on "$dst" nic87a)" = desk ] ||
	fail "$dst's stopped copy of desk did not take the NIC on nic87a"
wait_nets "$dst" "nic87b nic87a" "after nic-add on $src, on the returned $dst"
log "$dst's stale copy took the NIC added on $src: ok"

# A desktop defined in etcd and never started: nic-add from any host is
# etcd's alone; nic-rm needs a copy that knows the MAC.
hqq "$dst" vm create cold --accel tcg --memory 128 --kernel "$GUESTS/vmlinuz" \
    --initrd "$GUESTS/initrd.img" --display none >/dev/null
out=$(hq "$dst" --json vm nic-add cold nic87a) || fail "nic-add of cold: $out"
[ "$(echo "$out" | jq -r .network)" = nic87a ] || fail "nic-add of cold said: $out"
for i in $(seq 1 50); do
	[ "$(hq "$src" --json vm show cold | jq -r '.nets | join(" ")')" = nic87a ] && break
	sleep 0.1
done
[ "$(hq "$src" --json vm show cold | jq -r '.nets | join(" ")')" = nic87a ] ||
	fail "$src: cold's nets: $(hq "$src" --json vm show cold | jq -c .nets)"
out=$(hq "$src" vm nic-rm cold 52:54:00:00:00:01 2>&1) && fail "nic-rm of cold: $out"
echo "$out" | grep -q "VM cold has no copy on this host to find MAC" ||
	fail "nic-rm of cold said: $out"
log "a stopped desktop's nic-add is etcd's: ok"

# etcd without quorum (two of three members killed): a nic-add adds
# nothing, neither to the record nor to QEMU (no new TAP), and says why
# in one line; desk runs on.
cluster_etcd_members
sns=${src}_NETNS
taps() { ip -n "${!sns}" -o link show | grep -c ' qtap'; }
before=$(hqq "$src" --json vm show desk | jq -c '[.nics[].mac]') ntaps=$(taps)
etcd_member_kill 2
etcd_member_kill 3
out=$(hq "$src" vm nic-add desk nic87a 2>&1) && fail "nic-add without quorum: $out"
[ "$(printf '%s\n' "$out" | wc -l)" = 1 ] || fail "nic-add without quorum, not one line: $out"
echo "$out" | grep -Eq "etcd did not take the NIC, nothing added|etcd has no quorum" ||
	fail "nic-add without quorum said: $out"
[ "$(hqq "$src" --json vm show desk | jq -c '[.nics[].mac]')" = "$before" ] ||
	fail "nic-add without quorum changed desk's NICs: $(hq "$src" --json vm show desk | jq -c .nics)"
[ "$(taps)" = "$ntaps" ] || fail "nic-add without quorum left a TAP: $(ip -n "${!sns}" -o link show | grep qtap)"
[ "$(runs_on desk)" = "$src" ] || fail "desk runs on '$(runs_on desk)' without quorum"
log "without quorum: '$out'"
log "ok"
