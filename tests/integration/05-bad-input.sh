#!/usr/bin/env bash
# Bad input never crashes or stalls qmpd: huge lines, bad JSON, unknown
# commands, wrong types, invalid names, a client that never reads, 100
# clients at once, a stranger. The daemon still answers afterwards.
. "$(dirname "$0")/lib.sh"

start_qmpd
python3 - "$QDESK_SOCKET" <<'PY' || fail "protocol checks failed"
import json, socket, sys, time
path = sys.argv[1]

def conn():
    s = socket.socket(socket.AF_UNIX)
    s.connect(path)
    f = s.makefile('rwb')
    hello = json.loads(f.readline())
    assert hello["qdesk"]["protocol"] == 1, hello
    return s, f

def ask(f, line):
    f.write(line if isinstance(line, bytes) else line.encode())
    f.write(b"\n")
    f.flush()
    return json.loads(f.readline())

s, f = conn()
cases = [
    (b"{not json", "ParseError"),
    (b"[1,2]", "InvalidRequest"),
    (b'{"id":1}', "InvalidRequest"),
    (b'{"id":2,"cmd":"vm.explode"}', "CommandNotFound"),
    (b'{"id":3,"cmd":"vm.create","args":{"name":"a","memory":"lots"}}', "InvalidArgument"),
    (b'{"id":4,"cmd":"vm.create","args":{"name":"Bad Name","kernel":"/x"}}', "InvalidArgument"),
    (b'{"id":5,"cmd":"vm.create","args":{"name":"../etc","kernel":"/x"}}', "InvalidArgument"),
    (b'{"id":6,"cmd":"vm.create","args":{"name":"ok","kernel":"/nonexistent"}}', "InvalidArgument"),
    (b'{"id":7,"cmd":"vm.start","args":{}}', "InvalidArgument"),
    (b'{"id":8,"cmd":"vm.start","args":{"name":"ghost"}}', "NotFound"),
    (b'{"id":9,"cmd":"vm.show","args":{"name":"x","bogus":1}}', "InvalidArgument"),
    (b'{"id":10,"cmd":"vm.list","args":"x"}', "InvalidRequest"),
    (b'\xff\xfe\x00garbage', "ParseError"),
]
for line, want in cases:
    r = ask(f, line)
    assert r.get("error", {}).get("class") == want, (line, r)
    assert r["error"]["desc"], r
r = ask(f, '{"id":"same","cmd":"server.status"}')
assert r["id"] == "same" and r["return"]["version"], r

# 500 pipelined requests in one write: every one answered, in order
# (qmpd takes 16 per turn of its loop, then lets others in).
s.sendall(b"".join(b'{"id":%d,"cmd":"vm.list"}\n' % i for i in range(500)))
ids = [json.loads(f.readline())["id"] for _ in range(500)]
assert ids == list(range(500)), "pipelined replies out of order"

# A line over 1 MiB: an error, then this client alone is closed.
s2, f2 = conn()
s2.sendall(b'{"cmd":"' + b"x" * (1100 * 1024))
r = json.loads(f2.readline())
assert r["error"]["class"] == "LineTooLong", r
assert f2.readline() == b"", "connection not closed after a huge line"

# A client that sends many requests and never reads a reply.
s3, f3 = conn()
s3.setblocking(False)
req = b'{"cmd":"vm.list"}\n' * 1000
sent = 0
t0 = time.time()
while time.time() - t0 < 3:
    try:
        sent += s3.send(req)
    except BlockingIOError:
        time.sleep(0.01)
    except (BrokenPipeError, ConnectionResetError):
        break
# ...meanwhile the daemon answers everyone else at once.
t0 = time.time()
r = ask(f, '{"cmd":"server.status"}')
assert "return" in r and time.time() - t0 < 1.0, r

# 100 clients at once.
clients = [conn() for _ in range(100)]
for i, (cs, cf) in enumerate(clients):
    cf.write(b'{"id":%d,"cmd":"server.status"}\n' % i)
    cf.flush()
for i, (cs, cf) in enumerate(clients):
    r = json.loads(cf.readline())
    assert r["id"] == i and "return" in r, r
for cs, cf in clients:
    cs.close()
s3.close()
print("protocol checks ok", file=sys.stderr)
PY

# Not root, not in group qdesk: refused.
if id nobody >/dev/null 2>&1; then
	chmod 0666 "$QDESK_SOCKET"
	out=$(setpriv --reuid=nobody --regid=nogroup --clear-groups "$QDESK_BIN" status 2>&1)
	rc=$?
	[ $rc -ne 0 ] || fail "nobody was let in"
	echo "$out" | grep -q PermissionDenied || fail "nobody: $out"
	chmod 0660 "$QDESK_SOCKET"
fi

kill -0 "$QMPD_PID" || fail "qmpd died"
qq status >/dev/null
log ok
