#!/usr/bin/env bash
# SPICE transport profiles (issue 12): vm create --profile lan|wan, lan by
# default, shown by vm show and carried into QEMU's -spice options (read
# back from the running QEMU's command line); pool create --profile gives
# it to every desktop, pool set --profile to the pool and each desktop
# (for its next start); a bad profile is one clear line, exit 1.
. "$(dirname "$0")/lib.sh"

start_qmpd

# -spice ARG of a running VM, from its /proc cmdline.
spice_arg() {
	tr '\0' '\n' <"/proc/$(vm_pid "$1")/cmdline" | sed -n '/^-spice$/{n;p}'
}

qq vm create d1 --accel tcg --memory 32 --disk "$(tiny_disk d1)" \
    --disk-format raw >/dev/null
qq vm create d2 --accel tcg --memory 32 --disk "$(tiny_disk d2)" \
    --disk-format raw --profile wan >/dev/null
[ "$(vm_field d1 profile)" = lan ] || fail "d1's profile is $(vm_field d1 profile), not lan"
[ "$(vm_field d2 profile)" = wan ] || fail "d2's profile is $(vm_field d2 profile)"
q vm show d2 | grep -Eq '^ *profile:? +wan$' || fail "vm show has no profile line: $(q vm show d2)"

qq vm start d1 >/dev/null
qq vm start d2 >/dev/null
qq vm wait d1 running >/dev/null
qq vm wait d2 running >/dev/null
a1=$(spice_arg d1) a2=$(spice_arg d2)
case $a1 in
*image-compression=glz,jpeg-wan-compression=never,zlib-glz-wan-compression=never,streaming-video=filter,playback-compression=on*) ;;
*) fail "d1 (lan) runs with -spice $a1" ;;
esac
case $a2 in
*image-compression=glz,jpeg-wan-compression=always,zlib-glz-wan-compression=always,streaming-video=filter,playback-compression=on*) ;;
*) fail "d2 (wan) runs with -spice $a2" ;;
esac
log "lan: -spice $a1"
qq vm kill d1 >/dev/null
qq vm kill d2 >/dev/null

# Bad input: one line, exit 1, nothing created.
q_status 1 vm create d3 --accel tcg --memory 32 --disk "$(tiny_disk d3)" \
    --disk-format raw --profile satellite
[ "$(cat "$T/last.err")" = "qdesk: BadArgument: profile must be lan or wan" ] ||
	grep -qx "qdesk: [A-Za-z]*: profile must be lan or wan" "$T/last.err" ||
	fail "bad profile said: $(cat "$T/last.err")"
[ "$(wc -l <"$T/last.err")" = 1 ] || fail "bad profile: more than one line"
q_status 1 vm show d3

# Pools: create gives it to each desktop, set changes pool and desktops.
qq image import base "$GUESTS/boot.img" --format raw >/dev/null
qq pool create p --template base --size 2 --accel tcg --memory 32 \
    --display spice --profile wan >/dev/null
for d in p-1 p-2; do
	[ "$(vm_field $d profile)" = wan ] || fail "$d's profile is $(vm_field $d profile), not wan"
done
[ "$(q --json pool show p | jq -r .profile)" = wan ] || fail "pool show: no profile wan"
q_status 1 pool set p --profile fast
grep -qx "qdesk: [A-Za-z]*: profile must be lan or wan" "$T/last.err" ||
	fail "pool set --profile fast said: $(cat "$T/last.err")"
[ "$(vm_field p-1 profile)" = wan ] || fail "a refused pool set changed p-1"
q_status 1 pool create p2 --template base --size 1 --profile x
grep -qx "qdesk: [A-Za-z]*: profile must be lan or wan" "$T/last.err" ||
	fail "pool create --profile x said: $(cat "$T/last.err")"
q_status 1 pool show p2
qq pool set p --profile lan >/dev/null
for d in p-1 p-2; do
	[ "$(vm_field $d profile)" = lan ] || fail "pool set left $d at $(vm_field $d profile)"
done
qq pool resize p 3 >/dev/null
[ "$(vm_field p-3 profile)" = lan ] || fail "a new desktop of p got $(vm_field p-3 profile)"
qq vm start p-3 >/dev/null
qq vm wait p-3 running >/dev/null
case $(spice_arg p-3) in
*image-compression=glz,*) ;;
*) fail "p-3 (lan) runs with -spice $(spice_arg p-3)" ;;
esac
qq vm kill p-3 >/dev/null
log ok
