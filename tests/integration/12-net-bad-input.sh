#!/usr/bin/env bash
# Bad network input, in a namespace of the test's own: invalid and
# overlapping subnets (with each other and with the host's routes), names
# too long, unknown modes and networks, uplink
# mistakes, a full subnet, `net rm` in use, too many NICs, and a host
# without /dev/net/tun.  Each is one clear line and a non-zero exit, and
# leaves nothing behind: no network, bridge, VM or lease.  Bridge mode
# with a real (veth) uplink works and lets the uplink go on `net rm`.
# When nft fails, a new network is taken down again and a VM with a NIC
# does not run: its TAP would have no rules.
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/netlib.sh"

# Only these qdesk bridges exist in the namespace, and only these
# networks in qmpd.
only_nets() {
	local want=$*
	[ "$(q --json net list | jq -r '[.networks[].name] | join(" ")')" = \
	    "$want" ] || fail "networks: $(q --json net list | jq -c .networks)"
	[ "$(nsx ip -o link show type bridge | awk -F': ' '{print $2}' |
	    sed 's/^qbr//' | sort | tr '\n' ' ' | sed 's/ $//')" = \
	    "$(printf '%s\n' $want | sort | tr '\n' ' ' | sed 's/ $//')" ] ||
		fail "bridges: $(nsx ip -o link show type bridge)"
}

leases() { q --json net show "$1" | jq '.leases | length'; }

start_qmpd
q_refused "invalid" net create a --subnet banana
q_refused "10.1.0.0/33" net create a --subnet 10.1.0.0/33
q_refused "host bits" net create a --subnet 10.1.0.5/24
q_refused "/29" net create a --subnet 10.1.0.0/30
q_refused "/16" net create a --subnet 10.0.0.0/8
q_refused "too long" net create abcdefghijklm --subnet 10.1.0.0/24
q_refused "invalid network name" net create Bad! --subnet 10.1.0.0/24
q_refused "unknown network mode wifi" net create a --subnet 10.1.0.0/24 \
    --mode wifi
q_refused "needs an uplink" net create a --subnet 10.1.0.0/24 --mode bridge
q_refused "only for bridge mode" net create a --subnet 10.1.0.0/24 \
    --uplink eth0
q_refused "no interface named nosuch0" net create a --subnet 10.1.0.0/24 \
    --mode bridge --uplink nosuch0
q_refused "loopback" net create a --subnet 10.1.0.0/24 --mode bridge \
    --uplink lo
only_nets ""

qq net create office --subnet 10.77.0.0/24 >/dev/null
q_refused "overlaps network office" net create big --subnet 10.77.0.0/16
q_refused "overlaps network office" net create half --subnet 10.77.0.128/25
q_refused "already exists" net create office --subnet 10.99.0.0/24
# The host's own LAN (here a veth in the namespace) is not for desktops;
# the default route does not count.
nsx ip link add hostlan type veth peer name hostlan1 &&
	nsx ip addr add 10.250.0.1/16 dev hostlan && nsx ip link set hostlan1 up &&
	nsx ip link set hostlan up && nsx ip route add default dev hostlan ||
	fail "the namespace's LAN"
q_refused "subnet 10.250.3.0/24 overlaps the host's route 10.250.0.0/16 on hostlan" \
    net create lan --subnet 10.250.3.0/24
q_refused "overlaps the host's route 10.250.0.0/16" net create lan --subnet 10.250.0.0/16
q_refused "no network named ghost" net show ghost
q_refused "no network named ghost" net rm ghost
only_nets office

# VMs on networks that are not there, or on too many.
q_refused "no network named ghost" vm create v0 --accel tcg \
    --kernel "$GUESTS/vmlinuz" --net office --net ghost
q_refused "at most 8 NICs" vm create v0 --accel tcg --kernel "$GUESTS/vmlinuz" \
    $(for i in $(seq 1 9); do echo --net office; done)
q_status 1 vm show v0
[ "$(leases office)" = 0 ] || fail "a q_refused VM left a lease"
q_refused "no VM named ghost" vm nic-add ghost office
guest_create v0
q_refused "no network named ghost" vm nic-add v0 ghost
q_refused "invalid MAC" vm nic-rm v0 zz:zz
q_refused "no NIC with MAC" vm nic-rm v0 52:54:00:00:00:01

# A /29 holds five NICs; the sixth VM is q_refused whole.
qq net create tiny --subnet 10.90.0.0/29 >/dev/null
for i in 1 2 3 4 5; do
	guest_create v$i tiny
done
[ "$(nic_field v5 0 ip)" = 10.90.0.6 ] || fail "v5: $(nic_field v5 0 ip)"
q_refused "network tiny is full" vm create v6 --accel tcg \
    --kernel "$GUESTS/vmlinuz" --net tiny
q_status 1 vm show v6
[ "$(leases tiny)" = 5 ] || fail "tiny has $(leases tiny) leases, not 5"
qq vm delete v3 >/dev/null
[ "$(leases tiny)" = 4 ] || fail "v3's lease kept"
guest_create v6 tiny
[ "$(nic_field v6 0 ip)" = 10.90.0.4 ] ||
	fail "v6 did not get v3's address: $(nic_field v6 0 ip)"
grep -q "10.90.0.4,v6" "$STATE/net/tiny.dhcp-hosts" ||
	fail "dnsmasq's hosts file lacks v6"

# net rm: q_refused in use, then complete.
q_refused "in use by VMs" net rm tiny
dns=$(q --json net show tiny | jq -r .dhcp)
for i in 1 2 4 5 6; do
	qq vm delete v$i >/dev/null
done
qq net rm tiny >/dev/null
only_nets office
sleep 0.2
alive "$dns" && fail "tiny's dnsmasq $dns outlived it"
[ -e "$STATE/net/tiny.conf" ] && fail "tiny's files outlived it"

# Bridge mode on a veth uplink; an uplink serves one network.
nsx ip link add up0 type veth peer name up1 || fail "veth"
qq net create lan --subnet 192.168.50.0/24 --mode bridge --uplink up0 >/dev/null
[ "$(tap_master up0)" = qbrlan ] || fail "up0 not enslaved to qbrlan"
[ "$(q --json net show lan | jq -r .dhcp)" = null ] ||
	fail "bridge mode runs a dnsmasq"
q_refused "uplink up0 is taken by network lan" net create lan2 \
    --subnet 192.168.51.0/24 --mode bridge --uplink up0
guest_create vb lan
[ "$(nic_field vb 0 ip)" = null ] || fail "bridge mode leased an address"
qq vm delete vb >/dev/null
qq net rm lan >/dev/null
[ -z "$(tap_master up0)" ] || fail "up0 still enslaved after net rm"
nsx ip link show up0 >/dev/null 2>&1 || fail "net rm took the uplink away"
only_nets office

# nft fails: no network half-made, no guest running without its rules.
touch "$T/nft-fail"
q_refused "injected by the test" net create broken --subnet 10.55.0.0/24
only_nets office
[ -e "$STATE/net/broken.conf" ] && fail "broken's files were left"
guest_create f1 office
q_status 1 vm start f1
grep -q "network rules: nft failed.*injected by the test" "$T/last.err" ||
	fail "start without rules: $(cat "$T/last.err")"
[ "$(vm_field f1 state)" = crashed ] || fail "f1 is $(vm_field f1 state)"
# crashed is said first, then QEMU quits and its TAP goes with it. Until
# qmpd has seen that QEMU go, f1 cannot be started again: a second QEMU
# would be started beside it, and one of the two lost.
q_status 1 vm start f1
grep -q -e "has not exited yet" -e "injected by the test" "$T/last.err" ||
	fail "a start right after a failed one: $(cat "$T/last.err")"
for i in $(seq 1 100); do
	[ "$(vm_field f1 pid)" = null ] && break
	sleep 0.1
done
[ "$(vm_field f1 pid)" = null ] || fail "f1's QEMU did not go"
[ -z "$(nsx ip -o link show | grep qtap)" ] || fail "f1 left a TAP"
rm -f "$T/nft-fail"
qq vm start f1 >/dev/null
# Exactly one QEMU of f1 runs, the one qmpd knows.
uuid=$(vm_field f1 uuid)
qemus=$(pgrep -f -- "$uuid" | sort | xargs)
[ "$qemus" = "$(vm_field f1 pid)" ] ||
	fail "f1's QEMUs: '$qemus', qmpd knows $(vm_field f1 pid)"
[ "$(tap_master "$(nic_field f1 0 tap)")" = qbroffice ] ||
	fail "f1's TAP is not on qbroffice once nft works"
qq vm kill f1 >/dev/null
qq vm delete f1 >/dev/null

# No /dev/net/tun: a VM with a NIC does not start, a hotplug is refused,
# and neither leaves a TAP, a lease or a NIC behind.
stop_qmpd
export NO_TUN=1
start_qmpd
unset NO_TUN
guest_create n1 office
q_status 1 vm start n1
grep -q "/dev/net/tun" "$T/last.err" || fail "start: $(cat "$T/last.err")"
[ "$(vm_field n1 state)" = stopped ] || fail "n1 is $(vm_field n1 state)"
[ -z "$(nsx ip -o link show | grep qtap)" ] || fail "a TAP was left"
[ "$(leases office)" = 1 ] || fail "office leases: $(leases office)"
qq vm start v0 >/dev/null
q_status 1 vm nic-add v0 office
grep -q "/dev/net/tun" "$T/last.err" || fail "nic-add: $(cat "$T/last.err")"
[ "$(q --json vm show v0 | jq '.nics | length')" = 0 ] ||
	fail "a failed hotplug left a NIC: $(q --json vm show v0 | jq -c .nics)"
[ "$(leases office)" = 1 ] || fail "a failed hotplug left a lease"
[ "$(vm_field v0 state)" = running ] || fail "v0 is $(vm_field v0 state)"
log ok
