#!/usr/bin/env bash
# A floating stateless pool of 3 Linux desktops (TCG) from the test
# template, through the broker's HTTPS API: a user with no desktop logs
# in and GET /api/desktops hands them one from the pool, booted; they
# write a file on it (serial console); logout gives it back: it is nobody's
# again, stopped, its disk reset to the template, and the file is gone
# when it boots again. A second user gets a different desktop meanwhile.
. "$(dirname "$0")/lib.sh"
. "$top/tests/lib/broker-lib.sh"

start_qmpd --broker-user "$BROKER_USER"
add_user alice alice-pw-1
add_user bob bob-pw-2
start_broker

qq image import base "$GUESTS/rootfs.qcow2" --format qcow2 >/dev/null
qq pool create lin --template base --size 3 --mode floating --stateless \
    --accel tcg --memory 256 --display none --kernel "$GUESTS/vmlinuz" \
    --initrd "$GUESTS/initrd.img" --append "console=ttyS0 no_timer_check root=/dev/vda rw" \
    >/dev/null
pool() { q --json pool show lin | jq -r "$1"; }
[ "$(pool .count)" = 3 ] || fail "pool lin has $(pool .count) desktops"
[ "$(pool .free)" = 3 ] || fail "pool lin: $(pool .free) free, wanted 3"
for d in lin-1 lin-2 lin-3; do
	[ "$(q --json vm show $d | jq -r .pool)" = lin ] || fail "$d is not in pool lin"
	[ "$(q --json vm show $d | jq -r .image)" = "$d-disk" ] || fail "$d has no own clone"
done

n=0
gsh() {
	n=$((n + 1))
	serial_send "$1" "$2; echo QM-\$((1000 + $n))"
	wait_console "$1" "QM-$((1000 + n))" 60
}

# --- alice logs in and is given a desktop ---------------------------------
login alice alice-pw-1
expect 200
api alice GET /api/desktops
expect 200 "desktops of a user with a pool but no desktop"
[ "$(printf '%s' "$BODY" | jq length)" = 1 ] || fail "alice got: $BODY"
desk=$(field '[0].name')
[ "$(field '[0].pool')" = lin ] || fail "not from pool lin: $BODY"
[ "$(field '[0].state')" = running ] || fail "not running: $BODY"
[ "$(q --json vm show "$desk" | jq -r .owner)" = alice ] || fail "$desk is not alice's"
[ "$(pool .in_use)" = 1 ] || fail "in use: $(pool .in_use)"
# Asking again gives the same desktop, not another one.
api alice GET /api/desktops
[ "$(field '[0].name')" = "$desk" ] || fail "second list: $BODY"

# bob, meanwhile, gets another one.
login bob bob-pw-2
api bob GET /api/desktops
expect 200
bdesk=$(field '[0].name')
[ -n "$bdesk" ] && [ "$bdesk" != null ] && [ "$bdesk" != "$desk" ] ||
	fail "bob got '$bdesk', alice has $desk"
# bob cannot release alice's desktop (through the broker role).
r=$(python3 - "$QDESK_SOCKET" "$desk" <<'EOF'
import json, socket, sys
s = socket.socket(socket.AF_UNIX); s.connect(sys.argv[1]); f = s.makefile("rw")
f.readline()
f.write(json.dumps({"id": 1, "cmd": "desktop.release",
    "args": {"login": "bob", "vm": sys.argv[2]}}) + "\n"); f.flush()
print(f.readline().strip())
EOF
)
jq -e '.error.class == "PermissionDenied"' <<<"$r" >/dev/null ||
	fail "bob released alice's desktop: $r"

# --- alice writes a file -------------------------------------------------
wait_console "$desk" "QDESK GUEST READY" 120
wait_console "$desk" "built-in shell" 30
wait_console "$desk" "$GUEST_PROMPT" 30
gsh "$desk" "echo qd-7001 > /f1.txt; sync"
gsh "$desk" "cat /f1.txt"
grep -aq "^qd-7001" "$STATE/vms/$desk/serial.log" || fail "the file was not written"

# --- logout gives it back, reset ------------------------------------------
api alice POST /api/logout
expect 200
back=
for i in $(seq 1 150); do
	s=$(q --json pool show lin | jq -c --arg d "$desk" '.desktops[] | select(.name == $d)')
	if jq -e '.owner == null and .free and (.dirty | not) and .state == "stopped"' \
	    <<<"$s" >/dev/null; then
		back=1
		break
	fi
	sleep 0.2
done
[ -n "$back" ] || fail "$desk is not back in the pool after logout: $s"
grep -q "$desk: back in pool lin (released, was alice)" "$QMPD_LOG" ||
	fail "qmpd did not log the return"
grep -q "$desk: disk $desk-disk reset" "$QMPD_LOG" || fail "the disk was not reset"
[ "$(pool .in_use)" = 1 ] || fail "in use after alice's logout: $(pool .in_use) (bob still has one)"
[ "$(q --json vm show "$bdesk" | jq -r .owner)" = bob ] || fail "bob lost $bdesk"

# The desktop boots again from the template: the file is gone.
: >"$STATE/vms/$desk/serial.log"
qq vm start "$desk" >/dev/null
wait_console "$desk" "QDESK GUEST READY" 120
wait_console "$desk" "built-in shell" 30
wait_console "$desk" "$GUEST_PROMPT" 30
gsh "$desk" "cat /f1.txt 2>&1 | tr a-z A-Z"
grep -aiq "^qd-7001" "$STATE/vms/$desk/serial.log" && fail "the file survived the return"
grep -aiq "NO SUCH FILE" "$STATE/vms/$desk/serial.log" || fail "no 'No such file' from cat"
qq vm kill "$desk" >/dev/null

# bob shuts his desktop down from the portal: it goes back too.
api bob POST "/api/desktops/$bdesk/shutdown"
qq vm kill "$bdesk" >/dev/null 2>&1   # busybox has no ACPI daemon
for i in $(seq 1 100); do
	[ "$(q --json vm show "$bdesk" | jq -r .owner)" = null ] && break
	sleep 0.2
done
[ "$(q --json vm show "$bdesk" | jq -r .owner)" = null ] ||
	fail "$bdesk is still bob's after it stopped"
for i in $(seq 1 100); do
	[ "$(pool .free)" = 3 ] && break
	sleep 0.2
done
[ "$(pool .free)" = 3 ] || fail "free after both returned: $(pool .free)"
log "PASS"
