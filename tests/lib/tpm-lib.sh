# Shared by the TPM tests (52-tpm, 77-migrate-tpm), sourced after
# tests/integration/lib.sh: raw TPM2 commands for an NV index, in hex, and
# the guest shell line that sends one on /dev/tpm0.
#
# TPM2_NV_DefineSpace, TPM2_NV_Write (a fresh random secret) and
# TPM2_NV_Read of index idx, with password sessions of empty owner and
# index auth. The secret's first byte is always 0x0a, a newline: a
# random one had it 1 run in 32 and the command never reached the TPM
# (see tpm_line); now every run sends one.
idx=01500001
sess=00000009400000090000000000	# authorizationSize 9: TPM_RS_PW, empty
secret=0a$(od -An -N7 -tx1 /dev/urandom | tr -d ' \n')
define=80020000002d0000012a40000001${sess}0000000e${idx}000b0006000600000008
write=80020000002b00000137${idx}${idx}${sess}0008${secret}0000
read=8002000000230000014e${idx}${idx}${sess}00080000
[ "${#define}.${#write}.${#read}" = 90.86.70 ] ||
	fail "test bug: command lengths ${#define} ${#write} ${#read}"

# tpm_line TAG HEX: a guest shell line that sends the command HEX on
# /dev/tpm0 and prints the answer (hex) as "TAG=...".
#
# The command reaches /dev/tpm0 in one write(2), through dd: the kernel
# takes one write as one whole command and refuses a shorter one (EINVAL).
# The shell's builtin printf alone wrote a command that held a 0x0a byte
# in two: its stdout, once used on the serial tty, is line-buffered, so it
# flushed at the newline; both halves were refused, printf said nothing,
# the read got no answer ("TAG=" empty) and the TPM never saw the command.
# (77 then killed the swtpms in its cleanup, and qmpd's log said "killed
# by signal 9" just before the failure was shown: that kill was not it.)
# The tag is typed as TAG\=, so "TAG=" is only in the answer, never at the
# start of a row of the echoed line, wherever the shell wraps it.
tpm_line() {
	local oct='' i
	for ((i = 0; i < ${#2}; i += 2)); do
		oct+=$(printf '\\%03o' "$((16#${2:i:2}))")
	done
	printf '%s\n' "exec 3<>/dev/tpm0; printf '$oct' | dd bs=4096 count=1 iflag=fullblock >&3 2>/dev/null; echo $1\\=\$(dd bs=4096 count=1 <&3 2>/dev/null | od -An -tx1 | tr -d ' \\n'); exec 3<&-"
}
