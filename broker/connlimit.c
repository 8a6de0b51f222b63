/*
 * Connections per client address and in all, for each listener that faces
 * the network (portal, SPICE proxy): one client, however many sockets it
 * opens, holds at most its share of the broker's descriptors, and the
 * others still get in. Pure: the caller says when a connection comes and
 * goes.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "broker.h"
#include "xmalloc.h"

struct connlimit_addr {
	char				 addr[64];
	int				 count;
	TAILQ_ENTRY(connlimit_addr)	 entry;
};

struct connlimit {
	int				 max;		/* in all */
	int				 per_addr;
	int				 count;
	TAILQ_HEAD(, connlimit_addr)	 addrs;		/* count > 0 only */
};

struct connlimit *
connlimit_create(int max, int per_addr)
{
	struct connlimit	*cl = xcalloc(1, sizeof *cl);

	cl->max = max;
	cl->per_addr = per_addr;
	TAILQ_INIT(&cl->addrs);
	return (cl);
}

void
connlimit_free(struct connlimit *cl)
{
	struct connlimit_addr	*a;

	if (cl == NULL)
		return;
	while ((a = TAILQ_FIRST(&cl->addrs)) != NULL) {
		TAILQ_REMOVE(&cl->addrs, a, entry);
		free(a);
	}
	free(cl);
}

static struct connlimit_addr *
connlimit_find(struct connlimit *cl, const char *addr)
{
	struct connlimit_addr	*a;

	TAILQ_FOREACH(a, &cl->addrs, entry) {
		if (strcmp(a->addr, addr) == 0)
			return (a);
	}
	return (NULL);
}

/*
 * Count a new connection from addr, or refuse it (-1, with why in cause,
 * which the caller frees) when addr or everyone is at the cap.
 */
int
connlimit_add(struct connlimit *cl, const char *addr, char **cause)
{
	struct connlimit_addr	*a = connlimit_find(cl, addr);

	if (cl->count >= cl->max) {
		xasprintf(cause, "%d connections already", cl->count);
		return (-1);
	}
	if (a != NULL && a->count >= cl->per_addr) {
		xasprintf(cause, "%d connections from this address already",
		    a->count);
		return (-1);
	}
	if (a == NULL) {
		a = xcalloc(1, sizeof *a);
		strlcpy(a->addr, addr, sizeof a->addr);
		TAILQ_INSERT_TAIL(&cl->addrs, a, entry);
	}
	a->count++;
	cl->count++;
	return (0);
}

/* A connection counted by connlimit_add ended. */
void
connlimit_del(struct connlimit *cl, const char *addr)
{
	struct connlimit_addr	*a = connlimit_find(cl, addr);

	if (a == NULL)
		return;
	cl->count--;
	if (--a->count == 0) {
		TAILQ_REMOVE(&cl->addrs, a, entry);
		free(a);
	}
}

/* How many connections addr holds now (all of them for NULL). */
int
connlimit_count(const struct connlimit *cl, const char *addr)
{
	struct connlimit_addr	*a;

	if (addr == NULL)
		return (cl->count);
	a = connlimit_find((struct connlimit *)cl, addr);
	return (a != NULL ? a->count : 0);
}
