/*
 * The graphics pipeline channel of one RDP session (rdp-gfx.h says how
 * the threads split the work).
 *
 * Its life: once drdynvc is ready and the client said it speaks the
 * pipeline, open the rdpgfx channel; when the client's caps arrive,
 * confirm the best set, pick the codec (AVC420 when that set allows it,
 * else RemoteFX progressive), reset the graphics to the guest's size,
 * create surface 0 and map it to the output. From then on the session's
 * damage goes out as frames: StartFrame, surface commands, EndFrame.
 *
 * Pacing: at most RDP_GFX_WINDOW frames beyond the last acknowledged one
 * are in flight. While the window is full the damage stays with the RFB
 * client (which goes on taking QEMU's updates), so the frame sent when the
 * next ack comes is the newest picture: a slow link gets fewer, fresher
 * frames. A client that suspends acknowledgements (queueDepth 0xFFFFFFFF)
 * is paced by the transport alone (the session's write-blocked check).
 *
 * Text: damage of at most RDP_GFX_SMALL_TILES tiles (typing, a cursor)
 * goes lossless (planar). Bigger damage goes lossy and its tiles are
 * remembered; RDP_GFX_REFINE_MS after the last lossy frame, planar tiles
 * of that area are sent over it, so text is sharp once motion stops: a
 * few tiles a frame, at the lossy stream's rate (rdp-gfx-refine.c).
 */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <freerdp/freerdp.h>
#include <freerdp/channels/wtsvc.h>
#include <freerdp/server/rdpgfx.h>

#include "compat.h"
#include "log.h"
#include "rdp-gfx.h"
#include "xmalloc.h"

#define RDP_GFX_CAPS_MAX	16

/*
 * Quiet time before the lossless refinement; below 0, none. Set only
 * before the gateway starts (rdp-gw-test -r: tests and benches that
 * look at the lossy picture itself).
 */
int	rdp_gfx_refine_ms = RDP_GFX_REFINE_MS;

/* Frames in flight beyond the last ack; set only before the gateway. */
int	rdp_gfx_window = RDP_GFX_WINDOW;

enum rdp_gfx_state {
	RDP_GFX_WAIT,		/* drdynvc or activation not there yet */
	RDP_GFX_OPENING,	/* channel opened, waiting for caps */
	RDP_GFX_ACTIVE,		/* surface mapped: frames go here */
	RDP_GFX_DEAD,		/* not for this client */
};

struct rdp_gfx {
	freerdp_peer		*peer;
	HANDLE			 vcm;
	RdpgfxServerContext	*ctx;
	enum rdp_gfx_state	 state;
	uint64_t		 waitsince;	/* ms: activated, no gfx yet */
	int			 wake[2];	/* gfx thread -> session */

	/* What the gfx thread recorded, under mtx. */
	pthread_mutex_t		 mtx;
	RDPGFX_CAPSET		 caps[RDP_GFX_CAPS_MAX];
	int			 ncaps;		/* -1: none arrived */
	int			 cacheoffer;
	struct rdp_gfx_pace	 pace;

	int			 codec;
	uint32_t		 capsversion;
	struct rdp_gfx_codec	*enc;
	int			 width;		/* of surface 0 */
	int			 height;
	uint8_t			*lossy;		/* tiles sent lossy */
	int			 gw, gh;
	int			 nlossy;
	struct rdp_gfx_refine	 refine;	/* when, how many tiles */

	struct rdp_gfx_clear	*clear;		/* glyphs for small commands */

	/* The frame being sent: its start and end go with its commands. */
	const struct rdp_gfx_image *fimg;
	RDPGFX_START_FRAME_PDU	*fstart;	/* not sent yet, or NULL */
	RDPGFX_END_FRAME_PDU	*fend;
	int			 fleft;		/* commands still to come */

	/* Figures for the log. */
	uint64_t		 frames;
	uint64_t		 lossyframes;
	uint64_t		 planarframes;
	uint64_t		 refines;
	uint64_t		 held;		/* window full when damage came */
	uint64_t		 bytes;
	uint64_t		 encms;		/* in rdp_gfx_frame */
	struct rdp_gfx_avc_stats avc;		/* of encoders freed */
	uint64_t		 since;
};

void
rdp_gfx_pace_init(struct rdp_gfx_pace *p, int window)
{
	memset(p, 0, sizeof *p);
	p->next = 1;
	p->window = window;
}

/* Frames sent and not yet acknowledged. */
uint32_t
rdp_gfx_pace_inflight(const struct rdp_gfx_pace *p)
{
	return (p->next - 1 - p->acked);
}

int
rdp_gfx_pace_may_send(const struct rdp_gfx_pace *p)
{
	return (p->suspended || rdp_gfx_pace_inflight(p) < (uint32_t)p->window);
}

/* A frame starts: its id. */
uint32_t
rdp_gfx_pace_start(struct rdp_gfx_pace *p)
{
	return (p->next++);
}

/*
 * An acknowledgement: frameid is the last frame the client decoded. Ids
 * outside the frames in flight (a client's bug, or a replay) change
 * nothing but the count of stale acks. SUSPEND stops the pacing until a
 * normal queue depth comes back.
 */
void
rdp_gfx_pace_ack(struct rdp_gfx_pace *p, uint32_t frameid,
    uint32_t queuedepth)
{
	uint32_t	ahead = frameid - p->acked;

	p->acks++;
	p->suspended = queuedepth == SUSPEND_FRAME_ACKNOWLEDGEMENT;
	if (ahead == 0 || ahead > rdp_gfx_pace_inflight(p)) {
		p->stale++;
		return;
	}
	p->acked = frameid;
}

/*
 * QDESK_RDP_GFX_WINDOW, a bench's knob like QDESK_RDP_X264 (not a
 * product setting): the pacing window, 1 to 16 frames. Read once, when
 * the gateway starts.
 */
void
rdp_gfx_env(void)
{
	const char	*env;
	char		*end;
	long		 n;

	if ((env = getenv("QDESK_RDP_GFX_WINDOW")) == NULL || *env == '\0')
		return;
	n = strtol(env, &end, 10);
	if (*end != '\0' || n < 1 || n > 16) {
		log_warnx("QDESK_RDP_GFX_WINDOW '%s' ignored (1 to 16 frames); "
		    "%d", env, rdp_gfx_window);
		return;
	}
	rdp_gfx_window = (int)n;
	log_info("RDP: graphics pipeline window %d frames "
	    "(QDESK_RDP_GFX_WINDOW)", rdp_gfx_window);
}

/* The order of preference: newest first. */
static const uint32_t rdp_gfx_versions[] = {
	RDPGFX_CAPVERSION_107,
	RDPGFX_CAPVERSION_106,
	RDPGFX_CAPVERSION_105,
	RDPGFX_CAPVERSION_104,
	RDPGFX_CAPVERSION_103,
	RDPGFX_CAPVERSION_102,
	RDPGFX_CAPVERSION_101,
	RDPGFX_CAPVERSION_10,
	RDPGFX_CAPVERSION_81,
	RDPGFX_CAPVERSION_8,
};

const RDPGFX_CAPSET *
rdp_gfx_caps_choose(const RDPGFX_CAPSET *caps, int n, int *codec)
{
	size_t	v;
	int	i;

	*codec = RDP_GFX_PROGRESSIVE;
	for (v = 0; v < nitems(rdp_gfx_versions); v++) {
		for (i = 0; i < n; i++) {
			if (caps[i].version != rdp_gfx_versions[v])
				continue;
			if (caps[i].version == RDPGFX_CAPVERSION_81) {
				if (caps[i].flags &
				    RDPGFX_CAPS_FLAG_AVC420_ENABLED)
					*codec = RDP_GFX_AVC420;
			} else if (caps[i].version != RDPGFX_CAPVERSION_8 &&
			    !(caps[i].flags & RDPGFX_CAPS_FLAG_AVC_DISABLED)) {
				/*
				 * 10.x: H.264 with AVC444 (xfreerdp 2.11
				 * sends 10.x only for /gfx:avc444, with
				 * AVC_THINCLIENT by default, and decodes
				 * AVC444 all the same; FreeRDP's own server
				 * sends it AVC444v2 too).
				 */
				*codec = RDP_GFX_AVC444;
			}
			return (&caps[i]);
		}
	}
	return (NULL);
}

static void
rdp_gfx_wake(struct rdp_gfx *g)
{
	char	c = 0;

	(void)write(g->wake[1], &c, 1);
}

/* The gfx thread's callbacks: record, wake the session, return. */
static UINT
rdp_gfx_on_caps(RdpgfxServerContext *ctx, const RDPGFX_CAPS_ADVERTISE_PDU *pdu)
{
	struct rdp_gfx	*g = ctx->custom;
	int		 i;

	pthread_mutex_lock(&g->mtx);
	for (i = 0; i < pdu->capsSetCount && i < RDP_GFX_CAPS_MAX; i++)
		g->caps[i] = pdu->capsSets[i];
	g->ncaps = i;
	pthread_mutex_unlock(&g->mtx);
	rdp_gfx_wake(g);
	return (CHANNEL_RC_OK);
}

static UINT
rdp_gfx_on_ack(RdpgfxServerContext *ctx,
    const RDPGFX_FRAME_ACKNOWLEDGE_PDU *pdu)
{
	struct rdp_gfx	*g = ctx->custom;

	pthread_mutex_lock(&g->mtx);
	rdp_gfx_pace_ack(&g->pace, pdu->frameId, pdu->queueDepth);
	pthread_mutex_unlock(&g->mtx);
	rdp_gfx_wake(g);
	return (CHANNEL_RC_OK);
}

static UINT
rdp_gfx_on_cache_offer(RdpgfxServerContext *ctx,
    const RDPGFX_CACHE_IMPORT_OFFER_PDU *pdu)
{
	struct rdp_gfx	*g = ctx->custom;

	pthread_mutex_lock(&g->mtx);
	g->cacheoffer = 1;
	pthread_mutex_unlock(&g->mtx);
	rdp_gfx_wake(g);
	return (CHANNEL_RC_OK);
}

static BOOL
rdp_gfx_on_channel_id(RdpgfxServerContext *ctx, UINT32 id)
{
	return (TRUE);
}

/* The gfx state of a session; nothing is opened before rdp_gfx_check. */
struct rdp_gfx *
rdp_gfx_create(freerdp_peer *peer, HANDLE vcm)
{
	struct rdp_gfx	*g;

	g = xcalloc(1, sizeof *g);
	g->peer = peer;
	g->vcm = vcm;
	g->wake[0] = g->wake[1] = -1;
	g->ncaps = -1;
	g->state = RDP_GFX_WAIT;
	g->clear = rdp_gfx_clear_create();
	pthread_mutex_init(&g->mtx, NULL);
	rdp_gfx_pace_init(&g->pace, rdp_gfx_window);
	rdp_gfx_refine_init(&g->refine, rdp_gfx_refine_ms);
	if (pipe2(g->wake, O_CLOEXEC | O_NONBLOCK) == -1) {
		log_warn("RDP: pipe for the graphics pipeline");
		g->state = RDP_GFX_DEAD;
	}
	return (g);
}

/* Keep the H.264 encoder's figures before it goes. */
static void
rdp_gfx_enc_free(struct rdp_gfx *g)
{
	const struct rdp_gfx_avc_stats	*st;

	if ((st = rdp_gfx_codec_stats(g->enc)) != NULL) {
		g->avc.frames += st->frames;
		g->avc.yuvus += st->yuvus;
		g->avc.x264us += st->x264us;
	}
	rdp_gfx_codec_free(g->enc);
	g->enc = NULL;
}

/* Close the channel (joins the gfx thread) and log what it carried. */
void
rdp_gfx_free(struct rdp_gfx *g, const char *who)
{
	json_t		*f;
	uint64_t	 ms, hits, stores, plains;

	if (g == NULL)
		return;
	if (g->ctx != NULL) {
		g->ctx->Close(g->ctx);
		rdpgfx_server_context_free(g->ctx);
	}
	rdp_gfx_enc_free(g);
	if (g->codec != 0 || g->frames > 0) {
		ms = rdp_peer_ms() - g->since;
		rdp_gfx_clear_stats(g->clear, &hits, &stores, &plains);
		f = json_pack("{s:s,s:I,s:I,s:I,s:I,s:I,s:I,s:I,s:I,s:I,s:I,"
		    "s:I,s:I,s:I,s:I,s:I,s:I,s:I,s:I,s:I,s:I,s:I}",
		    "codec", rdp_gfx_codec_name(g->codec),
		    "frames", (json_int_t)g->frames,
		    "acked", (json_int_t)g->pace.acked,
		    "acks", (json_int_t)g->pace.acks,
		    "lossy", (json_int_t)g->lossyframes,
		    "planar", (json_int_t)g->planarframes,
		    "refines", (json_int_t)g->refines,
		    "refinetiles", (json_int_t)g->refine.tiles,
		    "refinebytes", (json_int_t)g->refine.bytes,
		    "refinewasted", (json_int_t)g->refine.wasted,
		    "refinerate", (json_int_t)rdp_gfx_refine_rate(&g->refine),
		    "held", (json_int_t)g->held,
		    "bytes", (json_int_t)g->bytes,
		    "ms", (json_int_t)ms,
		    "encms", (json_int_t)g->encms,
		    "avcframes", (json_int_t)g->avc.frames,
		    "yuvms", (json_int_t)(g->avc.yuvus / 1000),
		    "x264ms", (json_int_t)(g->avc.x264us / 1000),
		    "caps", (json_int_t)g->capsversion,
		    "glyphs", (json_int_t)stores,
		    "glyphhits", (json_int_t)hits,
		    "clearruns", (json_int_t)plains);
		log_event(0, "rdp.gfx", f, "%s: graphics pipeline", who);
		json_decref(f);
	}
	rdp_gfx_clear_free(g->clear);
	free(g->lossy);
	if (g->wake[0] != -1)
		close(g->wake[0]);
	if (g->wake[1] != -1)
		close(g->wake[1]);
	pthread_mutex_destroy(&g->mtx);
	free(g);
}

/* Frames go through the pipeline (a surface is mapped). */
int
rdp_gfx_active(const struct rdp_gfx *g)
{
	return (g->state == RDP_GFX_ACTIVE);
}

/* The fd to poll for the gfx thread's news, or -1. */
int
rdp_gfx_fd(const struct rdp_gfx *g)
{
	return (g->state == RDP_GFX_DEAD ? -1 : g->wake[0]);
}

/* Surface 0 at width x height, mapped at the output's origin. */
static int
rdp_gfx_surface(struct rdp_gfx *g, int width, int height, const char *who)
{
	RDPGFX_RESET_GRAPHICS_PDU	 reset;
	RDPGFX_CREATE_SURFACE_PDU	 create;
	RDPGFX_DELETE_SURFACE_PDU	 del;
	RDPGFX_MAP_SURFACE_TO_OUTPUT_PDU map;
	MONITOR_DEF			 mon;

	if (g->width != 0) {
		memset(&del, 0, sizeof del);
		del.surfaceId = 0;
		if (g->ctx->DeleteSurface(g->ctx, &del) != CHANNEL_RC_OK)
			return (-1);
	}
	memset(&mon, 0, sizeof mon);
	mon.right = width - 1;
	mon.bottom = height - 1;
	mon.flags = MONITOR_PRIMARY;
	memset(&reset, 0, sizeof reset);
	reset.width = width;
	reset.height = height;
	reset.monitorCount = 1;
	reset.monitorDefArray = &mon;
	if (g->ctx->ResetGraphics(g->ctx, &reset) != CHANNEL_RC_OK)
		return (-1);
	rdp_gfx_clear_reset(g->clear);
	memset(&create, 0, sizeof create);
	create.surfaceId = 0;
	create.width = width;
	create.height = height;
	create.pixelFormat = GFX_PIXEL_FORMAT_XRGB_8888;
	if (g->ctx->CreateSurface(g->ctx, &create) != CHANNEL_RC_OK)
		return (-1);
	memset(&map, 0, sizeof map);
	map.surfaceId = 0;
	if (g->ctx->MapSurfaceToOutput(g->ctx, &map) != CHANNEL_RC_OK)
		return (-1);

	rdp_gfx_enc_free(g);
	if ((g->enc = rdp_gfx_codec_create(g->codec, width, height)) == NULL &&
	    g->codec != RDP_GFX_PLANAR) {
		log_warnx("%s: no %s encoder; graphics pipeline with planar",
		    who, rdp_gfx_codec_name(g->codec));
		g->codec = RDP_GFX_PLANAR;
		g->enc = rdp_gfx_codec_create(g->codec, width, height);
	}
	if (g->enc == NULL)
		return (-1);
	g->width = width;
	g->height = height;
	g->gw = (width + RDP_GFX_TILE - 1) / RDP_GFX_TILE;
	g->gh = (height + RDP_GFX_TILE - 1) / RDP_GFX_TILE;
	free(g->lossy);
	g->lossy = xcalloc((size_t)g->gw * g->gh, 1);
	g->nlossy = 0;
	return (0);
}

/* The client's caps: confirm, pick the codec, make the surface. */
static int
rdp_gfx_confirm(struct rdp_gfx *g, const char *who)
{
	RDPGFX_CAPSET		 caps[RDP_GFX_CAPS_MAX], set;
	RDPGFX_CAPS_CONFIRM_PDU	 pdu;
	const RDPGFX_CAPSET	*best;
	rdpSettings		*settings = g->peer->settings;
	int			 n, codec;

	pthread_mutex_lock(&g->mtx);
	n = g->ncaps;
	memcpy(caps, g->caps, sizeof caps);
	g->ncaps = -1;
	pthread_mutex_unlock(&g->mtx);

	if ((best = rdp_gfx_caps_choose(caps, n, &codec)) == NULL) {
		log_info("%s: no graphics pipeline version in common; bitmap "
		    "updates", who);
		return (-1);
	}
	set = *best;
	memset(&pdu, 0, sizeof pdu);
	pdu.capsSet = &set;
	if (g->ctx->CapsConfirm(g->ctx, &pdu) != CHANNEL_RC_OK)
		return (-1);
	g->capsversion = set.version;
	g->codec = codec;
	g->since = rdp_peer_ms();
	if (rdp_gfx_surface(g, settings->DesktopWidth, settings->DesktopHeight,
	    who) != 0)
		return (-1);
	log_info("%s: graphics pipeline caps 0x%05x flags 0x%x, codec %s",
	    who, set.version, set.flags, rdp_gfx_codec_name(g->codec));
	return (0);
}

/*
 * After each poll: open the channel once drdynvc is ready, handle what
 * the gfx thread recorded. Returns 1 when the whole screen must be sent
 * again (the surface is new), 0 otherwise, -1 when the session must end.
 */
int
rdp_gfx_check(struct rdp_gfx *g, int activated, const char *who)
{
	RDPGFX_CACHE_IMPORT_REPLY_PDU	 reply;
	char				 buf[64];
	int				 ncaps, offer, repaint = 0;

	if (g->state == RDP_GFX_DEAD)
		return (0);
	while (read(g->wake[0], buf, sizeof buf) > 0)
		;
	if (activated && g->waitsince == 0)
		g->waitsince = rdp_peer_ms();
	if (g->state == RDP_GFX_WAIT) {
		if (!activated || !g->peer->settings->SupportGraphicsPipeline ||
		    !WTSVirtualChannelManagerIsChannelJoined(g->vcm,
		    "drdynvc") ||
		    WTSVirtualChannelManagerGetDrdynvcState(g->vcm) !=
		    DRDYNVC_STATE_READY)
			return (0);
		if ((g->ctx = rdpgfx_server_context_new(g->vcm)) == NULL) {
			g->state = RDP_GFX_DEAD;
			return (0);
		}
		g->ctx->custom = g;
		g->ctx->rdpcontext = g->peer->context;
		g->ctx->CapsAdvertise = rdp_gfx_on_caps;
		g->ctx->FrameAcknowledge = rdp_gfx_on_ack;
		g->ctx->CacheImportOffer = rdp_gfx_on_cache_offer;
		g->ctx->ChannelIdAssigned = rdp_gfx_on_channel_id;
		if (!g->ctx->Open(g->ctx)) {
			log_warnx("%s: cannot open the graphics pipeline "
			    "channel; bitmap updates", who);
			g->state = RDP_GFX_DEAD;
			return (0);
		}
		log_debug("%s: graphics pipeline channel opened", who);
		g->state = RDP_GFX_OPENING;
		return (0);
	}

	pthread_mutex_lock(&g->mtx);
	ncaps = g->ncaps;
	pthread_mutex_unlock(&g->mtx);
	if (ncaps >= 0 && g->state == RDP_GFX_ACTIVE) {
		log_warnx("%s: graphics pipeline caps again; ignored", who);
		pthread_mutex_lock(&g->mtx);
		g->ncaps = -1;
		pthread_mutex_unlock(&g->mtx);
	} else if (ncaps >= 0) {
		if (rdp_gfx_confirm(g, who) != 0) {
			g->state = RDP_GFX_DEAD;
			return (g->width != 0 ? -1 : 0);
		}
		g->state = RDP_GFX_ACTIVE;
		repaint = 1;
	}
	if (g->state != RDP_GFX_ACTIVE)
		return (0);
	pthread_mutex_lock(&g->mtx);
	offer = g->cacheoffer;
	g->cacheoffer = 0;
	pthread_mutex_unlock(&g->mtx);
	if (offer) {
		/* No persistent cache here: nothing imported. */
		memset(&reply, 0, sizeof reply);
		if (g->ctx->CacheImportReply(g->ctx, &reply) != CHANNEL_RC_OK)
			return (-1);
	}
	return (repaint);
}

/*
 * Surface commands go to the channel, the frame's start with the first
 * and its end with the last: one channel message instead of three, each
 * with its own RDP, TLS and TCP headers (a typed key is one small
 * command, where those headers were most of the bytes). A planar
 * command goes as ClearCodec instead when that is shorter: a small one
 * as a glyph (a character seen before is 4 bytes), a bigger one as runs
 * (a tile of one colour is 20 bytes; rdp-gfx-clear.c).
 */
static int
rdp_gfx_emit_cmd(void *arg, RDPGFX_SURFACE_COMMAND *cmd)
{
	struct rdp_gfx		*g = arg;
	RDPGFX_START_FRAME_PDU	*start = g->fstart;
	RDPGFX_END_FRAME_PDU	*end = NULL;
	const uint8_t		*data;
	size_t			 len;

	if (cmd->codecId == RDPGFX_CODECID_PLANAR && g->fimg != NULL &&
	    rdp_gfx_clear_encode(g->clear, g->fimg, cmd->left, cmd->top,
	    cmd->width, cmd->height, cmd->length, &data, &len) == 1) {
		g->bytes -= cmd->length;
		g->bytes += len;
		cmd->codecId = RDPGFX_CODECID_CLEARCODEC;
		cmd->data = (BYTE *)data;
		cmd->length = len;
	}

	if (g->fleft > 0 && --g->fleft == 0)
		end = g->fend;
	if (g->ctx->SurfaceFrameCommand(g->ctx, cmd, start, end) !=
	    CHANNEL_RC_OK)
		return (-1);
	g->fstart = NULL;
	if (end != NULL)
		g->fend = NULL;
	return (0);
}

/*
 * One frame: the tiles of grid lossless (only their boxes when given),
 * or else rects with the codec.
 */
static int
rdp_gfx_frame(struct rdp_gfx *g, const struct rdp_gfx_image *img,
    const struct rdp_rect *rects, int n, const uint8_t *grid,
    const struct rdp_rect *boxes)
{
	RDPGFX_START_FRAME_PDU	 start;
	RDPGFX_END_FRAME_PDU	 end;
	uint64_t		 ms = rdp_peer_ms();
	int			 rc;

	memset(&start, 0, sizeof start);
	pthread_mutex_lock(&g->mtx);
	start.frameId = rdp_gfx_pace_start(&g->pace);
	pthread_mutex_unlock(&g->mtx);
	start.timestamp = (UINT32)(ms % (24 * 3600 * 1000));
	memset(&end, 0, sizeof end);
	end.frameId = start.frameId;
	g->fimg = img;
	g->fstart = &start;
	g->fend = &end;
	/* A lossy codec makes one command of the frame. */
	g->fleft = grid != NULL ? rdp_gfx_codec_count(img, grid, g->gw,
	    g->gh) : 1;
	if (grid != NULL)
		rc = rdp_gfx_codec_planar(g->enc, img, grid, boxes, g->gw,
		    g->gh, rdp_gfx_emit_cmd, g, &g->bytes);
	else
		rc = rdp_gfx_codec_lossy(g->enc, img, rects, n,
		    rdp_gfx_emit_cmd, g, &g->bytes);
	/* Whatever the commands did not carry goes on its own. */
	if (rc == 0 && g->fstart != NULL &&
	    g->ctx->StartFrame(g->ctx, &start) != CHANNEL_RC_OK)
		rc = -1;
	if (rc == 0 && g->fend != NULL &&
	    g->ctx->EndFrame(g->ctx, &end) != CHANNEL_RC_OK)
		rc = -1;
	g->fimg = NULL;
	g->fstart = NULL;
	g->fend = NULL;
	g->fleft = 0;
	if (rc != 0)
		return (-1);
	g->frames++;
	g->encms += rdp_peer_ms() - ms;
	return (0);
}

static int
rdp_gfx_may_send(struct rdp_gfx *g)
{
	int	may;

	pthread_mutex_lock(&g->mtx);
	may = rdp_gfx_pace_may_send(&g->pace);
	pthread_mutex_unlock(&g->mtx);
	return (may);
}

static void
rdp_gfx_image(const struct rdp_rfb *rfb, struct rdp_gfx_image *img)
{
	img->fb = rfb->fb;
	img->stride = rfb->stride;
	img->width = rfb->width;
	img->height = rfb->height;
}

/*
 * A client that speaks the pipeline gets it a moment after activation
 * (drdynvc, then the channel, then its caps): bitmap updates meanwhile
 * would cost a full screen for nothing. Wait up to RDP_GFX_WAIT_MS.
 */
static int
rdp_gfx_waiting(struct rdp_gfx *g)
{
	return ((g->state == RDP_GFX_WAIT || g->state == RDP_GFX_OPENING) &&
	    g->peer->settings->SupportGraphicsPipeline && g->waitsince != 0 &&
	    rdp_peer_ms() - g->waitsince < RDP_GFX_WAIT_MS);
}

/*
 * Send the damage as one frame. Returns 1 when sent, 0 when the window is
 * full (keep the damage), -1 on failure, RDP_GFX_OFF when the pipeline is
 * not in use (send bitmap updates instead).
 */
int
rdp_gfx_send(struct rdp_gfx *g, const struct rdp_rfb *rfb,
    const struct rdp_rect *rects, int n)
{
	struct rdp_gfx_image	 img;
	struct rdp_rect		 all, *boxes;
	uint8_t			*grid;
	uint64_t		 bytes;
	int			 i, tiles, lossless;

	if (g->state != RDP_GFX_ACTIVE)
		return (rdp_gfx_waiting(g) ? 0 : RDP_GFX_OFF);
	if (!rdp_gfx_may_send(g)) {
		g->held++;
		return (0);
	}
	if (rfb->width != g->width || rfb->height != g->height) {
		if (rdp_gfx_surface(g, rfb->width, rfb->height, "RDP") != 0)
			return (-1);
		all.x = all.y = 0;
		all.w = rfb->width;
		all.h = rfb->height;
		rects = &all;
		n = 1;
	}
	rdp_gfx_image(rfb, &img);

	/* Small damage goes lossless at once: it is the text being typed. */
	grid = xcalloc((size_t)g->gw * g->gh, 1);
	rdp_encode_grid(grid, g->gw, g->gh, RDP_GFX_TILE, rects, n);
	for (i = tiles = 0; i < g->gw * g->gh; i++)
		tiles += grid[i];
	lossless = g->codec == RDP_GFX_PLANAR || tiles <= RDP_GFX_SMALL_TILES;
	if (lossless) {
		/*
		 * Only the damaged part of each tile, except where a lossy
		 * frame left the tile: that one goes whole, exact again.
		 */
		boxes = xcalloc((size_t)g->gw * g->gh, sizeof *boxes);
		rdp_gfx_codec_boxes(boxes, g->gw, g->gh, rects, n);
		for (i = 0; i < g->gw * g->gh; i++) {
			if (grid[i] && g->lossy[i]) {
				g->lossy[i] = 0;
				g->nlossy--;
				boxes[i].w = 0;
			}
		}
		i = rdp_gfx_frame(g, &img, NULL, 0, grid, boxes);
		free(boxes);
		free(grid);
		if (i != 0)
			return (-1);
		g->planarframes++;
		return (1);
	}
	for (i = 0; i < g->gw * g->gh; i++) {
		if (grid[i] && !g->lossy[i]) {
			g->lossy[i] = 1;
			g->nlossy++;
		}
	}
	free(grid);
	bytes = g->bytes;
	if (rdp_gfx_frame(g, &img, rects, n, NULL, NULL) != 0)
		return (-1);
	g->lossyframes++;
	rdp_gfx_refine_lossy(&g->refine, rdp_peer_ms(), g->bytes - bytes);
	return (1);
}

/*
 * Nothing new to send: once motion has stopped (rdp-gfx-refine.c says
 * for how long, and how many tiles its budget allows now), send the
 * first tiles lossy frames left, lossless. Returns 1 when a frame went,
 * 0 when none, -1 on failure.
 */
int
rdp_gfx_idle(struct rdp_gfx *g, const struct rdp_rfb *rfb)
{
	struct rdp_gfx_image	 img;
	uint64_t		 now = rdp_peer_ms(), bytes;
	uint8_t			*grid;
	int			 i, k, want, rc;

	if (g->state != RDP_GFX_ACTIVE ||
	    rfb->width != g->width || rfb->height != g->height ||
	    rdp_gfx_refine_wait(&g->refine, now, g->nlossy) != 0 ||
	    !rdp_gfx_may_send(g))
		return (0);
	want = rdp_gfx_refine_tiles(&g->refine, now);
	if (g->refine.lastrefine == 0)
		log_debug("RDP: lossless refinement of %d tiles at %llu "
		    "bytes/s, %d a frame", g->nlossy, (unsigned long long)
		    rdp_gfx_refine_rate(&g->refine), want);
	grid = xcalloc((size_t)g->gw * g->gh, 1);
	for (i = k = 0; i < g->gw * g->gh && k < want; i++) {
		if (g->lossy[i]) {
			grid[i] = 1;
			g->lossy[i] = 0;
			g->nlossy--;
			k++;
		}
	}
	rdp_gfx_image(rfb, &img);
	bytes = g->bytes;
	rc = rdp_gfx_frame(g, &img, NULL, 0, grid, NULL);
	free(grid);
	if (rc != 0)
		return (-1);
	rdp_gfx_refine_sent(&g->refine, rdp_peer_ms(), k, g->bytes - bytes,
	    g->nlossy);
	g->refines++;
	return (1);
}

/* Milliseconds until rdp_gfx_idle has work, or -1 for none. */
int
rdp_gfx_timeout(struct rdp_gfx *g)
{
	uint64_t	since;

	if (rdp_gfx_waiting(g)) {
		since = rdp_peer_ms() - g->waitsince;
		return (since >= RDP_GFX_WAIT_MS ? 0 :
		    (int)(RDP_GFX_WAIT_MS - since));
	}
	if (g->state != RDP_GFX_ACTIVE || !rdp_gfx_may_send(g))
		return (-1);	/* an ack wakes the session through the pipe */
	return (rdp_gfx_refine_wait(&g->refine, rdp_peer_ms(), g->nlossy));
}
