#!/usr/bin/env bash
# Live migration of a desktop on the image store (issue 14), on
# `scripts/cluster up 2`: a TCG Linux guest (kernel and initrd) whose
# disk is a linked clone of template tpl (rootfs.qcow2). The guest writes
# 4 MiB of noise onto its disk and takes a checksum of the whole disk,
# read past its page cache; `vm migrate desk h2` (--storage copy, the
# default for such a desktop): h2 lacked tpl, fetches it from the cluster
# first, makes a fresh clone over it, and only the clone's top crosses
# (migration.disk_mb counts a few MiB, not the 64 MiB disk). The guest's
# checksum after is the one before, h2's image store lists desk-disk over
# tpl as desk's, h1's lists no desk-disk. Beside it, for the figure in
# bench/migrate-README.md, the same disk as a --disk file copied whole. --storage shared is refused
# with one line (the store is each host's own). Back to h1 (tpl there:
# no fetch). To h2 with h2's QEMU stopped mid-prepare: the prepare's
# own bound fails it (--timeout counts only once RAM moves; here h2's
# QMP timeout comes first), h2's clone and its index entry go, h1 keeps its own. `host
# drain h1 --live` moves it to h2 all the same. Then h1's tpl is
# replaced by other content under the same name: migrating there is
# refused with one line before anything starts, the desktop runs on at
# h2, and h1 has no half of it. A snapshot in the clone's chain is
# refused on the source.
. "$(dirname "$0")/lib.sh"

[ "$(id -u)" = 0 ] || skip "needs root (network namespaces)"
[ -r /dev/kvm ] || skip "no /dev/kvm"
[ -f "$GUESTS/rootfs.qcow2" ] || skip "no $GUESTS/rootfs.qcow2 (scripts/mkguest)"
. "$top/tests/lib/cluster-lib.sh"
STOPPED=
MIG_PID=
EXTRA_CLEANUP='img_cleanup'
img_cleanup() {
	[ -n "$STOPPED" ] && kill -CONT "$STOPPED" 2>/dev/null
	[ -n "$MIG_PID" ] && kill "$MIG_PID" 2>/dev/null
	return 0
}
cluster_test_up 2 5 5

has_image() { hq "$1" --json image list | jq -e ".images[] | select(.name == \"$2\")" >/dev/null; }

# tpl on h1 only, hashed and published; desk placed on h1 (h2 drained).
hqq h1 image import tpl "$GUESTS/rootfs.qcow2" >/dev/null
for i in $(seq 1 150); do
	grep -q "cluster: template tpl published" "$h1_LOG" && break
	sleep 0.1
done
grep -q "cluster: template tpl published" "$h1_LOG" || fail "h1 never published tpl"
hqq h1 host drain h2 >/dev/null
hosts_see h2 draining
hqq h1 vm create desk --from tpl --accel tcg --memory 256 --kernel "$GUESTS/vmlinuz" \
    --initrd "$GUESTS/initrd.img" --append "console=ttyS0 no_timer_check" --display none >/dev/null
hqq h1 vm start desk >/dev/null
[ "$(runs_on desk)" = h1 ] || fail "desk runs on '$(runs_on desk)', not h1"
# The figure's anchor: the same disk as a --disk file (tpl's content,
# every block allocated), whose --storage copy sends all 64 MiB.
qemu-img convert -S 0 -O raw "$GUESTS/rootfs.qcow2" "$SHARED/full.raw"
hqq h1 vm create full --disk "$SHARED/full.raw" --disk-format raw --accel tcg \
    --memory 256 --kernel "$GUESTS/vmlinuz" --initrd "$GUESTS/initrd.img" \
    --append "console=ttyS0 no_timer_check" --display none >/dev/null
hqq h1 vm start full >/dev/null
[ "$(runs_on full)" = h1 ] || fail "full runs on '$(runs_on full)', not h1"
hqq h1 host undrain h2 >/dev/null
hosts_see h2 up
has_image h2 tpl && fail "h2 has tpl before the migration"
hwait_console h1 desk "QDESK GUEST READY" 120
hwait_console h1 desk "# " 30

# The guest writes onto its disk: 4 MiB at 8 MiB, into the clone's top.
hserial_send h1 desk 'dd if=/dev/urandom of=/dev/vda bs=1M seek=8 count=4 2>/dev/null; sync; echo WROTE'
hwait_console h1 desk "^WROTE" 60
sum_before=$(hguest_sum h1 desk)
[ -n "$sum_before" ] || fail "no checksum from the guest on h1"

# 1. --storage shared of a clone on a host's own store: refused.
out=$(hq h1 vm migrate desk h2 --storage shared 2>&1) && fail "shared migrated: $out"
[ "$(echo "$out" | wc -l)" = 1 ] || fail "shared refusal is not one line: $out"
echo "$out" | grep -q "own image store" || fail "shared refusal: $out"
[ "$(runs_on desk)" = h1 ] || fail "after the refusal desk runs on '$(runs_on desk)'"

# 2. The default, --storage copy: h2 fetches tpl, the top alone crosses.
out=$(hq h1 --json vm migrate desk h2) || fail "migrate h1 -> h2: $out"
copy_out=$out
log "copy h1 -> h2: $(jq -c .migration <<<"$out")"
[ "$(jq -r .host <<<"$out")" = h2 ] || fail "migrate answer: $out"
[ "$(runs_on desk)" = h2 ] || fail "desk runs on '$(runs_on desk)', not h2"
dmb=$(jq -r .migration.disk_mb <<<"$out")
{ [ "$dmb" -ge 4 ] && [ "$dmb" -lt 32 ]; } ||
	fail "disk_mb $dmb: the top holds ~4 MiB of a 64 MiB disk: $out"
grep -q "cluster: template tpl fetched from host h1" "$h2_LOG" ||
	fail "h2 did not fetch tpl: $(grep -a 'tpl' "$h2_LOG" | tail -n 5)"
hq h2 --json image show desk-disk | jq -e '.parent == "tpl" and .users == ["desk"] and .kind == "clone"' >/dev/null ||
	fail "h2's desk-disk: $(hq h2 --json image show desk-disk 2>&1)"
has_image h1 desk-disk && fail "h1 still lists desk-disk: $(hq h1 --json image show desk-disk)"
[ -e "$(state_of h1)/vms/desk" ] && fail "h1's runtime dir of desk is left"
[ "$(hq h1 --json vm show desk | jq -r .host)" = h2 ] || fail "h1's vm show: $(hq h1 --json vm show desk)"
[ "$(grep -ac "QDESK GUEST READY" "$(hserial_log h2 desk)")" = 0 ] || fail "desk booted again on h2"
sum_after=$(hguest_sum h2 desk)
[ "$sum_after" = "$sum_before" ] || fail "the guest's disk checksum: $sum_before before, '$sum_after' after"
log "copy: guest checksum $sum_after before and after, top ${dmb} MiB, h2 lists desk-disk over tpl, h1 none: ok"

# The figure's other half: a full --disk copy of the same 64 MiB disk,
# same pair; and desk back to h1, which has tpl already (no fetch).
hwait_console h1 full "# " 60
out=$(hq h1 --json vm migrate full h2 --storage copy) || fail "migrate full: $out"
hqq h2 vm stop full --force >/dev/null
back=$(hq h2 --json vm migrate desk h1) || fail "migrate h2 -> h1: $back"
[ "$(runs_on desk)" = h1 ] || fail "back: desk runs on '$(runs_on desk)', not h1"
hq h1 --json image show desk-disk | jq -e '.parent == "tpl" and .users == ["desk"]' >/dev/null ||
	fail "h1's desk-disk after the way back: $(hq h1 --json image show desk-disk 2>&1)"
has_image h2 desk-disk && fail "h2 still lists desk-disk after the way back"
fig() { jq -r '.migration | "\(.disk_mb) MiB, disk \(.disk_ms) ms, total \(.total_ms) ms"' <<<"$1"; }
log "figure: clone top with the template fetched $(fig "$copy_out"); with it there $(fig "$back"); full --disk copy $(fig "$out")"

# 3. To h2 again with its QEMU stopped as soon as it exists: preparing
# fails by its own bound (h2's QMP gets no answer within 30 s; a stalled
# mirror would fail after 120 s without progress), not by --timeout,
# which counts once RAM moves; h2's half goes (its clone of tpl and the
# index entry), h1 keeps everything and runs the desktop on.
D2=$(state_of h2)
hq h1 --json vm migrate desk h2 --timeout 5 >"$T/to.out" 2>"$T/to.err" &
MIG_PID=$!
for i in $(seq 1 3000); do
	STOPPED=$(cat "$D2/vms/desk/qemu.pid" 2>/dev/null) && [ -n "$STOPPED" ] && break
	sleep 0.01
done
[ -n "$STOPPED" ] || fail "no QEMU of desk on h2 within 30 s: $(cat "$T/to.err")"
kill -STOP "$STOPPED"
wait "$MIG_PID"
rc=$?
MIG_PID=
[ "$rc" = 1 ] || fail "vm migrate exit $rc with a stalled target: $(cat "$T/to.out" "$T/to.err")"
grep -Eq "the target refused: .*(QMP greeting|QMP command).* within [0-9]+ ms|the disk copy made no progress" "$T/to.err" ||
	fail "no reason for the stalled prepare: $(cat "$T/to.err")"
grep -q "did not converge" "$T/to.err" && fail "--timeout counted before RAM moved: $(cat "$T/to.err")"
for i in $(seq 1 100); do
	[ -e "$D2/vms/desk" ] || break
	sleep 0.1
done
[ -e "$D2/vms/desk" ] && fail "h2's half of desk is left: $(ls "$D2/vms/desk")"
alive "$STOPPED" && fail "h2's QEMU $STOPPED is left"
STOPPED=
has_image h2 desk-disk && fail "h2 kept its clone: $(hq h2 --json image show desk-disk)"
[ "$(hq h2 --json image show tpl | jq -r .children)" = 0 ] ||
	fail "h2's tpl still counts a child: $(hq h2 --json image show tpl)"
[ "$(runs_on desk)" = h1 ] || fail "after the failure desk runs on '$(runs_on desk)'"
hq h1 --json image show desk-disk | jq -e '.users == ["desk"]' >/dev/null ||
	fail "h1's desk-disk after the failure: $(hq h1 --json image show desk-disk 2>&1)"
[ "$(hguest_sum h1 desk)" = "$sum_before" ] || fail "the guest's checksum changed after the failure"
log "stalled target: $(cat "$T/to.err"); h2's half gone, h1 runs on: ok"

# 4. host drain h1 --live: desk goes to h2 (the host with its template),
# its top copied like any vm migrate.
out=$(hq h2 --json host drain h1 --live) || fail "host drain h1 --live: $out"
[ "$(jq -r '[.moved[].name] | join(" ")' <<<"$out")" = desk ] || fail "drain answer: $out"
[ "$(runs_on desk)" = h2 ] || fail "after the drain desk runs on '$(runs_on desk)'"
has_image h1 desk-disk && fail "h1 still lists desk-disk after the drain"
hq h2 --json image show desk-disk | jq -e '.parent == "tpl" and .users == ["desk"]' >/dev/null ||
	fail "h2's desk-disk after the drain: $(hq h2 --json image show desk-disk 2>&1)"
[ "$(hguest_sum h2 desk)" = "$sum_before" ] || fail "the guest's checksum changed across the drain"
hqq h1 host undrain h1 >/dev/null
hosts_see h1 up
log "host drain h1 --live: desk on h2 with its disk: ok"

# 5. h1's tpl replaced by other content: migrating there is refused.
D1=$(state_of h1)
hqq h1 image rm tpl >/dev/null
head -c $((64 << 20)) /dev/zero >"$T/other.raw"
printf 'other' | dd of="$T/other.raw" bs=1 seek=4096 conv=notrunc status=none
hqq h1 image import tpl "$T/other.raw" >/dev/null
for i in $(seq 1 300); do
	[ "$(grep -c "cluster: template tpl: sha256" "$h1_LOG")" -ge 2 ] && break
	sleep 0.1
done
out=$(hq h2 vm migrate desk h1 2>&1) && fail "migrated onto another tpl: $out"
[ "$(echo "$out" | wc -l)" = 1 ] || fail "the refusal is not one line: $out"
echo "$out" | grep -q "template tpl on host h1 is not the source's" || fail "refusal: $out"
[ "$(runs_on desk)" = h2 ] || fail "after the refusal desk runs on '$(runs_on desk)'"
has_image h1 desk-disk && fail "h1 kept a half: $(hq h1 --json image show desk-disk)"
[ -e "$D1/vms/desk" ] && fail "h1 has a runtime dir of desk"
hserial_send h2 desk 'echo STILL$((40+2))'
hwait_console h2 desk "STILL42" 30
log "another tpl on the target: refused ($out), desk runs on at h2: ok"

# 6. A snapshot in the clone's chain: refused before the target is asked.
hqq h2 vm snapshot desk s1 >/dev/null
n=$(grep -c "incoming migration" "$h1_LOG")
out=$(hq h2 vm migrate desk h1 2>&1) && fail "migrated with a snapshot: $out"
[ "$(echo "$out" | wc -l)" = 1 ] || fail "the refusal is not one line: $out"
echo "$out" | grep -q "not directly on its template tpl" || fail "snapshot refusal: $out"
[ "$(grep -c "incoming migration" "$h1_LOG")" = "$n" ] || fail "h1 was asked to prepare desk"
[ "$(runs_on desk)" = h2 ] || fail "after the snapshot refusal desk runs on '$(runs_on desk)'"
log "a snapshot in the chain: refused ($out): ok"
