/*
 * One RDP connection, in a thread of its own (rdp-int.h says why). The
 * thread owns the FreeRDP peer, the VNC connection to the desktop and the
 * encoder; it polls the client's socket, the VNC fd and its control socket
 * to the broker's loop, and talks to qmpd only over connections it opens
 * itself. Nothing here touches the broker's state.
 *
 * The life of a session: TLS (no NLA), the client info PDU with the user
 * name and password, then, just before the server's capabilities go out,
 * the login (rdp-login.c) and the RFB handshake, so the desktop size
 * announced to the client is already the guest's. After activation every
 * FramebufferUpdate becomes bitmap updates of the damaged tiles; the next
 * update is requested only when the client has taken the last one, so a
 * slow client slows the frame rate instead of filling memory.
 */
#include <sys/socket.h>

#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <freerdp/freerdp.h>
#include <freerdp/error.h>
#include <freerdp/input.h>
#include <freerdp/peer.h>
#include <freerdp/settings.h>
#include <freerdp/update.h>
#include <freerdp/channels/channels.h>
#include <freerdp/channels/wtsvc.h>
#include <winpr/synch.h>

#include "compat.h"
#include "log.h"
#include "rdp-chan.h"
#include "rdp-gfx.h"
#include "rdp-int.h"
#include "xmalloc.h"

#define RDP_PEER_HANDLES	32
#define RDP_PEER_CHANFDS	5	/* the manager's, gfx's, cliprdr, rdpsnd,
					   disp's */
#define RDP_PEER_TICK		1000	/* ms between loop wake-ups */
#define RDP_PEER_DRAIN		2	/* seconds to flush a goodbye */
#define RDP_PEER_REVOKE_MS	500	/* ms between revocation checks */
#define RDP_PEER_REVOKE_WAIT	2	/* s for qmpd's answer (1 to 2) */

struct rdp_session {
	freerdp_peer		*peer;
	int			 ctl;
	char			 addr[RDP_ADDR_MAX];
	struct rdp_config	 cfg;

	struct rdp_login_result	 login;
	int			 authed;
	struct rdp_rfb		*rfb;
	struct rdp_encode	*enc;
	struct rdp_chan		*chan;		/* clipboard, sound */
	struct rdp_inputstate	 input;
	struct rdp_encode_stats	 stats;
	HANDLE			 vcm;		/* virtual channels */
	struct rdp_gfx		*gfx;		/* graphics pipeline */
	struct rdp_follow	*follow;	/* the stream is gone: looking */

	int			 activated;
	int			 suppressed;
	int			 requested;	/* an RFB update is due */
	int			 resize;	/* RDP desktop must follow */
	int			 leds;		/* last sent to the client */
	char			*end;		/* why the session ended */
	uint64_t		 since;		/* ms, monotonic */
	uint64_t		 revoke_since;	/* ms, just before user.auth */
	uint64_t		 revoke_checked; /* ms, last desktop.revoked */

	/* Key to screen: from a key press to the next update sent. */
	uint64_t		 keyt;		/* ms of a press, or 0 */
	uint64_t		 keysum;
	uint64_t		 keymax;
	uint64_t		 keyn;
};

/* Milliseconds on the monotonic clock (also the gfx pacing's clock). */
uint64_t
rdp_peer_ms(void)
{
	struct timespec	ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ((uint64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000);
}

/* FreeRDP allocates ContextSize bytes; ours extends rdpContext. */
struct rdp_peer_context {
	rdpContext		 base;
	struct rdp_session	*s;
};

static struct rdp_session *
rdp_peer_session(rdpContext *context)
{
	return (((struct rdp_peer_context *)context)->s);
}

/* Remember the first reason the session ends; later ones are effects. */
static void
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
static const char *
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
static void
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

/*
 * Ask the loop whether this address may try a login now (the broker's
 * throttle, shared with the portal): 0 yes, else the seconds to wait, or
 * -1 when the loop does not answer or ends the session meanwhile.
 */
static int
rdp_peer_throttle(void *arg)
{
	struct rdp_session	*s = arg;
	struct pollfd		 pfd = { .fd = s->ctl, .events = POLLIN };
	char			 msg[RDP_CTL_MAX + 1];
	ssize_t			 n;
	int			 wait;

	if (send(s->ctl, "try", 3, MSG_NOSIGNAL) == -1)
		return (-1);
	for (;;) {
		n = poll(&pfd, 1, RDP_QMPD_TIMEOUT * 1000);
		if (n == -1 && errno == EINTR)
			continue;
		if (n <= 0)
			return (-1);
		n = recv(s->ctl, msg, sizeof msg - 1, 0);
		if (n == -1 && errno == EINTR)
			continue;
		if (n <= 0)
			return (-1);
		msg[n] = '\0';
		if (strcmp(msg, "go") == 0)
			return (0);
		if (sscanf(msg, "wait %d", &wait) == 1 && wait > 0)
			return (wait);
		return (-1);	/* a kick: the login is moot */
	}
}

/* The login attempt ended without failing: give its charge back. */
static void
rdp_peer_refund(void *arg)
{
	struct rdp_session	*s = arg;

	send(s->ctl, "refund", 6, MSG_NOSIGNAL);
}

/* Tell the loop the password was good: starting a desktop may take
 * longer than the logon deadline, which is for clients that say nothing. */
static void
rdp_peer_authed(void *arg, const char *login)
{
	struct rdp_session	*s = arg;
	char			 msg[RDP_CTL_MAX];

	snprintf(msg, sizeof msg, "auth %s", login);
	send(s->ctl, msg, strlen(msg), MSG_NOSIGNAL);
}

/*
 * Just before the server's capabilities go out: check the user, pick and
 * start the desktop, open its console, and announce its size and 32 bpp.
 * Returning FALSE ends the connection, after an error info PDU.
 */
static BOOL
rdp_peer_capabilities(freerdp_peer *peer)
{
	struct rdp_session	*s = rdp_peer_session(peer->context);
	rdpSettings		*settings = peer->settings;
	struct rdp_login	 in;
	char			*cause = NULL, msg[RDP_CTL_MAX], who[256];
	DWORD			 tokenlen = 0;
	int			 fd;

	if (s->authed)
		return (TRUE);
	memset(&in, 0, sizeof in);
	in.user = settings->Username;
	in.password = settings->Password;
	in.domain = settings->Domain;
	in.token = freerdp_nego_get_routing_token(peer->context, &tokenlen);
	in.tokenlen = tokenlen;
	in.addr = s->addr;
	log_debug("RDP %s: user '%s', domain '%s', routing token of %u bytes",
	    s->addr, in.user != NULL ? in.user : "", in.domain != NULL ?
	    in.domain : "", (unsigned int)in.tokenlen);
	in.throttle = rdp_peer_throttle;
	in.refund = rdp_peer_refund;
	in.authed = rdp_peer_authed;
	in.arg = s;
	/* Revocations from here on end this session (rdp_peer_revoked). */
	s->revoke_since = rdp_peer_ms();
	if (rdp_login(s->cfg.qmpd_socket, &in, &s->login, &cause) != 0) {
		log_warnx("RDP %s: %s", s->addr, cause);
		rdp_peer_end(s, "%s", cause);
		free(cause);
		rdp_peer_errinfo(s, s->login.errinfo);
		return (FALSE);
	}
	/* The password is not needed any more: do not keep it around. */
	if (settings->Password != NULL) {
		explicit_bzero(settings->Password, strlen(settings->Password));
		free(settings->Password);
		settings->Password = NULL;
	}
	s->authed = 1;
	fd = s->login.vncfd;
	s->login.vncfd = -1;
	s->rfb = rdp_rfb_create(fd);
	rdp_chan_attach(s->chan, s->rfb, s->login.audio);
	if (rdp_rfb_handshake(s->rfb, RDP_QMPD_TIMEOUT, &cause) != 0) {
		log_warnx("%s: console: %s", rdp_peer_who(s, who, sizeof who),
		    cause);
		rdp_peer_end(s, "console: %s", cause);
		free(cause);
		rdp_peer_errinfo(s, ERRINFO_SERVER_DENIED_CONNECTION);
		return (FALSE);
	}
	s->requested = 1;	/* the handshake asked for a full update */
	settings->DesktopWidth = s->rfb->width;
	settings->DesktopHeight = s->rfb->height;
	settings->ColorDepth = 32;

	/* Tell the loop who this is, so a second login takes over. */
	snprintf(msg, sizeof msg, "user %s %s", s->login.login, s->login.vm);
	if (send(s->ctl, msg, strlen(msg), MSG_NOSIGNAL) == -1)
		log_warn("%s: control socket", rdp_peer_who(s, who,
		    sizeof who));
	log_info("%s: logged in, console %dx%d", rdp_peer_who(s, who,
	    sizeof who), s->rfb->width, s->rfb->height);
	return (TRUE);
}

/* The client is connected: log what it can do; 32 bpp or nothing. */
static BOOL
rdp_peer_post_connect(freerdp_peer *peer)
{
	struct rdp_session	*s = rdp_peer_session(peer->context);
	rdpSettings		*settings = peer->settings;
	char			 who[256];

	log_debug("%s: client %ux%u at %u bpp, desktop resize %s, "
	    "multifragment %u", rdp_peer_who(s, who, sizeof who),
	    settings->DesktopWidth, settings->DesktopHeight,
	    settings->ColorDepth, settings->DesktopResize ? "yes" : "no",
	    settings->MultifragMaxRequestSize);
	if (settings->ColorDepth != 32) {
		log_warnx("%s: the client insists on %u bpp; only 32 is "
		    "supported", who, settings->ColorDepth);
		rdp_peer_end(s, "client colour depth %u bpp",
		    settings->ColorDepth);
		return (FALSE);
	}
	return (TRUE);
}

/* Activated (first time or after a resize): repaint everything. */
static BOOL
rdp_peer_activate(freerdp_peer *peer)
{
	struct rdp_session	*s = rdp_peer_session(peer->context);

	s->activated = 1;
	s->leds = -1;
	if (s->rfb != NULL) {
		if ((int)peer->settings->DesktopWidth != s->rfb->width ||
		    (int)peer->settings->DesktopHeight != s->rfb->height)
			s->resize = 1;
		rdp_rfb_damage(s->rfb, 0, 0, s->rfb->width, s->rfb->height);
	}
	return (TRUE);
}

/* The client lost part of its picture: send it again from our copy. */
static BOOL
rdp_peer_refresh_rect(rdpContext *context, BYTE count,
    const RECTANGLE_16 *areas)
{
	struct rdp_session	*s = rdp_peer_session(context);
	BYTE			 i;

	if (s->rfb == NULL)
		return (TRUE);
	for (i = 0; i < count; i++)
		rdp_rfb_damage(s->rfb, areas[i].left, areas[i].top,
		    areas[i].right - areas[i].left + 1,
		    areas[i].bottom - areas[i].top + 1);
	if (count == 0)
		rdp_rfb_damage(s->rfb, 0, 0, s->rfb->width, s->rfb->height);
	return (TRUE);
}

/* Minimised or back: stop sending, then repaint everything. */
static BOOL
rdp_peer_suppress_output(rdpContext *context, BYTE allow,
    const RECTANGLE_16 *area)
{
	struct rdp_session	*s = rdp_peer_session(context);

	s->suppressed = !allow;
	if (allow && s->rfb != NULL)
		rdp_rfb_damage(s->rfb, 0, 0, s->rfb->width, s->rfb->height);
	return (TRUE);
}

/* A key as its raw scancode (QEMU extended key event). */
static BOOL
rdp_peer_keyboard(rdpInput *input, UINT16 flags, UINT16 code)
{
	struct rdp_session	*s = rdp_peer_session(input->context);
	uint32_t		 qnum;
	int			 down;

	if (s->rfb == NULL)
		return (TRUE);
	qnum = rdp_input_qnum(&s->input, flags, code, &down);
	if (qnum == 0)
		return (TRUE);
	if (s->follow != NULL) {
		rdp_follow_key(s->follow, down, rdp_input_keysym(qnum), qnum);
		return (TRUE);
	}
	if (down && s->keyt == 0)
		s->keyt = rdp_peer_ms();
	/* With extended keys QEMU needs no keysym (and LED state is on). */
	if (rdp_rfb_key(s->rfb, down, s->rfb->extkey ? 0 :
	    rdp_input_keysym(qnum), qnum) != 0)
		rdp_peer_end(s, "VNC connection lost sending a key");
	return (TRUE);
}

/* Unicode input (on-screen keyboards, IMEs): keysyms, QEMU maps them. */
static BOOL
rdp_peer_unicode(rdpInput *input, UINT16 flags, UINT16 code)
{
	struct rdp_session	*s = rdp_peer_session(input->context);
	uint32_t		 keysym;

	if (s->rfb == NULL)
		return (TRUE);
	keysym = code < 0x100 ? code : 0x01000000U | code;
	if (s->follow != NULL) {
		rdp_follow_key(s->follow, !(flags & KBD_FLAGS_RELEASE), keysym,
		    0);
		return (TRUE);
	}
	if (rdp_rfb_key(s->rfb, !(flags & KBD_FLAGS_RELEASE), keysym, 0) != 0)
		rdp_peer_end(s, "VNC connection lost sending a key");
	return (TRUE);
}

/*
 * Lock keys: on focus the client says which locks are on; when the
 * guest's LEDs (QEMU's LED state) differ, tap the key in the guest.
 */
static BOOL
rdp_peer_synchronize(rdpInput *input, UINT32 flags)
{
	struct rdp_session	*s = rdp_peer_session(input->context);
	static const struct {
		UINT32		flag;
		int		led;
		uint32_t	qnum;
	} locks[] = {
		{ KBD_SYNC_SCROLL_LOCK, 1, 0x46 },
		{ KBD_SYNC_NUM_LOCK, 2, 0x45 },
		{ KBD_SYNC_CAPS_LOCK, 4, 0x3a },
	};
	size_t			 i;

	/* No stream (the desktop moves): the next focus syncs again. */
	if (s->rfb == NULL || s->follow != NULL || !s->rfb->ledstate ||
	    !s->rfb->extkey)
		return (TRUE);
	for (i = 0; i < nitems(locks); i++) {
		if (!!(flags & locks[i].flag) == !!(s->rfb->leds &
		    locks[i].led))
			continue;
		if (rdp_rfb_key(s->rfb, 1, 0, locks[i].qnum) != 0 ||
		    rdp_rfb_key(s->rfb, 0, 0, locks[i].qnum) != 0) {
			rdp_peer_end(s, "VNC connection lost sending a key");
			break;
		}
	}
	return (TRUE);
}

/* The pointer, scaled from the RDP desktop to the guest's framebuffer. */
static void
rdp_peer_pointer(struct rdp_session *s, int mask, UINT16 x, UINT16 y)
{
	rdpSettings	*settings = s->peer->settings;
	int		 fx, fy;

	fx = rdp_input_scale(x, settings->DesktopWidth, s->rfb->width);
	fy = rdp_input_scale(y, settings->DesktopHeight, s->rfb->height);
	if (s->follow != NULL) {
		rdp_follow_pointer(s->follow, mask, fx, fy);
		return;
	}
	if (rdp_rfb_pointer(s->rfb, mask, fx, fy) != 0)
		rdp_peer_end(s, "VNC connection lost sending the pointer");
}

/* Buttons, motion and wheel, as absolute RFB pointer events. */
static BOOL
rdp_peer_mouse(rdpInput *input, UINT16 flags, UINT16 x, UINT16 y)
{
	struct rdp_session	*s = rdp_peer_session(input->context);
	int			 mask, wheel;

	if (s->rfb == NULL)
		return (TRUE);
	mask = rdp_input_mouse(&s->input, flags, &wheel);
	if (wheel != 0) {
		/* Wheel events carry no position: click where we are. */
		rdp_peer_pointer(s, mask | wheel, s->input.x, s->input.y);
		rdp_peer_pointer(s, mask, s->input.x, s->input.y);
		return (TRUE);
	}
	s->input.x = x;
	s->input.y = y;
	rdp_peer_pointer(s, mask, x, y);
	return (TRUE);
}

static BOOL
rdp_peer_xmouse(rdpInput *input, UINT16 flags, UINT16 x, UINT16 y)
{
	struct rdp_session	*s = rdp_peer_session(input->context);

	if (s->rfb == NULL)
		return (TRUE);
	s->input.x = x;
	s->input.y = y;
	rdp_peer_pointer(s, s->input.buttons, x, y);
	return (TRUE);
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

	peer->Capabilities = rdp_peer_capabilities;
	peer->PostConnect = rdp_peer_post_connect;
	peer->Activate = rdp_peer_activate;
	peer->input->KeyboardEvent = rdp_peer_keyboard;
	peer->input->UnicodeKeyboardEvent = rdp_peer_unicode;
	peer->input->SynchronizeEvent = rdp_peer_synchronize;
	peer->input->MouseEvent = rdp_peer_mouse;
	peer->input->ExtendedMouseEvent = rdp_peer_xmouse;
	peer->update->RefreshRect = rdp_peer_refresh_rect;
	peer->update->SuppressOutput = rdp_peer_suppress_output;
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

/* The guest changed resolution: reactivate the client at the new size. */
static void
rdp_peer_resize(struct rdp_session *s)
{
	rdpSettings	*settings = s->peer->settings;
	char		 who[256];

	s->resize = 0;
	if ((int)settings->DesktopWidth == s->rfb->width &&
	    (int)settings->DesktopHeight == s->rfb->height)
		return;
	if (s->gfx != NULL && rdp_gfx_active(s->gfx)) {
		/*
		 * The graphics pipeline resizes without a reactivation: the
		 * next frame resets the graphics and makes the surface anew
		 * (rdp_gfx_send), and the client follows its ResetGraphics.
		 */
		log_info("%s: console now %dx%d (graphics reset)",
		    rdp_peer_who(s, who, sizeof who), s->rfb->width,
		    s->rfb->height);
		settings->DesktopWidth = s->rfb->width;
		settings->DesktopHeight = s->rfb->height;
		return;
	}
	if (!settings->DesktopResize) {
		log_warnx("%s: the guest is now %dx%d but the client cannot "
		    "resize; it sees the top left %ux%u", rdp_peer_who(s, who,
		    sizeof who), s->rfb->width, s->rfb->height,
		    settings->DesktopWidth, settings->DesktopHeight);
		return;
	}
	log_info("%s: console now %dx%d", rdp_peer_who(s, who, sizeof who),
	    s->rfb->width, s->rfb->height);
	settings->DesktopWidth = s->rfb->width;
	settings->DesktopHeight = s->rfb->height;
	s->activated = 0;	/* until the client confirms */
	if (!s->peer->update->DesktopResize(s->peer->context))
		rdp_peer_end(s, "desktop resize failed");
}

/* What the VNC side has: apply, send what changed, ask for more. */
static void
rdp_peer_display(struct rdp_session *s)
{
	struct rdp_rfb	*rfb = s->rfb;
	char		*cause = NULL;
	int		 sent;

	if (rfb->updated) {
		rfb->updated = 0;
		s->requested = 0;
	}
	if (rfb->resized) {
		rfb->resized = 0;
		s->resize = 1;
	}
	if (!s->activated)
		return;
	if (s->resize) {
		rdp_peer_resize(s);
		if (!s->activated)
			return;
	}
	if (rfb->ledstate && rfb->leds != s->leds) {
		s->leds = rfb->leds;
		s->peer->update->SetKeyboardIndicators(s->peer->context,
		    rfb->leds);
	}
	if (s->suppressed)
		return;
	if (s->peer->IsWriteBlocked(s->peer)) {
		s->stats.blocked++;
		return;
	}
	/*
	 * Whole messages only reach here, so the copy is consistent: send
	 * now, also damage from a refresh or activation while an update
	 * request is still out (QEMU answers it only when the guest draws).
	 */
	/* The graphics pipeline when in use (it may hold damage back). */
	sent = RDP_GFX_OFF;
	if (s->gfx != NULL)
		sent = rfb->ndamage > 0 ? rdp_gfx_send(s->gfx, rfb, rfb->damage,
		    rfb->ndamage) : rdp_gfx_idle(s->gfx, rfb);
	if (sent == RDP_GFX_OFF && rfb->ndamage > 0)
		sent = rdp_encode_send(s->enc, s->peer->context, rfb,
		    rfb->damage, rfb->ndamage, &s->stats) == 0 ? 1 : -1;
	if (sent == -1) {
		if (freerdp_get_last_error(s->peer->context) ==
		    FREERDP_ERROR_CONNECT_TRANSPORT_FAILED)
			rdp_peer_end(s, "the client disconnected");
		else
			rdp_peer_end(s, "sending the screen failed");
		return;
	}
	if (sent == 1 && rfb->ndamage > 0) {
		rfb->ndamage = 0;
		s->stats.frames++;
		if (s->keyt != 0) {
			uint64_t	lat = rdp_peer_ms() - s->keyt;

			s->keysum += lat;
			s->keyn++;
			if (lat > s->keymax)
				s->keymax = lat;
			s->keyt = 0;
		}
	}
	if (!s->requested && !s->peer->IsWriteBlocked(s->peer)) {
		if (rdp_rfb_request(rfb, 1) != 0) {
			xasprintf(&cause, "VNC connection lost: %s",
			    strerror(errno));
			rdp_peer_end(s, "%s", cause);
			free(cause);
			return;
		}
		s->requested = 1;
	}
}

/*
 * The VNC stream ended with cause: the desktop may have migrated, so
 * look for it again (rdp-follow.c) while the loop goes on serving the
 * client.
 */
static void
rdp_peer_follow_start(struct rdp_session *s, const char *cause)
{
	char	who[256];

	log_info("%s: %s; looking for the desktop", rdp_peer_who(s, who,
	    sizeof who), cause);
	rdp_rfb_reattach(s->rfb, -1);	/* the old stream's fd goes */
	s->follow = rdp_follow_start(rdp_peer_ms(), cause);
}

/* One step of the look (an ask due, an answer in). -1: it is over. */
static int
rdp_peer_follow_step(struct rdp_session *s)
{
	char	*cause = NULL, who[256];
	int	 rv, tries;

	rv = rdp_follow_step(s->follow, s->rfb, s->cfg.qmpd_socket,
	    s->login.login, s->login.vm, rdp_peer_ms(), &tries, &cause);
	if (rv == 0)
		return (0);
	rdp_follow_free(s->follow);
	s->follow = NULL;
	if (rv == -1) {
		log_info("%s: %s", rdp_peer_who(s, who, sizeof who), cause);
		rdp_peer_end(s, "%s", cause);
		free(cause);
		return (-1);
	}
	log_info("%s: console found again (%d %s), %dx%d", rdp_peer_who(s,
	    who, sizeof who), tries, tries == 1 ? "ask" : "asks",
	    s->rfb->width, s->rfb->height);
	s->requested = 1;	/* the handshake asked for a full update */
	return (0);
}

/* A message from the broker's loop; EOF means the gateway stopped. */
static void
rdp_peer_control(struct rdp_session *s)
{
	char	msg[RDP_CTL_MAX + 1], who[256];
	ssize_t	n;

	n = recv(s->ctl, msg, sizeof msg - 1, MSG_DONTWAIT);
	if (n == -1 && (errno == EAGAIN || errno == EINTR))
		return;
	if (n <= 0) {
		rdp_peer_end(s, "the RDP gateway is stopping");
		if (s->peer->connected)
			rdp_peer_errinfo(s, ERRINFO_SERVER_DENIED_CONNECTION);
		return;
	}
	msg[n] = '\0';
	if (strncmp(msg, "kick ", 5) == 0) {
		log_info("%s: disconnected: %s", rdp_peer_who(s, who,
		    sizeof who), msg + 5);
		rdp_peer_end(s, "%s", msg + 5);
		freerdp_set_error_info(s->peer->context->rdp,
		    ERRINFO_DISCONNECTED_BY_OTHER_CONNECTION);
		if (s->activated)
			s->peer->Close(s->peer);
		else
			freerdp_send_error_info(s->peer->context->rdp);
	}
}

/*
 * Revocation: every RDP_PEER_REVOKE_MS, ask qmpd whether this user's
 * access to this desktop was taken back since the login (user disabled,
 * removed or given a new password, desktop unassigned); if so, end the
 * session with qmpd's reason. qmpd unreachable: ask again next time.
 */
static void
rdp_peer_revoked(struct rdp_session *s)
{
	json_t		*ret;
	const char	*reason;
	char		*errclass = NULL, *cause = NULL, who[256];
	uint64_t	 now = rdp_peer_ms();

	if (!s->authed || now - s->revoke_checked < RDP_PEER_REVOKE_MS)
		return;
	s->revoke_checked = now;
	ret = rdp_qmpd_call(s->cfg.qmpd_socket, "desktop.revoked",
	    json_pack("{s:s,s:s,s:I}", "login", s->login.login, "vm",
	    s->login.vm, "since", (json_int_t)s->revoke_since),
	    RDP_PEER_REVOKE_WAIT, NULL, &errclass, &cause);
	if (ret == NULL) {
		log_debug("%s: desktop.revoked: %s", rdp_peer_who(s, who,
		    sizeof who), cause != NULL ? cause : "no answer");
		free(errclass);
		free(cause);
		return;
	}
	if (json_is_true(json_object_get(ret, "revoked"))) {
		reason = json_string_value(json_object_get(ret, "reason"));
		log_info("%s: disconnected: %s", rdp_peer_who(s, who,
		    sizeof who), reason != NULL ? reason : "revoked");
		rdp_peer_end(s, "%s", reason != NULL ? reason : "revoked");
		freerdp_set_error_info(s->peer->context->rdp,
		    ERRINFO_RPC_INITIATED_DISCONNECT);
		if (s->activated)
			s->peer->Close(s->peer);
		else
			freerdp_send_error_info(s->peer->context->rdp);
	}
	json_decref(ret);
}

/* Give a goodbye (error info, deactivate) a moment to reach the client. */
static void
rdp_peer_drain(struct rdp_session *s)
{
	struct pollfd	pfd = { .fd = s->peer->sockfd, .events = POLLOUT };
	time_t		until = time(NULL) + RDP_PEER_DRAIN;

	while (s->peer->IsWriteBlocked(s->peer) && time(NULL) < until) {
		if (poll(&pfd, 1, 200) == -1 && errno != EINTR)
			break;
		if (s->peer->DrainOutputBuffer(s->peer) < 0)
			break;
	}
}

/* The session's loop: until the client, QEMU or the gateway ends it. */
static void
rdp_peer_loop(struct rdp_session *s)
{
	freerdp_peer	*peer = s->peer;
	struct pollfd	 pfd[RDP_PEER_HANDLES + 3 + RDP_PEER_CHANFDS];
	HANDLE		 handles[RDP_PEER_HANDLES];
	DWORD		 nh, i;
	char		*cause = NULL, who[256];
	int		 n, np, ictl, irfb, timeout, gt;

	while (s->end == NULL) {
		np = 0;
		nh = peer->GetEventHandles(peer, handles, RDP_PEER_HANDLES);
		if (nh == 0) {
			rdp_peer_end(s, "FreeRDP has no event handles");
			break;
		}
		for (i = 0; i < nh; i++) {
			pfd[np].fd = GetEventFileDescriptor(handles[i]);
			if (pfd[np].fd < 0)
				continue;
			pfd[np].events = POLLIN;
			pfd[np++].revents = 0;
		}
		if (peer->IsWriteBlocked(peer)) {
			pfd[np].fd = peer->sockfd;
			pfd[np].events = POLLOUT;
			pfd[np++].revents = 0;
		}
		/* Virtual channels: the manager's queue, gfx, cliprdr, rdpsnd,
		 * disp. */
		pfd[np].fd = GetEventFileDescriptor(
		    WTSVirtualChannelManagerGetEventHandle(s->vcm));
		pfd[np].events = POLLIN;
		pfd[np++].revents = 0;
		pfd[np].fd = s->gfx != NULL ? rdp_gfx_fd(s->gfx) : -1;
		pfd[np].events = POLLIN;
		pfd[np++].revents = 0;
		np += rdp_chan_pollfds(s->chan, pfd + np, RDP_PEER_CHANFDS - 2);
		ictl = np;
		pfd[np].fd = s->ctl;
		pfd[np].events = POLLIN;
		pfd[np++].revents = 0;
		irfb = -1;
		if (s->rfb != NULL && s->follow == NULL) {
			irfb = np;
			pfd[np].fd = s->rfb->fd;
			pfd[np].events = POLLIN;
			pfd[np++].revents = 0;
		}
		if (s->follow != NULL && rdp_follow_fd(s->follow) != -1) {
			pfd[np].fd = rdp_follow_fd(s->follow);
			pfd[np].events = POLLIN;
			pfd[np++].revents = 0;
		}
		timeout = (s->rfb != NULL && s->follow == NULL &&
		    rdp_rfb_buffered(s->rfb)) ? 0 : RDP_PEER_TICK;
		if (s->follow != NULL && (gt = rdp_follow_timeout(s->follow,
		    rdp_peer_ms())) < timeout)
			timeout = gt;
		if (s->gfx != NULL && (gt = rdp_gfx_timeout(s->gfx)) != -1 &&
		    gt < timeout)
			timeout = gt;
		if ((gt = rdp_chan_timeout(s->chan)) != -1 && gt < timeout)
			timeout = gt;
		n = poll(pfd, np, timeout);
		if (n == -1 && errno != EINTR) {
			rdp_peer_end(s, "poll: %s", strerror(errno));
			break;
		}

		if (pfd[ictl].revents != 0)
			rdp_peer_control(s);
		rdp_peer_revoked(s);
		if (s->end != NULL)
			break;
		if (!peer->CheckFileDescriptor(peer)) {
			rdp_peer_end(s, "the client disconnected");
			break;
		}
		if (!WTSVirtualChannelManagerCheckFileDescriptor(s->vcm)) {
			rdp_peer_end(s, "virtual channel failure");
			break;
		}
		if (s->gfx != NULL) {
			n = rdp_gfx_check(s->gfx, s->activated,
			    rdp_peer_who(s, who, sizeof who));
			if (n == -1) {
				rdp_peer_end(s, "graphics pipeline failure");
				break;
			}
			if (n == 1 && s->rfb != NULL)
				rdp_rfb_damage(s->rfb, 0, 0, s->rfb->width,
				    s->rfb->height);
		}
		rdp_chan_check(s->chan, s->activated, rdp_peer_who(s, who,
		    sizeof who));
		if (peer->IsWriteBlocked(peer) &&
		    peer->DrainOutputBuffer(peer) < 0) {
			rdp_peer_end(s, "the client stopped reading");
			break;
		}
		if (s->rfb == NULL || s->end != NULL)
			continue;
		if (s->follow != NULL) {
			if (rdp_peer_follow_step(s) != 0) {
				rdp_peer_errinfo(s,
				    ERRINFO_RPC_INITIATED_DISCONNECT);
				if (s->activated)
					peer->Close(peer);
				break;
			}
			if (s->follow != NULL)
				continue;
		} else if ((irfb != -1 && pfd[irfb].revents != 0) ||
		    rdp_rfb_buffered(s->rfb)) {
			if (rdp_rfb_process(s->rfb, &cause) != 0) {
				rdp_peer_follow_start(s, cause);
				free(cause);
				cause = NULL;
				continue;
			}
		}
		rdp_peer_display(s);
	}
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
		rdp_peer_drain(s);
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

	if (s->peer != NULL && s->peer->context != NULL) {
		s->peer->Disconnect(s->peer);
		freerdp_peer_context_free(s->peer);
	}
	if (s->peer != NULL)
		freerdp_peer_free(s->peer);
	rdp_rfb_free(s->rfb);
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
