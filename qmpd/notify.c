/*
 * qmpd's events, and who hears them. A model that has news (a VM's state,
 * a SPICE client, a desktop handed out) emits an event; the listeners
 * registered at start (the admin event stream, sessions, the boot queue,
 * pools) each get it, in the order they registered. The one who emits
 * names none of them, so a new policy is one more listener, not an edit
 * of the state machine or the transport.
 */
#include <stdlib.h>
#include <string.h>

#include "qmpd.h"
#include "xmalloc.h"

struct notify_listener {
	notify_cb			 fn;
	void				*arg;
	TAILQ_ENTRY(notify_listener)	 entry;
};
static TAILQ_HEAD(, notify_listener) notify_listeners =
    TAILQ_HEAD_INITIALIZER(notify_listeners);

static int
notify_handler_cmp(const void *key, const void *elem)
{
	return (strcmp(key, ((const struct notify_handler *)elem)->event));
}

/* Hear every event from now on, after the listeners already there. */
void
notify_listen(notify_cb fn, void *arg)
{
	struct notify_listener	*l;

	l = xcalloc(1, sizeof *l);
	l->fn = fn;
	l->arg = arg;
	TAILQ_INSERT_TAIL(&notify_listeners, l, entry);
}

/*
 * A listener's own dispatch: the handler of event in a table sorted by
 * event name (bsearch), called with vm and fields; events about no VM
 * are not dispatched.
 */
void
notify_dispatch(const struct notify_handler *table, size_t n,
    const char *event, const char *vm, json_t *fields)
{
	const struct notify_handler	*h;

	if (vm == NULL)
		return;
	h = bsearch(event, table, n, sizeof *table, notify_handler_cmp);
	if (h != NULL)
		h->fn(vm, fields);
}

/*
 * Tell every listener: event about vm (NULL: none) with fields (borrowed,
 * may be NULL). A listener may emit in turn; listeners are never removed.
 */
void
notify_emit(const char *event, const char *vm, json_t *fields)
{
	struct notify_listener	*l;

	TAILQ_FOREACH(l, &notify_listeners, entry)
		l->fn(event, vm, fields, l->arg);
}
