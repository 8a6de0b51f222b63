#!/usr/bin/env bash
# The broker in cluster mode on the real cluster core (issue 13): two
# hosts, each a qmpd --cluster with its own state and its mutual-TLS
# listener on an address of its own, that register themselves in etcd
# (hosts/H under their lease); desktops made with `vm create dN --host hN`
# (defined in etcd, pinned) and assigned from the other host (users and
# assignments are etcd's: alice is added on h1 only). A user logs in once
# and sees the desktops of both hosts; the portal's Start places a
# desktop by CAS and it starts on its host and only there (process
# tables); its console ticket and the SPICE proxy lead to that host's
# SPICE server (spice-probe through the proxy to each host), as do the
# browser console (RFB greeting) and the RDP gateway (xfreerdp login).
# A host whose qmpd is stopped (SIGSTOP) until its lease expires is down
# for the broker, its watchdog kills its desktop, and its desktops say
# so; SIGCONT: it fences, joins again, and its desktop works after a
# Start.
. "$(dirname "$0")/lib.sh"
. "$top/tests/lib/xvfb.sh"
. "$top/tests/lib/cluster-tls-lib.sh"

[ "$(id -u)" = 0 ] || skip "needs root (network namespace)"
need_tools etcd ip jq curl xfreerdp
BROKER=$top/build/broker/qdesk-broker
PROBE=$top/build/broker/spice-probe
BROKER_USER=qdesk-broker
getent passwd "$BROKER_USER" >/dev/null ||
	useradd -r -M -d /nonexistent -s /usr/sbin/nologin "$BROKER_USER" ||
	fail "cannot create user $BROKER_USER"
[ -r /dev/kvm ] || skip "no /dev/kvm"

BROKER_LOG=$T/broker.log
EXTRA_CLEANUP='xvfb_stop; vm_cleanup; net_cleanup'
# Where dN's QEMU runs, by the hosts' process tables.
runs_on() {
	local vm=$1 h p where=
	for h in h1 h2; do
		p=$(cat "$T/$h/vms/$vm/qemu.pid" 2>/dev/null) || continue
		kill -0 "$p" 2>/dev/null && tr '\0' ' ' <"/proc/$p/cmdline" 2>/dev/null |
		    grep -q -- "$T/$h/vms/$vm/" && where="$where $h"
	done
	echo "${where# }"
}
vm_cleanup() {
	local f p
	for f in "$T"/h*/vms/*/qemu.pid; do
		[ -f "$f" ] || continue
		p=$(cat "$f")
		tr '\0' ' ' <"/proc/$p/cmdline" 2>/dev/null | grep -q -- "$T/" &&
			kill -9 "$p" 2>/dev/null
	done
}
broker_fail() {
	log "last lines of broker.log:"
	tail -n 25 "$BROKER_LOG" >&2
	fail "$@"
}
net_up
cluster_init
qq cluster cert host h1 --dir "$CA" --addr 127.0.0.11 >/dev/null
qq cluster cert host h2 --dir "$CA" --addr 127.0.0.12 >/dev/null
qq cluster cert broker b1 --dir "$CA" >/dev/null

# Host n: its own state dir, cluster file (a 3 s lease, 2 s fence
# delay), listener on 127.0.0.1n; it registers itself in etcd.
start_host() {
	local h=h$1 addr=127.0.0.1$1 i
	mkdir -p "$T/$h" && chmod 711 "$T/$h"
	cat >"$T/$h.json" <<EOF
{"name": "$h", "etcd": ["$ETCD"], "listen": "$addr:7443", "addr": "$addr",
 "ca": "$CA/host-$h/ca.pem", "cert": "$CA/host-$h/cert.pem",
 "key": "$CA/host-$h/key.pem", "lease_ttl": 3, "fence_delay": 2}
EOF
	ip netns exec "$NS" "$QMPD" -f -v --state-dir "$T/$h" --cluster "$T/$h.json" \
	    >>"$T/$h.log" 2>&1 &
	eval "${h}_PID=\$!"
	NET_PIDS="$NET_PIDS $!"
	for i in $(seq 1 200); do
		grep -q "cluster: listening on $addr:7443" "$T/$h.log" &&
			grep -q "cluster: $h joined at" "$T/$h.log" && return 0
		sleep 0.05
	done
	fail "$h did not come up: $(tail -n 5 "$T/$h.log")"
}
start_host 1
start_host 2
hq() { local h=$1; shift; "$QDESK_BIN" --socket "$T/$h/qmpd.sock" "$@"; }
for n in 1 2; do
	[ "$(eget hosts/h$n | jq -r .listen)" = "127.0.0.1$n:7443" ] ||
		fail "h$n did not register itself in etcd: $(eget hosts/h$n)"
done

# alice added on h1 is a user of every host (users are etcd's); a tiny
# SPICE desktop pinned to each host, defined and assigned from the other
# host (definitions and assignments are etcd's too), its SPICE on its
# host's address.
echo alice-pw-1 | hq h1 user add alice --name "Alice" --password-stdin >/dev/null ||
	fail "user add on h1"
for i in $(seq 1 50); do
	hq h2 --json user list | jq -e '.users[] | select(.login == "alice")' \
	    >/dev/null && break
	sleep 0.1
done
hq h2 --json user list | jq -e '.users[] | select(.login == "alice")' >/dev/null ||
	fail "h2 does not see alice, added on h1: $(hq h2 --json user list)"
for n in 1 2; do
	o=$((3 - n))
	out=$(hq h$o vm create d$n --host h$n --accel kvm --memory 32 \
	    --disk "$(tiny_disk d$n)" --display spice --listen 127.0.0.1$n 2>&1) ||
		fail "vm create d$n --host h$n on h$o: $out"
	out=$(hq h$o desktop assign alice d$n 2>&1) || fail "assign d$n on h$o: $out"
	for i in $(seq 1 50); do
		[ "$(hq h$n --json desktop list --user alice | jq -r '.desktops[].vm' |
		    grep -c "^d$n$")" = 1 ] && break
		sleep 0.1
	done
	[ "$(hq h$n --json desktop list --user alice | jq -r '.desktops[].vm' |
	    grep -c "^d$n$")" = 1 ] ||
		fail "h$n's assignments: $(hq h$n --json desktop list)"
	[ -z "$(runs_on d$n)" ] || fail "d$n runs before anyone started it"
done
log "hosts register themselves; users, desktops and assignments in etcd, seen from every host: ok"

# The broker, with the cluster file's format.
mkdir -p "$T/broker"
cat >"$T/broker.json" <<EOF
{"name": "b1", "etcd": ["$ETCD"], "ca": "$CA/broker-b1/ca.pem",
 "cert": "$CA/broker-b1/cert.pem", "key": "$CA/broker-b1/key.pem"}
EOF
URL=https://127.0.0.1:8443
PROXY=127.0.0.1:3128
ip netns exec "$NS" "$BROKER" -f -v --state-dir "$T/broker" --user "$BROKER_USER" \
    --https 127.0.0.1:8443 --spice-proxy "$PROXY" --rdp 127.0.0.1:3389 \
    --cluster "$T/broker.json" >>"$BROKER_LOG" 2>&1 &
BROKER_PID=$!
NET_PIDS="$BROKER_PID $NET_PIDS"
for i in $(seq 1 100); do
	inns curl -skf "$URL/api/health" >/dev/null 2>&1 && break
	kill -0 "$BROKER_PID" 2>/dev/null || broker_fail "qdesk-broker exited at start"
	sleep 0.1
done
inns curl -skf "$URL/api/health" >/dev/null || broker_fail "the broker reaches no host"
for n in 1 2; do
	for i in $(seq 1 100); do
		grep -q "connected to qmpd .* at 127.0.0.1$n:7443" "$BROKER_LOG" && break
		sleep 0.1
	done
	grep -q "connected to qmpd .* at 127.0.0.1$n:7443" "$BROKER_LOG" ||
		broker_fail "the broker did not connect to h$n"
	grep -q "cluster: 127.0.0.[0-9]*:[0-9]* connected as broker$" "$T/h$n.log" ||
		fail "h$n did not see the broker's certificate"
done
log "broker: both hosts found in etcd, reached over mutual TLS: ok"

api() {
	local method=$1 path=$2 body=${3:-}
	local args=(-sk -o "$T/api.body" -w '%{http_code}' -b "$T/jar" -c "$T/jar" -X "$method")
	if [ "$method" = POST ]; then
		args+=(-H 'X-Qdesk: 1' -H 'Content-Type: application/json' --data "${body:-{\}}")
	fi
	CODE=$(inns curl "${args[@]}" "$URL$path") || CODE=000
	BODY=$(cat "$T/api.body" 2>/dev/null)
}
expect() { [ "$CODE" = "$1" ] || broker_fail "wanted HTTP $1, got $CODE: $BODY${2:+ ($2)}"; }
field() { printf '%s' "$BODY" | jq -r ".$1"; }

api POST /api/login '{"user":"alice","password":"alice-pw-1"}'
expect 200 login
api GET /api/desktops
expect 200
[ "$(printf '%s' "$BODY" | jq -c '[.[].name] | sort')" = '["d1","d2"]' ] ||
	broker_fail "alice's desktops over two hosts: $BODY"
log "one login, the desktops of both hosts: ok"

# Start each: placed by CAS on its pinned host, it runs there and only
# there (the start answers once the host runs it).
for n in 1 2; do
	api POST /api/desktops/d$n/start
	expect 200 "start d$n"
	[ "$(field state)" = running ] || broker_fail "start d$n answered $BODY"
done
for n in 1 2; do
	o=$((3 - n))
	[ "$(runs_on d$n)" = h$n ] || fail "d$n runs on '$(runs_on d$n)', not h$n"
	[ "$(eget placement/d$n | jq -r .host)" = h$n ] ||
		fail "placement/d$n: $(eget placement/d$n)"
	[ "$(hq h$o --json vm show d$n | jq -r '.host + " " + .state')" = "h$n running" ] ||
		fail "h$o's view of d$n: $(hq h$o --json vm show d$n)"
	grep -q "cluster: d$n: start for alice, through placement" "$T/h$n.log" ||
		fail "h$n did not start d$n through placement"
done
log "each desktop placed by the portal's Start, running on its host only: ok"

# Consoles: the ticket names the desktop's host, and the SPICE proxy
# tunnels to it.
for n in 1 2; do
	api POST /api/desktops/d$n/console
	expect 200 "console of d$n"
	[ "$(field host)" = "127.0.0.1$n" ] || broker_fail "d$n's console host: $(field host)"
	field ca | sed '/^$/d' >"$T/spice-ca-$n.pem"
	out=$(inns "$PROBE" unused "$(field port)" "$(field password)" --proxy "$PROXY" \
	    --ticket "$(field ticket)" --ca "$T/spice-ca-$n.pem" \
	    --host-subject "$(field host_subject)" 2>&1) ||
		broker_fail "spice-probe through the proxy to d$n on h$n: $out"
	grep -q "proxy: 127.0.0.1 tunnelled to d$n port $(field port)" "$BROKER_LOG" ||
		broker_fail "the tunnel to d$n is not in the log"
done
log "console tickets and the SPICE proxy follow each desktop to its host: ok"

# The browser console: its VNC comes from the desktop's host over the
# TLS connection, which turns into the stream after desktop.vnc's answer.
cookie=$(awk '$6 == "qdesk_session" {print $7}' "$T/jar")
for n in 1 2; do
	api POST /api/desktops/d$n/console '{"type":"browser"}'
	expect 200 "browser console of d$n"
	out=$(inns timeout 30 python3 "$top/tests/lib/ws-probe.py" "$URL" \
	    "$(field ws)" "$cookie" 2>"$T/probe.err") ||
		broker_fail "ws-probe d$n: $(cat "$T/probe.err")"
	[ "$(printf '%s\n' "$out" | head -n 1)" = 101 ] ||
		broker_fail "d$n's WebSocket did not open: $out"
	printf '%s\n' "$out" | sed -n 2p | grep -q '^RFB 003\.008$' ||
		broker_fail "no RFB greeting from d$n on h$n: $out"
	printf '%s\n' "$out" | grep -qx 'close 1000' || broker_fail "d$n: no close 1000: $out"
	grep -q "cluster: VNC of d$n streams from host h$n" "$BROKER_LOG" ||
		broker_fail "d$n's VNC did not come from h$n"
	grep -q "broker at 127.0.0.[0-9]*:[0-9]*: the connection is a stream now" "$T/h$n.log" ||
		fail "h$n did not turn the connection into d$n's stream: $(grep stream "$T/h$n.log")"
done
log "the browser console's VNC streams from each desktop's host: ok"

# RDP: the gateway's threads reach the hosts through the broker's relay;
# a login lands on the desktop of the other host too.
xvfb_need
xvfb_start
for n in 1 2; do
	HOME=$T inns timeout 120 xfreerdp /cert:ignore /v:127.0.0.1:3389 \
	    +auth-only /u:alice /p:alice-pw-1 /d:d$n >"$T/xf.log" 2>&1 ||
		broker_fail "RDP to d$n: $(tail -n 5 "$T/xf.log")"
	grep -q "(alice on d$n): logged in" "$BROKER_LOG" ||
		broker_fail "the RDP gateway did not land on d$n"
done
[ "$(grep -c "cluster: VNC of d2 streams from host h2" "$BROKER_LOG")" -ge 2 ] ||
	broker_fail "RDP's VNC of d2 did not come from h2"
log "the RDP gateway follows each desktop to its host: ok"

# h2's qmpd stopped (SIGSTOP) until its lease expires: the broker sees
# h2 down and d2 says so; d2 (a local disk) is not started elsewhere;
# h1's desktop works. A stopped qmpd cannot fence, so its watchdog does:
# once the moment its lease surely held passes with no word from qmpd,
# it kills d2's QEMU (a shared-store desktop would be restarted elsewhere
# after the lease expired; it must not run here then).
# Every failure from here continues h2 first, so cleanup can end it.
fail2() { kill -CONT "$h2_PID"; fail "$@"; }
kill -STOP "$h2_PID"
for i in $(seq 1 300); do
	grep -q "cluster: host h2 down" "$BROKER_LOG" && break
	sleep 0.1
done
grep -q "cluster: host h2 down" "$BROKER_LOG" || fail2 "h2's lease did not expire in 30 s"
# h1 has seen it too, and waited its fence delay: d2 stays off h1.
for i in $(seq 1 300); do
	grep -q "cluster: host h2 down for 2 s more than its lease" "$T/h1.log" && break
	sleep 0.1
done
grep -q "cluster: host h2 down for 2 s more than its lease" "$T/h1.log" ||
	fail2 "h1 did not see h2 down: $(grep cluster: "$T/h1.log" | tail -n 5)"
case "$(runs_on d2)" in *h1*) fail2 "d2 started on h1 with its disk on h2";; esac
grep -q "cluster: watchdog: qmpd has not renewed its lease .*: 1 QEMU(s) killed" \
    "$T/h2.log" || fail2 "h2's watchdog did not fence d2: $(grep watchdog "$T/h2.log" | tail -n 3)"
[ -z "$(runs_on d2)" ] || fail2 "d2 still runs on $(runs_on d2) with h2's lease gone"
api POST /api/desktops/d2/console
[ "$CODE" = 503 ] || [ "$CODE" = 502 ] || fail2 "d2 with h2 down: $CODE $BODY"
printf '%s' "$BODY" | grep -q "desktop d2 is on host h2, which is down" ||
	fail2 "d2 with h2 down: $BODY"
api POST /api/desktops/d1/console
[ "$CODE" = 200 ] || fail2 "d1 with h2 down: $CODE $BODY"
[ "$(hq h1 --json vm show d2 | jq -r .state)" = "host down" ] ||
	fail2 "h1's view of d2: $(hq h1 --json vm show d2)"
log "a host stopped past its lease: down for the broker and h1, d2 said so and kept off h1: ok"

# SIGCONT: h2 finds its lease gone, fences (d2's QEMU may still be
# counted if its exit is not yet read), joins again; the broker sees
# it up; a Start from the portal and d2 works again, on h2 only.
kill -CONT "$h2_PID"
for i in $(seq 1 300); do
	[ "$(grep -c "cluster: h2 joined at" "$T/h2.log")" -ge 2 ] && break
	sleep 0.1
done
[ "$(grep -c "cluster: h2 joined at" "$T/h2.log")" -ge 2 ] ||
	fail "h2 did not join again: $(grep cluster: "$T/h2.log" | tail -n 5)"
grep -q "cluster: fenced at .*: [01] desktop(s) killed" "$T/h2.log" ||
	fail "h2 did not fence d2 after SIGCONT: $(grep cluster: "$T/h2.log" | tail -n 5)"
[ "$(runs_on d2)" != "h1" ] || fail "d2 runs on h1"
for i in $(seq 1 300); do
	[ "$(grep -c "cluster: host h2 up" "$BROKER_LOG")" -ge 2 ] && break
	sleep 0.1
done
[ "$(grep -c "cluster: host h2 up" "$BROKER_LOG")" -ge 2 ] ||
	broker_fail "the broker did not see h2 up again"
api POST /api/desktops/d2/start
expect 200 "start d2 once h2 is back"
[ "$(field state)" = running ] || broker_fail "start d2 once h2 is back: $BODY"
[ "$(runs_on d2)" = h2 ] || fail "d2 runs on '$(runs_on d2)' once h2 is back"
api POST /api/desktops/d2/console
expect 200 "d2 once h2 is back"
field ca | sed '/^$/d' >"$T/spice-ca-2.pem"
out=$(inns "$PROBE" unused "$(field port)" "$(field password)" --proxy "$PROXY" \
    --ticket "$(field ticket)" --ca "$T/spice-ca-2.pem" \
    --host-subject "$(field host_subject)" 2>&1) ||
	broker_fail "spice-probe to d2 once h2 is back: $out"
log "SIGCONT: h2 fenced, joined again, d2 started and reached through the proxy: ok"

# The broker stops cleanly: every host connection and the relay closed.
kill -TERM "$BROKER_PID"
wait "$BROKER_PID"
st=$?
[ $st = 0 ] && grep -q "qdesk-broker: exited" "$BROKER_LOG" ||
	broker_fail "the broker's exit: status $st"
exit 0
