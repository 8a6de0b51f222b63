#!/usr/bin/env bash
# test: idle  (etcd and a qmpd with tiny KVM guests, no TCG: measured 4 s of CPU in 21 s)
# The etcd client (cluster/etcd.c, through build/cluster/etcd-drive)
# against a real 3-member etcd 3.4, in a network namespace of the test's
# own: put, range and delete (checked with etcdctl); two clients racing to
# create the same key by CAS, exactly one winning every round; a lease that
# holds while its keeper runs and expires once it stops, and a keeper that
# reports its lease lost when it is revoked or quorum goes; a watch that sees
# every put exactly once across the death of the member it talks to, and
# one from a compacted revision that ends with "Compacted"; one
# member dead and everything still works; two dead and a write fails with
# a clear error within its deadline, then works again once they return.
. "$(dirname "$0")/lib.sh"

etcd_drive_need etcd etcdctl ip

NS=qdt-etcd-$$
ETCD_DIR=$T/etcd
ETCD_RUN="ip netns exec $NS"
. "$top/cluster/etcd-members.sh"
etcd_cleanup() {
	[ -n "${WATCH_PID:-}" ] && kill "$WATCH_PID" 2>/dev/null
	[ -n "${KEEP_PID:-}" ] && kill "$KEEP_PID" 2>/dev/null
	etcd_members_down
	ip netns del "$NS" 2>/dev/null
}
EXTRA_CLEANUP=etcd_cleanup

ip netns add "$NS" || fail "cannot create namespace $NS"
ip netns exec "$NS" ip link set lo up
etcd_members_up || fail "etcd did not come up: $(tail -n 5 "$ETCD_DIR"/m1.log)"

# The client, and etcdctl for a second opinion, in the namespace.
drive() { ip netns exec "$NS" "$DRIVE" -e "$ETCD" "$@"; }
ctl() { ETCDCTL_API=3 ip netns exec "$NS" etcdctl --endpoints="$ETCD" \
    --command-timeout=5s "$@"; }

# 1. put, range (one key and a prefix), delete.
out=$(drive put app/a '{"x":1}') || fail "put: $out"
[[ $out == "ok "[0-9]* ]] || fail "put said: $out"
drive put app/b "two words" >/dev/null || fail "second put failed"
drive put apples x >/dev/null || fail "third put failed"
[ "$(ctl get app/a --print-value-only)" = '{"x":1}' ] ||
	fail "etcdctl does not see what the client put"
out=$(drive get -p app/)
[ "$out" = $'app/a={"x":1}\napp/b=two words\ncount 2' ] ||
	fail "prefix range: $out"
out=$(drive get app/nothing)
[ "$out" = "count 0" ] || fail "range of a missing key: $out"
out=$(drive del -p app/)
[ "$out" = "deleted 2" ] || fail "prefix delete: $out"
[ "$(ctl get apples --print-value-only)" = x ] ||
	fail "the prefix delete of app/ took apples too"
[ -z "$(ctl get --prefix app/)" ] || fail "app/ keys left after delete"
log "put, range, delete: ok"

# 2. Two clients race to create each key: exactly one wins each round.
out=$(drive race race 100) || fail "CAS race: $out"
log "CAS race: $out"
set -- $out
[ "$4" = 100 ] && [ "$6" = 0 ] && [ "$8" = 0 ] || fail "CAS race: $out"
[ "$(ctl get --prefix race/ --keys-only | grep -c .)" = 100 ] ||
	fail "not 100 race keys in etcd"

# 3. A lease kept alive holds over 3 TTLs, then expires without its keeper.
out=$(drive lease held 2 6) || fail "lease: $out"
log "lease: $(echo "$out" | tr '\n' ' ')"
ms=$(echo "$out" | sed -n 's/^expired \([0-9]*\) ms.*/\1/p')
[ -n "$ms" ] && [ "$ms" -le 4000 ] || fail "lease expiry: $out"
[ -z "$(ctl get held)" ] || fail "the leased key is still in etcd"

# A keeper reports its lease lost when it is revoked behind its back.
drive keep 2 15 >"$T/keep.out" 2>&1 &
KEEP_PID=$!
for i in $(seq 1 100); do
	grep -q granted "$T/keep.out" && break
	sleep 0.1
done
id=$(sed -n 's/^lease \([0-9]*\) granted$/\1/p' "$T/keep.out")
[ -n "$id" ] || fail "keeper: $(cat "$T/keep.out")"
ctl lease revoke "$(printf '%x' "$id")" >/dev/null || fail "etcdctl lease revoke"
wait "$KEEP_PID" || fail "revoked lease not reported: $(cat "$T/keep.out")"
KEEP_PID=
grep -q "^lost LeaseLost: etcd lease $id expired" "$T/keep.out" ||
	fail "revoked lease: $(cat "$T/keep.out")"
log "a revoked lease is reported lost: ok"

# 4. A watch on w/ sees every put once, across the death of its member
# (the client starts on the first endpoint, member 1).
drive watch -p w/ 6 >"$T/watch.out" 2>"$T/watch.err" &
WATCH_PID=$!
for i in $(seq 1 100); do
	grep -q created "$T/watch.out" && break
	sleep 0.1
done
grep -q created "$T/watch.out" || fail "the watch was not created"
for i in 1 2 3; do ctl put "w/$i" "v$i" >/dev/null || fail "etcdctl put"; done
for i in $(seq 1 50); do
	[ "$(grep -c '^PUT' "$T/watch.out")" = 3 ] && break
	sleep 0.1
done
etcd_member_kill 1
log "member 1 killed under the watch"
# The two left elect a leader (a linearizable read needs one), then take
# one put each: etcdctl's own retries could repeat a put.
ETCD_ALIVE=$(etcd_member_url 2),$(etcd_member_url 3)
for i in $(seq 1 60); do
	ETCDCTL_API=3 ip netns exec "$NS" etcdctl --endpoints="$ETCD_ALIVE" \
	    --command-timeout=2s get w/1 >/dev/null 2>&1 && break
	sleep 0.5
done
for i in 4 5 6; do
	ETCDCTL_API=3 ip netns exec "$NS" etcdctl --endpoints="$ETCD_ALIVE" \
	    --command-timeout=20s put "w/$i" "v$i" >/dev/null ||
		fail "etcdctl put w/$i"
done
for i in $(seq 1 150); do
	kill -0 "$WATCH_PID" 2>/dev/null || break
	sleep 0.1
done
kill -0 "$WATCH_PID" 2>/dev/null &&
	fail "the watch did not see 6 events: $(cat "$T/watch.out")"
wait "$WATCH_PID" || fail "watch: $(cat "$T/watch.out" "$T/watch.err")"
WATCH_PID=
got=$(grep '^PUT' "$T/watch.out" | cut -d' ' -f2,3 | tr '\n' ' ')
[ "$got" = "w/1 v1 w/2 v2 w/3 v3 w/4 v4 w/5 v5 w/6 v6 " ] ||
	fail "watch events (lost, repeated or out of order): $got"
log "watch resumed after its member died: ok"

# A watch from a revision since compacted ends with "Compacted".
first=$(grep '^PUT w/1 ' "$T/watch.out" | cut -d' ' -f4)
ETCDCTL_API=3 ip netns exec "$NS" etcdctl --endpoints="$ETCD_ALIVE" \
    compact "$(grep '^PUT w/6 ' "$T/watch.out" | cut -d' ' -f4)" >/dev/null ||
	fail "etcdctl compact"
out=$(drive watch -r "$first" -p w/ 1) && fail "a compacted watch: $out"
# (etcd says "created" first, then cancels it.)
[[ $(echo "$out" | tail -n 1) == "error Compacted: etcd watch w/: revision $first is compacted"* ]] ||
	fail "a compacted watch said: $out"

# 5. Member 1 is still dead (the first endpoint): everything works.
out=$(drive -t 3000 probe one-dead yes) || fail "put with one dead: $out"
log "put with member 1 dead: $out ms"
out=$(drive get one-dead) || fail "range with one dead: $out"
[ "$out" = $'one-dead=yes\ncount 1' ] || fail "range with one dead: $out"
out=$(drive race race1 10) || fail "CAS with one dead: $out"
out=$(drive lease held1 2 3) || fail "lease with one dead: $out"

# 5b. Member 1 (the first endpoint) accepts and stays silent, as a
# restarting member does until it is ready (stopped here): a read, safe
# to repeat, goes on to the next member after a third of its time, not
# at its deadline; a write is never sent twice, so it waits.
etcd_member_start 1
etcd_wait 1 || fail "member 1 did not come back"
pid1=$(etcd_member_pid 1)
kill -STOP "$pid1"
start=$(date +%s%N)
out=$(drive -t 9000 get one-dead) || { kill -CONT "$pid1"; fail "range with member 1 silent: $out"; }
ms=$(( ($(date +%s%N) - start) / 1000000 ))
kill -CONT "$pid1"
[ "$out" = $'one-dead=yes\ncount 1' ] || fail "range with member 1 silent: $out"
log "range with member 1 silent: answered in ${ms} ms (member 1's share: 3000 ms)"
etcd_wait 1 || fail "member 1 did not answer after SIGCONT"

# 6. Two dead: no quorum.  A write fails within its deadline, clearly.
# A keeper running as quorum goes reports its lease lost within a bound.
drive keep 2 60 >"$T/keep.out" 2>&1 &
KEEP_PID=$!
for i in $(seq 1 100); do
	grep -q granted "$T/keep.out" && break
	sleep 0.1
done
grep -q granted "$T/keep.out" || fail "keeper: $(cat "$T/keep.out")"
etcd_member_kill 1
etcd_member_kill 2
log "members 1 and 2 killed"
killed=$(date +%s%N)
start=$(date +%s%N)
out=$(drive -t 3000 probe no-quorum x) && fail "a write without quorum succeeded: $out"
ms=$(( ($(date +%s%N) - start) / 1000000 ))
log "write without quorum: $out (process ${ms} ms)"
[ "$ms" -lt 6000 ] || fail "the write took ${ms} ms to fail"
case $out in
"error Timeout: etcd /v3/kv/put: no answer within 3000 ms ("*|\
"error Unavailable: etcd /v3/kv/put: no answer within 3000 ms ("*) ;;
*)	fail "unclear error without quorum: $out" ;;
esac
[[ $out == *"$(etcd_member_url 1): "* ]] ||
	fail "the error does not name the dead member: $out"

wait "$KEEP_PID" || fail "the keeper did not report the loss: $(cat "$T/keep.out")"
KEEP_PID=
grep -q "^lost LeaseLost: " "$T/keep.out" || fail "keeper: $(cat "$T/keep.out")"
at=$(sed -n 's/^lost .*(at \([0-9]*\))$/\1/p' "$T/keep.out")
ms=$(( at - killed / 1000000 ))
log "keeper without quorum: $(tail -n 1 "$T/keep.out") (${ms} ms after the kill)"
[ "$ms" -le 6000 ] || fail "the lease loss came ${ms} ms after quorum went"

# They return: writes succeed again.
etcd_member_start 1
etcd_member_start 2
ok=
for i in $(seq 1 40); do
	if out=$(drive -t 2000 probe quorum-back yes); then
		ok=1
		break
	fi
	sleep 0.5
done
[ -n "$ok" ] || fail "writes did not resume once the members returned: $out"
[ "$(ctl get quorum-back --print-value-only)" = yes ] ||
	fail "the write after the return is not in etcd"
log "writes resumed after the members returned: ok"

out=$(drive bench 1000 8) || fail "bench: $out"
log "bench: $(echo "$out" | tr '\n' ' ')"
exit 0
