/*
 * A pool's disconnect action: when the last SPICE client leaves a pool
 * desktop, the pool's on_disconnect (shutdown or reset) runs after its
 * grace period, unless a client is back by then. The same on one host
 * and in a cluster: it acts on the local QEMU of whichever host runs the
 * desktop (the session events are that host's), and a shutdown then
 * flows through the usual vm.state path (placement, the pool's return).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <event2/event.h>

#include "log.h"
#include "pool.h"
#include "qmp.h"
#include "qmpd.h"
#include "vm.h"
#include "xmalloc.h"

#define POOL_DISCONNECT_STOP_TIMEOUT	60	/* the ACPI shutdown's */

/* A disconnect action waiting for its grace period, per desktop. */
struct pool_grace {
	char			 vm[VM_NAME_MAX];
	struct event		*timer;
	TAILQ_ENTRY(pool_grace)	 entry;
};
static TAILQ_HEAD(, pool_grace) pool_graces =
    TAILQ_HEAD_INITIALIZER(pool_graces);

static void
pool_grace_free(struct pool_grace *g)
{
	TAILQ_REMOVE(&pool_graces, g, entry);
	event_free(g->timer);
	free(g);
}

static void
pool_reset_done(struct qmp *qmp, json_t *ret, const char *errclass,
    const char *errdesc, void *arg)
{
	char	*name = arg;

	if (errclass != NULL)
		log_warnx("%s: disconnect reset: %s", name, errdesc);
	free(name);
}

/* The grace period is over: act unless a client came back. */
static void
pool_grace_cb(evutil_socket_t fd, short events, void *arg)
{
	struct pool_grace	*g = arg;
	struct vm		*vm;
	json_t			*pool = NULL;
	const char		*action;
	char			*cause = NULL;

	vm = vm_find(g->vm);
	if (vm == NULL || pool_of(vm) == NULL || vm->state != VM_RUNNING ||
	    json_array_size(vm->spice_clients) != 0 ||
	    (pool = pool_get(pool_of(vm))) == NULL)
		goto out;
	action = json_string_value(json_object_get(pool, "on_disconnect"));
	if (action != NULL && strcmp(action, "shutdown") == 0) {
		log_info("%s: nobody connected: shut down (pool %s)",
		    vm->def.name, pool_of(vm));
		if (vm_stop(vm, 0, POOL_DISCONNECT_STOP_TIMEOUT, &cause) != 0) {
			log_warnx("%s: %s", vm->def.name, cause);
			free(cause);
		}
	} else if (action != NULL && strcmp(action, "reset") == 0 &&
	    vm->qmp != NULL) {
		log_info("%s: nobody connected: reset (pool %s)",
		    vm->def.name, pool_of(vm));
		qmp_execute(vm->qmp, "system_reset", NULL, pool_reset_done,
		    xstrdup(vm->def.name));
	}
	notify_emit("desktop.disconnect_action", vm->def.name, NULL);
out:
	json_decref(pool);
	pool_grace_free(g);
}

/*
 * session.ended: a SPICE client left a desktop. When nobody is connected
 * any more, the pool's disconnect action runs after its grace period,
 * unless a client is back by then. pool_get reads the pool from LMDB or,
 * in a cluster, from the watched etcd view.
 */
void
pool_disconnect_ended(const char *name, json_t *fields)
{
	const char		*user = json_string_value(json_object_get(
				    fields, "login"));
	struct pool_grace	*g;
	struct vm		*vm;
	struct timeval		 tv;
	json_t			*pool;
	const char		*action;
	int			 grace;

	if (!json_is_true(json_object_get(fields, "last")) ||
	    (vm = vm_find(name)) == NULL || pool_of(vm) == NULL ||
	    (pool = pool_get(pool_of(vm))) == NULL)
		return;
	action = json_string_value(json_object_get(pool, "on_disconnect"));
	grace = json_integer_value(json_object_get(pool, "grace"));
	if (action == NULL || strcmp(action, "none") == 0) {
		json_decref(pool);
		return;
	}
	TAILQ_FOREACH(g, &pool_graces, entry)
		if (strcmp(g->vm, name) == 0)
			break;
	if (g == NULL) {
		g = xcalloc(1, sizeof *g);
		strlcpy(g->vm, name, sizeof g->vm);
		g->timer = evtimer_new(qmpd->base, pool_grace_cb, g);
		TAILQ_INSERT_TAIL(&pool_graces, g, entry);
	}
	tv.tv_sec = grace;
	tv.tv_usec = 0;
	evtimer_add(g->timer, &tv);
	log_info("%s: %s left; %s in %d s unless a client is back", name,
	    user != NULL ? user : "the last client", action, grace);
	json_decref(pool);
}
