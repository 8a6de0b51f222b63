#!/usr/bin/env python3
"""Follow a VM's serial socket across a migration, timestamping each line.

serial-follow.py OUT SOCK [SOCK...]: connects to every socket as it
appears (a migration target's appears late), reads it without pause (an
unread QEMU serial socket stalls the guest's console) and writes
"MONOTONIC_SECONDS INDEX LINE" to OUT for each line, flushed, until
killed. INDEX is the position of the socket in the list that ended the
line. One buffer for all: the guest writes to one socket at a time, and
a line the source began can end on the target."""
import os
import select
import socket
import sys
import time

out = open(sys.argv[1], "a", buffering=1)
paths = sys.argv[2:]
conns = {}
buf = b""
while True:
    for i, p in enumerate(paths):
        if i in conns or not os.path.exists(p):
            continue
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            s.connect(p)
        except OSError:
            s.close()
            continue
        conns[i] = s
    socks = {s: i for i, s in conns.items()}
    r = select.select(list(socks), [], [], 0.02)[0] if socks else []
    if not socks:
        time.sleep(0.02)
    now = time.monotonic()
    for s in r:
        i = socks[s]
        try:
            data = s.recv(65536)
        except OSError:
            data = b""
        if not data:
            s.close()
            del conns[i]
            paths[i] = "/nonexistent"   # a closed source stays closed
            continue
        buf += data
        while b"\n" in buf:
            line, buf = buf.split(b"\n", 1)
            text = line.decode("utf-8", "replace").strip("\r")
            out.write("%.4f %d %s\n" % (now, i, text))
