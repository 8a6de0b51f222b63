#!/usr/bin/env python3
"""Type one line into a VM's serial console (QEMU's chardev socket) and
close once QEMU has read every byte of it.

    serial-send.py SOCKET LINE [SECONDS]

QEMU reads the socket only as fast as the guest drains the UART's FIFO,
and drops what it has not read when the client closes. `socat -t1` held
every line for a fixed second: too long for a quick guest, too short for
a long line into a slow TCG guest. Here the socket's send queue
(SIOCOUTQ: bytes the peer has not read yet) says when QEMU has it all.
Exit 0 when it has; 1 with one line on stderr when not within SECONDS
(default 20: a guest not reading its console, or no VM on the socket).
"""
import fcntl
import socket
import struct
import sys
import termios
import time


def main():
    path, line = sys.argv[1], sys.argv[2]
    secs = float(sys.argv[3]) if len(sys.argv) > 3 else 20.0
    data = (line + "\n").encode()
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.settimeout(secs)
    try:
        s.connect(path)
        s.sendall(data)
    except OSError as e:
        sys.exit(f"serial-send: {path}: {e}")
    end = time.monotonic() + secs
    buf = bytearray(4)
    while True:
        fcntl.ioctl(s.fileno(), termios.TIOCOUTQ, buf)
        left = struct.unpack("i", buf)[0]
        if left == 0:
            break
        if time.monotonic() > end:
            sys.exit(f"serial-send: {path}: the guest did not read the "
                     f"line within {secs:g} s ({len(data)} bytes)")
        time.sleep(0.01)
    s.close()


main()
