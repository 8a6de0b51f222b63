#!/usr/bin/env bash
# A dedicated desktop whose disk is a linked clone on a shared image store
# fails over with its data (issue 13), on `scripts/cluster up 3` with the
# default lease and fence delay (5 s each): desk, `vm create --from tpl
# --store shared` (tpl imported into `image store add shared DIR
# --shared`), runs on h2 or h3 (h1 drained meanwhile), whose index names
# its clone desk-disk; that host records the clone in etcd. The guest (TCG,
# kernel and initrd) writes a token onto its disk and flushes it. The two
# other hosts are drained, then desk's host is killed (qmpd and QEMU -9,
# link down): the failover finds no host and `vm show` says why in one
# line; h1 undrained takes it, and within 30 s of the death desk's QEMU
# runs there (process tables), its index adopted the same file over tpl,
# and the guest booted there reads the token. The host comes back:
# it does not start desk, its index forgets desk-disk, the file stays,
# and each host's `image list --store shared` agrees on who has it. A
# watcher checks every host's process table all along: desk never runs
# on two hosts.
. "$(dirname "$0")/lib.sh"

[ "$(id -u)" = 0 ] || skip "needs root (network namespaces)"
[ -f "$GUESTS/rootfs.qcow2" ] || fail "no $GUESTS/rootfs.qcow2 (scripts/mkguest)"
need_tools etcd jq curl socat
. "$top/tests/lib/cluster-lib.sh"
cluster_test_up 3 5 5

# The shared store, seen by every host; tpl in it.
shared_store_add
hqq h1 image import tpl "$GUESTS/rootfs.qcow2" --store shared >/dev/null
tfile=$(shared_rec h1 tpl | jq -r .file)
[ -f "$STORE/$tfile" ] || fail "tpl's file $tfile is not in $STORE: $(ls "$STORE")"

# desk: a clone of tpl on the store, on h2 or h3.
hqq h1 host drain h1 >/dev/null
until_ok 10 "h2 sees h1 draining" '[ "$(host_state h2 h1)" = draining ]'
hqq h1 vm create desk --from tpl --store shared --accel tcg --memory 256 \
    --restart on-crash --kernel "$GUESTS/vmlinuz" --initrd "$GUESTS/initrd.img" \
    --append "console=ttyS0" --display none >/dev/null
hqq h1 vm start desk >/dev/null
src=$(runs_on desk)
case "$src" in h2|h3) ;; *) fail "desk runs on '$src', not on h2 or h3";; esac
hqq h1 host undrain h1 >/dev/null
cfile=$(shared_rec "$src" desk-disk | jq -r .file)
[ -f "$STORE/$cfile" ] || fail "desk-disk's file '$cfile' is not in $STORE"
until_ok 30 "$src records desk's clone in etcd" \
    "grep -aq 'cluster: desk: its clone recorded in etcd' $(log_of "$src")"
hwait_console "$src" desk "QDESK GUEST READY" 120
hwait_console "$src" desk "# " 30
token=qdesk-clone-$$-$RANDOM
# At 16 MiB into the disk, into the clone's top; flushed to the file.
hguest_sh "$src" desk "echo $token | dd of=/dev/vda bs=512 seek=32768 conv=fsync 2>/dev/null && sync" 60 ||
	fail "the guest on $src could not write its token"
log "desk (clone $cfile on the shared store) runs on $src, wrote $token: ok"

# No other host may take desk at first: both drained.
[ $src = h2 ] && third=h3 || third=h2
hqq h1 host drain h1 >/dev/null
hqq h1 host drain $third >/dev/null
until_ok 10 "$third sees h1 draining" '[ "$(host_state $third h1)" = draining ]'
until_ok 10 "h1 sees $third draining" '[ "$(host_state h1 $third)" = draining ]'

# The watcher: desk on at most one host.
watch_twice desk

# The host dies: qmpd and QEMU killed, its link down.
host_die "$src"
t0=$DIED_AT
# The failover finds no host for it, and vm show says why; h1 undrained
# then takes it (a failover tried again).
want="host down: its disk is a linked clone on shared image store shared, which no other host that is up and not draining has mounted: it waits for its host"
until_ok 20 "h1 sees $src down" '[ "$(host_state h1 "$src")" = down ]'
got=$(hq h1 --json vm show desk | jq -r '.state + ": " + .reason')
[ "$got" = "$want" ] || fail "vm show desk with no host for it: $got"
until_ok 20 "a failover of $src that leaves desk waiting" \
    "grep -aq 'cluster: desk waits for $src (its disk is a linked clone on shared image store shared, which no other' $(log_of h1)"
runs=$(runs_on desk)
[ -z "$runs" ] || fail "desk runs on $runs with every other host drained"
hqq h1 host undrain h1 >/dev/null
until_moved desk "$src" 30
t_run=$(( $(date +%s%3N) - t0 ))
[ "$w" = h1 ] || fail "desk runs on $w, not h1, the one undrained"
hqq h1 host undrain $third >/dev/null
log "desk's QEMU runs on $w $t_run ms after $src died (with every other host drained till the failover had tried: $got)"
shared_rec "$w" desk-disk | jq -e --arg f "$cfile" '.file == $f and .parent == "tpl" and .users == ["desk"] and .kind == "clone"' >/dev/null ||
	fail "$w's desk-disk: $(shared_rec "$w" desk-disk)"
hwait_console "$w" desk "QDESK GUEST READY" 120
hwait_console "$w" desk "# " 30
hguest_sh "$w" desk "dd if=/dev/vda bs=512 skip=32768 count=1 2>/dev/null | grep -aq $token" 30 ||
	fail "the token written on $src before its death is not on desk's disk on $w"
t_data=$(( $(date +%s%3N) - t0 ))
log "the guest on $w reads the token written before the failure, $t_data ms after $src died"
[ "$(host_state "$w" "$src")" = down ] || fail "$w says $src is $(host_state "$w" "$src")"

# The host comes back: it leaves desk where it runs and forgets its clone.
slg=${src}_LOG
slines=$(wc -l <"${!slg}")
host_back "$src"
until_ok 30 "$w sees $src up" '[ "$(host_state "$w" "$src")" = up ]'
until_ok 30 "$src drops its stale copy of desk" \
    "tail -n +$((slines + 1)) ${!slg} | grep -aq 'cluster: desk is placed on $w: the stale copy here dropped'"
[ "$(runs_on desk)" = "$w" ] || fail "desk runs on '$(runs_on desk)' after $src returned"
tail -n +$((slines + 1)) "${!slg}" | grep -aq "cluster: desk: placed here\|desk: restarting" &&
	fail "$src started desk again after its return"
grep -aq "desk: disk image desk-disk removed" "${!slg}" && fail "$src removed desk-disk"
[ -f "$STORE/$cfile" ] || fail "the clone's file $cfile went"
shared_rec "$src" desk-disk >/dev/null && fail "$src still indexes desk-disk: $(shared_rec "$src" desk-disk)"
# Each host's index: desk-disk only where desk runs, tpl's children so.
for h in $HOSTS; do
	n=$(hq "$h" --json image list --store shared | jq '[.. | objects | select(.name? == "desk-disk")] | length')
	c=$(shared_rec "$h" tpl | jq -r '.children // 0')
	c=${c:-0}	# a host whose index never learnt tpl
	if [ "$h" = "$w" ]; then
		[ "$n" = 1 ] && [ "$c" = 1 ] || fail "$h's index: desk-disk $n times, tpl's children $c"
	else
		[ "$n" = 0 ] && [ "$c" = 0 ] || fail "$h's index: desk-disk $n times, tpl's children $c"
	fi
done
watch_twice_end
log "$src back: desk stays on $w, $src forgot desk-disk, $cfile kept, never ran twice: ok"
exit 0
