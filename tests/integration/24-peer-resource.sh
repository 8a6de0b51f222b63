#!/usr/bin/env bash
# Who may talk to qmpd comes from the socket itself (SO_PEERCRED and
# SO_PEERGROUPS), not from /proc/PID, which a peer gone before the accept
# no longer has (and whose pid may be someone else's by then); a refused
# peer is closed at once. A full disk is a ResourceExhausted error, exit
# status 4, not InvalidArgument; qmpd keeps answering.
. "$(dirname "$0")/lib.sh"

getent group qdesk >/dev/null || fail "no group qdesk (scripts/setup makes it)"
id nobody >/dev/null 2>&1 || fail "no user nobody"

# The state dir on a 2 MiB tmpfs, so the disk fills fast.
mkdir -p "$STATE"
mount -t tmpfs -o size=2m,mode=0755 qdesk-test24 "$STATE" ||
	fail "cannot mount a tmpfs on $STATE"
EXTRA_CLEANUP='umount "$STATE"'

start_qmpd

# --- 1. A peer in group qdesk that is gone before qmpd accepts ----------
# qmpd is stopped; a process with qdesk as a supplementary group (not its
# primary one) connects, sends a request, hands the socket to a child and
# exits. When qmpd resumes, /proc has nothing left of the connecting pid.
kill -STOP "$QMPD_PID"
setpriv --reuid=nobody --regid=nogroup --groups=qdesk \
    /usr/bin/python3 - "$QDESK_SOCKET" >"$T/gone.out" 2>&1 <<'PY' &
import os, socket, sys
s = socket.socket(socket.AF_UNIX)
s.connect(sys.argv[1])
s.sendall(b'{"id":1,"cmd":"server.status"}\n')
if os.fork() > 0:
    os._exit(0)
s.settimeout(20)
f = s.makefile("r")
print(f.readline().strip())
print(f.readline().strip())
sys.stdout.flush()
PY
gone=$!
wait "$gone"
[ -d "/proc/$gone" ] && fail "the connecting process $gone is still there"
kill -CONT "$QMPD_PID"
for i in $(seq 1 100); do
	[ "$(wc -l <"$T/gone.out")" -ge 2 ] && break
	sleep 0.1
done
grep -q '"qdesk"' "$T/gone.out" || fail "no hello for the group member: $(cat "$T/gone.out")"
grep -q '"id": *1, *"return"' "$T/gone.out" ||
	fail "a qdesk member whose connecting pid was gone was refused: $(cat "$T/gone.out")"
grep -q "refused uid" "$QMPD_LOG" && fail "qmpd logged a refusal: $(grep 'refused uid' "$QMPD_LOG")"
log "a group member is admin by SO_PEERGROUPS, with its pid gone"

# --- 2. A stranger: one line, then the socket is closed at once ----------
chmod 0666 "$QDESK_SOCKET"
setpriv --reuid=nobody --regid=nogroup --clear-groups \
    /usr/bin/python3 - "$QDESK_SOCKET" <<'PY' || fail "stranger checks failed"
import json, socket, sys, time
s = socket.socket(socket.AF_UNIX)
s.connect(sys.argv[1])
s.settimeout(5)
f = s.makefile("rb")
r = json.loads(f.readline())
assert r["error"]["class"] == "PermissionDenied", r
assert f.readline() == b"", "more than one line for a stranger"
# Closed, not half-closed: qmpd reads nothing more from it.
time.sleep(0.2)
try:
    for i in range(100):
        s.send(b'{"id":2,"cmd":"server.status"}\n')
        time.sleep(0.01)
    sys.exit("qmpd kept reading a refused peer's socket")
except (BrokenPipeError, ConnectionResetError):
    pass
PY
chmod 0660 "$QDESK_SOCKET"
grep -q "refused uid $(id -u nobody)" "$QMPD_LOG" || fail "refusal not logged"
q status >/dev/null || fail "qmpd stopped answering after a stranger"
log "a stranger gets one line and a closed socket"

# --- 3. The disk fills: ResourceExhausted, exit 4 ------------------------
: >"$T/vmlinuz"
/usr/bin/python3 - "$QDESK_SOCKET" "$T" <<'PY' || fail "filling the state dir failed"
import json, socket, sys
s = socket.socket(socket.AF_UNIX)
s.connect(sys.argv[1])
f = s.makefile("rw")
f.readline()
pad = "x" * 3000
for i in range(5000):
    f.write(json.dumps({"id": i, "cmd": "vm.create", "args": {
        "name": "fill%d" % i,
        "display": "none", "kernel": sys.argv[2] + "/vmlinuz", "append": pad}}) + "\n")
    f.flush()
    r = json.loads(f.readline())
    if "error" in r:
        e = r["error"]
        assert e["class"] == "ResourceExhausted", r
        print("full after %d VMs: %s" % (i, e["desc"]), file=sys.stderr)
        sys.exit(0)
sys.exit("5000 VMs fitted in 2 MiB?")
PY
q vm create one-more --display none --kernel "$T/vmlinuz" \
    --append "$(printf 'y%.0s' $(seq 1 3000))" 2>"$T/full.err"
rc=$?
[ $rc -eq 4 ] || fail "vm create on a full disk: exit $rc, wanted 4: $(cat "$T/full.err")"
grep -q "^qdesk: ResourceExhausted: .*No space left on device" "$T/full.err" ||
	fail "full-disk message: $(cat "$T/full.err")"
[ "$(wc -l <"$T/full.err")" -eq 1 ] || fail "not one line: $(cat "$T/full.err")"
# Still answering; what was acknowledged is there.
q vm show fill0 >/dev/null || fail "fill0 lost"
q vm list >/dev/null || fail "vm list failed on a full disk"
alive "$QMPD_PID" || fail "qmpd died on a full disk"
log "a full disk is ResourceExhausted, exit 4"
log ok
