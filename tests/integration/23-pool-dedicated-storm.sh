#!/usr/bin/env bash
# Pools of tiny boot-sector desktops under KVM, with qmpd's boot cap at 2:
# a dedicated pool keeps a user's desktop across logins and refuses users
# of other departments; prestart keeps K free desktops booted, also after
# one is handed out; a storm of 8 boots never has more than 2 VMs
# starting at once (counted from qmpd's vm.state events) and all end
# running; resize up and down (free desktops only), rm refused while a
# desktop is in use; kill -9 of qmpd loses no pool or assignment.
. "$(dirname "$0")/lib.sh"

[ -r /dev/kvm ] || skip "no /dev/kvm"
CAP=2
start_qmpd --boot-cap $CAP
q --json status | jq -e '.accels | index("kvm")' >/dev/null ||
	skip "qmpd says KVM is not usable here"

# Every event, for the boot-cap count.
"$QDESK_BIN" --json events >"$T/events" 2>&1 &
EV_PID=$!
EXTRA_CLEANUP='kill $EV_PID 2>/dev/null'

# broker-role requests (admins may make them too): one reply line each.
breq() {
	python3 - "$QDESK_SOCKET" "$@" <<'EOF'
import json, socket, sys
s = socket.socket(socket.AF_UNIX); s.connect(sys.argv[1]); f = s.makefile("rw")
f.readline()
for i, a in enumerate(sys.argv[2:]):
    cmd, _, args = a.partition(" ")
    f.write(json.dumps({"id": i, "cmd": cmd, "args": json.loads(args)}) + "\n")
    f.flush()
    print(f.readline().strip())
EOF
}
pfield() { q --json pool show "$1" | jq -r "$2"; }
wait_for() {	# wait_for SECONDS DESCRIPTION 'SHELL CONDITION'
	local t=$1 what=$2 i
	for i in $(seq 1 $((t * 5))); do
		eval "$3" && return 0
		sleep 0.2
	done
	fail "not after ${t}s: $what"
}

qq image import tiny "$GUESTS/boot.img" --format raw >/dev/null
TINY=(--accel kvm --memory 32 --display none)
qq dept add sales >/dev/null
qq dept add emea --parent sales >/dev/null
qq dept add it >/dev/null
qq user add alice --dept emea --password-stdin <<<'alice pw' >/dev/null
qq user add bob --dept it --password-stdin <<<'bob pw' >/dev/null
qq user add carol --password-stdin <<<'carol pw' >/dev/null

# --- refusals at create ----------------------------------------------------
q_status 1 pool create bad --template nosuch --size 2
grep -q "no image named nosuch" "$T/last.err" || fail "$(cat "$T/last.err")"
q_status 1 pool create bad --template tiny --size 2 --prestart 3
q_status 1 pool create bad --template tiny --size 2 --mode shared
q_status 1 pool create bad --template tiny --size 2 --dept nosuch
[ "$(q --json vm list | jq '.vms | length')" = 0 ] || fail "a refused create left VMs"

# --- dedicated: the same desktop at every login ----------------------------
qq pool create ded --template tiny --size 2 --mode dedicated --dept sales \
    "${TINY[@]}" >/dev/null
r=$(breq 'desktop.acquire {"login":"alice"}')
d1=$(jq -r .return.name <<<"$r")
[ "$(jq -r .return.state <<<"$r")" = running ] || fail "acquire: $r"
[ "$(jq -r .return.pool <<<"$r")" = ded ] || fail "acquire: $r"
r=$(breq 'desktop.release {"login":"alice"}')
jq -e --arg d "$d1" '.return.kept == [$d] and .return.released == []' <<<"$r" \
    >/dev/null || fail "release of a dedicated desktop: $r"
qq vm kill "$d1" >/dev/null
r=$(breq 'desktop.acquire {"login":"alice","pool":"ded"}')
[ "$(jq -r .return.name <<<"$r")" = "$d1" ] || fail "second login got $r, not $d1"
[ "$(q --json vm show "$d1" | jq -r .owner)" = alice ] || fail "$d1 is not alice's"
# bob is in IT: not for him; carol has no department: neither.
r=$(breq 'desktop.acquire {"login":"bob"}' 'desktop.acquire {"login":"carol","pool":"ded"}')
[ "$(jq -rs '[.[].error.class] | join(",")' <<<"$r")" = "NotFound,NotFound" ] ||
	fail "acquire for other departments: $r"

# --- prestart: 2 free desktops kept booted ---------------------------------
qq pool create fl --template tiny --size 5 --prestart 2 --mode floating \
    "${TINY[@]}" >/dev/null
warm() { [ "$(q --json pool show fl | jq '[.desktops[] | select(.free and .state == "running")] | length')" = "$1" ]; }
wait_for 30 "2 prestarted desktops in fl" 'warm 2'
r=$(breq 'desktop.acquire {"login":"carol"}')
cd=$(jq -r .return.name <<<"$r")
[ "$(jq -r .return.pool <<<"$r")" = fl ] || fail "carol: $r"
[ "$(jq -r .return.state <<<"$r")" = running ] || fail "carol: $r"
wait_for 30 "prestart refilled after a hand-out" 'warm 2'
[ "$(pfield fl .running)" = 3 ] || fail "fl running: $(pfield fl .running)"

# --- resize and rm ---------------------------------------------------------
qq pool resize fl 8 >/dev/null
[ "$(pfield fl .count)" = 8 ] || fail "after resize up: $(pfield fl .count)"
qq pool resize fl 3 >/dev/null
wait_for 30 "fl shrunk to 3" '[ "$(pfield fl .count)" = 3 ]'
[ "$(q --json vm show "$cd" | jq -r .owner)" = carol ] || fail "resize took carol's desktop"
q_status 1 pool rm fl
grep -q "in use" "$T/last.err" || fail "rm with a desktop in use: $(cat "$T/last.err")"

# --- kill -9: nothing acknowledged is lost ---------------------------------
kill9_qmpd
start_qmpd --boot-cap $CAP
"$QDESK_BIN" --json events >>"$T/events" 2>&1 &
EV_PID=$!
[ "$(q --json pool list | jq -r '[.pools[].name] | sort | join(",")')" = ded,fl ] ||
	fail "pools after kill -9: $(q --json pool list)"
[ "$(q --json vm show "$d1" | jq -r .owner)" = alice ] || fail "alice lost $d1"
[ "$(q --json vm show "$cd" | jq -r .owner)" = carol ] || fail "carol lost $cd"
[ "$(pfield fl .count)" = 3 ] || fail "fl after kill -9: $(pfield fl .count)"
r=$(breq 'desktop.release {"login":"carol"}')
jq -e --arg d "$cd" '.return.released == [$d]' <<<"$r" >/dev/null ||
	fail "carol's release: $r"
wait_for 30 "carol's desktop free" '[ "$(pfield fl .free)" = 3 ]'
qq pool rm fl >/dev/null
fl_left() { q --json vm list | jq '[.vms[] | select(.pool == "fl")] | length'; }
wait_for 30 "fl's desktops gone" '[ "$(fl_left)" = 0 ]'
[ -z "$(q --json image list | jq -r '.images[].name' | grep '^fl-')" ] ||
	fail "fl's clones are left: $(q --json image list | jq -c '[.images[].name]')"

# disconnect_pool POOL ACTION GRACE: a pool of one SPICE desktop with that
# disconnect action, acquired by carol and booted; pw, port and
# $T/ca.pem are her console's.
disconnect_pool() {
	local r
	qq pool create "$1" --template tiny --size 1 --on-disconnect "$2" \
	    --grace "$3" --accel kvm --memory 32 --display spice >/dev/null
	r=$(breq "desktop.acquire {\"login\":\"carol\",\"pool\":\"$1\"}")
	[ "$(jq -r .return.name <<<"$r")" = "$1-1" ] || fail "carol in $1: $r"
	wait_console "$1-1" "QDESK TINY GUEST UP" 30
	r=$(breq "desktop.console {\"login\":\"carol\",\"vm\":\"$1-1\",\"expires\":60}")
	pw=$(jq -r .return.password <<<"$r")
	port=$(q --json vm show "$1-1" | jq -r .spice.port)
	jq -r .return.ca <<<"$r" | sed '/^$/d' >"$T/ca.pem"
}
# hold SECONDS: carol's viewer stays linked that long, then leaves.
hold() {
	"$top/build/broker/spice-probe" 127.0.0.1 "$port" "$pw" --ca "$T/ca.pem" \
	    --hold "$1" >"$T/probe.out" 2>&1 || fail "spice-probe: $(cat "$T/probe.out")"
}

# --- disconnect action: reset after a 1 s grace --------------------------
disconnect_pool dc reset 1
hold 2
ups() { grep -c "QDESK TINY GUEST UP" "$STATE/vms/dc-1/serial.log"; }
# The reboot gets as long as the first boot had (wait_console ... 30).
wait_for 30 "dc-1 reset after carol's SPICE client left" '[ "$(ups)" -ge 2 ]'
grep -q "dc-1: nobody connected: reset (pool dc)" "$QMPD_LOG" ||
	fail "qmpd did not log the disconnect action"
[ "$(q --json session list --vm dc-1 | jq -r '.sessions[0].user')" = carol ] ||
	fail "the session was not carol's: $(q --json session list --vm dc-1)"

# --- disconnect action: shutdown, unless the client is back in time -------
# Carol leaves and comes back within the 3 s grace: nothing happens. When
# she leaves for good, the desktop gets its ACPI shutdown (the tiny guest
# ignores it, so qmpd's stop is still pending: state stopping).
disconnect_pool dg shutdown 3
hold 1
hold 4	# back within the grace, and stays past its end
[ "$(vm_field dg-1 state)" = running ] || fail "dg-1 acted on while carol was back"
grep -q "dg-1: nobody connected" "$QMPD_LOG" &&
	fail "dg-1: the disconnect action ran although carol came back"
wait_for 15 "dg-1 shut down after carol left for good" \
    'grep -q "dg-1: nobody connected: shut down (pool dg)" "$QMPD_LOG"'
wait_for 5 "dg-1 stopping" '[ "$(vm_field dg-1 state)" != running ]'
qq vm kill dg-1 >/dev/null

# --- the storm: 8 boots at once, at most CAP starting ----------------------
qq pool create storm --template tiny --size 8 --prestart 8 "${TINY[@]}" >/dev/null
wait_for 60 "8 storm desktops running" '[ "$(pfield storm .running)" = 8 ]'
sleep 0.5
kill $EV_PID 2>/dev/null
max=$(jq -r 'select(.event == "vm.state") | "\(.vm) \(.state)"' <"$T/events" | awk '
	{ if ($2 == "starting") { if (!s[$1]) { s[$1] = 1; n++ } }
	  else if (s[$1]) { s[$1] = 0; n-- }
	  if (n > max) max = n }
	END { print max + 0 }')
queued=$(jq -r 'select(.event == "vm.boot" and .queued != null) | .vm' <"$T/events" | sort -u | wc -l)
log "boot cap $CAP: at most $max starting at once; $queued boots queued"
[ "$max" -ge 1 ] && [ "$max" -le $CAP ] || fail "$max VMs were starting at once, cap $CAP"
[ "$queued" -ge 1 ] || fail "no boot was queued in a storm of 8 with cap $CAP"
log "PASS"
