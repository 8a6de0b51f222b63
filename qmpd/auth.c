/*
 * Office users' credentials: the login name rule, yescrypt hashes through
 * libxcrypt, a constant-time comparison, and the lockout counters that
 * both the portal and the RDP gateway go through (via user.auth).
 */
#include <crypt.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "auth.h"
#include "compat.h"
#include "xmalloc.h"

#define AUTH_FAILURES_MAX	64	/* the most a policy may ask for */

/*
 * One lockout record: a login from one client address (addr not empty),
 * or the login as a whole (addr empty). "known": the login exists, so
 * the record is kept in the room of real users, which made-up names
 * cannot fill.
 */
struct auth_entry {
	char			 login[AUTH_LOGIN_MAX + 1];
	char			 addr[AUTH_ADDR_MAX + 1];
	int			 known;
	int			 stored;	/* exported: the caller keeps it */
	int			 pending;	/* attempts being checked */
	time_t			 fails[AUTH_FAILURES_MAX];
	int			 nfails;
	time_t			 locked_until;
	time_t			 last;		/* last failure, or made */
	TAILQ_ENTRY(auth_entry)	 lru;		/* its room's, newest first */
	TAILQ_ENTRY(auth_entry)	 chain;		/* its hash bucket's */
};
TAILQ_HEAD(auth_list, auth_entry);

struct auth_lockout {
	int				 failures;	/* per address */
	int				 login_failures; /* per login */
	int				 window;
	int				 lock_time;
	int				 max_entries[2]; /* unknown, known */
	int				 n[2];
	struct auth_list		 lru[2];	/* unknown, known */
	struct auth_list		*hash;		/* by login and addr */
	size_t				 nbuckets;	/* a power of two */
	void				(*evict)(const char *, void *);
	void				*evict_arg;
};

int
auth_login_valid(const char *login, char **cause)
{
	size_t	i, len = strlen(login);

	if (len == 0) {
		xasprintf(cause, "login is empty");
		return (-1);
	}
	if (len > AUTH_LOGIN_MAX) {
		xasprintf(cause, "login is %zu characters long, the limit is "
		    "%d", len, AUTH_LOGIN_MAX);
		return (-1);
	}
	for (i = 0; i < len; i++) {
		char c = login[i];

		if ((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9'))
			continue;
		if ((c == '.' || c == '_' || c == '-') && i > 0)
			continue;
		xasprintf(cause, "invalid login '%.64s': use lower-case "
		    "letters, digits, '.', '_' and '-', starting with a letter "
		    "or digit", login);
		return (-1);
	}
	return (0);
}

int
auth_password_valid(const char *password, size_t len, char **cause)
{
	if (len == 0) {
		xasprintf(cause, "the password is empty");
		return (-1);
	}
	if (strlen(password) != len) {
		xasprintf(cause, "the password contains a NUL character");
		return (-1);
	}
	if (len > AUTH_PASSWORD_MAX) {
		xasprintf(cause, "the password is %zu bytes long, the limit is "
		    "%d", len, AUTH_PASSWORD_MAX);
		return (-1);
	}
	return (0);
}

/* Hash password with setting; the result is copied out, the scratch wiped. */
static char *
auth_crypt(const char *password, const char *setting)
{
	struct crypt_data	*cd;
	char			*out, *res = NULL;

	cd = xcalloc(1, sizeof *cd);
	out = crypt_rn(password, setting, cd, sizeof *cd);
	if (out != NULL && out[0] != '*')
		res = xstrdup(out);
	explicit_bzero(cd, sizeof *cd);
	free(cd);
	return (res);
}

/*
 * yescrypt at libxcrypt's default cost: about 50-100 ms of CPU, by
 * design. Callers run it at most once per request.
 */
char *
auth_hash(const char *password, char **cause)
{
	char	 setting[CRYPT_GENSALT_OUTPUT_SIZE], *h;

	if (crypt_gensalt_rn("$y$", 0, NULL, 0, setting,
	    sizeof setting) == NULL) {
		xasprintf(cause, "cannot make a yescrypt salt (libxcrypt "
		    "without yescrypt, or no randomness)");
		return (NULL);
	}
	if ((h = auth_crypt(password, setting)) == NULL)
		xasprintf(cause, "yescrypt failed to hash the password");
	return (h);
}

/* Equal strings, in time that depends only on their lengths. */
static int
auth_equal(const char *a, const char *b)
{
	size_t		 la = strlen(a), lb = strlen(b), i;
	unsigned char	 d = la != lb;

	for (i = 0; i < la && i < lb; i++)
		d |= (unsigned char)a[i] ^ (unsigned char)b[i];
	return (d == 0);
}

/* The setting an absent hash is checked against; made once per process. */
static char		auth_dummy[CRYPT_GENSALT_OUTPUT_SIZE];
static pthread_once_t	auth_dummy_once = PTHREAD_ONCE_INIT;

static void
auth_dummy_init(void)
{
	if (crypt_gensalt_rn("$y$", 0, NULL, 0, auth_dummy,
	    sizeof auth_dummy) == NULL)
		auth_dummy[0] = '\0';
}

/* Thread-safe: the password pool's workers call it at once. */
int
auth_verify(const char *password, const char *hash)
{
	char	*h;
	int	 ok;

	if (hash == NULL || *hash == '\0' || *hash == '*' || *hash == '!') {
		/* Spend the same time as a real check, then say no. */
		pthread_once(&auth_dummy_once, auth_dummy_init);
		if (auth_dummy[0] == '\0')
			return (0);
		h = auth_crypt(password, auth_dummy);
		free(h);
		return (0);
	}
	if ((h = auth_crypt(password, hash)) == NULL)
		return (0);
	ok = auth_equal(h, hash);
	explicit_bzero(h, strlen(h));
	free(h);
	return (ok);
}

int
auth_addr_normalize(const char *client, char *buf, size_t len)
{
	const char	*p, *end;
	size_t		 n;

	if (client == NULL || *client == '\0') {
		strlcpy(buf, "unknown", len);
		return (0);
	}
	/* "RDP 192.0.2.1:3390": the address is the last word. */
	if ((p = strrchr(client, ' ')) != NULL)
		p++;
	else
		p = client;
	if (*p == '[' && (end = strchr(p, ']')) != NULL)
		p++;			/* [2001:db8::1]:3390 */
	else if ((end = strchr(p, ':')) != NULL && strchr(end + 1, ':') !=
	    NULL)
		end = p + strlen(p);	/* a bare IPv6 address */
	else if (end == NULL)
		end = p + strlen(p);	/* 192.0.2.1 */
	n = end - p;
	if (n == 0 || n > AUTH_ADDR_MAX || n >= len) {
		strlcpy(buf, "unknown", len);
		return (-1);
	}
	memcpy(buf, p, n);
	buf[n] = '\0';
	return (0);
}

struct auth_lockout *
auth_lockout_create(int failures, int login_failures, int window,
    int lock_time, int max_unknown, int max_known)
{
	struct auth_lockout	*lo;
	size_t			 i;

	lo = xcalloc(1, sizeof *lo);
	if (failures < 1)
		failures = 1;
	if (failures > AUTH_FAILURES_MAX)
		failures = AUTH_FAILURES_MAX;
	if (login_failures < failures)
		login_failures = failures;
	if (login_failures > AUTH_FAILURES_MAX)
		login_failures = AUTH_FAILURES_MAX;
	lo->failures = failures;
	lo->login_failures = login_failures;
	lo->window = window;
	lo->lock_time = lock_time;
	lo->max_entries[0] = max_unknown < 2 ? 2 : max_unknown;
	lo->max_entries[1] = max_known < 2 ? 2 : max_known;
	TAILQ_INIT(&lo->lru[0]);
	TAILQ_INIT(&lo->lru[1]);
	/* About two records a bucket when both rooms are full. */
	for (lo->nbuckets = 16; lo->nbuckets * 2 < (size_t)lo->max_entries[0] +
	    lo->max_entries[1]; lo->nbuckets *= 2)
		;
	lo->hash = xcalloc(lo->nbuckets, sizeof *lo->hash);
	for (i = 0; i < lo->nbuckets; i++)
		TAILQ_INIT(&lo->hash[i]);
	return (lo);
}

void
auth_lockout_on_evict(struct auth_lockout *lo,
    void (*cb)(const char *key, void *), void *arg)
{
	lo->evict = cb;
	lo->evict_arg = arg;
}

void
auth_lockout_key(const char *login, const char *addr, char *buf, size_t len)
{
	if (addr == NULL || *addr == '\0')
		snprintf(buf, len, "%s", login);
	else
		snprintf(buf, len, "%s@%s", login, addr);
}

/* The bucket of login at addr (FNV-1a of both). */
static struct auth_list *
auth_lockout_bucket(struct auth_lockout *lo, const char *login,
    const char *addr)
{
	const char	*p;
	uint32_t	 h = 2166136261u;

	for (p = login; *p != '\0'; p++)
		h = (h ^ (unsigned char)*p) * 16777619u;
	h = (h ^ '@') * 16777619u;
	for (p = addr; *p != '\0'; p++)
		h = (h ^ (unsigned char)*p) * 16777619u;
	return (&lo->hash[h & (lo->nbuckets - 1)]);
}

/* Put e in its bucket and its room, newest (head) or oldest (tail). */
static void
auth_lockout_link(struct auth_lockout *lo, struct auth_entry *e, int newest)
{
	TAILQ_INSERT_HEAD(auth_lockout_bucket(lo, e->login, e->addr), e,
	    chain);
	if (newest)
		TAILQ_INSERT_HEAD(&lo->lru[e->known], e, lru);
	else
		TAILQ_INSERT_TAIL(&lo->lru[e->known], e, lru);
	lo->n[e->known]++;
}

/* Forget e; one the caller stored is deleted there too (evict callback). */
static void
auth_lockout_remove(struct auth_lockout *lo, struct auth_entry *e,
    int tell)
{
	char	key[AUTH_KEY_MAX];

	if (tell && e->stored && lo->evict != NULL) {
		auth_lockout_key(e->login, e->addr, key, sizeof key);
		lo->evict(key, lo->evict_arg);
	}
	TAILQ_REMOVE(auth_lockout_bucket(lo, e->login, e->addr), e, chain);
	TAILQ_REMOVE(&lo->lru[e->known], e, lru);
	lo->n[e->known]--;
	free(e);
}

void
auth_lockout_free(struct auth_lockout *lo)
{
	struct auth_entry	*e;
	int			 k;

	if (lo == NULL)
		return;
	for (k = 0; k < 2; k++) {
		while ((e = TAILQ_FIRST(&lo->lru[k])) != NULL)
			auth_lockout_remove(lo, e, 0);
	}
	free(lo->hash);
	free(lo);
}

static struct auth_entry *
auth_lockout_find(struct auth_lockout *lo, const char *login,
    const char *addr)
{
	struct auth_entry	*e;

	if (addr == NULL)
		addr = "";
	TAILQ_FOREACH(e, auth_lockout_bucket(lo, login, addr), chain) {
		if (strcmp(e->login, login) == 0 && strcmp(e->addr, addr) == 0)
			return (e);
	}
	return (NULL);
}

/* Drop the failures that have left the window. */
static void
auth_lockout_age(struct auth_lockout *lo, struct auth_entry *e, time_t now)
{
	int	i, j;

	for (i = j = 0; i < e->nfails; i++) {
		if (now - e->fails[i] < lo->window)
			e->fails[j++] = e->fails[i];
	}
	e->nfails = j;
}

/*
 * Make room for one more record of the kind given. For made-up logins,
 * the one that failed longest ago goes, locked or not: a flood of
 * invented names only pushes out other invented names, and a real user's
 * records live in a room of their own. For real logins, the one that
 * failed longest ago among those not locked and not being checked, else
 * the lock nearest its end. Oldest is the tail of the room's list, so
 * this costs little however full the table is.
 */
static void
auth_lockout_room(struct auth_lockout *lo, int known, time_t now)
{
	struct auth_entry	*e, *victim = NULL;

	if (lo->n[known] < lo->max_entries[known])
		return;
	if (!known)
		victim = TAILQ_LAST(&lo->lru[0], auth_list);
	else {
		TAILQ_FOREACH_REVERSE(e, &lo->lru[1], auth_list, lru) {
			if (now >= e->locked_until && e->pending == 0) {
				victim = e;
				break;
			}
		}
		/* Every real record locked or being checked: the nearest end. */
		if (victim == NULL) {
			TAILQ_FOREACH(e, &lo->lru[1], lru) {
				if (victim == NULL ||
				    e->locked_until < victim->locked_until)
					victim = e;
			}
		}
	}
	if (victim != NULL)
		auth_lockout_remove(lo, victim, 1);
}

/* The record of login (at addr, or as a whole), made if need be. */
static struct auth_entry *
auth_lockout_get(struct auth_lockout *lo, const char *login,
    const char *addr, int known, time_t now)
{
	struct auth_entry	*e;

	if (addr == NULL)
		addr = "";
	if ((e = auth_lockout_find(lo, login, addr)) != NULL) {
		if (known && !e->known) {
			/* The login exists now: into the users' room. */
			TAILQ_REMOVE(&lo->lru[0], e, lru);
			lo->n[0]--;
			e->known = 1;
			TAILQ_INSERT_HEAD(&lo->lru[1], e, lru);
			lo->n[1]++;
		}
		return (e);
	}
	if (strlen(login) > AUTH_LOGIN_MAX || strlen(addr) > AUTH_ADDR_MAX)
		return (NULL);
	known = known != 0;
	auth_lockout_room(lo, known, now);
	e = xcalloc(1, sizeof *e);
	strlcpy(e->login, login, sizeof e->login);
	strlcpy(e->addr, addr, sizeof e->addr);
	e->known = known;
	e->last = now;
	auth_lockout_link(lo, e, 1);
	return (e);
}

/* Seconds e stays locked at now, 0 when it is not (or there is no e). */
static int
auth_lockout_left(struct auth_entry *e, time_t now)
{
	if (e == NULL || now >= e->locked_until)
		return (0);
	return ((int)(e->locked_until - now));
}

int
auth_lockout_check(struct auth_lockout *lo, const char *login,
    const char *addr, time_t now)
{
	int	a, l;

	a = auth_lockout_left(auth_lockout_find(lo, login, addr), now);
	l = auth_lockout_left(auth_lockout_find(lo, login, ""), now);
	return (a > l ? a : l);
}

/* One failure in e; returns the seconds e is locked for now, or 0. */
static int
auth_lockout_count_fail(struct auth_lockout *lo, struct auth_entry *e,
    int limit, time_t now)
{
	if (now < e->locked_until)
		return ((int)(e->locked_until - now));
	e->last = now;
	/* The newest failure: to the head of its room. */
	TAILQ_REMOVE(&lo->lru[e->known], e, lru);
	TAILQ_INSERT_HEAD(&lo->lru[e->known], e, lru);
	auth_lockout_age(lo, e, now);
	e->fails[e->nfails++] = now;
	if (e->nfails < limit)
		return (0);
	e->nfails = 0;
	e->locked_until = now + lo->lock_time;
	return (lo->lock_time);
}

int
auth_lockout_fail(struct auth_lockout *lo, const char *login,
    const char *addr, int known, time_t now)
{
	struct auth_entry	*a, *l;
	int			 la = 0, ll = 0;

	if (addr == NULL || *addr == '\0')
		addr = "unknown";
	/* Tries from an address already locked out count no further. */
	if ((la = auth_lockout_left(auth_lockout_find(lo, login, addr),
	    now)) > 0)
		return (la);
	if ((a = auth_lockout_get(lo, login, addr, known, now)) != NULL)
		la = auth_lockout_count_fail(lo, a, lo->failures, now);
	/* Re-found: making a room for one may not push out the other. */
	if ((l = auth_lockout_get(lo, login, "", known, now)) != NULL)
		ll = auth_lockout_count_fail(lo, l, lo->login_failures, now);
	if (a != NULL && auth_lockout_find(lo, login, addr) == NULL)
		la = 0;
	return (la > ll ? la : ll);
}

/* May one more attempt be checked on e, with those in flight? */
static int
auth_lockout_room_for(struct auth_lockout *lo, struct auth_entry *e,
    int limit, time_t now)
{
	if (e == NULL)
		return (1);
	auth_lockout_age(lo, e, now);
	return (e->nfails + e->pending < limit);
}

int
auth_lockout_admit(struct auth_lockout *lo, const char *login,
    const char *addr, int known, const char *password, size_t len,
    time_t now, int *left, char **cause)
{
	struct auth_entry	*a, *l;

	if (addr == NULL || *addr == '\0')
		addr = "unknown";
	*left = auth_lockout_check(lo, login, addr, now);
	if (*left > 0) {
		xasprintf(cause, "locked for %d s more", *left);
		return (AUTH_LOCKED);
	}
	if (auth_password_valid(password != NULL ? password : "",
	    password != NULL ? len : 0, cause) != 0) {
		*left = auth_lockout_fail(lo, login, addr, known, now);
		return (AUTH_REFUSED);
	}
	/*
	 * Attempts in flight count against what is left before the lock,
	 * so a burst cannot outrun it: past that, wait for their answers.
	 */
	if (!auth_lockout_room_for(lo, auth_lockout_find(lo, login, addr),
	    lo->failures, now) || !auth_lockout_room_for(lo,
	    auth_lockout_find(lo, login, ""), lo->login_failures, now)) {
		xasprintf(cause, "as many attempts are being checked as may "
		    "still fail before the lock");
		return (AUTH_BUSY);
	}
	if ((a = auth_lockout_get(lo, login, addr, known, now)) != NULL)
		a->pending++;
	if ((l = auth_lockout_get(lo, login, "", known, now)) != NULL)
		l->pending++;
	return (AUTH_CHECK);
}

int
auth_lockout_done(struct auth_lockout *lo, const char *login,
    const char *addr, int known, int ok, time_t now)
{
	struct auth_entry	*e;

	if (addr == NULL || *addr == '\0')
		addr = "unknown";
	/* A record forgotten meanwhile has no attempt to settle. */
	if ((e = auth_lockout_find(lo, login, addr)) != NULL &&
	    e->pending > 0)
		e->pending--;
	if ((e = auth_lockout_find(lo, login, "")) != NULL && e->pending > 0)
		e->pending--;
	if (ok)
		return (0);
	return (auth_lockout_fail(lo, login, addr, known, now));
}

/*
 * Forget e's failures and lock; the record stays while other attempts
 * on it are in flight. Returns whether the caller had stored it.
 */
static int
auth_lockout_forget(struct auth_lockout *lo, struct auth_entry *e)
{
	int	stored = e->stored;

	if (e->pending > 0) {
		e->nfails = 0;
		e->locked_until = 0;
		e->stored = 0;
	} else
		auth_lockout_remove(lo, e, 0);
	return (stored);
}

int
auth_lockout_clear(struct auth_lockout *lo, const char *login,
    const char *addr)
{
	struct auth_entry	*e;
	int			 stored = 0;

	if (addr == NULL || *addr == '\0')
		addr = "unknown";
	if ((e = auth_lockout_find(lo, login, addr)) != NULL)
		stored |= auth_lockout_forget(lo, e) ? AUTH_STORED_ADDR : 0;
	if ((e = auth_lockout_find(lo, login, "")) != NULL)
		stored |= auth_lockout_forget(lo, e) ? AUTH_STORED_LOGIN : 0;
	return (stored);
}

int
auth_lockout_count(struct auth_lockout *lo)
{
	return (lo->n[0] + lo->n[1]);
}

json_t *
auth_lockout_export(struct auth_lockout *lo, const char *login,
    const char *addr, time_t now)
{
	struct auth_entry	*e;
	json_t			*fails;
	int			 i;

	if ((e = auth_lockout_find(lo, login, addr)) == NULL)
		return (NULL);
	auth_lockout_age(lo, e, now);
	if (e->nfails == 0 && now >= e->locked_until) {
		e->stored = 0;
		return (NULL);
	}
	e->stored = 1;
	fails = json_array();
	for (i = 0; i < e->nfails; i++)
		json_array_append_new(fails, json_integer(e->fails[i]));
	return (json_pack("{s:o,s:I,s:b}", "fails", fails, "locked_until",
	    (json_int_t)e->locked_until, "known", e->known));
}

int
auth_lockout_import(struct auth_lockout *lo, const char *key,
    const json_t *j, time_t now)
{
	struct auth_entry	*e;
	char			 login[AUTH_LOGIN_MAX + 1];
	const char		*addr;
	json_t			*t;
	size_t			 i, n;
	int			 known, limit;

	if ((addr = strchr(key, '@')) != NULL) {
		n = addr - key;
		addr++;
	} else {
		n = strlen(key);
		addr = "";
	}
	if (n == 0 || n > AUTH_LOGIN_MAX || strlen(addr) > AUTH_ADDR_MAX ||
	    !json_is_object(j))
		return (0);
	memcpy(login, key, n);
	login[n] = '\0';
	if (auth_lockout_find(lo, login, addr) != NULL)
		return (0);
	/* Records from before "known" was kept were all real logins'. */
	t = json_object_get(j, "known");
	known = t == NULL || json_is_true(t);
	limit = *addr == '\0' ? lo->login_failures : lo->failures;
	e = xcalloc(1, sizeof *e);
	strlcpy(e->login, login, sizeof e->login);
	strlcpy(e->addr, addr, sizeof e->addr);
	e->known = known;
	e->stored = 1;
	json_array_foreach(json_object_get(j, "fails"), i, t) {
		/* Only past failures, as many as the policy counts. */
		if (e->nfails < limit - 1 && json_is_integer(t) &&
		    json_integer_value(t) <= now)
			e->fails[e->nfails++] = (time_t)json_integer_value(t);
	}
	t = json_object_get(j, "locked_until");
	if (json_is_integer(t) && json_integer_value(t) > now &&
	    json_integer_value(t) <= now + lo->lock_time)
		e->locked_until = (time_t)json_integer_value(t);
	auth_lockout_age(lo, e, now);
	e->last = e->nfails > 0 ? e->fails[e->nfails - 1] : now;
	if (e->nfails == 0 && e->locked_until == 0) {
		free(e);
		return (0);
	}
	auth_lockout_room(lo, known, now);
	/* Older than anything that fails from now on. */
	auth_lockout_link(lo, e, 0);
	return (1);
}
