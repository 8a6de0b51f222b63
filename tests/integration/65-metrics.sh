#!/usr/bin/env bash
# Metrics: qmpd --metrics and the broker's /metrics scraped with curl
# through a login, start, console and stop cycle; every scrape must pass
# tests/prom-check.py (a strict parser of the exposition format: Debian's
# promtool comes only with the 96 MB prometheus server) and the numbers
# must move as they should. The broker's /metrics is refused from an
# address outside loopback (a client in a network namespace of our own,
# over a veth pair) unless it shows the bearer token.
. "$(dirname "$0")/lib.sh"
. "$top/tests/lib/broker-lib.sh"

CHECK=$top/tests/prom-check.py
NS=qdt-metrics-$$
VETH=qdm$$
VETH=${VETH:0:15}
EXTRA_CLEANUP='stop_broker; ip netns del $NS 2>/dev/null; ip link del $VETH 2>/dev/null'

METRICS_PORT=$(free_port)
QURL=http://127.0.0.1:$METRICS_PORT/metrics

# Bad --metrics values are refused at once, with one line.
for bad in 0 65536 x 1.2.3:80 "[::1:80" "127.0.0.1:"; do
	if out=$("$QMPD" -f --state-dir "$T/bad" --metrics "$bad" 2>&1); then
		fail "qmpd --metrics $bad started"
	fi
	[ "$(printf '%s\n' "$out" | wc -l)" = 1 ] &&
	    printf '%s' "$out" | grep -q -- "--metrics" ||
		fail "qmpd --metrics $bad: $out"
done

start_qmpd --broker-user "$BROKER_USER" --metrics "$METRICS_PORT"
need_kvm
add_user alice alice-pw-1
add_desktop d1 alice
TOKEN=metrics-token-$(od -An -tx1 -N16 /dev/urandom | tr -d ' \n')
printf '%s\n' "$TOKEN" >"$T/token"
chmod 644 "$T/token"
if "$BROKER" -f --state-dir "$STATE" --metrics-token "$T/token" \
    >"$T/b.out" 2>&1; then
	fail "the broker started with a world-readable token file"
fi
grep -q "chmod 600" "$T/b.out" || fail "token file refusal: $(cat "$T/b.out")"
chmod 600 "$T/token"
start_broker --https "0.0.0.0:$HTTPS_PORT" --metrics-token "$T/token"

# scrape NAME URL [curl args]: the exposition into $T/NAME, checked.
scrape() {
	local name=$1 url=$2
	shift 2
	local code
	code=$(curl -sk -o "$T/$name" -w '%{http_code} %{content_type}' \
	    "$@" "$url") || fail "scrape $url: curl failed"
	[ "$code" = "200 text/plain; version=0.0.4; charset=utf-8" ] ||
		fail "scrape $url: $code: $(head -c 300 "$T/$name")"
	python3 "$CHECK" "$T/$name" || fail "$name is not valid exposition text"
}
# val NAME SAMPLE: a sample's value in the scrape NAME.
val() { python3 "$CHECK" "$T/$1" "$2" || fail "no $2 in $1"; }

scrape q0 "$QURL"
scrape b0 "$URL/metrics"
[ "$(val q0 'qdesk_vms{state="stopped"}')" = 1 ] || fail "q0: d1 not stopped"
[ "$(val q0 'qdesk_vms{state="running"}')" = 0 ] || fail "q0: running"
[ "$(val b0 qdesk_broker_qmpd_up)" = 1 ] || fail "b0: qmpd not up"
[ "$(val q0 qdesk_lmdb_used_bytes)" -gt 0 ] || fail "q0: no LMDB use"
[ "$(val q0 qdesk_lmdb_map_bytes)" -ge "$(val q0 qdesk_lmdb_used_bytes)" ] ||
	fail "q0: LMDB map smaller than its use"
[ "$(val q0 qdesk_image_store_bytes)" = 0 ] || fail "q0: an empty store"
cp "$GUESTS/boot.img" "$T/base.img"
qq image import base "$T/base.img" >/dev/null
scrape q0 "$QURL"
[ "$(val q0 qdesk_image_store_bytes)" -gt 0 ] ||
	fail "q0: the image store holds an image but counts 0 bytes"

# --- a bad password, then a good one ------------------------------------
login alice wrong-password
expect 401
login alice alice-pw-1
expect 200
scrape q1 "$QURL"
scrape b1 "$URL/metrics"
for m in qdesk_broker_logins_total qdesk_broker_login_failures_total; do
	[ "$(val b1 $m)" = $(( $(val b0 $m) + 1 )) ] ||
		fail "$m: $(val b0 $m) -> $(val b1 $m), wanted +1"
done
for m in qdesk_logins_total qdesk_login_failures_total; do
	[ "$(val q1 $m)" = $(( $(val q0 $m) + 1 )) ] ||
		fail "$m: $(val q0 $m) -> $(val q1 $m), wanted +1"
done

# --- start, console -----------------------------------------------------
api alice POST /api/desktops/d1/start
expect 200
[ "$(vm_field d1 state)" = running ] || fail "d1 did not start"
api alice POST /api/desktops/d1/console
expect 200
spice_trust
# A viewer through the proxy, held while both daemons are scraped.
"$PROBE" unused "$(field port)" "$(field password)" \
    --proxy "127.0.0.1:$PROXY_PORT" --ticket "$(field ticket)" \
    --ca "$SPICE_CA" --host-subject "$SPICE_SUBJECT" --hold 8 \
    >"$T/hold.out" 2>&1 &
hold=$!
for i in $(seq 1 50); do
	grep -q accepted "$T/hold.out" 2>/dev/null && break
	sleep 0.1
done
grep -q accepted "$T/hold.out" || fail "the viewer did not link: $(cat "$T/hold.out")"
for i in $(seq 1 50); do
	[ "$(q --json vm show d1 | jq '.spice_clients | length')" -gt 0 ] 2>/dev/null && break
	sleep 0.1
done
scrape q2 "$QURL"
scrape b2 "$URL/metrics"
[ "$(val b2 'qdesk_broker_spice_sessions{vm="d1"}')" = 1 ] ||
	fail "the broker does not count d1's proxied SPICE session"
[ "$(val b2 'qdesk_broker_proxy_bytes_total{direction="in"}')" -gt 0 ] &&
    [ "$(val b2 'qdesk_broker_proxy_bytes_total{direction="out"}')" -gt 0 ] ||
	fail "the proxy counted no bytes"
[ "$(val b2 qdesk_broker_proxy_connections_total)" -ge 1 ] ||
	fail "the proxy counted no connection"
[ "$(val q2 'qdesk_vm_spice_sessions{vm="d1"}')" -ge 1 ] ||
	fail "qmpd does not count d1's SPICE client"
kill $hold 2>/dev/null
wait $hold 2>/dev/null
for i in $(seq 1 50); do
	scrape b2b "$URL/metrics"
	grep -q 'qdesk_broker_spice_sessions{vm="d1"}' "$T/b2b" || break
	sleep 0.1
done
grep -q 'qdesk_broker_spice_sessions{vm="d1"}' "$T/b2b" &&
	fail "d1's SPICE session is still counted after the viewer left"
[ "$(val q2 qdesk_vm_starts_total)" = $(( $(val q1 qdesk_vm_starts_total) + 1 )) ] ||
	fail "starts_total did not move by 1"
[ "$(val q2 'qdesk_vms{state="running"}')" = 1 ] || fail "q2: running != 1"
[ "$(val q2 'qdesk_vms{state="stopped"}')" = 0 ] || fail "q2: stopped != 0"
[ "$(val q2 'qdesk_vm_resident_memory_bytes{vm="d1"}')" -gt 1000000 ] ||
	fail "d1's QEMU RSS is not there"
val q2 'qdesk_vm_cpu_seconds_total{vm="d1"}' >/dev/null
# QEMU holds none of qmpd's sockets, the metrics listener included
# (anon_inode names are the same for every eventfd: not a shared file).
pid=$(vm_pid d1)
shared=$(comm -12 <(readlink /proc/$QMPD_PID/fd/* | grep -v anon_inode: |
    sort -u) <(readlink /proc/$pid/fd/* | grep -v -e /dev/null -e qemu.log \
    -e anon_inode: | sort -u))
[ -z "$shared" ] || fail "QEMU shares fds with qmpd: $shared"
[ "$(val q2 qdesk_qmp_roundtrip_seconds_count)" -gt 0 ] ||
	fail "no QMP round trip counted"
[ "$(val q2 qdesk_spice_tickets_total)" = $(( $(val q1 qdesk_spice_tickets_total) + 1 )) ] ||
	fail "qmpd's SPICE tickets did not move by 1"
[ "$(val b2 qdesk_broker_tickets_total)" = $(( $(val b1 qdesk_broker_tickets_total) + 1 )) ] ||
	fail "the broker's tickets did not move by 1"

# --- stop ----------------------------------------------------------------
qq vm kill d1 >/dev/null
scrape q3 "$QURL"
[ "$(val q3 'qdesk_vms{state="running"}')" = 0 ] || fail "q3: running != 0"
[ "$(val q3 qdesk_vm_stops_total)" = $(( $(val q2 qdesk_vm_stops_total) + 1 )) ] ||
	fail "stops_total did not move by 1"
grep -q 'vm="d1"' "$T/q3" && fail "a stopped VM still has per-VM samples"

# --- the same cycle in the logs, as key=value fields ---------------------
grep -q 'd1: vm.state event=vm.state vm=d1 state=running pid=[0-9]' \
    "$QMPD_LOG" || fail "no vm.state running line in qmpd.log"
grep -q 'event=vm.state vm=d1 state=stopped reason="killed by admin"' \
    "$QMPD_LOG" || fail "no vm.state stopped line in qmpd.log"
grep -q 'event=login user=alice client=' "$QMPD_LOG" ||
	fail "no login line in qmpd.log"
grep -q 'event=login.failed user=alice client=[^ ]* reason="wrong password"' \
    "$QMPD_LOG" || fail "no login.failed line in qmpd.log"
grep -q 'event=portal.login user=alice client=127.0.0.1$' "$BROKER_LOG" ||
	fail "no portal.login line in broker.log"
grep -q 'event=portal.login.failed user=alice client=127.0.0.1 class=' \
    "$BROKER_LOG" || fail "no portal.login.failed line in broker.log"

# --- who may scrape the broker ------------------------------------------
curl -sk -o /dev/null -w '%{http_code}' -X POST -H 'X-Qdesk: 1' \
    "$URL/metrics" | grep -q 405 || fail "POST /metrics was not a 405"
ip netns add "$NS" || fail "cannot create namespace $NS"
ip link add "$VETH" type veth peer name eth0 netns "$NS" ||
	fail "cannot create a veth pair"
ip addr add 198.51.100.1/30 dev "$VETH"
ip link set "$VETH" up
ip netns exec "$NS" ip addr add 198.51.100.2/30 dev eth0
ip netns exec "$NS" ip link set eth0 up
ip netns exec "$NS" ip link set lo up
OUT=https://198.51.100.1:$HTTPS_PORT
for i in $(seq 1 50); do
	ip netns exec "$NS" curl -sk -o /dev/null "$OUT/api/health" && break
	sleep 0.1
done
code=$(ip netns exec "$NS" curl -sk -o "$T/out.body" -w '%{http_code}' \
    "$OUT/metrics")
[ "$code" = 403 ] || fail "an outside scrape without the token got $code"
grep -q "metrics are for admins" "$T/out.body" || fail "403 says: $(cat "$T/out.body")"
code=$(ip netns exec "$NS" curl -sk -o /dev/null -w '%{http_code}' \
    -H "Authorization: Bearer ${TOKEN}x" "$OUT/metrics")
[ "$code" = 403 ] || fail "an outside scrape with a wrong token got $code"
code=$(ip netns exec "$NS" curl -sk -o /dev/null -w '%{http_code}' \
    -H "Authorization: Bearer ${TOKEN:0:20}" "$OUT/metrics")
[ "$code" = 403 ] || fail "an outside scrape with half the token got $code"
code=$(ip netns exec "$NS" curl -sk -o "$T/b4" -w '%{http_code}' \
    -H "Authorization: Bearer $TOKEN" "$OUT/metrics")
[ "$code" = 200 ] || fail "an outside scrape with the token got $code"
python3 "$CHECK" "$T/b4" || fail "b4 is not valid exposition text"
# 127.0.0.2 is loopback too.
scrape b5 "https://127.0.0.1:$HTTPS_PORT/metrics" --interface 127.0.0.2

# --- a scrape with 100 VMs answers well under 100 ms ---------------------
for i in $(seq 1 100); do
	qq vm create "m$i" --accel kvm --memory 32 --display none \
	    --kernel "$GUESTS/vmlinuz" >/dev/null
done
for i in 1 2 3; do
	curl -s -o "$T/q100" -w '%{time_total}\n' "$QURL" >>"$T/times"
done
python3 "$CHECK" "$T/q100" || fail "q100 is not valid exposition text"
[ "$(val q100 'qdesk_vms{state="stopped"}')" = 101 ] || fail "q100: not 101 stopped"
best=$(sort -n "$T/times" | head -1)
log "scrape of qmpd with 101 VMs: best of 3 ${best}s"
python3 -c "import sys; sys.exit(0 if float('$best') < 0.1 else 1)" ||
	fail "a scrape with 101 VMs took ${best}s"
log PASS
