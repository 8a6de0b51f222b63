#!/usr/bin/env bash
# The broker in cluster mode (issue 13): two hosts, each a qmpd with its
# own state and its mutual-TLS listener on an address of its own, found by
# the broker in etcd (hosts/H, placement/VM, written here as the CORE part
# will write them); a user logs in once and sees the desktops of both
# hosts; starting a desktop starts it on the host placement names and only
# there; its console ticket and the SPICE proxy lead to that host's SPICE
# server (spice-probe links through the proxy to each host); a host whose
# key leaves etcd is down and its desktops say so; a host record that
# comes back brings them back.
. "$(dirname "$0")/lib.sh"
. "$top/tests/lib/xvfb.sh"
. "$top/tests/lib/cluster-tls-lib.sh"

[ "$(id -u)" = 0 ] || skip "needs root (network namespace)"
for t in etcd ip jq curl xfreerdp; do
	command -v $t >/dev/null 2>&1 || fail "$t not installed (scripts/setup)"
done
BROKER=$top/build/broker/qdesk-broker
PROBE=$top/build/broker/spice-probe
BROKER_USER=qdesk-broker
getent passwd "$BROKER_USER" >/dev/null ||
	useradd -r -M -d /nonexistent -s /usr/sbin/nologin "$BROKER_USER" ||
	fail "cannot create user $BROKER_USER"
[ -r /dev/kvm ] || skip "no /dev/kvm"

BROKER_LOG=$T/broker.log
EXTRA_CLEANUP='xvfb_stop; vm_cleanup; net_cleanup'
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

# Host n: its own state dir, cluster file, listener on 127.0.0.1n.
start_host() {
	local h=h$1 addr=127.0.0.1$1 i
	mkdir -p "$T/$h" && chmod 711 "$T/$h"
	cat >"$T/$h.json" <<EOF
{"name": "$h", "etcd": ["$ETCD"], "listen": "$addr:7443", "addr": "$addr",
 "ca": "$CA/host-$h/ca.pem", "cert": "$CA/host-$h/cert.pem",
 "key": "$CA/host-$h/key.pem"}
EOF
	ip netns exec "$NS" "$QMPD" -f -v --state-dir "$T/$h" --cluster "$T/$h.json" \
	    >>"$T/$h.log" 2>&1 &
	NET_PIDS="$NET_PIDS $!"
	for i in $(seq 1 100); do
		grep -q "cluster: listening on $addr:7443" "$T/$h.log" && return 0
		sleep 0.05
	done
	fail "$h did not come up: $(tail -n 5 "$T/$h.log")"
}
start_host 1
start_host 2
hq() { local h=$1; shift; "$QDESK_BIN" --socket "$T/$h/qmpd.sock" "$@"; }

# The same user on both hosts (users are per host until etcd holds them),
# a tiny SPICE desktop on each, its SPICE on the host's address.
for n in 1 2; do
	echo alice-pw-1 | hq h$n user add alice --name "Alice" --password-stdin >/dev/null ||
		fail "user add on h$n"
	out=$(hq h$n vm create d$n --accel kvm --memory 32 --disk "$(tiny_disk d$n)" \
	    --display spice --listen 127.0.0.1$n 2>&1) || fail "vm create d$n on h$n: $out"
	hq h$n desktop assign alice d$n >/dev/null || fail "assign d$n"
	eput hosts/h$n "{\"addr\":\"127.0.0.1$n\",\"listen\":\"127.0.0.1$n:7443\",\"running\":[]}"
	eput placement/d$n "{\"host\":\"h$n\",\"epoch\":1}"
done

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

# Start each: it runs on its host and only there.
for n in 1 2; do
	api POST /api/desktops/d$n/start
	expect 200 "start d$n"
done
for n in 1 2; do
	o=$((3 - n))
	for i in $(seq 1 100); do
		[ "$(hq h$n --json vm show d$n | jq -r .state)" = running ] && break
		sleep 0.1
	done
	[ "$(hq h$n --json vm show d$n | jq -r .state)" = running ] ||
		fail "d$n does not run on h$n"
	hq h$o vm show d$n >/dev/null 2>&1 && fail "h$o has a d$n"
done
grep -q "request desktop.power" "$T/h2.log" || fail "h2 never got desktop.power"
log "each desktop started on the host placement names: ok"

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

# h2's key leaves etcd (its lease expired): its desktops are on a host
# that is down, said so; h1's still work.
edel hosts/h2
for i in $(seq 1 50); do
	grep -q "cluster: host h2 down" "$BROKER_LOG" && break
	sleep 0.1
done
api POST /api/desktops/d2/console
[ "$CODE" = 503 ] || [ "$CODE" = 502 ] || broker_fail "d2 with h2 down: $CODE $BODY"
printf '%s' "$BODY" | grep -q "desktop d2 is on host h2, which is down" ||
	broker_fail "d2 with h2 down: $BODY"
api POST /api/desktops/d1/console
expect 200 "d1 with h2 down"
eput hosts/h2 '{"addr":"127.0.0.12","listen":"127.0.0.12:7443","running":["d2"]}'
for i in $(seq 1 50); do
	api POST /api/desktops/d2/console
	[ "$CODE" = 200 ] && break
	sleep 0.1
done
expect 200 "d2 once h2 is back"
log "a host down in etcd: its desktops say so; back: they work: ok"

# The broker stops cleanly: every host connection and the relay closed.
kill -TERM "$BROKER_PID"
wait "$BROKER_PID"
st=$?
[ $st = 0 ] && grep -q "qdesk-broker: exited" "$BROKER_LOG" ||
	broker_fail "the broker's exit: status $st"
exit 0
