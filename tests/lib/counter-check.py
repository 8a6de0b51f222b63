#!/usr/bin/env python3
"""counter-check.py FILE: the counter a serial-follow.py file saw across a
migration (serial logs 0 and 1): continuous (each CTR line one more than
the last) and one boot (uptime goes on); prints "last first gap_ms
median_gap_ms switch_ms", or exits with why not."""
import sys
rows = []
for l in open(sys.argv[1]):
    p = l.split()
    if len(p) == 5 and p[2] == "CTR":
        rows.append((float(p[0]), int(p[1]), int(p[3]), float(p[4])))
src = [r for r in rows if r[1] == 0]
dst = [r for r in rows if r[1] == 1]
if not src or not dst:
    sys.exit("counter not seen on both sides: %d %d" % (len(src), len(dst)))
n = [r[2] for r in rows]
for a, b in zip(n, n[1:]):
    if b != a + 1:
        sys.exit("counter jumps from %d to %d" % (a, b))
gaps = sorted(b[0] - a[0] for a, b in zip(rows, rows[1:]))
gap = gaps[-1]
med = gaps[len(gaps) // 2]
switch = dst[0][0] - src[-1][0]
up = dst[0][3] - src[-1][3]
if up < 0 or up > 2:
    sys.exit("uptime went from %.2f to %.2f: not the same boot" % (src[-1][3], dst[0][3]))
print("%d %d %d %d %d" % (src[-1][2], dst[0][2], gap * 1000, med * 1000, switch * 1000))
