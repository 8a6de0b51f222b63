#!/usr/bin/env bash
# test: lock tcg-heavy  (a 1080p TCG guest that takes a core, and three clients: not beside the other whole-core TCG tests; it asserts no timing but the WAN RTT floor, which load only raises)
# bench/transport/run's client-screen rows for a few seconds on the WAN
# link, so they do not rot: key press to pixel through SPICE
# (remote-viewer), RDP planar (xfreerdp) and the browser console (noVNC in
# headless Chromium), each with keys echoed (p50 and p95 present, every
# key lost would leave them out) and bytes on the wire; the still console
# through the browser; and video1080.img through SPICE: its screen is
# 1920x1080 (QEMU's screendump) and frames reach the client.
. "$(dirname "$0")/lib.sh"

out=$T/bench.out
# The bench's own lines (run: ...) reach this log as they come, so a run
# ended by the timeout still shows how far it got.
"$top/bench/transport/run" --secs 3 --links wan \
    --workloads "keys still video1080" \
    --paths "spice-lan rdp-planar browser" --md "$T/table.md" 2>&1 |
	tee "$out" | grep --line-buffered '^run: ' >&2
[ "${PIPESTATUS[0]}" = 0 ] ||
	fail "bench/transport/run failed: $(grep -v ' qmpd: ' "$out" | tail -20)"
cat "$T/table.md" >&2
# row WORKLOAD PATH: the table's row (| separated, trimmed fields in $R).
row() {
	local r
	r=$(grep "^| $1 | $2 | wan |" "$T/table.md") ||
		fail "no $1 $2 row: $(grep -v ' qmpd: ' "$out" | tail -20)"
	IFS='|' read -r -a R <<<"$(sed 's/ *| */|/g' <<<"$r")"
}
for p in spice-lan rdp-planar browser; do
	row keys "$p"
	# ${R[4]} frames/s, ${R[5]} Mbit/s, ${R[8]} "p50 / p95".
	[[ ${R[8]} =~ ^[0-9]+\ /\ [0-9]+$ ]] || fail "keys on $p: no key press to pixel: ${R[*]}"
	awk -v f="${R[4]}" -v m="${R[5]}" 'BEGIN { exit !(f > 0 && m > 0) }' ||
		fail "keys on $p: no frames or no bytes: ${R[*]}"
	# The WAN link's 30 ms RTT is the floor of every key.
	[ "${R[8]%% *}" -ge 30 ] || fail "keys on $p faster than the link's RTT: ${R[*]}"
	grep -q "run: $p wan: .*echoed" "$out" || grep -q "run: $p wan: {" "$out" ||
		fail "keys on $p: no per-key summary in the log"
done
row still browser
# A still console sends nothing (its WebSocket is silent between pings),
# so 0 is a right answer: the row must only have been measured.
[[ ${R[5]} =~ ^[0-9]+\.[0-9]+( |$) ]] || fail "still on the browser: no figure: ${R[*]}"
# Measured after the page load's other connections closed (workloads.sh).
grep -q "^run: browser page load's other connections closed after" "$out" ||
	fail "the browser rows did not wait for the page's connections"
row video1080 spice-lan
awk -v f="${R[4]}" 'BEGIN { exit !(f > 0) }' || fail "video1080: no frames: ${R[*]}"
grep -q "^run: video1080-lan screen 1920x1080$" "$out" ||
	fail "video1080.img's screen: $(grep "^run: video1080-lan screen" "$out")"
log ok
