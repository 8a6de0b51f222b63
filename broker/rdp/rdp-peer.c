/*
 * One RDP connection, in a thread of its own (rdp-int.h says why). The
 * thread owns the FreeRDP peer, the VNC connection to the desktop and the
 * encoder; it talks to qmpd only over connections it opens itself and to
 * the broker's loop only over its control socket. Nothing here touches
 * the broker's state.
 *
 * This file is the thread's life: set up the peer (TLS, no NLA; the
 * callbacks of rdp-peer-connect.c, -input.c and -update.c), run
 * rdp-peer-loop.c's loop, log the session's figures and free it all;
 * plus the helpers every part of the session uses (rdp-peer.h).
 */
#include <sys/socket.h>

#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <freerdp/freerdp.h>
#include <freerdp/error.h>
#include <freerdp/peer.h>
#include <freerdp/settings.h>
#include <freerdp/channels/channels.h>
#include <freerdp/channels/wtsvc.h>

#include "compat.h"
#include "log.h"
#include "rdp-chan.h"
#include "rdp-gfx.h"
#include "rdp-scale.h"
#include "rdp-peer.h"
#include "xmalloc.h"

/* Milliseconds on the monotonic clock (also the gfx pacing's clock). */
uint64_t
rdp_peer_ms(void)
{
	struct timespec	ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ((uint64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000);
}

struct rdp_session *
rdp_peer_session(rdpContext *context)
{
	return (((struct rdp_peer_context *)context)->s);
}

/* Remember the first reason the session ends; later ones are effects. */
void
rdp_peer_end(struct rdp_session *s, const char *fmt, ...)
{
	va_list	ap;

	if (s->end != NULL)
		return;
	va_start(ap, fmt);
	if (vasprintf(&s->end, fmt, ap) == -1)
		s->end = NULL;
	va_end(ap);
	if (s->end == NULL)
		s->end = xstrdup("unknown reason");
}

/* Who, for log lines: the address, then the user once known. */
const char *
rdp_peer_who(struct rdp_session *s, char *buf, size_t len)
{
	if (s->authed)
		snprintf(buf, len, "RDP %s (%s on %s)", s->addr, s->login.login,
		    s->login.vm);
	else
		snprintf(buf, len, "RDP %s", s->addr);
	return (buf);
}

/* Tell the client why it is refused or cut, in its own words (xfreerdp
 * and mstsc show the text for the code). */
void
rdp_peer_errinfo(struct rdp_session *s, UINT32 code)
{
	freerdp_set_error_info(s->peer->context->rdp, code);
	freerdp_send_error_info(s->peer->context->rdp);
}

static BOOL
rdp_peer_context_new(freerdp_peer *peer, rdpContext *context)
{
	((struct rdp_peer_context *)context)->s = peer->ContextExtra;
	return (TRUE);
}

static void
rdp_peer_context_free(freerdp_peer *peer, rdpContext *context)
{
}

/* FreeRDP's virtual channel API (WTS*) serves our peers: once. */
static pthread_once_t rdp_peer_wts_once = PTHREAD_ONCE_INIT;

static void
rdp_peer_wts_init(void)
{
	WTSRegisterWtsApiFunctionTable(FreeRDP_InitWtsApi());
}

/*
 * FreeRDP opens its channel managers' global table without a lock:
 * sessions open and close theirs one at a time.
 */
static pthread_mutex_t rdp_peer_wts_lock = PTHREAD_MUTEX_INITIALIZER;

/* Set up the peer: TLS only, our certificate, 32 bpp, our callbacks. */
static int
rdp_peer_setup(struct rdp_session *s, int fd)
{
	freerdp_peer	*peer;
	rdpSettings	*settings;

	if ((peer = freerdp_peer_new(fd)) == NULL)
		return (-1);
	s->peer = peer;
	peer->ContextSize = sizeof(struct rdp_peer_context);
	peer->ContextNew = rdp_peer_context_new;
	peer->ContextFree = rdp_peer_context_free;
	peer->ContextExtra = s;
	if (!freerdp_peer_context_new(peer)) {
		close(fd);
		return (-1);
	}
	settings = peer->settings;
	settings->CertificateContent = xstrdup(s->cfg.cert_pem);
	settings->PrivateKeyContent = xstrdup(s->cfg.key_pem);
	settings->RdpSecurity = FALSE;
	settings->TlsSecurity = TRUE;
	settings->NlaSecurity = FALSE;
	settings->ColorDepth = 32;
	settings->RemoteFxCodec = FALSE;
	settings->NSCodec = FALSE;
	settings->SupportGraphicsPipeline = TRUE;	/* the client may say no */
	settings->SupportErrorInfoPdu = TRUE;
	settings->RefreshRect = TRUE;
	settings->SuppressOutput = TRUE;
	settings->DesktopResize = TRUE;
	settings->UnicodeInput = TRUE;
	settings->HasHorizontalWheel = TRUE;
	settings->HasExtendedMouseEvent = TRUE;

	rdp_peer_connect_hook(peer);
	rdp_peer_input_hook(peer);
	rdp_peer_update_hook(peer);
	if (!peer->Initialize(peer))
		return (-1);
	pthread_once(&rdp_peer_wts_once, rdp_peer_wts_init);
	pthread_mutex_lock(&rdp_peer_wts_lock);
	s->vcm = WTSOpenServerA((LPSTR)peer->context);
	pthread_mutex_unlock(&rdp_peer_wts_lock);
	if (s->vcm == NULL || s->vcm == INVALID_HANDLE_VALUE) {
		s->vcm = NULL;		/* nothing to close */
		return (-1);
	}
	/* Clipboard and sound (rdp-chan.c) on it. */
	s->chan = rdp_chan_create(peer, s->vcm);
	return (0);
}

static void *
rdp_peer_main(void *arg)
{
	struct rdp_session	*s = arg;
	char			 who[256];
	uint64_t		 ms;

	s->enc = rdp_encode_create();
	if (s->vcm != NULL)
		s->gfx = rdp_gfx_create(s->peer, s->vcm);
	s->since = rdp_peer_ms();
	if (s->peer != NULL && s->peer->context != NULL) {
		rdp_peer_loop(s);
		rdp_peer_loop_drain(s);
	}
	rdp_follow_free(s->follow);
	s->follow = NULL;
	/*
	 * Before the session's line: its gfx figures (rdp.gfx), clipboard
	 * and sound figures. The channels close before their manager
	 * (they use it to close).
	 */
	rdp_gfx_free(s->gfx, rdp_peer_who(s, who, sizeof who));
	rdp_chan_log(s->chan, rdp_peer_who(s, who, sizeof who));
	rdp_chan_free(s->chan);
	s->chan = NULL;
	if (s->vcm != NULL) {
		pthread_mutex_lock(&rdp_peer_wts_lock);
		WTSCloseServer(s->vcm);
		pthread_mutex_unlock(&rdp_peer_wts_lock);
	}
	ms = rdp_peer_ms() - s->since;
	if (s->authed)
		log_info("%s: session ended after %llu.%03llu s (%s); %llu "
		    "frames, %llu updates, %llu tiles, %llu bytes of bitmaps, "
		    "%llu "
		    "waits for the client; "
		    "key to screen %llu ms average, %llu ms worst, %llu keys",
		    rdp_peer_who(s, who, sizeof who),
		    (unsigned long long)ms / 1000,
		    (unsigned long long)ms % 1000,
		    s->end != NULL ? s->end : "no reason",
		    (unsigned long long)s->stats.frames,
		    (unsigned long long)s->stats.updates,
		    (unsigned long long)s->stats.tiles,
		    (unsigned long long)s->stats.bytes,
		    (unsigned long long)s->stats.blocked,
		    (unsigned long long)(s->keyn > 0 ? s->keysum / s->keyn : 0),
		    (unsigned long long)s->keymax,
		    (unsigned long long)s->keyn);
	else
		log_info("RDP %s: connection closed before login (%s)",
		    s->addr, s->end != NULL ? s->end : "no reason");
	if (s->authed && s->rfb != NULL && s->rfb->pump != NULL) {
		uint64_t	bytes, updates, full, waitms;

		rdp_pump_stats(s->rfb->pump, &bytes, &updates, &full, &waitms);
		log_info("%s: VNC reader thread: %llu bytes, %llu updates, "
		    "buffer full %llu times, %llu ms waited for the rest of a "
		    "message, %llu refresh nudges", rdp_peer_who(s, who,
		    sizeof who), (unsigned long long)bytes,
		    (unsigned long long)updates, (unsigned long long)full,
		    (unsigned long long)waitms,
		    (unsigned long long)s->rfb->nudges);
	}
	/* What taking QEMU's messages cost this thread (wall, CPU). */
	if (s->authed && s->vncmsgs > 0)
		log_info("%s: VNC messages: %llu, %llu ms wall and %llu ms CPU "
		    "on the session thread (%s)", rdp_peer_who(s, who,
		    sizeof who), (unsigned long long)s->vncmsgs,
		    (unsigned long long)s->vncus / 1000,
		    (unsigned long long)s->vnccpuus / 1000,
		    s->rfb != NULL && s->rfb->threaded ?
		    "from the reader thread" : "read from the socket");

	if (s->peer != NULL && s->peer->context != NULL) {
		s->peer->Disconnect(s->peer);
		freerdp_peer_context_free(s->peer);
	}
	if (s->peer != NULL)
		freerdp_peer_free(s->peer);
	/*
	 * The client left (not kicked, revoked or stopped): the VNC stream
	 * stays as the desktop's clipboard keeper (rdp-clip-keep.c), so a
	 * copy in the guest before the next session is not lost.
	 */
	if (s->authed && s->end != NULL && s->rfb != NULL &&
	    (strcmp(s->end, "the client disconnected") == 0 ||
	    strcmp(s->end, "the client stopped reading") == 0) &&
	    rdp_clip_keep_start(s->rfb, s->login.login, s->login.vm) == 0)
		s->rfb = NULL;
	rdp_rfb_free(s->rfb);
	rdp_scaled_free(s->scaled);
	rdp_encode_free(s->enc);
	if (s->login.vncfd != -1)
		close(s->login.vncfd);
	close(s->ctl);
	free(s->cfg.cert_pem);
	free(s->cfg.key_pem);
	free(s->cfg.qmpd_socket);
	free(s->end);
	free(s);
	return (NULL);
}

/*
 * Start a session thread for the client on fd; ctl is its end of the
 * control socket. Both belong to the session from here on, also on
 * failure. Signals stay with the broker's loop: the thread blocks all.
 */
int
rdp_peer_spawn(int fd, int ctl, const char *addr,
    const struct rdp_config *cfg, char **cause)
{
	struct rdp_session	*s;
	pthread_attr_t		 attr;
	pthread_t		 tid;
	sigset_t		 all, old;
	int			 error;

	s = xcalloc(1, sizeof *s);
	s->ctl = ctl;
	s->login.vncfd = -1;
	strlcpy(s->addr, addr, sizeof s->addr);
	s->cfg.cert_pem = xstrdup(cfg->cert_pem);
	s->cfg.key_pem = xstrdup(cfg->key_pem);
	s->cfg.qmpd_socket = xstrdup(cfg->qmpd_socket);
	if (rdp_peer_setup(s, fd) != 0) {
		xasprintf(cause, "RDP %s: cannot set up the FreeRDP peer",
		    addr);
		if (s->peer == NULL)
			close(fd);
		rdp_peer_end(s, "setup failed");
		rdp_peer_main(s);
		return (-1);
	}

	pthread_attr_init(&attr);
	pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
	sigfillset(&all);
	pthread_sigmask(SIG_SETMASK, &all, &old);
	error = pthread_create(&tid, &attr, rdp_peer_main, s);
	pthread_sigmask(SIG_SETMASK, &old, NULL);
	pthread_attr_destroy(&attr);
	if (error != 0) {
		xasprintf(cause, "RDP %s: cannot start a thread: %s", addr,
		    strerror(error));
		rdp_peer_end(s, "no thread");
		rdp_peer_main(s);
		return (-1);
	}
	return (0);
}
