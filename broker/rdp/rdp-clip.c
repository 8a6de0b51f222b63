/*
 * The clipboard through the RDP gateway (issue 12): the client's cliprdr
 * channel on one side, QEMU's clipboard on the other, reached through its
 * VNC server (QEMU's qemu-vdagent chardev puts the guest's spice-vdagent
 * clipboard there). With the extended clipboard (pseudo-encoding
 * 0xC0A1E5CE, UTF-8, both ways on demand) when QEMU offers it, else
 * classic Latin-1 cut text.
 *
 * Guest to client: QEMU notifies (ext NOTIFY) -> a cliprdr format list
 * with CF_UNICODETEXT, and an ext REQUEST to QEMU at once -> ext PROVIDE,
 * kept across sessions (rdp-clip-cache.c) -> the client asks for the
 * data when someone pastes -> the client's answer.
 * Client to guest: the client's format list -> ext NOTIFY -> QEMU asks
 * (ext REQUEST, when the guest's agent pastes) -> our data request to the
 * client -> its answer -> ext PROVIDE. Each pending request is a state
 * with a deadline (RDP_CLIP_WAIT_MS), never a wait: the session thread
 * keeps running.
 *
 * The conversions (UTF-16LE with CRLF for RDP, UTF-8 or Latin-1 with LF
 * for the guest) and the extended clipboard's messages are pure
 * functions, fuzzed by tests/fuzz/fuzz-rdp-clip.c.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <zlib.h>

#include <freerdp/server/cliprdr.h>
#include <winpr/user.h>

#include "compat.h"
#include "log.h"
#include "rdp-chan.h"
#include "rdp-int.h"
#include "xmalloc.h"

#define RDP_CLIP_REPLACEMENT	0xfffd

/*
 * FreeRDP's CF_RAW, not a Windows format: xfreerdp 2 lists it (with every
 * format it can carry) the moment the client's X clipboard changes hands,
 * before it asked the new owner for TARGETS; the owner's own list
 * follows. A data request in between shares the X property of that
 * TARGETS request and spoils both: the answer comes empty and the list
 * that follows has no text (CI's test 45 at load 20).
 */
#define RDP_CLIP_FREERDP_RAW	0

/* Code point cp as UTF-8 at p; the number of bytes. */
static size_t
rdp_clip_put_utf8(char *p, uint32_t cp)
{
	if (cp < 0x80) {
		p[0] = cp;
		return (1);
	}
	if (cp < 0x800) {
		p[0] = 0xc0 | cp >> 6;
		p[1] = 0x80 | (cp & 0x3f);
		return (2);
	}
	if (cp < 0x10000) {
		p[0] = 0xe0 | cp >> 12;
		p[1] = 0x80 | ((cp >> 6) & 0x3f);
		p[2] = 0x80 | (cp & 0x3f);
		return (3);
	}
	p[0] = 0xf0 | cp >> 18;
	p[1] = 0x80 | ((cp >> 12) & 0x3f);
	p[2] = 0x80 | ((cp >> 6) & 0x3f);
	p[3] = 0x80 | (cp & 0x3f);
	return (4);
}

/*
 * One code point from UTF-8 at s (len > 0 bytes left): stores how many
 * bytes it took. Invalid, overlong or truncated sequences and surrogates
 * are U+FFFD for one byte.
 */
static uint32_t
rdp_clip_get_utf8(const unsigned char *s, size_t len, size_t *used)
{
	uint32_t	cp, min;
	size_t		n, i;

	*used = 1;
	if (s[0] < 0x80)
		return (s[0]);
	if ((s[0] & 0xe0) == 0xc0) {
		n = 2;
		cp = s[0] & 0x1f;
		min = 0x80;
	} else if ((s[0] & 0xf0) == 0xe0) {
		n = 3;
		cp = s[0] & 0x0f;
		min = 0x800;
	} else if ((s[0] & 0xf8) == 0xf0) {
		n = 4;
		cp = s[0] & 0x07;
		min = 0x10000;
	} else
		return (RDP_CLIP_REPLACEMENT);
	if (len < n)
		return (RDP_CLIP_REPLACEMENT);
	for (i = 1; i < n; i++) {
		if ((s[i] & 0xc0) != 0x80)
			return (RDP_CLIP_REPLACEMENT);
		cp = cp << 6 | (s[i] & 0x3f);
	}
	if (cp < min || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff))
		return (RDP_CLIP_REPLACEMENT);
	*used = n;
	return (cp);
}

/*
 * RDP's CF_UNICODETEXT (UTF-16LE, CRLF, up to a NUL) as UTF-8 with LF.
 * Unpaired surrogates become U+FFFD. NULL when the result would pass
 * RDP_CLIP_MAX; else a NUL-terminated copy, its length in *outlen.
 */
char *
rdp_clip_utf16_to_utf8(const unsigned char *in, size_t len, size_t *outlen)
{
	char		*out, *p;
	size_t		 i, n = len / 2;
	uint32_t	 u, v;

	/* Up to the NUL; past 2 units a byte (CRLF) it cannot fit. */
	for (i = 0; i < n; i++)
		if (in[2 * i] == 0 && in[2 * i + 1] == 0)
			break;
	n = i;
	if (n > 2 * (size_t)RDP_CLIP_MAX)
		return (NULL);
	out = p = xmalloc(n * 3 + 1);
	for (i = 0; i < n; i++) {
		u = in[2 * i] | in[2 * i + 1] << 8;
		if (u == 0)
			break;
		if (u == '\r' && i + 1 < n && in[2 * i + 2] == '\n' &&
		    in[2 * i + 3] == 0)
			continue;
		if (u >= 0xd800 && u <= 0xdbff && i + 1 < n) {
			v = in[2 * i + 2] | in[2 * i + 3] << 8;
			if (v >= 0xdc00 && v <= 0xdfff) {
				u = 0x10000 + ((u - 0xd800) << 10) +
				    (v - 0xdc00);
				i++;
			} else
				u = RDP_CLIP_REPLACEMENT;
		} else if (u >= 0xd800 && u <= 0xdfff)
			u = RDP_CLIP_REPLACEMENT;
		p += rdp_clip_put_utf8(p, u);
	}
	*p = '\0';
	*outlen = p - out;
	if (*outlen > RDP_CLIP_MAX) {
		free(out);
		return (NULL);
	}
	return (out);
}

/*
 * UTF-8 with LF (or CRLF) as RDP's CF_UNICODETEXT: UTF-16LE, CRLF, a
 * terminating NUL; *outlen counts its bytes, the NUL included.
 */
unsigned char *
rdp_clip_utf8_to_utf16(const char *s, size_t len, size_t *outlen)
{
	const unsigned char	*in = (const unsigned char *)s;
	unsigned char		*out, *p;
	size_t			 i, used;
	uint32_t		 cp, hi, lo;

	out = p = xmalloc(len * 4 + 2);
	for (i = 0; i < len; i += used) {
		cp = rdp_clip_get_utf8(in + i, len - i, &used);
		if (cp == '\n' && (i == 0 || in[i - 1] != '\r')) {
			*p++ = '\r';
			*p++ = 0;
		}
		if (cp >= 0x10000) {
			hi = 0xd800 + ((cp - 0x10000) >> 10);
			lo = 0xdc00 + ((cp - 0x10000) & 0x3ff);
			*p++ = hi;
			*p++ = hi >> 8;
			*p++ = lo;
			*p++ = lo >> 8;
		} else {
			*p++ = cp;
			*p++ = cp >> 8;
		}
	}
	*p++ = 0;
	*p++ = 0;
	*outlen = p - out;
	return (out);
}

/* Classic VNC cut text (Latin-1) as UTF-8, NUL-terminated. */
char *
rdp_clip_latin1_to_utf8(const unsigned char *in, size_t len, size_t *outlen)
{
	char	*out, *p;
	size_t	 i;

	out = p = xmalloc(len * 2 + 1);
	for (i = 0; i < len; i++)
		p += rdp_clip_put_utf8(p, in[i]);
	*p = '\0';
	*outlen = p - out;
	return (out);
}

/* UTF-8 as Latin-1 for a VNC server without the extended clipboard. */
char *
rdp_clip_utf8_to_latin1(const char *s, size_t len, size_t *outlen)
{
	const unsigned char	*in = (const unsigned char *)s;
	char			*out, *p;
	size_t			 i, used;
	uint32_t		 cp;

	out = p = xmalloc(len + 1);
	for (i = 0; i < len; i += used) {
		cp = rdp_clip_get_utf8(in + i, len - i, &used);
		*p++ = cp < 0x100 ? (char)cp : '?';
	}
	*p = '\0';
	*outlen = p - out;
	return (out);
}

/*
 * An extended clipboard message from the server: the payload after the
 * negative length (flags, then per action its data). For PROVIDE with
 * text, the zlib stream is inflated (at most RDP_CLIP_MAX of text) and
 * *text gets the UTF-8 text (trailing NULs dropped); else *text is NULL.
 * -1 and a cause for a message that is not one.
 */
int
rdp_clip_ext_parse(const unsigned char *buf, size_t len, uint32_t *flags,
    char **text, size_t *textlen, char **cause)
{
	z_stream	 z;
	unsigned char	*out;
	size_t		 cap = RDP_CLIP_MAX + 8, have;
	uint32_t	 tlen;
	int		 rc;

	*text = NULL;
	*textlen = 0;
	if (len < 4) {
		xasprintf(cause, "extended clipboard message of %zu bytes",
		    len);
		return (-1);
	}
	*flags = rdp_rfb_u32(buf);
	/* Caps name every action it supports, PROVIDE too: no data. */
	if ((*flags & RDP_CLIP_EXT_CAPS) || !(*flags & RDP_CLIP_EXT_PROVIDE) ||
	    !(*flags & RDP_CLIP_EXT_TEXT))
		return (0);

	memset(&z, 0, sizeof z);
	if (inflateInit(&z) != Z_OK) {
		xasprintf(cause, "zlib: inflateInit failed");
		return (-1);
	}
	out = xmalloc(cap);
	z.next_in = (unsigned char *)buf + 4;
	z.avail_in = len - 4;
	z.next_out = out;
	z.avail_out = cap;
	/* The text comes first; what follows it (other formats) may stay. */
	do
		rc = inflate(&z, Z_SYNC_FLUSH);
	while (rc == Z_OK && z.avail_out > 0 && z.avail_in > 0);
	have = cap - z.avail_out;
	inflateEnd(&z);
	if (rc != Z_OK && rc != Z_STREAM_END && rc != Z_BUF_ERROR) {
		free(out);
		xasprintf(cause, "extended clipboard data: zlib error %d", rc);
		return (-1);
	}
	if (have < 4 || (tlen = rdp_rfb_u32(out)) > have - 4) {
		free(out);
		xasprintf(cause, "extended clipboard text is cut short or "
		    "over %u bytes", RDP_CLIP_MAX);
		return (-1);
	}
	while (tlen > 0 && out[4 + tlen - 1] == '\0')
		tlen--;
	*text = xmalloc(tlen + 1);
	memcpy(*text, out + 4, tlen);
	(*text)[tlen] = '\0';
	*textlen = tlen;
	free(out);
	return (0);
}

/*
 * A whole ClientCutText (type 6) in the extended form: flags, then for
 * CAPS our text limit, for PROVIDE the zlib stream of the text's size
 * and bytes. Sets *outlen.
 */
unsigned char *
rdp_clip_ext_build(uint32_t flags, const char *text, size_t textlen,
    size_t *outlen)
{
	unsigned char	*msg, *raw;
	uLongf		 zlen;
	size_t		 plen;

	if ((flags & RDP_CLIP_EXT_PROVIDE) && !(flags & RDP_CLIP_EXT_CAPS)) {
		raw = xmalloc(textlen + 4);
		rdp_rfb_put32(raw, textlen);
		if (textlen > 0)
			memcpy(raw + 4, text, textlen);
		zlen = compressBound(textlen + 4);
		msg = xmalloc(12 + zlen);
		if (compress(msg + 12, &zlen, raw, textlen + 4) != Z_OK)
			zlen = 0;	/* cannot happen with compressBound */
		free(raw);
		plen = 4 + zlen;
	} else {
		msg = xmalloc(16);
		plen = 4;
		if (flags & RDP_CLIP_EXT_CAPS) {
			rdp_rfb_put32(msg + 12, RDP_CLIP_MAX);
			plen = 8;
		}
	}
	msg[0] = 6;
	msg[1] = msg[2] = msg[3] = 0;
	rdp_rfb_put32(msg + 4, (uint32_t)-(int32_t)plen);
	rdp_rfb_put32(msg + 8, flags);
	*outlen = 8 + plen;
	return (msg);
}

/* ------------------------------------------------------------------ */

struct rdp_clip {
	CliprdrServerContext	*cc;
	struct rdp_rfb		*rfb;
	int			 ready;		/* caps and monitor ready sent */
	char			 login[RDP_LOGIN_MAX];	/* the cache's key */
	char			 vm[RDP_VM_MAX];
	int			 client_lists;	/* format lists so far */

	/* The guest's text, QEMU to the client. */
	int			 guest_has;	/* QEMU has text for us */
	int			 guest_new;	/* not announced to the client */
	char			*guest;		/* fetched (UTF-8), or NULL */
	size_t			 guestlen;
	uint32_t		 client_wants;	/* its request's format, or 0 */
	uint64_t		 client_since;
	int			 vnc_asked;	/* our REQUEST is out */

	/*
	 * The client's text, the client to QEMU. Each format list is a new
	 * clipboard (client_gen); an answer to a request made under an
	 * older one is stale, and the current text is asked for again.
	 * xfreerdp 2 sends two lists a copy (see RDP_CLIP_FREERDP_RAW): the
	 * early one is held back. An empty answer is never passed on: it
	 * would be the guest's clipboard, and QEMU, its request answered,
	 * would not ask for the real text.
	 */
	uint32_t		 client_fmt;	/* CF_UNICODETEXT, CF_TEXT, 0 */
	int			 client_early;	/* xfreerdp's list before its own */
	uint32_t		 client_gen;	/* format lists so far */
	int			 vnc_wants;	/* QEMU asked for it */
	int			 client_asked;	/* our data request is out */
	uint32_t		 asked_gen;	/* client_gen when it went out */
	uint64_t		 asked_since;

	uint64_t		 to_client;	/* texts and bytes (UTF-8) */
	uint64_t		 to_client_bytes;
	uint64_t		 to_guest;
	uint64_t		 to_guest_bytes;
	uint64_t		 refused;	/* over RDP_CLIP_MAX or late */
};

static uint64_t
rdp_clip_ms(void)
{
	struct timespec	ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ((uint64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000);
}

struct rdp_clip *
rdp_clip_create(void)
{
	return (xcalloc(1, sizeof(struct rdp_clip)));
}

/* Whose clipboard this is: the guest's text is kept for them (cache). */
void
rdp_clip_owner(struct rdp_clip *c, const char *login, const char *vm)
{
	if (c == NULL || login == NULL || vm == NULL)
		return;
	strlcpy(c->login, login, sizeof c->login);
	strlcpy(c->vm, vm, sizeof c->vm);
}

void
rdp_clip_free(struct rdp_clip *c)
{
	if (c == NULL)
		return;
	if (c->cc != NULL) {
		c->cc->Close(c->cc);
		cliprdr_server_context_free(c->cc);
	}
	free(c->guest);
	free(c);
}

/* Send a VNC message; a failure ends the session at the next read. */
static void
rdp_clip_vnc_send(struct rdp_clip *c, uint32_t flags, const char *text,
    size_t len)
{
	unsigned char	*msg;
	size_t		 n;

	if (c->rfb == NULL)
		return;
	msg = rdp_clip_ext_build(flags, text, len, &n);
	if (rdp_rfb_send(c->rfb, msg, n) != 0)
		log_warnx("RDP clipboard: VNC write failed");
	free(msg);
}

/* The client's text to QEMU: PROVIDE (ext) or ClientCutText (Latin-1). */
static void
rdp_clip_to_vnc(struct rdp_clip *c, const char *text, size_t len)
{
	unsigned char	 hdr[8];
	char		*l1;
	size_t		 n;

	if (c->rfb == NULL)
		return;
	if (c->rfb->cbext) {
		rdp_clip_vnc_send(c, RDP_CLIP_EXT_PROVIDE | RDP_CLIP_EXT_TEXT,
		    text, len);
	} else {
		l1 = rdp_clip_utf8_to_latin1(text, len, &n);
		hdr[0] = 6;
		hdr[1] = hdr[2] = hdr[3] = 0;
		rdp_rfb_put32(hdr + 4, n);
		if (rdp_rfb_send(c->rfb, hdr, 8) != 0 ||
		    rdp_rfb_send(c->rfb, l1, n) != 0)
			log_warnx("RDP clipboard: VNC write failed");
		free(l1);
	}
	c->to_guest++;
	c->to_guest_bytes += len;
}

/* Answer the client's data request from the guest's text (or fail). */
static void
rdp_clip_answer(struct rdp_clip *c, int ok)
{
	CLIPRDR_FORMAT_DATA_RESPONSE	 r;
	unsigned char			*data = NULL;
	size_t				 n = 0;

	memset(&r, 0, sizeof r);
	r.msgType = CB_FORMAT_DATA_RESPONSE;
	if (ok && c->guest != NULL) {
		if (c->client_wants == CF_UNICODETEXT)
			data = rdp_clip_utf8_to_utf16(c->guest, c->guestlen,
			    &n);
		else {
			data = (unsigned char *)rdp_clip_utf8_to_latin1(
			    c->guest, c->guestlen, &n);
			n++;	/* CF_TEXT ends with its NUL */
		}
		r.msgFlags = CB_RESPONSE_OK;
		r.dataLen = n;
		r.requestedFormatData = data;
		c->to_client++;
		c->to_client_bytes += c->guestlen;
	} else
		r.msgFlags = CB_RESPONSE_FAIL;
	c->cc->ServerFormatDataResponse(c->cc, &r);
	free(data);
	c->client_wants = 0;
}

/* Tell the client what the guest has: text, or nothing. */
static void
rdp_clip_announce(struct rdp_clip *c)
{
	CLIPRDR_FORMAT_LIST	fl;
	CLIPRDR_FORMAT		f[2];

	memset(&fl, 0, sizeof fl);
	memset(f, 0, sizeof f);
	fl.msgType = CB_FORMAT_LIST;
	if (c->guest_has) {
		f[0].formatId = CF_UNICODETEXT;
		f[1].formatId = CF_TEXT;
		fl.numFormats = 2;
		fl.formats = f;
	}
	c->cc->ServerFormatList(c->cc, &fl);
	c->guest_new = 0;
}

/* Ask the client for its text (QEMU wants it). */
static void
rdp_clip_ask_client(struct rdp_clip *c)
{
	CLIPRDR_FORMAT_DATA_REQUEST	r;

	memset(&r, 0, sizeof r);
	r.msgType = CB_FORMAT_DATA_REQUEST;
	r.dataLen = 4;
	r.requestedFormatId = c->client_fmt;
	c->client_asked = 1;
	c->asked_gen = c->client_gen;
	c->asked_since = rdp_clip_ms();
	c->cc->ServerFormatDataRequest(c->cc, &r);
}

/*
 * A cut message from QEMU's VNC server: ext (the extended payload after
 * the negative length) or classic (Latin-1 text).
 */
void
rdp_clip_vnc_cut(struct rdp_clip *c, struct rdp_rfb *rfb, int ext,
    const unsigned char *buf, size_t len)
{
	uint32_t	 flags;
	char		*text, *cause = NULL;
	size_t		 tlen;

	if (c == NULL)
		return;
	c->rfb = rfb;
	if (!ext) {
		/* Classic: the text itself, at once. */
		free(c->guest);
		c->guest = rdp_clip_latin1_to_utf8(buf, len, &c->guestlen);
		c->guest_has = 1;
		c->guest_new = 1;
		rdp_clip_cache_put(c->login, c->vm, c->guest, c->guestlen);
		return;
	}
	if (rdp_clip_ext_parse(buf, len, &flags, &text, &tlen, &cause) != 0) {
		log_warnx("RDP clipboard: %s", cause);
		free(cause);
		c->refused++;
		return;
	}
	log_debug("RDP clipboard: VNC flags 0x%08x, %zu bytes of text",
	    flags, text != NULL ? tlen : 0);
	if (flags & RDP_CLIP_EXT_CAPS) {
		/* Say what we do: text, on demand. */
		rdp_clip_vnc_send(c, RDP_CLIP_EXT_CAPS | RDP_CLIP_EXT_REQUEST |
		    RDP_CLIP_EXT_NOTIFY | RDP_CLIP_EXT_PROVIDE |
		    RDP_CLIP_EXT_TEXT, NULL, 0);
		/*
		 * QEMU sends its caps as it registers this connection as a
		 * clipboard peer: from now on this session hears of every
		 * copy, so the desktop's keeper (rdp-clip-keep.c) can go.
		 */
		rdp_clip_keep_stop(c->vm);
		return;
	}
	if (flags & RDP_CLIP_EXT_NOTIFY) {
		/*
		 * The guest's clipboard changed: fetch its text at once, not
		 * only when the client pastes, so that it is kept for a
		 * client that reconnects (rdp-clip-cache.c: QEMU will not
		 * tell a new VNC connection about it).
		 */
		free(c->guest);
		c->guest = NULL;
		c->guestlen = 0;
		c->guest_has = (flags & RDP_CLIP_EXT_TEXT) != 0;
		c->guest_new = 1;
		c->vnc_asked = 0;
		rdp_clip_cache_put(c->login, c->vm, NULL, 0);
		if (c->guest_has) {
			c->vnc_asked = 1;
			rdp_clip_vnc_send(c, RDP_CLIP_EXT_REQUEST |
			    RDP_CLIP_EXT_TEXT, NULL, 0);
		}
	}
	if (flags & RDP_CLIP_EXT_PROVIDE) {
		if (text != NULL) {
			free(c->guest);
			c->guest = text;
			c->guestlen = tlen;
			text = NULL;
			rdp_clip_cache_put(c->login, c->vm, c->guest,
			    c->guestlen);
			log_debug("RDP clipboard: the guest's text (%zu bytes) "
			    "kept for %s on %s", c->guestlen, c->login, c->vm);
		}
		c->vnc_asked = 0;
		if (c->client_wants != 0 && c->cc != NULL)
			rdp_clip_answer(c, c->guest != NULL);
	}
	if ((flags & RDP_CLIP_EXT_REQUEST) && (flags & RDP_CLIP_EXT_TEXT)) {
		/* The guest pastes what the client copied. */
		c->vnc_wants = 1;
		if (c->client_early)
			;	/* asked for once the client's real list came */
		else if (c->cc == NULL || c->client_fmt == 0) {
			rdp_clip_vnc_send(c, RDP_CLIP_EXT_PROVIDE |
			    RDP_CLIP_EXT_TEXT, "", 0);
			c->vnc_wants = 0;
		} else if (!c->client_asked)
			rdp_clip_ask_client(c);
	}
	free(text);
}

/*
 * Our request went out before the client's latest format list: ask for
 * the current text if QEMU still waits for it (or, classic VNC, always).
 */
static void
rdp_clip_reask(struct rdp_clip *c)
{
	if (c->client_early)
		return;		/* asked for when its real list comes */
	if (c->client_fmt == 0) {
		c->vnc_wants = 0;
		return;
	}
	if (c->vnc_wants || (c->rfb != NULL && !c->rfb->cbext))
		rdp_clip_ask_client(c);
}

/*
 * The client's first format list (it sends one when the channel starts,
 * whatever it holds): when the guest's text was kept from an earlier
 * session, offer it instead, as if the guest had just copied it. The
 * client's list is not passed to QEMU then, or each side would take the
 * other's clipboard. 1 when offered.
 */
static int
rdp_clip_offer_kept(struct rdp_clip *c)
{
	char	*text;
	size_t	 len;

	if (c->guest_has ||
	    (text = rdp_clip_cache_get(c->login, c->vm, &len)) == NULL)
		return (0);
	free(c->guest);
	c->guest = text;
	c->guestlen = len;
	c->guest_has = 1;
	c->guest_new = 1;
	log_debug("RDP clipboard: offering the guest's text kept from an "
	    "earlier session (%zu bytes)", len);
	return (1);
}

/* The client copied something: take note, tell QEMU there is text. */
static UINT
rdp_clip_client_format_list(CliprdrServerContext *cc,
    const CLIPRDR_FORMAT_LIST *fl)
{
	struct rdp_clip			*c = cc->custom;
	CLIPRDR_FORMAT_LIST_RESPONSE	 r;
	UINT32				 i;

	if (c->client_lists++ == 0 && rdp_clip_offer_kept(c)) {
		/* The guest's text, kept from an earlier session, wins. */
		memset(&r, 0, sizeof r);
		r.msgType = CB_FORMAT_LIST_RESPONSE;
		r.msgFlags = CB_RESPONSE_OK;
		cc->ServerFormatListResponse(cc, &r);
		return (CHANNEL_RC_OK);
	}
	c->client_gen++;
	c->client_fmt = 0;
	c->client_early = 0;
	for (i = 0; i < fl->numFormats; i++) {
		if (fl->formats[i].formatId == RDP_CLIP_FREERDP_RAW)
			c->client_early = 1;
		if (fl->formats[i].formatId == CF_UNICODETEXT)
			c->client_fmt = CF_UNICODETEXT;
		else if ((fl->formats[i].formatId == CF_TEXT ||
		    fl->formats[i].formatId == CF_OEMTEXT) &&
		    c->client_fmt == 0)
			c->client_fmt = CF_TEXT;
	}
	memset(&r, 0, sizeof r);
	r.msgType = CB_FORMAT_LIST_RESPONSE;
	r.msgFlags = CB_RESPONSE_OK;
	cc->ServerFormatListResponse(cc, &r);
	log_debug("RDP clipboard: the client has %u formats%s",
	    (unsigned int)fl->numFormats, c->client_early ?
	    " (everything it knows; its X owner's list follows)" : "");
	/* The client's clipboard is the newest now; ours is gone there. */
	c->guest_has = 0;
	if (c->client_early) {
		/* Wait for the real list; a request now would spoil it. */
		c->client_fmt = 0;
		return (CHANNEL_RC_OK);
	}
	if (c->client_fmt == 0) {
		c->vnc_wants = 0;	/* its request stays open, unanswered */
		return (CHANNEL_RC_OK);
	}
	/* The guest's clipboard becomes the client's text. */
	rdp_clip_cache_put(c->login, c->vm, NULL, 0);
	if (c->rfb == NULL)
		return (CHANNEL_RC_OK);
	if (c->rfb->cbext)
		rdp_clip_vnc_send(c, RDP_CLIP_EXT_NOTIFY | RDP_CLIP_EXT_TEXT,
		    NULL, 0);
	/* Classic VNC takes text at once; QEMU may have asked meanwhile. */
	if ((!c->rfb->cbext || c->vnc_wants) && !c->client_asked)
		rdp_clip_ask_client(c);
	return (CHANNEL_RC_OK);
}

/* The client pastes: answer from what we have, or ask QEMU first. */
static UINT
rdp_clip_client_data_request(CliprdrServerContext *cc,
    const CLIPRDR_FORMAT_DATA_REQUEST *req)
{
	struct rdp_clip	*c = cc->custom;

	log_debug("RDP clipboard: the client asks for format %u",
	    (unsigned int)req->requestedFormatId);
	if (req->requestedFormatId != CF_UNICODETEXT &&
	    req->requestedFormatId != CF_TEXT) {
		c->client_wants = req->requestedFormatId;
		rdp_clip_answer(c, 0);
		return (CHANNEL_RC_OK);
	}
	c->client_wants = req->requestedFormatId;
	c->client_since = rdp_clip_ms();
	if (c->guest != NULL || !c->guest_has || c->rfb == NULL ||
	    !c->rfb->cbext) {
		rdp_clip_answer(c, c->guest != NULL);
		return (CHANNEL_RC_OK);
	}
	if (!c->vnc_asked) {
		c->vnc_asked = 1;
		rdp_clip_vnc_send(c, RDP_CLIP_EXT_REQUEST | RDP_CLIP_EXT_TEXT,
		    NULL, 0);
	}
	return (CHANNEL_RC_OK);
}

/* The client's text arrived: to QEMU, as UTF-8 with LF. */
static UINT
rdp_clip_client_data_response(CliprdrServerContext *cc,
    const CLIPRDR_FORMAT_DATA_RESPONSE *r)
{
	struct rdp_clip	*c = cc->custom;
	char		*text = NULL;
	size_t		 len = 0, n;

	if (!c->client_asked)
		return (CHANNEL_RC_OK);
	c->client_asked = 0;
	if (c->asked_gen != c->client_gen) {
		/* For a clipboard the client has replaced: ask again. */
		log_debug("RDP clipboard: the client answered for its "
		    "previous clipboard; asking for the current one");
		rdp_clip_reask(c);
		return (CHANNEL_RC_OK);
	}
	if ((r->msgFlags & CB_RESPONSE_OK) && r->requestedFormatData != NULL) {
		if (c->client_fmt == CF_UNICODETEXT)
			text = rdp_clip_utf16_to_utf8(r->requestedFormatData,
			    r->dataLen, &len);
		else {
			n = strnlen((const char *)r->requestedFormatData,
			    r->dataLen);
			text = rdp_clip_latin1_to_utf8(r->requestedFormatData,
			    n, &len);
			if (len > RDP_CLIP_MAX) {
				free(text);
				text = NULL;
			}
		}
		if (text == NULL) {
			log_warnx("RDP clipboard: the client's text is over "
			    "%u bytes, not passed on", RDP_CLIP_MAX);
			c->refused++;
		} else {
			/* CRLF to LF for the classic path too. */
			char *p, *q;

			for (p = q = text; *p != '\0'; p++)
				if (!(p[0] == '\r' && p[1] == '\n'))
					*q++ = *p;
			*q = '\0';
			len = q - text;
		}
	}
	if (text != NULL && len == 0) {
		free(text);
		text = NULL;
	}
	if (text != NULL && (c->vnc_wants || c->rfb == NULL ||
	    !c->rfb->cbext))
		rdp_clip_to_vnc(c, text, len);
	else if (text == NULL && c->client_fmt != 0) {
		/*
		 * It said it has text and gave none: no empty text in its
		 * place. QEMU's request stays unanswered; the client's next
		 * format list is a NOTIFY, and the guest asks anew.
		 */
		log_warnx("RDP clipboard: the client announced text and "
		    "sent none; the guest gets the next copy");
		c->refused++;
	}
	c->vnc_wants = 0;
	free(text);
	return (CHANNEL_RC_OK);
}

static UINT
rdp_clip_ignore(CliprdrServerContext *cc, const void *msg)
{
	return (CHANNEL_RC_OK);
}

/*
 * The client joined cliprdr: a server context on our channel manager,
 * driven by rdp_clip_check (no channel thread). 0, or -1 when the client
 * has no clipboard channel.
 */
int
rdp_clip_open(struct rdp_clip *c, HANDLE vcm, rdpContext *context)
{
	CliprdrServerContext	*cc;

	if ((cc = cliprdr_server_context_new(vcm)) == NULL)
		return (-1);
	cc->rdpcontext = context;
	rdp_clip_attach(c, cc);
	if (cc->Open(cc) != CHANNEL_RC_OK) {
		cliprdr_server_context_free(cc);
		c->cc = NULL;
		return (-1);
	}
	log_debug("RDP clipboard: channel open");
	return (0);
}

/*
 * Our handlers on a cliprdr server context, which c owns from here on
 * (rdp_clip_free closes and frees it). Apart from rdp_clip_open, the
 * unit test uses it with a context of its own to play a client.
 */
void
rdp_clip_attach(struct rdp_clip *c, CliprdrServerContext *cc)
{
	cc->custom = c;
	cc->useLongFormatNames = TRUE;
	cc->streamFileClipEnabled = FALSE;
	cc->fileClipNoFilePaths = FALSE;
	cc->canLockClipData = FALSE;
	cc->ClientFormatList = rdp_clip_client_format_list;
	cc->ClientFormatDataRequest = rdp_clip_client_data_request;
	cc->ClientFormatDataResponse = rdp_clip_client_data_response;
	cc->ClientCapabilities = (psCliprdrClientCapabilities)rdp_clip_ignore;
	cc->TempDirectory = (psCliprdrTempDirectory)rdp_clip_ignore;
	cc->ClientFormatListResponse =
	    (psCliprdrClientFormatListResponse)rdp_clip_ignore;
	cc->ClientLockClipboardData =
	    (psCliprdrClientLockClipboardData)rdp_clip_ignore;
	cc->ClientUnlockClipboardData =
	    (psCliprdrClientUnlockClipboardData)rdp_clip_ignore;
	c->cc = cc;
}

/* The fd to poll for the client's clipboard messages, or -1. */
int
rdp_clip_fd(struct rdp_clip *c)
{
	HANDLE	h;

	if (c == NULL || c->cc == NULL ||
	    (h = c->cc->GetEventHandle(c->cc)) == NULL)
		return (-1);
	return (GetEventFileDescriptor(h));
}

/*
 * Run the clipboard: the first messages, the client's messages, what
 * QEMU said meanwhile, and deadlines. -1 and a cause when the channel
 * broke (the session goes on without a clipboard).
 */
int
rdp_clip_check(struct rdp_clip *c, struct rdp_rfb *rfb, char **cause)
{
	CLIPRDR_GENERAL_CAPABILITY_SET	 g;
	CLIPRDR_CAPABILITIES		 caps;
	CLIPRDR_MONITOR_READY		 mr;
	HANDLE				 h;
	UINT				 rc;
	int				 i;
	uint64_t			 now;

	if (c == NULL || c->cc == NULL)
		return (0);
	c->rfb = rfb;
	if (!c->ready) {
		memset(&g, 0, sizeof g);
		memset(&caps, 0, sizeof caps);
		memset(&mr, 0, sizeof mr);
		g.capabilitySetType = CB_CAPSTYPE_GENERAL;
		g.capabilitySetLength = CB_CAPSTYPE_GENERAL_LEN;
		g.version = CB_CAPS_VERSION_2;
		g.generalFlags = CB_USE_LONG_FORMAT_NAMES;
		caps.msgType = CB_CLIP_CAPS;
		caps.dataLen = 4 + CB_CAPSTYPE_GENERAL_LEN;
		caps.cCapabilitiesSets = 1;
		caps.capabilitySets = (CLIPRDR_CAPABILITY_SET *)&g;
		mr.msgType = CB_MONITOR_READY;
		if (c->cc->ServerCapabilities(c->cc, &caps) != CHANNEL_RC_OK ||
		    c->cc->MonitorReady(c->cc, &mr) != CHANNEL_RC_OK) {
			xasprintf(cause, "clipboard channel: cannot start");
			return (-1);
		}
		c->ready = 1;
	}
	h = c->cc->GetEventHandle(c->cc);
	for (i = 0; i < 64 && WaitForSingleObject(h, 0) == WAIT_OBJECT_0;
	    i++) {
		if ((rc = c->cc->CheckEventHandle(c->cc)) != CHANNEL_RC_OK) {
			xasprintf(cause, "clipboard channel: error %u", rc);
			return (-1);
		}
	}
	if (c->guest_new)
		rdp_clip_announce(c);
	now = rdp_clip_ms();
	if (c->client_wants != 0 && now - c->client_since > RDP_CLIP_WAIT_MS) {
		log_warnx("RDP clipboard: QEMU did not provide the guest's "
		    "text within %d ms (no agent in the guest?)",
		    RDP_CLIP_WAIT_MS);
		c->refused++;
		c->vnc_asked = 0;
		rdp_clip_answer(c, 0);
	}
	if (c->client_asked && now - c->asked_since > RDP_CLIP_WAIT_MS) {
		c->client_asked = 0;
		if (c->asked_gen != c->client_gen)
			rdp_clip_reask(c);	/* that clipboard is gone */
		else {
			/* No empty text instead (see the data response). */
			log_warnx("RDP clipboard: the client did not send its "
			    "text within %d ms", RDP_CLIP_WAIT_MS);
			c->refused++;
			c->vnc_wants = 0;
		}
	}
	return (0);
}

/* The session's clipboard figures (event rdp.clipboard), at its end. */
void
rdp_clip_log(struct rdp_clip *c, const char *who)
{
	json_t	*f;

	if (c == NULL || (c->to_client == 0 && c->to_guest == 0 &&
	    c->refused == 0))
		return;
	f = json_pack("{s:I,s:I,s:I,s:I,s:I}",
	    "to_client", (json_int_t)c->to_client,
	    "to_client_bytes", (json_int_t)c->to_client_bytes,
	    "to_guest", (json_int_t)c->to_guest,
	    "to_guest_bytes", (json_int_t)c->to_guest_bytes,
	    "refused", (json_int_t)c->refused);
	log_event(0, "rdp.clipboard", f, "%s: clipboard: %llu texts (%llu "
	    "bytes) to the client, %llu (%llu bytes) to the guest, %llu "
	    "refused or late", who, (unsigned long long)c->to_client,
	    (unsigned long long)c->to_client_bytes,
	    (unsigned long long)c->to_guest,
	    (unsigned long long)c->to_guest_bytes,
	    (unsigned long long)c->refused);
	json_decref(f);
}
