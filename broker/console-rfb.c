/*
 * console-rfb.c: the browser's side of the RFB stream (RFC 6143), pure.
 * The browser console reads it only to find where each client message
 * ends, so that it can slip an update request of its own in between two
 * messages (console-ws.c). Nothing here changes a byte, and anything it
 * does not know (another security type, RFB 3.3, an unknown message)
 * turns it off for the rest of the connection: the bytes still pass,
 * only the broker stops adding to them.
 */
#include <stdint.h>
#include <string.h>

#include "broker.h"

enum {
	RFB_VERSION,	/* "RFB 003.008\n" */
	RFB_SECTYPE,	/* the security type the client picked */
	RFB_AUTH,	/* a VNC authentication response */
	RFB_INIT,	/* ClientInit: the shared flag */
	RFB_MSG,	/* normal messages */
	RFB_OFF		/* lost: pass everything, inject nothing */
};

/* A client message's length once its first bytes are known. */
static uint64_t
rfb_len_encodings(const unsigned char *h)
{
	return (4 + 4 * (uint64_t)((h[2] << 8) | h[3]));
}

/* ClientCutText; a negative length is the extended clipboard's. */
static uint64_t
rfb_len_cuttext(const unsigned char *h)
{
	uint32_t	v;

	v = ((uint32_t)h[4] << 24) | (h[5] << 16) | (h[6] << 8) | h[7];

	if (v & 0x80000000U)
		v = ~v + 1;
	return (8 + (uint64_t)v);
}

static uint64_t
rfb_len_fence(const unsigned char *h)
{
	return (9 + (uint64_t)h[8]);
}

static uint64_t
rfb_len_desktopsize(const unsigned char *h)
{
	return (8 + 16 * (uint64_t)h[6]);
}

/* QEMU's messages: extended key events and the audio extension. */
static uint64_t
rfb_len_qemu(const unsigned char *h)
{
	if (h[1] == 0)
		return (12);
	if (h[1] == 1 && h[2] == 0 && h[3] <= 1)
		return (4);
	if (h[1] == 1 && h[2] == 0 && h[3] == 2)
		return (10);
	return (0);
}

/*
 * Every client message the console expects: its type, the bytes that
 * tell its length, and how (none: those bytes are the whole message).
 */
static const struct console_rfb_msg {
	int		  type;
	size_t		  head;
	uint64_t	(*len)(const unsigned char *);
} console_rfb_msgs[] = {
	{ RFB_SET_PIXEL_FORMAT,	20, NULL },
	{ RFB_SET_ENCODINGS,	4, rfb_len_encodings },
	{ RFB_UPDATE_REQUEST,	10, NULL },
	{ RFB_KEY_EVENT,	8, NULL },
	{ RFB_POINTER_EVENT,	6, NULL },
	{ RFB_CUT_TEXT,		8, rfb_len_cuttext },
	{ RFB_CONTINUOUS,	10, NULL },
	{ RFB_FENCE,		9, rfb_len_fence },
	{ RFB_XVP,		4, NULL },
	{ RFB_DESKTOP_SIZE,	8, rfb_len_desktopsize },
	{ RFB_QEMU,		4, rfb_len_qemu },
};

static const struct console_rfb_msg *
console_rfb_find(int type)
{
	size_t	i;

	for (i = 0; i < sizeof console_rfb_msgs / sizeof *console_rfb_msgs;
	    i++)
		if (console_rfb_msgs[i].type == type)
			return (&console_rfb_msgs[i]);
	return (NULL);
}

/* How many bytes of the current piece to gather before deciding. */
static size_t
console_rfb_want(const struct console_rfb *r)
{
	switch (r->state) {
	case RFB_VERSION:
		return (12);
	case RFB_AUTH:
		return (16);
	case RFB_MSG:
		return (r->have == 0 ? 1 : console_rfb_find(r->head[0])->head);
	default:
		return (1);
	}
}

/*
 * The piece in r->head is complete: move on, or set how many bytes of
 * it are still to pass (r->skip). Returns 1 at the end of a message.
 */
static int
console_rfb_piece(struct console_rfb *r)
{
	const struct console_rfb_msg	*m;
	uint64_t			 len;

	switch (r->state) {
	case RFB_VERSION:
		/* 3.3 lets the server pick the security type unseen here. */
		if (memcmp(r->head, "RFB 003.", 8) != 0 ||
		    memcmp(r->head + 8, "007", 3) < 0)
			r->state = RFB_OFF;
		else
			r->state = RFB_SECTYPE;
		break;
	case RFB_SECTYPE:
		if (r->head[0] == 1)
			r->state = RFB_INIT;
		else if (r->head[0] == 2)
			r->state = RFB_AUTH;
		else
			r->state = RFB_OFF;
		break;
	case RFB_AUTH:
		r->state = RFB_INIT;
		break;
	case RFB_INIT:
		r->state = RFB_MSG;
		break;
	case RFB_MSG:
		if ((m = console_rfb_find(r->head[0])) == NULL) {
			r->state = RFB_OFF;
			return (0);
		}
		if (r->have < m->head)
			return (0);	/* more of the head first */
		len = m->len != NULL ? m->len(r->head) : m->head;
		if (len < m->head) {
			r->state = RFB_OFF;
			return (0);
		}
		r->skip = len - m->head;
		if (m->type == RFB_UPDATE_REQUEST) {
			r->requests++;
			memcpy(r->request, r->head, sizeof r->request);
		}
		if (m->type < (int)(sizeof r->count / sizeof *r->count))
			r->count[m->type]++;
		else if (m->type == RFB_QEMU && r->head[1] == 0)
			r->count[RFB_KEY_EVENT]++;	/* noVNC's key events */
		r->have = 0;
		return (r->skip == 0);
	}
	r->have = 0;
	return (0);
}

/*
 * Take up to len client bytes, stopping just after the first message
 * that ends within them; returns how many were taken (all of them once
 * the parser is off).
 */
size_t
console_rfb_scan(struct console_rfb *r, const unsigned char *buf, size_t len)
{
	size_t		off = 0, n;

	while (off < len && r->state != RFB_OFF) {
		if (r->skip > 0) {
			n = len - off < r->skip ? len - off : (size_t)r->skip;
			r->skip -= n;
			off += n;
			if (r->skip == 0 && r->state == RFB_MSG)
				return (off);
			continue;
		}
		r->head[r->have++] = buf[off++];
		if (r->state == RFB_MSG && r->have == 1 &&
		    console_rfb_find(r->head[0]) == NULL) {
			r->state = RFB_OFF;
			break;
		}
		if (r->have < console_rfb_want(r))
			continue;
		if (console_rfb_piece(r))
			return (off);
	}
	return (r->state == RFB_OFF ? len : off);
}

/*
 * Whether the broker may add a message now: between two client messages,
 * after the browser has asked for updates itself (so its first request,
 * its encodings and pixel format went first).
 */
int
console_rfb_idle(const struct console_rfb *r)
{
	return (r->state == RFB_MSG && r->have == 0 && r->skip == 0 &&
	    r->requests > 0);
}

/* An incremental FramebufferUpdateRequest over the browser's last area. */
void
console_rfb_request(const struct console_rfb *r, unsigned char out[10])
{
	memcpy(out, r->request, 10);
	out[1] = 1;
}
