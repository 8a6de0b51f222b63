/*
 * console-rfb.c: the browser's side of the RFB stream (RFC 6143), pure.
 * The browser console reads it only to find where each client message
 * ends, so that it can slip an update request of its own in between two
 * messages (console-ws.c). Anything it does not know (another security
 * type, RFB 3.3, an unknown message) turns it off for the rest of the
 * connection: the bytes still pass, only the broker stops adding to them.
 *
 * Continuous updates: QEMU's VNC server has neither ContinuousUpdates nor
 * fences, but the broker already keeps a request outstanding at QEMU, so
 * it offers them to noVNC itself: QEMU's side is read up to the end of
 * ServerInit (console_rfb_server_scan), where the console adds an
 * EndOfContinuousUpdates; noVNC then sends EnableContinuousUpdates, which
 * stays here (QEMU would drop the connection on it), and stops asking for
 * each update: one message up and its ACK down fewer per update.
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
		r->v38 = memcmp(r->head + 8, "008\n", 4) == 0;
		break;
	case RFB_SECTYPE:
		r->sectype = r->head[0];
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

/* At the start of a client message (its type is the next byte). */
int
console_rfb_start(const struct console_rfb *r)
{
	return (r->state == RFB_MSG && r->have == 0 && r->skip == 0);
}

/*
 * Take up to len client bytes, stopping just after the first message
 * that ends within them, and before an EnableContinuousUpdates once the
 * broker offers them; returns how many were taken (all of them once the
 * parser is off). *pass says whether they go on to QEMU.
 */
size_t
console_rfb_scan(struct console_rfb *r, const unsigned char *buf, size_t len,
    int *pass)
{
	size_t		off = 0, n;

	/* A message the broker keeps goes alone: *pass 0 for its bytes. */
	if (r->state == RFB_OFF)
		r->drop = 0;
	else if (r->continuous && console_rfb_start(r) && len > 0 &&
	    buf[0] == RFB_CONTINUOUS) {
		r->drop = 1;
		r->dropped++;
	}
	*pass = !r->drop;
	while (off < len && r->state != RFB_OFF) {
		if (r->skip > 0) {
			n = len - off < r->skip ? len - off : (size_t)r->skip;
			r->skip -= n;
			off += n;
			if (r->skip == 0 && r->state == RFB_MSG) {
				r->drop = 0;
				return (off);
			}
			continue;
		}
		if (off > 0 && r->continuous && console_rfb_start(r) &&
		    buf[off] == RFB_CONTINUOUS)
			return (off);
		r->head[r->have++] = buf[off++];
		if (r->state == RFB_MSG && r->have == 1 &&
		    console_rfb_find(r->head[0]) == NULL) {
			r->state = RFB_OFF;
			break;
		}
		if (r->have < console_rfb_want(r))
			continue;
		if (console_rfb_piece(r)) {
			r->drop = 0;
			return (off);
		}
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

/* QEMU's side of the handshake, as far as the end of ServerInit. */
enum {
	SRV_VERSION,	/* "RFB 003.008\n" */
	SRV_NTYPES,	/* how many security types */
	SRV_TYPES,	/* the types (skipped) */
	SRV_PICKED,	/* what follows depends on the browser's pick */
	SRV_CHALLENGE,	/* VNC authentication's challenge */
	SRV_RESULT,	/* SecurityResult */
	SRV_INIT,	/* ServerInit up to the name's length */
	SRV_NAME,	/* the desktop's name (skipped) */
	SRV_DONE,	/* ServerInit passed */
	SRV_OFF		/* not followed: nothing offered */
};

static const size_t console_rfb_server_want[] = {
	[SRV_VERSION] = 12, [SRV_NTYPES] = 1, [SRV_CHALLENGE] = 16,
	[SRV_RESULT] = 4, [SRV_INIT] = 24,
};

/* A piece of QEMU's handshake is complete: the next state. */
static void
console_rfb_server_piece(struct console_rfb *r)
{
	const unsigned char	*h = r->shead;

	switch (r->sstate) {
	case SRV_VERSION:
		r->sstate = memcmp(h, "RFB 003.008\n", 12) == 0 ? SRV_NTYPES :
		    SRV_OFF;
		break;
	case SRV_NTYPES:
		/* None: a failure reason follows. */
		r->sskip = h[0];
		r->sstate = h[0] == 0 ? SRV_OFF : SRV_TYPES;
		break;
	case SRV_CHALLENGE:
		r->sstate = SRV_RESULT;
		break;
	case SRV_RESULT:
		r->sstate = (h[0] | h[1] | h[2] | h[3]) == 0 ? SRV_INIT :
		    SRV_OFF;
		break;
	case SRV_INIT:
		r->sskip = ((uint32_t)h[20] << 24) | (h[21] << 16) |
		    (h[22] << 8) | h[23];
		r->sstate = r->sskip == 0 ? SRV_DONE : SRV_NAME;
		break;
	}
	r->shave = 0;
}

/*
 * Take up to len bytes of QEMU's side, stopping just after ServerInit;
 * returns how many (all of them before and after it). Only RFB 3.8 with
 * None or VNC authentication is followed (3.7 has no SecurityResult for
 * None; the browser's pick decides what comes after the types).
 */
size_t
console_rfb_server_scan(struct console_rfb *r, const unsigned char *buf,
    size_t len)
{
	size_t	off = 0, n;

	while (off < len && r->sstate != SRV_DONE && r->sstate != SRV_OFF) {
		switch (r->sstate) {
		case SRV_TYPES:
		case SRV_NAME:
			n = len - off < r->sskip ? len - off : (size_t)r->sskip;
			r->sskip -= n;
			off += n;
			if (r->sskip > 0)
				break;
			if (r->sstate == SRV_NAME) {
				r->sstate = SRV_DONE;
				return (off);
			}
			r->sstate = SRV_PICKED;
			break;
		case SRV_PICKED:
			/* QEMU speaks only once the browser picked. */
			if (!r->v38 || (r->sectype != 1 && r->sectype != 2))
				r->sstate = SRV_OFF;
			else
				r->sstate = r->sectype == 2 ? SRV_CHALLENGE :
				    SRV_RESULT;
			break;
		default:
			r->shead[r->shave++] = buf[off++];
			if (r->shave == console_rfb_server_want[r->sstate])
				console_rfb_server_piece(r);
			if (r->sstate == SRV_DONE)
				return (off);
			break;
		}
	}
	return (len);
}

/* ServerInit has passed: the console may offer continuous updates. */
int
console_rfb_server_init(const struct console_rfb *r)
{
	return (r->sstate == SRV_DONE);
}

/* Nothing more to follow on QEMU's side. */
int
console_rfb_server_done(const struct console_rfb *r)
{
	return (r->sstate == SRV_DONE || r->sstate == SRV_OFF);
}
