#!/usr/bin/env bash
# Users and departments a host kept before it joined a cluster (issue
# 13): `scripts/cluster up 2`; h2 is stopped and run as a single host on
# its own state dir, where the admin adds departments eng and sales and
# users alice, bob and carol (`user import` is refused there: it is for
# a cluster). Meanwhile the cluster (h1) got sales and a bob of its own.
# h2 joins again: its log names the 2 users and 1 department etcd lacks
# and the command that copies them; nothing is copied by itself. `qdesk
# user import` on h2 copies eng, alice and carol (one create-only
# transaction each) and keeps the cluster's sales and bob, one line each;
# alice logs in through the portal with the password she had on h2, bob's
# record is still the cluster's. A second import keeps everything.
. "$(dirname "$0")/lib.sh"

[ "$(id -u)" = 0 ] || skip "needs root (network namespaces)"
need_tools etcd jq curl
. "$top/tests/lib/cluster-lib.sh"
EXTRA_CLEANUP='[ -n "${solo:-}" ] && kill $solo 2>/dev/null'
cluster_test_up 2 5 5
# Wait for pid $1 to exit (what: $2).
gone() {
	local i
	for i in $(seq 1 300); do
		alive "$1" || return 0
		sleep 0.1
	done
	fail "$2 did not exit"
}
answers() {
	local i
	for i in $(seq 1 300); do
		hq h2 status >/dev/null 2>&1 && return 0
		sleep 0.1
	done
	fail "$1 does not answer: $(tail -n 5 "$h2_LOG")"
}

# The cluster's own sales and bob.
hqq h1 dept add sales >/dev/null
echo pw-bob-cluster | hqq h1 user add bob --dept sales --password-stdin >/dev/null
bob_hash=$(eget users/bob | jq -r .hash)
[ -n "$bob_hash" ] && [ "$bob_hash" != null ] || fail "users/bob: $(eget users/bob)"

# h2 as a single host, on its own state dir: its local users.
kill "$(cat "$h2_PIDFILE")"
gone "$(cat "$h2_PIDFILE")" "h2's qmpd"
setsid ip netns exec "$h2_NETNS" "$QMPD" -f -v --state-dir "$h2_STATE" \
    >>"$T/solo.log" 2>&1 </dev/null &
solo=$!
answers "h2 as a single host"
hqq h2 dept add eng >/dev/null
hqq h2 dept add sales >/dev/null
echo pw-alice-local | hqq h2 user add alice --dept eng --password-stdin >/dev/null
echo pw-bob-local | hqq h2 user add bob --dept sales --password-stdin >/dev/null
echo pw-carol-local | hqq h2 user add carol --password-stdin >/dev/null
out=$(hq h2 user import 2>&1) && fail "user import on a single host: $out"
[ "$out" = "qdesk: InvalidState: user import is for a host in a cluster (qmpd --cluster): this host's users are in its LMDB already" ] ||
	fail "user import on a single host said: $out"
kill "$solo"
gone "$solo" "h2's single-host qmpd"
solo=

# h2 joins again: it says what the cluster lacks, and copies nothing.
setsid ip netns exec "$h2_NETNS" "$QMPD" -f -v --state-dir "$h2_STATE" \
    --cluster "$h2_CONF" >>"$h2_LOG" 2>&1 </dev/null &
echo $! >"$h2_PIDFILE"
answers "h2 in the cluster again"
for i in $(seq 1 100); do
	grep -q "cluster: this host's LMDB has" "$h2_LOG" && break
	sleep 0.1
done
grep -q "cluster: this host's LMDB has 2 user(s) and 1 department(s) the cluster lacks: \`qdesk user import\` copies them into etcd" "$h2_LOG" ||
	fail "h2's join hint: $(grep "LMDB has" "$h2_LOG")"
[ -z "$(eget users/alice)" ] || fail "alice copied at join: $(eget users/alice)"
log "h2 rejoined: it names the 2 users and 1 department etcd lacks, copies none by itself: ok"

# The import: one line per record, the cluster's kept.
out=$(hqq h2 user import)
printf '%s\n' "$out" >"$T/import.out"
want() { grep -Eq "^$1 +$2 +$3\$" "$T/import.out" || fail "import: no line '$1 $2 $3' in: $out"; }
want dept eng imported
want dept sales "not imported: etcd has dept sales already \\(kept etcd's\\)"
want user alice imported
want user bob "not imported: etcd has user bob already \\(kept etcd's\\)"
want user carol imported
[ "$(hq h2 --json user import | jq -c '[.imported, .kept]')" = '[0,5]' ] ||
	fail "a second import: $(hq h2 --json user import)"
grep -q "cluster: not imported: etcd has user bob already (kept etcd's)" "$h2_LOG" ||
	fail "h2's log does not say bob was kept"
[ "$(eget users/bob | jq -r .hash)" = "$bob_hash" ] ||
	fail "the cluster's bob was overwritten: $(eget users/bob)"
[ "$(eget users/alice | jq -r .dept)" = eng ] || fail "users/alice: $(eget users/alice)"
[ -n "$(eget depts/eng)" ] || fail "depts/eng not in etcd"
cluster_wait_user carol
for h in $HOSTS; do
	[ "$(hq $h --json user list | jq -c '[.users[].login] | sort')" = '["alice","bob","carol"]' ] ||
		fail "$h's users: $(hq $h --json user list | jq -c '[.users[].login]')"
done
log "user import: eng, alice and carol copied, sales and bob kept as the cluster has them (one line each); again: all kept: ok"

# alice logs in through the portal (its logins go to h1) with her h2
# password; bob with the cluster's, not h2's.
api POST /api/login '{"user":"alice","password":"pw-alice-local"}'
[ "$CODE" = 200 ] || fail "alice's login through the portal: $CODE $BODY"
rm -f "$T/jar"
api POST /api/login '{"user":"bob","password":"pw-bob-local"}'
[ "$CODE" = 200 ] && fail "bob logged in with h2's old password"
rm -f "$T/jar"
api POST /api/login '{"user":"bob","password":"pw-bob-cluster"}'
[ "$CODE" = 200 ] || fail "bob's login with the cluster's password: $CODE $BODY"
log "alice logs in through the portal with her h2 password, bob with the cluster's only: ok"
