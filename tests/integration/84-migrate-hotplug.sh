#!/usr/bin/env bash
# Live migration of desktops whose NICs changed while they ran (issue 14),
# on `scripts/cluster up 2`: each host has nat networks "office"
# (10.77.0.0/24) and "lab" (10.79.0.0/24), and for the second desktop
# qoffice and qlab (leases are per host: two desktops placed on two
# hosts must not share a subnet to migrate side by side). Two TCG Linux guests boot
# with a NIC on office: desk (pc, with a guest agent port, whose
# virtio-serial device comes after the NICs) and deskq (q35). A NIC on
# lab is hot-added to each: on pc QEMU puts it in the first free slot,
# after the agent's device; on q35 behind its spare root port. Built from
# the definition either would sit elsewhere, and the stream would not
# load. desk's guest gets lab's address by DHCP and reaches lab's
# gateway. The source's qmpd is killed (-9) and restarted; then both
# migrate: the guests reach the target's lab gateway through the
# hot-added NICs, the target's records name both NICs. Then desk's
# boot-time NIC is removed on the target (a hole: the devices after it
# would shift) and desk migrates back, lab still reachable; a stop and
# start boots it from the definition (one NIC).
. "$(dirname "$0")/lib.sh"

[ "$(id -u)" = 0 ] || skip "needs root (network namespaces)"
for t in ip nft dnsmasq socat jq; do
	command -v $t >/dev/null 2>&1 || skip "$t not installed"
done
[ -c /dev/net/tun ] || skip "no /dev/net/tun"
[ -f "$GUESTS/vmlinuz" ] || skip "no tiny guests: run scripts/mkguest"
. "$top/tests/lib/cluster-lib.sh"

cluster_test_up 2 5 5

# Until CMD succeeds in the guest (hotplug takes the guest a moment).
hguest_until() { # H VM CMD
	local i
	for i in $(seq 1 20); do
		hguest_sh "$1" "$2" "$3" 10 && return 0
		sleep 0.5
	done
	return 1
}

# kill -9 host h's qmpd (its QEMUs run on) and start it again.
kill9_qmpd() {
	local h=$1 ns st conf lg pf pid i
	ns=${h}_NETNS st=${h}_STATE conf=${h}_CONF lg=${h}_LOG pf=${h}_PIDFILE
	pid=$(cat "${!pf}")
	kill -9 "$pid" 2>/dev/null
	for i in $(seq 1 100); do
		alive "$pid" || break
		sleep 0.1
	done
	alive "$pid" && fail "qmpd of $h outlived kill -9"
	( setsid ip netns exec "${!ns}" "$QMPD" -f -v --state-dir "${!st}" \
	    --cluster "${!conf}" >>"${!lg}" 2>&1 </dev/null &
	echo $! >"${!pf}" )
	for i in $(seq 1 300); do
		[ "$(hq "$h" --json vm list 2>/dev/null | jq "[.vms[] | select(.state == \"running\")] | length")" -ge 1 ] 2>/dev/null &&
			return 0
		sleep 0.1
	done
	fail "qmpd of $h did not come back with its VMs running: $(tail -n 5 "${!lg}")"
}

migrate() { # VM FROM TO
	local out t0
	t0=$(date +%s%N)
	out=$(hq "$2" --json vm migrate "$1" "$3" 2>&1) ||
		fail "migrate $1 $2 -> $3: $out"
	[ "$(runs_on "$1")" = "$3" ] || fail "after $2 -> $3 $1 runs on '$(runs_on "$1")'"
	log "migrated $1 $2 -> $3 in $(( ($(date +%s%N) - t0) / 1000000 )) ms, downtime $(echo "$out" | jq .migration.downtime_ms) ms"
}

for h in $HOSTS; do
	hqq "$h" net create office --subnet 10.77.0.0/24 >/dev/null
	hqq "$h" net create lab --subnet 10.79.0.0/24 >/dev/null
	hqq "$h" net create qoffice --subnet 10.80.0.0/24 >/dev/null
	hqq "$h" net create qlab --subnet 10.81.0.0/24 >/dev/null
done
hqq h1 vm create desk --accel tcg --memory 256 --agent \
    --kernel "$GUESTS/vmlinuz" --initrd "$GUESTS/initrd.img" \
    --append "console=ttyS0 no_timer_check" --display none --net office >/dev/null
hqq h1 vm create deskq --accel tcg --memory 256 --machine q35 \
    --kernel "$GUESTS/vmlinuz" --initrd "$GUESTS/initrd.img" \
    --append "console=ttyS0 no_timer_check" --display none --net qoffice >/dev/null
hqq h1 vm start desk >/dev/null
src=$(runs_on desk)
case $src in h1|h2) ;; *) fail "desk runs on '$src'" ;; esac
dst=$(other "$src")
hqq h1 vm start deskq >/dev/null
qsrc=$(runs_on deskq)
case $qsrc in h1|h2) ;; *) fail "deskq runs on '$qsrc'" ;; esac
qdst=$(other "$qsrc")
hwait_console "$src" desk "QDESK IP=eth0 10.77.0" 120
hwait_console "$qsrc" deskq "QDESK IP=eth0 10.80.0" 120

# 10:00, a NIC on lab added to the running desktop.
out=$(hq "$src" --json vm nic-add desk lab) || fail "nic-add: $out"
mac=$(echo "$out" | jq -r .mac) ip=$(echo "$out" | jq -r .ip)
mac0=$(hqq "$src" --json vm show desk | jq -r '.nics[0].mac')
hguest_until "$src" desk "ip link show eth1 | grep -q '$mac'" ||
	fail "no eth1 with $mac in the guest"
hguest_sh "$src" desk "ip link set eth1 up && udhcpc -n -q -t 5 -T 1 -i eth1 -s /usr/share/udhcpc/default.script" 30 ||
	fail "no DHCP answer on eth1"
hwait_console "$src" desk "QDESK IP=eth1 $ip/24" 10
hguest_sh "$src" desk "ping -c 1 -W 2 10.79.0.1" || fail "desk cannot reach lab's gateway on $src"
log "hot-added NIC $mac got $ip on $src"
out=$(hq "$qsrc" --json vm nic-add deskq qlab) || fail "nic-add deskq: $out"
qmac=$(echo "$out" | jq -r .mac) qip=$(echo "$out" | jq -r .ip)
hguest_until "$qsrc" deskq "ip link show eth1 | grep -q '$qmac'" ||
	fail "no eth1 with $qmac in deskq"
hguest_sh "$qsrc" deskq "ip link set eth1 up && ip addr add $qip/24 dev eth1 && ping -c 1 -W 2 10.81.0.1" ||
	fail "deskq cannot reach lab's gateway on $qsrc"

# A qmpd restart between the hotplug and the migration.
for h in $(printf '%s\n' "$src" "$qsrc" | sort -u); do
	kill9_qmpd "$h"
	log "qmpd of $h killed (-9) and restarted"
done

# 11:00, the host is drained: desk moves with both NICs.
migrate desk "$src" "$dst"
migrate deskq "$qsrc" "$qdst"
hguest_sh "$qdst" deskq "ping -c 1 -W 2 10.81.0.1" ||
	fail "deskq cannot reach lab's gateway on $qdst through the hot-added NIC"
hguest_sh "$dst" desk "ip -o -4 addr show eth1 | grep -q ' $ip/24' && ping -c 1 -W 2 10.79.0.1" ||
	fail "desk cannot reach lab's gateway on $dst through the hot-added NIC"
hguest_sh "$dst" desk "ping -c 1 -W 2 10.77.0.1" || fail "desk lost office on $dst"
got=$(hqq "$dst" --json vm show desk | jq -r '[.nics[] | .network + " " + .mac] | join(",")')
[ "$got" = "office $mac0,lab $mac" ] || fail "NICs on $dst: $got"
log "on $dst both NICs work: ok"

# The boot-time NIC removed on the target, and back.
hqq "$dst" vm nic-rm desk "$mac0" >/dev/null
hguest_until "$dst" desk "! ip link show eth0 2>/dev/null" || fail "eth0 still in the guest"
migrate desk "$dst" "$src"
hguest_sh "$src" desk "ping -c 1 -W 2 10.79.0.1" ||
	fail "desk cannot reach lab's gateway on $src after the removal"
got=$(hqq "$src" --json vm show desk | jq -r '[.nics[] | .network + " " + .mac] | join(",")')
[ "$got" = "lab $mac" ] || fail "NICs on $src after the removal: $got"
log "a NIC removed while it ran migrates: ok"

# A stop and start boots from the definition: one NIC, on lab.
hqq "$qdst" vm kill deskq >/dev/null
hqq "$src" vm stop desk --force >/dev/null
for h in $HOSTS; do
	[ -f "$(state_of "$h")/vms/desk/serial.log" ] && : >"$(state_of "$h")/vms/desk/serial.log"
done
hqq "$src" vm start desk >/dev/null
h=$(runs_on desk)
hwait_console "$h" desk "QDESK GUEST READY" 120
hguest_sh "$h" desk "ip link show eth0 | grep -q '$mac' && ! ip link show eth1 2>/dev/null" ||
	fail "after a restart the guest's NICs are not the definition's"
log "ok"
