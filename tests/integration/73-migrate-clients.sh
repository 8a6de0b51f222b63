#!/usr/bin/env bash
# Clients follow a live migration (issue 14): `scripts/cluster up 2` (its
# broker runs the RDP gateway on the cluster bridge), a TCG Linux guest
# assigned to alice on both hosts. A real xfreerdp under Xvfb logs in to
# it through the broker; `vm migrate` moves it to the other host; the
# client stays connected (the same process, no reconnect), the gateway
# says it found the console again on the new host, the window matches the
# target QEMU's screendump, and a command typed into the window reaches
# the guest's serial log on the target. Then back, with the target's
# qmpd dying between the placement swap and cont (a test hook) and
# coming back: the session stays up while the gateway looks for the
# console, keys typed meanwhile reach the guest; and a desktop that is
# stopped ends the session at qmpd's first answer.
. "$(dirname "$0")/lib.sh"
. "$top/tests/lib/xvfb.sh"

[ "$(id -u)" = 0 ] || skip "needs root (network namespaces)"
[ -r /dev/kvm ] || skip "no /dev/kvm"
for c in xfreerdp xdotool import compare identify convert; do
	command -v "$c" >/dev/null || fail "$c is not installed (scripts/setup)"
done
. "$top/tests/lib/cluster-lib.sh"
CLIENT_PID=
EXTRA_CLEANUP='clients_cleanup'
clients_cleanup() {
	[ -n "$CLIENT_PID" ] && kill "$CLIENT_PID" 2>/dev/null
	xvfb_stop
	"$CLUSTER" down >/dev/null 2>&1
}
cluster_test_up 2 5 5
BROKER_LOG=$RUN_DIR/broker.log
GW=10.199.0.1:3389

broker_fail() {
	log "last lines of the broker's log:"
	tail -n 25 "$BROKER_LOG" >&2
	fail "$@"
}
wait_broker_log() {
	local pattern=$1 timeout=${2:-30} i
	for i in $(seq 1 $((timeout * 10))); do
		grep -q -- "$pattern" "$BROKER_LOG" 2>/dev/null && return 0
		sleep 0.1
	done
	broker_fail "'$pattern' not in the broker's log after ${timeout}s"
}
wait_broker_count() { # PATTERN N TIMEOUT: until N lines match
	local i
	for i in $(seq 1 $(($3 * 10))); do
		[ "$(grep -c -- "$1" "$BROKER_LOG")" -ge "$2" ] && return 0
		sleep 0.1
	done
	broker_fail "'$1' not $2 times in the broker's log after $3 s"
}
# RMSE (0..1) of the client's window against VM's screendump on host h.
compare_with() {
	local win=$1 h=$2 size
	hq "$h" vm screenshot desk "$T/qmp.ppm" >/dev/null || return 1
	import -window "$win" "$T/client.png" 2>/dev/null || return 1
	size=$(identify -format '%wx%h' "$T/qmp.ppm")
	convert "$T/client.png" -crop "$size+0+0" +repage "$T/client-crop.png"
	compare -metric RMSE "$T/client-crop.png" "$T/qmp.ppm" null: 2>&1 |
	    sed -n 's/.*(\(.*\)).*/\1/p'
}
# The client shows what h's QEMU shows (the cursor blinks: retry).
shows() {
	local win=$1 h=$2 i rmse best=1
	for i in $(seq 1 20); do
		rmse=$(compare_with "$win" "$h") || broker_fail "screenshot failed"
		best=$(python3 -c "print(min($best, $rmse))")
		python3 -c "import sys; sys.exit(0 if $rmse < 0.02 else 1)" && break
		sleep 0.5
	done
	echo "$best"
	python3 -c "import sys; sys.exit(0 if $best < 0.02 else 1)"
}

cluster_wait_up
# Users and assignments are the cluster's (etcd): added once, on h1.
echo alice-pw-1 | hq h1 user add alice --password-stdin >/dev/null ||
	fail "user add alice on h1"
cluster_wait_user alice
hqq h1 vm create desk --accel tcg --memory 256 --kernel "$GUESTS/vmlinuz" \
    --initrd "$GUESTS/initrd.img" --append "console=tty0 console=ttyS0 no_timer_check" >/dev/null
hqq h1 vm start desk >/dev/null
src=$(runs_on desk)
case $src in h1|h2) ;; *) fail "desk runs on '$src'" ;; esac
hqq h1 desktop assign alice desk >/dev/null
dst=$(other "$src")
hwait_console "$src" desk "QDESK GUEST READY" 120
hwait_console "$src" desk "# " 30

# 1. xfreerdp logged in through the broker's gateway, showing the guest.
xvfb_need
xvfb_start
HOME=$T ip netns exec "$ETCD_NETNS" xfreerdp /cert:ignore /v:$GW \
    /u:alice /p:alice-pw-1 /d:desk >"$T/xf.log" 2>&1 &
CLIENT_PID=$!
wait_broker_log "(alice on desk): logged in" 60
wait_broker_log "(alice on desk): .*console \(now \)\?720x400" 60
win=
for i in $(seq 1 100); do
	win=$(xdotool search --pid "$CLIENT_PID" --name FreeRDP 2>/dev/null | head -n1)
	[ -n "$win" ] && break
	sleep 0.1
done
[ -n "$win" ] || broker_fail "no xfreerdp window: $(tail -n 5 "$T/xf.log")"
rmse=$(shows "$win" "$src") || broker_fail "before: the client does not show desk on $src (RMSE $rmse)"
log "xfreerdp on desk at $src through the gateway: RMSE $rmse"

# 2. Migrate; the client stays, the gateway finds the console on $dst.
out=$(hq "$src" --json vm migrate desk "$dst") || fail "migrate $src -> $dst: $out"
[ "$(runs_on desk)" = "$dst" ] || fail "after: desk runs on '$(runs_on desk)'"
wait_broker_log "(alice on desk): console found again" 30
grep -q "cluster: VNC of desk streams from host $dst" "$BROKER_LOG" ||
	broker_fail "the gateway's new VNC stream did not come from $dst"
kill -0 "$CLIENT_PID" 2>/dev/null ||
	broker_fail "xfreerdp ended with the migration: $(tail -n 5 "$T/xf.log")"
grep -q "(alice on desk): session ended" "$BROKER_LOG" &&
	broker_fail "the gateway ended alice's session"
[ "$(grep -c "(alice on desk): logged in" "$BROKER_LOG")" = 1 ] ||
	broker_fail "alice logged in again"
[ "$(grep -c "(alice on desk): .*looking for the desktop" "$BROKER_LOG")" = 1 ] ||
	broker_fail "the gateway lost the console more than once"
# The gateway's own gap: from the stream's end to the new stream's
# handshake (the broker's log times, HH:MM:SS.mmm).
gap=$(grep -h "(alice on desk): .*\(looking for the desktop\|console found again\)" "$BROKER_LOG" |
    awk '{ split($1, t, ":"); ms = ((t[1] * 60 + t[2]) * 60 + t[3]) * 1000;
	if (NR == 1) a = ms; else printf "%d", ms - a }')
log "migrated $src -> $dst (downtime $(echo "$out" | jq .migration.downtime_ms) ms): $(grep -o "console found again.*" "$BROKER_LOG" | tail -n 1); the gateway's VNC gap $gap ms"

# 3. What it shows is the target's screen, and keys reach the target.
xdotool mousemove --window "$win" 100 100
xdotool windowfocus --sync "$win" 2>/dev/null || xdotool windowfocus "$win"
xdotool type --delay 40 'echo QDESK-MIG-$((6*7)) > /dev/ttyS0'
xdotool key Return
hwait_console "$dst" desk "QDESK-MIG-42" 30
rmse=$(shows "$win" "$dst") || broker_fail "after: the client does not show desk on $dst (RMSE $rmse)"
kill -0 "$CLIENT_PID" 2>/dev/null || broker_fail "xfreerdp ended"
log "after the migration: typed command ran on $dst, window vs $dst's screendump RMSE $rmse"

# 4. A long look: back to $src, whose qmpd dies between the placement
# swap and cont (QDESK_TEST_HOOK, as in test 76). $dst's copy goes, the
# stream ends, and the gateway asks for the console while $src's qmpd is
# away (Unavailable), then arriving (Busy). Its session's loop goes on
# serving the client meanwhile: keys typed in the gap are held and reach
# the guest once the console is back.
QDESK_TEST_HOOK=die-before-cont:desk cluster_qmpd_restart "$src"
cluster_wait_up
hq "$dst" --json vm migrate desk "$src" >"$T/mig2" 2>&1 &&
	fail "the migration to a qmpd that died before cont succeeded: $(cat "$T/mig2")"
grep -q "placement had moved to $src already" "$T/mig2" ||
	fail "the migration's answer: $(cat "$T/mig2")"
wait_broker_count "(alice on desk): .*looking for the desktop" 2 30
xdotool windowfocus --sync "$win" 2>/dev/null || xdotool windowfocus "$win"
xdotool type --delay 40 'echo QDESK-GAP-$((6*8)) > /dev/ttyS0'
xdotool key Return
[ "$(grep -c "(alice on desk): console found again" "$BROKER_LOG")" = 1 ] ||
	broker_fail "the console was found again before $src's qmpd came back"
kill -0 "$CLIENT_PID" 2>/dev/null ||
	broker_fail "xfreerdp ended while the gateway looked for the desktop: $(tail -n 5 "$T/xf.log")"
cluster_qmpd_restart "$src"
wait_broker_count "(alice on desk): console found again" 2 60
hwait_console "$src" desk "QDESK-GAP-48" 30
[ "$(runs_on desk)" = "$src" ] || fail "after the reconciliation desk runs on '$(runs_on desk)'"
found=$(grep -o "(alice on desk): console found again ([0-9]* asks*)" "$BROKER_LOG" | tail -n 1)
grep -q "key events held while the desktop moved sent to its new console" "$BROKER_LOG" ||
	broker_fail "the gateway did not say it sent the held keys"
grep -q "(alice on desk): session ended" "$BROKER_LOG" &&
	broker_fail "the gateway ended alice's session"
rmse=$(shows "$win" "$src") || broker_fail "after the long look: the client does not show desk on $src (RMSE $rmse)"
gap=$(grep -h "(alice on desk): .*\(looking for the desktop\|console found again\)" "$BROKER_LOG" | tail -n 2 |
    awk '{ split($1, t, ":"); ms = ((t[1] * 60 + t[2]) * 60 + t[3]) * 1000;
	if (NR == 1) a = ms; else printf "%d", ms - a }')
log "$src's qmpd away between swap and cont: the session stayed up ${gap} ms without a console, keys typed then ran on $src; $found; RMSE $rmse"

# 5. A desktop that really stopped ends the session at qmpd's answer
# ("stopped", or "stopping" when the ask comes before qmpd saw QEMU
# exit), not at the look's deadline.
hqq "$src" vm stop desk --force >/dev/null
wait_broker_log "(alice on desk): session ended" 30
why=$(grep -o "(alice on desk): .*console of desk not found again after [0-9]* asks*: VM desk is stopp\(ed\|ing\)" "$BROKER_LOG" | tail -n 1)
[ -n "$why" ] ||
	broker_fail "the session did not end at qmpd's answer that desk stopped: $(grep '(alice on desk)' "$BROKER_LOG" | tail -n 3)"
gap=$(grep -h "(alice on desk): .*\(looking for the desktop\|session ended\)" "$BROKER_LOG" | tail -n 2 |
    awk '{ split($1, t, ":"); ms = ((t[1] * 60 + t[2]) * 60 + t[3]) * 1000;
	if (NR == 1) a = ms; else printf "%d", ms - a }')
log "a stopped desktop ended its RDP session at qmpd's answer, ${gap} ms after the stream (${why##*; })"
log "ok"
