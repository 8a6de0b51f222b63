#!/usr/bin/env bash
# NIC hotplug, in a namespace of the test's own: a NIC added to a running
# guest appears in it as eth1 and gets its IPAM address by DHCP; removed,
# it leaves the guest, its TAP goes and its address is free again; NICs of
# a stopped VM change its definition only; a VM restarted after a hotplug
# boots with both NICs; a q35 guest takes NICs on its spare root ports.
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/netlib.sh"

start_qmpd
qq net create office --subnet 10.77.0.0/24 >/dev/null
qq net create lab --subnet 10.78.0.0/24 --mode isolated >/dev/null
guest_create d1 office
qq vm create q1 --machine q35 --accel tcg --memory 128 --display none \
    --kernel "$GUESTS/vmlinuz" --initrd "$GUESTS/initrd.img" \
    --append "console=ttyS0 no_timer_check" >/dev/null
qq vm start d1 >/dev/null
qq vm start q1 >/dev/null
wait_console d1 "QDESK IP=eth0 10.77.0.2/24" 90
guest_ready d1
guest_sh d1 "ip link show eth1" && fail "d1 has an eth1 before the hotplug"

# Hotplug: the reply names the new NIC, the guest sees it at once.
t0=$(date +%s%N)
out=$(q --json vm nic-add d1 lab) || fail "nic-add: $out"
log "nic-add on a running guest took $(( ($(date +%s%N) - t0) / 1000000 )) ms"
mac=$(jq -r .mac <<<"$out") ip=$(jq -r .ip <<<"$out") tap=$(jq -r .tap <<<"$out")
[ "$ip" = 10.78.0.2 ] || fail "hotplugged NIC got $ip"
[ "$(tap_master "$tap")" = qbrlab ] || fail "$tap not on qbrlab"
[ "$(q --json vm show d1 | jq -r '[.nics[].network] | join(" ")')" = \
    "office lab" ] || fail "vm show: $(q --json vm show d1 | jq -c .nics)"
guest_until d1 "ip link show eth1 2>/dev/null | grep -q '$mac'" ||
	fail "no eth1 with $mac in the guest"
guest_sh d1 "ip link set eth1 up && udhcpc -n -q -t 5 -T 1 -i eth1 -s /usr/share/udhcpc/default.script" 30 ||
	fail "no DHCP answer on eth1"
wait_console d1 "QDESK IP=eth1 $ip/24" 10
guest_ping d1 10.78.0.1 || fail "d1 cannot ping lab's gateway through eth1"
guest_ping d1 10.77.0.1 || fail "d1 lost office after the hotplug"

# Unplug: gone from the guest, the host and the leases.
t0=$(date +%s%N)
qq vm nic-rm d1 "$mac" >/dev/null
log "nic-rm on a running guest took $(( ($(date +%s%N) - t0) / 1000000 )) ms"
guest_until d1 "! ip link show eth1 2>/dev/null" ||
	fail "eth1 still in the guest"
nsx ip link show "$tap" >/dev/null 2>&1 && fail "$tap outlived its NIC"
[ "$(q --json net show lab | jq '.leases | length')" = 0 ] ||
	fail "lab lease kept: $(q --json net show lab | jq -c .leases)"
[ "$(q --json vm show d1 | jq '.nics | length')" = 1 ] ||
	fail "the NIC is still defined"
q_status 1 vm nic-rm d1 "$mac"
grep -q "no NIC with MAC" "$T/last.err" || fail "nic-rm twice: $(cat "$T/last.err")"

# q35: PCIe hotplug through the root port of the NIC's id.
guest_ready q1
out=$(q --json vm nic-add q1 office) || fail "nic-add q35: $out"
qmac=$(jq -r .mac <<<"$out")
guest_until q1 "ip link show eth0 2>/dev/null | grep -q '$qmac'" ||
	fail "no NIC with $qmac in the q35 guest"
qq vm nic-rm q1 "$qmac" >/dev/null
guest_until q1 "! ip link show eth0 2>/dev/null" ||
	fail "the NIC stayed in the q35 guest"
qq vm stop q1 --force >/dev/null

# A stopped VM: the definition changes, nothing else.
guest_create d2
out=$(q --json vm nic-add d2 lab) || fail "nic-add stopped: $out"
[ "$(jq -r .ip <<<"$out")" = 10.78.0.2 ] ||
	fail "the freed address was not reused: $out"
[ "$(jq -r .tap <<<"$out")" = null ] || fail "a stopped VM got a TAP"
qq vm nic-rm d2 "$(jq -r .mac <<<"$out")" >/dev/null
[ "$(q --json net show lab | jq '.leases | length')" = 0 ] ||
	fail "stopped nic-rm kept the lease"

# Hotplugged, then restarted: both NICs from boot, same addresses.
out=$(q --json vm nic-add d1 lab) || fail "nic-add again: $out"
mac=$(jq -r .mac <<<"$out") ip=$(jq -r .ip <<<"$out")
qq vm stop d1 --force >/dev/null
: >"$STATE/vms/d1/serial.log"		# the new boot's lines only
qq vm start d1 >/dev/null
guest_ready d1
guest_sh d1 "ip link show eth1 | grep -q '$mac'" ||
	fail "eth1 missing after the restart"
[ "$(nic_field d1 1 ip)" = "$ip" ] || fail "the address changed on restart"
log ok
