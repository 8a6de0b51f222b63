#!/usr/bin/env bash
# Networks end to end, in a namespace of the test's own: two guests on a
# nat network get their IPAM addresses by DHCP, ping each other and the
# gateway, resolve each other's names and reach the outside masqueraded;
# a guest on an isolated network reaches its gateway but not them, nor
# they it, nor the outside; a spoofed source address gets nothing
# through; `vm stop` takes the TAP away; after kill -9, with the bridges
# deleted behind qmpd's back, a new qmpd brings them back and networks,
# MACs and addresses are the same, dnsmasq serves again and the guests
# still ping; a dnsmasq that dies comes back.
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/netlib.sh"

outside_ns
start_qmpd
qq net create office --subnet 10.77.0.0/24 >/dev/null
qq net create lab --subnet 10.78.0.0/24 --mode isolated >/dev/null
[ "$(q --json net show office | jq -r .gateway)" = 10.77.0.1 ] ||
	fail "office has no gateway"
nsx ip -o addr show qbroffice | grep -q "inet 10.77.0.1/24" ||
	fail "bridge qbroffice has no gateway address"
nsx ip -o addr show qbrlab | grep -q "inet 10.78.0.1/24" ||
	fail "bridge qbrlab has no gateway address"

guest_create d1 office
guest_create d2 office
guest_create d3 lab
# IPAM: lowest addresses first, 52:54:00 MACs, all different.
ip1=$(nic_field d1 0 ip) ip2=$(nic_field d2 0 ip) ip3=$(nic_field d3 0 ip)
[ "$ip1 $ip2 $ip3" = "10.77.0.2 10.77.0.3 10.78.0.2" ] ||
	fail "IPAM order: $ip1 $ip2 $ip3"
mac1=$(nic_field d1 0 mac) mac2=$(nic_field d2 0 mac)
mac3=$(nic_field d3 0 mac)
for m in $mac1 $mac2 $mac3; do
	case $m in 52:54:00:??:??:??) ;; *) fail "bad MAC $m" ;; esac
done
[ "$(printf '%s\n' $mac1 $mac2 $mac3 | sort -u | wc -l)" = 3 ] ||
	fail "MACs not unique: $mac1 $mac2 $mac3"
[ "$(q --json net show office | jq -c '[.leases[].vm]')" = '["d1","d2"]' ] ||
	fail "office leases: $(q --json net show office | jq -c .leases)"

t0=$(date +%s%N)
for d in d1 d2 d3; do
	qq vm start $d >/dev/null
done
tap1=$(nic_field d1 0 tap) tap3=$(nic_field d3 0 tap)
[ "$(tap_master "$tap1")" = qbroffice ] || fail "$tap1 not on qbroffice"
[ "$(tap_master "$tap3")" = qbrlab ] || fail "$tap3 not on qbrlab"
nsx nft list table bridge qdesk | grep -q "\"$tap1\"" ||
	fail "no anti-spoofing chain for $tap1"

# DHCP hands each MAC its IPAM address.
wait_console d1 "QDESK IP=eth0 $ip1/24" 90
wait_console d2 "QDESK IP=eth0 $ip2/24" 90
wait_console d3 "QDESK IP=eth0 $ip3/24" 90
log "three guests had their DHCP addresses" \
    "$(( ($(date +%s%N) - t0) / 1000000 )) ms after vm start"
for d in d1 d2 d3; do
	guest_ready $d
done

guest_ping d1 "$ip2" || fail "d1 cannot ping d2"
guest_ping d2 "$ip1" || fail "d2 cannot ping d1"
guest_ping d1 10.77.0.1 || fail "d1 cannot ping its gateway"
guest_ping d3 10.78.0.1 || fail "d3 cannot ping its gateway"
guest_sh d1 "nslookup d2 10.77.0.1 | grep -q 'Address: $ip2'" ||
	fail "d2 does not resolve on office"
guest_ping d1 192.0.2.2 || fail "d1 cannot reach the outside through NAT"
guest_ping d3 192.0.2.2 && fail "isolated d3 reaches the outside"

# Isolation: a route is no way through, in either direction.
guest_sh d3 "ip route add 10.77.0.0/24 via 10.78.0.1" ||
	fail "d3: route add"
guest_ping d3 "$ip1" && fail "isolated d3 reaches d1"
guest_ping d1 "$ip3" && fail "d1 reaches isolated d3"
log "isolation holds between office and lab"

# Anti-spoofing: d2 sending from an address not its own gets nowhere;
# from its own, through the same ARP cache, it does.
guest_sh d2 "ip addr add 10.77.0.99/32 dev eth0" || fail "d2: addr add"
guest_ping d2 "-I 10.77.0.99 $ip1" && fail "a spoofed source got through"
guest_ping d2 "-I $ip2 $ip1" || fail "d2's own address refused"

# A TAP goes with its VM.
qq vm stop d3 --timeout 30 >/dev/null
[ "$(vm_field d3 state)" = stopped ] || fail "d3 not stopped"
nsx ip link show "$tap3" >/dev/null 2>&1 && fail "$tap3 outlived d3"
[ "$(nic_field d3 0 tap)" = null ] || fail "vm show still lists a TAP for d3"
nsx nft list table bridge qdesk | grep -q "\"$tap3\"" &&
	fail "rules for $tap3 outlived d3"
[ "$(nic_field d3 0 ip)" = "$ip3" ] || fail "d3 lost its address on stop"

# kill -9 and a new qmpd: same networks, MACs and addresses.
q --json net list | jq -S '[.networks[] | del(.dhcp)]' >"$T/nets.before"
for d in d1 d2 d3; do
	q --json vm show $d | jq -S -c .nics
done >"$T/nics.before"
dns1=$(q --json net show office | jq -r .dhcp)
kill9_qmpd
# The host loses both bridges (as in a reboot); d1 and d2 keep running.
nsx ip link del qbroffice || fail "ip link del qbroffice"
nsx ip link del qbrlab || fail "ip link del qbrlab"
[ -z "$(tap_master "$tap1")" ] || fail "$tap1 kept a master"
start_qmpd
nsx ip -o addr show qbroffice | grep -q "inet 10.77.0.1/24" ||
	fail "qbroffice not recreated with its gateway"
nsx ip -o addr show qbrlab | grep -q "inet 10.78.0.1/24" ||
	fail "qbrlab not recreated with its gateway"
[ "$(tap_master "$tap1")" = qbroffice ] || fail "$tap1 not back on qbroffice"
q --json net list | jq -S '[.networks[] | del(.dhcp)]' >"$T/nets.after"
for d in d1 d2 d3; do
	q --json vm show $d | jq -S -c .nics
done >"$T/nics.after"
cmp -s "$T/nets.before" "$T/nets.after" ||
	fail "networks changed: $(diff "$T/nets.before" "$T/nets.after")"
cmp -s "$T/nics.before" "$T/nics.after" ||
	fail "NICs changed: $(diff "$T/nics.before" "$T/nics.after")"
dns2=$(q --json net show office | jq -r .dhcp)
[ "$dns2" != "$dns1" ] && [ "$dns2" != null ] ||
	fail "dnsmasq not replaced: $dns1 -> $dns2"
alive "$dns1" && fail "the old dnsmasq $dns1 is still running"
[ "$(vm_field d1 state)" = running ] || fail "d1 not running after restart"
nsx nft list table bridge qdesk | grep -q "\"$tap1\"" ||
	fail "rules for $tap1 lost in the restart"
guest_ping d1 "$ip2" || fail "d1 cannot ping d2 after the restart"
guest_ping d2 10.77.0.1 || fail "d2 cannot ping its gateway after the restart"
guest_ping d1 192.0.2.2 || fail "d1 lost the outside after the restart"
# The new dnsmasq serves: a renewal from scratch gets the same address.
guest_sh d2 "udhcpc -n -q -t 5 -T 1 -i eth0 -s /usr/share/udhcpc/default.script" 30 ||
	fail "d2: no DHCP answer from the new dnsmasq"
[ "$(grep -ac "QDESK IP=eth0 $ip2/24" "$STATE/vms/d2/serial.log")" -ge 2 ] ||
	fail "d2 got another address on renewal"

# A dnsmasq that dies is restarted.
kill -9 "$dns2"
for i in $(seq 1 50); do
	dns3=$(q --json net show office | jq -r .dhcp)
	[ "$dns3" != null ] && [ "$dns3" != "$dns2" ] && break
	sleep 0.1
done
[ "$dns3" != null ] && [ "$dns3" != "$dns2" ] ||
	fail "dnsmasq not restarted after kill -9"
sleep 0.3
alive "$dns3" || fail "restarted dnsmasq $dns3 died"

# A network in use stays.
q_status 1 net rm office
grep -q "in use by VMs d1, d2" "$T/last.err" ||
	fail "net rm in use: $(cat "$T/last.err")"
nsx ip link show qbroffice >/dev/null 2>&1 || fail "qbroffice went anyway"
log ok
