# Shared by the integration tests: each test sources this, gets its own
# qmpd on a private state dir, and drives it only through the qdesk CLI.
# Everything it started is ended by PID on exit, pass or fail.
set -u

top=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
QMPD=$top/build/qmpd/qmpd
QDESK_BIN=$top/build/cli/qdesk
GUESTS=$top/build/guests
TEST_NAME=$(basename "$0" .sh)
. "$top/tests/lib/kill-ours.sh"

# Private state dir; each QEMU (as its VM's own uid) must reach into it.
T=$(mktemp -d "/tmp/qdesk-$TEST_NAME.XXXXXX")
chmod 711 "$T"
STATE=$T/state
QMPD_LOG=$T/qmpd.log
QMPD_PID=
export QDESK_SOCKET=$STATE/qmpd.sock

# Debian's python3 (scripts/setup installs it; the tests' Python needs
# only its standard library) for this test and all it starts, not the
# first python3 on PATH: a pyenv shim there is a chain of bash scripts
# that took 4 s a call at load 30, where /usr/bin/python3 took 0.4 s.
if [ -x /usr/bin/python3 ]; then
	mkdir -p "$T/bin" && ln -sf /usr/bin/python3 "$T/bin/python3" &&
		PATH=$T/bin:$PATH
fi

log() { printf '%s: %s\n' "$TEST_NAME" "$*" >&2; }

# A VM uid range and SPICE port range of this test's own. qmpd gives a
# new VM the lowest uid of its range that no process runs as, and the
# lowest SPICE port nothing listens on, so two qmpds on one range (tests
# run side by side, or another checkout's) can hand out the same uid or
# port before either QEMU runs. A test holds slot N (uids 2000100000 +
# N*1000, 1000 of them, outside qmpd's default range; SPICE ports 10000 +
# N*100, 100 of them, below the ephemeral ports) by a lock on a file
# named after it, for as long as it or anything it started lives; every
# qmpd it starts through $QMPD gets those ranges unless its command line
# names its own. VM_UIDS_FIRST..VM_UIDS_LAST and SPICE_PORTS are the
# slot's; the default uid range is vm_uids_default's (a lock of its own,
# held until exit).
QDESK_LOCKS=/tmp/qdesk-test-locks
mkdir -p "$QDESK_LOCKS" && chmod 1777 "$QDESK_LOCKS" 2>/dev/null
VM_UIDS_FIRST=
for _slot in $(seq 0 199); do
	exec {VM_UIDS_FD}>>"$QDESK_LOCKS/vm-uids-$_slot" || continue
	if flock -n "$VM_UIDS_FD"; then
		VM_UIDS_FIRST=$((2000100000 + _slot * 1000))
		SPICE_PORTS_FIRST=$((10000 + _slot * 100))
		break
	fi
	exec {VM_UIDS_FD}>&-
done
[ -n "$VM_UIDS_FIRST" ] || {
	echo "$TEST_NAME: every VM uid slot in $QDESK_LOCKS is held" >&2
	exit 1
}
VM_UIDS_LAST=$((VM_UIDS_FIRST + 999))
VM_UIDS=$VM_UIDS_FIRST-$VM_UIDS_LAST
SPICE_PORTS_LAST=$((SPICE_PORTS_FIRST + 79))
SPICE_PORTS=$SPICE_PORTS_FIRST-$SPICE_PORTS_LAST
unset _slot

# free_port: a TCP port for a listener of this test's (a broker, a
# relay, --metrics), from the last 20 of its slot's 100: one nothing
# listens on, never handed out twice in this test. Not a port the kernel
# picks (bind to port 0): that one is in the ephemeral range, and between
# our close and the listener's bind any outgoing connection on the
# machine may take it (65-metrics failed so: "Address already in use").
# Browsers refuse some ports outright (net::ERR_UNSAFE_PORT); of the
# slots' 10000-29999 only 10080 is on that list, and slot 0 owns it.
TEST_PORTS_FIRST=$((SPICE_PORTS_FIRST + 80))
BROWSER_UNSAFE_PORTS=" 10080 "
free_port() {
	local n p
	n=$(cat "$T/.port-next" 2>/dev/null) || n=0
	while [ "$n" -lt 20 ]; do
		p=$((TEST_PORTS_FIRST + n))
		n=$((n + 1))
		echo "$n" >"$T/.port-next"
		[[ $BROWSER_UNSAFE_PORTS == *" $p "* ]] && continue
		if python3 -c 'import socket, sys
s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("127.0.0.1", int(sys.argv[1])))' "$p" 2>/dev/null; then
			echo "$p"
			return 0
		fi
	done
	fail "free_port: all 20 of this test's ports ($TEST_PORTS_FIRST-$((TEST_PORTS_FIRST + 19))) are taken"
}

fail() {
	log "FAIL: $*"
	if [ -f "$QMPD_LOG" ]; then
		log "last lines of qmpd.log:"
		tail -n 25 "$QMPD_LOG" >&2
	fi
	exit 1
}

skip() {
	log "SKIP: $*"
	exit 77
}

# Run the CLI; output on stdout, status preserved.
q() { "$QDESK_BIN" "$@"; }

# q, but a failure fails the test with the command and its message.
qq() {
	local out
	if ! out=$("$QDESK_BIN" "$@" 2>&1); then
		fail "qdesk $*: $out"
	fi
	printf '%s\n' "$out"
}

# Expect a specific exit status from the CLI.
q_status() {
	local want=$1 got
	shift
	"$QDESK_BIN" "$@" >"$T/last.out" 2>"$T/last.err"
	got=$?
	[ "$got" = "$want" ] ||
		fail "qdesk $*: exit $got, wanted $want: $(cat "$T/last.err")"
}

# q_refused WANT CLI-ARGS...: exit 1 and one line of error that says WANT.
q_refused() {
	local want=$1
	shift
	q_status 1 "$@"
	[ "$(wc -l <"$T/last.err")" = 1 ] ||
		fail "qdesk $*: not one line: $(cat "$T/last.err")"
	grep -q -- "$want" "$T/last.err" ||
		fail "qdesk $*: wanted '$want', got: $(cat "$T/last.err")"
}

# q_req CMD ARGS-JSON: one raw request as root (admin), for commands the
# CLI does not map; prints the reply line.
q_req() {
	/usr/bin/python3 - "$QDESK_SOCKET" "$1" "$2" <<'EOF'
import json, socket, sys
s = socket.socket(socket.AF_UNIX)
s.connect(sys.argv[1])
f = s.makefile("rw")
f.readline()
f.write(json.dumps({"id": 1, "cmd": sys.argv[2],
    "args": json.loads(sys.argv[3])}) + "\n")
f.flush()
print(f.readline().strip())
EOF
}

# need_tools TOOL...: each is on PATH, or the test fails saying which.
need_tools() {
	local t
	for t in "$@"; do
		command -v "$t" >/dev/null 2>&1 || fail "$t not installed (scripts/setup)"
	done
}

# etcd_drive_need TOOL...: the etcd tests' tools, root (for a network
# namespace) and build/cluster/etcd-drive in DRIVE (QDESK_ETCD_DRIVE runs
# another build of it, e.g. with ASan).
etcd_drive_need() {
	need_tools "$@"
	[ "$(id -u)" = 0 ] || skip "needs root (network namespace)"
	DRIVE=${QDESK_ETCD_DRIVE:-$top/build/cluster/etcd-drive}
	[ -x "$DRIVE" ] || fail "no $DRIVE: build first"
}

# qmpd_uids_wrap BIN: a script that runs BIN with this test's --vm-uids
# and --spice-ports, each unless the command line names one (or, for the
# uids, vm_uids_default was called).
qmpd_uids_wrap() {
	local w
	w=$T/qmpd-uids.$(printf '%s' "$1" | cksum | cut -d' ' -f1)
	cat >"$w" <<EOF
#!/bin/sh
case " \$* " in
*" --spice-ports "*|*" --spice-ports="*) ;;
*) set -- --spice-ports $SPICE_PORTS "\$@" ;;
esac
case " \$* " in
*" --vm-uids "*|*" --vm-uids="*) exec "$1" "\$@" ;;
esac
[ -e "$T/vm-uids-default" ] && exec "$1" "\$@"
exec "$1" --vm-uids $VM_UIDS "\$@"
EOF
	chmod 755 "$w"
	echo "$w"
}
QMPD=$(qmpd_uids_wrap "$QMPD")

# For a test about qmpd's default VM uid range: its qmpds run without
# --vm-uids, and no other test's do meanwhile (waits for the lock).
vm_uids_default() {
	exec {VM_UIDS_DEFAULT_FD}>>"$QDESK_LOCKS/vm-uids-default" &&
	    flock "$VM_UIDS_DEFAULT_FD" || fail "cannot lock $QDESK_LOCKS/vm-uids-default"
	touch "$T/vm-uids-default"
}

# test_lock NAME: wait until no other test of this checkout holds NAME
# (e.g. the one scripts/cluster of build/cluster), then hold it until
# exit. scripts/test already runs such tests one at a time (see its lock
# table); this makes it true for any two runs.
test_lock() {
	local fd
	exec {fd}>>"$top/build/.test-lock-$1" && flock "$fd" ||
		fail "cannot lock build/.test-lock-$1"
}

start_qmpd() {
	"$QMPD" -f -v --state-dir "$STATE" "$@" >>"$QMPD_LOG" 2>&1 &
	QMPD_PID=$!
	# Up to 30 s while it lives: a 5 s bound failed 39 at load 33 with
	# qmpd still starting (its log's last line "0 VM definitions loaded").
	local end=$((SECONDS + 30))
	while [ $SECONDS -lt $end ]; do
		[ -S "$STATE/qmpd.sock" ] && q status >/dev/null 2>&1 && return 0
		kill -0 "$QMPD_PID" 2>/dev/null || fail "qmpd exited at start"
		sleep 0.05
	done
	fail "qmpd did not answer within 30 s of its start"
}

# SIGKILL qmpd: the VMs must survive it.
kill9_qmpd() {
	[ -n "$QMPD_PID" ] || return 0
	kill -9 "$QMPD_PID" 2>/dev/null
	wait "$QMPD_PID" 2>/dev/null
	QMPD_PID=
}

stop_qmpd() {
	[ -n "$QMPD_PID" ] || return 0
	kill -TERM "$QMPD_PID" 2>/dev/null
	wait "$QMPD_PID" 2>/dev/null
	QMPD_PID=
}

# Is pid a live process? A zombie waiting for its reaper is not.
alive() {
	local st
	st=$(awk '{print $3}' "/proc/$1/stat" 2>/dev/null) || return 1
	[ -n "$st" ] && [ "$st" != Z ] && [ "$st" != X ]
}

# The pid of a VM's QEMU from qmpd's own pidfile.
vm_pid() { cat "$STATE/vms/$1/qemu.pid" 2>/dev/null; }

# Field of `qdesk --json vm show`.
vm_field() { q --json vm show "$1" | jq -r ".$2"; }

# Wait until the serial log of VM shows a pattern.
wait_console() {
	local vm=$1 pattern=$2 timeout=${3:-30} i
	for i in $(seq 1 $((timeout * 10))); do
		grep -q "$pattern" "$STATE/vms/$vm/serial.log" 2>/dev/null &&
			return 0
		sleep 0.1
	done
	fail "$vm: '$pattern' not on the console after ${timeout}s: $(tail -c 400 "$STATE/vms/$vm/serial.log" 2>/dev/null)"
}

# Type a line into the VM's serial console. socat's -t1 is no fixed
# second: QEMU's chardev closes the connection once it has read the line
# and our half-close, and socat then ends (0.13 s a line at load 18).
serial_send() {
	local vm=$1 line=$2
	printf '%s\n' "$line" | socat -t1 - "UNIX-CONNECT:$STATE/vms/$vm/serial.sock" >/dev/null 2>&1
}

# The number of times pattern $2 is on VM $1's console (0 before its log exists).
console_count() {
	local f="$STATE/vms/$1/serial.log"
	[ -e "$f" ] || { echo 0; return 1; }
	grep -a -c "$2" "$f"
}

# The tiny guest's shell prompt on its serial console ("qdesk-guest:/# ",
# PS1 of scripts/mkguest): the shell has the tty and reads what is typed.
GUEST_PROMPT='qdesk-guest:[^ ]*# '

# Is the guest shell's prompt on VM $1's console after its $2-th READY?
prompt_after() {
	awk -v n="$2" -v p="$GUEST_PROMPT" '/QDESK GUEST READY/ { c++ }
	    c >= n && $0 ~ p { f = 1; exit } END { exit !f }' \
	    "$STATE/vms/$1/serial.log" 2>/dev/null
}

# Wait until the n-th "QDESK GUEST READY" of VM, and its shell prompt
# after it (a guest that reboots prints one READY per boot).
wait_ready() { # VM N
	local _
	for _ in $(seq 1 1800); do
		prompt_after "$1" "$2" && return 0
		sleep 0.1
	done
	[ "$(console_count "$1" "QDESK GUEST READY")" -ge "$2" ] ||
		fail "$1: READY #$2 not on the console after 180 s: $(tail -c 400 "$STATE/vms/$1/serial.log" | tr -d '\r')"
	fail "$1: READY #$2 but no shell prompt after it within 180 s: $(tail -c 400 "$STATE/vms/$1/serial.log" | tr -d '\r')"
}

# SIGKILL every QEMU of state dir $1, by its own pidfile.
kill_qemus() {
	local f
	for f in "$1"/vms/*/qemu.pid; do
		[ -f "$f" ] && kill_ours "$1/vms/" "$(cat "$f")"
	done
	return 0
}

cleanup() {
	local status=$?
	stop_qmpd
	# Every QEMU this test's qmpd started.
	kill_qemus "$STATE"
	[ -n "${EXTRA_CLEANUP:-}" ] && eval "$EXTRA_CLEANUP"
	if [ $status -eq 0 ] || [ -z "${QDESK_KEEP:-}" ]; then
		rm -rf "$T"
	else
		log "kept $T"
	fi
	exit $status
}
trap cleanup EXIT
trap 'exit 130' INT TERM
# A command or function that does not exist (a typo, a helper renamed)
# only printed "command not found" and the test went on, perhaps to
# pass: it fails the test instead. Bash runs this handler in a subshell,
# so it signals the test's own shell (USR1), whose trap fails it.
command_not_found_handle() {
	echo "$1" >>"$T/command-not-found"
	echo "$TEST_NAME: $1: no such command or function" >&2
	kill -USR1 $$
	return 127
}
trap 'fail "no such command or function: $(sort -u "$T/command-not-found" | tr "\n" " ")"' USR1

# A private copy of the tiny boot-sector guest.
tiny_disk() {
	cp "$GUESTS/boot.img" "$T/$1.img"
	echo "$T/$1.img"
}
