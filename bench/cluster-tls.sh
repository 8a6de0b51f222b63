#!/usr/bin/env bash
# The cluster's mutual-TLS listener (qmpd --listen) against the admin
# unix socket, on one machine, medians over N calls:
#
#  1. `qdesk status` as a process per call: over the unix socket, and with
#     --host --cert (a TCP connection and a TLS handshake with client
#     certificate, RSA 2048, each time).
#  2. Request round trips on one kept connection (server.status, one after
#     another): unix socket against TLS.
#
# usage: bench/cluster-tls.sh [--calls N] [BUILD]
#
# Needs root (qmpd, a network namespace of its own with a one-member etcd
# on its loopback). Prints a markdown table; figures go in
# cluster/README.md.
set -u

top=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
CALLS=200
BUILD=
while [ $# -gt 0 ]; do
	case $1 in
	--calls)	CALLS=$2; shift ;;
	-h|--help)	sed -n '2,15p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
	-*)		echo "cluster-tls: unknown option $1" >&2; exit 2 ;;
	*)		BUILD=$1 ;;
	esac
	shift
done
BUILD=$(cd "${BUILD:-$top/build}" && pwd) || exit 2
. "$top/bench/lib.sh" cluster-tls
command -v etcd >/dev/null || die "no etcd (scripts/setup)"

# The test's namespace, etcd and cluster init (tests/lib/cluster-tls-lib.sh).
TEST_NAME=bench-tls
QDESK_BIN=$QDESK
fail() { die "$*"; }
. "$top/tests/lib/cluster-tls-lib.sh"
bench_net_end() {
	local st=$?
	net_cleanup
	return $st
}
trap 'bench_net_end; bench_cleanup' EXIT
net_up
cluster_init
[ -f "$T/ca/ca.pem" ] || die "cluster init failed"
"$QDESK" cluster cert host h1 --dir "$T/ca" --addr 127.0.0.1 >/dev/null &&
    "$QDESK" cluster cert admin bench --dir "$T/ca" >/dev/null || die "cluster cert"
cat >"$T/cluster.json" <<J
{"name": "h1", "etcd": ["$ETCD"], "listen": "127.0.0.1:7443",
 "ca": "$T/ca/host-h1/ca.pem", "cert": "$T/ca/host-h1/cert.pem",
 "key": "$T/ca/host-h1/key.pem"}
J
export QDESK_SOCKET=$T/state/qmpd.sock
STATE=$T/state
ip netns exec "$NS" "$QMPD" -f --state-dir "$STATE" --cluster "$T/cluster.json" \
    >>"$T/qmpd.log" 2>&1 &
QMPD_PID=$!
for i in $(seq 1 100); do
	grep -q "listening on 127.0.0.1:7443" "$T/qmpd.log" && break
	sleep 0.05
done
grep -q "listening on 127.0.0.1:7443" "$T/qmpd.log" || die "qmpd does not listen"

# ms of each of CALLS runs of a command, median.
median_ms() {
	local i s e
	for i in $(seq 1 "$CALLS"); do
		s=$(date +%s%N)
		"$@" >/dev/null 2>&1 || die "$*: failed"
		e=$(date +%s%N)
		echo $(( (e - s) / 1000 ))
	done | sort -n | awk '{a[NR]=$1} END {printf "%.2f", a[int((NR+1)/2)]/1000}'
}
cli_unix=$(median_ms ip netns exec "$NS" "$QDESK" status)
cli_tls=$(median_ms ip netns exec "$NS" "$QDESK" --host 127.0.0.1:7443 \
    --cert "$T/ca/admin-bench" status)

cat >"$T/rtt.py" <<'PY'
import json, socket, ssl, sys, time
kind, target, certdir, n = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
if kind == "unix":
    s = socket.socket(socket.AF_UNIX)
    s.connect(target)
else:
    ctx = ssl.create_default_context(cafile=certdir + "/ca.pem")
    ctx.check_hostname = False
    ctx.load_cert_chain(certdir + "/cert.pem", certdir + "/key.pem")
    host, port = target.rsplit(":", 1)
    raw = socket.create_connection((host, int(port)))
    raw.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    s = ctx.wrap_socket(raw)
f = s.makefile("rb")
f.readline()
times = []
for i in range(n):
    t = time.perf_counter()
    s.sendall(b'{"id":%d,"cmd":"server.status"}\n' % i)
    json.loads(f.readline())
    times.append((time.perf_counter() - t) * 1000)
times.sort()
print("%.3f %.3f" % (times[len(times) // 2], times[int(len(times) * 0.99)]))
PY
read -r rtt_unix p99_unix < <(ip netns exec "$NS" python3 "$T/rtt.py" unix \
    "$QDESK_SOCKET" - "$((CALLS * 10))")
read -r rtt_tls p99_tls < <(ip netns exec "$NS" python3 "$T/rtt.py" tls \
    127.0.0.1:7443 "$T/ca/admin-bench" "$((CALLS * 10))")

echo "| what ($CALLS CLI calls, $((CALLS * 10)) kept-connection requests; load $(cut -d' ' -f1 /proc/loadavg)) | unix socket | mutual TLS | TLS / unix |"
echo "|---|---|---|---|"
echo "| \`qdesk status\`, a process per call (median ms) | $cli_unix | $cli_tls | $(awk "BEGIN {printf \"%.2f\", $cli_tls / $cli_unix}") |"
echo "| server.status on one connection (median ms) | $rtt_unix | $rtt_tls | $(awk "BEGIN {printf \"%.2f\", $rtt_tls / $rtt_unix}") |"
echo "| server.status on one connection (p99 ms) | $p99_unix | $p99_tls | $(awk "BEGIN {printf \"%.2f\", $p99_tls / $p99_unix}") |"
