/*
 * Following a desktop that moved (issue 14): a live migration ends the
 * VNC stream of every RDP session on the desktop when the source's QEMU
 * exits, but the desktop runs on, on the target. Instead of ending the
 * session, it asks for desktop.vnc again: in cluster mode the relay
 * (broker/cluster-relay.c) sends that to the desktop's placement, now
 * the target, whose QEMU gives a fresh stream; rdp_rfb_reattach puts it
 * under the same framebuffer and the RFB handshake runs again. A
 * ServerInit of the same size keeps the RDP client's picture; another
 * size sets rfb->resized and the session resizes as for DesktopResize.
 *
 * The session's loop goes on serving its client meanwhile: each ask is
 * a request in flight it polls (rdp_qmpd_start), the next one a timer.
 * Keys typed in the gap are held and sent to the new stream in order,
 * the pointer's last position with them, so the user loses none.
 *
 * qmpd's answer says whether to ask again: Busy while the desktop is
 * between hosts (arriving on the target, the source switching over;
 * "on host H" is re-routed by the broker) or its QEMU is starting or
 * going, Unavailable while its host's qmpd is away (a restart
 * mid-switchover). Anything else, "the desktop
 * is stopped" first, ends the session at once; so does
 * RDP_FOLLOW_WAIT_MS without a stream.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "compat.h"
#include "log.h"
#include "proto.h"
#include "rdp-int.h"
#include "xmalloc.h"

#define RDP_FOLLOW_WAIT_MS	30000	/* to find the desktop again */
#define RDP_FOLLOW_PAUSE_MS	200	/* between two asks */
#define RDP_FOLLOW_KEYS		512	/* keys held for the new stream */

/* Answers after which asking again can help: the desktop is moving. */
static const char *rdp_follow_again[] = {
	ERR_BUSY,
	ERR_TIMEOUT,
	"Unavailable",		/* the broker's QMPC_ERR_DOWN */
};

struct rdp_follow_key {
	int		 down;
	uint32_t	 keysym;
	uint32_t	 qnum;
};

struct rdp_follow {
	struct rdp_qmpd_req	*req;		/* an ask in flight */
	uint64_t		 until;		/* ms: give up */
	uint64_t		 next;		/* ms: the next ask */
	int			 tries;
	char			*why;		/* how the stream ended */
	char			*last;		/* the last answer */
	struct rdp_follow_key	 keys[RDP_FOLLOW_KEYS];
	int			 nkeys;
	int			 lost;		/* keys past the cap */
	int			 pointer;	/* a position is held */
	int			 mask, x, y;
};

static int
rdp_follow_retry(const char *errclass)
{
	size_t	i;

	for (i = 0; i < nitems(rdp_follow_again); i++)
		if (strcmp(errclass, rdp_follow_again[i]) == 0)
			return (1);
	return (0);
}

/* The stream ended at now (ms), why: look for the desktop from now on. */
struct rdp_follow *
rdp_follow_start(uint64_t now, const char *why)
{
	struct rdp_follow	*f;

	f = xcalloc(1, sizeof *f);
	f->why = xstrdup(why);
	f->until = now + RDP_FOLLOW_WAIT_MS;
	f->next = now;
	return (f);
}

void
rdp_follow_free(struct rdp_follow *f)
{
	if (f == NULL)
		return;
	rdp_qmpd_req_free(f->req);
	free(f->why);
	free(f->last);
	free(f);
}

/* The fd of the ask in flight, for the loop's poll; -1 if none. */
int
rdp_follow_fd(const struct rdp_follow *f)
{
	return (f->req != NULL ? rdp_qmpd_req_fd(f->req) : -1);
}

/* How long the loop may sleep before rdp_follow_step has work (ms). */
int
rdp_follow_timeout(const struct rdp_follow *f, uint64_t now)
{
	if (f->req != NULL)
		return (1000);	/* its fd wakes us; its deadline is in s */
	return (f->next > now ? (int)(f->next - now) : 0);
}

/* A key typed while there is no stream: sent once there is one. */
void
rdp_follow_key(struct rdp_follow *f, int down, uint32_t keysym,
    uint32_t qnum)
{
	if (f->nkeys == RDP_FOLLOW_KEYS) {
		f->lost++;
		return;
	}
	f->keys[f->nkeys].down = down;
	f->keys[f->nkeys].keysym = keysym;
	f->keys[f->nkeys++].qnum = qnum;
}

/* The pointer meanwhile: only where it ended up matters. */
void
rdp_follow_pointer(struct rdp_follow *f, int mask, int x, int y)
{
	f->pointer = 1;
	f->mask = mask;
	f->x = x;
	f->y = y;
}

/* Send what was held to the new stream. -1: it failed (*cause). */
static int
rdp_follow_replay(struct rdp_follow *f, struct rdp_rfb *rfb,
    const char *login, const char *vm, char **cause)
{
	int	i;

	for (i = 0; i < f->nkeys; i++) {
		/* With extended keys QEMU needs no keysym. */
		if (rdp_rfb_key(rfb, f->keys[i].down, rfb->extkey &&
		    f->keys[i].qnum != 0 ? 0 : f->keys[i].keysym,
		    f->keys[i].qnum) != 0) {
			xasprintf(cause, "VNC connection lost sending the "
			    "keys held while the desktop moved");
			return (-1);
		}
	}
	if (f->pointer && rdp_rfb_pointer(rfb, f->mask, f->x, f->y) != 0) {
		xasprintf(cause, "VNC connection lost sending the pointer");
		return (-1);
	}
	if (f->nkeys > 0 || f->lost > 0)
		log_info("RDP %s on %s: %d key events held while the desktop "
		    "moved sent to its new console%s", login, vm, f->nkeys,
		    f->lost > 0 ? ", some lost past the cap" : "");
	return (0);
}

/*
 * One step: ask when it is time, or read the answer. 1: the console is
 * back on rfb (handshake done, a full update asked, held input sent);
 * 0: still looking; -1: the desktop is gone for good, why in *cause
 * (how the stream ended, and the last answer; caller frees). *tries
 * says how many asks it took.
 */
int
rdp_follow_step(struct rdp_follow *f, struct rdp_rfb *rfb, const char *qmpd,
    const char *login, const char *vm, uint64_t now, int *tries,
    char **cause)
{
	json_t	*ret = NULL;
	char	*errclass = NULL, *desc = NULL;
	int	 fd = -1, rv;

	*cause = NULL;
	*tries = f->tries;
	if (f->req == NULL) {
		if (now < f->next)
			return (0);
		f->tries++;
		*tries = f->tries;
		f->req = rdp_qmpd_start(qmpd, "desktop.vnc",
		    json_pack("{s:s,s:s}", "login", login, "vm", vm),
		    RDP_QMPD_TIMEOUT, &desc);
		if (f->req != NULL)
			return (0);	/* the answer wakes the loop */
		rv = -1;
	} else if ((rv = rdp_qmpd_req_read(f->req, &ret, &fd, &errclass,
	    &desc)) == 0)
		return (0);
	rdp_qmpd_req_free(f->req);
	f->req = NULL;
	if (ret != NULL && fd != -1) {
		json_decref(ret);
		rdp_rfb_reattach(rfb, fd);
		/* QEMU's greeting is local to its host: a short wait. */
		if (rdp_rfb_handshake(rfb, RDP_QMPD_TIMEOUT, cause) != 0 ||
		    rdp_follow_replay(f, rfb, login, vm, cause) != 0)
			return (-1);
		return (1);
	}
	if (ret != NULL) {
		json_decref(ret);
		free(desc);
		desc = xstrdup("qmpd sent no VNC fd");
	}
	/* No answer (rv -1) is worth another ask; most answers are not. */
	if ((errclass != NULL && !rdp_follow_retry(errclass)) ||
	    now >= f->until) {
		xasprintf(cause, "%s; console of %s not found again after %d "
		    "%s: %s", f->why, vm, f->tries, f->tries == 1 ? "ask" :
		    "asks", desc != NULL ? desc : "no answer");
		free(errclass);
		free(desc);
		return (-1);
	}
	log_debug("RDP %s on %s: console not back yet: %s", login, vm,
	    desc != NULL ? desc : "no answer");
	free(errclass);
	free(f->last);
	f->last = desc;
	f->next = now + RDP_FOLLOW_PAUSE_MS;
	return (0);
}
