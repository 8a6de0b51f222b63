#!/usr/bin/env bash
# Templates between hosts (issue 13): a template imported on h1 only is
# hashed there and its sum published in etcd (images/NAME). With h1
# drained, a desktop made from it is placed on h2, which fetches the file
# from h1 over the cluster's mutual TLS, checks size and sha256 against
# etcd's, and only then indexes it: one file in h2's store, the same sum
# as h1's. Three starts at once that need one template share one fetch.
# A copy that does not match (h1's file corrupted after its sum was
# published) is refused with a clear error and nothing is registered; the
# next start, with the source repaired, fetches again and runs.
# A template removed by its publisher (h1) takes images/NAME with it;
# imported again with other content, etcd has the new sum; h2's copy of
# the old one is stale: not listed in hosts/h2 (never a source), and the
# next start there removes it and fetches the new one from h1. A newer
# import of a name on another host, with other content, replaces
# images/NAME; the older copy is stale there.
. "$(dirname "$0")/lib.sh"

[ "$(id -u)" = 0 ] || skip "needs root (network namespaces)"
[ -r /dev/kvm ] || skip "no /dev/kvm"
. "$top/tests/lib/cluster-lib.sh"
cluster_test_up 2

# The sum h1 published for template $1 (its log line), waiting for it.
published() {
	local i
	for i in $(seq 1 150); do
		grep -q "cluster: template $1 published" "$h1_LOG" && break
		sleep 0.1
	done
	grep -q "cluster: template $1 published" "$h1_LOG" ||
		fail "h1 never published template $1: $(grep "template $1" "$h1_LOG")"
	sed -n "s/.*cluster: template $1: sha256 \([0-9a-f]\{64\}\).*/\1/p" "$h1_LOG" | tail -1
}
# The files of image $2 in host $1's store (temporary ones too).
store_files() {
	local st=${1}_STATE
	find "${!st}/images" -maxdepth 1 -name "$2-*" -o -maxdepth 1 -name ".tmp-$2-*" | sort
}
wait_drained() {
	local i
	for i in $(seq 1 100); do
		[ "$(hq h2 --json host list | jq -r '.hosts[] | select(.name == "h1") | .state')" = draining ] && return 0
		sleep 0.1
	done
	fail "h2 does not see h1 draining"
}

hqq h1 image import tpl "$GUESTS/boot.img" >/dev/null
sum=$(published tpl)
f1=$(store_files h1 tpl)
[ "$(sha256sum "$f1" | cut -d' ' -f1)" = "$sum" ] ||
	fail "h1 published $sum for tpl, its file $f1 has $(sha256sum "$f1")"
[ -z "$(store_files h2 tpl)" ] || fail "h2 has tpl before anything needs it"
hqq h1 host drain h1 >/dev/null
wait_drained

# A desktop from tpl: placed on h2, which fetches it first.
hqq h1 vm create t1 --from tpl --accel kvm --memory 32 --display none >/dev/null
out=$(hqq h1 vm start t1)
[ "$out" = "t1: running" ] || fail "vm start t1: $out"
[ "$(runs_on t1)" = h2 ] || fail "t1 runs on '$(runs_on t1)', not h2"
grep -q "cluster: template tpl fetched from host h1: [0-9]* bytes, sha256 $sum" "$h2_LOG" ||
	fail "h2 logged no fetch of tpl with h1's sum $sum: $(grep 'template tpl' "$h2_LOG")"
f2=$(store_files h2 tpl)
{ [ -n "$f2" ] && [ "$(echo "$f2" | wc -l)" = 1 ]; } || fail "h2's store holds '$f2' for tpl"
[ "$(sha256sum "$f2" | cut -d' ' -f1)" = "$sum" ] || fail "h2's copy $f2 is not $sum"
[ "$(hq h2 --json image show tpl | jq -r .kind)" = base ] ||
	fail "h2 has not indexed tpl: $(hq h2 --json image show tpl 2>&1)"
hq h2 --json image show t1-disk | jq -e '.parent == "tpl"' >/dev/null ||
	fail "t1's disk on h2 is not a linked clone of tpl: $(hq h2 --json image show t1-disk 2>&1)"
log "tpl fetched by h2 from h1 (sha256 equal), t1 a linked clone on h2: ok"

# Three starts at once, one fetch.
hqq h1 image import tpl3 "$GUESTS/boot.img" >/dev/null
published tpl3 >/dev/null
for i in 1 2 3; do
	hqq h1 vm create "c$i" --from tpl3 --accel kvm --memory 32 --display none >/dev/null
done
for i in 1 2 3; do hq h1 vm start "c$i" >"$T/c$i.out" 2>&1 & done
wait
for i in 1 2 3; do
	[ "$(cat "$T/c$i.out")" = "c$i: running" ] || fail "vm start c$i: $(cat "$T/c$i.out")"
	[ "$(runs_on "c$i")" = h2 ] || fail "c$i runs on '$(runs_on "c$i")'"
done
n=$(grep -c "cluster: fetching template tpl3 from host h1" "$h2_LOG")
[ "$n" = 1 ] || fail "h2 fetched tpl3 $n times for 3 starts at once"
[ "$(store_files h2 tpl3 | wc -l)" = 1 ] || fail "h2's store: $(store_files h2 tpl3)"
log "3 starts at once needing tpl3: one fetch: ok"

# A copy that does not match its published sum: refused, nothing kept.
hqq h1 image import bad "$GUESTS/boot.img" >/dev/null
published bad >/dev/null
fb=$(store_files h1 bad)
cp "$fb" "$T/bad.orig"
printf '\377\377\377\377' | dd of="$fb" bs=1 seek=4096 conv=notrunc status=none
hqq h1 vm create b1 --from bad --accel kvm --memory 32 --display none >/dev/null
out=$(hq h1 vm start b1 2>&1) && fail "a start from a corrupted template: $out"
said=$out
echo "$out" | grep -q "template bad from host h1 does not match its checksum" ||
	fail "a corrupted copy said: $out"
[ -z "$(runs_on b1)" ] || fail "b1 runs on $(runs_on b1)"
[ -z "$(store_files h2 bad)" ] || fail "h2 kept $(store_files h2 bad)"
out=$(hq h2 image show bad 2>&1) && fail "h2 registered the bad copy: $out"
log "a corrupted copy: refused, nothing registered: ok ($said)"

# Repaired at the source, the next start fetches again and runs.
cat "$T/bad.orig" >"$fb"
out=$(hqq h1 vm start b1)
[ "$out" = "b1: running" ] || fail "vm start b1 after the repair: $out"
[ "$(runs_on b1)" = h2 ] || fail "b1 runs on '$(runs_on b1)'"
[ "$(store_files h2 bad | wc -l)" = 1 ] || fail "h2's store: $(store_files h2 bad)"
log "the next start fetched it again: ok"

# Removed and imported again with other content: images/re follows, and
# h2's stale copy is replaced at its next start.
hqq h1 image import re "$GUESTS/boot.img" >/dev/null
s1=$(published re)
hqq h1 vm create r1 --from re --accel kvm --memory 32 --display none >/dev/null
[ "$(hqq h1 vm start r1)" = "r1: running" ] || fail "vm start r1"
[ "$(runs_on r1)" = h2 ] || fail "r1 runs on '$(runs_on r1)', not h2"
[ "$(sha256sum "$(store_files h2 re)" | cut -d' ' -f1)" = "$s1" ] ||
	fail "h2's copy of re is not $s1"
hqq h1 vm stop r1 --force >/dev/null
hqq h1 vm delete r1 >/dev/null
until_ok 30 "r1's clone gone from h2 (re has no children there)" \
    "[ \"\$(hq h2 --json image show re | jq -r .children)\" = 0 ]"
hqq h1 image rm re >/dev/null
until_ok 10 "images/re deleted by its publisher's rm" "[ -z \"\$(eget images/re)\" ]"
grep -q "cluster: template re removed by its publisher: images/re deleted" "$h1_LOG" ||
	fail "h1 did not log images/re's removal"
# Other content: the boot sector with a different tail.
cp "$GUESTS/boot.img" "$T/re2.img"
printf 'qdesk re-import' | dd of="$T/re2.img" bs=1 seek=$(( $(stat -c %s "$T/re2.img") - 512 )) conv=notrunc status=none
hqq h1 image import re "$T/re2.img" >/dev/null
s2=$(sha256sum "$(store_files h1 re)" | cut -d' ' -f1)
[ "$s2" != "$s1" ] || fail "h1's new re has the old sum"
until_ok 30 "images/re has the new sum" "[ \"\$(eget images/re | jq -r .sha256)\" = $s2 ]"
until_ok 10 "hosts/h2 no longer lists its stale re" \
    "eget hosts/h2 | jq -e '.templates | index(\"re\") == null' >/dev/null"
eget hosts/h1 | jq -e '.templates | index("re") != null' >/dev/null ||
	fail "hosts/h1 does not list re: $(eget hosts/h1)"
log "re removed on h1 (images/re deleted), imported again: images/re is $s2, h2's old copy not listed: ok"
hqq h1 vm create r2 --from re --accel kvm --memory 32 --display none >/dev/null
out=$(hqq h1 vm start r2)
[ "$out" = "r2: running" ] || fail "vm start r2: $out"
[ "$(runs_on r2)" = h2 ] || fail "r2 runs on '$(runs_on r2)', not h2"
grep -q "cluster: template re here was stale (sha256 $s1, etcd has $s2): removed, fetching the cluster's" "$h2_LOG" ||
	fail "h2 did not drop its stale re: $(grep 'template re' "$h2_LOG")"
grep -q "cluster: template re fetched from host h1: [0-9]* bytes, sha256 $s2" "$h2_LOG" ||
	fail "h2 did not fetch the new re: $(grep 'template re' "$h2_LOG")"
[ "$(store_files h2 re | wc -l)" = 1 ] || fail "h2's store: $(store_files h2 re)"
[ "$(sha256sum "$(store_files h2 re)" | cut -d' ' -f1)" = "$s2" ] ||
	fail "h2's copy of re is not the new $s2"
until_ok 10 "hosts/h2 lists re again" \
    "eget hosts/h2 | jq -e '.templates | index(\"re\") != null' >/dev/null"
log "r2 on h2: the stale copy removed, the new re fetched from h1 (sha256 $s2): ok"

# A newer import of a name on another host, with other content, is the
# reference: images/nw becomes h2's, and h1's older copy is stale.
hqq h1 image import nw "$GUESTS/boot.img" >/dev/null
sa=$(published nw)
sleep 1	# the imports' times are in seconds: h2's is the later one
hqq h2 image import nw "$T/re2.img" >/dev/null
sb=$(sha256sum "$(store_files h2 nw)" | cut -d' ' -f1)
until_ok 30 "images/nw is h2's newer import" \
    "[ \"\$(eget images/nw | jq -r '.sha256 + \" \" + .host')\" = \"$sb h2\" ]"
grep -q "cluster: template nw imported here after the one etcd knows, with other content: images/nw becomes sha256 $sb (was $sa, from host h1)" "$h2_LOG" ||
	fail "h2 did not log its replacing images/nw: $(grep 'template nw' "$h2_LOG")"
until_ok 10 "hosts/h1 no longer lists its older nw" \
    "eget hosts/h1 | jq -e '.templates | index(\"nw\") == null' >/dev/null"
until_ok 10 "h1 says its nw is stale" \
    "grep -q 'cluster: template nw here is not the one etcd knows (sha256 $sa, not $sb, a newer import on host h2)' '$h1_LOG'"
log "nw imported on h1, then with other content on h2: images/nw is h2's, h1's copy stale and not listed: ok"
log "PASS"
