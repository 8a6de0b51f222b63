/*
 * Failed logins per client address, as a token bucket: each failure takes
 * a token, tokens come back at a steady rate, an empty bucket refuses,
 * and a try refused for that starts the wait again.
 * qmpd's lockout guards each login name; this guards against one address
 * trying many names. Each attempt takes its token when it arrives (so a
 * queue of attempts cannot outrun the bucket) and a success gives it back:
 * successes cost nothing, so a whole office behind one NAT logging in on
 * Monday morning is slowed only while its logins are being checked. Pure:
 * the caller gives the clock.
 */
#include <stdlib.h>
#include <string.h>

#include "broker.h"
#include "xmalloc.h"

struct throttle_entry {
	char				 key[64];
	double				 tokens;
	time_t				 last;
	TAILQ_ENTRY(throttle_entry)	 entry;
};

struct throttle {
	int				 burst;
	int				 refill;	/* seconds per token */
	int				 max;
	int				 count;
	TAILQ_HEAD(, throttle_entry)	 entries;	/* least recent first */
};

struct throttle *
throttle_create(int burst, int refill, int max)
{
	struct throttle	*t = xcalloc(1, sizeof *t);

	t->burst = burst;
	t->refill = refill;
	t->max = max;
	TAILQ_INIT(&t->entries);
	return (t);
}

void
throttle_free(struct throttle *t)
{
	struct throttle_entry	*e;

	if (t == NULL)
		return;
	while ((e = TAILQ_FIRST(&t->entries)) != NULL) {
		TAILQ_REMOVE(&t->entries, e, entry);
		free(e);
	}
	free(t);
}

/* The key's bucket brought up to now; NULL if the key has none. */
static struct throttle_entry *
throttle_find(struct throttle *t, const char *key, time_t now)
{
	struct throttle_entry	*e;

	TAILQ_FOREACH(e, &t->entries, entry) {
		if (strcmp(e->key, key) != 0)
			continue;
		if (now > e->last) {
			e->tokens += (double)(now - e->last) / t->refill;
			if (e->tokens > t->burst)
				e->tokens = t->burst;
			e->last = now;
		}
		return (e);
	}
	return (NULL);
}

/* Seconds until key may try again: 0 when it may now. */
int
throttle_check(struct throttle *t, const char *key, time_t now)
{
	struct throttle_entry	*e;

	if ((e = throttle_find(t, key, now)) == NULL || e->tokens >= 1)
		return (0);
	return ((int)((1 - e->tokens) * t->refill) + 1);
}

/* Count one failure (or a refused try) against key. */
void
throttle_fail(struct throttle *t, const char *key, time_t now)
{
	struct throttle_entry	*e;

	if ((e = throttle_find(t, key, now)) == NULL) {
		if (t->count >= t->max) {
			e = TAILQ_FIRST(&t->entries);
			TAILQ_REMOVE(&t->entries, e, entry);
		} else {
			e = xcalloc(1, sizeof *e);
			t->count++;
		}
		strlcpy(e->key, key, sizeof e->key);
		e->tokens = t->burst;
		e->last = now;
	} else
		TAILQ_REMOVE(&t->entries, e, entry);
	e->tokens = e->tokens >= 1 ? e->tokens - 1 : 0;
	TAILQ_INSERT_TAIL(&t->entries, e, entry);
}

/* Give back the token of an attempt that did not fail after all. */
void
throttle_refund(struct throttle *t, const char *key, time_t now)
{
	struct throttle_entry	*e;

	if ((e = throttle_find(t, key, now)) == NULL)
		return;
	e->tokens += 1;
	if (e->tokens > t->burst)
		e->tokens = t->burst;
}
