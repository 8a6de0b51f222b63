#!/usr/bin/env python3
"""Follow a VM's serial log across a migration, timestamping each line.

serial-follow.py OUT LOG [LOG...]: opens each serial.log as it appears (a
migration target's appears late), reads what QEMU appends every 10 ms
(from the open file, so a source's log that is removed stays readable)
and writes "MONOTONIC_SECONDS INDEX LINE" to OUT for each line, flushed,
until killed. INDEX is the position of the log in the list that ended
the line. One buffer for all: the guest writes through one QEMU at a
time, and a line the source began can end on the target. It never
connects to the serial socket: a client on a migration target's socket
during the migration leaves the port's input dead afterwards (QEMU 7.2)."""
import os
import sys
import time

out = open(sys.argv[1], "a", buffering=1)
paths = sys.argv[2:]
files = {}
buf = b""
while True:
    for i, p in enumerate(paths):
        if i not in files and os.path.exists(p):
            f = open(p, "rb")
            f.seek(0, os.SEEK_END)
            files[i] = f
    now = time.monotonic()
    for i, f in files.items():
        data = f.read()
        if not data:
            continue
        buf += data
        while b"\n" in buf:
            line, buf = buf.split(b"\n", 1)
            text = line.decode("utf-8", "replace").strip("\r")
            out.write("%.4f %d %s\n" % (now, i, text))
    time.sleep(0.01)
