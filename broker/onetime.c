/*
 * One-time tickets for the browser console's WebSocket, pure: the caller
 * gives the clock and the random ticket. A ticket names who may use it
 * and for which desktop; presenting it, right or wrong, uses it up, so a
 * ticket that leaked through a URL (logs, history) is worth nothing once
 * the page has connected. Kept in memory: a broker restart ends them all,
 * as it ends portal sessions.
 */
#include <stdlib.h>
#include <string.h>

#include <openssl/crypto.h>

#include "broker.h"
#include "xmalloc.h"

struct onetime_entry {
	char				 ticket[ONETIME_LEN + 1];
	char				*login;
	char				*vm;
	time_t				 expires;
	TAILQ_ENTRY(onetime_entry)	 entry;
};

struct onetime {
	int				 max;
	int				 count;
	TAILQ_HEAD(, onetime_entry)	 entries;	/* oldest first */
};

struct onetime *
onetime_create(int max)
{
	struct onetime	*ot = xcalloc(1, sizeof *ot);

	ot->max = max > 0 ? max : ONETIME_MAX;
	TAILQ_INIT(&ot->entries);
	return (ot);
}

static void
onetime_remove(struct onetime *ot, struct onetime_entry *e)
{
	TAILQ_REMOVE(&ot->entries, e, entry);
	ot->count--;
	explicit_bzero(e->ticket, sizeof e->ticket);
	free(e->login);
	free(e->vm);
	free(e);
}

void
onetime_free(struct onetime *ot)
{
	struct onetime_entry	*e;

	if (ot == NULL)
		return;
	while ((e = TAILQ_FIRST(&ot->entries)) != NULL)
		onetime_remove(ot, e);
	free(ot);
}

/* Drop the tickets whose time is over. */
static void
onetime_expire(struct onetime *ot, time_t now)
{
	struct onetime_entry	*e, *next;

	for (e = TAILQ_FIRST(&ot->entries); e != NULL; e = next) {
		next = TAILQ_NEXT(e, entry);
		if (e->expires < now)
			onetime_remove(ot, e);
	}
}

/*
 * Keep a new ticket. At the cap the oldest goes: a user who asks for
 * thousands of tickets only loses their own oldest ones.
 */
void
onetime_add(struct onetime *ot, const char *ticket, const char *login,
    const char *vm, time_t expires, time_t now)
{
	struct onetime_entry	*e;

	onetime_expire(ot, now);
	while (ot->count >= ot->max)
		onetime_remove(ot, TAILQ_FIRST(&ot->entries));
	e = xcalloc(1, sizeof *e);
	strlcpy(e->ticket, ticket, sizeof e->ticket);
	e->login = xstrdup(login);
	e->vm = xstrdup(vm);
	e->expires = expires;
	TAILQ_INSERT_TAIL(&ot->entries, e, entry);
	ot->count++;
}

/*
 * Use a ticket: 0 when it is live and names this login and desktop,
 * else -1 with the reason. Either way it is gone.
 */
int
onetime_take(struct onetime *ot, const char *ticket, const char *login,
    const char *vm, time_t now, char **cause)
{
	struct onetime_entry	*e, *found = NULL;
	int			 ok;

	if (ticket == NULL || strlen(ticket) != ONETIME_LEN) {
		xasprintf(cause, "no console ticket, or not one this broker "
		    "gives");
		return (-1);
	}
	TAILQ_FOREACH(e, &ot->entries, entry) {
		if (CRYPTO_memcmp(e->ticket, ticket, ONETIME_LEN) == 0) {
			found = e;
			break;
		}
	}
	if (found == NULL) {
		xasprintf(cause, "the console ticket is unknown or was "
		    "already used");
		return (-1);
	}
	ok = 0;
	if (found->expires < now)
		xasprintf(cause, "the console ticket has expired");
	else if (strcmp(found->login, login) != 0)
		xasprintf(cause, "the console ticket is not this user's");
	else if (strcmp(found->vm, vm) != 0)
		xasprintf(cause, "the console ticket is for another desktop");
	else
		ok = 1;
	onetime_remove(ot, found);
	return (ok ? 0 : -1);
}

/* How many live tickets are kept. */
int
onetime_count(struct onetime *ot, time_t now)
{
	onetime_expire(ot, now);
	return (ot->count);
}
