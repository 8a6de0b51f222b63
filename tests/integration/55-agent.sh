#!/usr/bin/env bash
# The guest agent (--agent), under TCG, on a qdesk network in the test's
# own namespace: vm show lists the address the network's DHCP gave the
# guest and its hostname, from the agent; a live snapshot freezes and
# thaws the guest's filesystems (the guest's fsfreeze hook says so on its
# console); qmpd killed with -9 and started again finds the agent again,
# and thaws a guest a qmpd killed mid-snapshot left frozen;
# a guest whose power button does nothing (acpid killed) is
# stopped through the agent's guest-shutdown before the quit; a VM with
# --agent whose guest runs no agent shows connected=false, its live
# snapshot says the filesystems were not frozen, and its stop still works.
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/netlib.sh"

[ -f "$GUESTS/initrd-desktop.img" ] && [ -f "$GUESTS/vmlinuz-usb" ] ||
	fail "no desktop guest: run scripts/mkguest"

start_qmpd
qq net create office --subnet 10.79.0.0/24 >/dev/null
qq image import base "$GUESTS/rootfs.qcow2" >/dev/null

# a1: the desktop guest (qemu-ga inside); b1: the tests' tiny guest, no
# qemu-ga. Both with --agent, a disk of their own and a NIC on office.
qq vm create a1 --agent --accel tcg --memory 256 --display none \
    --kernel "$GUESTS/vmlinuz-usb" --initrd "$GUESTS/initrd-desktop.img" \
    --append "console=ttyS0 no_timer_check" --from base --net office >/dev/null
qq vm create b1 --agent --accel tcg --memory 128 --display none \
    --kernel "$GUESTS/vmlinuz" --initrd "$GUESTS/initrd.img" \
    --append "console=ttyS0 no_timer_check" --from base --net office >/dev/null
[ "$(vm_field a1 agent.connected)" = false ] ||
	fail "a1: agent connected before start"
q --json vm show a1 | jq -e '.agent.ips == [] and .agent.hostname == null' \
    >/dev/null || fail "a1: stopped agent: $(q --json vm show a1 | jq -c .agent)"
ip1=$(nic_field a1 0 ip)
qq vm start a1 >/dev/null
qq vm start b1 >/dev/null
# The host end: a socket in a directory only root enters, passed by fd.
[ "$(stat -c '%U %a' "$STATE/agent")" = "root 700" ] ||
	fail "agent dir: $(stat -c '%U %a' "$STATE/agent")"
grep -q -- "-chardev socket,id=qga0,fd=" <(tr '\0' ' ' \
    <"/proc/$(vm_pid a1)/cmdline") || fail "a1: no agent chardev by fd"

# --- vm show: the address from the network's DHCP, and the hostname.
wait_console a1 "QDESK IP=eth0 $ip1/24" 120
wait_console a1 "QDESK AGENT UP" 60
t0=$(date +%s)
for i in $(seq 1 300); do
	q --json vm show a1 | jq -e --arg ip "$ip1" \
	    '.agent.connected and (.agent.ips | index($ip)) != null' \
	    >/dev/null && break
	sleep 0.2
done
agent=$(q --json vm show a1 | jq -c .agent)
jq -e --arg ip "$ip1" '.connected and (.ips | index($ip)) != null and
    .hostname == "qdesk-guest" and (.os | length) > 0' <<<"$agent" \
    >/dev/null || fail "a1: agent: $agent"
log "a1: agent $agent, $(($(date +%s) - t0)) s after the agent came up"
q vm show a1 | grep -q "hostname: *qdesk-guest" ||
	fail "a1: human vm show: $(q vm show a1)"
grep -q "a1: guest agent connected" "$QMPD_LOG" ||
	fail "a1: no 'guest agent connected' in the log"

# --- qmpd killed: the next one connects to the same port again.
kill9_qmpd
start_qmpd
for i in $(seq 1 300); do
	[ "$(vm_field a1 agent.connected)" = true ] && break
	sleep 0.2
done
[ "$(vm_field a1 agent.connected)" = true ] ||
	fail "a1: agent not back after a qmpd restart"
[ "$(vm_field a1 agent.hostname)" = qdesk-guest ] ||
	fail "a1: hostname not asked again after a qmpd restart"
log "a1: agent found again after qmpd kill -9"

# --- a live snapshot, frozen and thawed around the switch.
guest_ready a1
guest_sh a1 "mkdir -p /mnt/d && mount /dev/vda /mnt/d" ||
	fail "a1: cannot mount its disk"
out=$(qq --json vm snapshot a1 s1)
jq -e '.live and .fsfreeze and .note == null' <<<"$out" >/dev/null ||
	fail "a1: live snapshot: $out"
wait_console a1 "QDESK FSFREEZE freeze" 10
wait_console a1 "QDESK FSFREEZE thaw" 20
grep -q "a1: guest agent froze [1-9][0-9]* filesystems" "$QMPD_LOG" ||
	fail "a1: froze nothing: $(grep 'a1: guest agent' "$QMPD_LOG")"
for i in $(seq 1 100); do
	grep -q "a1: guest agent thawed" "$QMPD_LOG" && break
	sleep 0.1
done
grep -q "a1: guest agent thawed [1-9]" "$QMPD_LOG" ||
	fail "a1: not thawed: $(grep 'a1: guest agent' "$QMPD_LOG")"
# Thawed for real: the disk takes writes again.
guest_sh a1 "echo after > /mnt/d/after && sync" 20 ||
	fail "a1: disk not writable after the snapshot"
log "a1: live snapshot frozen and thawed"

# --- qmpd dies between freeze and thaw: the next qmpd thaws the guest.
# The guest's hook is made to take 4 s before the freeze, so qmpd can be
# killed with the freeze under way (after the hook's console line); the
# disk stays mounted (an agent with nothing to freeze stays thawed).
guest_sh a1 "cp /etc/qemu/fsfreeze-hook /tmp/hook && { echo '#!/bin/sh'; \
echo '/tmp/hook \"\$@\" || exit'; echo '[ \"\$1\" != freeze ] || sleep 4'; } \
>/etc/qemu/fsfreeze-hook && chmod 755 /etc/qemu/fsfreeze-hook" ||
	fail "a1: cannot slow its fsfreeze hook"
q vm snapshot a1 s2 >"$T/s2.out" 2>&1 &
snap_pid=$!
for i in $(seq 1 100); do
	[ "$(grep -ac "QDESK FSFREEZE freeze" "$STATE/vms/a1/serial.log")" -ge 2 ] &&
		break
	sleep 0.1
done
[ "$(grep -ac "QDESK FSFREEZE freeze" "$STATE/vms/a1/serial.log")" -ge 2 ] ||
	fail "a1: the second freeze did not start"
kill9_qmpd
wait "$snap_pid" && fail "a1: snapshot s2 answered though qmpd was killed"
sleep 5		# the freeze completes with no qmpd to thaw it
n0=$(wc -l <"$QMPD_LOG")
start_qmpd
for i in $(seq 1 300); do
	tail -n +$((n0 + 1)) "$QMPD_LOG" | grep -q "a1: guest agent thawed" &&
		break
	sleep 0.2
done
tail -n +$((n0 + 1)) "$QMPD_LOG" |
    grep -q "a1: the guest's filesystems were left frozen" ||
	fail "a1: the new qmpd did not see the frozen guest"
tail -n +$((n0 + 1)) "$QMPD_LOG" | grep -q "a1: guest agent thawed" ||
	fail "a1: the new qmpd did not thaw the guest"
[ "$(grep -ac "QDESK FSFREEZE thaw" "$STATE/vms/a1/serial.log")" -ge 2 ] ||
	fail "a1: left frozen after a qmpd restart"
guest_sh a1 "echo again > /mnt/d/again && sync && umount /mnt/d" 20 ||
	fail "a1: disk not writable after the new qmpd thawed it"
log "a1: frozen when qmpd died, thawed by the next qmpd"

# --- b1: an agent port, no agent. Its guest is up, the port stays quiet.
wait_console b1 "QDESK GUEST READY" 120
sleep 6		# longer than one sync attempt of qmpd (5 s)
[ "$(vm_field b1 agent.connected)" = false ] ||
	fail "b1: agent connected without an agent: $(q --json vm show b1 | jq -c .agent)"
q --json vm snapshot b1 s1 >"$T/b1snap.json" || fail "b1: live snapshot failed"
jq -e '.live and (.fsfreeze | not) and (.note | test("not frozen"))' \
    "$T/b1snap.json" >/dev/null || fail "b1: snapshot: $(cat "$T/b1snap.json")"
qq vm snapshot b1 s2 | grep -q "^note: VM b1 has no guest agent answering" ||
	fail "b1: human snapshot output has no note"
grep -q "b1: live snapshot: VM b1 has no guest agent answering" "$QMPD_LOG" ||
	fail "b1: no note in the log"
qq vm stop b1 --timeout 60 >/dev/null
[ "$(vm_field b1 state)" = stopped ] || fail "b1: not stopped"
[ "$(vm_field b1 reason)" = "guest powered off" ] ||
	fail "b1: stop took the quit path: $(vm_field b1 reason)"
log "b1: no agent: connected=false, snapshot says so, ACPI stop works"

# --- a1 ignores the power button: the agent powers it off.
guest_sh a1 "killall acpid" || fail "a1: cannot kill acpid"
t0=$(date +%s)
qq vm stop a1 --timeout 30 >/dev/null
t1=$(date +%s)
[ "$(vm_field a1 state)" = stopped ] || fail "a1: not stopped"
[ "$(vm_field a1 reason)" = "guest powered off" ] ||
	fail "a1: stop took the quit path: $(vm_field a1 reason)"
grep -q "a1: the guest ignores the power button: guest-shutdown" \
    "$QMPD_LOG" || fail "a1: no agent fallback in the log"
grep -aq "QDESK AGENT SHUTDOWN" "$STATE/vms/a1/serial.log" ||
	fail "a1: the guest did not power off through its agent"
[ $((t1 - t0)) -ge 15 ] || fail "a1: stopped in $((t1 - t0)) s, before the fallback"
[ "$(vm_field a1 agent.connected)" = false ] || fail "a1: agent still connected"
[ ! -e "$STATE/agent/a1.sock" ] || fail "a1: agent socket left behind"
log "a1: ACPI ignored, stopped through the agent in $((t1 - t0)) s"

# --- pool create --agent: every desktop gets the port.
qq pool create pa --template base --size 1 --agent --display none \
    --kernel "$GUESTS/vmlinuz-usb" --initrd "$GUESTS/initrd-desktop.img" \
    --accel tcg >/dev/null
[ "$(vm_field pa-1 agent.connected)" = false ] ||
	fail "pa-1: no agent port: $(q --json vm show pa-1 | jq -c .agent)"
log ok
