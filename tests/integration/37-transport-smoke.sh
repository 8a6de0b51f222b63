#!/usr/bin/env bash
# bench/transport/run for a few seconds, LAN only, redraw guest, SPICE lan
# and RDP planar, so the bench does not rot: each path's row is there with
# frames and bytes counted on the client namespace's wire, and neither
# namespace nor relay is left behind.
. "$(dirname "$0")/lib.sh"

out=$T/bench.out
"$top/bench/transport/run" --secs 3 --links lan --workloads redraw \
    --paths "spice-lan rdp-planar" --md "$T/table.md" >"$out" 2>&1 ||
	fail "bench/transport/run failed: $(grep -v ' qmpd: ' "$out" | tail -20)"
for p in spice-lan rdp-planar; do
	row=$(grep "^| redraw | $p | lan |" "$T/table.md") ||
		fail "no $p row: $(cat "$T/table.md")"
	awk -F' \\| ' '{ exit !($4 + 0 > 0 && $5 + 0 > 0) }' <<<"$row" ||
		fail "$p counted nothing: $row"
	log "$row"
done
# The bench's namespaces are named after its pid: none may be left.
ip netns list | grep -q '^qtb-' && fail "namespaces left: $(ip netns list | grep '^qtb-')"
log ok
