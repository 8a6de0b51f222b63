# Network tests: sourced after lib.sh.  Each test gets its own network
# namespace, and its qmpd runs inside it, so every bridge, TAP, dnsmasq
# and nft table it makes lives and dies there; the host's interfaces,
# routes and tables are never touched.  On exit, pass or fail, the
# namespace and every dnsmasq of this test (by its pid file) go.

for t in ip nft dnsmasq socat jq; do
	command -v $t >/dev/null 2>&1 || skip "$t not installed"
done
[ "$(id -u)" = 0 ] || skip "needs root"
[ -c /dev/net/tun ] || skip "no /dev/net/tun"
[ -f "$GUESTS/vmlinuz" ] || skip "no tiny guests: run scripts/mkguest"

NS=qdt-$TEST_NAME-$$
NS=${NS:0:56}
NS_OUT=			# "the outside", made by outside_ns
# QDESK_QMPD runs another qmpd binary (a private build dir).
QMPD_BIN=$QMPD
[ -n "${QDESK_QMPD:-}" ] && QMPD_BIN=$(qmpd_uids_wrap "$QDESK_QMPD")
[ -n "${QDESK_CLI:-}" ] && QDESK_BIN=$QDESK_CLI
GUEST_SEQ=0

net_cleanup() {
	local f pid
	for f in "$STATE"/net/*.pid; do
		[ -f "$f" ] || continue
		pid=$(cat "$f")
		if [ -n "$pid" ] && tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null |
		    grep -q -- "--conf-file=$STATE/net/"; then
			kill "$pid" 2>/dev/null
		fi
	done
	ip netns del "$NS" 2>/dev/null
	[ -n "$NS_OUT" ] && ip netns del "$NS_OUT" 2>/dev/null
}
EXTRA_CLEANUP=net_cleanup

ip netns add "$NS" || fail "cannot create namespace $NS"
ip netns exec "$NS" ip link set lo up

# nft as qmpd runs it: the real one, unless the file $T/nft-fail exists.
mkdir -p "$T/bin"
cat >"$T/bin/nft" <<EOF
#!/bin/sh
if [ -e "$T/nft-fail" ]; then
	cat >/dev/null
	echo "Error: injected by the test" >&2
	exit 1
fi
exec $(command -v nft) "\$@"
EOF
chmod 755 "$T/bin/nft"

# qmpd inside the namespace; with NO_TUN=1 also in a mount namespace where
# /dev/net/tun does not exist.
cat >"$T/qmpd-ns" <<EOF
#!/bin/sh
PATH=$T/bin:\$PATH
export PATH
if [ "\${NO_TUN:-}" = 1 ]; then
	exec ip netns exec $NS unshare -m --propagation private sh -c \
	    'mount -t tmpfs qdt-no-tun /dev/net && exec "\$0" "\$@"' \
	    $QMPD_BIN "\$@"
fi
exec ip netns exec $NS $QMPD_BIN "\$@"
EOF
chmod 755 "$T/qmpd-ns"
QMPD=$T/qmpd-ns

# A command in the test's namespace.
nsx() { ip netns exec "$NS" "$@"; }

# "The outside": a second namespace behind veth up0 (192.0.2.1 on the
# qmpd side, 192.0.2.2 outside) with no route back to any guest subnet,
# so that only masqueraded traffic gets answers.
outside_ns() {
	NS_OUT=$NS-out
	ip netns add "$NS_OUT" || fail "cannot create namespace $NS_OUT"
	nsx ip link add up0 type veth peer name eth0 netns "$NS_OUT" ||
		fail "veth to the outside"
	nsx ip addr add 192.0.2.1/24 dev up0
	nsx ip link set up0 up
	ip netns exec "$NS_OUT" ip addr add 192.0.2.2/24 dev eth0
	ip netns exec "$NS_OUT" ip link set eth0 up
	ip netns exec "$NS_OUT" ip link set lo up
}

# A tiny Linux guest (TCG, no display) on the given networks.
guest_create() {
	local vm=$1 n args=()
	shift
	for n in "$@"; do
		args+=(--net "$n")
	done
	qq vm create "$vm" --accel tcg --memory 128 --display none \
	    --kernel "$GUESTS/vmlinuz" --initrd "$GUESTS/initrd.img" \
	    --append "console=ttyS0 no_timer_check" "${args[@]}" >/dev/null
}

# A NIC field: nic_field VM INDEX KEY.
nic_field() { q --json vm show "$1" | jq -r ".nics[$2].$3"; }

# Wait until the guest's serial shell takes input.
guest_ready() {
	wait_console "$1" "QDESK GUEST READY" 90
	wait_console "$1" "qdesk-guest:/# " 30
}

# guest_sh VM CMD [TIMEOUT]: CMD on the guest's serial shell; its status.
guest_sh() {
	local vm=$1 cmd=$2 timeout=${3:-20} n i st
	GUEST_SEQ=$((GUEST_SEQ + 1))
	n=$GUEST_SEQ
	serial_send "$vm" "$cmd; echo QDT$n=\$?"
	for i in $(seq 1 $((timeout * 10))); do
		st=$(grep -ao "QDT$n=[0-9][0-9]*" "$STATE/vms/$vm/serial.log" |
		    tail -n 1)
		if [ -n "$st" ]; then
			return "${st#QDT$n=}"
		fi
		sleep 0.1
	done
	fail "$vm: no answer to '$cmd' after ${timeout}s"
}

# guest_until VM COND [TIMEOUT]: COND (a shell test in the guest) turns
# true within TIMEOUT seconds; the loop runs in the guest.
guest_until() {
	local vm=$1 cond=$2 timeout=${3:-10}
	guest_sh "$vm" "for i in \$(seq 1 $((timeout * 5))); do $cond && break; sleep 0.2; done; $cond" $((timeout + 10))
}

# One ping from a guest, 2 s at most.
guest_ping() {
	local vm=$1
	shift
	guest_sh "$vm" "ping -c 1 -W 2 $*"
}

# The link of a TAP in the namespace: "master BRIDGE" or nothing if gone.
tap_master() {
	nsx ip -o link show "$1" 2>/dev/null |
	    sed -n 's/.* master \([^ ]*\) .*/\1/p'
}
