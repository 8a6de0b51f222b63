# Shared by the RDP gateway's integration tests (tests/integration/4*.sh),
# sourced after tests/integration/lib.sh (it sources xvfb.sh beside it):
# the gateway alone (rdp-gw-test, the same code qdesk-broker runs), a real
# xfreerdp under Xvfb, and helpers to look at what the client shows. Everything started here is
# ended by PID at exit.

. "$top/tests/lib/xvfb.sh"

RDP_GW=${RDP_GW:-$top/build/broker/rdp/rdp-gw-test}
RDP_GW_PID=
RDP_CLIENT_PIDS=
RDP_PORT=
RDP_LOG=$T/gw.log
RDP_USER=${RDP_USER-nobody}
RELAY_PIDS=
RELAY_PORT=

rdp_cleanup() {
	local p
	for p in $RDP_CLIENT_PIDS; do
		kill "$p" 2>/dev/null
	done
	[ -n "$RDP_GW_PID" ] && kill "$RDP_GW_PID" 2>/dev/null
	for p in $RDP_CLIENT_PIDS $RDP_GW_PID; do
		wait "$p" 2>/dev/null
	done
	# The relay (rdp_relay) after the gateway, as its clients are gone.
	for p in $RELAY_PIDS; do
		kill "$p" 2>/dev/null
		wait "$p" 2>/dev/null
	done
	xvfb_stop
	if [ -f "$RDP_LOG" ] && [ -n "${RDP_SHOW_LOG:-}" ]; then
		log "gateway log:"
		cat "$RDP_LOG" >&2
	fi
}
EXTRA_CLEANUP=rdp_cleanup

rdp_fail() {
	log "last lines of the gateway log:"
	tail -n 30 "$RDP_LOG" >&2 2>/dev/null
	fail "$@"
}

# What the RDP tests need, or skip (77) saying what is missing.
rdp_require() {
	local c
	[ -x "$RDP_GW" ] || skip "$RDP_GW is not built (broker/meson.build" \
	    "must have subdir('rdp'))"
	for c in xfreerdp Xvfb xdotool import compare openssl python3; do
		command -v "$c" >/dev/null ||
			skip "$c is not installed (scripts/setup installs it)"
	done
}

# A TCP port of this test's own (lib.sh's free_port).
# tablet_watch VM: find VM's USB tablet event device and have the guest
# print each struct input_event (24 bytes on x86_64) as one line "QEV
# <hex>" on its serial line (hexdump writes straight to the tty, line
# buffered); tests/lib/tablet_events.py reads them back. The device
# appears ~0.3 s after READY, once the xHCI port is enumerated; the
# pattern needs a digit: the echoed command line itself does not match.
# Sets TABLET_EV (eventN).
tablet_watch() {
	local vm=$1 i
	for i in $(seq 1 20); do
		serial_send "$vm" 'for d in /sys/class/input/event*; do grep -q "USB Tablet" $d/device/name && echo QDESK-TABLET=${d##*/}; done'
		grep -q "QDESK-TABLET=event[0-9]" "$STATE/vms/$vm/serial.log" && break
		sleep 1
	done
	wait_console "$vm" "QDESK-TABLET=event[0-9]" 5
	TABLET_EV=$(grep -ao "QDESK-TABLET=event[0-9]*" "$STATE/vms/$vm/serial.log" | head -n1)
	TABLET_EV=${TABLET_EV#QDESK-TABLET=}
	serial_send "$vm" "hexdump -v -e '\"QEV \" 24/1 \"%02x\" \"\\n\"' /dev/input/$TABLET_EV > /dev/ttyS0 &"
}

rdp_free_port() { free_port; }

# A self-signed certificate, as the broker makes at first start.
rdp_cert() {
	openssl req -x509 -newkey rsa:2048 -nodes -days 2 \
	    -keyout "$T/rdp-key.pem" -out "$T/rdp-cert.pem" \
	    -subj /CN=qdesk-test >/dev/null 2>&1 || fail "openssl req failed"
}

start_gateway() {
	local i
	rdp_cert
	RDP_PORT=$(rdp_free_port)
	# As the broker runs: unprivileged (qmpd gives it the broker role,
	# start_qmpd --broker-user nobody), after reading the key as root.
	# RDP_GW_ARGS: more options (-r -1: no lossless refinement).
	"$RDP_GW" -v ${RDP_GW_ARGS:-} -l 127.0.0.1 -p "$RDP_PORT" -c "$T/rdp-cert.pem" \
	    -k "$T/rdp-key.pem" -s "$STATE/qmpd.sock" ${RDP_USER:+-u "$RDP_USER"} \
	    >>"$RDP_LOG" 2>&1 &
	RDP_GW_PID=$!
	for i in $(seq 1 100); do
		grep -q "RDP gateway on" "$RDP_LOG" 2>/dev/null && return 0
		kill -0 "$RDP_GW_PID" 2>/dev/null || rdp_fail "gateway exited"
		sleep 0.05
	done
	rdp_fail "gateway did not come up"
}

# rdp_relay: the transport bench's byte-counting relay in front of the
# gateway (bench/transport/delay-relay.py, no delay): TCP on RELAY_PORT
# (the client) -> unix socket -> socat -> the gateway. A line a session
# ended lands in $T/wire.txt with its bytes on the wire both ways. Needs
# socat; ended by rdp_cleanup.
rdp_relay() {
	local i
	socat UNIX-LISTEN:"$T/gw.sock",fork TCP:127.0.0.1:"$RDP_PORT" 2>/dev/null &
	RELAY_PIDS="$RELAY_PIDS $!"
	RELAY_PORT=$(rdp_free_port)
	python3 "$top/bench/transport/delay-relay.py" 127.0.0.1 "$RELAY_PORT" \
	    "$T/gw.sock" 0 1000000 "$T/wire.txt" 2>"$T/relay.log" &
	RELAY_PIDS="$RELAY_PIDS $!"
	for i in $(seq 1 100); do
		[ -S "$T/gw.sock" ] && bash -c "exec 3<>/dev/tcp/127.0.0.1/$RELAY_PORT" \
		    2>/dev/null && break
		sleep 0.1
	done
}

# xfreerdp with these extra arguments: exit status, output in $T/xf.log.
rdp_auth_only() {
	HOME=$T timeout 120 xfreerdp /cert:ignore /v:127.0.0.1:"$RDP_PORT" \
	    +auth-only "$@" >"$T/xf.log" 2>&1
}

# A full xfreerdp session in the background; its pid in RDP_CLIENT.
rdp_client() {
	local name=$1
	shift
	HOME=$T xfreerdp /cert:ignore /v:127.0.0.1:"$RDP_PORT" "$@" \
	    >"$T/xf-$name.log" 2>&1 &
	RDP_CLIENT=$!
	RDP_CLIENT_PIDS="$RDP_CLIENT_PIDS $RDP_CLIENT"
}

# rdp_gone PID: wait up to 10 s for a client to end; fails if it does not.
rdp_gone() {
	local i
	for i in $(seq 1 100); do
		kill -0 "$1" 2>/dev/null || return 0
		sleep 0.1
	done
	return 1
}

# Wait until the gateway log shows a pattern.
wait_gw_log() {
	local pattern=$1 timeout=${2:-30} i
	for i in $(seq 1 $((timeout * 10))); do
		grep -q -- "$pattern" "$RDP_LOG" 2>/dev/null && return 0
		sleep 0.1
	done
	rdp_fail "'$pattern' not in the gateway log after ${timeout}s"
}

# The X window of an xfreerdp client, by its pid.
rdp_window() {
	local pid=$1 i w
	for i in $(seq 1 100); do
		w=$(xdotool search --pid "$pid" --name FreeRDP 2>/dev/null | head -n1)
		[ -n "$w" ] && { echo "$w"; return 0; }
		sleep 0.1
	done
	return 1
}

# RMSE (0..1) between the client's window and the VM's own screendump,
# over the screendump's size; prints it.
rdp_compare() {
	local win=$1 vm=$2 size
	q vm screenshot "$vm" "$T/qmp.ppm" >/dev/null || return 1
	import -window "$win" "$T/client.png" 2>/dev/null || return 1
	size=$(identify -format '%wx%h' "$T/qmp.ppm")
	convert "$T/client.png" -crop "$size+0+0" +repage "$T/client-crop.png"
	compare -metric RMSE "$T/client-crop.png" "$T/qmp.ppm" null: 2>&1 |
	    sed -n 's/.*(\(.*\)).*/\1/p'
}

# alice_desktop KERNEL INITRD APPEND [VM-CREATE-OPTION...]: qmpd, a
# stopped Linux desktop d1 on that kernel for user alice (password
# alice-pw-1), the gateway and Xvfb.
alice_desktop() {
	start_qmpd --broker-user nobody
	qq vm create d1 --accel tcg --memory 256 --kernel "$1" --initrd "$2" \
	    --append "$3" "${@:4}" >/dev/null
	printf 'alice-pw-1\n' | qq user add alice --password-stdin >/dev/null
	qq desktop assign alice d1 >/dev/null
	start_gateway
	xvfb_start
}

# alice_window: alice's xfreerdp logs in, which boots d1; once its console
# is 720x400 text, the client's window must be that size. Sets client (the
# xfreerdp pid) and win (its window).
alice_window() {
	local geom
	rdp_client alice /u:alice /p:alice-pw-1
	client=$RDP_CLIENT
	wait_gw_log "(alice on d1): logged in" 30
	wait_console d1 "QDESK GUEST READY" 90
	wait_gw_log "(alice on d1): console now 720x400" 30
	win=$(rdp_window "$client") || rdp_fail "no xfreerdp window"
	geom=$(xdotool getwindowgeometry "$win" | sed -n 's/ *Geometry: //p')
	[ "$geom" = 720x400 ] || rdp_fail "client window is $geom, not 720x400"
}
