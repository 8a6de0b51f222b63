/*
 * Following a desktop that moved (issue 14): a live migration ends the
 * VNC stream of every RDP session on the desktop when the source's QEMU
 * exits, but the desktop runs on, on the target. Instead of ending the
 * session, its thread asks for desktop.vnc again: in cluster mode the
 * relay (broker/cluster-relay.c) sends that to the desktop's placement,
 * now the target, whose QEMU gives a fresh stream; rdp_rfb_reattach puts
 * it under the same framebuffer and the RFB handshake runs again. A
 * ServerInit of the same size keeps the RDP client's picture; another
 * size sets rfb->resized and the session resizes as for DesktopResize.
 *
 * Until the broker's etcd watch sees the new placement the request may
 * reach the source, which no longer has the desktop (NotFound) or says
 * it is stopped: those are retried until RDP_FOLLOW_WAIT passes. A
 * desktop that really stopped therefore ends its sessions that much
 * later, with the stream's own cause. PermissionDenied (the desktop is
 * no longer the user's) ends the session at once.
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

#define RDP_FOLLOW_WAIT		10	/* seconds to find the desktop again */
#define RDP_FOLLOW_PAUSE_MS	200	/* between two asks */

/* Errors after which asking again cannot help. */
static const char *rdp_follow_final[] = {
	ERR_DENIED,
	ERR_AUTH,
	ERR_NOCMD,
};

static int
rdp_follow_is_final(const char *errclass)
{
	size_t	i;

	if (errclass == NULL)
		return (0);
	for (i = 0; i < nitems(rdp_follow_final); i++)
		if (strcmp(errclass, rdp_follow_final[i]) == 0)
			return (1);
	return (0);
}

static void
rdp_follow_pause(void)
{
	struct timespec	ts = { 0, RDP_FOLLOW_PAUSE_MS * 1000000L };

	while (nanosleep(&ts, &ts) == -1 && errno == EINTR)
		;
}

/*
 * The VNC stream of login's session on vm ended: find the desktop's
 * console again and resume on it. Returns the number of asks it took
 * once the stream is back (handshake done, a full update asked), or -1
 * when the desktop is gone for good, with why in *cause (caller frees).
 */
int
rdp_follow(struct rdp_rfb *rfb, const char *qmpd, const char *login,
    const char *vm, char **cause)
{
	json_t	*ret;
	char	*errclass = NULL, *desc = NULL;
	time_t	 until = time(NULL) + RDP_FOLLOW_WAIT;
	int	 fd, tries = 0;

	*cause = NULL;
	for (;;) {
		tries++;
		fd = -1;
		ret = rdp_qmpd_call(qmpd, "desktop.vnc", json_pack("{s:s,s:s}",
		    "login", login, "vm", vm), RDP_QMPD_TIMEOUT, &fd,
		    &errclass, &desc);
		if (ret != NULL && fd != -1) {
			json_decref(ret);
			break;
		}
		if (ret != NULL) {
			json_decref(ret);
			desc = xstrdup("qmpd sent no VNC fd");
		}
		if (rdp_follow_is_final(errclass) || time(NULL) >= until) {
			xasprintf(cause, "console of %s not found again after "
			    "%d asks: %s", vm, tries, desc != NULL ? desc :
			    "no answer");
			free(errclass);
			free(desc);
			return (-1);
		}
		log_debug("RDP %s on %s: console not back yet: %s", login, vm,
		    desc != NULL ? desc : "no answer");
		free(errclass);
		free(desc);
		errclass = desc = NULL;
		rdp_follow_pause();
	}
	rdp_rfb_reattach(rfb, fd);
	if (rdp_rfb_handshake(rfb, RDP_QMPD_TIMEOUT, cause) != 0)
		return (-1);
	return (tries);
}
