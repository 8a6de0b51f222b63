"""The guest's USB tablet events, as the test guest's evtest loop prints
them on its serial console ("QEV" and a struct input_event in hex): the
ABS_X and ABS_Y positions and the left button's values, in order.
Used by 43-rdp-mouse and 93-rdp-scale-fixed."""

import re
import struct


def tablet_events(serial_log):
    log = open(serial_log, "rb").read().decode("latin-1")
    evs = []
    for h in re.findall(r"QEV ([0-9a-f]{48})", log):
        typ, code, val = struct.unpack("<HHi", bytes.fromhex(h)[16:24])
        evs.append((typ, code, val))
    absx = [v for t, c, v in evs if t == 3 and c == 0]
    absy = [v for t, c, v in evs if t == 3 and c == 1]
    btn = [v for t, c, v in evs if t == 1 and c == 0x110]
    return evs, absx, absy, btn
