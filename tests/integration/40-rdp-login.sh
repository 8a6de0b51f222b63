#!/usr/bin/env bash
# RDP gateway, logins: a real xfreerdp (+auth-only) against the gateway.
# A wrong password, an unknown user and a missing password are refused
# (non-zero exit, a log line saying why); repeated failures lock the login
# (qmpd's lockout, the portal's too); bob cannot open alice's desktop,
# named or not; alice logs in and her stopped desktop is started for her;
# the .rdp file picks her second desktop by name.
. "$(dirname "$0")/lib.sh"
. "$top/tests/lib/rdp-test-lib.sh"
rdp_require

start_qmpd --broker-user nobody
qq vm create d1 --accel tcg --memory 256 --kernel "$GUESTS/vmlinuz" \
    --initrd "$GUESTS/initrd.img" --append "console=tty0 console=ttyS0 no_timer_check" >/dev/null
printf 'alice-pw-1\n' | qq user add alice --password-stdin >/dev/null
printf 'bob-pw-2\n' | qq user add bob --password-stdin >/dev/null
printf 'carol-pw-3\n' | qq user add carol --password-stdin >/dev/null
qq desktop assign alice d1 >/dev/null
qq vm create d2 --accel kvm --disk "$(tiny_disk d2)" --memory 32 \
    --display none >/dev/null
qq desktop assign alice d2 >/dev/null
start_gateway
xvfb_start

# Refusals. Each is a non-zero exit and the gateway says why.
rdp_auth_only /u:alice /p:wrong-password &&
	rdp_fail "a wrong password was accepted"
wait_gw_log "login alice refused: invalid login or password" 10
rdp_auth_only /u:mallory /p:whatever &&
	rdp_fail "an unknown user was accepted"
wait_gw_log "login mallory refused" 10
rdp_auth_only /u:alice /p: &&
	rdp_fail "a login without a password was accepted"
wait_gw_log "no user name or password in the logon info" 10
[ "$(vm_field d1 state)" = stopped ] ||
	rdp_fail "a refused login changed the desktop: $(vm_field d1 state)"

# bob has no desktop; naming alice's does not help.
rdp_auth_only /u:bob /p:bob-pw-2 /d:d1 &&
	rdp_fail "bob opened alice's desktop d1"
wait_gw_log "bob has no desktop" 10
rdp_auth_only /u:bob /p:bob-pw-2 &&
	rdp_fail "bob got a desktop without having one"
[ "$(vm_field d1 state)" = stopped ] ||
	rdp_fail "bob's attempt changed alice's desktop: $(vm_field d1 state)"

# The lockout is qmpd's, shared with the portal: after 5 failures even
# the right password is refused, and the gateway says so.
for i in 1 2 3 4 5; do
	rdp_auth_only /u:carol /p:bad-$i && rdp_fail "carol's bad password $i accepted"
done
rdp_auth_only /u:carol /p:carol-pw-3 &&
	rdp_fail "a locked login was accepted"
wait_gw_log "login carol refused: too many failed logins for carol" 10

# alice: accepted, and her stopped desktop is started for her.
rdp_auth_only /u:alice /p:alice-pw-1 ||
	rdp_fail "alice refused: $(tail -n 5 "$T/xf.log")"
wait_gw_log "(alice on d1): logged in" 10
[ "$(vm_field d1 state)" = running ] ||
	rdp_fail "d1 not started by the login: $(vm_field d1 state)"
# As the broker: unprivileged, so qmpd answered the broker-role commands.
grep -q "running as nobody" "$RDP_LOG" || rdp_fail "the gateway kept root"
grep -q "request desktop.vnc" "$QMPD_LOG" ||
	rdp_fail "the console did not come through desktop.vnc"

# Naming the desktop works too (the .rdp file's domain field), and a
# desktop she does not have is refused by name.
rdp_auth_only /u:alice /p:alice-pw-1 /d:d1 ||
	rdp_fail "alice refused with /d:d1: $(tail -n 5 "$T/xf.log")"
rdp_auth_only /u:alice /p:alice-pw-1 /d:nosuch &&
	rdp_fail "alice got a desktop named nosuch"
wait_gw_log "alice has no desktop named nosuch" 10

# The portal's .rdp file, as xfreerdp reads it: it names d2 (not alice's
# first desktop), which is started for her.
"$RDP_GW" -F alice:d2 -l 127.0.0.1 -p "$RDP_PORT" >"$T/alice.rdp" ||
	fail "no .rdp file"
HOME=$T timeout 120 xfreerdp "$T/alice.rdp" /cert:ignore /p:alice-pw-1 \
    +auth-only >"$T/xf.log" 2>&1 ||
	rdp_fail "the .rdp file did not get alice in: $(tail -n 5 "$T/xf.log")"
wait_gw_log "(alice on d2): logged in" 10
[ "$(vm_field d2 state)" = running ] ||
	rdp_fail "d2 not started through the .rdp file: $(vm_field d2 state)"
log ok
