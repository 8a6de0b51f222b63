#!/usr/bin/env bash
# RDP gateway, display and keyboard: a real xfreerdp under Xvfb logs in to
# a stopped Linux desktop; the gateway starts it and follows the console's
# resolution changes during boot; what the client window shows matches
# QEMU's own screendump; a command typed into the window with xdotool runs
# in the guest (its output reaches the serial log).
. "$(dirname "$0")/lib.sh"
. "$top/tests/lib/rdp-test-lib.sh"
rdp_require

alice_desktop "$GUESTS/vmlinuz" "$GUESTS/initrd.img" "console=tty0 console=ttyS0 no_timer_check"
# The boot switches the console to 720x400 text mode: the client follows.
alice_window

# The shell prompt is on the VGA console (tty1) once it is drawn; then the
# client's picture must match the screendump (the cursor blinks: retry).
sleep 3
best=1
for i in $(seq 1 10); do
	rmse=$(rdp_compare "$win" d1) || rdp_fail "screenshot failed"
	log "client vs screendump RMSE $rmse"
	best=$(python3 -c "print(min($best, $rmse))")
	python3 -c "import sys; sys.exit(0 if $rmse < 0.02 else 1)" && break
	sleep 0.5
done
python3 -c "import sys; sys.exit(0 if $best < 0.02 else 1)" ||
	rdp_fail "the client does not show the console (best RMSE $best)"
# And it is not a blank screen that matches a blank screen.
colours=$(convert "$T/qmp.ppm" -format '%k' info:)
[ "$colours" -gt 1 ] || rdp_fail "the console is blank"

# Keyboard: type into the client window; $((6*7)) proves the shell ran it.
xdotool mousemove --window "$win" 100 100
xdotool windowfocus --sync "$win" 2>/dev/null || xdotool windowfocus "$win"
xdotool type --delay 40 'echo QDESK-KEY-$((6*7)) > /dev/ttyS0'
xdotool key Return
wait_console d1 "QDESK-KEY-42" 20

# The typed line is on the client's screen too.
sleep 1
rmse=$(rdp_compare "$win" d1)
python3 -c "import sys; sys.exit(0 if $rmse < 0.02 else 1)" ||
	rdp_fail "after typing, client and screendump differ (RMSE $rmse)"
cp "$T/client.png" "$top/build/test-results/41-rdp-screen.png" 2>/dev/null
log ok
