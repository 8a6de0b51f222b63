# A private X server for the tests that run a GUI client (xfreerdp,
# remote-viewer), sourced after tests/integration/lib.sh: xvfb_start
# starts it and exports DISPLAY; xvfb_stop (call it from the test's
# clean-up) ends it by PID.
XVFB_PID=

# xvfb_need CMD...: these are installed (scripts/setup installs them), or
# the test fails saying which is missing.
xvfb_need() {
	local c
	for c in Xvfb "$@"; do
		command -v "$c" >/dev/null ||
			fail "$c is not installed (scripts/setup installs it)"
	done
}

# XVFB_SCREEN: its size (1024x768x24 unless a test needs more).
# -noreset: by default an X server resets itself when its last client
# leaves, and a client that connects meanwhile can fail ("failed to open
# display"): tests that end one client and start the next at once hit
# that (48, once, in CI).
xvfb_start() {
	local i
	Xvfb -displayfd 9 -nolisten tcp -noreset -screen 0 "${XVFB_SCREEN:-1024x768x24}" \
	    9>"$T/xvfb.display" >"$T/xvfb.log" 2>&1 &
	XVFB_PID=$!
	for i in $(seq 1 100); do
		[ -s "$T/xvfb.display" ] && break
		kill -0 "$XVFB_PID" 2>/dev/null || fail "Xvfb exited: $(cat "$T/xvfb.log")"
		sleep 0.05
	done
	[ -s "$T/xvfb.display" ] || fail "Xvfb did not come up: $(cat "$T/xvfb.log")"
	export DISPLAY=:$(head -n1 "$T/xvfb.display")
}

xvfb_stop() {
	[ -n "$XVFB_PID" ] || return 0
	kill "$XVFB_PID" 2>/dev/null
	wait "$XVFB_PID" 2>/dev/null
	XVFB_PID=
}
