#!/usr/bin/env bash
# test: lock tcg-heavy  (UEFI under TCG takes a whole core for a minute: two at once near the timeout)
# Live migration of a UEFI VM with a TPM (issue 14): `scripts/cluster up
# 2`, efi.img under OVMF (TCG, q35, --tpm), its disk on the shared dir.
# The guest writes a TPM NV index (raw TPM2 commands on /dev/tpm0, as in
# 52) and an EFI variable (efivarfs, as in 51). A migration whose target
# is stopped mid-stream is cancelled by --timeout: the target's QEMU,
# swtpm, TPM state and NVRAM go, and the source's TPM still answers. Then
# `vm migrate` to the other host: exactly one QEMU and one swtpm of the
# VM run, both on the target; the NV index and the variable read back in
# the guest there; the target's NVRAM file is byte for byte the source's
# (QEMU writes the migrated flash chip to it at cont) and its swtpm state
# holds the index (swtpm stores the migrated blobs); nothing of the VM is
# left in the source's state dir.
. "$(dirname "$0")/lib.sh"

[ "$(id -u)" = 0 ] || skip "needs root (network namespaces)"
{ command -v swtpm && command -v swtpm_setup; } >/dev/null ||
	fail "swtpm missing: apt-get install swtpm swtpm-tools (scripts/setup)"
[ -f "$GUESTS/efi.img" ] || fail "$GUESTS/efi.img missing: scripts/mkguest"
[ -f /usr/share/OVMF/OVMF_VARS_4M.fd ] || fail "OVMF missing: apt-get install ovmf (scripts/setup)"
. "$top/tests/lib/cluster-lib.sh"
. "$top/tests/lib/tpm-lib.sh"
EV_PID=
MIG_PID=
STOPPED=
EXTRA_CLEANUP='tpm_cleanup'
# The swtpms of this cluster's VMs, by their pidfiles (a QEMU killed by
# cluster down leaves its swtpm until it sees the closed channel). It
# runs before cluster_test_logs shows the hosts' logs, where qmpd says
# "TPM emulator exited: killed by signal 9" for each: that kill is the
# cleanup's, and the log says so on the line before (two failures were
# read as swtpm killed mid-test, the guest's failed NV_Write its effect).
tpm_cleanup() {
	local f p h st lg
	[ -n "$STOPPED" ] && kill -CONT "$STOPPED" 2>/dev/null
	[ -n "$EV_PID" ] && kill "$EV_PID" 2>/dev/null
	[ -n "$MIG_PID" ] && kill "$MIG_PID" 2>/dev/null
	for h in ${HOSTS:-}; do
		st=${h}_STATE lg=${h}_LOG
		for f in "${!st}"/vms/*/swtpm.pid; do
			[ -f "$f" ] || continue
			p=$(cat "$f")
			tr "\0" " " 2>/dev/null <"/proc/$p/cmdline" |
			    grep -q -- "${!st}/vms/" || continue
			echo "$(date +%T.%3N) test cleanup: kill -9 of swtpm $p" >>"${!lg}"
			kill -9 "$p"
		done
	done
}
cluster_test_up 2 5 5

hserial_send() {
	printf '%s\n' "$3" | socat -t1 - "UNIX-CONNECT:$(state_of "$1")/vms/$2/serial.sock" >/dev/null 2>&1
}
# Type cmd on the guest's shell on host h; the value of its "TAG=" line.
guest_run() { # HOST VM TAG CMD
	local log
	log=$(state_of "$1")/vms/$2/serial.log
	hserial_send "$1" "$2" "$4"
	hwait_console "$1" "$2" "^$3=" 30
	grep -a "^$3=" "$log" | head -n 1 | tr -d '\r' | cut -d= -f2-
}
# A TPM2 command (hex) on the guest's /dev/tpm0; its answer (hex).
tpm_cmd() { guest_run "$1" "$2" "$3" "$(tpm_line "$3" "$4")"; } # HOST VM TAG HEX
# fail, with the guest console's last lines but the typed commands (its
# kernel's and printf's errors: an empty answer is a failed write or read
# of /dev/tpm0) and QEMU's log.
tpm_fail() { # HOST VM MSG
	local d
	d=$(state_of "$1")/vms/$2
	fail "$3 (secret $secret); guest console: $(grep -av 'tpm0;' "$d/serial.log" |
	    tail -n 6 | tr -d '\r' | tr '\n' '|'); QEMU: $(tail -n 3 "$d/qemu.log" 2>/dev/null | tr '\n' '|')"
}
# The swtpms of VM on every host ("h1:PID ..."), by process table.
swtpms_of() {
	local p h st where=
	for p in $(pgrep -x swtpm); do
		for h in $HOSTS; do
			st=${h}_STATE
			tr '\0' ' ' <"/proc/$p/cmdline" 2>/dev/null |
			    grep -q -- "dir=${!st}/vms/$1/tpm" && where="$where $h:$p"
		done
	done
	echo "${where# }"
}
# Until the swtpms of VM are $2 (one SIGTERMed a moment ago may linger).
wait_swtpms() {
	local i
	for i in $(seq 1 100); do
		[ "$(swtpms_of "$1")" = "$2" ] && return 0
		sleep 0.1
	done
	fail "swtpms of $1: '$(swtpms_of "$1")', not '$2'"
}
hexof() { od -An -tx1 "$1" | tr -d ' \n'; }

cluster_wait_up

guid=4e8a9a7c-1f2b-4d3c-9e5f-0a1b2c3d4e5f
var=/sys/firmware/efi/efivars/qdesktest-$guid
word=$(od -An -N3 -tx1 /dev/urandom | tr -d ' \n')

# 1. The desktop on one host: an NV index and an EFI variable written.
cp "$GUESTS/efi.img" "$SHARED/tpmd.img"
hqq h1 vm create tpmd --accel tcg --memory 256 --machine q35 --firmware uefi \
    --tpm --disk "$SHARED/tpmd.img" --display none >/dev/null
hqq h1 vm start tpmd >/dev/null
src=$(runs_on tpmd)
case $src in h1|h2) ;; *) fail "tpmd runs on '$src'" ;; esac
dst=$(other "$src")
S=$(state_of "$src") D=$(state_of "$dst")
t0=$(date +%s)
hwait_console "$src" tpmd "QDESK GUEST READY" 180
sleep 1
log "tpmd: READY on $src $(($(date +%s) - t0)) s after start"
r=$(tpm_cmd "$src" tpmd DEFINE "$define")
[ "${r:12:8}" = 00000000 ] || tpm_fail "$src" tpmd "NV_DefineSpace answered '$r'"
r=$(tpm_cmd "$src" tpmd WRITE "$write")
[ "${r:12:8}" = 00000000 ] || tpm_fail "$src" tpmd "NV_Write answered '$r'"
r=$(guest_run "$src" tpmd EFIW "printf '\\007\\000\\000\\000$word' > $var; echo EFIW=\$?")
[ "$r" = 0 ] || fail "writing an EFI variable failed: $r"
cmp -s "$S/vms/tpmd/nvram.fd" /usr/share/OVMF/OVMF_VARS_4M.fd &&
	fail "the variable did not reach the source's NVRAM file"
cp "$S/vms/tpmd/nvram.fd" "$T/nvram.src"
[[ $(hexof "$S/vms/tpmd/tpm/tpm2-00.permall") == *"$secret"* ]] ||
	fail "test bug: the source's swtpm state does not hold the NV index"
sw_src=$(swtpms_of tpmd)
[ "$sw_src" = "$src:$(cat "$S/vms/tpmd/swtpm.pid")" ] || fail "swtpms before: '$sw_src'"
qemu_src=$(cat "$S/vms/tpmd/qemu.pid")

# 2. The target stopped mid-stream (SIGSTOP once the source says
# "active"): --timeout cancels, the target's half goes, swtpm and all.
: >"$T/events"
hq "$src" events --json --vm tpmd >"$T/events" &
EV_PID=$!
sleep 0.3
hq "$src" --json vm migrate tpmd "$dst" --timeout 5 >"$T/to.out" 2>"$T/to.err" &
MIG_PID=$!
# (vm show as well: the event stream may have subscribed late.)
active() {
	grep -q '"state":"active"' "$T/events" ||
	    [ "$(hq "$src" --json vm show tpmd | jq -r .migration.state)" = active ]
}
for i in $(seq 1 3000); do
	grep -q '"state":"active"' "$T/events" && break
	[ $((i % 20)) = 0 ] && active && break
	sleep 0.01
done
active || fail "never active: $(cat "$T/events" "$T/to.err")"
STOPPED=$(cat "$D/vms/tpmd/qemu.pid")
[ -n "$STOPPED" ] || fail "no target QEMU"
kill -STOP "$STOPPED"
tsw=$(swtpms_of tpmd)
case $tsw in *"$dst:"*) ;; *) fail "no swtpm on the target mid-migration: '$tsw'" ;; esac
[ -d "$D/vms/tpmd/tpm" ] && [ -f "$D/vms/tpmd/nvram.fd" ] ||
	fail "the target has no TPM state dir or NVRAM: $(ls "$D/vms/tpmd" 2>&1)"
[ -f "$D/vms/tpmd/tpm/tpm2-00.permall" ] &&
	[[ $(hexof "$D/vms/tpmd/tpm/tpm2-00.permall") == *"$secret"* ]] &&
	fail "the target's swtpm had the NV index before the stream ended"
wait "$MIG_PID"; rc=$?
MIG_PID=
kill -CONT "$STOPPED" 2>/dev/null
kill "$EV_PID" 2>/dev/null; EV_PID=
[ "$rc" = 1 ] || fail "vm migrate exit $rc with a stalled target: $(cat "$T/to.err")"
grep -q "did not converge within 5 s" "$T/to.err" || fail "no timeout reason: $(cat "$T/to.err")"
log "stalled target: $(cat "$T/to.err")"
for i in $(seq 1 100); do
	[ -e "$D/vms/tpmd" ] || break
	sleep 0.1
done
[ -e "$D/vms/tpmd" ] && fail "the target kept its half: $(ls -R "$D/vms/tpmd")"
alive "$STOPPED" && fail "the target's QEMU $STOPPED is left"
STOPPED=
wait_swtpms tpmd "$sw_src"
[ "$(cat "$S/vms/tpmd/qemu.pid")" = "$qemu_src" ] && alive "$qemu_src" ||
	fail "the source's QEMU changed"
r=$(tpm_cmd "$src" tpmd READ1 "$read")
[[ $r == *"$secret"* ]] || fail "the source's TPM after the failure: $r"
log "failed migration: the target's QEMU, swtpm, TPM state and NVRAM gone; the source's TPM answers"

# 3. The migration: one QEMU and one swtpm, on the target, with the state.
t0=$(date +%s%3N)
out=$(hq "$src" --json vm migrate tpmd "$dst") || fail "migrate $src -> $dst: $out"
t1=$(date +%s%3N)
[ "$(echo "$out" | jq -r .host)" = "$dst" ] || fail "migrate answer: $out"
[ "$(runs_on tpmd)" = "$dst" ] || fail "after: tpmd runs on '$(runs_on tpmd)'"
sw=$dst:$(cat "$D/vms/tpmd/swtpm.pid")
wait_swtpms tpmd "$sw"
log "migrated $src -> $dst in $((t1 - t0)) ms (downtime $(echo "$out" | jq .migration.downtime_ms) ms): QEMU and swtpm $sw"
cmp "$D/vms/tpmd/nvram.fd" "$T/nvram.src" >"$T/cmp" 2>&1 ||
	fail "the target's NVRAM is not the source's: $(cat "$T/cmp")"
vmuser=$(stat -c %u "$D/vms/tpmd")
[ "$(stat -c '%u %a' "$D/vms/tpmd/nvram.fd")" = "$vmuser 600" ] ||
	fail "the target's NVRAM is $(stat -c '%u %a' "$D/vms/tpmd/nvram.fd")"
[ "$(stat -c %u "$D/vms/tpmd/tpm/tpm2-00.permall")" = "$vmuser" ] ||
	fail "the target's TPM state is not its VM user's"
[[ $(hexof "$D/vms/tpmd/tpm/tpm2-00.permall") == *"$secret"* ]] ||
	fail "the target's swtpm state does not hold the migrated NV index"
[ -e "$D/vms/tpmd/swtpm_setup.log" ] && fail "swtpm_setup ran on the target"
r=$(tpm_cmd "$dst" tpmd READ2 "$read")
[[ $r == *"$secret"* ]] || fail "NV_Read on the target answered $r, not $secret"
r=$(guest_run "$dst" tpmd EFIR "echo EFIR=\$(tail -c ${#word} $var)")
[ "$r" = "$word" ] || fail "the EFI variable on the target: '$r', not $word"
[ "$(grep -ac "QDESK GUEST READY" "$D/vms/tpmd/serial.log")" = 0 ] ||
	fail "tpmd booted again on $dst"
log "on $dst: NV index and EFI variable read back, NVRAM file = the source's, TPM state holds the index"

# 4. Nothing of it on the source.
for i in $(seq 1 50); do
	[ -e "$S/vms/tpmd" ] || break
	sleep 0.1
done
[ -e "$S/vms/tpmd" ] && fail "the source kept $(ls -R "$S/vms/tpmd")"
[ "$(hq "$dst" --json vm show tpmd | jq -r '.state + " " + .host')" = "running $dst" ] ||
	fail "vm show on $dst: $(hq "$dst" --json vm show tpmd)"
log ok
