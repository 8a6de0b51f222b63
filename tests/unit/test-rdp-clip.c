/*
 * The RDP clipboard's state machine (rdp-clip.c), client to guest, with
 * the message orders a loaded machine produces. The test plays both
 * peers: the RDP client through a cliprdr context of its own (its
 * handlers record what the gateway sends) and QEMU's VNC server on a
 * socketpair (what the gateway writes is read back and parsed).
 *
 * xfreerdp 2 sends two format lists for each copy on the client: at once
 * all the formats it supports, then, when the X owner answered TARGETS,
 * the real ones. Each one is a VNC NOTIFY, so QEMU (and the guest's
 * agent) may ask for the text of the first while the second is on its
 * way, and xfreerdp answers that request empty. CI at load 20 saw the
 * guest get that empty answer in place of the client's text, and the
 * text itself never (tests/integration/45-rdp-clipboard.sh).
 */
#include <sys/socket.h>

#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <freerdp/server/cliprdr.h>
#include <winpr/user.h>

#include "check.h"
#include "compat.h"
#include "rdp-chan.h"
#include "rdp-int.h"

static int	requests;	/* data requests the gateway sent the client */
static char	answer[256];	/* the gateway's last answer to the client */
static int	answered;	/* ... 1 with text, -1 failed */
static int	qemu_requests;	/* REQUESTs the gateway sent QEMU */

static UINT
fake_request(CliprdrServerContext *cc, const CLIPRDR_FORMAT_DATA_REQUEST *r)
{
	requests++;
	return (CHANNEL_RC_OK);
}

/* The gateway answers the client's data request: keep it, as UTF-8. */
static UINT
fake_response(CliprdrServerContext *cc, const CLIPRDR_FORMAT_DATA_RESPONSE *r)
{
	char	*t;
	size_t	 n;

	answer[0] = '\0';
	answered = -1;
	if ((r->msgFlags & CB_RESPONSE_OK) && r->requestedFormatData != NULL &&
	    (t = rdp_clip_utf16_to_utf8(r->requestedFormatData, r->dataLen,
	    &n)) != NULL) {
		snprintf(answer, sizeof answer, "%s", t);
		answered = 1;
		free(t);
	}
	return (CHANNEL_RC_OK);
}

static UINT
fake_ok(CliprdrServerContext *cc, const void *msg)
{
	return (CHANNEL_RC_OK);
}

static UINT
fake_close(CliprdrServerContext *cc)
{
	return (CHANNEL_RC_OK);
}

/* A client context: what the gateway sends goes to the fakes above. */
static CliprdrServerContext *
fake_client(void)
{
	CliprdrServerContext	*cc;

	cc = calloc(1, sizeof *cc);
	cc->ServerFormatDataRequest = fake_request;
	cc->ServerFormatList = (psCliprdrServerFormatList)fake_ok;
	cc->ServerFormatListResponse =
	    (psCliprdrServerFormatListResponse)fake_ok;
	cc->ServerFormatDataResponse = fake_response;
	cc->Close = fake_close;
	return (cc);
}

#define NOTEXT	0	/* a picture */
#define TEXT	1	/* CF_UNICODETEXT */
#define EARLY	2	/* xfreerdp's everything, FreeRDP's CF_RAW (0) first */

/* The client copied: a format list of that kind. */
static void
client_copies(CliprdrServerContext *cc, int kind)
{
	CLIPRDR_FORMAT		f[3];
	CLIPRDR_FORMAT_LIST	fl;

	memset(f, 0, sizeof f);
	memset(&fl, 0, sizeof fl);
	fl.msgType = CB_FORMAT_LIST;
	f[0].formatId = CF_DIB;
	f[1].formatId = CF_UNICODETEXT;
	f[2].formatId = 0;
	fl.formats = f;
	fl.numFormats = kind == NOTEXT ? 1 : kind == TEXT ? 2 : 3;
	CHECK(cc->ClientFormatList(cc, &fl) == CHANNEL_RC_OK);
}

/* The client answers our data request: s as CF_UNICODETEXT, "" empty. */
static void
client_answers(CliprdrServerContext *cc, const char *s, int ok)
{
	CLIPRDR_FORMAT_DATA_RESPONSE	 r;
	unsigned char			*w;
	size_t				 n;

	w = rdp_clip_utf8_to_utf16(s, strlen(s), &n);
	memset(&r, 0, sizeof r);
	r.msgType = CB_FORMAT_DATA_RESPONSE;
	r.msgFlags = ok ? CB_RESPONSE_OK : CB_RESPONSE_FAIL;
	r.dataLen = ok ? n : 0;
	r.requestedFormatData = ok ? w : NULL;
	CHECK(cc->ClientFormatDataResponse(cc, &r) == CHANNEL_RC_OK);
	free(w);
}

/* QEMU's VNC server sends an extended clipboard message. */
static void
qemu_says(struct rdp_clip *c, struct rdp_rfb *rfb, uint32_t flags)
{
	unsigned char	*msg;
	size_t		 n;

	msg = rdp_clip_ext_build(flags, NULL, 0, &n);
	rdp_clip_vnc_cut(c, rfb, 1, msg + 8, n - 8);
	free(msg);
}

/*
 * What the gateway wrote to QEMU since the last call: how many NOTIFYs
 * and PROVIDEs, the last PROVIDE's text in *last (or NULL), and whether
 * a PROVIDE was empty.
 */
static void
qemu_reads(int fd, int *notify, int *provide, int *empty, char **last)
{
	static unsigned char	 buf[65536];
	size_t			 len = 0, off, plen, tlen;
	ssize_t			 n;
	uint32_t		 flags;
	char			*text, *cause = NULL;

	*notify = *provide = *empty = 0;
	free(*last);
	*last = NULL;
	while ((n = recv(fd, buf + len, sizeof buf - len, MSG_DONTWAIT)) > 0)
		len += n;
	for (off = 0; off + 8 <= len; off += 8 + plen) {
		CHECK(buf[off] == 6);
		plen = -(int32_t)rdp_rfb_u32(buf + off + 4);
		CHECK(off + 8 + plen <= len);
		CHECK(rdp_clip_ext_parse(buf + off + 8, plen, &flags, &text,
		    &tlen, &cause) == 0);
		if (flags & RDP_CLIP_EXT_CAPS) {
			free(text);
			continue;	/* the gateway's caps, not a message */
		}
		if (flags & RDP_CLIP_EXT_NOTIFY)
			(*notify)++;
		if (flags & RDP_CLIP_EXT_REQUEST)
			qemu_requests++;
		if (flags & RDP_CLIP_EXT_PROVIDE) {
			(*provide)++;
			if (text == NULL || tlen == 0)
				(*empty)++;
			free(*last);
			*last = text;
			text = NULL;
		}
		free(text);
	}
}

/*
 * The CI failure: the guest asks for the first list's text, the second
 * list comes, QEMU asks again (for the newer one), then the client's
 * empty answer to the first request, then nothing more unless we ask.
 */
static void
test_stale_empty_answer(void)
{
	struct rdp_clip		*c;
	struct rdp_rfb		*rfb;
	CliprdrServerContext	*cc;
	char			*last = NULL;
	int			 sv[2], notify, provide, empty;

	CHECK(socketpair(AF_UNIX, SOCK_STREAM, 0, sv) == 0);
	rfb = rdp_rfb_create(sv[0]);
	rfb->cbext = 1;
	c = rdp_clip_create();
	cc = fake_client();
	rdp_clip_attach(c, cc);
	qemu_says(c, rfb, RDP_CLIP_EXT_CAPS | RDP_CLIP_EXT_REQUEST |
	    RDP_CLIP_EXT_NOTIFY | RDP_CLIP_EXT_PROVIDE | RDP_CLIP_EXT_TEXT);
	qemu_reads(sv[1], &notify, &provide, &empty, &last);
	requests = 0;

	client_copies(cc, TEXT);	/* a first list */
	qemu_says(c, rfb, RDP_CLIP_EXT_REQUEST | RDP_CLIP_EXT_TEXT);
	CHECK(requests == 1);
	client_copies(cc, TEXT);	/* a second, before the answer */
	qemu_says(c, rfb, RDP_CLIP_EXT_REQUEST | RDP_CLIP_EXT_TEXT);
	client_answers(cc, "", 1);	/* to the first: empty */
	qemu_reads(sv[1], &notify, &provide, &empty, &last);
	CHECK(notify == 2);
	CHECK(empty == 0);		/* never an empty text to the guest */
	CHECK(requests == 2);		/* asked again, for the newer list */
	client_answers(cc, "QDESK-C2G text", 1);
	qemu_reads(sv[1], &notify, &provide, &empty, &last);
	CHECK(provide == 1 && empty == 0);
	CHECK(last != NULL && strcmp(last, "QDESK-C2G text") == 0);

	/* An empty or failed answer to a current request: nothing sent. */
	client_copies(cc, TEXT);
	qemu_says(c, rfb, RDP_CLIP_EXT_REQUEST | RDP_CLIP_EXT_TEXT);
	CHECK(requests == 3);
	client_answers(cc, "", 0);
	qemu_reads(sv[1], &notify, &provide, &empty, &last);
	CHECK(provide == 0);
	/* And the next copy still reaches the guest. */
	client_copies(cc, TEXT);
	qemu_says(c, rfb, RDP_CLIP_EXT_REQUEST | RDP_CLIP_EXT_TEXT);
	CHECK(requests == 4);
	client_answers(cc, "again", 1);
	qemu_reads(sv[1], &notify, &provide, &empty, &last);
	CHECK(notify == 1 && provide == 1 && empty == 0);
	CHECK(last != NULL && strcmp(last, "again") == 0);

	/*
	 * xfreerdp's early list: not told to QEMU, no request to the client
	 * (it would spoil xfreerdp's TARGETS request and its next list);
	 * QEMU's request waits for the real list.
	 */
	client_copies(cc, EARLY);
	qemu_says(c, rfb, RDP_CLIP_EXT_REQUEST | RDP_CLIP_EXT_TEXT);
	qemu_reads(sv[1], &notify, &provide, &empty, &last);
	CHECK(notify == 0 && provide == 0);
	CHECK(requests == 4);
	client_copies(cc, TEXT);
	CHECK(requests == 5);
	client_answers(cc, "after early", 1);
	qemu_reads(sv[1], &notify, &provide, &empty, &last);
	CHECK(notify == 1 && provide == 1 && empty == 0);
	CHECK(last != NULL && strcmp(last, "after early") == 0);
	/* An early list then one without text: QEMU gets nothing. */
	client_copies(cc, EARLY);
	qemu_says(c, rfb, RDP_CLIP_EXT_REQUEST | RDP_CLIP_EXT_TEXT);
	client_copies(cc, NOTEXT);
	qemu_reads(sv[1], &notify, &provide, &empty, &last);
	CHECK(notify == 0 && provide == 0);
	CHECK(requests == 5);

	free(last);
	rdp_clip_free(c);
	rdp_rfb_free(rfb);
	close(sv[1]);
}

/* The client pastes: its data request for CF_UNICODETEXT. */
static void
client_pastes(CliprdrServerContext *cc)
{
	CLIPRDR_FORMAT_DATA_REQUEST	r;

	memset(&r, 0, sizeof r);
	r.msgType = CB_FORMAT_DATA_REQUEST;
	r.requestedFormatId = CF_UNICODETEXT;
	answered = 0;
	CHECK(cc->ClientFormatDataRequest(cc, &r) == CHANNEL_RC_OK);
}

/* One session's clipboard for login on vm, its client and QEMU. */
struct session {
	struct rdp_clip		*c;
	struct rdp_rfb		*rfb;
	CliprdrServerContext	*cc;
	int			 qemu;	/* QEMU's end */
};

static void
session_open(struct session *t, const char *login, const char *vm)
{
	int	sv[2];

	CHECK(socketpair(AF_UNIX, SOCK_STREAM, 0, sv) == 0);
	t->rfb = rdp_rfb_create(sv[0]);
	t->rfb->cbext = 1;
	t->qemu = sv[1];
	t->c = rdp_clip_create();
	rdp_clip_owner(t->c, login, vm);
	t->cc = fake_client();
	rdp_clip_attach(t->c, t->cc);
	/* QEMU's caps, as at every VNC connect. */
	qemu_says(t->c, t->rfb, RDP_CLIP_EXT_CAPS | RDP_CLIP_EXT_REQUEST |
	    RDP_CLIP_EXT_NOTIFY | RDP_CLIP_EXT_PROVIDE | RDP_CLIP_EXT_TEXT);
}

static void
session_close(struct session *t)
{
	rdp_clip_free(t->c);
	rdp_rfb_free(t->rfb);
	close(t->qemu);
}

/*
 * A reconnect: the guest copied in one session (the gateway fetched the
 * text at once, though nobody pasted), the next session of the same user
 * on the same desktop is offered it at the client's first format list.
 * Another user, or a session after the client copied, gets nothing.
 */
static void
test_reconnect(void)
{
	struct session	 t;
	unsigned char	*msg;
	char		*last = NULL;
	size_t		 n;
	int		 notify, provide, empty;

	session_open(&t, "alice", "d1");
	qemu_requests = 0;
	qemu_says(t.c, t.rfb, RDP_CLIP_EXT_NOTIFY | RDP_CLIP_EXT_TEXT);
	qemu_reads(t.qemu, &notify, &provide, &empty, &last);
	CHECK(qemu_requests == 1);	/* asked at once */
	msg = rdp_clip_ext_build(RDP_CLIP_EXT_PROVIDE | RDP_CLIP_EXT_TEXT,
	    "kept text", 9, &n);
	rdp_clip_vnc_cut(t.c, t.rfb, 1, msg + 8, n - 8);
	free(msg);
	session_close(&t);

	/* The same user again: its first list, then a paste. */
	session_open(&t, "alice", "d1");
	client_copies(t.cc, EARLY);
	qemu_reads(t.qemu, &notify, &provide, &empty, &last);
	CHECK(notify == 0);		/* the guest keeps its clipboard */
	client_pastes(t.cc);
	CHECK(answered == 1 && strcmp(answer, "kept text") == 0);
	qemu_reads(t.qemu, &notify, &provide, &empty, &last);
	CHECK(qemu_requests == 1);	/* answered without QEMU */
	session_close(&t);

	/* Another user on that desktop: nothing of alice's. */
	session_open(&t, "bob", "d1");
	client_copies(t.cc, EARLY);
	client_pastes(t.cc);
	CHECK(answered == -1);
	session_close(&t);

	/* Alice copies on the client: the kept text is the guest's no more. */
	session_open(&t, "alice", "d1");
	client_copies(t.cc, EARLY);
	client_copies(t.cc, TEXT);
	qemu_reads(t.qemu, &notify, &provide, &empty, &last);
	CHECK(notify == 1);
	session_close(&t);
	session_open(&t, "alice", "d1");
	client_copies(t.cc, EARLY);
	client_pastes(t.cc);
	CHECK(answered == -1);
	session_close(&t);
	free(last);
}

int
main(void)
{
	test_stale_empty_answer();
	test_reconnect();
	return (check_exit());
}
