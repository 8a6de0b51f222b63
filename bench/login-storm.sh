#!/usr/bin/env bash
# Login storm: 1,000 user.auth requests over 4 broker-like connections (2
# in flight on each, as qdesk-broker keeps), while an admin asks vm.list
# every 10 ms. Figures: the admin's vm.list p50 / p99 / max during the
# storm against the same without it, and logins per second with qmpd on
# 1 core and on all cores (taskset), each on a fresh qmpd with 20 VMs
# defined. A control row gives the admin's figures while the same CPU
# load (one yescrypt loop per core) runs outside qmpd. Not a test: it
# asserts nothing, it prints a table.
#
# usage: bench/login-storm.sh [--logins N] [--conns N] [--window N] [BUILD]
#
# Needs root. Private state dir under /tmp, its own qmpd, ended by pid on
# exit. Figures in bench/README.md ("Login storm").
set -u

top=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
N=1000
CONNS=4
WINDOW=2
BUILD=
while [ $# -gt 0 ]; do
	case $1 in
	--logins)	N=$2; shift ;;
	--conns)	CONNS=$2; shift ;;
	--window)	WINDOW=$2; shift ;;
	-h|--help)	sed -n '2,15p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
	-*)		echo "login-storm: unknown option $1" >&2; exit 2 ;;
	*)		BUILD=$1 ;;
	esac
	shift
done
BUILD=$(cd "${BUILD:-$top/build}" && pwd) || exit 2
. "$top/bench/lib.sh" login-storm
STORM=$BUILD/bench/login-storm
[ -x "$STORM" ] || die "build first: ninja -C $BUILD"

# start CPUS: a fresh qmpd on CPUS (its password workers, made at the
# first login, inherit that and start one per CPU), a user, 20 VMs.
start() {
	local i

	bench_qmpd_start "$T/state-$RANDOM"
	taskset -a -p -c "$1" "$QMPD_PID" >/dev/null || die "taskset $1"
	echo "storm pass 1" | "$QDESK" user add storm --password-stdin \
	    >/dev/null || die "user add"
	# Each VM a (never started) file of its own: qmpd refuses two VMs on one.
	for i in $(seq 1 20); do
		: >"$T/disk$i.img"
		"$QDESK" vm create "d$i" --disk "$T/disk$i.img" --display none \
		    --accel tcg >/dev/null || die "vm create d$i"
	done
}

# field NAME: the value after NAME in $out.
field() { awk -v k="$1" '{ for (i = 1; i < NF; i++) if ($i == k) print $(i + 1) }' <<<"$out"; }

ms() { awk -v u="$1" 'BEGIN { printf "%.2f", u / 1000 }'; }

all=0-$(($(nproc) - 1))
start "$all"
out=$("$STORM" -s "$QDESK_SOCKET" -u storm -p "storm pass 1" -n 0 -d 5) ||
	die "baseline failed: $out"
b50=$(field p50_us) b99=$(field p99_us) bmax=$(field max_us) bn=$(field probes)
# The control: the storm's CPU load (one yescrypt loop per core, nice 10)
# in another process, qmpd idle: what the machine alone does to the tail.
out=$("$STORM" -s "$QDESK_SOCKET" -u storm -p "storm pass 1" -n 0 -d 5 \
    -H "$(nproc)") || die "control failed: $out"
c50=$(field p50_us) c99=$(field p99_us) cmax=$(field max_us) cn=$(field probes)
out=$("$STORM" -s "$QDESK_SOCKET" -u storm -p "storm pass 1" -n "$N" \
    -c "$CONNS" -w "$WINDOW") || die "storm failed: $out"
s50=$(field p50_us) s99=$(field p99_us) smax=$(field max_us) sn=$(field probes)
rate_all=$(field per_s) secs_all=$(field secs) busy=$(field busy)
bench_qmpd_stop

start 0
out=$("$STORM" -s "$QDESK_SOCKET" -u storm -p "storm pass 1" -n "$N" \
    -c "$CONNS" -w "$WINDOW") || die "storm on 1 core failed: $out"
rate_one=$(field per_s) secs_one=$(field secs)
bench_qmpd_stop

echo "admin vm.list every 10 ms (20 VMs), ms:"
echo "| | probes | p50 | p99 | max |"
echo "|---|---|---|---|---|"
echo "| no storm | $bn | $(ms "$b50") | $(ms "$b99") | $(ms "$bmax") |"
echo "| no storm, $(nproc) yescrypt loops in another process | $cn | $(ms "$c50") | $(ms "$c99") | $(ms "$cmax") |"
echo "| $N logins over $CONNS connections | $sn | $(ms "$s50") | $(ms "$s99") | $(ms "$smax") |"
echo
echo "logins ($N, $CONNS connections, $WINDOW in flight each; $busy answered Busy):"
echo "| qmpd on | seconds | logins/s |"
echo "|---|---|---|"
echo "| 1 core | $secs_one | $rate_one |"
echo "| $(nproc) cores | $secs_all | $rate_all |"
