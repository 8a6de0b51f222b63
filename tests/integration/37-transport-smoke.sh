#!/usr/bin/env bash
# bench/transport/run for a few seconds, LAN only, redraw guest, SPICE lan
# and RDP planar, so the bench does not rot: each path's row is there with
# frames and bytes counted on the client namespace's wire, and neither of
# the bench's namespaces is left behind.
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
# The bench's own namespaces (named after its pid) are gone.
set -- $(sed -n 's/^run: namespaces //p' "$out")
[ $# = 2 ] || fail "the bench did not name its namespaces"
for ns; do
	ip netns list | grep -q "^$ns\b" && fail "namespace $ns left behind"
done
log ok
