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
	/* Its first turn comes at once, long before a 40 ms hash is done. */
	event_active(tick, EV_TIMEOUT, 0);
	event_base_dispatch(base);
	CHECK(pool_answered == 4);
	CHECK(pool_verdicts[0] == 1 && pool_verdicts[1] == 0 &&
	    pool_verdicts[2] == 0 && pool_verdicts[3] == 1 &&
	    pool_verdicts[4] == -1);
	/* The loop turned while the first hash was being made. */
	CHECK(pool_ticks_at_first >= 1);
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

#define A1	"192.0.2.1"
#define A2	"192.0.2.2"

static void
test_lockout(void)
{
	struct auth_lockout	*lo;
	time_t			 t = 100000;
	int			 i;

	lo = auth_lockout_create(AUTH_LOCK_FAILURES, AUTH_LOCK_LOGIN_FAILURES,
	    AUTH_LOCK_WINDOW, AUTH_LOCK_TIME, 8, 8);
	/* Four failures: not locked; the fifth locks for the lock time. */
	for (i = 0; i < 4; i++) {
		CHECK(auth_lockout_fail(lo, "alice", A1, 1, t + i) == 0);
		CHECK(auth_lockout_check(lo, "alice", A1, t + i) == 0);
	}
	CHECK(auth_lockout_fail(lo, "alice", A1, 1, t + 4) == AUTH_LOCK_TIME);
	CHECK(auth_lockout_check(lo, "alice", A1, t + 4) == AUTH_LOCK_TIME);
	CHECK(auth_lockout_check(lo, "alice", A1, t + 104) ==
	    AUTH_LOCK_TIME - 100);
	/* Only from that address: alice at her own desk is not locked. */
	CHECK(auth_lockout_check(lo, "alice", A2, t + 104) == 0);
	/* Failures while locked do not stretch the lock. */
	CHECK(auth_lockout_fail(lo, "alice", A1, 1, t + 200) ==
	    AUTH_LOCK_TIME - 196);
	CHECK(auth_lockout_check(lo, "alice", A1, t + 4 + AUTH_LOCK_TIME - 1)
	    == 1);
	CHECK(auth_lockout_check(lo, "alice", A1, t + 4 + AUTH_LOCK_TIME) ==
	    0);
	/* After the lock the count starts over. */
	t += 4 + AUTH_LOCK_TIME;
	CHECK(auth_lockout_fail(lo, "alice", A1, 1, t) == 0);
	CHECK(auth_lockout_check(lo, "alice", A1, t) == 0);
	/* Others are not affected. */
	CHECK(auth_lockout_check(lo, "bob", A1, t) == 0);

	/* Failures spread wider than the window never lock. */
	t += 10000;
	for (i = 0; i < 20; i++)
		CHECK(auth_lockout_fail(lo, "carol", A1, 1, t + i * 151) == 0);
	/* Four in the window and one just outside: still not locked. */
	t += 100000;
	CHECK(auth_lockout_fail(lo, "dave", A1, 1, t) == 0);
	for (i = 1; i <= 4; i++)
		CHECK(auth_lockout_fail(lo, "dave", A1, 1, t +
		    AUTH_LOCK_WINDOW + i) == 0);
	CHECK(auth_lockout_fail(lo, "dave", A1, 1, t + AUTH_LOCK_WINDOW + 5)
	    == AUTH_LOCK_TIME);

	/* A good login forgets the failures. */
	for (i = 0; i < 4; i++)
		auth_lockout_fail(lo, "erin", A1, 1, t + i);
	CHECK(auth_lockout_clear(lo, "erin", A1) == 0);
	CHECK(auth_lockout_fail(lo, "erin", A1, 1, t + 5) == 0);
	auth_lockout_free(lo);
}

/*
 * A stranger at one address locks only (login, that address), however
 * often they try; the login as a whole locks only when many addresses
 * fail.
 */
static void
test_lockout_stranger(void)
{
	struct auth_lockout	*lo;
	char			 addr[32];
	time_t			 t = 300000;
	int			 i, a, locked = 0;

	lo = auth_lockout_create(AUTH_LOCK_FAILURES, AUTH_LOCK_LOGIN_FAILURES,
	    AUTH_LOCK_WINDOW, AUTH_LOCK_TIME, 64, 64);
	for (i = 0; i < 1000; i++)
		auth_lockout_fail(lo, "alice", "203.0.113.9", 1, t);
	CHECK(auth_lockout_check(lo, "alice", "203.0.113.9", t) ==
	    AUTH_LOCK_TIME);
	CHECK(auth_lockout_check(lo, "alice", A1, t) == 0);
	/* Many addresses, each up to its own lock: the login locks. */
	for (a = 0; a < 20 && !locked; a++) {
		snprintf(addr, sizeof addr, "198.51.100.%d", a);
		for (i = 0; i < AUTH_LOCK_FAILURES; i++)
			auth_lockout_fail(lo, "alice", addr, 1, t + 1);
		locked = auth_lockout_check(lo, "alice", A1, t + 1) > 0;
	}
	CHECK(locked);
	/* It took at least LOGIN_FAILURES / FAILURES addresses. */
	CHECK(a + 1 >= AUTH_LOCK_LOGIN_FAILURES / AUTH_LOCK_FAILURES);
	CHECK(auth_lockout_check(lo, "bob", A1, t + 1) == 0);
	auth_lockout_free(lo);
}

static int	evicted;
static char	evicted_last[AUTH_KEY_MAX];

static void
evict_cb(const char *key, void *arg)
{
	evicted++;
	snprintf(evicted_last, sizeof evicted_last, "%s", key);
}

/*
 * Made-up names have a room of their own: locking 5,000 of them neither
 * frees a real lock nor stops a real login from being locked, and each
 * stored record the table forgets is named for deletion.
 */
static void
test_lockout_flood(void)
{
	struct auth_lockout	*lo;
	json_t			*j;
	char			 name[32];
	time_t			 t = 5000;
	int			 i, k, exported = 0;

	lo = auth_lockout_create(3, 9, 600, 300, 16, 16);
	auth_lockout_on_evict(lo, evict_cb, NULL);
	for (i = 0; i < 3; i++)
		auth_lockout_fail(lo, "victim", A1, 1, t);
	CHECK(auth_lockout_check(lo, "victim", A1, t) == 300);
	for (i = 0; i < 5000; i++) {
		snprintf(name, sizeof name, "spray%d", i);
		for (k = 0; k < 3; k++)
			auth_lockout_fail(lo, name, A2, 0, t + 1);
		CHECK(auth_lockout_check(lo, name, A2, t + 1) == 300);
		/* The caller stores every failure, as qmpd does. */
		j = auth_lockout_export(lo, name, A2, t + 1);
		exported += j != NULL;
		json_decref(j);
		json_decref(auth_lockout_export(lo, name, NULL, t + 1));
	}
	CHECK(exported == 5000);
	CHECK(auth_lockout_count(lo) <= 32);
	CHECK(auth_lockout_check(lo, "victim", A1, t + 1) == 299);
	/* What was forgotten was named: at most 16 made-up records left. */
	CHECK(evicted >= 2 * 5000 - 16);
	CHECK(strncmp(evicted_last, "spray49", 7) == 0);
	/* A real user is still locked after the flood. */
	for (i = 0; i < 2; i++)
		CHECK(auth_lockout_fail(lo, "alice", A1, 1, t + 2) == 0);
	CHECK(auth_lockout_fail(lo, "alice", A1, 1, t + 2) == 300);
	CHECK(auth_lockout_check(lo, "alice", A1, t + 3) == 299);
	/* Once the window has passed, stale entries make room. */
	CHECK(auth_lockout_fail(lo, "late", A1, 1, t + 10000) == 0);
	CHECK(auth_lockout_count(lo) <= 32);
	auth_lockout_free(lo);
	auth_lockout_free(NULL);
}

/*
 * An attempt as it arrives: a password over the limit is refused at once
 * and counted; attempts in flight count against what is left before the
 * lock, so a burst cannot get more guesses than the policy allows.
 */
static void
test_lockout_admit(void)
{
	struct auth_lockout	*lo;
	char			 big[AUTH_PASSWORD_MAX + 2], *cause = NULL;
	time_t			 t = 700000;
	int			 i, left;

	lo = auth_lockout_create(AUTH_LOCK_FAILURES, AUTH_LOCK_LOGIN_FAILURES,
	    AUTH_LOCK_WINDOW, AUTH_LOCK_TIME, 8, 8);
	memset(big, 'x', sizeof big - 1);
	big[sizeof big - 1] = '\0';
	for (i = 0; i < AUTH_LOCK_FAILURES; i++) {
		CHECK(auth_lockout_admit(lo, "alice", A1, 1, big, strlen(big),
		    t, &left, &cause) == AUTH_REFUSED);
		CHECK(cause != NULL && strstr(cause, "limit") != NULL);
		free(cause);
		cause = NULL;
	}
	CHECK(left == AUTH_LOCK_TIME);
	CHECK(auth_lockout_admit(lo, "alice", A1, 1, "short", 5, t, &left,
	    &cause) == AUTH_LOCKED);
	CHECK(left == AUTH_LOCK_TIME);
	free(cause);
	cause = NULL;
	/* Five in flight from one address: the sixth must wait. */
	for (i = 0; i < AUTH_LOCK_FAILURES; i++)
		CHECK(auth_lockout_admit(lo, "bob", A1, 1, "guess", 5, t,
		    &left, &cause) == AUTH_CHECK);
	CHECK(auth_lockout_admit(lo, "bob", A1, 1, "guess", 5, t, &left,
	    &cause) == AUTH_BUSY);
	free(cause);
	cause = NULL;
	/* From another address bob may try meanwhile. */
	CHECK(auth_lockout_admit(lo, "bob", A2, 1, "guess", 5, t, &left,
	    &cause) == AUTH_CHECK);
	CHECK(auth_lockout_done(lo, "bob", A2, 1, 1, t) == 0);
	auth_lockout_clear(lo, "bob", A2);
	/* Four wrong: not locked yet, one may still be tried... */
	for (i = 0; i < AUTH_LOCK_FAILURES - 1; i++)
		CHECK(auth_lockout_done(lo, "bob", A1, 1, 0, t) == 0);
	CHECK(auth_lockout_admit(lo, "bob", A1, 1, "guess", 5, t, &left,
	    &cause) == AUTH_BUSY);	/* the fifth is still in flight */
	free(cause);
	cause = NULL;
	/* ...and the fifth wrong one locks: 5 guesses in all, not 6. */
	CHECK(auth_lockout_done(lo, "bob", A1, 1, 0, t) == AUTH_LOCK_TIME);
	CHECK(auth_lockout_admit(lo, "bob", A1, 1, "guess", 5, t, &left,
	    &cause) == AUTH_LOCKED);
	free(cause);
	cause = NULL;
	/* A good one in flight clears the record once answered. */
	CHECK(auth_lockout_admit(lo, "carol", A1, 1, "guess", 5, t, &left,
	    &cause) == AUTH_CHECK);
	CHECK(auth_lockout_admit(lo, "carol", A1, 1, "right", 5, t, &left,
	    &cause) == AUTH_CHECK);
	CHECK(auth_lockout_done(lo, "carol", A1, 1, 0, t) == 0);
	CHECK(auth_lockout_done(lo, "carol", A1, 1, 1, t) == 0);
	CHECK(auth_lockout_clear(lo, "carol", A1) == 0);
	CHECK(auth_lockout_check(lo, "carol", A1, t) == 0);
	/* alice's two (address, login) and bob's two locked/left ones. */
	CHECK(auth_lockout_count(lo) == 4);
	auth_lockout_free(lo);
}

static void
test_addr(void)
{
	static const struct {
		const char	*in, *out;
	} cases[] = {
		{ "192.0.2.1", "192.0.2.1" },
		{ "RDP 192.0.2.1:50123", "192.0.2.1" },
		{ "RDP [2001:db8::1]:50123", "2001:db8::1" },
		{ "2001:db8::1", "2001:db8::1" },
		{ "127.0.0.1:8443", "127.0.0.1" },
		{ "", "unknown" },
		{ NULL, "unknown" },
	};
	char	buf[AUTH_ADDR_MAX + 1], big[200];
	size_t	i;

	for (i = 0; i < sizeof cases / sizeof cases[0]; i++) {
		auth_addr_normalize(cases[i].in, buf, sizeof buf);
		CHECK_STR(buf, cases[i].out);
	}
	memset(big, '1', sizeof big - 1);
	big[sizeof big - 1] = '\0';
	CHECK(auth_addr_normalize(big, buf, sizeof buf) == -1);
	CHECK_STR(buf, "unknown");
}

/* Counters survive a restart through export and import. */
static void
test_lockout_persist(void)
{
	struct auth_lockout	*a, *b;
	json_t			*j, *forged;
	char			 key[AUTH_KEY_MAX];
	time_t			 t = 200000;
	int			 i;

	a = auth_lockout_create(AUTH_LOCK_FAILURES, AUTH_LOCK_LOGIN_FAILURES,
	    AUTH_LOCK_WINDOW, AUTH_LOCK_TIME, 8, 8);
	b = auth_lockout_create(AUTH_LOCK_FAILURES, AUTH_LOCK_LOGIN_FAILURES,
	    AUTH_LOCK_WINDOW, AUTH_LOCK_TIME, 8, 8);
	CHECK(auth_lockout_export(a, "alice", A1, t) == NULL);
	/* Three failures, then the process restarts: two more lock. */
	for (i = 0; i < 3; i++)
		CHECK(auth_lockout_fail(a, "alice", A1, 1, t + i) == 0);
	j = auth_lockout_export(a, "alice", A1, t + 3);
	CHECK(j != NULL && json_array_size(json_object_get(j, "fails")) == 3);
	auth_lockout_key("alice", A1, key, sizeof key);
	CHECK_STR(key, "alice@" A1);
	CHECK(auth_lockout_import(b, key, j, t + 10) == 1);
	json_decref(j);
	/* The login as a whole is kept under the bare login. */
	j = auth_lockout_export(a, "alice", NULL, t + 3);
	CHECK(j != NULL && json_array_size(json_object_get(j, "fails")) == 3);
	CHECK(auth_lockout_import(b, "alice", j, t + 10) == 1);
	json_decref(j);
	CHECK(auth_lockout_fail(b, "alice", A1, 1, t + 11) == 0);
	CHECK(auth_lockout_fail(b, "alice", A1, 1, t + 12) == AUTH_LOCK_TIME);
	/* Both records were stored: a good login says to delete both. */
	json_decref(auth_lockout_export(b, "alice", A1, t + 12));
	/* A lock survives too, with the time it has left. */
	j = auth_lockout_export(b, "alice", A1, t + 12);
	auth_lockout_free(a);
	a = auth_lockout_create(AUTH_LOCK_FAILURES, AUTH_LOCK_LOGIN_FAILURES,
	    AUTH_LOCK_WINDOW, AUTH_LOCK_TIME, 8, 8);
	auth_lockout_import(a, key, j, t + 100);
	json_decref(j);
	CHECK(auth_lockout_check(a, "alice", A1, t + 100) ==
	    AUTH_LOCK_TIME - 88);
	CHECK(auth_lockout_check(a, "alice", A2, t + 100) == 0);
	CHECK(auth_lockout_check(a, "alice", A1, t + 12 + AUTH_LOCK_TIME) ==
	    0);
	/* Stale failures are dropped; a lock beyond the policy is ignored. */
	forged = json_pack("{s:[I,I],s:I}", "fails", (json_int_t)t,
	    (json_int_t)(t + 1), "locked_until",
	    (json_int_t)(t + 10 * AUTH_LOCK_TIME));
	CHECK(auth_lockout_import(a, "bob@" A1, forged, t +
	    AUTH_LOCK_WINDOW + 5) == 0);
	CHECK(auth_lockout_check(a, "bob", A1, t + AUTH_LOCK_WINDOW + 5) ==
	    0);
	CHECK(auth_lockout_export(a, "bob", A1, t + AUTH_LOCK_WINDOW + 5) ==
	    NULL);
	/* Bad keys are dropped. */
	CHECK(auth_lockout_import(a, "@" A1, forged, t) == 0);
	json_decref(forged);
	/* Clearing leaves nothing to keep, and says what was stored. */
	CHECK(auth_lockout_clear(b, "alice", A1) ==
	    (AUTH_STORED_ADDR | AUTH_STORED_LOGIN));
	CHECK(auth_lockout_export(b, "alice", A1, t + 20) == NULL);
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
	test_lockout_stranger();
	test_lockout_flood();
	test_lockout_admit();
	test_addr();
	test_lockout_persist();
	test_pool();
	return (check_exit());
}
