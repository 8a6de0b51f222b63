#!/bin/sh
#
# netctl's generated texts against the real tools, in network namespaces
# this script creates and removes (trap EXIT), never touching the host's:
#
#   qdt-nc-host-PID   the "host": bridges qbra (nat) and qbrb (isolated)
#                     made by netctl, dnsmasq, the nft ruleset
#   qdt-nc-a-PID      guest desk1 on a (veth qtapv0 <-> eth0, its IPAM MAC)
#   qdt-nc-b-PID      guest desk3 on b (veth qtapv1 <-> eth0, static)
#   qdt-nc-out-PID    "the outside", behind uplink veth up0 on the host
#
# Checks: nft -c accepts the ruleset and nft -f applies it twice (atomic
# replace) without touching another table; dnsmasq --test accepts the
# config; dnsmasq runs, gives desk1 its IPAM address by DHCP (busybox
# udhcpc) and resolves VM names; desk1 pings the gateway and, masqueraded,
# the outside; desk3 (isolated) reaches neither the outside nor desk1, and
# desk1 not desk3 until the qdesk tables are deleted; a spoofed source IP
# or MAC gets nothing through; and as a control, all of the refused
# traffic passes once the qdesk tables are deleted.
#
# Usage: test-netctl-tools.sh PATH-TO-test-netctl-gen.  Exit 77 = skipped.

set -u
gen=$1

if [ "$(id -u)" != 0 ]; then
	echo "SKIP: needs root"
	exit 77
fi
for t in ip nft dnsmasq busybox; do
	if ! command -v $t >/dev/null 2>&1; then
		echo "SKIP: $t not installed (Debian: iproute2 nftables" \
		    "dnsmasq-base busybox)"
		exit 77
	fi
done

h=qdt-nc-host-$$
a=qdt-nc-a-$$
b=qdt-nc-b-$$
o=qdt-nc-out-$$
tmp=$(mktemp -d /tmp/qdt-netctl-XXXXXX) || exit 1
dpid=
failed=0

cleanup() {
	# dnsmasq runs under ip netns exec in a subshell: $dpid is not
	# dnsmasq itself, its pid file is.
	if [ -s "$tmp/a.pid" ]; then
		kill "$(cat "$tmp/a.pid")" 2>/dev/null
	fi
	if [ -n "$dpid" ]; then
		kill "$dpid" 2>/dev/null
		wait "$dpid" 2>/dev/null
	fi
	for n in $h $a $b $o; do
		ip netns del "$n" 2>/dev/null
	done
	rm -rf "$tmp"
}
trap cleanup EXIT
trap 'exit 1' INT TERM HUP

fail() {
	echo "FAIL: $*"
	failed=1
}
ok() {
	echo "ok: $*"
}
inh() { ip netns exec $h "$@"; }
ina() { ip netns exec $a "$@"; }
inb() { ip netns exec $b "$@"; }
ino() { ip netns exec $o "$@"; }
# ping NS ADDR [SOURCE]: one echo, 2 s at most.
pings() {
	ns=$1
	dst=$2
	shift 2
	ip netns exec "$ns" busybox ping -c 1 -W 2 "$@" "$dst" >/dev/null 2>&1
}

for n in $h $a $b $o; do
	ip netns add "$n" || { echo "cannot create namespace $n"; exit 1; }
	ip netns exec "$n" ip link set lo up
done
# dnsmasq drops to nobody after start: let it read its host files.
chmod 755 "$tmp"

# The host side, built by netctl exactly as qmpd will.
if ! inh "$gen" setup "$tmp" >"$tmp/leases"; then
	echo "FAIL: setup"
	exit 1
fi
set -- $(grep '^desk1 ' "$tmp/leases")
mac1=$2 ip1=$3
set -- $(grep '^desk2 ' "$tmp/leases")
ip2=$3
set -- $(grep '^desk3 ' "$tmp/leases")
mac3=$2 ip3=$3
[ "$ip1" = 10.77.0.2 ] && [ "$ip2" = 10.77.0.3 ] && [ "$ip3" = 10.78.0.2 ] ||
    fail "IPAM order: $ip1 $ip2 $ip3"

# --- nftables -----------------------------------------------------------
if inh nft -c -f "$tmp/ruleset.nft"; then
	ok "nft -c -f accepts the ruleset"
else
	fail "nft -c -f rejects the ruleset"
fi
inh "$gen" check "$tmp/ruleset.nft" || fail "netctl_nft_check"
inh nft add table ip other
inh nft add chain ip other c
for i in 1 2; do
	inh "$gen" apply "$tmp/ruleset.nft" || fail "netctl_nft_apply #$i"
done
tables=$(inh nft list tables | sort | tr '\n' ' ')
[ "$tables" = "table bridge qdesk table inet qdesk table ip other " ] ||
    fail "tables after apply: $tables"
inh nft list chain ip other c >/dev/null || fail "another table was touched"
printf 'table inet qdesk {\n\tchain x { bogus; }\n}\n' >"$tmp/bad.nft"
if inh "$gen" apply "$tmp/bad.nft" 2>"$tmp/bad.err"; then
	fail "a broken ruleset was applied"
elif ! grep -q "nft failed" "$tmp/bad.err"; then
	fail "no clear error for a broken ruleset: $(cat "$tmp/bad.err")"
fi
inh nft list chain inet qdesk forward >/dev/null ||
    fail "a failed apply lost the rules"
ok "nft apply, replace, refusal"

# --- guests and the outside ----------------------------------------------
inh ip link add qtapv0 type veth peer name eth0 netns $a
inh ip link set qtapv0 master qbra up
ina ip link set eth0 address "$mac1" up
inh ip link add qtapv1 type veth peer name eth0 netns $b
inh ip link set qtapv1 master qbrb up
inb ip link set eth0 address "$mac3" up
inb ip addr add "$ip3/24" dev eth0
inb ip route add default via 10.78.0.1
inh ip link add up0 type veth peer name eth0 netns $o
inh ip addr add 192.0.2.1/24 dev up0
inh ip link set up0 up
ino ip addr add 192.0.2.2/24 dev eth0
ino ip link set eth0 up
# A route back to b but not to a: a gets out only masqueraded, and b
# would get out, were it not isolated.
ino ip route add 10.78.0.0/24 via 192.0.2.1

# --- dnsmasq ------------------------------------------------------------
for n in a b; do
	if inh dnsmasq --test --conf-file="$tmp/$n.conf" 2>&1 |
	    grep -q "syntax check OK"; then
		ok "dnsmasq --test accepts $n.conf"
	else
		fail "dnsmasq --test rejects $n.conf:" \
		    "$(inh dnsmasq --test --conf-file="$tmp/$n.conf" 2>&1)"
	fi
done
inh dnsmasq --conf-file="$tmp/a.conf" --keep-in-foreground \
    >"$tmp/dnsmasq.log" 2>&1 &
dpid=$!
sleep 1
if kill -0 "$dpid" 2>/dev/null; then
	ok "dnsmasq runs"
else
	fail "dnsmasq died: $(cat "$tmp/dnsmasq.log")"
	dpid=
fi
[ -s "$tmp/a.pid" ] || fail "no dnsmasq pid file"

cat >"$tmp/udhcpc.sh" <<EOF
#!/bin/sh
case "\$1" in
bound|renew)
	echo "\$ip \$mask \$router \$dns" >"$tmp/dhcp.out"
	ip addr add "\$ip/\$mask" dev "\$interface"
	ip route add default via "\$router"
	;;
esac
EOF
chmod 755 "$tmp/udhcpc.sh"
ina busybox udhcpc -i eth0 -n -q -f -t 5 -T 1 -s "$tmp/udhcpc.sh" \
    >"$tmp/udhcpc.log" 2>&1
got=$(cat "$tmp/dhcp.out" 2>/dev/null)
if [ "$got" = "$ip1 24 10.77.0.1 10.77.0.1" ]; then
	ok "DHCP gave desk1 its IPAM address $ip1"
else
	fail "DHCP: got '$got', want '$ip1 24 10.77.0.1 10.77.0.1'" \
	    "($(cat "$tmp/udhcpc.log"))"
fi
if ina busybox nslookup desk2 10.77.0.1 2>&1 | grep -q "$ip2"; then
	ok "desk2 resolves to $ip2"
else
	fail "desk2 does not resolve: $(ina busybox nslookup desk2 10.77.0.1 2>&1)"
fi

# --- forwarding, NAT, isolation -----------------------------------------
pings $a 10.77.0.1 && ok "desk1 pings its gateway" ||
    fail "desk1 cannot ping its gateway"
pings $a 192.0.2.2 && ok "desk1 reaches the outside (masqueraded)" ||
    fail "desk1 cannot reach the outside"
pings $b 192.0.2.2 && fail "isolated desk3 reaches the outside" ||
    ok "isolated desk3 does not reach the outside"
pings $a "$ip3" && fail "desk1 (a) reaches desk3 (b)" ||
    ok "nothing forwarded from a to b"
pings $b "$ip1" && fail "desk3 (b) reaches desk1 (a)" ||
    ok "nothing forwarded from b to a"

# --- anti-spoofing --------------------------------------------------------
# Neighbour caches flushed each time, so that stale entries decide nothing.
flush() {
	inh ip neigh flush dev qbra
	ina ip neigh flush dev eth0
}
ina ip addr add 10.77.0.99/32 dev eth0
flush
pings $a 10.77.0.1 -I 10.77.0.99 && fail "a spoofed source IP got through" ||
    ok "spoofed source IP dropped"
# Flushed again: the spoofed ping leaves desk1's entry for the gateway
# resolving with .99 as the sender; a packet queued on it as its last
# probe goes unanswered would be dropped with it when it fails.
flush
pings $a 10.77.0.1 -I "$ip1" || fail "own IP refused after spoof attempt"
ina ip link set eth0 address 52:54:00:de:ad:01
flush
pings $a 10.77.0.1 && fail "a spoofed MAC got through" ||
    ok "spoofed MAC dropped"

# Control: without the qdesk tables, everything refused above passes, so
# the refusals were our rules' doing.
inh "$gen" delete || fail "netctl delete ruleset"
[ -z "$(inh nft list tables | grep qdesk)" ] || fail "qdesk tables left"
flush
pings $a 10.77.0.1 || fail "control: spoofed MAC refused without rules"
ina ip link set eth0 address "$mac1"
flush
pings $a 10.77.0.1 -I 10.77.0.99 ||
    fail "control: spoofed IP refused without rules"
pings $a "$ip3" || fail "control: a cannot reach b without rules"
pings $b 192.0.2.2 || fail "control: b cannot reach the outside without rules"
ok "controls pass without the qdesk tables"
inh "$gen" apply "$tmp/ruleset.nft" || fail "re-apply"
flush
pings $a 10.77.0.1 -I "$ip1" || fail "own MAC and IP refused after re-apply"
pings $b 192.0.2.2 && fail "isolation lost after re-apply"

if [ $failed -ne 0 ]; then
	echo "netctl tools: FAILED"
	exit 1
fi
echo "netctl tools: all passed"
exit 0
