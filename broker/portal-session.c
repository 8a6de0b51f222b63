/*
 * The portal's login sessions: a random 256-bit id in an HttpOnly cookie,
 * kept only in memory. A session ends at logout, after
 * broker->session_idle seconds without a request of the user's (the
 * portal's background refresh does not count), or after
 * PORTAL_SESSION_MAX seconds in all; restarting the broker ends them all,
 * which is what a user would expect of a security boundary. One login
 * holds at most PORTAL_SESSION_PER_LOGIN sessions: logging in again ends
 * that login's own oldest session, never anyone else's. (qmpd's
 * session.c is another thing: SPICE viewer sessions of a desktop.)
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <openssl/crypto.h>
#include <openssl/rand.h>

#include "broker.h"
#include "clock.h"
#include "log.h"
#include "xmalloc.h"

#define PORTAL_SESSION_MAX		(12 * 60 * 60)
#define PORTAL_SESSION_LIMIT		10000	/* in all: then logins wait */
#define PORTAL_SESSION_PER_LOGIN	16	/* its own oldest goes beyond this */
#define PORTAL_SESSION_SWEEP		60

static TAILQ_HEAD(, portal_session) portal_sessions =
    TAILQ_HEAD_INITIALIZER(portal_sessions);
static int			 portal_session_count;
static struct event		*portal_session_sweeper;

static int
portal_session_expired(const struct portal_session *s, time_t now)
{
	return (now - s->last > broker->session_idle ||
	    now - s->created > PORTAL_SESSION_MAX);
}

/* Once a minute: forget sessions past their idle or total limit. */
static void
portal_session_sweep_cb(evutil_socket_t fd, short events, void *arg)
{
	struct portal_session	*s, *s1;
	time_t		 now = clock_mono_s();

	TAILQ_FOREACH_SAFE(s, &portal_sessions, entry, s1) {
		if (portal_session_expired(s, now)) {
			log_info("session of %s expired", s->login);
			portal_session_destroy(s);
		}
	}
}

void
portal_session_init(struct event_base *base)
{
	struct timeval	tv = { PORTAL_SESSION_SWEEP, 0 };

	portal_session_sweeper = event_new(base, -1, EV_PERSIST,
	    portal_session_sweep_cb, NULL);
	evtimer_add(portal_session_sweeper, &tv);
}

/*
 * A new session for a user qmpd has just authenticated, after ending that
 * login's oldest if it has too many; NULL when the broker holds
 * PORTAL_SESSION_LIMIT sessions of others (none of theirs is taken).
 */
struct portal_session *
portal_session_create(const char *login, const char *name, int admin)
{
	struct portal_session	*s, *oldest = NULL;
	unsigned char	 rnd[32];
	size_t		 i;
	int		 n = 0;

	TAILQ_FOREACH(s, &portal_sessions, entry) {
		if (strcmp(s->login, login) != 0)
			continue;
		if (oldest == NULL)
			oldest = s;
		n++;
	}
	if (n >= PORTAL_SESSION_PER_LOGIN) {
		log_info("session of %s ended: %d newer ones", login, n);
		portal_session_destroy(oldest);
	} else if (portal_session_count >= PORTAL_SESSION_LIMIT)
		return (NULL);
	if (RAND_bytes(rnd, sizeof rnd) != 1)
		fatalx("RAND_bytes failed: no randomness for a session id");
	s = xcalloc(1, sizeof *s);
	for (i = 0; i < sizeof rnd; i++)
		snprintf(s->id + i * 2, 3, "%02x", rnd[i]);
	explicit_bzero(rnd, sizeof rnd);
	s->login = xstrdup(login);
	s->name = xstrdup(name != NULL ? name : login);
	s->admin = admin;
	s->created = s->last = clock_mono_s();
	TAILQ_INSERT_TAIL(&portal_sessions, s, entry);
	portal_session_count++;
	return (s);
}

/*
 * The live session with this id, or NULL; touched unless told not to.
 * Every id is compared in constant time, so response times say nothing
 * about valid ids.
 */
struct portal_session *
portal_session_find(const char *id, int touch)
{
	struct portal_session	*s, *found = NULL;
	time_t		 now = clock_mono_s();

	if (strlen(id) != sizeof s->id - 1)
		return (NULL);
	TAILQ_FOREACH(s, &portal_sessions, entry) {
		if (CRYPTO_memcmp(s->id, id, sizeof s->id - 1) == 0)
			found = s;
	}
	if (found == NULL)
		return (NULL);
	if (portal_session_expired(found, now)) {
		portal_session_destroy(found);
		return (NULL);
	}
	if (touch)
		found->last = now;
	return (found);
}

void
portal_session_destroy(struct portal_session *s)
{
	if (s == NULL)
		return;
	TAILQ_REMOVE(&portal_sessions, s, entry);
	portal_session_count--;
	explicit_bzero(s->id, sizeof s->id);
	free(s->login);
	free(s->name);
	free(s);
}

void
portal_session_clear(void)
{
	while (!TAILQ_EMPTY(&portal_sessions))
		portal_session_destroy(TAILQ_FIRST(&portal_sessions));
	if (portal_session_sweeper != NULL)
		event_free(portal_session_sweeper);
	portal_session_sweeper = NULL;
}
