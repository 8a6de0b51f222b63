#!/usr/bin/env bash
# Live migration of a desktop with NICs (issue 14), on `scripts/cluster
# up 2`: each host has a nat network "office" (10.77.0.0/24, its own
# dnsmasq) and a bridge-mode network "lan" whose uplink is a veth into a
# LAN namespace of this test's own (one L2 segment for both hosts, as an
# office LAN is). A TCG Linux guest on both gets office's address by
# DHCP and a static one on lan; a ping stream from the LAN namespace
# goes on across `vm migrate` (the largest gap is reported). After it:
# the guest runs on the target with the same addresses, renews its DHCP
# lease from the target's dnsmasq and reaches the target's gateway; the
# target's office leases name it with the same address and MAC, the
# source's no longer; no TAP of it is left on the source. Refused with
# one line, the desktop running on: a target without the network, a
# target whose network has another subnet. A migration that fails after
# the target made its half (a TAP that cannot open) leaves no TAP or
# lease there.
# Then `host drain --live` moves it back and the LAN still reaches it.
# NICs hotplugged since boot: 84-migrate-hotplug.sh.
. "$(dirname "$0")/lib.sh"

[ "$(id -u)" = 0 ] || skip "needs root (network namespaces)"
for t in ip nft dnsmasq socat jq python3; do
	command -v $t >/dev/null 2>&1 || skip "$t not installed"
done
[ -c /dev/net/tun ] || skip "no /dev/net/tun"
[ -f "$GUESTS/vmlinuz" ] || skip "no tiny guests: run scripts/mkguest"
. "$top/tests/lib/cluster-lib.sh"

LAN=qdt-$TEST_NAME-$$-lan
LAN_IP=10.66.0.50
PING_PID=
EXTRA_CLEANUP='nic_cleanup'
nic_cleanup() {
	[ -n "$PING_PID" ] && kill "$PING_PID" 2>/dev/null
	"$CLUSTER" down >/dev/null 2>&1
	ip netns del "$LAN" 2>/dev/null
}
cluster_test_up 2 5 5

ns_of() { local s=${1}_NETNS; echo "${!s}"; }
lanx() { ip netns exec "$LAN" "$@"; }
# ping(8) is not everywhere: ICMP echo from a raw socket, ping -D's lines.
ICMP=$top/tests/lib/icmp-stream.py

# Until the LAN namespace gets an answer from the guest (ARP first).
lan_reaches() {
	local i
	for i in $(seq 1 ${1:-30}); do
		lanx python3 "$ICMP" --once "$LAN_IP" && return 0
	done
	return 1
}

# The LAN: a bridge in a namespace of this test's, a veth to each host.
ip netns add "$LAN" || fail "cannot create namespace $LAN"
lanx ip link set lo up
lanx ip link add lanbr0 type bridge
lanx ip addr add 10.66.0.1/24 dev lanbr0
lanx ip link set lanbr0 up
for h in $HOSTS; do
	ip -n "$LAN" link add "up-$h" type veth peer name lanup netns "$(ns_of "$h")" ||
		fail "cannot make the LAN veth of $h"
	lanx ip link set "up-$h" master lanbr0 up
	ip -n "$(ns_of "$h")" link set lanup up
	hqq "$h" net create office --subnet 10.77.0.0/24 >/dev/null
	hqq "$h" net create lan --subnet 10.66.0.0/24 --mode bridge --uplink lanup >/dev/null
done

hqq h1 vm create desk --accel tcg --memory 256 --kernel "$GUESTS/vmlinuz" \
    --initrd "$GUESTS/initrd.img" --append "console=ttyS0 no_timer_check" --display none \
    --net office --net lan >/dev/null
hqq h1 vm start desk >/dev/null
src=$(runs_on desk)
case $src in h1|h2) ;; *) fail "desk runs on '$src'" ;; esac
dst=$(other "$src")
show=$(hqq "$src" --json vm show desk)
ip=$(echo "$show" | jq -r '.nics[0].ip')
mac0=$(echo "$show" | jq -r '.nics[0].mac')
mac1=$(echo "$show" | jq -r '.nics[1].mac')
taps=$(echo "$show" | jq -r '[.nics[].tap] | join(" ")')
case $ip in 10.77.0.*) ;; *) fail "office address: $show" ;; esac
[ "$(echo "$taps" | wc -w)" = 2 ] || fail "TAPs on $src: $show"
hwait_console "$src" desk "QDESK GUEST READY" 120
hwait_console "$src" desk "QDESK IP=eth0 $ip/24" 60
hguest_sh "$src" desk "ip link set eth1 up && ip addr add $LAN_IP/24 dev eth1" ||
	fail "cannot give eth1 its LAN address"
lan_reaches || fail "the LAN does not reach desk on $src"
log "desk on $src: office $ip ($mac0), lan $LAN_IP ($mac1), TAPs $taps"

# Refusals before anything starts, one line each; desk runs on.
refused() { # WHAT PATTERN
	local out
	out=$(hq "$src" vm migrate desk "$dst" 2>&1) && fail "$1: migrated: $out"
	echo "$out" | grep -q -- "$2" || fail "$1 said: $out"
	[ "$(echo "$out" | wc -l)" = 1 ] || fail "$1: not one line: $out"
	[ "$(runs_on desk)" = "$src" ] || fail "$1: desk runs on '$(runs_on desk)'"
	[ -e "$(state_of "$dst")/vms/desk" ] && fail "$1: $dst made desk's VM dir"
	for t in $taps; do
		ip -n "$(ns_of "$dst")" link show "$t" >/dev/null 2>&1 &&
			fail "$1: $t exists on $dst"
	done
	log "$1: $out"
}
hqq "$dst" net rm office >/dev/null
refused "no network office on $dst" "host $dst has no network office"
hqq "$dst" net create office --subnet 10.78.0.0/24 >/dev/null
refused "another subnet on $dst" "network office is 10.78.0.0/24 on host $dst but 10.77.0.0/24 on the source"
hqq "$dst" net rm office >/dev/null
hqq "$dst" net create office --subnet 10.77.0.0/24 >/dev/null
lan_reaches || fail "the LAN lost desk after the refusals"

# A migration that fails after the target made its half: its record and
# leases saved, the first TAP open, the second TAP's name taken by a
# link of this test's there. The target's TAP and leases go, the source
# keeps its own and the LAN still reaches the desktop.
ip -n "$(ns_of "$dst")" link add "${taps#* }" type bridge ||
	fail "cannot take ${taps#* }'s name on $dst"
out=$(hq "$src" vm migrate desk "$dst" 2>&1) &&
	fail "a migration whose TAP could not open worked: $out"
ip -n "$(ns_of "$dst")" link del "${taps#* }"
echo "$out" | grep -q "NIC net1 on lan: .*it keeps running here$" ||
	fail "the failed migration said: $out"
[ "$(echo "$out" | wc -l)" = 1 ] || fail "not one line: $out"
[ "$(runs_on desk)" = "$src" ] || fail "after the failure desk runs on '$(runs_on desk)'"
ip -n "$(ns_of "$dst")" link show "${taps% *}" >/dev/null 2>&1 &&
	fail "${taps% *} outlived the failed migration on $dst"
[ -e "$(state_of "$dst")/vms/desk" ] && fail "$dst kept desk's VM dir"
hqq "$dst" --json net show office | jq -e '.leases[] | select(.vm == "desk")' >/dev/null &&
	fail "office on $dst still leases to desk after the failure"
for t in $taps; do
	ip -n "$(ns_of "$src")" -o link show "$t" | grep -Eq "master qbr(office|lan)" ||
		fail "$t left its bridge on $src after the failure"
done
[ "$(hqq "$src" --json net show office | jq -r --arg ip "$ip" '.leases[] | select(.ip == $ip) | .vm')" = desk ] ||
	fail "office leases on $src after the failure: $(hq "$src" --json net show office | jq -c .leases)"
lan_reaches || fail "the LAN lost desk after the failed migration"
log "failed on the target: $out"

# The migration, under a ping stream from the LAN (every 50 ms).
# Not through lanx: $! must be the stream itself, not a subshell.
ip netns exec "$LAN" python3 "$ICMP" "$LAN_IP" 0.05 >"$T/ping" 2>&1 &
PING_PID=$!
for i in $(seq 1 100); do
	[ "$(grep -c 'bytes from' "$T/ping")" -ge 10 ] && break
	sleep 0.1
done
t0=$(date +%s.%N)
out=$(hq "$src" --json vm migrate desk "$dst") || fail "migrate $src -> $dst: $out"
t1=$(date +%s.%N)
[ "$(runs_on desk)" = "$dst" ] || fail "after: desk runs on '$(runs_on desk)', not $dst"
# The stream goes on: 20 answers from the target after the switchover.
for i in $(seq 1 600); do
	[ "$(awk -v t="$t1" -F'[][]' '/bytes from/ && $2 > t' "$T/ping" | wc -l)" -ge 20 ] && break
	sleep 0.1
done
kill "$PING_PID"; wait "$PING_PID" 2>/dev/null; PING_PID=
after=$(awk -v t="$t1" -F'[][]' '/bytes from/ && $2 > t' "$T/ping" | wc -l)
[ "$after" -ge 20 ] || fail "the LAN's ping stream did not go on after the migration ($after answers): $(tail -n 5 "$T/ping")"
gap=$(awk -F'[][]' '/bytes from/ { if (p != "" && $2 - p > g) g = $2 - p; p = $2 }
    END { printf "%d", g * 1000 }' "$T/ping")
lost=$(awk -v a="$t0" -v b="$t1" -F'[][]' '/bytes from/ && $2 > a && $2 < b' "$T/ping" | wc -l)
log "migrated $src -> $dst in $(awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.1f", b - a }') s: downtime $(echo "$out" | jq .migration.downtime_ms) ms, largest gap in the LAN's ping stream $gap ms, $lost answers during vm migrate"

# No TAP of desk on the source, its two on the target's bridges.
for t in $taps; do
	ip -n "$(ns_of "$src")" link show "$t" >/dev/null 2>&1 &&
		fail "$t is still on $src"
done
show=$(hqq "$dst" --json vm show desk)
want="$mac0 $ip ${taps% *},$mac1 null ${taps#* }"
got=$(echo "$show" | jq -r '[.nics[] | .mac + " " + (.ip // "null") + " " + (.tap // "null")] | join(",")')
[ "$got" = "$want" ] || fail "NICs on $dst: $got, not $want"
for t in $taps; do
	ip -n "$(ns_of "$dst")" -o link show "$t" | grep -Eq "master qbr(office|lan)" ||
		fail "$t is on no bridge of $dst"
done
# The lease moved: the target's office names desk with its address and
# MAC, the source's no longer.
[ "$(hqq "$dst" --json net show office | jq -r --arg ip "$ip" '.leases[] | select(.ip == $ip) | .vm + " " + .mac')" = "desk $mac0" ] ||
	fail "office leases on $dst: $(hq "$dst" --json net show office | jq -c .leases)"
hqq "$src" --json net show office | jq -e '.leases[] | select(.vm == "desk")' >/dev/null &&
	fail "office on $src still leases to desk: $(hq "$src" --json net show office | jq -c .leases)"
log "TAPs and the lease moved: ok"

# The guest kept its addresses, renews office's from the target's dnsmasq
# (the same address again) and reaches the target's gateway.
hguest_sh "$dst" desk "ip -o -4 addr show eth0 | grep -q ' $ip/24' && ip -o -4 addr show eth1 | grep -q ' $LAN_IP/24'" ||
	fail "desk lost an address on $dst"
hguest_sh "$dst" desk "kill -USR1 \$(pidof udhcpc)" || fail "cannot make udhcpc renew"
hwait_console "$dst" desk "QDESK IP=eth0 $ip/24" 30
hguest_sh "$dst" desk "ping -c 1 -W 2 10.77.0.1" || fail "desk cannot reach the gateway on $dst"
log "the guest renewed $ip from $dst's dnsmasq and reaches its gateway"

# host drain --live moves it back; the LAN still reaches it.
out=$(hq "$src" --json host drain "$dst" --live) || fail "host drain $dst --live: $out"
[ "$(echo "$out" | jq -r '[.moved[].name] | join(" ")')" = desk ] ||
	fail "drain answer: $out"
[ "$(runs_on desk)" = "$src" ] || fail "after the drain desk runs on '$(runs_on desk)'"
lan_reaches || fail "the LAN does not reach desk after the drain"
for t in $taps; do
	ip -n "$(ns_of "$dst")" link show "$t" >/dev/null 2>&1 &&
		fail "$t is still on $dst after the drain"
done
[ "$(hqq "$src" --json net show office | jq -r --arg ip "$ip" '.leases[] | select(.ip == $ip) | .vm')" = desk ] ||
	fail "office leases on $src after the drain: $(hq "$src" --json net show office | jq -c .leases)"
log "host drain $dst --live: desk back on $src, reachable"
log "ok"
