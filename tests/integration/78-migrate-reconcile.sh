#!/usr/bin/env bash
# Live migration's reconciliation (issue 14): the target's qmpd dies
# after the switchover's placement swap landed but before its `cont`.
# `scripts/cluster up 2`, a TCG Linux guest writing a counter to its
# serial port. The target's qmpd runs with QDESK_TEST_HOOK=
# die-before-cont:desk (qmpd/test-hook.c, a -Dtest_hooks build), which
# SIGKILLs it at that point: placement names the target, whose QEMU is
# paused with the whole guest. The source, its migrate.finish cut off,
# asks etcd, finds the desktop placed on the target and kills its own
# copy (never resumed); the target's restarted qmpd finds its note of
# the half, asks etcd, which names it, and runs it. Exactly one QEMU of
# desk is left, on the target, and the guest's counter goes on from
# where it was (same boot).
. "$(dirname "$0")/lib.sh"

[ "$(id -u)" = 0 ] || skip "needs root (network namespaces)"
. "$top/tests/lib/cluster-lib.sh"
grep -q "QDESK_TEST_HOOKS" "$top/build/build.ninja" ||
	fail "qmpd is built without test hooks (meson configure build -Dtest_hooks=true)"
# A lease longer than the restart takes: the target must not be
# declared down (failover) while its qmpd is away.
cluster_test_up 2 10 10

hosts_up() { # HOST: until HOST's view has both hosts up
	local i
	for i in $(seq 1 200); do
		[ "$(hq "$1" --json host list 2>/dev/null | jq -r '[.hosts[] | select(.state == "up")] | length')" = 2 ] && return 0
		sleep 0.1
	done
	fail "$1 does not see both hosts up: $(hq "$1" host list 2>&1)"
}
# The counter's first and last whole lines on HOST (the console adds \r).
ctr_first() { tr -d '\r' <"$(state_of "$1")/vms/desk/serial.log" 2>/dev/null | grep -a "^CTR [0-9][0-9]*$" | head -n 1 | tr -dc 0-9; }
ctr_last() { tr -d '\r' <"$(state_of "$1")/vms/desk/serial.log" 2>/dev/null | grep -a "^CTR [0-9][0-9]*$" | tail -n 1 | tr -dc 0-9; }

hosts_up h1
hqq h1 vm create desk --accel tcg --memory 256 --kernel "$GUESTS/vmlinuz" \
    --initrd "$GUESTS/initrd.img" --append "console=ttyS0 no_timer_check" --display none >/dev/null
hqq h1 vm start desk >/dev/null
src=$(runs_on desk)
case $src in h1|h2) ;; *) fail "desk runs on '$src'" ;; esac
dst=$(other "$src")
hwait_console "$src" desk "QDESK GUEST READY" 120
hwait_console "$src" desk "# " 30
printf '%s\n' 'i=0; while :; do echo "CTR $i"; i=$((i+1)); usleep 50000; done >/dev/ttyS0 2>&1 &' |
    socat -t1 - "UNIX-CONNECT:$(state_of "$src")/vms/desk/serial.sock" >/dev/null 2>&1
hwait_console "$src" desk "CTR 20" 30

# The target's qmpd, armed: it dies once placement names it, before cont.
QDESK_TEST_HOOK=die-before-cont:desk cluster_qmpd_restart "$dst"
hosts_up "$src"
hosts_up "$dst"
pf=${dst}_PIDFILE
dpid=$(cat "${!pf}")
doff=$(stat -c %s "$(log_of "$dst")")
rc=0
out=$(hq "$src" --json vm migrate desk "$dst" 2>&1) || rc=$?
alive "$dpid" && fail "$dst's qmpd is alive after the migration (rc $rc): $out"
tail -c +"$((doff + 1))" "$(log_of "$dst")" | grep -q "desk: test hook die-before-cont: qmpd dies here" ||
	fail "$dst's qmpd did not die at the hook: $(tail -n 5 "$(log_of "$dst")"); migrate: $out"
[ "$rc" != 0 ] || fail "the migration reported success with the target's qmpd dead before cont: $out"
# Answered once etcd said where the desktop is: not "it keeps running here".
echo "$out" | grep -q "placement had moved to $dst already" ||
	fail "the migration's answer does not say the desktop is $dst's now: $out"
[ "$(placement desk | jq -r .host)" = "$dst" ] || fail "placement after the swap: $(placement desk)"
log "$dst's qmpd died between the placement swap and cont; migrate said: $out"
# The source lets go: placement names $dst, so its stopped copy is killed.
for i in $(seq 1 200); do
	[ "$(runs_on desk)" = "$dst" ] && break
	sleep 0.1
done
[ "$(runs_on desk)" = "$dst" ] || fail "with $dst's qmpd down desk runs on '$(runs_on desk)'"
grep -q "desk: placement names another host after the failed switchover: this copy goes" "$(log_of "$src")" ||
	fail "$src did not say why its copy went: $(grep -a 'desk:' "$(log_of "$src")" | tail -n 5)"
# The half is paused: the guest has written nothing there yet.
[ -z "$(ctr_first "$dst")" ] || fail "desk ran on $dst before its qmpd came back: CTR $(ctr_first "$dst")"

# The target's qmpd comes back (unarmed): etcd names it, the half runs.
doff=$(stat -c %s "$(log_of "$dst")")
cluster_qmpd_restart "$dst"
for i in $(seq 1 300); do
	[ "$(hq "$dst" --json vm show desk 2>/dev/null | jq -r .state)" = running ] && break
	sleep 0.1
done
got=$(hq "$dst" --json vm show desk | jq -r '.state + " " + .host')
[ "$got" = "running $dst" ] || fail "vm show desk on $dst after its restart: $got"
tail -c +"$((doff + 1))" "$(log_of "$dst")" | grep -q "desk: placement names this host: the switchover finishes here" ||
	fail "the restarted $dst did not finish the switchover: $(tail -n 5 "$(log_of "$dst")")"
hwait_console "$dst" desk "^CTR [0-9]" 30
first=$(ctr_first "$dst")
[ "$first" -gt 20 ] || fail "desk's counter on $dst starts at $first: not the same boot"
n=$(ctr_last "$dst")
for i in $(seq 1 100); do
	[ "$(ctr_last "$dst")" -gt "$n" ] && break
	sleep 0.1
done
[ "$(ctr_last "$dst")" -gt "$n" ] || fail "desk's counter does not move on $dst"
seen=$(runs_on_throughout desk)
[ "$(printf '%s\n' "$seen" | cut -d' ' -f2-)" = "$dst" ] ||
	fail "after the restart desk ran on: $(printf '%s' "$seen" | tr '\n' ';')"
[ -e "$(state_of "$dst")/incoming/desk" ] && fail "$dst kept its note of the half"
[ -e "$(state_of "$src")/vms/desk" ] && fail "$src kept desk's run dir"
got=$(hq "$src" --json vm show desk | jq -r '.state + " " + .host')
[ "$got" = "running $dst" ] || fail "vm show desk on $src: $got"
log "one copy of desk afterwards, on $dst (counter on from CTR $first, the same boot), none on $src: ok"
hqq "$dst" vm stop desk --force >/dev/null
log "ok"
