#!/usr/bin/env bash
# test: idle  (the broker and tiny KVM desktops, no TCG: its time is timeouts and slow clients waited for, not CPU)
# The SPICE proxy (HTTP CONNECT, as Proxmox's spiceproxy): spice-probe
# links through the tunnel with a valid ticket, and with exactly what the
# .vv file gives remote-viewer; forged, expired, other-VM and other-port
# tickets, plain addresses, tickets of an earlier broker and anything but
# CONNECT are refused with 403/405 before any connection is made.
. "$(dirname "$0")/lib.sh"
. "$top/tests/lib/broker-lib.sh"

PROXY=127.0.0.1:$PROXY_PORT

# via TICKET PORT PASSWORD [args]: spice-probe through the proxy.
via() {
	local ticket=$1 port=$2 pw=$3
	shift 3
	"$PROBE" unused "$port" "$pw" --proxy "$PROXY" --ticket "$ticket" \
	    --ca "$SPICE_CA" --host-subject "$SPICE_SUBJECT" "$@"
}

# refused TICKET PORT WHAT: the proxy answers 403 to this CONNECT.
refused() {
	local out rc
	out=$(via "$1" "$2" whatever 2>&1)
	rc=$?
	[ $rc = 1 ] && printf '%s' "$out" | grep -q "HTTP/1.1 403 Forbidden" ||
		broker_fail "$3: exit $rc: $out"
}

alice_and_bob
# A ticket lives 20 s: long enough for the valid-ticket checks at load 20
# (CI, once, at 5 s: 6 s passed between the ticket and spice-probe's
# tunnel, and QEMU's password had expired), short enough that the expiry
# check below falls inside the 30 s held session.
start_broker --console-ttl 20

login alice alice-pw-1
expect 200
login bob bob-pw-2
expect 200
api alice POST /api/desktops/d1/start
expect 200
api bob POST /api/desktops/d2/start
expect 200

# --- a valid ticket ----------------------------------------------------
api alice POST /api/desktops/d1/console
expect 200
t1=$(field ticket)
p1=$(field port)
pw1=$(field password)
spice_trust
[ "$(field proxy)" = "http://$PROXY" ] || fail "proxy: $(field proxy)"
via "$t1" "$p1" "$pw1" >/dev/null || broker_fail "a valid ticket did not tunnel"
grep -q "proxy: 127.0.0.1 tunnelled to d1 port $p1" "$BROKER_LOG" ||
	broker_fail "the tunnel is not in the log"
# Through the tunnel a wrong password is still QEMU's to refuse.
out=$(via "$t1" "$p1" wrong-password 2>&1)
[ $? = 1 ] && printf '%s' "$out" | grep -q "password refused" ||
	fail "a wrong password through the tunnel: $out"

# Exactly what the .vv file gives remote-viewer: host, port, proxy.
curl -sk -o "$T/d1.vv" -b "$T/jar.alice" "$URL/api/desktops/d1/console.vv"
vv() { sed -n "s/^$1=//p" "$T/d1.vv"; }
[ "$(vv proxy)" = "http://$PROXY" ] || fail ".vv proxy: $(vv proxy)"
vv_ca "$T/d1.vv" >"$T/vv-ca.pem"
"$PROBE" "$(vv host)" "$(vv tls-port)" "$(vv password)" --proxy "$PROXY" \
    --ca "$T/vv-ca.pem" --host-subject "$(vv host-subject)" >/dev/null ||
	broker_fail "the .vv file's host, tls-port, ca and proxy do not link"

# A session held through the tunnel survives another console request, and
# an idle tunnel stays up (30 s, well past the 10 s request-head
# deadline), while the checks below run.
api alice POST /api/desktops/d1/console
t2=$(field ticket)
pw2=$(field password)
via "$t2" "$p1" "$pw2" --hold 30 >"$T/hold.out" 2>&1 &
hold=$!
for i in $(seq 1 50); do
	grep -q accepted "$T/hold.out" && break
	sleep 0.1
done
# qmpd's session names the viewer, with the proxy's side as "via".
for i in $(seq 1 30); do
	s=$(q --json session list --vm d1 |
	    jq -c '[.sessions[] | select(.end == null and .via != null)][0]')
	[ "$s" != null ] && break
	sleep 0.1
done
jq -e '.user == "alice" and (.client | startswith("127.0.0.1:")) and
    (.via | startswith("127.0.0.1:")) and .client != .via' <<<"$s" >/dev/null ||
	broker_fail "the proxied session does not name its viewer: $s"
api alice POST /api/desktops/d1/console
expect 200

# --- refused tickets ------------------------------------------------------
api alice POST /api/desktops/d1/console
t1=$(field ticket)
exp1=$(field expires)
api bob POST /api/desktops/d2/console
t2=$(field ticket)
p2=$(field port)
pw2=$(field password)
s2=$(field host_subject)	# each desktop's certificate names it
[ "$s2" = CN=qdesk-spice-d2 ] || fail "d2's host_subject: $s2"
[ "$p1" != "$p2" ] || fail "d1 and d2 share SPICE port $p1"

# Forged: one hex digit of the signature changed.
last=${t1: -1}
[ "$last" = 0 ] && sub=1 || sub=0
refused "${t1%?}$sub" "$p1" "a forged signature"
# Made up from scratch, with a far expiry.
refused "qdesk-d1-4102444800-$(printf '%064d' 0)" "$p1" "a made-up ticket"
# Another VM: d1's ticket to d2's port, d2's ticket to d1's port.
refused "$t1" "$p2" "d1's ticket to d2's port"
refused "$t2" "$p1" "d2's ticket to d1's port"
# d1's signature under d2's name.
refused "qdesk-d2-${t1#qdesk-d1-}" "$p2" "d1's signature on d2's name"
# A later expiry under the old signature.
refused "qdesk-d1-$((exp1 + 3600))-${t1##*-}" "$p1" "a stretched expiry"
# A plain address: the proxy reaches only what a ticket names.
refused 127.0.0.1 "$p1" "a plain loopback address"
refused localhost 22 "ssh on the host"
grep -q "refused: bad signature" "$BROKER_LOG" ||
	broker_fail "forged tickets are not logged"

# Bob's own ticket works for his desktop.
SPICE_SUBJECT=$s2 via "$t2" "$p2" "$pw2" >/dev/null ||
	broker_fail "bob's own ticket did not tunnel"

# Anything but CONNECT.
first=$(printf 'GET http://127.0.0.1:%s/ HTTP/1.1\r\nHost: x\r\n\r\n' "$p1" |
    socat -t3 - "TCP:$PROXY" | head -1 | tr -d '\r')
[ "$first" = "HTTP/1.1 405 Method Not Allowed" ] || fail "GET via the proxy: $first"
first=$(printf 'hello\r\n\r\n' | socat -t3 - "TCP:$PROXY" | head -1 | tr -d '\r')
[ "$first" = "HTTP/1.1 400 Bad Request" ] || fail "garbage to the proxy: $first"

# --- expiry -------------------------------------------------------------
# A ticket is good until its expiry plus 5 s of grace, then refused.
now=$(date +%s)
sleep $((exp1 - now + 7))
refused "$t1" "$p1" "an expired ticket"
grep -q "refused: ticket for d1 expired" "$BROKER_LOG" ||
	broker_fail "the expired ticket is not logged as such"

wait $hold || broker_fail "the idle tunnelled session was cut: $(cat "$T/hold.out")"
grep -q "held the session for 30 s" "$T/hold.out" ||
	broker_fail "the held session: $(cat "$T/hold.out")"

# --- a new broker, a new key ----------------------------------------------
api alice POST /api/desktops/d1/console
t1=$(field ticket)
pw1=$(field password)
via "$t1" "$p1" "$pw1" >/dev/null || broker_fail "a fresh ticket did not tunnel"
stop_broker
start_broker --console-ttl 20
refused "$t1" "$p1" "a ticket from the broker before the restart"

kill -0 "$BROKER_PID" || broker_fail "the broker died"
log ok
