#!/usr/bin/env python3
"""ICMP echo to one address, for hosts without ping(8) (root: a raw socket).

  icmp-stream.py ADDR INTERVAL_S     a request every INTERVAL_S until killed;
                                     one line per reply, ping -D's shape:
                                     "[UNIX_TIME] 64 bytes from ADDR: icmp_seq=N"
  icmp-stream.py --once ADDR         exit 0 if ADDR answers within 1 s, else 1
"""
import os
import select
import signal
import socket
import struct
import sys
import time


def checksum(data):
    if len(data) % 2:
        data += b"\0"
    s = sum(struct.unpack("!%dH" % (len(data) // 2), data))
    s = (s >> 16) + (s & 0xFFFF)
    s += s >> 16
    return ~s & 0xFFFF


def request(ident, seq):
    body = struct.pack("!d", time.time()) + b"qdesk-icmp-stream"
    hdr = struct.pack("!BBHHH", 8, 0, 0, ident, seq)
    return struct.pack("!BBHHH", 8, 0, checksum(hdr + body), ident, seq) + body


def replies(sock, addr, ident):
    """The sequence numbers of the echo replies waiting on sock."""
    out = []
    while True:
        try:
            pkt, src = sock.recvfrom(2048)
        except BlockingIOError:
            return out
        ihl = (pkt[0] & 0x0F) * 4
        if src[0] != addr or len(pkt) < ihl + 8:
            continue
        typ, _, _, rid, seq = struct.unpack("!BBHHH", pkt[ihl:ihl + 8])
        if typ == 0 and rid == ident:
            out.append(seq)


def main():
    once = len(sys.argv) == 3 and sys.argv[1] == "--once"
    if not once and len(sys.argv) != 3:
        sys.exit(__doc__)
    addr = sys.argv[2] if once else sys.argv[1]
    interval = 1.0 if once else float(sys.argv[2])
    ident = os.getpid() & 0xFFFF
    sock = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_ICMP)
    sock.setblocking(False)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    seq = 0
    nxt = time.monotonic()
    while True:
        now = time.monotonic()
        if now >= nxt:
            if once and seq > 0:
                sys.exit(1)
            seq = (seq + 1) & 0xFFFF
            try:
                sock.sendto(request(ident, seq), (addr, 0))
            except OSError:
                pass  # no route or neighbour yet: the next one may go
            nxt += interval
            continue
        r, _, _ = select.select([sock], [], [], nxt - now)
        if not r:
            continue
        for s in replies(sock, addr, ident):
            if once:
                sys.exit(0)
            print("[%.6f] 64 bytes from %s: icmp_seq=%d" % (time.time(), addr, s),
                  flush=True)


if __name__ == "__main__":
    main()
