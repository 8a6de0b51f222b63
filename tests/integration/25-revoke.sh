#!/usr/bin/env bash
# Revocation is immediate: `user disable`, `desktop unassign` and `user
# passwd` end the user's open SPICE session (a real link, spice-probe
# --hold: cut, and the old ticket no longer links) and RDP session (a real
# xfreerdp through the gateway) within 2 s; the session record and the
# gateway's log say why; another user's session on another desktop stays.
# `user rm` is revoked too (desktop.revoked says so).
. "$(dirname "$0")/lib.sh"
. "$top/tests/lib/rdp-test-lib.sh"
rdp_require
PROBE=$top/build/broker/spice-probe
[ -x "$PROBE" ] || fail "$PROBE is not built"

start_qmpd --broker-user nobody
for d in d1 d2; do
	qq vm create "$d" --accel kvm --disk "$(tiny_disk "$d")" --memory 32 \
	    --display spice >/dev/null
done
printf 'alice-pw-1\n' | qq user add alice --password-stdin >/dev/null
printf 'bob-pw-2\n' | qq user add bob --password-stdin >/dev/null
qq desktop assign alice d1 >/dev/null
qq desktop assign bob d2 >/dev/null
qq vm start d1 >/dev/null
qq vm start d2 >/dev/null
wait_console d1 "QDESK TINY GUEST UP" 60
start_gateway
xvfb_start

# spice_hold USER VM NAME: a console ticket for USER, linked and held by
# spice-probe in the background; its pid in PROBE_PID, ticket in $T/NAME.
spice_hold() {
	local r
	r=$(q_req desktop.console "{\"login\":\"$1\",\"vm\":\"$2\",\"expires\":60}")
	jq -e .return.password <<<"$r" >/dev/null || fail "desktop.console: $r"
	jq -r .return.ca <<<"$r" | sed '/^$/d' >"$T/$3.ca"
	jq -r .return.password <<<"$r" >"$T/$3.pw"
	jq -r .return.port <<<"$r" >"$T/$3.port"
	jq -r .return.host_subject <<<"$r" >"$T/$3.subject"
	"$PROBE" 127.0.0.1 "$(cat "$T/$3.port")" "$(cat "$T/$3.pw")" \
	    --ca "$T/$3.ca" --host-subject "$(cat "$T/$3.subject")" \
	    --hold 120 >"$T/$3.probe" 2>&1 &
	PROBE_PID=$!
	for i in $(seq 1 100); do
		q --json session list --vm "$2" | jq -e --arg u "$1" \
		    'any(.sessions[]; .user == $u and .end == null)' \
		    >/dev/null 2>&1 && return 0
		kill -0 "$PROBE_PID" 2>/dev/null ||
			fail "spice-probe for $1 ended: $(cat "$T/$3.probe")"
		sleep 0.1
	done
	fail "no open SPICE session for $1 on $2"
}

# gone PID...: wait until each has exited; prints the ms it took.
gone() {
	local t0 p
	t0=$(date +%s%N)
	for i in $(seq 1 100); do
		for p in "$@"; do
			kill -0 "$p" 2>/dev/null && break
			p=
		done
		[ -z "$p" ] && break
		sleep 0.05
	done
	echo $(( ($(date +%s%N) - t0) / 1000000 ))
}

# revoke NAME WHY COMMAND...: alice holds SPICE and RDP on d1; COMMAND
# ends both within 2 s, for the reason WHY.
revoke() {
	local name=$1 why=$2 sp rdp t0 ms rc logins i
	shift 2
	spice_hold alice d1 "$name"
	sp=$PROBE_PID
	logins=$(grep -c "(alice on d1): logged in" "$RDP_LOG")
	rdp_client "$name" /u:alice /p:"$(cat "$T/alice.pw")"
	rdp=$RDP_CLIENT
	# This client's login, not an earlier round's line in the log.
	for i in $(seq 1 300); do
		[ "$(grep -c "(alice on d1): logged in" "$RDP_LOG")" -gt "$logins" ] &&
			break
		kill -0 "$rdp" 2>/dev/null || rdp_fail "$name: xfreerdp ended"
		sleep 0.1
	done
	[ "$(grep -c "(alice on d1): logged in" "$RDP_LOG")" -gt "$logins" ] ||
		rdp_fail "$name: alice's RDP login not in the gateway log"
	rdp_window "$rdp" >/dev/null || rdp_fail "no window for alice ($name)"
	t0=$(date +%s%N)
	"$@" >/dev/null || fail "$*"
	gone "$sp" "$rdp" >/dev/null
	ms=$(( ($(date +%s%N) - t0) / 1000000 ))
	kill -0 "$sp" 2>/dev/null && fail "$name: the SPICE session is still up"
	kill -0 "$rdp" 2>/dev/null && rdp_fail "$name: the RDP session is still up"
	[ "$ms" -le 2000 ] || fail "$name: sessions ended after $ms ms, not within 2 s"
	log "$name: SPICE and RDP ended $ms ms after the command"
	wait "$sp"
	rc=$?
	[ $rc = 3 ] || fail "$name: spice-probe exit $rc, not 3 (cut): $(cat "$T/$name.probe")"
	wait "$rdp"
	wait_gw_log "(alice on d1): disconnected: revoked: $why" 5
	for i in $(seq 1 50); do
		q --json session list --vm d1 | jq -e --arg w "revoked: $why" \
		    '.sessions[0].end_reason == $w' >/dev/null && break
		sleep 0.1
	done
	q --json session list --vm d1 | jq -e --arg w "revoked: $why" \
	    '.sessions[0] | .user == "alice" and .end > 0 and .end_reason == $w' \
	    >/dev/null || fail "$name: session record: $(q --json session list --vm d1)"
	# The ticket given before is worthless now.
	"$PROBE" 127.0.0.1 "$(cat "$T/$name.port")" "$(cat "$T/$name.pw")" \
	    --ca "$T/$name.ca" --host-subject "$(cat "$T/$name.subject")" \
	    >"$T/$name.probe2" 2>&1
	rc=$?
	[ $rc = 1 ] || fail "$name: the old ticket still links (exit $rc)"
	# RDP with the same account right away is refused as it should be,
	# or (passwd) needs the new password; qmpd keeps answering.
	q status >/dev/null || fail "qmpd stopped answering"
}

# Bob's session on d2 must outlive every revocation of alice's.
spice_hold bob d2 bob
bob=$PROBE_PID

printf 'alice-pw-1\n' >"$T/alice.pw"
revoke disable "user disabled" qq user disable alice
rdp_auth_only /u:alice /p:alice-pw-1 && rdp_fail "a disabled user logged in"
qq user enable alice >/dev/null

revoke unassign "desktop unassigned" qq desktop unassign d1
qq desktop assign alice d1 >/dev/null

passwd_alice() { printf 'alice-pw-new\n' | q user passwd alice --password-stdin; }
revoke passwd "password changed" passwd_alice
printf 'alice-pw-new\n' >"$T/alice.pw"
rdp_auth_only /u:alice /p:alice-pw-1 && rdp_fail "the old password still logs in"
rdp_auth_only /u:alice /p:alice-pw-new || rdp_fail "the new password is refused"

kill -0 "$bob" 2>/dev/null || fail "bob's session ended with alice's: $(cat "$T/bob.probe")"
q --json session list --vm d2 | jq -e '.sessions[0] | .user == "bob" and
    .end == null' >/dev/null || fail "bob's session record: $(q --json session list --vm d2)"

# user rm (she must have no desktop first; unassigning revoked already).
qq desktop unassign d1 >/dev/null
qq user rm alice >/dev/null
r=$(q_req desktop.revoked '{"login":"alice","since":0}')
jq -e '.return.revoked == true' <<<"$r" >/dev/null || fail "desktop.revoked: $r"
q --json session list >/dev/null || fail "session list"
grep -q "sessions of alice revoked: user removed" "$QMPD_LOG" ||
	fail "user rm did not revoke: $(grep 'sessions of alice' "$QMPD_LOG")"
kill "$bob" 2>/dev/null
wait "$bob" 2>/dev/null
log ok
