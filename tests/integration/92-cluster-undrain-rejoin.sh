#!/usr/bin/env bash
# An undrain that only a full read can tell (issue 13's drain): on
# `scripts/cluster up 2`, h2 is drained, then its qmpd restarts with
# test hook join-read-late:h2, which holds its join's read of etcd back,
# its watch gone, until the test makes a file. h1 undrains h2 meanwhile:
# no watch tells h2, its read then no longer holds drain/h2. h2 must see
# itself up (and so must h1), and a desktop pinned to h2 starts there.
. "$(dirname "$0")/lib.sh"

[ "$(id -u)" = 0 ] || skip "needs root (network namespaces)"
[ -r /dev/kvm ] || skip "no /dev/kvm"
grep -q "QDESK_TEST_HOOKS" "$top/build/build.ninja" ||
	fail "qmpd is built without test hooks (meson configure build -Dtest_hooks=true)"
. "$top/tests/lib/cluster-lib.sh"
cluster_test_up 2 5 5

hqq h1 host drain h2 >/dev/null
hosts_see h2 draining
lines=$(wc -l <"$h2_LOG")
QDESK_TEST_HOOK=join-read-late:h2 cluster_qmpd_restart h2
until_ok 20 "h2's join holds its read back (test hook)" \
    "tail -n +$((lines + 1)) '$h2_LOG' | grep -aq 'test hook join-read-late: the read waits'"
hqq h1 host undrain h2 >/dev/null
until_ok 10 "h1 sees h2 undrained" '[ "$(host_state h1 h2)" = up ]'
[ "$(host_state h2 h2)" = draining ] || fail "h2 sees itself $(host_state h2 h2) before its read"
touch "$h2_STATE/join-read-go"
hosts_see h2 up
log "h2 undrained while its join's read was held back: it sees itself up: ok"

hqq h1 vm create pin --accel kvm --disk "$(tiny_disk pin)" --memory 32 \
    --display none --host h2 >/dev/null
out=$(hqq h1 vm start pin)
[ "$out" = "pin: running" ] || fail "vm start pin (pinned to h2): $out"
[ "$(runs_on pin)" = h2 ] || fail "pin runs on '$(runs_on pin)', not h2"
log "a desktop pinned to h2 starts there: ok"
exit 0
