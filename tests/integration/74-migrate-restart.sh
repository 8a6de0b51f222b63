#!/usr/bin/env bash
# Live migration in a cluster with --storage copy (issue 14), and the
# target's qmpd killed mid-migration. `scripts/cluster up 2`, a TCG Linux
# guest with a 32 MiB local disk writing a counter to its serial port.
#  1. The NBD export of the copy takes only the cluster's TLS: while the
#     migration waits (the source's QEMU stopped a moment), a plain
#     qemu-img is refused by the target's NBD port, a client with a host
#     certificate of the cluster CA gets the disk's size; the migration
#     then completes (storage copy, TLS), the counter goes on there.
#  2. The way back, with the target's qmpd killed (-9) mid-migration and
#     restarted: the migration fails with a reason, exactly one QEMU of
#     desk runs (both hosts' process tables, sampled), placement names
#     that host, and the restarted target has no record, run dir, disk
#     copy or note of the half it had.
. "$(dirname "$0")/lib.sh"

[ "$(id -u)" = 0 ] || skip "needs root (network namespaces)"
. "$top/tests/lib/cluster-lib.sh"
MIG_PID=
STOPPED=
EXTRA_CLEANUP='mig_cleanup'
mig_cleanup() {
	[ -n "$STOPPED" ] && kill -CONT "$STOPPED" 2>/dev/null
	[ -n "$MIG_PID" ] && kill "$MIG_PID" 2>/dev/null
	"$CLUSTER" down >/dev/null 2>&1
}
cluster_test_up 2 5 5

# Wait for a line matching pattern in a log past byte offset off.
wait_log() { # FILE OFF PATTERN TIMEOUT
	local i
	for i in $(seq 1 $(($4 * 20))); do
		tail -c +"$(($2 + 1))" "$1" | grep -q "$3" && return 0
		sleep 0.05
	done
	fail "'$3' not in $1 after $4 s: $(tail -n 5 "$1")"
}
counter_moves() { # HOST
	local n
	n=$(grep -ac "^CTR" "$(state_of "$1")/vms/desk/serial.log")
	sleep 1
	[ "$(grep -ac "^CTR" "$(state_of "$1")/vms/desk/serial.log")" -gt "$n" ] ||
		fail "desk's counter stopped on $1"
}

for i in $(seq 1 100); do
	[ "$(hq h1 --json host list | jq -r '[.hosts[] | select(.state == "up")] | length')" = 2 ] && break
	sleep 0.1
done
head -c $((32 << 20)) /dev/urandom >"$T/desk.raw"
hqq h1 vm create desk --accel tcg --memory 256 --kernel "$GUESTS/vmlinuz" \
    --initrd "$GUESTS/initrd.img" --append "console=ttyS0 no_timer_check" \
    --disk "$T/desk.raw" --disk-format raw --display none >/dev/null
hqq h1 vm start desk >/dev/null
src=$(runs_on desk)
case $src in h1|h2) ;; *) fail "desk runs on '$src'" ;; esac
dst=$(other "$src")
hwait_console "$src" desk "QDESK GUEST READY" 120
hwait_console "$src" desk "# " 30
printf '%s\n' 'i=0; while :; do echo "CTR $i"; i=$((i+1)); usleep 50000; done >/dev/ttyS0 2>&1 &' |
    socat -t1 - "UNIX-CONNECT:$(state_of "$src")/vms/desk/serial.sock" >/dev/null 2>&1
hwait_console "$src" desk "CTR 20" 30

# 1. --storage copy: the source's QEMU is held once its mirror job
# exists (JOB_STATUS_CHANGE in its qmpd's -v log) (its NBD client has connected and negotiated: a QEMU held in the
# handshake would be dropped by the server's handshake limit), so the
# export is there to knock on.
soff=$(stat -c %s "$(log_of "$src")")
doff=$(stat -c %s "$(log_of "$dst")")
hq "$src" --json vm migrate desk "$dst" --storage copy >"$T/mig1" 2>&1 &
MIG_PID=$!
wait_log "$(log_of "$src")" "$soff" '"status": "created", "id": "mig-disk0"' 60
STOPPED=$(cat "$(state_of "$src")/vms/desk/qemu.pid")
kill -STOP "$STOPPED"
nbd=$(tail -c +"$((doff + 1))" "$(log_of "$dst")" |
    sed -n 's/.*desk: NBD export of the copy at \([0-9.:]*\) (TLS).*/\1/p' | tail -n 1)
[ -n "$nbd" ] || fail "no TLS NBD export in $dst's log: $(tail -n 5 "$(log_of "$dst")")"
ns=${src}_NETNS
out=$(ip netns exec "${!ns}" qemu-img info "nbd://$nbd/disk0" 2>&1) &&
	fail "a plain NBD client read the export: $out"
echo "$out" | grep -qi "tls" || fail "the plain client was refused, but not for TLS: $out"
# A host certificate of the cluster CA is let in (the port is the export).
mkdir -p "$T/nbd-tls"
conf=${src}_CONF
cdir=$(dirname "$(jq -r .cert "${!conf}")")
cp "$cdir/ca.pem" "$T/nbd-tls/ca-cert.pem"
cp "$cdir/cert.pem" "$T/nbd-tls/client-cert.pem"
cp "$cdir/key.pem" "$T/nbd-tls/client-key.pem"
out=$(ip netns exec "${!ns}" qemu-img info --object \
    "tls-creds-x509,id=t0,dir=$T/nbd-tls,endpoint=client" --image-opts \
    "driver=nbd,host=${nbd%:*},port=${nbd##*:},export=disk0,tls-creds=t0" 2>&1) ||
	fail "a cluster host's TLS client was refused: $out"
echo "$out" | grep -q "virtual size: 32 MiB" || fail "TLS client saw: $out"
kill -CONT "$STOPPED"; STOPPED=
wait "$MIG_PID" || fail "migrate --storage copy $src -> $dst: $(cat "$T/mig1")"
MIG_PID=
out=$(cat "$T/mig1")
[ "$(echo "$out" | jq -r '.migration.storage + " " + (.migration.tls | tostring) + " " + .migration.state')" = "copy true completed" ] ||
	fail "migration answer: $out"
[ "$(runs_on desk)" = "$dst" ] || fail "after the copy desk runs on '$(runs_on desk)'"
[ "$(placement desk | jq -r .host)" = "$dst" ] || fail "placement: $(placement desk)"
[ -e "$(state_of "$src")/vms/desk" ] && fail "$src kept desk's run dir"
counter_moves "$dst"
log "copy over TLS NBD (plain qemu-img refused, a CA client let in): $(echo "$out" | jq -c '.migration | {downtime_ms, total_ms, disk_mb}')"

# 2. Back, with the target's qmpd killed mid-migration and restarted.
src2=$dst dst2=$src
soff=$(stat -c %s "$(log_of "$src2")")
hq "$src2" --json vm migrate desk "$dst2" --storage copy >"$T/mig2" 2>&1 &
MIG_PID=$!
wait_log "$(log_of "$src2")" "$soff" '"status": "created", "id": "mig-disk0"' 60
STOPPED=$(cat "$(state_of "$src2")/vms/desk/qemu.pid")
kill -STOP "$STOPPED"
pf=${dst2}_PIDFILE
kill -9 "$(cat "${!pf}")"
[ -e "$(state_of "$dst2")/incoming/desk" ] || fail "no note of the incoming half on $dst2"
kill -CONT "$STOPPED"; STOPPED=
wait "$MIG_PID" && fail "the migration to a dead qmpd succeeded: $(cat "$T/mig2")"
MIG_PID=
grep -q "went away" "$T/mig2" || fail "the failure did not say why: $(cat "$T/mig2")"
# The half's QEMU waits for a stream that never comes: the restarted
# qmpd finds its note, asks etcd, which names $src2, and kills it (it
# never ran: no switchover in its log).
doff=$(stat -c %s "$(log_of "$dst2")")
cluster_qmpd_start "$dst2"
for i in $(seq 1 100); do
	[ "$(runs_on desk)" = "$src2" ] && [ ! -e "$(state_of "$dst2")/vms/desk" ] && break
	sleep 0.1
done
seen=$(runs_on_throughout desk)
[ "$(printf '%s\n' "$seen" | cut -d' ' -f2-)" = "$src2" ] ||
	fail "after the restart desk ran on: $(printf '%s' "$seen" | tr '\n' ';')"
# (Killed by the placement check, or already by the fence watchdog when
# the restart took longer than the lease: reconciled either way.)
tail -c +"$((doff + 1))" "$(log_of "$dst2")" | grep -q "desk: incoming from $src2 when qmpd went away: reconciling" ||
	fail "the restarted $dst2 did not reconcile the half: $(tail -n 5 "$(log_of "$dst2")")"
tail -c +"$((doff + 1))" "$(log_of "$dst2")" | grep -q "desk: migrated here from" &&
	fail "the half ran on $dst2"
[ "$(placement desk | jq -r .host)" = "$src2" ] || fail "placement: $(placement desk)"
for f in vms/desk disks/desk.raw incoming/desk; do
	[ -e "$(state_of "$dst2")/$f" ] && fail "$dst2 kept $f of the half"
done
got=$(hq "$dst2" --json vm show desk | jq -r '.state + " " + .host')
[ "$got" = "running $src2" ] || fail "vm show desk on $dst2: $got"
counter_moves "$src2"
log "target's qmpd killed mid-migration: one copy on $src2, placement $src2, nothing left on $dst2: ok"
