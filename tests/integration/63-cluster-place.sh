#!/usr/bin/env bash
# Cluster mode, hosts and placement (issue 13): `scripts/cluster up 3`
# starts three qmpds with --cluster; each lists all three hosts up (host
# list: address, state, desktops, free memory, lease age). A drained host
# gets no new desktop; desktops started from one host spread over the
# others by free memory, each QEMU running in exactly one host's process
# table; vm show on any host names the host; --host pins (refused while
# that host drains, honoured after undrain); a stop asked of another host
# stops it there. A second qmpd under a name a live host holds, one
# whose clock disagrees with the members', and one whose certificate is
# not of the cluster's CA or names another host are refused at start
# with one clear line. A host at its boot cap is passed over for one
# under it.
. "$(dirname "$0")/lib.sh"

[ "$(id -u)" = 0 ] || skip "needs root (network namespaces)"
[ -r /dev/kvm ] || skip "no /dev/kvm"
. "$top/tests/lib/cluster-lib.sh"
# The default lease: an etcd member's death (a leader election) must not
# cost a host its lease.
cluster_test_up 3 5 5

hosts_state() {
	hq "$1" --json host list | jq -r '.hosts[] | .name + "=" + .state' |
	    tr '\n' ' '
}
wait_hosts() {
	local on=$1 want=$2 i got
	for i in $(seq 1 100); do
		got=$(hosts_state "$on")
		[ "$got" = "$want" ] && return 0
		sleep 0.1
	done
	fail "host list on $on: '$got', wanted '$want'"
}

# Every host sees all three, up, with their addresses.
for h in $HOSTS; do
	wait_hosts "$h" "h1=up h2=up h3=up "
	got=$(hq "$h" --json host list) || fail "host list on $h: $got"
	for g in $HOSTS; do
		addr=${g}_ADDR
		[ "$(echo "$got" | jq -r ".hosts[] | select(.name == \"$g\") | .addr")" = "${!addr}" ] ||
			fail "$h lists $g without its address ${!addr}: $got"
	done
	echo "$got" | jq -e '.hosts | all(.mem_free > 0 and .lease_age < 5 and .desktops == 0)' >/dev/null ||
		fail "host list on $h: $got"
done
out=$(hqq h1 host list)
echo "$out" | head -1 | grep -q "NAME.*ADDRESS.*STATE.*DESKTOPS.*MEM FREE.*LEASE AGE" ||
	fail "host list table: $out"
log "3 hosts up, each sees all: ok"

# Drain h3: every host sees it; nothing new lands there.
hqq h2 host drain h3 >/dev/null
for h in $HOSTS; do wait_hosts "$h" "h1=up h2=up h3=draining "; done
for i in 1 2 3 4; do
	cp "$GUESTS/boot.img" "$SHARED/d$i.img"
	hqq h1 vm create "d$i" --accel kvm --disk "$SHARED/d$i.img" --memory 64 \
	    --display none >/dev/null
done
# A definition made on h1 is known on every host before it runs anywhere.
[ "$(hq h3 --json vm show d4 | jq -r '.state + " " + (.host // "none")')" = "stopped none" ] ||
	fail "h3 does not know d4: $(hq h3 --json vm show d4 2>&1)"
for i in 1 2 3 4; do
	out=$(hqq h1 vm start "d$i")
	[ "$out" = "d$i: running" ] || fail "vm start d$i: $out"
done
declare -A per
for i in 1 2 3 4; do
	where=$(runs_on "d$i")
	case $where in
	h1|h2) per[$where]=$((${per[$where]:-0} + 1)) ;;
	*) fail "d$i runs on '$where', not on exactly one of h1 h2" ;;
	esac
	for h in $HOSTS; do
		[ "$(hq "$h" --json vm show "d$i" | jq -r '.state + " " + .host')" = "running $where" ] ||
			fail "vm show d$i on $h: $(hq "$h" --json vm show "d$i")"
	done
done
# Equal hosts (free memory within 512 MiB is a tie): fewer desktops wins.
[ "${per[h1]:-0}" = 2 ] && [ "${per[h2]:-0}" = 2 ] ||
	fail "4 desktops spread h1=${per[h1]:-0} h2=${per[h2]:-0}, not 2 and 2"
for h in $HOSTS; do
	[ "$(hq "$h" --json vm list | jq '[.vms[] | select(.state == "running")] | length')" = 4 ] ||
		fail "vm list on $h: $(hq "$h" vm list)"
done
log "drained h3 skipped; 4 desktops spread 2/2 over h1 h2, one QEMU each: ok"

# Pins: refused while the host drains, honoured after undrain.
cp "$GUESTS/boot.img" "$SHARED/p1.img"
hqq h1 vm create p1 --accel kvm --disk "$SHARED/p1.img" --memory 64 \
    --display none --host h3 >/dev/null
out=$(hq h1 vm start p1 2>&1) && fail "a start pinned to a draining host: $out"
echo "$out" | grep -q "pinned to host h3, which is draining" || fail "pinned start said: $out"
[ -z "$(runs_on p1)" ] || fail "p1 runs on $(runs_on p1)"
hqq h1 host undrain h3 >/dev/null
for h in $HOSTS; do wait_hosts "$h" "h1=up h2=up h3=up "; done
hqq h2 vm start p1 >/dev/null
[ "$(runs_on p1)" = h3 ] || fail "pinned p1 runs on '$(runs_on p1)', not h3"
[ "$(hq h1 --json vm show p1 | jq -r .host)" = h3 ] || fail "vm show p1 on h1"
out=$(hq h1 vm create x1 --accel kvm --disk "$SHARED/p1.img" --host h9 2>&1) &&
	fail "a pin to no host was accepted"
[ "$out" = "qdesk: InvalidArgument: no host named h9 in the cluster (qdesk host list)" ] ||
	fail "pin to h9 said: $out"
# A start that fails on its host says why; started again, it runs.
cp "$GUESTS/boot.img" "$SHARED/late.img"
hqq h1 vm create late --accel kvm --disk "$SHARED/late.img" --memory 64 \
    --display none >/dev/null
rm "$SHARED/late.img"
out=$(hq h2 vm start late 2>&1) && fail "a start without its disk file: $out"
echo "$out" | grep -q "^qdesk: QemuError: late on h[123]: .*late.img: No such file" ||
	fail "a start without its disk file said: $out"
cp "$GUESTS/boot.img" "$SHARED/late.img"
out=$(hqq h2 vm start late)
[ "$out" = "late: running" ] || fail "vm start late again: $out"
[ "$(runs_on late | wc -w)" = 1 ] || fail "late runs on '$(runs_on late)'"
out=$(hq h2 vm create late2 --disk "$SHARED/late.img" 2>&1) && fail "two VMs on one disk: $out"
[ "$out" = "qdesk: InvalidArgument: disk $SHARED/late.img is VM late's already: one disk file, one desktop" ] ||
	fail "two VMs on one disk said: $out"
log "--host pins, refused on a draining host; a failed start, then a good one: ok"

# A stop asked of another host stops it where it runs.
where=$(runs_on d1)
other=h3
pid=$(cat "$(eval echo "\$${where}_STATE")/vms/d1/qemu.pid")
out=$(hqq "$other" vm stop d1 --force)
# --force travels with the stop: the host running it quits QEMU at once
# rather than pressing the power button (which the tiny guest ignores).
lg=${where}_LOG
grep -q "d1: running -> stopping: quit by admin" "${!lg}" &&
	! grep -q "d1: running -> stopping: ACPI" "${!lg}" ||
	fail "vm stop d1 --force from $other was not forced: $(grep 'd1: running -> stopping' "${!lg}")"
[ "$out" = "d1: stopped" ] || fail "vm stop d1 from $other: $out"
alive "$pid" && fail "d1's QEMU $pid still runs on $where"
[ -z "$(runs_on d1)" ] || fail "d1 still runs on $(runs_on d1)"
[ "$(hq h2 --json vm show d1 | jq -r .state)" = stopped ] || fail "d1 not stopped"
# A local stop of a desktop here leaves it stopped in etcd too.
where=$(runs_on d2)
hqq "$where" vm stop d2 --force >/dev/null
until_ok 5 "h3 sees d2, stopped on $where, stopped" \
    '[ "$(hq h3 --json vm show d2 | jq -r .state)" = stopped ]'
# A start right after a local stop, on the same host, runs it: the
# stop's placement write may still be on its way, and the start must
# not be answered by it (nor undone by it). Three times; stopped after.
for i in 1 2 3; do
	out=$(hqq "$where" vm start d2)
	[ "$out" = "d2: running" ] || fail "vm start d2 ($i) on $where: $out"
	hqq "$where" vm stop d2 --force >/dev/null
	out=$(hqq "$where" vm start d2)
	[ "$out" = "d2: running" ] || fail "vm start d2 right after its stop ($i): $out"
	[ "$(runs_on d2)" = "$where" ] ||
		fail "d2 started right after its stop ($i) runs on '$(runs_on d2)', not $where"
	hqq "$where" vm stop d2 --force >/dev/null
done
until_ok 10 "h3 sees d2, stopped again on $where, stopped" \
    '[ "$(hq h3 --json vm show d2 | jq -r .state)" = stopped ]'
out=$(hq h1 vm delete d3 2>&1) && fail "delete of a running desktop: $out"
echo "$out" | grep -q "is running on h[12]: stop it first" || fail "delete said: $out"
hqq h3 vm stop d4 --force >/dev/null
hqq h3 vm delete d4 >/dev/null
# A delete right after a local stop, on the same host, deletes: the
# stop's placement write may still be on its way, and the delete must
# wait for it, not refuse the desktop as running.
hqq h3 vm start d1 >/dev/null
w1=$(runs_on d1)
[ -n "$w1" ] || fail "d1 started but runs nowhere"
hqq "$w1" vm stop d1 --force >/dev/null
out=$(hq "$w1" vm delete d1 2>&1) || fail "vm delete d1 right after its stop on $w1: $out"
for h in $HOSTS; do
	hq "$h" vm show d1 >/dev/null 2>&1 && fail "d1 still known on $h"
	hq "$h" vm show d4 >/dev/null 2>&1 && fail "d4 still known on $h"
done
log "stops from another host and locally, delete: ok"

# refused_join WHAT CONF LINE: a qmpd started in h3's namespace with the
# cluster file CONF (a fresh state dir) is refused, and says why in one
# line that matches LINE (a grep pattern); WHAT names the case.
mkdir -p "$T/dup"
refused_join() {
	local what=$1 conf=$2 line=$3 out
	out=$(ip netns exec "$h3_NETNS" timeout 20 "$QMPD" -f --state-dir "$T/dup" \
	    --socket "$T/dup.sock" --cluster "$conf" 2>&1) &&
		fail "$what was accepted: $out"
	[ "$(echo "$out" | grep -c -- "$line")" = 1 ] ||
		fail "$what said (not one line matching '$line'): $out"
}

# A second qmpd under a live host's name is refused, naming the holder.
jq '.name = "h1"' "$h3_CONF" >"$T/dup.json"
refused_join "a duplicate host name" "$T/dup.json" \
    "host name h1 is taken: another live qmpd (addr $h1_ADDR"
# A clock 60 s off the members' is refused: h9's record says it is 60 s
# ahead of this machine (written under a lease, gone after the test).
now=$(date +%s%3N)
ip netns exec "$h3_NETNS" "$DRIVE" -e "$ETCD" put /qdesk/v1/hosts/h9 \
    "{\"addr\":\"10.199.0.99\",\"time\":$((now + 60000)),\"running\":[]}" >/dev/null ||
	fail "cannot write h9's record"
jq '.name = "h5"' "$h3_CONF" >"$T/skew.json"
refused_join "a skewed clock" "$T/skew.json" \
    "clock skew: this host's clock is [56][0-9].[0-9] s behind that of h9 (at most 2 s allowed); sync the clocks (NTP) before h5 joins"
ip netns exec "$h3_NETNS" "$DRIVE" -e "$ETCD" del /qdesk/v1/hosts/h9 >/dev/null
[ "$(hq h1 --json host list | jq '[.hosts[] | select(.name == "h5")] | length')" = 0 ] ||
	fail "the refused h5 is listed"
log "duplicate name and skewed clock refused: ok"
# A host whose certificate is not the cluster's is refused at start with
# one line: one of another CA (cluster init against this etcd is refused
# but makes its files), and another host's (CN host:h3 for h6).
ip netns exec "$h3_NETNS" "$QDESK_BIN" cluster init --etcd "$ETCD" \
    --dir "$T/rogue" >/dev/null 2>&1 && fail "a second cluster CA was accepted"
out=$("$QDESK_BIN" cluster cert host h6 --dir "$T/rogue" 2>&1) ||
	fail "a host certificate of the rogue CA: $out"
jq --arg d "$T/rogue/host-h6" '.name = "h6" | .cert = $d + "/cert.pem" |
    .key = $d + "/key.pem"' "$h3_CONF" >"$T/rogue.json"
refused_join "a host with another CA's certificate" "$T/rogue.json" \
    "this host's certificate $T/rogue/host-h6/cert.pem is not of the cluster's CA (etcd's /qdesk/v1/cluster): .*; issue one with qdesk cluster cert host h6"
jq '.name = "h6"' "$h3_CONF" >"$T/other.json"
refused_join "a host with another host's certificate" "$T/other.json" \
    "this host's certificate .*/host-h3/cert.pem names host:h3, not host:h6"
[ "$(hq h1 --json host list | jq '[.hosts[] | select(.name == "h6")] | length')" = 0 ] ||
	fail "the refused h6 is listed"
log "a host with another CA's certificate, or another host's, refused: ok"

# A desktop cloned from an image (--from) goes to a host that has it.
cp "$GUESTS/boot.img" "$T/base.img"
hqq h2 image import tbase "$T/base.img" --format raw >/dev/null
for i in $(seq 1 50); do
	hq h1 --json host list | jq -e '.hosts[] | select(.name == "h2")' >/dev/null &&
	    [ "$(ip netns exec "$h1_NETNS" "$DRIVE" -e "$ETCD" get /qdesk/v1/hosts/h2 |
	    grep -c '"tbase"')" = 1 ] && break
	sleep 0.1
done
hqq h1 vm create t1 --accel kvm --from tbase --memory 64 --display none >/dev/null
hqq h3 vm start t1 >/dev/null
[ "$(runs_on t1)" = h2 ] || fail "t1 (from tbase, only on h2) runs on '$(runs_on t1)'"
hqq h1 vm create t2 --accel kvm --from nosuch --memory 64 --display none >/dev/null
out=$(hq h1 vm start t2 2>&1) && fail "a start from an image no host has: $out"
[ "$out" = "qdesk: InvalidState: no host that is up and not draining has template nosuch and 64 MiB free for t2" ] ||
	fail "start from no host's image said: $out"
log "--from: placed on the host that has the image; none has it: refused: ok"

# Placement prefers a host under its boot cap (issue 13): h8, a record
# written into etcd with no qmpd behind it, has by far the most free
# memory but boots as many VMs as its cap allows, so a start goes to one
# of the three. Then h8's record says it boots nothing, and the next
# start is placed on h8: it was passed over for its cap, nothing else.
# (It never starts there: h8's record goes and the start says so.)
h8_put() {
	ip netns exec "$h3_NETNS" "$DRIVE" -e "$ETCD" put /qdesk/v1/hosts/h8 \
	    "{\"addr\":\"10.199.0.98\",\"mem_free\":$1,\"boot_cap\":2,\"booting\":$2,\"running\":[],\"starting\":[],\"templates\":[],\"draining\":false,\"time\":$(date +%s%3N)}" >/dev/null ||
		fail "cannot write h8's record"
}
h8_seen() { hq h1 --json host list | jq -e ".hosts[] | select(.name == \"h8\" and .mem_free == $1)" >/dev/null; }
for v in c1 c2; do
	cp "$GUESTS/boot.img" "$SHARED/$v.img"
	hqq h1 vm create $v --accel kvm --disk "$SHARED/$v.img" --memory 64 \
	    --display none >/dev/null
done
h8_put 900000 2
until_ok 10 "h1 sees h8 at its boot cap" "h8_seen 900000"
out=$(hqq h1 vm start c1)
[ "$out" = "c1: running" ] || fail "vm start c1 beside a capped h8: $out"
case "$(runs_on c1)" in h[123]) ;; *) fail "c1 runs on '$(runs_on c1)'";; esac
[ "$(placement c1 | jq -r .host)" = "$(runs_on c1)" ] ||
	fail "c1 placed on $(placement c1 | jq -r .host), runs on $(runs_on c1)"
h8_put 1000000 0
until_ok 10 "h1 sees h8 booting nothing" "h8_seen 1000000"
hq h1 vm start c2 >"$T/c2.out" 2>&1 &
c2pid=$!
until_ok 20 "c2 placed on h8, under its cap now" \
    '[ "$(placement c2 | jq -r .host)" = h8 ]'
ip netns exec "$h3_NETNS" "$DRIVE" -e "$ETCD" del /qdesk/v1/hosts/h8 >/dev/null
wait $c2pid && fail "vm start c2 on a host that went: $(cat "$T/c2.out")"
[ "$(cat "$T/c2.out")" = "qdesk: InvalidState: c2: host h8 went down" ] ||
	fail "vm start c2 when h8 went: $(cat "$T/c2.out")"
until_ok 10 "h8 gone from host list" \
    '[ "$(hq h1 --json host list | jq "[.hosts[] | select(.name == \"h8\")] | length")" = 0 ]'
hqq h1 vm stop c1 --force >/dev/null
log "boot cap: a host at its cap passed over for one under it, placed on once under it: ok"

# One etcd member killed (the one every host calls first): the hosts
# keep their leases (no fence), and placement still works.
cluster_etcd_members
etcd_member_kill 1
sleep 11	# two leases of 5 s
for h in $HOSTS; do
	lg=${h}_LOG
	grep -q "cluster: fence" "${!lg}" && fail "$h fenced with one member down"
done
wait_hosts h2 "h1=up h2=up h3=up "
out=$(hqq h3 vm start d2)
[ "$out" = "d2: running" ] || fail "vm start d2 with a member down: $out"
etcd_member_start 1
log "one etcd member down: leases hold, placement works: ok"

# Bad input, and single-host qmpd knows no hosts.
out=$(hq h1 host drain nosuch 2>&1) && fail "drain of no host: $out"
[ "$out" = "qdesk: NotFound: no host named nosuch in the cluster" ] || fail "drain nosuch: $out"
start_qmpd
out=$(q host list 2>&1) && fail "host list on a single host: $out"
[ "$out" = "qdesk: InvalidState: host.list needs cluster mode (qmpd --cluster FILE)" ] ||
	fail "single host said: $out"
out=$(q vm create s1 --disk "$(tiny_disk s1)" --host h1 2>&1) && fail "--host single: $out"
[ "$out" = "qdesk: InvalidArgument: --host needs cluster mode (qmpd --cluster FILE)" ] || fail "said: $out"
log "bad input: ok"
exit 0
