#!/usr/bin/env bash
# The failed-login lockout through user.auth as the broker sends it (the
# client's address in "client", the RDP gateway's with a port): a stranger
# at one address locks the login from that address only; a password over
# the limit is refused at once and counts; a flood of made-up names
# neither stops a real login from being locked nor grows the lockouts
# table without bound (records forgotten in memory leave LMDB too).
. "$(dirname "$0")/lib.sh"

start_qmpd --broker-user qdesk-broker
printf 'alice pw\n' | qq user add alice --password-stdin >/dev/null
printf 'bob pw\n' | qq user add bob --password-stdin >/dev/null

# auth LOGIN PASSWORD CLIENT: the error class, or "ok".
auth() {
	/usr/bin/python3 - "$QDESK_SOCKET" "$1" "$2" "$3" <<'EOF'
import json, socket, sys
s = socket.socket(socket.AF_UNIX)
s.connect(sys.argv[1])
f = s.makefile("rw")
f.readline()
f.write(json.dumps({"id": 1, "cmd": "user.auth", "args": {"login": sys.argv[2],
    "password": sys.argv[3], "client": sys.argv[4]}}) + "\n")
f.flush()
r = json.loads(f.readline())
print(r["error"]["class"] if "error" in r else "ok")
EOF
}

# A stranger guesses alice's password from one address (RDP, any port).
for i in 1 2 3 4 5; do
	[ "$(auth alice "guess$i" "RDP 203.0.113.9:4000$i")" = AuthFailed ] ||
		fail "guess $i was not refused"
done
[ "$(auth alice 'alice pw' 'RDP 203.0.113.9:50000')" = Locked ] ||
	fail "the stranger's address is not locked"
# Alice at her own desk (the portal sends the bare address) gets in.
[ "$(auth alice 'alice pw' 198.51.100.7)" = ok ] ||
	fail "alice was locked out by a stranger at another address"
grep -q "login alice from RDP 203.0.113.9:50000 refused: locked" "$QMPD_LOG" ||
	fail "the lock is not logged"

# A password over 256 bytes: refused at once, and it counts.
long=$(printf 'x%.0s' $(seq 1 300))
t0=$(date +%s%N)
for i in 1 2 3 4 5; do
	[ "$(auth bob "$long" 192.0.2.50)" = AuthFailed ] ||
		fail "an over-long password was not refused"
done
[ "$(auth bob 'bob pw' 192.0.2.50)" = Locked ] ||
	fail "over-long passwords did not count as failures"
grep -q "login bob from 192.0.2.50 refused: the password is 300 bytes long" \
    "$QMPD_LOG" || fail "the over-long password is not logged as such"

# 5,000 made-up names, each failing from its own address (over-long
# passwords: no hash, so the flood is fast), pipelined as a broker would.
/usr/bin/python3 - "$QDESK_SOCKET" "$long" <<'EOF' || fail "flood failed"
import json, socket, sys
s = socket.socket(socket.AF_UNIX)
s.connect(sys.argv[1])
f = s.makefile("rw")
f.readline()
n = 5000
for i in range(n):
    f.write(json.dumps({"id": i, "cmd": "user.auth", "args": {
        "login": "made-up-%d" % i, "password": sys.argv[2],
        "client": "10.%d.%d.1" % (i // 250, i % 250)}}) + "\n")
f.flush()
for i in range(n):
    r = json.loads(f.readline())
    assert r.get("error", {}).get("class") == "AuthFailed", r
EOF
# A real login is still locked after it.
for i in 1 2 3 4 5; do
	auth alice "again$i" 192.0.2.77 >/dev/null
done
[ "$(auth alice 'alice pw' 192.0.2.77)" = Locked ] ||
	fail "after the flood, 5 failures no longer lock alice"
# The lockouts table on disk stays bounded: 4,096 made-up records at most,
# plus the real users' few.
n=$(mdb_stat -s lockouts "$STATE/db" | sed -n 's/^ *Entries: //p')
[ -n "$n" ] || fail "mdb_stat: $(mdb_stat -s lockouts "$STATE/db" 2>&1)"
log "lockout records on disk after 5,000 made-up names: $n"
[ "$n" -le 4110 ] || fail "the lockouts table grew to $n records"
[ "$n" -ge 4000 ] || fail "only $n lockout records: were the failures stored?"
# Restarted, qmpd still locks alice (her records survived the flood).
kill9_qmpd
start_qmpd --broker-user qdesk-broker
[ "$(auth alice 'alice pw' 192.0.2.77)" = Locked ] ||
	fail "alice's lock did not survive the flood and a restart"
[ "$(auth alice 'alice pw' 198.51.100.7)" = ok ] ||
	fail "alice cannot log in from her own address after the restart"
log ok
