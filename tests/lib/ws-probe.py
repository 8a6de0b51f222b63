#!/usr/bin/env python3
"""A minimal WebSocket client for the browser console's tests.

ws-probe.py URL PATH COOKIE [ORIGIN] [--unmasked]

Opens PATH on the broker's HTTPS URL with the session cookie (the value
of qdesk_session) and Origin (default: the URL itself), and prints the
HTTP status. On a 101 it reads the first binary frame (QEMU's RFB
greeting), prints it, sends a ping and expects its pong, then closes and
prints the close code the broker answers with. --unmasked sends an
unmasked frame instead, which the broker must close with 1002.
"""
import base64
import os
import socket
import ssl
import struct
import sys
import urllib.parse


def frame(op, payload=b"", masked=True):
    head = bytes([0x80 | op])
    n = len(payload)
    m = 0x80 if masked else 0
    if n < 126:
        head += bytes([m | n])
    elif n < 65536:
        head += bytes([m | 126]) + struct.pack(">H", n)
    else:
        head += bytes([m | 127]) + struct.pack(">Q", n)
    if not masked:
        return head + payload
    key = os.urandom(4)
    return head + key + bytes(b ^ key[i % 4] for i, b in enumerate(payload))


def recv_exact(s, n):
    buf = b""
    while len(buf) < n:
        chunk = s.recv(n - len(buf))
        if not chunk:
            raise EOFError("connection closed")
        buf += chunk
    return buf


def read_frame(s):
    b0, b1 = recv_exact(s, 2)
    n = b1 & 0x7F
    if n == 126:
        n = struct.unpack(">H", recv_exact(s, 2))[0]
    elif n == 127:
        n = struct.unpack(">Q", recv_exact(s, 8))[0]
    if b1 & 0x80:
        raise ValueError("the server masked a frame")
    return b0 & 0x0F, recv_exact(s, n)


def main():
    args = [a for a in sys.argv[1:] if not a.startswith("--")]
    unmasked = "--unmasked" in sys.argv
    url, path, cookie = args[0], args[1], args[2]
    origin = args[3] if len(args) > 3 else url.rstrip("/")
    u = urllib.parse.urlparse(url)
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    raw = socket.create_connection((u.hostname, u.port), timeout=20)
    s = ctx.wrap_socket(raw, server_hostname=u.hostname)
    key = base64.b64encode(os.urandom(16)).decode()
    req = (f"GET {path} HTTP/1.1\r\nHost: {u.netloc}\r\n"
           "Upgrade: websocket\r\nConnection: Upgrade\r\n"
           f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n"
           "Sec-WebSocket-Protocol: binary\r\n"
           f"Origin: {origin}\r\nCookie: qdesk_session={cookie}\r\n\r\n")
    s.sendall(req.encode())
    head = b""
    while b"\r\n\r\n" not in head:
        chunk = s.recv(1)
        if not chunk:
            break
        head += chunk
    status = head.split(b" ", 2)[1].decode() if head else "000"
    print(status)
    if status != "101":
        return 0
    op, greeting = read_frame(s)
    print(greeting.decode(errors="replace").strip())
    if unmasked:
        s.sendall(frame(0x2, b"x", masked=False))
    else:
        s.sendall(frame(0x9, b"probe"))
        while True:
            op, data = read_frame(s)
            if op == 0xA and data == b"probe":
                print("pong")
                break
        s.sendall(frame(0x8, struct.pack(">H", 1000)))
    while True:
        op, data = read_frame(s)
        if op == 0x8:
            print("close", struct.unpack(">H", data[:2])[0] if data else 0)
            break
    return 0


if __name__ == "__main__":
    sys.exit(main())
