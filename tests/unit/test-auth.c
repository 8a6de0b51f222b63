/*
 * Unit tests of qmpd/auth.c: the login rule, yescrypt hashing and
 * verification, and the lockout window arithmetic with a fake clock.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <event2/event.h>

#include "auth.h"
#include "check.h"

/* What the pool test's callbacks saw, and the loop's heartbeat. */
static int	 pool_verdicts[8];
static int	 pool_answered;
static int	 pool_ticks;
static int	 pool_ticks_at_first;

static void
pool_cb(int ok, void *arg)
{
	int	i = (int)(long)arg;

	pool_verdicts[i] = ok;
	if (pool_answered++ == 0)
		pool_ticks_at_first = pool_ticks;
}

static void
pool_tick(evutil_socket_t fd, short events, void *arg)
{
	struct event_base	*base = arg;

	pool_ticks++;
	if (pool_answered == 4)
		event_base_loopbreak(base);
}

/*
 * The password pool: verdicts come back on the loop, the loop keeps
 * turning while the workers hash, and a full queue refuses at once.
 */
static void
test_pool(void)
{
	struct event_base	*base;
	struct auth_pool	*ap;
	struct event		*tick;
	struct timeval		 ms = { 0, 1000 };
	char			*h, *cause = NULL;
	int			 i;

	h = auth_hash("good pass", &cause);
	CHECK(h != NULL);
	if (h == NULL)
		return;
	base = event_base_new();
	ap = auth_pool_create(base, 2, 4, &cause);
	CHECK(ap != NULL && cause == NULL);
	if (ap == NULL)
		return;
	for (i = 0; i < 8; i++)
		pool_verdicts[i] = -1;
	CHECK(auth_pool_verify(ap, "good pass", h, pool_cb, (void *)0L,
	    &cause) == 0);
	CHECK(auth_pool_verify(ap, "bad pass", h, pool_cb, (void *)1L,
	    &cause) == 0);
	CHECK(auth_pool_verify(ap, "good pass", NULL, pool_cb, (void *)2L,
	    &cause) == 0);
	CHECK(auth_pool_verify(ap, "good pass", h, pool_cb, (void *)3L,
	    &cause) == 0);
	CHECK(auth_pool_queued(ap) == 4);
	/* The fifth does not wait: it is refused with a reason. */
	CHECK(auth_pool_verify(ap, "good pass", h, pool_cb, (void *)4L,
	    &cause) == -1);
	CHECK(cause != NULL && strstr(cause, "4") != NULL);
	free(cause);
	cause = NULL;
	/* Nothing is answered from inside auth_pool_verify. */
	CHECK(pool_answered == 0);
	tick = event_new(base, -1, EV_PERSIST, pool_tick, base);
	event_add(tick, &ms);
	event_base_dispatch(base);
	CHECK(pool_answered == 4);
	CHECK(pool_verdicts[0] == 1 && pool_verdicts[1] == 0 &&
	    pool_verdicts[2] == 0 && pool_verdicts[3] == 1 &&
	    pool_verdicts[4] == -1);
	/* The 1 ms timer ran while the first hash was being made. */
	CHECK(pool_ticks_at_first > 5);
	CHECK(auth_pool_queued(ap) == 0);
	/* Room again once answered. */
	CHECK(auth_pool_verify(ap, "good pass", h, pool_cb, (void *)5L,
	    &cause) == 0);
	/* Freeing with a job in flight neither hangs nor calls back. */
	auth_pool_free(ap);
	CHECK(pool_answered == 4);
	auth_pool_free(NULL);
	event_free(tick);
	event_base_free(base);
	free(h);
}

static void
test_login(void)
{
	static const char *good[] = {
		"alice", "j.smith", "a_b", "x-1", "0day", "a.b.c",
		"abcdefghijabcdefghijabcdefghijabcdefghij"
		    "abcdefghijabcdefghi1234",
	};
	static const char *bad[] = {
		"", "Alice", ".alice", "_a", "-a", "a b", "a/b", "a:b", "é",
		"abcdefghijabcdefghijabcdefghijabcdefghij"
		    "abcdefghijabcdefghi12345",
	};
	char	*cause;
	size_t	 i;

	for (i = 0; i < sizeof good / sizeof good[0]; i++) {
		cause = NULL;
		CHECK(auth_login_valid(good[i], &cause) == 0);
		CHECK(cause == NULL);
	}
	for (i = 0; i < sizeof bad / sizeof bad[0]; i++) {
		cause = NULL;
		CHECK(auth_login_valid(bad[i], &cause) == -1);
		CHECK(cause != NULL);
		free(cause);
	}
}

static void
test_password_rule(void)
{
	char	 big[AUTH_PASSWORD_MAX + 2], *cause = NULL;

	CHECK(auth_password_valid("x", 1, &cause) == 0);
	CHECK(auth_password_valid("", 0, &cause) == -1);
	free(cause);
	cause = NULL;
	CHECK(auth_password_valid("a\0b", 3, &cause) == -1);
	CHECK(cause != NULL && strstr(cause, "NUL") != NULL);
	free(cause);
	cause = NULL;
	memset(big, 'x', sizeof big - 1);
	big[sizeof big - 1] = '\0';
	CHECK(auth_password_valid(big, strlen(big), &cause) == -1);
	free(cause);
	big[AUTH_PASSWORD_MAX] = '\0';
	CHECK(auth_password_valid(big, strlen(big), NULL) == 0);
}

static void
test_hash(void)
{
	char	*h1, *h2, *cause = NULL;

	h1 = auth_hash("correct horse", &cause);
	CHECK(h1 != NULL && cause == NULL);
	if (h1 == NULL)
		return;
	CHECK(strncmp(h1, "$y$", 3) == 0);
	CHECK(strstr(h1, "correct") == NULL);
	CHECK(auth_verify("correct horse", h1) == 1);
	CHECK(auth_verify("correct hors", h1) == 0);
	CHECK(auth_verify("correct horse ", h1) == 0);
	CHECK(auth_verify("", h1) == 0);
	/* A fresh salt each time: the same password, another hash. */
	h2 = auth_hash("correct horse", &cause);
	CHECK(h2 != NULL && strcmp(h1, h2) != 0);
	CHECK(h2 != NULL && auth_verify("correct horse", h2) == 1);
	/* No hash, a locked one, garbage: never a match. */
	CHECK(auth_verify("correct horse", NULL) == 0);
	CHECK(auth_verify("correct horse", "") == 0);
	CHECK(auth_verify("correct horse", "!") == 0);
	CHECK(auth_verify("correct horse", "*") == 0);
	CHECK(auth_verify("correct horse", "$y$garbage") == 0);
	free(h1);
	free(h2);
}

static void
test_lockout(void)
{
	struct auth_lockout	*lo;
	time_t			 t = 100000;
	int			 i;

	lo = auth_lockout_create(AUTH_LOCK_FAILURES, AUTH_LOCK_WINDOW,
	    AUTH_LOCK_TIME, 8);
	/* Four failures: not locked; the fifth locks for the lock time. */
	for (i = 0; i < 4; i++) {
		CHECK(auth_lockout_fail(lo, "alice", t + i) == 0);
		CHECK(auth_lockout_check(lo, "alice", t + i) == 0);
	}
	CHECK(auth_lockout_fail(lo, "alice", t + 4) == AUTH_LOCK_TIME);
	CHECK(auth_lockout_check(lo, "alice", t + 4) == AUTH_LOCK_TIME);
	CHECK(auth_lockout_check(lo, "alice", t + 104) == AUTH_LOCK_TIME - 100);
	/* Failures while locked do not stretch the lock. */
	CHECK(auth_lockout_fail(lo, "alice", t + 200) == AUTH_LOCK_TIME - 196);
	CHECK(auth_lockout_check(lo, "alice", t + 4 + AUTH_LOCK_TIME - 1) == 1);
	CHECK(auth_lockout_check(lo, "alice", t + 4 + AUTH_LOCK_TIME) == 0);
	/* After the lock the count starts over. */
	t += 4 + AUTH_LOCK_TIME;
	CHECK(auth_lockout_fail(lo, "alice", t) == 0);
	CHECK(auth_lockout_check(lo, "alice", t) == 0);
	/* Others are not affected. */
	CHECK(auth_lockout_check(lo, "bob", t) == 0);

	/* Failures spread wider than the window never lock. */
	t += 10000;
	for (i = 0; i < 20; i++)
		CHECK(auth_lockout_fail(lo, "carol", t + i * 151) == 0);
	/* Four in the window and one just outside: still not locked. */
	t += 100000;
	CHECK(auth_lockout_fail(lo, "dave", t) == 0);
	for (i = 1; i <= 4; i++)
		CHECK(auth_lockout_fail(lo, "dave", t + AUTH_LOCK_WINDOW +
		    i) == 0);
	CHECK(auth_lockout_fail(lo, "dave", t + AUTH_LOCK_WINDOW + 5) ==
	    AUTH_LOCK_TIME);

	/* A good login forgets the failures. */
	for (i = 0; i < 4; i++)
		auth_lockout_fail(lo, "erin", t + i);
	auth_lockout_clear(lo, "erin");
	CHECK(auth_lockout_fail(lo, "erin", t + 5) == 0);
	auth_lockout_free(lo);
}

/* The table is bounded; made-up names cannot push out a locked login. */
static void
test_lockout_bounded(void)
{
	struct auth_lockout	*lo;
	char			 name[32];
	time_t			 t = 5000;
	int			 i;

	lo = auth_lockout_create(3, 600, 300, 4);
	for (i = 0; i < 3; i++)
		auth_lockout_fail(lo, "victim", t);
	CHECK(auth_lockout_check(lo, "victim", t) == 300);
	for (i = 0; i < 100; i++) {
		snprintf(name, sizeof name, "spray%d", i);
		auth_lockout_fail(lo, name, t + 1);
	}
	CHECK(auth_lockout_count(lo) <= 4);
	CHECK(auth_lockout_check(lo, "victim", t + 1) == 299);
	/* Once the window has passed, stale entries make room. */
	CHECK(auth_lockout_fail(lo, "late", t + 10000) == 0);
	CHECK(auth_lockout_count(lo) <= 4);
	auth_lockout_free(lo);
	auth_lockout_free(NULL);
}

/* Counters survive a restart through export and import. */
static void
test_lockout_persist(void)
{
	struct auth_lockout	*a, *b;
	json_t			*j, *forged;
	time_t			 t = 200000;
	int			 i;

	a = auth_lockout_create(AUTH_LOCK_FAILURES, AUTH_LOCK_WINDOW,
	    AUTH_LOCK_TIME, 8);
	b = auth_lockout_create(AUTH_LOCK_FAILURES, AUTH_LOCK_WINDOW,
	    AUTH_LOCK_TIME, 8);
	CHECK(auth_lockout_export(a, "alice", t) == NULL);
	/* Three failures, then the process restarts: two more lock. */
	for (i = 0; i < 3; i++)
		CHECK(auth_lockout_fail(a, "alice", t + i) == 0);
	j = auth_lockout_export(a, "alice", t + 3);
	CHECK(j != NULL && json_array_size(json_object_get(j, "fails")) == 3);
	auth_lockout_import(b, "alice", j, t + 10);
	json_decref(j);
	CHECK(auth_lockout_fail(b, "alice", t + 11) == 0);
	CHECK(auth_lockout_fail(b, "alice", t + 12) == AUTH_LOCK_TIME);
	/* A lock survives too, with the time it has left. */
	j = auth_lockout_export(b, "alice", t + 12);
	auth_lockout_free(a);
	a = auth_lockout_create(AUTH_LOCK_FAILURES, AUTH_LOCK_WINDOW,
	    AUTH_LOCK_TIME, 8);
	auth_lockout_import(a, "alice", j, t + 100);
	json_decref(j);
	CHECK(auth_lockout_check(a, "alice", t + 100) == AUTH_LOCK_TIME - 88);
	CHECK(auth_lockout_check(a, "alice", t + 12 + AUTH_LOCK_TIME) == 0);
	/* Stale failures are dropped; a lock beyond the policy is ignored. */
	forged = json_pack("{s:[I,I],s:I}", "fails", (json_int_t)t,
	    (json_int_t)(t + 1), "locked_until",
	    (json_int_t)(t + 10 * AUTH_LOCK_TIME));
	auth_lockout_import(a, "bob", forged, t + AUTH_LOCK_WINDOW + 5);
	CHECK(auth_lockout_check(a, "bob", t + AUTH_LOCK_WINDOW + 5) == 0);
	CHECK(auth_lockout_export(a, "bob", t + AUTH_LOCK_WINDOW + 5) == NULL);
	json_decref(forged);
	/* Clearing leaves nothing to keep. */
	auth_lockout_clear(b, "alice");
	CHECK(auth_lockout_export(b, "alice", t + 20) == NULL);
	auth_lockout_free(a);
	auth_lockout_free(b);
}

int
main(void)
{
	test_login();
	test_password_rule();
	test_hash();
	test_lockout();
	test_lockout_persist();
	test_lockout_bounded();
	test_pool();
	return (check_exit());
}
