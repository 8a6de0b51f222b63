/*
 * Self-fencing. A host that cannot prove it holds its lease must assume
 * the others will restart its desktops: it kills every local QEMU at
 * once (SIGKILL, no shutdown to wait for), and says when, to the
 * millisecond, so the log can be held against the other hosts' logs.
 * The keeper reports the loss when no renewal has held for lease_ttl
 * counted from when that renewal was sent, which is no later than etcd
 * can expire it; the others then wait fence_delay more before they
 * restart anything. The same fence falls on desktops a restarted qmpd
 * re-attached to if it has not joined within lease_ttl.
 */
#include <errno.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>

#include <event2/event.h>

#include "cluster.h"
#include "log.h"
#include "qmpd.h"
#include "vm.h"
#include "xmalloc.h"

static struct event	*fence_ev;
static int		 fence_done;	/* fenced, not joined since */

int
cluster_fencing(void)
{
	return (fence_done);
}

/* Kill every local desktop now; they may be restarted elsewhere. */
void
cluster_fence(const char *why)
{
	struct vm	*vm;
	char		*cause;
	int		 n = 0;

	fence_done = 1;
	log_warnx("cluster: fence at %s (wall_ms %lld): %s: killing every "
	    "local desktop", cluster_stamp(), cluster_wall_ms(), why);
	TAILQ_FOREACH(vm, &vms, entry) {
		boot_queue_cancel(vm->def.name, "this host lost its lease");
		if (vm->pidfd == -1)
			continue;
		cause = NULL;
		if (vm_kill(vm, &cause) != 0) {
			log_warnx("cluster: fence: %s: %s", vm->def.name, cause);
			free(cause);
			continue;
		}
		n++;
	}
	log_warnx("cluster: fenced at %s (wall_ms %lld): %d desktop(s) "
	    "killed", cluster_stamp(), cluster_wall_ms(), n);
}

static void
fence_cb(evutil_socket_t fd, short events, void *arg)
{
	if (!cluster_host_joined())
		cluster_fence("no lease held since start-up");
}

/* Fence in seconds unless this host has joined by then. */
void
cluster_fence_arm(int seconds)
{
	struct timeval	tv = { seconds, 0 };

	if (fence_ev == NULL)
		fence_ev = evtimer_new(qmpd->base, fence_cb, NULL);
	evtimer_add(fence_ev, &tv);
}

void
cluster_fence_disarm(void)
{
	fence_done = 0;
	if (fence_ev != NULL)
		evtimer_del(fence_ev);
}
