#!/usr/bin/env bash
# Issue 4's network benchmark: TAP create + enslave + up per NIC through
# netctl against `ip tuntap add` + `ip link set ... master` subprocesses,
# and the time to attach 100 NICs, medians and their ratio in one run.
# Runs in a network namespace of its own (removed on exit), never on the
# host's interfaces.  bench/meson.build is not ours: net-taps.c is built
# here against the build dir's netctl and common libraries.
#
# usage: bench/net-taps.sh [-n NICS] [-r ROUNDS] [BUILD]   (as root)
set -u
top=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
args=()
BUILD=
while [ $# -gt 0 ]; do
	case $1 in
	-n|-r)	args+=("$1" "$2"); shift ;;
	-*)	echo "usage: bench/net-taps.sh [-n NICS] [-r ROUNDS] [BUILD]" >&2
		exit 2 ;;
	*)	BUILD=$1 ;;
	esac
	shift
done
BUILD=$(cd "${BUILD:-$top/build}" && pwd) || exit 2
[ "$(id -u)" = 0 ] || { echo "bench/net-taps.sh: run as root" >&2; exit 1; }
for f in netctl/libnetctl.a common/libcommon.a; do
	[ -f "$BUILD/$f" ] || { echo "no $BUILD/$f: build first" >&2; exit 1; }
done

tmp=$(mktemp -d /tmp/qdesk-net-bench.XXXXXX) || exit 1
ns=qdt-net-bench-$$
cleanup() {
	ip netns del "$ns" 2>/dev/null
	rm -rf "$tmp"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

cc -O2 -D_GNU_SOURCE -I"$top/netctl" -I"$top/common" -I"$top/common/compat" \
    -o "$tmp/net-taps" "$top/bench/net-taps.c" "$BUILD/netctl/libnetctl.a" \
    "$BUILD/common/libcommon.a" \
    $(pkg-config --cflags --libs libnl-route-3.0 libnl-3.0 jansson lmdb) ||
	exit 1
ip netns add "$ns" || exit 1
echo "bench: $(nproc) cores, $(uname -r), $(ip -V)" >&2
ip netns exec "$ns" "$tmp/net-taps" "${args[@]}"
