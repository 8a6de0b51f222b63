#!/usr/bin/env bash
# Issue 11's desktop devices in a real guest (TCG, the generic kernel with
# initrd-desktop.img): --video virtio --heads 2 gives the guest's DRM two
# connectors (virtio-gpu's scanouts; Linux's qxl driver always makes its
# qxl.num_heads, 4, whatever max_outputs says),
# --audio an HDA card, --usbredir 3 three usbredir channels (with playback
# and record) in the SPICE session's channel list, --balloon a balloon
# whose size vm show reports. Then the one-line refusals of bad values and
# combinations, and a pool whose desktops all get the flags.
. "$(dirname "$0")/lib.sh"

PROBE=$top/build/broker/spice-probe
start_qmpd
qq vm create dev --accel tcg --memory 512 --kernel "$GUESTS/vmlinuz-usb" \
    --initrd "$GUESTS/initrd-desktop.img" --append "console=ttyS0 no_timer_check quiet" \
    --video virtio --heads 2 --audio --usbredir 3 --balloon >/dev/null
q --json vm show dev >"$T/show.json"
jq -e '.video == "virtio" and .heads == 2 and .audio == true and
    .usbredir == 3 and .balloon == true and .os == "generic" and
    (has("balloon_mib") | not)' "$T/show.json" >/dev/null ||
	fail "vm show of the stopped VM: $(cat "$T/show.json")"
qq vm start dev >/dev/null
wait_console dev "QDESK GUEST READY" 120

# The balloon's size, asked of QEMU: all of the guest's 512 MiB.
mib=$(vm_field dev balloon_mib)
[ "$mib" = 512 ] || fail "balloon_mib is '$mib', not 512"

# The guest's view: two DRM connectors on the virtio-gpu card, an HDA codec.
serial_send dev 'echo DRM=$(ls -d /sys/class/drm/card0-* | wc -l) END'
# The HDA driver probes its codec asynchronously after the guest says
# READY (seconds under TCG): the guest waits for the card, up to 20 s.
serial_send dev 'for i in $(seq 20); do grep -q HDA-Intel /proc/asound/cards 2>/dev/null && break; sleep 1; done; echo SND=$(grep -c HDA-Intel /proc/asound/cards) END'
for i in $(seq 1 300); do
	grep -q "SND=[0-9]* END" "$STATE/vms/dev/serial.log" && break
	sleep 0.1
done
log "guest: $(grep -a -o "DRM=[0-9]* END\|SND=[0-9]* END" "$STATE/vms/dev/serial.log" | tr '\n' ' ')"
grep -a -q "DRM=2 END" "$STATE/vms/dev/serial.log" ||
	fail "the guest's DRM has not two connectors: $(grep -a "DRM=" "$STATE/vms/dev/serial.log")"
grep -a -q "SND=[1-9] END" "$STATE/vms/dev/serial.log" ||
	fail "no HDA card in /proc/asound/cards: $(grep -a "SND=" "$STATE/vms/dev/serial.log")"

# The SPICE session's channels, as a viewer learns them.
tk=$(q --json vm ticket dev --expires 60)
jq -r .ca <<<"$tk" | sed '/^$/d' >"$T/ca.pem"
"$PROBE" 127.0.0.1 "$(jq -r .port <<<"$tk")" "$(jq -r .password <<<"$tk")" \
    --ca "$T/ca.pem" --host-subject "$(jq -r .host_subject <<<"$tk")" \
    --channels >"$T/channels" 2>&1 || fail "spice-probe: $(cat "$T/channels")"
log "channels: $(grep channel "$T/channels" | cut -d' ' -f2 | sort | uniq -c | tr -s ' \n' ' ')"
grep -q "^channel playback 0$" "$T/channels" || fail "no playback channel"
grep -q "^channel record 0$" "$T/channels" || fail "no record channel"
[ "$(grep -c "^channel usbredir " "$T/channels")" = 3 ] ||
	fail "not 3 usbredir channels: $(cat "$T/channels")"
qq vm kill dev >/dev/null

# A VM without the devices lists none of those channels.
qq vm create plain --accel tcg --memory 256 --kernel "$GUESTS/vmlinuz" >/dev/null
qq vm start plain >/dev/null
tk=$(q --json vm ticket plain --expires 60)
"$PROBE" 127.0.0.1 "$(jq -r .port <<<"$tk")" "$(jq -r .password <<<"$tk")" \
    --ca "$T/ca.pem" --host-subject "$(jq -r .host_subject <<<"$tk")" \
    --channels >"$T/channels" 2>&1 || fail "spice-probe: $(cat "$T/channels")"
grep -q "^channel \(playback\|record\|usbredir\) " "$T/channels" &&
	fail "a plain VM has sound or usbredir channels: $(cat "$T/channels")"
[ "$(vm_field plain balloon_mib)" = null ] || fail "a VM without balloon reports one"
qq vm kill plain >/dev/null

# Bad values and combinations: one line each, exit 1, nothing created.
refused() {
	local want=$1
	shift
	q vm create bad --kernel "$GUESTS/vmlinuz" "$@" >"$T/out" 2>"$T/err" &&
		fail "vm create $* was accepted"
	[ "$(wc -l <"$T/err")" = 1 ] && grep -q -- "$want" "$T/err" ||
		fail "vm create $*: $(cat "$T/err")"
}
refused "heads must be 1 to 4, not 5" --heads 5
refused "usbredir must be 0 to 8, not 9" --usbredir 9
refused "video vga has one head" --video vga --heads 2
refused "video must be vga, qxl or virtio" --video cirrus
refused "usbredir channels are SPICE channels" --display none --usbredir 1
refused "os must be generic, linux, windows10 or windows11" --os dos
refused "firmware uefi-secure needs machine q35" --os windows11 --machine pc
q vm show bad >/dev/null 2>&1 && fail "a refused VM exists"

# Profiles: explicit flags win over the profile's.
qq vm create w11 --kernel "$GUESTS/vmlinuz" --os windows11 --usbredir 1 \
    --heads 2 >/dev/null
jq -e '.machine == "q35" and .firmware == "uefi-secure" and .tpm and
    .agent and .balloon and .audio and .video == "qxl" and .usbredir == 1
    and .heads == 2' <(q --json vm show w11) >/dev/null ||
	fail "windows11 profile: $(q --json vm show w11)"

# A pool: every desktop gets the device flags and the profile.
qq image import base "$GUESTS/rootfs.qcow2" --format qcow2 >/dev/null
qq pool create p --template base --size 2 --os linux --heads 3 --balloon \
    >/dev/null
for d in p-1 p-2; do
	jq -e '.os == "linux" and .heads == 3 and .audio and .usbredir == 4
	    and .balloon and .machine == "q35"' <(q --json vm show $d) \
	    >/dev/null || fail "$d: $(q --json vm show $d)"
done
q pool create p2 --template base --size 1 --heads 9 >/dev/null 2>"$T/err" &&
	fail "pool create --heads 9 accepted"
grep -q "heads must be 1 to 4" "$T/err" || fail "pool --heads 9: $(cat "$T/err")"
log ok
