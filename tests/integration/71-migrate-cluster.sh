#!/usr/bin/env bash
# Live migration inside a cluster (issues 13/14): `scripts/cluster up 2`,
# a TCG Linux guest (kernel and initrd, no disk) writing a counter to its
# serial port every 50 ms. `vm migrate desk HOST` by host name: the
# counter goes on (same boot), placement/desk names the target with the
# epoch one more, a QEMU of desk is in exactly one host's process table
# before and after and never in none during it, and vm show on both
# hosts names the new host. The stream is TLS (QEMU tls-creds-x509 from
# the hosts' cluster certificates). Refused with one line: an unknown
# host, this host, a pinned desktop, a host whose certificate is not the
# named host's.
# Then `host drain HOST --live` moves every desktop off HOST.
. "$(dirname "$0")/lib.sh"

[ "$(id -u)" = 0 ] || skip "needs root (network namespaces)"
[ -r /dev/kvm ] || skip "no /dev/kvm"
. "$top/tests/lib/cluster-lib.sh"
FOLLOW_PID=
SAMPLE_PID=
EXTRA_CLEANUP='mig_cleanup'
mig_cleanup() {
	[ -n "$FOLLOW_PID" ] && kill "$FOLLOW_PID" 2>/dev/null
	[ -n "$SAMPLE_PID" ] && kill "$SAMPLE_PID" 2>/dev/null
	"$CLUSTER" down >/dev/null 2>&1
}
cluster_test_up 2 5 5

hserial_send() {
	printf '%s\n' "$3" | socat -t1 - "UNIX-CONNECT:$(state_of "$1")/vms/$2/serial.sock" >/dev/null 2>&1
}

cluster_wait_up

start_desk() { # NAME: created on h1, started, its counter going
	hqq h1 vm create "$1" --accel tcg --memory 256 --kernel "$GUESTS/vmlinuz" \
	    --initrd "$GUESTS/initrd.img" --append "console=ttyS0 no_timer_check" \
	    --display none >/dev/null
	hqq h1 vm start "$1" >/dev/null
	local where
	where=$(runs_on "$1")
	case $where in h1|h2) ;; *) fail "$1 runs on '$where'" ;; esac
	hwait_console "$where" "$1" "QDESK GUEST READY" 120
	hwait_console "$where" "$1" "# " 30
	hserial_send "$where" "$1" 'i=0; while :; do read up x </proc/uptime; echo "CTR $i $up"; i=$((i+1)); usleep 50000; done >/dev/ttyS0 2>&1 &'
	hwait_console "$where" "$1" "CTR 20 " 30
	echo "$where"
}

# Until the follower writing $1 has seen the source's counter (python
# starting takes more than a fixed half second on a busy machine).
follow_started() {
	local i
	for i in $(seq 1 300); do
		awk '$2 == 0 && $3 == "CTR"' "$1" 2>/dev/null | grep -q . && return 0
		sleep 0.1
	done
	fail "the serial follower saw no counter on the source"
}

# Until the follower file $1 has 10 counter lines from the target (a
# fresh TCG warms up a while, longer on a busy machine), 60 s at most.
follow_settle() {
	local i
	for i in $(seq 1 600); do
		[ "$(awk '$2 == 1 && $3 == "CTR"' "$1" | wc -l)" -ge 10 ] && return 0
		sleep 0.1
	done
}

# The counter a follower saw: continuous, one boot; "last first gap ..."
check_counter() { python3 "$top/tests/lib/counter-check.py" "$1"; }

# 1. vm migrate by host name.
src=$(start_desk desk)
dst=$(other "$src")
pl0=$(placement desk)
ep0=$(echo "$pl0" | jq -r .epoch)
[ "$(echo "$pl0" | jq -r .host)" = "$src" ] || fail "placement before: $pl0"

# Refusals, one line each.
out=$(hq "$src" vm migrate desk h9 2>&1) && fail "migrate to h9 worked: $out"
echo "$out" | grep -q "no host named h9" || fail "migrate to h9: $out"
out=$(hq "$src" vm migrate desk "$src" 2>&1) && fail "migrate to itself worked: $out"
echo "$out" | grep -q "is this host" || fail "migrate to itself: $out"
# A desktop pinned to its host (vm create --host) stays there.
cp "$GUESTS/boot.img" "$SHARED/pin.img"
hqq h1 vm create pin --accel kvm --disk "$SHARED/pin.img" --memory 64 \
    --display none --host "$src" >/dev/null
hqq h1 vm start pin >/dev/null
out=$(hq "$src" vm migrate pin "$dst" 2>&1) && fail "a pinned VM migrated: $out"
echo "$out" | grep -q "pinned to host $src" || fail "pinned said: $out"
hqq "$src" vm stop pin --force >/dev/null
# Deleted once placement says stopped (the stop reaches etcd after it).
for i in $(seq 1 100); do
	hq "$src" vm delete pin >/dev/null 2>&1 && break
	sleep 0.1
done
hq "$src" vm show pin >/dev/null 2>&1 && fail "pin was not deleted"
log "refusals: ok"

python3 "$top/tests/lib/serial-follow.py" "$T/follow1" \
    "$(state_of "$src")/vms/desk/serial.log" "$(state_of "$dst")/vms/desk/serial.log" &
FOLLOW_PID=$!
( while :; do echo "$(runs_on desk)"; sleep 0.05; done ) >"$T/sample1" &
SAMPLE_PID=$!
follow_started "$T/follow1"
out=$(hq "$src" --json vm migrate desk "$dst") || fail "migrate $src -> $dst: $out"
follow_settle "$T/follow1"
kill "$SAMPLE_PID" "$FOLLOW_PID"; SAMPLE_PID= FOLLOW_PID=
res=$(check_counter "$T/follow1") || fail "$src -> $dst: $res"
read -r last first gap _ <<<"$res"
log "migrated $src -> $dst: counter $last then $first, largest gap $gap ms, downtime $(echo "$out" | jq .migration.downtime_ms) ms"
[ "$(echo "$out" | jq -r .host)" = "$dst" ] || fail "migrate answer: $out"
grep -qx '' "$T/sample1" && fail "no QEMU of desk in either process table at some point: $(sort "$T/sample1" | uniq -c)"
[ "$(runs_on desk)" = "$dst" ] || fail "after: desk runs on '$(runs_on desk)', not $dst"
pl1=$(placement desk)
[ "$(echo "$pl1" | jq -r .host)" = "$dst" ] || fail "placement after: $pl1"
[ "$(echo "$pl1" | jq -r .epoch)" = $((ep0 + 1)) ] || fail "placement epoch: $pl0 then $pl1"
[ "$(echo "$pl1" | jq -r .state)" = running ] || fail "placement state: $pl1"
for h in $HOSTS; do
	for i in $(seq 1 50); do
		got=$(hq "$h" --json vm show desk | jq -r '.state + " " + .host')
		[ "$got" = "running $dst" ] && break
		sleep 0.1
	done
	[ "$got" = "running $dst" ] || fail "vm show desk on $h: $got"
done
# Still one copy a few seconds on (no reconcile kills it, no second boot).
sleep 3
[ "$(runs_on desk)" = "$dst" ] || fail "later: desk runs on '$(runs_on desk)'"
[ "$(grep -ac "QDESK GUEST READY" "$(state_of "$dst")/vms/desk/serial.log")" = 0 ] ||
	fail "desk booted again on $dst"
n1=$(grep -ac "^CTR" "$(state_of "$dst")/vms/desk/serial.log")
sleep 1
[ "$(grep -ac "^CTR" "$(state_of "$dst")/vms/desk/serial.log")" -gt "$n1" ] ||
	fail "the counter stopped on $dst"
log "placement $pl1, one QEMU, vm show on both: ok"

# 2. And back (the source's stale record there is no obstacle).
out=$(hq "$dst" --json vm migrate desk "$src") || fail "migrate back: $out"
[ "$(runs_on desk)" = "$src" ] || fail "back: desk runs on '$(runs_on desk)'"
[ "$(placement desk | jq -r '.host + " " + (.epoch | tostring)')" = "$src $((ep0 + 2))" ] ||
	fail "placement after the way back: $(placement desk)"
log "and back: ok"

# 3. The stream was TLS (both hosts have cluster certificates).
[ "$(echo "$out" | jq -r .migration.tls)" = true ] || fail "not a TLS stream: $out"
ls "$(state_of "$src")/vms/desk/mig-tls/server-cert.pem" >/dev/null 2>&1 ||
	fail "no server credentials for desk's QEMU on $src"
log "TLS stream: ok"

# 4. host drain --live, asked of the other host: every desktop leaves.
src=$(runs_on desk)
dst=$(other "$src")
start_desk desk2 >/dev/null
if [ "$(runs_on desk2)" != "$src" ]; then
	hqq "$(runs_on desk2)" vm migrate desk2 "$src" >/dev/null
fi
[ "$(runs_on desk2)" = "$src" ] || fail "desk2 runs on '$(runs_on desk2)', not $src"
out=$(hq "$dst" --json host drain "$src" --live) || fail "host drain $src --live: $out"
[ "$(echo "$out" | jq -r '[.moved[].name] | sort | join(" ")')" = "desk desk2" ] ||
	fail "drain answer: $out"
for v in desk desk2; do
	[ "$(runs_on "$v")" = "$dst" ] || fail "after the drain $v runs on '$(runs_on "$v")'"
	[ "$(placement "$v" | jq -r .host)" = "$dst" ] || fail "placement of $v: $(placement "$v")"
done
[ "$(hq "$src" --json host list | jq -r ".hosts[] | select(.name == \"$src\") | .state")" = draining ] ||
	fail "$src is not draining: $(hq "$src" --json host list)"
sleep 2
n1=$(grep -ac "^CTR" "$(state_of "$dst")/vms/desk2/serial.log")
sleep 1
[ "$(grep -ac "^CTR" "$(state_of "$dst")/vms/desk2/serial.log")" -gt "$n1" ] ||
	fail "desk2's counter stopped on $dst"
log "host drain $src --live: $(echo "$out" | jq -c .moved)"
# A host record whose listener is another host's: that certificate is
# not the named host's, and the migration is refused before anything is
# sent (desk runs on at $dst).
addr=${src}_ADDR
ip netns exec "$h1_NETNS" "$DRIVE" -e "$ETCD" put /qdesk/v1/hosts/h9 \
    "{\"addr\":\"10.199.0.99\",\"listen\":\"${!addr}:7443\",\"time\":$(date +%s%3N),\"running\":[]}" >/dev/null ||
	fail "cannot write h9's record"
for i in $(seq 1 50); do
	hq "$dst" --json host list | jq -e '.hosts[] | select(.name == "h9")' >/dev/null && break
	sleep 0.1
done
out=$(hq "$dst" vm migrate desk h9 2>&1) && fail "migrate to a host with $src's certificate worked: $out"
ip netns exec "$h1_NETNS" "$DRIVE" -e "$ETCD" del /qdesk/v1/hosts/h9 >/dev/null
echo "$out" | grep -q "certificate is CN host:$src, not host:h9" || fail "wrong certificate said: $out"
[ "$(echo "$out" | wc -l)" = 1 ] || fail "not one line: $out"
[ "$(runs_on desk)" = "$dst" ] || fail "after the refusal desk runs on '$(runs_on desk)'"
log "a listener with another host's certificate: refused"

# Nothing left to move: the answer is empty, not an error.
out=$(hq "$src" --json host drain "$src" --live) || fail "second drain: $out"
[ "$(echo "$out" | jq '.moved | length')" = 0 ] || fail "second drain: $out"
log "ok"
