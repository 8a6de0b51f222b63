/*
 * The session's poll loop: the client's socket and FreeRDP's handles, the
 * virtual channels, the VNC fd and the control socket to the broker's
 * loop, until the client, QEMU or the gateway ends the session. Between
 * polls it checks for revocation, and a VNC stream that ends is looked
 * for again (the desktop may have migrated).
 */
#include <sys/socket.h>

#include <errno.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <freerdp/freerdp.h>
#include <freerdp/error.h>
#include <freerdp/peer.h>
#include <freerdp/channels/channels.h>
#include <freerdp/channels/wtsvc.h>
#include <winpr/synch.h>

#include "compat.h"
#include "log.h"
#include "rdp-chan.h"
#include "rdp-gfx.h"
#include "rdp-peer.h"

#define RDP_PEER_HANDLES	32
#define RDP_PEER_CHANFDS	5	/* the manager's, gfx's, cliprdr, rdpsnd,
					   disp's */
#define RDP_PEER_TICK		1000	/* ms between loop wake-ups */
#define RDP_PEER_DRAIN		2	/* seconds to flush a goodbye */
#define RDP_PEER_REVOKE_MS	500	/* ms between revocation checks */
#define RDP_PEER_REVOKE_WAIT	2	/* s for qmpd's answer (1 to 2) */
#define RDP_PEER_VNC_BATCH	16	/* VNC messages taken before a frame */

/* A clock in microseconds: the wall's, or this thread's CPU. */
static uint64_t
rdp_peer_loop_us(clockid_t clk)
{
	struct timespec	ts;

	clock_gettime(clk, &ts);
	return ((uint64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000);
}

/*
 * The VNC stream ended with cause: the desktop may have migrated, so
 * look for it again (rdp-follow.c) while the loop goes on serving the
 * client.
 */
static void
rdp_peer_loop_follow_start(struct rdp_session *s, const char *cause)
{
	char	who[256];

	log_info("%s: %s; looking for the desktop", rdp_peer_who(s, who,
	    sizeof who), cause);
	rdp_rfb_reattach(s->rfb, -1);	/* the old stream's fd goes */
	s->follow = rdp_follow_start(rdp_peer_ms(), cause);
}

/* One step of the look (an ask due, an answer in). -1: it is over. */
static int
rdp_peer_loop_follow_step(struct rdp_session *s)
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

/*
 * qmpd or the broker's loop ends a session: the client is told why
 * (CODE) by Close once activated, else by the error info PDU itself.
 */
static void
rdp_peer_loop_disconnect(struct rdp_session *s, UINT32 code,
    const char *reason)
{
	char	who[256];

	log_info("%s: disconnected: %s", rdp_peer_who(s, who, sizeof who),
	    reason);
	rdp_peer_end(s, "%s", reason);
	freerdp_set_error_info(s->peer->context->rdp, code);
	if (s->activated)
		s->peer->Close(s->peer);
	else
		freerdp_send_error_info(s->peer->context->rdp);
}

/* A message from the broker's loop; EOF means the gateway stopped. */
static void
rdp_peer_loop_control(struct rdp_session *s)
{
	char	msg[RDP_CTL_MAX + 1];
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
		rdp_peer_loop_disconnect(s,
		    ERRINFO_DISCONNECTED_BY_OTHER_CONNECTION, msg + 5);
	}
}

/*
 * Revocation: every RDP_PEER_REVOKE_MS, ask qmpd whether this user's
 * access to this desktop was taken back since the login (user disabled,
 * removed or given a new password, desktop unassigned); if so, end the
 * session with qmpd's reason. qmpd unreachable: ask again next time.
 */
static void
rdp_peer_loop_revoked(struct rdp_session *s)
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
		rdp_peer_loop_disconnect(s, ERRINFO_RPC_INITIATED_DISCONNECT,
		    reason != NULL ? reason : "revoked");
	}
	json_decref(ret);
}

/* Give a goodbye (error info, deactivate) a moment to reach the client. */
void
rdp_peer_loop_drain(struct rdp_session *s)
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
void
rdp_peer_loop(struct rdp_session *s)
{
	freerdp_peer	*peer = s->peer;
	struct pollfd	 pfd[RDP_PEER_HANDLES + 3 + RDP_PEER_CHANFDS];
	HANDLE		 handles[RDP_PEER_HANDLES];
	DWORD		 nh, i;
	char		*cause = NULL, who[256];
	uint64_t	 t0, c0;
	int		 n, np, ictl, irfb, timeout, gt, rv, k;

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
			pfd[np].fd = rdp_rfb_pollfd(s->rfb);
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
			rdp_peer_loop_control(s);
		rdp_peer_loop_revoked(s);
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
			if (rdp_peer_loop_follow_step(s) != 0) {
				rdp_peer_errinfo(s,
				    ERRINFO_RPC_INITIATED_DISCONNECT);
				if (s->activated)
					peer->Close(peer);
				break;
			}
			if (s->follow != NULL)
				continue;
		} else {
			/*
			 * Every whole message in hand, then one encode: the
			 * updates that came while the last frame was encoded
			 * are applied (their damage adds up) and only the
			 * newest picture is sent.
			 */
			rv = 0;
			for (k = 0; rv == 0 && k < RDP_PEER_VNC_BATCH &&
			    rdp_rfb_ready(s->rfb, k == 0 && irfb != -1 &&
			    pfd[irfb].revents != 0); k++) {
				t0 = rdp_peer_loop_us(CLOCK_MONOTONIC);
				c0 = rdp_peer_loop_us(CLOCK_THREAD_CPUTIME_ID);
				rv = rdp_rfb_process(s->rfb, &cause);
				s->vncus += rdp_peer_loop_us(CLOCK_MONOTONIC) -
				    t0;
				s->vnccpuus += rdp_peer_loop_us(
				    CLOCK_THREAD_CPUTIME_ID) - c0;
				s->vncmsgs++;
			}
			if (rv != 0) {
				rdp_peer_loop_follow_start(s, cause);
				free(cause);
				cause = NULL;
				continue;
			}
		}
		rdp_peer_update_display(s);
	}
}
