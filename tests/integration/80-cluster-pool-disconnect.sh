#!/usr/bin/env bash
# A cluster pool's disconnect action (issue 13): `scripts/cluster up 2`,
# a floating pool of 2 with on_disconnect reset, grace 1 s. u1 logs in
# through the portal, links SPICE through the broker's proxy to the
# desktop's host and leaves: that host (not the other, not the broker)
# resets it after the grace (a second boot on its console, the log line).
# Then pool set (from the other host) turns it into shutdown: the next
# leave shuts it down on its host, and the killed desktop goes back to
# the pool (owners/ gone), as a floating desktop does on one host.
. "$(dirname "$0")/lib.sh"

[ "$(id -u)" = 0 ] || skip "needs root (network namespaces)"
[ -r /dev/kvm ] || skip "no /dev/kvm"
need_tools etcd jq curl
. "$top/tests/lib/cluster-lib.sh"
PROBE=$top/build/broker/spice-probe
cluster_test_up 2 5 5
PROXY=${PORTAL#https://}
PROXY=${PROXY%:*}:3128
# Boots of desktop $2 on host $1's console (0 before its log exists).
ups() {
	local st=${1}_STATE n
	n=$(grep -a -c "QDESK TINY GUEST UP" "${!st}/vms/$2/serial.log" 2>/dev/null)
	echo "${n:-0}"
}

tpl_on_every_host
echo pw-u1-secret | hqq h1 user add u1 --password-stdin >/dev/null
cluster_wait_user u1
hqq h2 pool create dc --template tpl --size 2 --mode floating \
    --on-disconnect reset --grace 1 --accel kvm --memory 32 \
    --display spice --listen 0.0.0.0 >/dev/null
until_ok 10 "h1 sees pool dc" "hq h1 pool show dc >/dev/null 2>&1"

api POST /api/login '{"user":"u1","password":"pw-u1-secret"}'
[ "$CODE" = 200 ] || fail "login u1: $CODE $BODY"
api GET /api/desktops
[ "$CODE" = 200 ] || fail "u1's desktops: $CODE $BODY"
d=$(field '[0].name')
[ "$(field '[0].state')" = running ] || fail "u1's desktops: $BODY"
w=$(runs_on "$d")
case "$w" in h1|h2) ;; *) fail "$d runs on '$w', not on one host";; esac
other=h1; [ "$w" = h1 ] && other=h2
wl=${w}_LOG ol=${other}_LOG
until_ok 30 "$d booted on $w" "[ \$(ups $w $d) -ge 1 ]"

# link HOLD: u1's viewer, through the broker's proxy, linked HOLD s.
link() {
	local out
	api POST "/api/desktops/$d/console"
	[ "$CODE" = 200 ] || fail "console of $d: $CODE $BODY"
	field ca | sed '/^$/d' >"$T/ca.pem"
	out=$(inet "$PROBE" unused "$(field port)" "$(field password)" \
	    --proxy "$PROXY" --ticket "$(field ticket)" --ca "$T/ca.pem" \
	    --host-subject "$(field host_subject)" --hold "$1" 2>&1) ||
		fail "spice-probe through the proxy to $d on $w: $out"
}

# --- reset, on the host that runs it ----------------------------------
link 2
until_ok 30 "$d reset on $w after u1's viewer left" "[ \$(ups $w $d) -ge 2 ]"
grep -q "$d: nobody connected: reset (pool dc)" "${!wl}" ||
	fail "$w did not log the reset: $(grep "$d" "${!wl}" | tail -n 5)"
grep -q "$d: nobody connected" "${!ol}" && fail "$other acted on $d too"
[ "$(eget "owners/$d" | jq -r .login)" = u1 ] ||
	fail "owners/$d after the reset: $(eget "owners/$d")"
log "u1 left $d: reset by $w (where it runs) after the 1 s grace, still u1's: ok"

# --- shutdown, set from the other host ----------------------------------
hqq "$other" pool set dc --on-disconnect shutdown >/dev/null
until_ok 10 "$w sees dc's shutdown action" \
    "[ \"\$(hq $w --json pool show dc | jq -r .on_disconnect)\" = shutdown ]"
link 1
until_ok 15 "$d shut down on $w after u1 left" \
    "grep -q '$d: nobody connected: shut down (pool dc)' '${!wl}'"
until_ok 10 "$d stopping" "[ \"\$(hq $w --json vm show $d | jq -r .state)\" != running ]"
# The tiny guest ignores ACPI: the admin's kill (on its host: vm kill is
# local) ends the stop; a floating desktop stopped goes back to its pool.
hqq "$w" vm kill "$d" >/dev/null
until_ok 30 "$d back in pool dc" "[ -z \"\$(eget owners/$d)\" ] && [ -z \"\$(runs_on $d)\" ]"
log "pool set on $other to shutdown: u1 left, $w shut $d down, back in the pool once stopped: ok"
