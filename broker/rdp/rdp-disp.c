/*
 * The Display Control channel (MS-RDPEDISP) of one session: a client
 * whose window changes size (xfreerdp /dynamic-resolution, mstsc) sends
 * monitor layouts; the gateway asks QEMU for that size (SetDesktopSize on
 * the console's VNC connection), QEMU passes it to the display device as
 * its UI info, and a guest whose driver follows (virtio-gpu, QXL with its
 * agent) changes mode. The new framebuffer then reaches the client as any
 * guest resize does (rdp-peer.c). A display that cannot resize (std VGA)
 * makes QEMU refuse: the gateway stops asking and the client keeps its
 * size (it scales or crops as it likes).
 *
 * Threads: FreeRDP 2's disp server reads the channel in a thread of its
 * own and parses the layout PDUs (the gateway parses none); its callback
 * only records the wanted size under a mutex and wakes the session thread
 * through a pipe. The capabilities go out once the client has accepted
 * the channel (its creation status, on the session thread), so a client
 * without the channel never sees data for it.
 *
 * Bursts: a window being dragged sends a layout every 200 ms. A size is
 * asked for once no newer layout came for RDP_DISP_QUIET_MS, or at the
 * latest RDP_DISP_MAX_MS after the first of a burst; the same size is
 * never asked twice in a row.
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
#include <freerdp/server/disp.h>

#include "compat.h"
#include "log.h"
#include "rdp-chan.h"
#include "rdp-int.h"
#include "xmalloc.h"

enum rdp_disp_state {
	RDP_DISP_WAIT,		/* drdynvc or activation not there yet */
	RDP_DISP_OPENING,	/* channel asked for, client not answered */
	RDP_DISP_OPEN,		/* caps sent: layouts may come */
	RDP_DISP_DEAD,		/* not for this client */
};

struct rdp_disp {
	freerdp_peer		*peer;
	HANDLE			 vcm;
	DispServerContext	*ctx;
	enum rdp_disp_state	 state;
	int			 wake[2];	/* disp thread -> session */
	uint32_t		 chanid;
	int			 created;	/* 1 accepted, -1 refused, 0 not yet */

	/* What the disp thread recorded, under mtx. */
	pthread_mutex_t		 mtx;
	int			 want_w;
	int			 want_h;
	int			 want;		/* a layout came */
	uint64_t		 layouts;

	struct rdp_disp_debounce deb;
	int			 answers;	/* rfb->size_answers seen */
	int			 refused;	/* the display cannot resize */
	uint64_t		 asks;
};

/* One side of a monitor within RDP_DISP_MIN..RDP_FB_MAX. */
static int
rdp_disp_clamp(uint32_t v)
{
	if (v < RDP_DISP_MIN)
		return (RDP_DISP_MIN);
	if (v > RDP_FB_MAX)
		return (RDP_FB_MAX);
	return ((int)v);
}

/*
 * The size to ask the guest for from a client's monitors (pure): the
 * primary monitor's, else the first's; width even, both within
 * RDP_DISP_MIN..RDP_FB_MAX. -1 when there is no monitor.
 */
int
rdp_disp_layout_size(const DISPLAY_CONTROL_MONITOR_LAYOUT *mons, uint32_t n,
    int *w, int *h)
{
	const DISPLAY_CONTROL_MONITOR_LAYOUT	*m = NULL;
	uint32_t				 i;

	if (mons == NULL || n == 0)
		return (-1);
	for (i = 0; i < n && m == NULL; i++)
		if (mons[i].Flags & DISPLAY_CONTROL_MONITOR_PRIMARY)
			m = &mons[i];
	if (m == NULL)
		m = &mons[0];
	*w = rdp_disp_clamp(m->Width) & ~1;
	*h = rdp_disp_clamp(m->Height);
	return (0);
}

/* A layout of w x h arrived at now (ms). */
void
rdp_disp_debounce_offer(struct rdp_disp_debounce *d, int w, int h,
    uint64_t now)
{
	if (!d->pending)
		d->first = now;
	d->pending = 1;
	d->w = w;
	d->h = h;
	d->last = now;
}

/*
 * Whether the pending size is due at now: quiet for RDP_DISP_QUIET_MS, or
 * RDP_DISP_MAX_MS since the burst began. A size equal to cur_w x cur_h or
 * to the last one asked is dropped. Returns 1 (ask *w x *h), 0 (not yet,
 * or nothing).
 */
int
rdp_disp_debounce_due(struct rdp_disp_debounce *d, uint64_t now,
    int cur_w, int cur_h, int *w, int *h)
{
	if (!d->pending)
		return (0);
	if (now - d->last < RDP_DISP_QUIET_MS &&
	    now - d->first < RDP_DISP_MAX_MS)
		return (0);
	d->pending = 0;
	if ((d->w == cur_w && d->h == cur_h) ||
	    (d->w == d->asked_w && d->h == d->asked_h))
		return (0);
	d->asked_w = *w = d->w;
	d->asked_h = *h = d->h;
	return (1);
}

/* Milliseconds until rdp_disp_debounce_due may say yes, or -1. */
int
rdp_disp_debounce_timeout(const struct rdp_disp_debounce *d, uint64_t now)
{
	uint64_t	a, b;

	if (!d->pending)
		return (-1);
	a = d->last + RDP_DISP_QUIET_MS;
	b = d->first + RDP_DISP_MAX_MS;
	if (b < a)
		a = b;
	return (a <= now ? 0 : (int)(a - now));
}

static void
rdp_disp_wake(struct rdp_disp *dc)
{
	char	c = 0;

	(void)write(dc->wake[1], &c, 1);
}

/* The disp thread's callback: record the newest size, wake the session. */
static UINT
rdp_disp_on_layout(DispServerContext *ctx,
    const DISPLAY_CONTROL_MONITOR_LAYOUT_PDU *pdu)
{
	struct rdp_disp	*dc = ctx->custom;
	int		 w, h;

	if (rdp_disp_layout_size(pdu->Monitors, pdu->NumMonitors, &w,
	    &h) != 0)
		return (CHANNEL_RC_OK);
	pthread_mutex_lock(&dc->mtx);
	dc->want_w = w;
	dc->want_h = h;
	dc->want = 1;
	dc->layouts++;
	pthread_mutex_unlock(&dc->mtx);
	rdp_disp_wake(dc);
	return (CHANNEL_RC_OK);
}

static BOOL
rdp_disp_on_channel_id(DispServerContext *ctx, UINT32 id)
{
	struct rdp_disp	*dc = ctx->custom;

	dc->chanid = id;
	return (TRUE);
}

/* The client's answer to a dynamic channel (session thread). */
static BOOL
rdp_disp_on_created(void *arg, UINT32 id, INT32 status)
{
	struct rdp_disp	*dc = arg;

	if (dc->chanid != 0 && id == dc->chanid)
		dc->created = status >= 0 ? 1 : -1;
	return (TRUE);
}

struct rdp_disp *
rdp_disp_create(freerdp_peer *peer, HANDLE vcm)
{
	struct rdp_disp	*dc;

	dc = xcalloc(1, sizeof *dc);
	dc->peer = peer;
	dc->vcm = vcm;
	dc->wake[0] = dc->wake[1] = -1;
	dc->state = RDP_DISP_WAIT;
	pthread_mutex_init(&dc->mtx, NULL);
	if (pipe2(dc->wake, O_CLOEXEC | O_NONBLOCK) == -1) {
		log_warn("RDP: pipe for the display control channel");
		dc->state = RDP_DISP_DEAD;
	}
	return (dc);
}

/* Close the channel (joins the disp thread). */
void
rdp_disp_free(struct rdp_disp *dc)
{
	if (dc == NULL)
		return;
	if (dc->ctx != NULL) {
		WTSVirtualChannelManagerSetDVCCreationCallback(dc->vcm, NULL,
		    NULL);
		dc->ctx->Close(dc->ctx);
		disp_server_context_free(dc->ctx);
	}
	if (dc->wake[0] != -1)
		close(dc->wake[0]);
	if (dc->wake[1] != -1)
		close(dc->wake[1]);
	pthread_mutex_destroy(&dc->mtx);
	free(dc);
}

int
rdp_disp_fd(const struct rdp_disp *dc)
{
	if (dc == NULL || dc->state == RDP_DISP_DEAD)
		return (-1);
	return (dc->wake[0]);
}

/* Milliseconds until rdp_disp_check has work, or -1. */
int
rdp_disp_timeout(const struct rdp_disp *dc)
{
	if (dc == NULL || dc->state != RDP_DISP_OPEN)
		return (-1);
	return (rdp_disp_debounce_timeout(&dc->deb, rdp_peer_ms()));
}

/* Open the channel once drdynvc is ready and the client is active. */
static void
rdp_disp_open(struct rdp_disp *dc, const char *who)
{
	if (!WTSVirtualChannelManagerIsChannelJoined(dc->vcm, "drdynvc") ||
	    WTSVirtualChannelManagerGetDrdynvcState(dc->vcm) !=
	    DRDYNVC_STATE_READY)
		return;
	if ((dc->ctx = disp_server_context_new(dc->vcm)) == NULL) {
		dc->state = RDP_DISP_DEAD;
		return;
	}
	dc->ctx->custom = dc;
	dc->ctx->rdpcontext = dc->peer->context;
	dc->ctx->MaxNumMonitors = 1;		/* one head per desktop */
	dc->ctx->MaxMonitorAreaFactorA = RDP_FB_MAX;
	dc->ctx->MaxMonitorAreaFactorB = RDP_FB_MAX;
	dc->ctx->DispMonitorLayout = rdp_disp_on_layout;
	dc->ctx->ChannelIdAssigned = rdp_disp_on_channel_id;
	WTSVirtualChannelManagerSetDVCCreationCallback(dc->vcm,
	    rdp_disp_on_created, dc);
	if (dc->ctx->Open(dc->ctx) != CHANNEL_RC_OK) {
		log_debug("%s: no display control channel", who);
		dc->state = RDP_DISP_DEAD;
		return;
	}
	dc->state = RDP_DISP_OPENING;
}

/*
 * After each poll: open the channel, send the caps once the client took
 * it, and ask QEMU for the size the client's window wants when due.
 */
void
rdp_disp_check(struct rdp_disp *dc, struct rdp_rfb *rfb, int activated,
    const char *who)
{
	char		 buf[64];
	int		 w, h, want;
	uint64_t	 now;

	if (dc == NULL || dc->state == RDP_DISP_DEAD || rfb == NULL)
		return;
	while (read(dc->wake[0], buf, sizeof buf) > 0)
		;
	if (dc->state == RDP_DISP_WAIT) {
		if (activated)
			rdp_disp_open(dc, who);
		return;
	}
	if (dc->state == RDP_DISP_OPENING) {
		if (dc->created == 0)
			return;
		if (dc->created < 0) {
			log_debug("%s: the client has no display control",
			    who);
			dc->state = RDP_DISP_DEAD;
			return;
		}
		if (dc->ctx->DisplayControlCaps(dc->ctx) != CHANNEL_RC_OK) {
			log_warnx("%s: cannot send the display control caps",
			    who);
			dc->state = RDP_DISP_DEAD;
			return;
		}
		log_info("%s: display control channel open", who);
		dc->state = RDP_DISP_OPEN;
	}

	/* QEMU's answer to our last request. */
	if (rfb->size_answers != dc->answers) {
		dc->answers = rfb->size_answers;
		if (RDP_RFB_SIZE_REFUSED(rfb->size_status) && !dc->refused) {
			dc->refused = 1;
			log_info("%s: the desktop's display cannot resize "
			    "(QEMU status %d); the client keeps %dx%d", who,
			    rfb->size_status, rfb->width, rfb->height);
		}
	}

	now = rdp_peer_ms();
	pthread_mutex_lock(&dc->mtx);
	want = dc->want;
	w = dc->want_w;
	h = dc->want_h;
	dc->want = 0;
	pthread_mutex_unlock(&dc->mtx);
	if (want)
		rdp_disp_debounce_offer(&dc->deb, w, h, now);
	if (!rdp_disp_debounce_due(&dc->deb, now, rfb->width, rfb->height,
	    &w, &h))
		return;
	if (dc->refused || !rfb->extdesk) {
		log_debug("%s: client window %dx%d; the display cannot "
		    "resize", who, w, h);
		return;
	}
	log_info("%s: client window %dx%d: asking the guest for it (now "
	    "%dx%d)", who, w, h, rfb->width, rfb->height);
	if (rdp_rfb_set_size(rfb, w, h) != 0)
		log_warnx("%s: cannot send SetDesktopSize", who);
	else
		dc->asks++;
}

/* The channel's figures, for the session's last lines. */
void
rdp_disp_log(struct rdp_disp *dc, const char *who)
{
	uint64_t	layouts;

	if (dc == NULL || dc->state == RDP_DISP_WAIT)
		return;
	pthread_mutex_lock(&dc->mtx);
	layouts = dc->layouts;
	pthread_mutex_unlock(&dc->mtx);
	log_info("%s: display control: %llu layouts from the client, %llu "
	    "sizes asked of the guest%s", who, (unsigned long long)layouts,
	    (unsigned long long)dc->asks, dc->refused ?
	    ", the display cannot resize" : "");
}
