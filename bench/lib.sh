# Shared by the qdesk benchmarks that run their own qmpd (bench/*.sh):
# the binaries of a build, a private scratch dir and one qmpd at a time on
# a state dir in it. On exit, pass or fail, qmpd and every QEMU of its
# state dir are ended by pid and the scratch dir is removed (kept with
# KEEP=1 in the environment).
#
#   BUILD=...   # the meson build dir
#   . "$top/bench/lib.sh" NAME
#
# sets QMPD, QDESK and T, defines die and note (messages as "NAME: ..."),
# and checks for root and a build.

BENCH_NAME=$1
QMPD=$BUILD/qmpd/qmpd
QDESK=$BUILD/cli/qdesk
QMPD_PID=
STATE=

die() { echo "$BENCH_NAME: $*" >&2; exit 1; }
note() { echo "$BENCH_NAME: $*" >&2; }

[ "$(id -u)" = 0 ] || die "run as root (qmpd needs it)"
[ -x "$QMPD" ] && [ -x "$QDESK" ] || die "build first: ninja -C $BUILD"

T=$(mktemp -d "/tmp/qdesk-$BENCH_NAME.XXXXXX") || exit 1
chmod 711 "$T"

# Start qmpd on state dir $1 (further arguments go to qmpd), logging to
# $T/qmpd.log, and return once it answers.
bench_qmpd_start() {
	local i

	STATE=$1
	shift
	export QDESK_SOCKET=$STATE/qmpd.sock
	"$QMPD" -f --state-dir "$STATE" "$@" >>"$T/qmpd.log" 2>&1 &
	QMPD_PID=$!
	for i in $(seq 1 100); do
		"$QDESK" status >/dev/null 2>&1 && return 0
		kill -0 "$QMPD_PID" 2>/dev/null ||
			die "qmpd exited: $(tail -n 5 "$T/qmpd.log")"
		sleep 0.05
	done
	die "qmpd does not answer on $QDESK_SOCKET"
}

# Stop qmpd, then every QEMU of its state dir, by its pidfile.
bench_qmpd_stop() {
	if [ -n "$QMPD_PID" ]; then
		kill -TERM "$QMPD_PID" 2>/dev/null
		wait "$QMPD_PID" 2>/dev/null
		QMPD_PID=
	fi
	[ -n "$STATE" ] || return 0
	bench_kill_qemus "$STATE"
}

# SIGKILL every QEMU of state dir $1, by its pidfile.
bench_kill_qemus() {
	local f pid

	for f in "$1"/vms/*/qemu.pid; do
		[ -f "$f" ] || continue
		pid=$(cat "$f")
		tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null |
		    grep -q -- "$1/vms/" && kill -9 "$pid" 2>/dev/null
	done
	return 0
}

bench_cleanup() {
	local status=$?

	trap - EXIT INT TERM
	bench_qmpd_stop
	[ -n "${KEEP:-}" ] || rm -rf "$T"
	exit $status
}
trap bench_cleanup EXIT
trap 'exit 130' INT TERM
