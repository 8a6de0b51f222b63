#!/usr/bin/env bash
# test: lock tcg-heavy  (UEFI under TCG takes a whole core for a minute: two at once near the timeout)
# --tpm through qmpd, under TCG: one swtpm per VM, as the VM's user (not
# root), its state in the VM's dir. The guest (efi.img under OVMF) sees a
# TPM 2.0; an NV index it defines and writes with raw TPM2 commands on
# /dev/tpm0 (TPM2_NV_DefineSpace, TPM2_NV_Write, TPM2_NV_Read, password
# sessions with the empty owner and index auth) reads back after stop/start
# and after a qmpd kill -9 and re-attach; another VM's TPM (booted beside
# the first) does not have it; a killed swtpm ends the VM with the reason.
. "$(dirname "$0")/lib.sh"
. "$top/tests/lib/tpm-lib.sh"

{ command -v swtpm && command -v swtpm_setup; } >/dev/null ||
	fail "swtpm missing: apt-get install swtpm swtpm-tools (scripts/setup)"
[ -f "$GUESTS/efi.img" ] || fail "$GUESTS/efi.img missing: scripts/mkguest"

# Type cmd on vm's shell; the value of the first line "TAG=..." it prints.
guest_run() { # VM TAG CMD
	local _
	serial_send "$1" "$3"
	for _ in $(seq 1 300); do
		if grep -a -q "^$2=" "$STATE/vms/$1/serial.log"; then
			grep -a "^$2=" "$STATE/vms/$1/serial.log" | head -n 1 |
			    tr -d '\r' | cut -d= -f2-
			return 0
		fi
		sleep 0.1
	done
	fail "$1: no $2= line on the console: $(tail -c 400 "$STATE/vms/$1/serial.log" | tr -d '\r')"
}

# A TPM2 command (hex) sent on the guest's /dev/tpm0; prints the answer
# (hex) from the guest's TAG= line.
tpm_cmd() { guest_run "$1" "$2" "$(tpm_line "$2" "$3")"; } # VM TAG HEX

# Every swtpm this test's qmpd started, by its pidfile, pass or fail
# (lib.sh's cleanup runs it).
# shellcheck disable=SC2016,SC2034
EXTRA_CLEANUP='for f in "$STATE"/vms/*/swtpm.pid; do
	[ -f "$f" ] || continue
	p=$(cat "$f")
	tr "\0" " " 2>/dev/null <"/proc/$p/cmdline" | grep -q -- "$STATE/vms/" &&
		kill -9 "$p"
done'

start_qmpd

cp "$GUESTS/efi.img" "$T/tpm1.img"
cp "$GUESTS/efi.img" "$T/tpm2.img"
qq vm create tpm1 --accel tcg --memory 256 --machine q35 --firmware uefi \
    --tpm --disk "$T/tpm1.img" --display none >/dev/null
[ "$(vm_field tpm1 tpm)" = true ] || fail "vm show tpm: $(vm_field tpm1 tpm)"

qq vm start tpm1 >/dev/null
t0=$(date +%s)
swpid=$(cat "$STATE/vms/tpm1/swtpm.pid" 2>/dev/null)
for _ in $(seq 1 100); do
	[ -n "$swpid" ] && break
	sleep 0.1
	swpid=$(cat "$STATE/vms/tpm1/swtpm.pid" 2>/dev/null)
done
[ -n "$swpid" ] || fail "no swtpm pidfile: $(cat "$STATE/vms/tpm1/swtpm.log" 2>/dev/null)"
vmuser=$(stat -c %u "$STATE/vms/tpm1")
[ "$vmuser" != 0 ] || fail "the VM's dir is root's"
[ "$(ps -o uid= -p "$swpid" | tr -d " ")" = "$vmuser" ] ||
	fail "swtpm runs as $(ps -o uid= -p "$swpid" | tr -d " "), not $vmuser"
[ "$(ps -o uid= -p "$(vm_pid tpm1)" | tr -d " ")" = "$vmuser" ] || fail "QEMU's user differs"
[ "$(stat -c '%u %a' "$STATE/vms/tpm1/tpm")" = "$vmuser 700" ] ||
	fail "TPM state dir is $(stat -c '%u %a' "$STATE/vms/tpm1/tpm")"
[ "$(stat -c %u "$STATE/vms/tpm1/tpm/tpm2-00.permall")" = "$vmuser" ] ||
	fail "TPM state is not the VM user's"
for s in "$STATE/vms/tpm1"/*swtpm*; do
	[ -S "$s" ] && fail "a swtpm socket file exists: $s"
done

# A second VM with a TPM of its own boots beside the first (two UEFI
# boots under TCG in the time of one); it is read once tpm1 has its index.
qq vm create tpm2 --accel tcg --memory 256 --machine q35 --firmware uefi \
    --tpm --disk "$T/tpm2.img" --display none >/dev/null
qq vm start tpm2 >/dev/null
[ "$(stat -c %u "$STATE/vms/tpm2/tpm")" != "$vmuser" ] ||
	fail "two VMs' TPMs run as one uid"

wait_ready tpm1 1
log "tpm1: READY $(($(date +%s) - t0)) s after start"
# shellcheck disable=SC2016  # expanded by the guest's shell
v=$(guest_run tpm1 TPMVER 'echo TPMVER=$(cat /sys/class/tpm/tpm0/tpm_version_major)')
[ "$v" = 2 ] || fail "guest TPM version: $v"
r=$(tpm_cmd tpm1 DEFINE "$define")
[ "${r:12:8}" = 00000000 ] || fail "NV_DefineSpace answered '$r' (secret $secret)"
r=$(tpm_cmd tpm1 WRITE "$write")
[ "${r:12:8}" = 00000000 ] || fail "NV_Write answered '$r' (secret $secret)"
r=$(tpm_cmd tpm1 READ1 "$read")
case $r in *"$secret"*) ;; *) fail "NV_Read (same boot) answered $r, not $secret" ;; esac

# The second VM's TPM does not have the index tpm1 now holds.
wait_ready tpm2 1
r=$(tpm_cmd tpm2 READX "$read")
case $r in *"$secret"*) fail "another VM's TPM has tpm1's NV index" ;; esac
[ "${r:12:8}" != 00000000 ] || fail "NV_Read on a fresh TPM succeeded: $r"
cmp -s "$STATE/vms/tpm1/tpm/tpm2-00.permall" "$STATE/vms/tpm2/tpm/tpm2-00.permall" &&
	fail "two VMs share a TPM state"
qq vm stop tpm2 --force >/dev/null

# Stop/start: the same state; the old swtpm is gone.
qq vm stop tpm1 --force >/dev/null
for _ in $(seq 1 50); do alive "$swpid" || break; sleep 0.1; done
alive "$swpid" && fail "swtpm $swpid still runs after its VM stopped"
qq vm start tpm1 >/dev/null
wait_ready tpm1 2
r=$(tpm_cmd tpm1 READ2 "$read")
case $r in *"$secret"*) ;; *) fail "NV index lost across stop/start: $r" ;; esac

# kill -9 qmpd: QEMU and swtpm live on, the new qmpd re-attaches to both.
swpid=$(cat "$STATE/vms/tpm1/swtpm.pid")
kill9_qmpd
start_qmpd
[ "$(vm_field tpm1 state)" = running ] || fail "not running after re-attach: $(vm_field tpm1 reason)"
grep -q "tpm1: re-attached to TPM emulator pid $swpid" "$QMPD_LOG" ||
	fail "no re-attach to swtpm $swpid"
r=$(tpm_cmd tpm1 READ3 "$read")
case $r in *"$secret"*) ;; *) fail "NV index lost after re-attach: $r" ;; esac

# The swtpm dies: its VM ends, with the reason (watched after re-attach).
kill -9 "$swpid"
for _ in $(seq 1 100); do
	[ "$(vm_field tpm1 state)" = crashed ] && break
	sleep 0.1
done
[ "$(vm_field tpm1 state)" = crashed ] || fail "VM $(vm_field tpm1 state) after its swtpm died"
reason=$(vm_field tpm1 reason)
case $reason in "TPM emulator exited: "*) ;; *) fail "reason: $reason" ;; esac
log "tpm1 after kill -9 of its swtpm: crashed: $reason"

# Delete takes the TPM state.
qq vm delete tpm2 >/dev/null
[ -e "$STATE/vms/tpm2/tpm" ] && fail "TPM state left after delete"
log ok
