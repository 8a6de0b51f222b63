/*
 * RDP input in QEMU's terms, pure. Keys: RDP sends PC scancodes (set 1)
 * with an "extended" flag for the E0 prefix; QEMU's extended key event
 * takes the same code as a "qnum" (E0 xx becomes 0x80 | xx), so nothing
 * depends on a keyboard layout. Mouse: RDP's button flags become an RFB
 * button mask; the wheel is a press and release of buttons 4/5 (6/7
 * horizontally).
 */
#include <stdint.h>

#include <freerdp/input.h>

#include "compat.h"
#include "rdp-int.h"

#define RDP_QNUM_PAUSE		0xc6

/*
 * The qnum of an RDP key event, 0 when there is nothing to send (the
 * first half of Pause, or a code QEMU has no key for); *down is set.
 */
uint32_t
rdp_input_qnum(struct rdp_inputstate *in, uint16_t flags, uint16_t code,
    int *down)
{
	code &= 0xff;
	*down = (flags & KBD_FLAGS_RELEASE) ? 0 : 1;

	/* Pause is E1 1D 45: Ctrl with E1, then NumLock's code. */
	if (flags & KBD_FLAGS_EXTENDED1) {
		in->e1 = (code == 0x1d);
		return (0);
	}
	if (in->e1) {
		in->e1 = 0;
		if (code == 0x45)
			return (RDP_QNUM_PAUSE);
	}
	if (code == 0 || code >= 0x80)
		return (0);
	if (flags & KBD_FLAGS_EXTENDED)
		return (0x80 | code);
	return (code);
}

/* US keysyms by qnum, only for a VNC server without extended keys. */
static const struct {
	uint8_t		qnum;
	uint32_t	keysym;
} rdp_input_keysyms[] = {
	/* keep this list sorted by qnum */
	{ 0x01, 0xff1b }, { 0x02, '1' }, { 0x03, '2' }, { 0x04, '3' },
	{ 0x05, '4' }, { 0x06, '5' }, { 0x07, '6' }, { 0x08, '7' },
	{ 0x09, '8' }, { 0x0a, '9' }, { 0x0b, '0' }, { 0x0c, '-' },
	{ 0x0d, '=' }, { 0x0e, 0xff08 }, { 0x0f, 0xff09 }, { 0x10, 'q' },
	{ 0x11, 'w' }, { 0x12, 'e' }, { 0x13, 'r' }, { 0x14, 't' },
	{ 0x15, 'y' }, { 0x16, 'u' }, { 0x17, 'i' }, { 0x18, 'o' },
	{ 0x19, 'p' }, { 0x1a, '[' }, { 0x1b, ']' }, { 0x1c, 0xff0d },
	{ 0x1d, 0xffe3 }, { 0x1e, 'a' }, { 0x1f, 's' }, { 0x20, 'd' },
	{ 0x21, 'f' }, { 0x22, 'g' }, { 0x23, 'h' }, { 0x24, 'j' },
	{ 0x25, 'k' }, { 0x26, 'l' }, { 0x27, ';' }, { 0x28, '\'' },
	{ 0x29, '`' }, { 0x2a, 0xffe1 }, { 0x2b, '\\' }, { 0x2c, 'z' },
	{ 0x2d, 'x' }, { 0x2e, 'c' }, { 0x2f, 'v' }, { 0x30, 'b' },
	{ 0x31, 'n' }, { 0x32, 'm' }, { 0x33, ',' }, { 0x34, '.' },
	{ 0x35, '/' }, { 0x36, 0xffe2 }, { 0x37, 0xffaa }, { 0x38, 0xffe9 },
	{ 0x39, ' ' }, { 0x3a, 0xffe5 }, { 0x3b, 0xffbe }, { 0x3c, 0xffbf },
	{ 0x3d, 0xffc0 }, { 0x3e, 0xffc1 }, { 0x3f, 0xffc2 }, { 0x40, 0xffc3 },
	{ 0x41, 0xffc4 }, { 0x42, 0xffc5 }, { 0x43, 0xffc6 }, { 0x44, 0xffc7 },
	{ 0x45, 0xff7f }, { 0x46, 0xff14 }, { 0x47, 0xffb7 }, { 0x48, 0xffb8 },
	{ 0x49, 0xffb9 }, { 0x4a, 0xffad }, { 0x4b, 0xffb4 }, { 0x4c, 0xffb5 },
	{ 0x4d, 0xffb6 }, { 0x4e, 0xffab }, { 0x4f, 0xffb1 }, { 0x50, 0xffb2 },
	{ 0x51, 0xffb3 }, { 0x52, 0xffb0 }, { 0x53, 0xffae }, { 0x57, 0xffc8 },
	{ 0x58, 0xffc9 }, { 0x9c, 0xff8d }, { 0x9d, 0xffe4 }, { 0xb5, 0xffaf },
	{ 0xb7, 0xff61 }, { 0xb8, 0xffea }, { 0xc6, 0xff13 }, { 0xc7, 0xff50 },
	{ 0xc8, 0xff52 }, { 0xc9, 0xff55 }, { 0xcb, 0xff51 }, { 0xcd, 0xff53 },
	{ 0xcf, 0xff57 }, { 0xd0, 0xff54 }, { 0xd1, 0xff56 }, { 0xd2, 0xff63 },
	{ 0xd3, 0xffff }, { 0xdb, 0xffeb }, { 0xdc, 0xffec }, { 0xdd, 0xff67 },
};

/* The US keysym of a qnum, 0 when unknown (binary search). */
uint32_t
rdp_input_keysym(uint32_t qnum)
{
	size_t	lo = 0, hi = nitems(rdp_input_keysyms), mid;

	while (lo < hi) {
		mid = (lo + hi) / 2;
		if (rdp_input_keysyms[mid].qnum == qnum)
			return (rdp_input_keysyms[mid].keysym);
		if (rdp_input_keysyms[mid].qnum < qnum)
			lo = mid + 1;
		else
			hi = mid;
	}
	return (0);
}

/*
 * Apply an RDP mouse event to the button mask and return the new mask.
 * A wheel turn sets *wheel to the RFB button to click (8, 16, 32 or 64),
 * else 0.
 */
int
rdp_input_mouse(struct rdp_inputstate *in, uint16_t flags, int *wheel)
{
	int	bit = 0;

	*wheel = 0;
	if (flags & PTR_FLAGS_WHEEL) {
		*wheel = (flags & PTR_FLAGS_WHEEL_NEGATIVE) ? 16 : 8;
		return (in->buttons);
	}
	if (flags & PTR_FLAGS_HWHEEL) {
		*wheel = (flags & PTR_FLAGS_WHEEL_NEGATIVE) ? 32 : 64;
		return (in->buttons);
	}
	if (flags & PTR_FLAGS_BUTTON1)
		bit = 1;
	else if (flags & PTR_FLAGS_BUTTON3)
		bit = 2;
	else if (flags & PTR_FLAGS_BUTTON2)
		bit = 4;
	if (bit != 0) {
		if (flags & PTR_FLAGS_DOWN)
			in->buttons |= bit;
		else
			in->buttons &= ~bit;
	}
	return (in->buttons);
}

/* A coordinate on a from-wide axis mapped onto a to-wide one. */
int
rdp_input_scale(int v, int from, int to)
{
	if (from <= 0 || to <= 0)
		return (0);
	if (from == to)
		return (v);
	v = (int)((int64_t)v * to / from);
	return (v >= to ? to - 1 : v);
}
