#!/usr/bin/env python3
"""Slow clients for the broker's connection-limit test (37-broker-limits).

slow-clients.py SRC KIND:PORT:COUNT... opens COUNT connections from local
address SRC to each 127.0.0.1:PORT and keeps each one busy the slow way:
  portal  TLS handshake, then a request head one byte a second
  proxy   a CONNECT request head one byte a second
  rdp     nothing at all (a client that never logs in)
It prints "ready" once every connection is open, then, when all are closed
(or after 60 s), one JSON line: per kind, how many the broker closed within
5 s of connecting ("refused", before any deadline) and the seconds each of the others lasted.
"""
import json
import select
import socket
import ssl
import sys
import time

HEAD = {
    "portal": b"GET /api/health HTTP/1.1\r\nHost: x\r\nX-Pad: " + b"a" * 200,
    "proxy": b"CONNECT qdesk-x-1-00:5900 HTTP/1.1\r\nX-Pad: " + b"a" * 200,
    "rdp": b"",
}


def main():
    src = sys.argv[1]
    conns = []
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    for spec in sys.argv[2:]:
        kind, port, count = spec.split(":")
        for _ in range(int(count)):
            s = socket.socket()
            s.bind((src, 0))
            t0 = time.monotonic()
            try:
                s.connect(("127.0.0.1", int(port)))
                if kind == "portal":
                    s.settimeout(5)
                    s = ctx.wrap_socket(s)
            except (OSError, ssl.SSLError):
                conns.append({"kind": kind, "t0": t0, "end": time.monotonic(), "s": None})
                continue
            s.setblocking(False)
            conns.append({"kind": kind, "t0": t0, "end": None, "s": s, "sent": 0})
    print("ready", flush=True)
    deadline = time.monotonic() + 60
    last = 0
    while time.monotonic() < deadline:
        live = [c for c in conns if c["end"] is None]
        if not live:
            break
        now = time.monotonic()
        if now - last >= 1:
            last = now
            for c in live:
                head = HEAD[c["kind"]]
                if c["sent"] < len(head):
                    try:
                        c["s"].send(head[c["sent"]:c["sent"] + 1])
                        c["sent"] += 1
                    except (BlockingIOError, ssl.SSLWantWriteError):
                        pass
                    except OSError:
                        c["end"] = time.monotonic()
        socks = [c["s"] for c in live if c["end"] is None]
        r, _, _ = select.select(socks, [], [], 0.2)
        for c in live:
            if c["s"] in r:
                try:
                    data = c["s"].recv(4096)
                except (BlockingIOError, ssl.SSLWantReadError):
                    continue
                except OSError:
                    data = b""
                if not data:
                    c["end"] = time.monotonic()
    out = {}
    for c in conns:
        k = out.setdefault(c["kind"], {"refused": 0, "lasted": [], "open": 0})
        if c["end"] is None:
            k["open"] += 1
        elif c["end"] - c["t0"] < 5:
            k["refused"] += 1
        else:
            k["lasted"].append(round(c["end"] - c["t0"], 1))
    print(json.dumps(out), flush=True)


main()
