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

static UINT
fake_request(CliprdrServerContext *cc, const CLIPRDR_FORMAT_DATA_REQUEST *r)
{
	requests++;
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
	cc->ServerFormatDataResponse =
	    (psCliprdrServerFormatDataResponse)fake_ok;
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
		if (flags & RDP_CLIP_EXT_NOTIFY)
			(*notify)++;
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

int
main(void)
{
	test_stale_empty_answer();
	return (check_exit());
}
