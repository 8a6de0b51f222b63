#!/usr/bin/env bash
# The portal in real headless Chromium (Debian's chromium, driven through
# playwright-core from npm, installed under build/): a wrong password, a
# locked login that says for how long, log in, the desktop's card, Start
# turns it running, Connect (SPICE) yields a .vv file whose password links
# through the SPICE proxy, Connect (RDP) a .rdp file for the broker's
# gateway; laptop, phone and lockout screenshots in build/test-results/.
. "$(dirname "$0")/lib.sh"
. "$top/tests/lib/broker-lib.sh"

need_playwright skip
cp "$top/tests/lib/portal.mjs" "$NODE_DIR/portal.mjs"

start_qmpd --broker-user "$BROKER_USER"
need_kvm
add_user alice alice-pw-1
add_user carol carol-pw-3
add_desktop d1 alice
start_broker
mkdir -p "$RESULTS"

out=$(cd "$NODE_DIR" && timeout 180 node portal.mjs "$URL/" alice alice-pw-1 d1 \
    "$T/portal" carol 2>"$T/portal.err") ||
	broker_fail "portal in chromium: $(cat "$T/portal.err")"
printf '%s\n' "$out" >"$T/portal.json"
cp "$T/portal"/*.png "$RESULTS/" 2>/dev/null
j() { jq -r ".$1" "$T/portal.json"; }

[ "$(j state_before)" = stopped ] && [ "$(j state_after)" = running ] ||
	fail "the card went $(j state_before) -> $(j state_after)"
[ "$(j who)" = "User alice (alice)" ] || fail "the header shows '$(j who)'"
j locked | grep -q "locked for [0-9]* s" || fail "the lockout says: $(j locked)"
[ "$(j vv_name)" = d1.vv ] || fail "the download is named $(j vv_name)"
[ "$(vm_field d1 state)" = running ] || fail "d1 is not running after Start"
[ -s "$RESULTS/32-broker-portal.png" ] && [ -s "$RESULTS/32-broker-portal-phone.png" ] ||
	fail "no screenshots in $RESULTS"

# The .vv the button gave links, through the proxy, as remote-viewer would.
vvf=$(j vv)
vv() { sed -n "s/^$1=//p" "$vvf"; }
[ "$(vv type)" = spice ] && [ "$(vv proxy)" = "http://127.0.0.1:$PROXY_PORT" ] ||
	fail "the portal's .vv: $(cat "$vvf")"
vv_ca "$vvf" >"$T/vv-ca.pem"
"$PROBE" "$(vv host)" "$(vv tls-port)" "$(vv password)" \
    --proxy "127.0.0.1:$PROXY_PORT" --ca "$T/vv-ca.pem" \
    --host-subject "$(vv host-subject)" >/dev/null ||
	broker_fail "the portal's .vv does not link through the proxy"
# Connect (RDP) gave the gateway's .rdp file, when the broker has one.
if [ "$(j rdp)" = true ]; then
	[ "$(j rdp_name)" = d1.rdp ] &&
	    grep -q "^full address:s:127.0.0.1:$RDP_PORT" "$(j rdp_file)" &&
	    grep -q "^username:s:.*alice" "$(j rdp_file)" ||
		fail "the portal's .rdp: $(cat "$(j rdp_file)")"
fi
log "screenshots: $RESULTS/32-broker-portal.png, 32-broker-portal-phone.png"
log ok
