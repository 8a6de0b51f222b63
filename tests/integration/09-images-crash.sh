#!/usr/bin/env bash
# kill -9 of qmpd in the middle of a loop of clones, removals and VMs made
# --from the base, six times at random moments: after each restart verify
# names what the crash left (never a record without its file), gc removes
# exactly that, verify is then clean, a second gc finds nothing, and every
# indexed image is a valid overlay of the base per qemu-img.
. "$(dirname "$0")/lib.sh"

start_qmpd
qemu-img create -q -f qcow2 "$T/base.qcow2" 1G
qq image import base "$T/base.qcow2" >/dev/null
removed=0
made=0

for round in 1 2 3 4 5 6; do
	(
		i=0
		while :; do
			i=$((i + 1))
			if [ $((i % 4)) = 0 ]; then
				"$QDESK_BIN" vm create "v$round-$i" --display none \
				    --from base --kernel "$GUESTS/vmlinuz" \
				    >/dev/null 2>&1
			else
				"$QDESK_BIN" image clone base "r$round-$i" \
				    >/dev/null 2>&1
			fi
			[ $((i % 3)) = 0 ] &&
				"$QDESK_BIN" image rm "r$round-$((i - 2))" \
				    >/dev/null 2>&1
		done
	) &
	loop=$!
	sleep "0.$((RANDOM % 6 + 3))"
	kill9_qmpd
	kill "$loop" 2>/dev/null
	wait "$loop" 2>/dev/null
	start_qmpd

	# What the crash left is named, not hidden.
	q --json image verify > "$T/before.json" 2>/dev/null
	jq -r '.problems[] | select(.problem | test("gc removes it")) | .file' \
	    "$T/before.json" | sort > "$T/flagged"
	# Besides files: a disk cloned and used for a VM whose definition
	# the crash kept from being saved (gc drops the user).
	jq -r '.problems[] | .problem' "$T/before.json" |
		grep -v "gc removes it" | grep -v "as a user, but there is no such VM" |
		grep . && fail "round $round: verify: $(cat "$T/before.json")"
	out=$(qq --json image gc)
	echo "$out" | jq -r '.items[] | select(.action == "removed") | .file' |
		sort > "$T/removed"
	comm -23 "$T/flagged" "$T/removed" | grep . &&
		fail "round $round: flagged but not removed: $out"
	removed=$((removed + $(wc -l < "$T/removed")))
	out=$(qq --json image verify)
	[ "$(echo "$out" | jq .ok)" = true ] ||
		fail "round $round: verify after gc: $out"
	out=$(qq --json image gc)
	[ "$(echo "$out" | jq '.items | length')" = 0 ] ||
		fail "round $round: a second gc found: $out"
	# Every record's file is there and is an overlay of the base.
	for f in $(q --json image list | jq -r '.images[] | select(.parent == "base") | .file'); do
		qemu-img check -q "$STATE/images/$f" ||
			fail "round $round: $f fails qemu-img check"
		qemu-img info "$STATE/images/$f" | grep -q "^backing file: base-" ||
			fail "round $round: $f does not back onto the base"
	done
	# Every VM made --from has its disk.
	for v in $(q --json vm list | jq -r '.vms[] | .name'); do
		q --json image show "$v-disk" >/dev/null ||
			fail "round $round: VM $v has no disk"
	done
	n=$(q --json image list | jq '.images | length')
	made=$n
	log "round $round: $n images, gc removed $(wc -l < "$T/removed") files"
done
[ "$made" -gt 6 ] || fail "the loop made almost nothing ($made images)"
log "ok: $made images indexed, $removed leftovers removed over 6 crashes"
