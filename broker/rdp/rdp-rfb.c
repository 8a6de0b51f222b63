/*
 * A small RFB 3.8 client for one connection to QEMU's VNC server, on an fd
 * qmpd handed over (QEMU accepted it with skipauth). It asks for a 32-bit
 * true-colour framebuffer in raw or copyrect, follows resolution changes
 * (DesktopSize, ExtendedDesktopSize), asks for a new size (SetDesktopSize,
 * which QEMU forwards to the display device as its UI info), and sends keys as QEMU extended key events (raw
 * scancodes) and the pointer as absolute positions. It keeps its own copy
 * of the framebuffer and a list of the rectangles changed since the
 * session last took them.
 *
 * Reads block (with a timeout): the session thread calls rdp_rfb_process
 * only when bytes are buffered (or, without the reader thread, the fd is
 * readable), and QEMU writes each message whole. A session reads the
 * socket on a thread of its own (rdp-rfb-pump.c, rdp_rfb_pump); the
 * unit tests read it here.
 */
#include <sys/socket.h>

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "compat.h"
#include "log.h"
#include "rdp-chan.h"
#include "rdp-int.h"
#include "xmalloc.h"

#define RFB_READ_TIMEOUT	10000	/* ms for one message to arrive */
#define RFB_BUFSIZE		65536

/* Encodings and pseudo-encodings we ask for, best first. */
#define RFB_ENC_RAW		0
#define RFB_ENC_COPYRECT	1
#define RFB_ENC_LASTRECT	(-224)
#define RFB_ENC_DESKTOPSIZE	(-223)
#define RFB_ENC_POINTERTYPE	(-257)
#define RFB_ENC_EXTKEY		(-258)
#define RFB_ENC_LEDSTATE	(-261)
#define RFB_ENC_EXTDESKTOPSIZE	(-308)
#define RFB_ENC_AUDIO		(-259)		/* QEMU's audio capture */
#define RFB_ENC_CLIPBOARD_EXT	((int32_t)0xc0a1e5ce)	/* extended clipboard */

static const int32_t rdp_rfb_encodings[] = {
	RFB_ENC_COPYRECT,
	RFB_ENC_RAW,
	RFB_ENC_DESKTOPSIZE,
	RFB_ENC_LASTRECT,
	RFB_ENC_EXTKEY,
	RFB_ENC_LEDSTATE,
	RFB_ENC_EXTDESKTOPSIZE,
};

static uint16_t
rdp_rfb_u16(const unsigned char *p)
{
	return ((uint16_t)p[0] << 8 | p[1]);
}

/* Big-endian numbers, as RFB has them (rdp-clip.c too). */
uint32_t
rdp_rfb_u32(const unsigned char *p)
{
	return ((uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 |
	    (uint32_t)p[2] << 8 | p[3]);
}

static void
rdp_rfb_put16(unsigned char *p, uint16_t v)
{
	p[0] = v >> 8;
	p[1] = v;
}

void
rdp_rfb_put32(unsigned char *p, uint32_t v)
{
	p[0] = v >> 24;
	p[1] = v >> 16;
	p[2] = v >> 8;
	p[3] = v;
}

static int	rdp_rfb_request_send(struct rdp_rfb *, int incremental,
		    int after_update);

struct rdp_rfb *
rdp_rfb_create(int fd)
{
	struct rdp_rfb	*rfb;
	const char	*e;
	int		 flags;

	rfb = xcalloc(1, sizeof *rfb);
	rfb->fd = fd;
	pthread_mutex_init(&rfb->wlock, NULL);
	/* Non-blocking, so every wait goes through poll with a timeout. */
	if ((flags = fcntl(fd, F_GETFL)) != -1)
		fcntl(fd, F_SETFL, flags | O_NONBLOCK);
	rfb->insize = RFB_BUFSIZE;
	rfb->in = xmalloc(rfb->insize);
	rfb->nudge_off = (e = getenv("QDESK_RDP_VNC_NUDGE")) != NULL &&
	    strcmp(e, "0") == 0;
	return (rfb);
}

void
rdp_rfb_free(struct rdp_rfb *rfb)
{
	if (rfb == NULL)
		return;
	rdp_pump_stop(rfb->pump);
	if (rfb->fd != -1)
		close(rfb->fd);
	pthread_mutex_destroy(&rfb->wlock);
	free(rfb->in);
	free(rfb->fb);
	free(rfb);
}

/*
 * Put a fresh VNC connection under this framebuffer (the desktop moved
 * to another QEMU): what the old stream had half-read and negotiated
 * goes; the picture, its size and the channels attached stay, so a
 * ServerInit of the same size changes nothing the RDP client sees.
 */
void
rdp_rfb_reattach(struct rdp_rfb *rfb, int fd)
{
	char	*cause = NULL;
	int	 flags;

	/* The old stream's reader goes first: it reads the old fd. */
	rdp_pump_stop(rfb->pump);
	rfb->pump = NULL;
	if (rfb->fd != -1)
		close(rfb->fd);
	rfb->fd = fd;
	if ((flags = fcntl(fd, F_GETFL)) != -1)
		fcntl(fd, F_SETFL, flags | O_NONBLOCK);
	/* A session that read on a thread does so again (not on -1). */
	if (rfb->threaded && fd != -1 && rdp_rfb_pump(rfb, &cause) != 0) {
		log_warnx("%s; reading the console on the session thread",
		    cause);
		free(cause);
	}
	rfb->inoff = rfb->inlen = 0;
	/* The new QEMU acknowledges its pseudo-encodings anew. */
	rfb->extkey = rfb->ledstate = rfb->extdesk = 0;
	rfb->audio = rfb->cbext = 0;
	rfb->size_status = rfb->size_answers = rfb->size_asks = 0;
	rfb->updated = rfb->nudge = 0;
}

/*
 * On the reader thread, as an update arrives whole: ask for the next
 * one (incremental). The size is read without the session's say: QEMU
 * ignores an incremental request's rectangle, so a stale one is
 * harmless. Duplicates of the session's own requests only set QEMU's
 * state again; a failed write shows up as the stream's end.
 */
static void
rdp_rfb_request_next(void *arg)
{
	struct rdp_rfb	*rfb = arg;

	/* A clipboard keeper (rdp-clip-keep.c) wants no screen. */
	if (__atomic_load_n(&rfb->quiet, __ATOMIC_RELAXED))
		return;
	(void)rdp_rfb_request_send(rfb, 1, 1);
}

/* Read the stream on a thread of its own from now on (rdp-rfb-pump.c). */
int
rdp_rfb_pump(struct rdp_rfb *rfb, char **cause)
{
	rfb->threaded = 1;
	if (rfb->pump != NULL)
		return (0);
	if ((rfb->pump = rdp_pump_start(rfb->fd, rdp_rfb_msglen,
	    rdp_rfb_request_next, rfb, cause)) == NULL)
		return (-1);
	return (0);
}

/* The fd the session polls for the stream: the reader's, else QEMU's. */
int
rdp_rfb_pollfd(const struct rdp_rfb *rfb)
{
	return (rfb->pump != NULL ? rdp_pump_fd(rfb->pump) : rfb->fd);
}

int
rdp_rfb_buffered(const struct rdp_rfb *rfb)
{
	return (rfb->inlen > rfb->inoff ||
	    (rfb->pump != NULL && rdp_pump_buffered(rfb->pump)));
}

/*
 * Whether rdp_rfb_process would not wait now; readable: the poll said
 * the fd is. With the reader thread, only a whole message in hand counts
 * (rdp_rfb_msglen), so the session never waits for the rest of an 8 MB
 * update: it goes on serving the client meanwhile.
 */
int
rdp_rfb_ready(struct rdp_rfb *rfb, int readable)
{
	if (rfb->pump == NULL)
		return (readable || rdp_rfb_buffered(rfb));
	if (readable)
		rdp_pump_clear(rfb->pump);
	return (rdp_rfb_buffered(rfb));
}

/* Wait for the fd to be readable; QEMU sends messages whole, so a long
 * wait in the middle of one means QEMU is gone or stuck. */
static int
rdp_rfb_wait(struct rdp_rfb *rfb, int timeout, char **cause)
{
	struct pollfd	pfd = { .fd = rfb->fd, .events = POLLIN };
	int		n;

	do
		n = poll(&pfd, 1, timeout);
	while (n == -1 && errno == EINTR);
	if (n == -1) {
		xasprintf(cause, "VNC connection: poll: %s", strerror(errno));
		return (-1);
	}
	if (n == 0) {
		xasprintf(cause, "VNC connection: QEMU sent nothing for %d s",
		    timeout / 1000);
		return (-1);
	}
	return (0);
}

/* One read(2) into dst; 0 on EOF is an error for us. */
static ssize_t
rdp_rfb_read1(struct rdp_rfb *rfb, void *dst, size_t len, int timeout,
    char **cause)
{
	ssize_t	n;

	for (;;) {
		n = read(rfb->fd, dst, len);
		if (n > 0)
			return (n);
		/*
		 * A QEMU killed with our last request still unread resets
		 * the socket instead of closing it: the same end.
		 */
		if (n == 0 || errno == ECONNRESET) {
			xasprintf(cause, "the console's VNC connection closed "
			    "(the desktop stopped?)");
			return (-1);
		}
		if (errno == EINTR)
			continue;
		if (errno != EAGAIN && errno != EWOULDBLOCK) {
			xasprintf(cause, "VNC connection: read: %s",
			    strerror(errno));
			return (-1);
		}
		if (rdp_rfb_wait(rfb, timeout, cause) != 0)
			return (-1);
	}
}

/* Copy len bytes of the stream to dst: the buffer first, then the fd. */
static int
rdp_rfb_read(struct rdp_rfb *rfb, void *dst, size_t len, int timeout,
    char **cause)
{
	unsigned char	*p = dst;
	size_t		 have;
	ssize_t		 n;

	while (len > 0) {
		have = rfb->inlen - rfb->inoff;
		if (have > 0) {
			if (have > len)
				have = len;
			if (p != NULL) {
				memcpy(p, rfb->in + rfb->inoff, have);
				p += have;
			}
			rfb->inoff += have;
			len -= have;
			continue;
		}
		rfb->inoff = rfb->inlen = 0;
		/* The reader thread has the bytes: one copy to dst. */
		if (rfb->pump != NULL)
			return (rdp_pump_read(rfb->pump, p, len, timeout,
			    cause));
		/* Large reads go straight to their destination. */
		if (p != NULL && len >= rfb->insize) {
			if ((n = rdp_rfb_read1(rfb, p, len, timeout,
			    cause)) < 0)
				return (-1);
			p += n;
			len -= n;
			continue;
		}
		if ((n = rdp_rfb_read1(rfb, rfb->in, rfb->insize, timeout,
		    cause)) < 0)
			return (-1);
		rfb->inlen = n;
	}
	return (0);
}

/* Write a whole message; QEMU reads promptly, so a short wait at most. */
int
rdp_rfb_send(struct rdp_rfb *rfb, const void *buf, size_t len)
{
	const unsigned char	*p = buf;
	ssize_t			 n;
	int			 rv = 0;

	/* The reader thread writes requests too: whole messages only. */
	pthread_mutex_lock(&rfb->wlock);
	while (len > 0) {
		n = send(rfb->fd, p, len, MSG_NOSIGNAL);
		if (n == -1 && errno == EINTR)
			continue;
		if (n == -1 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
			struct pollfd pfd = { .fd = rfb->fd,
			    .events = POLLOUT };

			if (poll(&pfd, 1, RFB_READ_TIMEOUT) <= 0) {
				rv = -1;
				break;
			}
			continue;
		}
		if (n <= 0) {
			rv = -1;
			break;
		}
		p += n;
		len -= n;
	}
	pthread_mutex_unlock(&rfb->wlock);
	return (rv);
}

/* Remember a changed rectangle; past the list's size, merge into one. */
void
rdp_rfb_damage(struct rdp_rfb *rfb, int x, int y, int w, int h)
{
	struct rdp_rect	*r;
	int		 i, x2, y2;

	if (x < 0) {
		w += x;
		x = 0;
	}
	if (y < 0) {
		h += y;
		y = 0;
	}
	if (x + w > rfb->width)
		w = rfb->width - x;
	if (y + h > rfb->height)
		h = rfb->height - y;
	if (w <= 0 || h <= 0)
		return;
	if (rfb->ndamage < RDP_RFB_DAMAGE) {
		r = &rfb->damage[rfb->ndamage++];
		r->x = x;
		r->y = y;
		r->w = w;
		r->h = h;
		return;
	}
	x2 = x + w;
	y2 = y + h;
	for (i = 0; i < rfb->ndamage; i++) {
		r = &rfb->damage[i];
		if (r->x < x)
			x = r->x;
		if (r->y < y)
			y = r->y;
		if (r->x + r->w > x2)
			x2 = r->x + r->w;
		if (r->y + r->h > y2)
			y2 = r->y + r->h;
	}
	rfb->ndamage = 1;
	rfb->damage[0] = (struct rdp_rect){ x, y, x2 - x, y2 - y };
}

/*
 * A new framebuffer size: a fresh, black copy. Rows and columns are
 * padded by 64 pixels so an encoder may round a tile up without reading
 * past the end.
 */
static int
rdp_rfb_resize(struct rdp_rfb *rfb, int w, int h, char **cause)
{
	if (w <= 0 || h <= 0 || w > RDP_FB_MAX || h > RDP_FB_MAX) {
		xasprintf(cause, "VNC server sent a %dx%d framebuffer", w, h);
		return (-1);
	}
	if (rfb->fb != NULL && w == rfb->width && h == rfb->height)
		return (0);	/* QEMU repeats the size: the picture stays */
	free(rfb->fb);
	rfb->width = w;
	rfb->height = h;
	rfb->stride = w + 64;
	rfb->fb = xcalloc((size_t)rfb->stride * (h + 64), sizeof *rfb->fb);
	rfb->ndamage = 0;
	rdp_rfb_damage(rfb, 0, 0, w, h);
	rfb->resized = 1;
	return (0);
}

/*
 * The RFB 3.8 handshake on a fresh connection: version, security (QEMU
 * offers None: qmpd added us with skipauth), shared ClientInit,
 * ServerInit; then our pixel format and encodings and a first full
 * update request.
 */
int
rdp_rfb_handshake(struct rdp_rfb *rfb, int timeout, char **cause)
{
	unsigned char	 buf[32], *types = NULL;
	unsigned char	 msg[4 + 4 * (nitems(rdp_rfb_encodings) + 2)];
	size_t		 nenc;
	char		*reason;
	uint32_t	 len;
	size_t		 i;
	int		 none = 0, ms = timeout * 1000;

	if (rdp_rfb_read(rfb, buf, 12, ms, cause) != 0)
		return (-1);
	if (memcmp(buf, "RFB 003.", 8) != 0) {
		xasprintf(cause, "VNC connection: not an RFB server");
		return (-1);
	}
	if (memcmp(buf, "RFB 003.008\n", 12) < 0) {
		xasprintf(cause, "VNC server speaks %.11s, not 3.8", buf);
		return (-1);
	}
	if (rdp_rfb_send(rfb, "RFB 003.008\n", 12) != 0)
		goto wfail;
	if (rdp_rfb_read(rfb, buf, 1, ms, cause) != 0)
		return (-1);
	if (buf[0] == 0) {
		if (rdp_rfb_read(rfb, buf, 4, ms, cause) != 0)
			return (-1);
		len = rdp_rfb_u32(buf);
		if (len > 1024)
			len = 1024;
		reason = xcalloc(1, len + 1);
		if (rdp_rfb_read(rfb, reason, len, ms, cause) != 0) {
			free(reason);
			return (-1);
		}
		xasprintf(cause, "VNC server refused us: %s", reason);
		free(reason);
		return (-1);
	}
	types = xmalloc(buf[0]);
	len = buf[0];
	if (rdp_rfb_read(rfb, types, len, ms, cause) != 0) {
		free(types);
		return (-1);
	}
	for (i = 0; i < len; i++)
		if (types[i] == 1)
			none = 1;
	free(types);
	if (!none) {
		xasprintf(cause, "VNC server wants authentication: was the "
		    "client added without skipauth?");
		return (-1);
	}
	buf[0] = 1;
	if (rdp_rfb_send(rfb, buf, 1) != 0)
		goto wfail;
	if (rdp_rfb_read(rfb, buf, 4, ms, cause) != 0)
		return (-1);
	if (rdp_rfb_u32(buf) != 0) {
		xasprintf(cause, "VNC server refused the security handshake");
		return (-1);
	}
	buf[0] = 1;	/* shared: other viewers stay */
	if (rdp_rfb_send(rfb, buf, 1) != 0)
		goto wfail;
	if (rdp_rfb_read(rfb, buf, 24, ms, cause) != 0)
		return (-1);
	if (rdp_rfb_resize(rfb, rdp_rfb_u16(buf), rdp_rfb_u16(buf + 2),
	    cause) != 0)
		return (-1);
	len = rdp_rfb_u32(buf + 20);
	if (len >= sizeof rfb->name) {
		if (rdp_rfb_read(rfb, rfb->name, sizeof rfb->name - 1, ms,
		    cause) != 0 || rdp_rfb_read(rfb, NULL, len -
		    (sizeof rfb->name - 1), ms, cause) != 0)
			return (-1);
	} else if (rdp_rfb_read(rfb, rfb->name, len, ms, cause) != 0)
		return (-1);

	/* SetPixelFormat: 32 bpp, depth 24, little endian, 0x00RRGGBB. */
	memset(buf, 0, 20);
	buf[0] = 0;
	buf[4] = 32;
	buf[5] = 24;
	buf[6] = 0;
	buf[7] = 1;
	rdp_rfb_put16(buf + 8, 255);
	rdp_rfb_put16(buf + 10, 255);
	rdp_rfb_put16(buf + 12, 255);
	buf[14] = 16;
	buf[15] = 8;
	buf[16] = 0;
	if (rdp_rfb_send(rfb, buf, 20) != 0)
		goto wfail;

	msg[0] = 2;
	msg[1] = 0;
	for (i = 0; i < nitems(rdp_rfb_encodings); i++)
		rdp_rfb_put32(msg + 4 + 4 * i, (uint32_t)rdp_rfb_encodings[i]);
	nenc = nitems(rdp_rfb_encodings);
	/* The clipboard and sound only for whoever takes them. */
	if (rfb->clip != NULL)
		rdp_rfb_put32(msg + 4 + 4 * nenc++,
		    (uint32_t)RFB_ENC_CLIPBOARD_EXT);
	if (rfb->sound != NULL)
		rdp_rfb_put32(msg + 4 + 4 * nenc++, (uint32_t)RFB_ENC_AUDIO);
	rdp_rfb_put16(msg + 2, nenc);
	if (rdp_rfb_send(rfb, msg, 4 + 4 * nenc) != 0)
		goto wfail;
	if (rdp_rfb_request(rfb, 0) != 0)
		goto wfail;
	/* From here on the reader thread frames messages as they come. */
	if (rfb->pump != NULL)
		rdp_pump_framed(rfb->pump);
	return (0);

wfail:
	xasprintf(cause, "VNC connection: write: %s", strerror(errno));
	return (-1);
}

/*
 * FramebufferUpdateRequest for the whole framebuffer, followed in the
 * same write by the refresh nudge when it follows an update
 * (rdp-rfb-nudge.c).
 */
static int
rdp_rfb_request_send(struct rdp_rfb *rfb, int incremental, int after_update)
{
	unsigned char	buf[10 + RDP_RFB_NUDGE_LEN];
	size_t		len;

	buf[0] = 3;
	buf[1] = incremental ? 1 : 0;
	rdp_rfb_put16(buf + 2, 0);
	rdp_rfb_put16(buf + 4, 0);
	rdp_rfb_put16(buf + 6, rfb->width);
	rdp_rfb_put16(buf + 8, rfb->height);
	len = 10 + rdp_rfb_nudge(rfb, incremental && after_update, buf + 10);
	if (len > 10)
		rfb->nudges++;
	return (rdp_rfb_send(rfb, buf, len));
}

/*
 * The session's request. With the reader thread, that thread sends the
 * request after each update (rdp_rfb_request_next), nudge included, and
 * this one goes alone; without it, this is the request after an update
 * when one came since the last (rfb->nudge, set by rdp_rfb_process).
 */
int
rdp_rfb_request(struct rdp_rfb *rfb, int incremental)
{
	int	after_update = rfb->pump == NULL && rfb->nudge;

	rfb->nudge = 0;
	return (rdp_rfb_request_send(rfb, incremental, after_update));
}

/*
 * A key: QEMU's extended key event (client message 255, subtype 0) with
 * the raw scancode when the server acknowledged it, else a plain
 * KeyEvent with the keysym (when there is one).
 */
int
rdp_rfb_key(struct rdp_rfb *rfb, int down, uint32_t keysym, uint32_t qnum)
{
	unsigned char	buf[12];

	if (rfb->extkey && qnum != 0) {
		buf[0] = 255;
		buf[1] = 0;
		rdp_rfb_put16(buf + 2, down ? 1 : 0);
		rdp_rfb_put32(buf + 4, keysym);
		rdp_rfb_put32(buf + 8, qnum);
		return (rdp_rfb_send(rfb, buf, 12));
	}
	if (keysym == 0)
		return (0);
	buf[0] = 4;
	buf[1] = down ? 1 : 0;
	rdp_rfb_put16(buf + 2, 0);
	rdp_rfb_put32(buf + 4, keysym);
	return (rdp_rfb_send(rfb, buf, 8));
}

/* PointerEvent: buttons and an absolute position in framebuffer pixels. */
int
rdp_rfb_pointer(struct rdp_rfb *rfb, int mask, int x, int y)
{
	unsigned char	buf[6];

	if (x < 0)
		x = 0;
	if (y < 0)
		y = 0;
	if (x >= rfb->width)
		x = rfb->width - 1;
	if (y >= rfb->height)
		y = rfb->height - 1;
	buf[0] = 5;
	buf[1] = mask;
	rdp_rfb_put16(buf + 2, x);
	rdp_rfb_put16(buf + 4, y);
	return (rdp_rfb_send(rfb, buf, sizeof buf));
}

/* CopyRect: overlapping copies go row by row in the safe direction. */
static void
rdp_rfb_copyrect(struct rdp_rfb *rfb, int sx, int sy, int x, int y, int w,
    int h)
{
	int	row;

	if (sy < y) {
		for (row = h - 1; row >= 0; row--)
			memmove(rfb->fb + (size_t)(y + row) * rfb->stride + x,
			    rfb->fb + (size_t)(sy + row) * rfb->stride + sx,
			    (size_t)w * 4);
	} else {
		for (row = 0; row < h; row++)
			memmove(rfb->fb + (size_t)(y + row) * rfb->stride + x,
			    rfb->fb + (size_t)(sy + row) * rfb->stride + sx,
			    (size_t)w * 4);
	}
}

/*
 * An ExtendedDesktopSize rectangle (pure, on the bytes after its count):
 * x is who caused it (0 the server, 1 this client, 2 another client), y
 * the status of a request (0 done; 1 prohibited, 2 no resources, 3
 * invalid layout: the display cannot resize; QEMU's 4: passed on to the
 * display device, the guest decides). Keeps the first screen's id and
 * flags for our requests. Returns 1 when the framebuffer takes the
 * rectangle's size, 0 when it keeps its own (an answer to a request).
 */
int
rdp_rfb_extdesk(struct rdp_rfb *rfb, int x, int y,
    const unsigned char *screens, size_t len)
{
	rfb->extdesk = 1;
	if (len >= 16) {
		rfb->screen_id = rdp_rfb_u32(screens);
		rfb->screen_flags = rdp_rfb_u32(screens + 12);
	}
	if (x == 1) {
		rfb->size_status = y;
		rfb->size_answers++;
	}
	return (y == 0);
}

/*
 * SetDesktopSize (client message 251): one screen of w x h, the id QEMU
 * gave. Only when the server speaks ExtendedDesktopSize; -1 otherwise or
 * when the connection fails.
 */
int
rdp_rfb_set_size(struct rdp_rfb *rfb, int w, int h)
{
	unsigned char	buf[8 + 16];

	if (!rfb->extdesk || w <= 0 || h <= 0 || w > RDP_FB_MAX ||
	    h > RDP_FB_MAX)
		return (-1);
	memset(buf, 0, sizeof buf);
	buf[0] = 251;
	rdp_rfb_put16(buf + 2, w);
	rdp_rfb_put16(buf + 4, h);
	buf[6] = 1;
	rdp_rfb_put32(buf + 8, rfb->screen_id);
	rdp_rfb_put16(buf + 16, w);
	rdp_rfb_put16(buf + 18, h);
	rdp_rfb_put32(buf + 20, rfb->screen_flags);
	rfb->size_asks++;
	return (rdp_rfb_send(rfb, buf, sizeof buf));
}

/* One rectangle of a FramebufferUpdate; 1 when it was LastRect. */
static int
rdp_rfb_rect(struct rdp_rfb *rfb, char **cause)
{
	unsigned char	 hdr[12], buf[16], *screens;
	int		 x, y, w, h, row, sx, sy, n;
	int32_t		 enc;

	if (rdp_rfb_read(rfb, hdr, 12, RFB_READ_TIMEOUT, cause) != 0)
		return (-1);
	x = rdp_rfb_u16(hdr);
	y = rdp_rfb_u16(hdr + 2);
	w = rdp_rfb_u16(hdr + 4);
	h = rdp_rfb_u16(hdr + 6);
	enc = (int32_t)rdp_rfb_u32(hdr + 8);

	switch (enc) {
	case RFB_ENC_RAW:
	case RFB_ENC_COPYRECT:
		if (x + w > rfb->width || y + h > rfb->height) {
			xasprintf(cause, "VNC rectangle %dx%d+%d+%d outside "
			    "the %dx%d framebuffer", w, h, x, y, rfb->width,
			    rfb->height);
			return (-1);
		}
		if (enc == RFB_ENC_COPYRECT) {
			if (rdp_rfb_read(rfb, buf, 4, RFB_READ_TIMEOUT,
			    cause) != 0)
				return (-1);
			sx = rdp_rfb_u16(buf);
			sy = rdp_rfb_u16(buf + 2);
			if (sx + w > rfb->width || sy + h > rfb->height) {
				xasprintf(cause, "VNC copyrect source outside "
				    "the framebuffer");
				return (-1);
			}
			rdp_rfb_copyrect(rfb, sx, sy, x, y, w, h);
		} else {
			for (row = 0; row < h; row++) {
				if (rdp_rfb_read(rfb, rfb->fb + (size_t)(y +
				    row) * rfb->stride + x, (size_t)w * 4,
				    RFB_READ_TIMEOUT, cause) != 0)
					return (-1);
			}
		}
		rdp_rfb_damage(rfb, x, y, w, h);
		return (0);
	case RFB_ENC_DESKTOPSIZE:
		return (rdp_rfb_resize(rfb, w, h, cause));
	case RFB_ENC_EXTDESKTOPSIZE:
		if (rdp_rfb_read(rfb, buf, 4, RFB_READ_TIMEOUT, cause) != 0)
			return (-1);
		n = buf[0];
		screens = xcalloc(n > 0 ? n : 1, 16);
		if (rdp_rfb_read(rfb, screens, (size_t)n * 16,
		    RFB_READ_TIMEOUT, cause) != 0) {
			free(screens);
			return (-1);
		}
		n = rdp_rfb_extdesk(rfb, x, y, screens, (size_t)n * 16);
		free(screens);
		if (n == 1)
			return (rdp_rfb_resize(rfb, w, h, cause));
		return (0);
	case RFB_ENC_EXTKEY:
		rfb->extkey = 1;
		return (0);
	case RFB_ENC_LEDSTATE:
		if (rdp_rfb_read(rfb, buf, 1, RFB_READ_TIMEOUT, cause) != 0)
			return (-1);
		rfb->ledstate = 1;
		rfb->leds = buf[0] & 7;
		return (0);
	case RFB_ENC_POINTERTYPE:
		return (0);
	case RFB_ENC_AUDIO:
		rfb->audio = 1;
		return (0);
	case RFB_ENC_LASTRECT:
		return (1);
	}
	xasprintf(cause, "VNC server sent encoding %d, which we did not ask "
	    "for", enc);
	return (-1);
}

/*
 * ServerCutText: Latin-1 text (length >= 0) or an extended clipboard
 * message (negative length). Past RDP_CLIP_WIRE_MAX the bytes are read
 * and dropped (QEMU never sends that much: it caps at 1 MiB).
 */
static int
rdp_rfb_cut(struct rdp_rfb *rfb, char **cause)
{
	unsigned char	 buf[7], *data;
	int32_t		 slen;
	size_t		 len;
	int		 ext;

	if (rdp_rfb_read(rfb, buf, 7, RFB_READ_TIMEOUT, cause) != 0)
		return (-1);
	slen = (int32_t)rdp_rfb_u32(buf + 3);
	ext = slen < 0;
	len = ext ? (size_t)-(int64_t)slen : (size_t)slen;
	if (len > RDP_CLIP_WIRE_MAX || rfb->clip == NULL)
		return (rdp_rfb_read(rfb, NULL, len, RFB_READ_TIMEOUT, cause));
	data = xmalloc(len + 1);
	if (rdp_rfb_read(rfb, data, len, RFB_READ_TIMEOUT, cause) != 0) {
		free(data);
		return (-1);
	}
	if (ext)
		rfb->cbext = 1;
	rdp_clip_vnc_cut(rfb->clip, rfb, ext, data, len);
	free(data);
	return (0);
}

/*
 * A QEMU server message (255): audio (1) begin, end or data (u32 length,
 * PCM). Anything else is a message we did not ask for.
 */
static int
rdp_rfb_qemu(struct rdp_rfb *rfb, char **cause)
{
	unsigned char	 buf[8], *data;
	uint32_t	 len;
	int		 op;

	if (rdp_rfb_read(rfb, buf, 3, RFB_READ_TIMEOUT, cause) != 0)
		return (-1);
	if (buf[0] != 1) {
		xasprintf(cause, "VNC server sent QEMU message %u", buf[0]);
		return (-1);
	}
	op = rdp_rfb_u16(buf + 1);
	if (op == 0 || op == 1) {
		rdp_sound_vnc(rfb->sound, op, NULL, 0);
		return (0);
	}
	if (op != 2) {
		xasprintf(cause, "VNC server sent QEMU audio message %d", op);
		return (-1);
	}
	if (rdp_rfb_read(rfb, buf, 4, RFB_READ_TIMEOUT, cause) != 0)
		return (-1);
	len = rdp_rfb_u32(buf);
	if (len > RDP_SOUND_DATA_MAX) {
		xasprintf(cause, "VNC audio message of %u bytes", len);
		return (-1);
	}
	data = xmalloc(len + 1);
	if (rdp_rfb_read(rfb, data, len, RFB_READ_TIMEOUT, cause) != 0) {
		free(data);
		return (-1);
	}
	rdp_sound_vnc(rfb->sound, op, data, len);
	free(data);
	return (0);
}

/*
 * The length of the server message at the start of buf (pure; the reader
 * thread's bytes, rdp-rfb-pump.c): 0 while len bytes are not yet all of
 * it. A message this does not know (an encoding or type we never asked
 * for) counts as whole, so the parser reads it and gives the cause.
 * Raw pixels are 4 bytes (the pixel format we set).
 */
size_t
rdp_rfb_msglen(const unsigned char *buf, size_t len)
{
	size_t		 off, n, i, w, h;
	uint32_t	 clen;
	int32_t		 enc;

	if (len < 1)
		return (0);
	switch (buf[0]) {
	case 0:		/* FramebufferUpdate: its rectangles */
		if (len < 4)
			return (0);
		n = rdp_rfb_u16(buf + 2);
		off = 4;
		for (i = 0; i < n; i++) {
			if (len < off + 12)
				return (0);
			w = rdp_rfb_u16(buf + off + 4);
			h = rdp_rfb_u16(buf + off + 6);
			enc = (int32_t)rdp_rfb_u32(buf + off + 8);
			off += 12;
			switch (enc) {
			case RFB_ENC_RAW:
				off += w * h * 4;
				break;
			case RFB_ENC_COPYRECT:
				off += 4;
				break;
			case RFB_ENC_LEDSTATE:
				off += 1;
				break;
			case RFB_ENC_EXTDESKTOPSIZE:
				if (len < off + 1)
					return (0);
				off += 4 + (size_t)buf[off] * 16;
				break;
			case RFB_ENC_LASTRECT:
				return (len >= off ? off : 0);
			case RFB_ENC_DESKTOPSIZE:
			case RFB_ENC_EXTKEY:
			case RFB_ENC_POINTERTYPE:
			case RFB_ENC_AUDIO:
				break;
			default:
				return (len >= off ? off : 0);
			}
		}
		return (len >= off ? off : 0);
	case 1:		/* SetColourMapEntries */
		if (len < 6)
			return (0);
		off = 6 + (size_t)rdp_rfb_u16(buf + 4) * 6;
		return (len >= off ? off : 0);
	case 3:		/* ServerCutText: a negative length is extended */
		if (len < 8)
			return (0);
		clen = rdp_rfb_u32(buf + 4);
		off = 8 + ((int32_t)clen < 0 ? (size_t)-(int64_t)(int32_t)clen :
		    (size_t)clen);
		return (len >= off ? off : 0);
	case 255:	/* QEMU's: audio begin, end, or data */
		if (len < 4)
			return (0);
		if (buf[1] != 1 || rdp_rfb_u16(buf + 2) != 2)
			return (4);
		if (len < 8)
			return (0);
		off = 8 + (size_t)rdp_rfb_u32(buf + 4);
		return (len >= off ? off : 0);
	}
	return (1);	/* Bell, or a type the parser refuses */
}

/*
 * Read and apply one server message. After a FramebufferUpdate,
 * rfb->updated is set; the caller sends the damage and asks for more.
 */
int
rdp_rfb_process(struct rdp_rfb *rfb, char **cause)
{
	unsigned char	buf[8];
	int		i, n, r;

	if (rdp_rfb_read(rfb, buf, 1, RFB_READ_TIMEOUT, cause) != 0)
		return (-1);
	switch (buf[0]) {
	case 0:		/* FramebufferUpdate */
		if (rdp_rfb_read(rfb, buf, 3, RFB_READ_TIMEOUT, cause) != 0)
			return (-1);
		n = rdp_rfb_u16(buf + 1);
		for (i = 0; i < n; i++) {
			if ((r = rdp_rfb_rect(rfb, cause)) < 0)
				return (-1);
			if (r == 1)
				break;
		}
		rfb->updated = rfb->nudge = 1;
		return (0);
	case 1:		/* SetColourMapEntries: not in true colour */
		if (rdp_rfb_read(rfb, buf, 5, RFB_READ_TIMEOUT, cause) != 0)
			return (-1);
		return (rdp_rfb_read(rfb, NULL, (size_t)rdp_rfb_u16(buf + 3) *
		    6, RFB_READ_TIMEOUT, cause));
	case 2:		/* Bell */
		return (0);
	case 3:		/* ServerCutText: classic or extended */
		return (rdp_rfb_cut(rfb, cause));
	case 255:	/* QEMU's: audio */
		return (rdp_rfb_qemu(rfb, cause));
	}
	xasprintf(cause, "VNC server sent message type %u", buf[0]);
	return (-1);
}
