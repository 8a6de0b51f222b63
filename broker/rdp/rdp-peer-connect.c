/*
 * The connection sequence of a session: just before the server's
 * capabilities go out, the login (rdp-login.c) and the RFB handshake, so
 * the desktop size announced to the client is already the guest's; then
 * the client's colour depth, and activation (first time or after a
 * resize), which repaints everything. The login asks the broker's loop
 * over the control socket whether the address may try (its throttle).
 */
#include <sys/socket.h>

#include <errno.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <freerdp/freerdp.h>
#include <freerdp/error.h>
#include <freerdp/peer.h>
#include <freerdp/settings.h>

#include "compat.h"
#include "log.h"
#include "rdp-chan.h"
#include "rdp-peer.h"
#include "rdp-scale.h"

/*
 * Ask the loop whether this address may try a login now (the broker's
 * throttle, shared with the portal): 0 yes, else the seconds to wait, or
 * -1 when the loop does not answer or ends the session meanwhile.
 */
static int
rdp_peer_connect_throttle(void *arg)
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
rdp_peer_connect_refund(void *arg)
{
	struct rdp_session	*s = arg;

	send(s->ctl, "refund", 6, MSG_NOSIGNAL);
}

/* Tell the loop the password was good: starting a desktop may take
 * longer than the logon deadline, which is for clients that say nothing. */
static void
rdp_peer_connect_authed(void *arg, const char *login)
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
rdp_peer_connect_capabilities(freerdp_peer *peer)
{
	struct rdp_session	*s = rdp_peer_session(peer->context);
	rdpSettings		*settings = peer->settings;
	struct rdp_login	 in;
	const char		*env;
	char			*cause = NULL, msg[RDP_CTL_MAX], who[256];
	DWORD			 tokenlen = 0;
	int			 fd, asked_w, asked_h;

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
	in.throttle = rdp_peer_connect_throttle;
	in.refund = rdp_peer_connect_refund;
	in.authed = rdp_peer_connect_authed;
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
	/*
	 * QEMU's updates are read on a thread of their own while this one
	 * encodes (rdp-rfb-pump.c); without it, here, as before.
	 * QDESK_RDP_VNC_THREAD=0 (the benches' A/B knob) keeps them here.
	 */
	if ((env = getenv("QDESK_RDP_VNC_THREAD")) != NULL &&
	    strcmp(env, "0") == 0)
		log_debug("%s: VNC read on the session thread "
		    "(QDESK_RDP_VNC_THREAD=0)", rdp_peer_who(s, who,
		    sizeof who));
	else if (rdp_rfb_pump(s->rfb, &cause) != 0) {
		log_warnx("%s: %s; reading the console on the session thread",
		    rdp_peer_who(s, who, sizeof who), cause);
		free(cause);
		cause = NULL;
	}
	rdp_chan_attach(s->chan, s->rfb, s->login.audio, s->login.login,
	    s->login.vm);
	if (rdp_rfb_handshake(s->rfb, RDP_QMPD_TIMEOUT, &cause) != 0) {
		log_warnx("%s: console: %s", rdp_peer_who(s, who, sizeof who),
		    cause);
		rdp_peer_end(s, "console: %s", cause);
		free(cause);
		rdp_peer_errinfo(s, ERRINFO_SERVER_DENIED_CONNECTION);
		return (FALSE);
	}
	s->requested = 1;	/* the handshake asked for a full update */
	/*
	 * The guest's size, whatever the client asked for: a client whose
	 * window is smaller scales the whole desktop (smart sizing, the
	 * .rdp file's) instead of showing its top left.
	 */
	asked_w = s->asked_w = settings->DesktopWidth;
	asked_h = s->asked_h = settings->DesktopHeight;
	settings->DesktopWidth = s->rfb->width;
	settings->DesktopHeight = s->rfb->height;
	settings->ColorDepth = 32;

	/* Tell the loop who this is, so a second login takes over. */
	snprintf(msg, sizeof msg, "user %s %s", s->login.login, s->login.vm);
	if (send(s->ctl, msg, strlen(msg), MSG_NOSIGNAL) == -1)
		log_warn("%s: control socket", rdp_peer_who(s, who,
		    sizeof who));
	log_info("%s: logged in, console %dx%d (the client asked for %dx%d)",
	    rdp_peer_who(s, who, sizeof who), s->rfb->width, s->rfb->height,
	    asked_w, asked_h);
	return (TRUE);
}

/* The client is connected: log what it can do; 32 bpp or nothing. */
static BOOL
rdp_peer_connect_post(freerdp_peer *peer)
{
	struct rdp_session	*s = rdp_peer_session(peer->context);
	rdpSettings		*settings = peer->settings;
	char			 who[256];

	log_debug("%s: client %ux%u at %u bpp, desktop resize %s, "
	    "multifragment %u", rdp_peer_who(s, who, sizeof who),
	    settings->DesktopWidth, settings->DesktopHeight,
	    settings->ColorDepth, settings->DesktopResize ? "yes" : "no",
	    settings->MultifragMaxRequestSize);
	/*
	 * A client that cannot resize keeps the size it asked for, whatever
	 * the server answered (FreeRDP 2's client does): the guest is then
	 * scaled into it (rdp-peer-update.c, rdp-scale.c) from the start.
	 */
	if (!settings->DesktopResize && s->asked_w > 0 && s->asked_h > 0 &&
	    s->asked_w <= RDP_SCALE_MAX && s->asked_h <= RDP_SCALE_MAX &&
	    ((int)settings->DesktopWidth != s->asked_w ||
	    (int)settings->DesktopHeight != s->asked_h)) {
		log_info("%s: the client cannot resize: its desktop stays "
		    "%dx%d", who, s->asked_w, s->asked_h);
		settings->DesktopWidth = s->asked_w;
		settings->DesktopHeight = s->asked_h;
	}
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
rdp_peer_connect_activate(freerdp_peer *peer)
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

/* Install the connection sequence's callbacks on peer. */
void
rdp_peer_connect_hook(freerdp_peer *peer)
{
	peer->Capabilities = rdp_peer_connect_capabilities;
	peer->PostConnect = rdp_peer_connect_post;
	peer->Activate = rdp_peer_connect_activate;
}
