#!/usr/bin/env bash
# The broker's re-route (issue 13): `scripts/cluster up 2`; u1's desktop
# d (no pin) ran on h1 and is stopped. The broker's etcd traffic is then
# dropped (iptables in its namespace: its watch stalls, so its view keeps
# placement/d on h1) while d is started again on h2 (h1 drained). u1
# asks the portal for d's console: the broker asks h1, which answers
# "desktop d is on host h2"; the broker asks h2 instead and the ticket
# names h2 and links SPICE through the proxy to it. Without the re-route
# the request fails with h1's answer.
. "$(dirname "$0")/lib.sh"

[ "$(id -u)" = 0 ] || skip "needs root (network namespaces)"
[ -r /dev/kvm ] || skip "no /dev/kvm"
need_tools etcd jq curl iptables
# The broker runs as its own user (scripts/cluster), so its packets
# alone can be dropped.
getent passwd qdesk-broker >/dev/null ||
	useradd -r -M -d /nonexistent -s /usr/sbin/nologin qdesk-broker ||
	fail "cannot create user qdesk-broker"
. "$top/tests/lib/cluster-lib.sh"
PROBE=$top/build/broker/spice-probe
cluster_test_up 2 5 5
BROKER_LOG=$(dirname "$BROKER_STATE")/broker.log
PROXY=${PORTAL#https://}
PROXY=${PROXY%:*}:3128
BROKER_PID=$(cat "$(dirname "$BROKER_STATE")/broker.pid")
# Drop the broker's etcd traffic, both ways (its watch is pushed to it),
# and no other (etcd's own gateway dials the client ports too, the
# hosts' come over the bridge): the connections it opened as root before
# dropping to its user, by their ports, and any new one, by its user.
block() {
	local p
	for p in $(ip netns exec "$ETCD_NETNS" ss -Htnp state established \
	    '( dport >= :2379 and dport <= :2381 )' | grep "pid=$BROKER_PID," |
	    awk '{ n = split($3, a, ":"); print a[n] }'); do
		ip netns exec "$ETCD_NETNS" iptables -A OUTPUT -p tcp --sport "$p" \
		    --dport 2379:2381 -m comment --comment qdesk-78 -j DROP &&
		ip netns exec "$ETCD_NETNS" iptables -A OUTPUT -p tcp --dport "$p" \
		    --sport 2379:2381 -m comment --comment qdesk-78 -j DROP || return 1
	done
	ip netns exec "$ETCD_NETNS" iptables -A OUTPUT -p tcp --dport 2379:2381 \
	    -m owner --uid-owner qdesk-broker -m comment --comment qdesk-78 -j DROP
}
echo pw-u1-secret | hqq h1 user add u1 --password-stdin >/dev/null
cluster_wait_user u1
hqq h1 vm create d --accel kvm --disk "$(tiny_disk d)" --memory 32 \
    --display spice --listen 0.0.0.0 >/dev/null
until_ok 10 "h2 sees d" "hq h2 vm show d >/dev/null 2>&1"
hqq h2 desktop assign u1 d >/dev/null
hqq h1 host drain h2 >/dev/null
until_ok 10 "h1 sees h2 draining" "[ \"\$(host_state h1 h2)\" = draining ]"
[ "$(hqq h1 vm start d)" = "d: running" ] || fail "vm start d"
[ "$(runs_on d)" = h1 ] || fail "d runs on '$(runs_on d)', not h1"
hqq h1 host undrain h2 >/dev/null
api POST /api/login '{"user":"u1","password":"pw-u1-secret"}'
[ "$CODE" = 200 ] || fail "login u1: $CODE $BODY"
api POST /api/desktops/d/console
[ "$CODE" = 200 ] && [ "$(field host)" = "$h1_ADDR" ] ||
	fail "d's console on h1: $CODE $BODY"
hqq h1 vm stop d --force >/dev/null
until_ok 10 "the broker sees d stopped" \
    "api GET /api/desktops; [ \"\$(field '[0].state')\" = stopped ]"
log "d ran on h1, stopped; the broker's view has it there: ok"

# The broker's view stalls; d starts on h2.
block || fail "cannot block the broker's etcd traffic"
[ "$(ip netns exec "$ETCD_NETNS" iptables -S OUTPUT | grep -c qdesk-78)" -ge 2 ] ||
	fail "no etcd connection of the broker found: $(ip netns exec "$ETCD_NETNS" ss -Htnp)"
hqq h2 host drain h1 >/dev/null
until_ok 10 "h2 sees h1 draining" "[ \"\$(host_state h2 h1)\" = draining ]"
[ "$(hqq h2 vm start d)" = "d: running" ] || fail "vm start d on h2"
[ "$(runs_on d)" = h2 ] || fail "d runs on '$(runs_on d)', not h2"
hqq h2 host undrain h1 >/dev/null

lines=$(wc -l <"$BROKER_LOG")
api POST /api/desktops/d/console
[ "$CODE" = 200 ] || fail "d's console with the broker's view behind: $CODE $BODY"
[ "$(field host)" = "$h2_ADDR" ] || fail "d runs on h2, its ticket names $(field host)"
tail -n +"$((lines + 1))" "$BROKER_LOG" | grep -q "cluster: desktop.console: re-routed from host h1 to h2 (desktop d is on host h2)" ||
	fail "the broker did not re-route: $(tail -n +"$((lines + 1))" "$BROKER_LOG")"
grep -q "desktop.console of desktop d for u1: it is on host h2" "$h1_LOG" ||
	fail "h1 did not say where d is"
field ca | sed '/^$/d' >"$T/ca.pem"
out=$(ip netns exec "$ETCD_NETNS" "$PROBE" unused "$(field port)" "$(field password)" \
    --proxy "$PROXY" --ticket "$(field ticket)" --ca "$T/ca.pem" \
    --host-subject "$(field host_subject)" 2>&1) ||
	fail "spice-probe through the proxy to d on h2: $out"
log "the broker asked h1 (its stale view), h1 named h2, the broker asked h2: the ticket leads to d on h2: ok"
