#!/usr/bin/env bash
# test: lock tcg-heavy  (four TCG guests, two of them UEFI, at once: beside 51 or 52 all three neared the 300 s limit)
# The desktop test guests of scripts/mkguest, booted with bare
# qemu-system-x86_64 under TCG (not through qmpd: they are the fixtures the
# --firmware, --tpm and video work will use, so they are checked on their
# own first).  Four VMs at once:
#   efi     efi.img, OVMF, swtpm (TPM 2.0 on tpm-crb): READY, efivarfs
#           holds the firmware's variables, the TPM is version 2
#   signed  efi-signed.img, OVMF with Secure Boot and Microsoft's keys:
#           READY, and the kernel says Secure Boot is on
#   refused efi.img under the same Secure Boot firmware: the firmware says
#           Access Denied and gives up; no READY
#   video   video.img on std VGA: QDESK VIDEO UP, two screendumps differ
# Every process it starts is ended by PID, pass or fail.
. "$(dirname "$0")/lib.sh"

OVMF=/usr/share/OVMF
for f in "$GUESTS/efi.img" "$GUESTS/efi-signed.img" "$GUESTS/video.img"; do
	[ -f "$f" ] || fail "$f missing: run scripts/mkguest"
done
for f in OVMF_CODE_4M.fd OVMF_VARS_4M.fd OVMF_CODE_4M.secboot.fd OVMF_VARS_4M.ms.fd; do
	[ -f "$OVMF/$f" ] || fail "$OVMF/$f missing: apt-get install ovmf (scripts/setup)"
done
for t in qemu-system-x86_64 swtpm swtpm_setup socat; do
	command -v $t >/dev/null || fail "$t missing: run scripts/setup"
done

PIDS=""
declare -A QEMU_PID START
# Everything started here, by PID; QEMU's exit ends its serial reader.
guests_cleanup() {
	local p
	# QEMUs and their serial readers: each command line names $T.
	# shellcheck disable=SC2086
	kill_ours "$T/" $PIDS
	for p in $PIDS; do
		wait "$p" 2>/dev/null
	done
} 2>/dev/null
# shellcheck disable=SC2034  # lib.sh's cleanup runs it
EXTRA_CLEANUP=guests_cleanup

# vm_boot NAME QEMU-ARGS...: a TCG VM whose serial line is a pair of FIFOs
# (NAME.ser.in for typing, NAME.ser.out drained into NAME.log at once, so
# the guest's console never stalls) and whose QMP socket is NAME.qmp.
vm_boot() {
	local name=$1
	shift
	mkfifo "$T/$name.ser.in" "$T/$name.ser.out"
	START[$name]=$(date +%s.%N)
	qemu-system-x86_64 -accel tcg -m 512 -nodefaults -no-user-config \
	    -display none -chardev "pipe,id=ser,path=$T/$name.ser" \
	    -serial chardev:ser -qmp "unix:$T/$name.qmp,server=on,wait=off" \
	    "$@" >"$T/$name.qemu.log" 2>&1 &
	QEMU_PID[$name]=$!
	PIDS="$PIDS $!"
	cat "$T/$name.ser.out" >"$T/$name.log" &
	PIDS="$PIDS $!"
}

# vm_kill NAME: end NAME's QEMU (its serial reader ends with it).
vm_kill() {
	kill -9 "${QEMU_PID[$1]}" 2>/dev/null
	wait "${QEMU_PID[$1]}" 2>/dev/null
}

# vm_wait NAME PATTERN TIMEOUT: the pattern appears on NAME's serial line
# (a boot under TCG on a busy machine is slow: the bound is for failures).
vm_wait() {
	local name=$1 pattern=$2 timeout=$3 _
	for _ in $(seq 1 $((timeout * 10))); do
		grep -q -- "$pattern" "$T/$name.log" 2>/dev/null && return 0
		alive "${QEMU_PID[$name]}" ||
			fail "$name: QEMU exited before '$pattern': $(tail -c 300 "$T/$name.qemu.log")"
		sleep 0.1
	done
	fail "$name: '$pattern' not on the serial line after ${timeout}s: $(tail -c 600 "$T/$name.log" | tr -d '\033')"
}

# Seconds since NAME's QEMU started (for the log: boot times).
vm_elapsed() { echo "$(date +%s.%N) ${START[$1]}" | awk '{ printf "%.1f", $1 - $2 }'; }

# vm_type NAME LINE: type a line on NAME's serial shell.
vm_type() { printf '%s\n' "$2" >"$T/$1.ser.in"; }

# vm_shell NAME: the serial shell is up (its prompt after READY), so what
# is typed next reaches it.
vm_shell() {
	vm_wait "$1" "QDESK GUEST READY" 150
	vm_wait "$1" "built-in shell" 30
	vm_wait "$1" "# " 30
}

# Firmware: the code read-only, a private copy of the variables per VM.
pflash() { # NAME CODE VARS
	cp "$OVMF/$3" "$T/$1.vars.fd"
	echo "-drive if=pflash,format=raw,unit=0,readonly=on,file=$OVMF/$2"
	echo "-drive if=pflash,format=raw,unit=1,file=$T/$1.vars.fd"
}
# shellcheck disable=SC2054  # QEMU's option syntax, not array elements
secure=(-machine q35,smm=on -global driver=cfi.pflash01,property=secure,value=on)
# snapshot=on: the guests' images stay as mkguest made them.
disk() { echo "-drive file=$GUESTS/$1,format=raw,if=virtio,snapshot=on"; }

# A TPM 2.0 for the efi VM, made the way issue 11's qmpd will (swtpm_setup,
# then swtpm on a unix socket that QEMU connects to).
mkdir "$T/tpm"
swtpm_setup --tpm2 --tpmstate "$T/tpm" --createek >"$T/swtpm_setup.log" 2>&1 ||
	fail "swtpm_setup: $(tail -n 3 "$T/swtpm_setup.log")"
swtpm socket --tpm2 --tpmstate "dir=$T/tpm" \
    --ctrl "type=unixio,path=$T/tpm/swtpm.sock" >"$T/swtpm.log" 2>&1 &
PIDS="$PIDS $!"
for _ in $(seq 1 50); do
	[ -S "$T/tpm/swtpm.sock" ] && break
	sleep 0.1
done
[ -S "$T/tpm/swtpm.sock" ] || fail "swtpm did not make its socket: $(cat "$T/swtpm.log")"

# shellcheck disable=SC2046  # each helper prints whole arguments
vm_boot efi -machine q35 $(pflash efi OVMF_CODE_4M.fd OVMF_VARS_4M.fd) \
    $(disk efi.img) -chardev "socket,id=tpm,path=$T/tpm/swtpm.sock" \
    -tpmdev emulator,id=tpm,chardev=tpm -device tpm-crb,tpmdev=tpm
# shellcheck disable=SC2046
vm_boot signed "${secure[@]}" \
    $(pflash signed OVMF_CODE_4M.secboot.fd OVMF_VARS_4M.ms.fd) \
    $(disk efi-signed.img)
# shellcheck disable=SC2046
vm_boot refused "${secure[@]}" \
    $(pflash refused OVMF_CODE_4M.secboot.fd OVMF_VARS_4M.ms.fd) \
    $(disk efi.img)
# shellcheck disable=SC2046
vm_boot video -device VGA $(disk video.img)

# The unsigned image under Secure Boot: OVMF refuses to load it, then finds
# nothing else it may start.  From that line on nothing can boot (the
# firmware waits for a key), so the absence of READY is final.
vm_wait refused "Access Denied" 150
vm_wait refused "No bootable option or device was found" 60
grep -q "QDESK GUEST READY" "$T/refused.log" &&
	fail "refused: efi.img booted under Secure Boot"
grep "Access Denied" "$T/refused.log" | tr -d '\r' | sed 's/^/refused: firmware: /' >&2
vm_kill refused

# The video guest: its program runs, and the screen moves.
vm_wait video "QDESK VIDEO UP" 150
log "video: $(grep -a -o 'QDESK VIDEO UP.*' "$T/video.log" | tr -d '\r'), seen $(vm_elapsed video) s after start"
qmp_screendump() { # NAME FILE
	printf '%s\n' '{"execute":"qmp_capabilities"}' \
	    "{\"execute\":\"screendump\",\"arguments\":{\"filename\":\"$2\"}}" |
		socat -t5 - "UNIX-CONNECT:$T/$1.qmp" >"$T/$1.qmp.out" 2>&1
	# Two answers: to qmp_capabilities and to screendump.
	[ "$(grep -c '"return": {}' "$T/$1.qmp.out")" = 2 ] ||
		fail "$1: screendump: $(cat "$T/$1.qmp.out")"
}
qmp_screendump video "$T/video1.ppm"
sleep 1
qmp_screendump video "$T/video2.ppm"
for f in "$T/video1.ppm" "$T/video2.ppm"; do
	[ "$(head -c 15 "$f" | tr '\n' ' ')" = "P6 1024 768 255" ] ||
		fail "video: $f is not a 1024x768 screen: $(head -c 15 "$f" | tr '\n' ' ')"
done
# Natural-image motion changes most of the screen, not a cursor's worth.
changed=$(cmp -l "$T/video1.ppm" "$T/video2.ppm" | wc -l)
[ "$changed" -gt 500000 ] ||
	fail "video: only $changed of 2359296 bytes differ between two screens 1 s apart"
log "video: $changed of 2359296 bytes differ between two screens 1 s apart"
vm_kill video

# efi.img with OVMF and a TPM: UEFI variables through efivarfs, TPM 2.0.
vm_shell efi
log "efi: READY, seen $(vm_elapsed efi) s after start (OVMF, UKI, TPM)"
vm_type efi 'ls /sys/firmware/efi | sed "s/^/EFI-LS:/"'
vm_type efi 'echo "EFI-BOOTVARS=$(ls /sys/firmware/efi/efivars | grep -c ^Boot)"'
vm_type efi 'echo "EFI-TPM=$(cat /sys/class/tpm/tpm0/tpm_version_major)"'
vm_wait efi "EFI-TPM=[0-9]" 30
grep -q "EFI-LS:efivars" "$T/efi.log" ||
	fail "efi: /sys/firmware/efi has no efivars: $(grep -a EFI-LS "$T/efi.log" | tr -d '\r')"
grep -q "EFI-BOOTVARS=[1-9]" "$T/efi.log" ||
	fail "efi: efivarfs shows no Boot#### variables: $(grep -a EFI-BOOTVARS "$T/efi.log" | tr -d '\r')"
grep -q "EFI-TPM=2" "$T/efi.log" ||
	fail "efi: TPM is not version 2: $(grep -a 'EFI-TPM=' "$T/efi.log" | tr -d '\r')"
vm_kill efi

# efi-signed.img under Secure Boot: accepted, and the kernel knows it.
vm_shell signed
log "signed: READY, seen $(vm_elapsed signed) s after start (Secure Boot: shim, GRUB, kernel)"
vm_type signed 'dmesg | grep -o "Secure boot enabled" | sed "s/^/SB:/"'
vm_wait signed "SB:Secure boot enabled" 30

log "PASS"
