#!/usr/bin/env bash
# test: lock tcg-heavy  (UEFI under TCG takes a whole core for a minute: two at once near the timeout)
# --firmware through qmpd, under TCG: a UEFI VM boots efi.img (from the
# image store) to READY; an EFI variable the guest writes (efivarfs) is in
# its NVRAM after stop/start and after vm reset-disk, and gone after vm
# reset-nvram; the NVRAM is a file of the VM's user that QEMU gets as an
# fd. uefi-secure (Secure Boot, Microsoft's keys) boots the signed chain of
# efi-signed.img and refuses the unsigned efi.img. Bad combinations get a
# one-line error at create.
. "$(dirname "$0")/lib.sh"

for f in OVMF_CODE_4M.fd OVMF_VARS_4M.fd OVMF_CODE_4M.secboot.fd OVMF_VARS_4M.ms.fd; do
	[ -f "/usr/share/OVMF/$f" ] || fail "/usr/share/OVMF/$f missing: apt-get install ovmf (scripts/setup)"
done
for g in efi.img efi-signed.img; do
	[ -f "$GUESTS/$g" ] || fail "$GUESTS/$g missing: scripts/mkguest"
done

# Type cmd on vm's shell and wait for a line starting with tag.
guest_run() { # VM TAG CMD
	local _
	serial_send "$1" "$3"
	for _ in $(seq 1 300); do
		grep -a -q "^$2" "$STATE/vms/$1/serial.log" && return 0
		sleep 0.1
	done
	fail "$1: no $2 line on the console: $(tail -c 400 "$STATE/vms/$1/serial.log" | tr -d '\r')"
}

start_qmpd

# Bad input: one line, non-zero.
q_status 1 vm create bad --firmware efi --disk "$GUESTS/efi.img"
grep -q "invalid firmware 'efi'" "$T/last.err" || fail "bad firmware: $(cat "$T/last.err")"
q_status 1 vm create bad --firmware uefi-secure --machine pc --disk "$GUESTS/efi.img"
grep -q "uefi-secure needs machine q35" "$T/last.err" ||
	fail "uefi-secure on pc: $(cat "$T/last.err")"
[ "$(wc -l <"$T/last.err")" = 1 ] || fail "not one line: $(cat "$T/last.err")"
q vm show bad >/dev/null 2>&1 && fail "a refused VM exists"

# A BIOS VM has no NVRAM to reset.
qq vm create biosvm --kernel "$GUESTS/vmlinuz" --display none >/dev/null
[ "$(vm_field biosvm firmware)" = bios ] || fail "default firmware: $(vm_field biosvm firmware)"
q_status 1 vm reset-nvram biosvm
grep -q "has no NVRAM" "$T/last.err" || fail "reset-nvram on bios: $(cat "$T/last.err")"

# UEFI from the image store: its own NVRAM, owned by the VM's user.
qq image import efi "$GUESTS/efi.img" --format raw >/dev/null
qq vm create uefi --accel tcg --memory 256 --from efi --firmware uefi \
    --display none >/dev/null
[ "$(vm_field uefi firmware)" = uefi ] || fail "firmware: $(vm_field uefi firmware)"
nv=$STATE/vms/uefi/nvram.fd
[ -f "$nv" ] || fail "no NVRAM file at create"
cmp -s "$nv" /usr/share/OVMF/OVMF_VARS_4M.fd || fail "NVRAM is not the template at create"
vmuser=$(stat -c %u "$STATE/vms/uefi")
[ "$(stat -c '%u %a' "$nv")" = "$vmuser 600" ] ||
	fail "NVRAM is $(stat -c '%u %a' "$nv"), wanted $vmuser 600"
[ "$vmuser" != 0 ] || fail "the VM's dir belongs to root"

qq vm start uefi >/dev/null
t0=$(date +%s)
wait_ready uefi 1
log "uefi: READY $(($(date +%s) - t0)) s after start"
pid=$(vm_pid uefi)
tr '\0' '\n' <"/proc/$pid/cmdline" | grep -q "pflash1=fw-vars" ||
	fail "QEMU has no NVRAM flash: $(tr '\0' ' ' <"/proc/$pid/cmdline")"
tr '\0' '\n' <"/proc/$pid/cmdline" | grep -q "nvram.fd" &&
	fail "QEMU got the NVRAM by path"
held=0
for fd in /proc/"$pid"/fd/*; do
	[ "$(readlink "$fd")" = "$nv" ] && held=1
done
[ $held = 1 ] || fail "QEMU does not hold the NVRAM"

guid=4e8a9a7c-1f2b-4d3c-9e5f-0a1b2c3d4e5f
var=/sys/firmware/efi/efivars/qdesktest-$guid
guest_run uefi "EFIWRITE=" "printf '\\007\\000\\000\\000hi' > $var; echo EFIWRITE=\$?"
grep -a -q "^EFIWRITE=0" "$STATE/vms/uefi/serial.log" ||
	fail "writing an EFI variable failed: $(grep -a EFIWRITE= "$STATE/vms/uefi/serial.log" | tr -d '\r')"
qq vm stop uefi --force >/dev/null
cmp -s "$nv" /usr/share/OVMF/OVMF_VARS_4M.fd && fail "the variable did not reach the NVRAM file"

# Kept across a restart.
qq vm start uefi >/dev/null
wait_ready uefi 2
guest_run uefi "EFIVAR1=" "echo EFIVAR1=\$(tail -c 2 $var 2>&1)"
grep -a -q "^EFIVAR1=hi" "$STATE/vms/uefi/serial.log" ||
	fail "variable lost across stop/start: $(grep -a EFIVAR1= "$STATE/vms/uefi/serial.log" | tr -d '\r')"
q_status 1 vm reset-nvram uefi
grep -q "stop it first" "$T/last.err" || fail "reset-nvram while running: $(cat "$T/last.err")"
qq vm stop uefi --force >/dev/null

# Kept across vm reset-disk, gone after vm reset-nvram.
qq vm reset-disk uefi >/dev/null
cmp -s "$nv" /usr/share/OVMF/OVMF_VARS_4M.fd && fail "reset-disk reset the NVRAM"
out=$(qq vm reset-nvram uefi)
[ "$out" = "uefi: NVRAM reset" ] || fail "reset-nvram said: $out"
cmp -s "$nv" /usr/share/OVMF/OVMF_VARS_4M.fd || fail "NVRAM is not the template after reset-nvram"
[ "$(stat -c '%u %a' "$nv")" = "$vmuser 600" ] || fail "reset NVRAM is $(stat -c '%u %a' "$nv")"
qq vm start uefi >/dev/null
wait_ready uefi 3
guest_run uefi "EFIVAR2=" "echo EFIVAR2=\$(ls $var 2>/dev/null | wc -l)"
grep -a -q "^EFIVAR2=0" "$STATE/vms/uefi/serial.log" ||
	fail "variable still there after reset-nvram: $(grep -a EFIVAR2= "$STATE/vms/uefi/serial.log" | tr -d '\r')"
qq vm stop uefi --force >/dev/null

# A planted link instead of the NVRAM is refused, by name.
mv "$nv" "$T/nvram.saved"
ln -s /etc/shadow "$nv"
q_status 1 vm start uefi
grep -q "NVRAM of uefi" "$T/last.err" || fail "a link as NVRAM: $(cat "$T/last.err")"
rm "$nv"
mv "$T/nvram.saved" "$nv"

# Secure Boot: the signed chain boots, the unsigned image is refused.
cp "$GUESTS/efi-signed.img" "$T/signed.img"
cp "$GUESTS/efi.img" "$T/unsigned.img"
qq vm create signed --accel tcg --memory 512 --machine q35 --disk "$T/signed.img" \
    --firmware uefi-secure --display none >/dev/null
[ "$(vm_field signed machine)" = q35 ] || fail "uefi-secure machine: $(vm_field signed machine)"
qq vm create refused --accel tcg --memory 512 --machine q35 --disk "$T/unsigned.img" \
    --firmware uefi-secure --display none >/dev/null
cmp -s "$STATE/vms/signed/nvram.fd" /usr/share/OVMF/OVMF_VARS_4M.ms.fd ||
	fail "Secure Boot NVRAM is not the template with Microsoft's keys"
# Both at once: the refusal is OVMF's alone (seconds), so it need not
# wait for the signed chain's whole boot.
qq vm start signed >/dev/null
t0=$(date +%s)
qq vm start refused >/dev/null
wait_ready signed 1
log "signed: READY $(($(date +%s) - t0)) s after start (Secure Boot)"
guest_run signed "SB:" 'dmesg | grep -o "Secure boot enabled" | sed "s/^/SB:/"'
qq vm stop signed --force >/dev/null

for _ in $(seq 1 1500); do
	grep -a -q "Access Denied" "$STATE/vms/refused/serial.log" 2>/dev/null && break
	sleep 0.1
done
grep -a -q "Access Denied" "$STATE/vms/refused/serial.log" ||
	fail "refused: no Access Denied: $(tail -c 400 "$STATE/vms/refused/serial.log" | tr -d '\r')"
for _ in $(seq 1 600); do
	grep -a -q "No bootable option" "$STATE/vms/refused/serial.log" && break
	sleep 0.1
done
grep -a -q "QDESK GUEST READY" "$STATE/vms/refused/serial.log" &&
	fail "refused: the unsigned efi.img booted under Secure Boot"
grep -a "Access Denied" "$STATE/vms/refused/serial.log" | head -n 1 | tr -d '\r' |
	sed 's/^/refused: firmware: /' >&2
qq vm stop refused --force >/dev/null

# Delete takes the NVRAM with it.
qq vm delete signed >/dev/null
[ -e "$STATE/vms/signed/nvram.fd" ] && fail "NVRAM left after delete"
log ok
