#!/usr/bin/env bash
# test: idle  (the broker and tiny KVM desktops, no TCG: its time is timeouts and slow clients waited for, not CPU)
# The connection limit (broker/connlimit.c) filled while a console is open
# (issue 12): with --max-conns 4, alice's SPICE console through the proxy
# (127.0.0.2) is linked; three more tunnels (127.0.0.1, CONNECTs with her
# ticket) fill the broker, and the next connection is refused with a
# one-line reason: "HTTP/1.1 503 Too many connections: 4 connections
# already" (spice-probe prints it) and the refusal is logged. The open
# console is never cut meanwhile (spice-probe --hold exits 0, qmpd's
# session stays open), and once the fillers go a new console links again.
. "$(dirname "$0")/lib.sh"
. "$top/tests/lib/broker-lib.sh"

HOLD_PID=
FILL_PID=
console_cleanup() {
	local p
	for p in $HOLD_PID $FILL_PID; do
		kill "$p" 2>/dev/null
		wait "$p" 2>/dev/null
	done
	stop_broker
}
EXTRA_CLEANUP=console_cleanup

start_qmpd --broker-user "$BROKER_USER"
need_kvm
add_user alice alice-pw-1
add_desktop d1 alice
start_broker --max-conns 4
login alice alice-pw-1
expect 200
api alice POST /api/desktops/d1/start
expect 200
api alice POST /api/desktops/d1/console
expect 200
spice_trust
PORT=$(field port)
PW=$(field password)
TICKET=$(field ticket)
# via HOLD_SECS [args]: spice-probe from 127.0.0.2 through the proxy.
via() {
	local hold=$1
	shift
	"$PROBE" unused "$PORT" "$PW" --bind 127.0.0.2 \
	    --proxy "127.0.0.1:$PROXY_PORT" --ticket "$TICKET" \
	    --ca "$SPICE_CA" --host-subject "$SPICE_SUBJECT" --hold "$hold" "$@"
}

# --- the console: linked and held --------------------------------------
via 20 >"$T/hold.out" 2>&1 &
HOLD_PID=$!
for _ in $(seq 1 200); do
	grep -q "proxy: 127.0.0.2 tunnelled to d1" "$BROKER_LOG" && break
	alive "$HOLD_PID" || broker_fail "the console did not link: $(cat "$T/hold.out")"
	sleep 0.1
done
grep -q "proxy: 127.0.0.2 tunnelled to d1" "$BROKER_LOG" ||
	broker_fail "the console did not come through the proxy"

# --- fill the broker: three tunnels, then one too many -------------------
# Prints each connection's status line as it comes; holds the tunnels
# until killed.
python3 - "$PROXY_PORT" "$TICKET:$PORT" >"$T/fill.out" 2>"$T/fill.err" <<'PY' &
import socket, sys, time
port, target = int(sys.argv[1]), sys.argv[2]
held = []
for i in range(4):
    s = socket.create_connection(("127.0.0.1", port), timeout=10)
    s.sendall(("CONNECT %s HTTP/1.1\r\nHost: %s\r\n\r\n" % (target, target)).encode())
    head = b""
    while b"\r\n\r\n" not in head:
        b = s.recv(1)
        if not b:
            break
        head += b
    print(head.split(b"\r\n")[0].decode() or "closed", flush=True)
    held.append(s)
time.sleep(3600)
PY
FILL_PID=$!
for _ in $(seq 1 200); do
	[ "$(wc -l <"$T/fill.out")" -ge 4 ] && break
	alive "$FILL_PID" || fail "the filler: $(cat "$T/fill.err")"
	sleep 0.1
done
log "fillers: $(tr '\n' '|' <"$T/fill.out")"
[ "$(sed -n 1,3p "$T/fill.out" | grep -c '^HTTP/1.1 200 ')" = 3 ] ||
	broker_fail "the first three tunnels were not opened: $(cat "$T/fill.out")"
[ "$(sed -n 4p "$T/fill.out")" = "HTTP/1.1 503 Too many connections: 4 connections already" ] ||
	broker_fail "the fourth connection did not get a clear 503: $(cat "$T/fill.out")"

# A viewer now: refused, saying why, in one line.
out=$(via 1 2>&1) && broker_fail "a viewer linked past the limit: $out"
[ "$out" = "spice-probe: proxy: HTTP/1.1 503 Too many connections: 4 connections already" ] ||
	broker_fail "a viewer past the limit was told: $out"
[ "$(grep -c "proxy: 127.0.0.[12] refused: 4 connections already" "$BROKER_LOG")" -ge 2 ] ||
	broker_fail "the refusals are not logged"

# --- the open console was never cut --------------------------------------
alive "$HOLD_PID" || broker_fail "the console ended while the broker was full: $(cat "$T/hold.out")"
q --json session list --vm d1 | jq -e '[.sessions[] | select(.end == null)] | length == 1' \
    >/dev/null || fail "qmpd's session of the console is not open: $(q --json session list --vm d1)"
wait "$HOLD_PID" || broker_fail "the console was cut: $(cat "$T/hold.out")"
HOLD_PID=

# --- the fillers gone, a console links again -----------------------------
kill "$FILL_PID"
wait "$FILL_PID" 2>/dev/null
FILL_PID=
# A fresh console (the first password may have expired by now).
api alice POST /api/desktops/d1/console
expect 200
PW=$(field password)
TICKET=$(field ticket)
for _ in $(seq 1 50); do
	via 1 >"$T/again.out" 2>&1 && break
	sleep 0.2
done
via 1 >"$T/again.out" 2>&1 || broker_fail "no console after the fillers left: $(cat "$T/again.out")"
kill -0 "$BROKER_PID" || broker_fail "the broker died"
log ok
