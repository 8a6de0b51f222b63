/*
 * What the session thread's files share (rdp-int.h says why threads):
 *
 *   rdp-peer.c          the thread's life: set up the FreeRDP peer, run,
 *                       log the session's figures, free everything;
 *   rdp-peer-connect.c  the connection sequence: login just before the
 *                       capabilities, the client's colour depth,
 *                       activation;
 *   rdp-peer-input.c    the client's keys and pointer, to the VNC side;
 *   rdp-peer-update.c   the screen to the client: what the VNC side drew,
 *                       through the graphics pipeline or bitmap updates,
 *                       and the client's refresh and suppress requests;
 *   rdp-peer-loop.c     the poll loop: client, channels, VNC, the broker's
 *                       control socket, revocation, following a migrated
 *                       desktop.
 *
 * The session is the thread's alone: no locks.
 */
#ifndef QDESK_RDP_PEER_H
#define QDESK_RDP_PEER_H

#include <stdint.h>

#include <freerdp/freerdp.h>
#include <freerdp/peer.h>

#include "rdp-int.h"

struct rdp_chan;
struct rdp_gfx;
struct rdp_scaled;

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
	struct rdp_scaled	*scaled;	/* the client cannot resize */
	int			 asked_w;	/* the client's size, its own */
	int			 asked_h;

	int			 activated;
	int			 suppressed;
	int			 requested;	/* an RFB update is due */
	int			 resize;	/* RDP desktop must follow */
	int			 leds;		/* last sent to the client */
	char			*end;		/* why the session ended */
	uint64_t		 since;		/* ms, monotonic */
	uint64_t		 revoke_since;	/* ms, just before user.auth */
	uint64_t		 revoke_checked; /* ms, last desktop.revoked */

	/* The session thread's time in VNC messages (rdp_rfb_process). */
	uint64_t		 vncmsgs;
	uint64_t		 vncus;		/* wall clock */
	uint64_t		 vnccpuus;	/* this thread's CPU */

	/* Key to screen: from a key press to the next update sent. */
	uint64_t		 keyt;		/* ms of a press, or 0 */
	uint64_t		 keysum;
	uint64_t		 keymax;
	uint64_t		 keyn;
};

/* FreeRDP allocates ContextSize bytes; ours extends rdpContext. */
struct rdp_peer_context {
	rdpContext		 base;
	struct rdp_session	*s;
};

/* rdp-peer.c: helpers for every part of the session. */
struct rdp_session *rdp_peer_session(rdpContext *);
void	 rdp_peer_end(struct rdp_session *, const char *, ...)
	    __attribute__((format(printf, 2, 3)));
const char *rdp_peer_who(struct rdp_session *, char *, size_t);
void	 rdp_peer_errinfo(struct rdp_session *, UINT32 code);

/* rdp-peer-connect.c: the connection sequence's callbacks on peer. */
void	 rdp_peer_connect_hook(freerdp_peer *);

/* rdp-peer-input.c: the input callbacks on peer. */
void	 rdp_peer_input_hook(freerdp_peer *);

/* rdp-peer-update.c: refresh/suppress callbacks, and the screen. */
void	 rdp_peer_update_hook(freerdp_peer *);
void	 rdp_peer_update_display(struct rdp_session *);

/* rdp-peer-loop.c: the loop until the session ends, then a goodbye. */
void	 rdp_peer_loop(struct rdp_session *);
void	 rdp_peer_loop_drain(struct rdp_session *);

#endif
