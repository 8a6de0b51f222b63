/*
 * Office users' credentials: the login name rule, yescrypt hashes through
 * libxcrypt, a constant-time comparison, and the lockout counters that
 * both the portal and the RDP gateway go through (via user.auth).
 */
#include <crypt.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "auth.h"
#include "compat.h"
#include "xmalloc.h"

#define AUTH_FAILURES_MAX	16	/* the most a policy may ask for */

struct auth_entry {
	char			 login[AUTH_LOGIN_MAX + 1];
	time_t			 fails[AUTH_FAILURES_MAX];
	int			 nfails;
	time_t			 locked_until;
	time_t			 last;
	TAILQ_ENTRY(auth_entry)	 entry;
};

struct auth_lockout {
	int				 failures;
	int				 window;
	int				 lock_time;
	int				 max_entries;
	int				 n;
	TAILQ_HEAD(, auth_entry)	 entries;
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

struct auth_lockout *
auth_lockout_create(int failures, int window, int lock_time, int max_entries)
{
	struct auth_lockout	*lo;

	lo = xcalloc(1, sizeof *lo);
	if (failures < 1)
		failures = 1;
	if (failures > AUTH_FAILURES_MAX)
		failures = AUTH_FAILURES_MAX;
	lo->failures = failures;
	lo->window = window;
	lo->lock_time = lock_time;
	lo->max_entries = max_entries < 1 ? 1 : max_entries;
	TAILQ_INIT(&lo->entries);
	return (lo);
}

static void
auth_lockout_remove(struct auth_lockout *lo, struct auth_entry *e)
{
	TAILQ_REMOVE(&lo->entries, e, entry);
	lo->n--;
	free(e);
}

void
auth_lockout_free(struct auth_lockout *lo)
{
	struct auth_entry	*e;

	if (lo == NULL)
		return;
	while ((e = TAILQ_FIRST(&lo->entries)) != NULL)
		auth_lockout_remove(lo, e);
	free(lo);
}

static struct auth_entry *
auth_lockout_find(struct auth_lockout *lo, const char *login)
{
	struct auth_entry	*e;

	TAILQ_FOREACH(e, &lo->entries, entry) {
		if (strcmp(e->login, login) == 0)
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
 * Make room for one more login: forget the ones with nothing left to
 * remember, else the unlocked one that failed longest ago. A locked login
 * is never forgotten, so a flood of made-up names cannot unlock it.
 */
static int
auth_lockout_room(struct auth_lockout *lo, time_t now)
{
	struct auth_entry	*e, *e1, *oldest = NULL;

	if (lo->n < lo->max_entries)
		return (0);
	TAILQ_FOREACH_SAFE(e, &lo->entries, entry, e1) {
		auth_lockout_age(lo, e, now);
		if (e->nfails == 0 && now >= e->locked_until)
			auth_lockout_remove(lo, e);
	}
	if (lo->n < lo->max_entries)
		return (0);
	TAILQ_FOREACH(e, &lo->entries, entry) {
		if (now >= e->locked_until &&
		    (oldest == NULL || e->last < oldest->last))
			oldest = e;
	}
	if (oldest == NULL)
		return (-1);
	auth_lockout_remove(lo, oldest);
	return (0);
}

int
auth_lockout_check(struct auth_lockout *lo, const char *login, time_t now)
{
	struct auth_entry	*e;

	if ((e = auth_lockout_find(lo, login)) == NULL ||
	    now >= e->locked_until)
		return (0);
	return ((int)(e->locked_until - now));
}

int
auth_lockout_fail(struct auth_lockout *lo, const char *login, time_t now)
{
	struct auth_entry	*e;

	if ((e = auth_lockout_find(lo, login)) == NULL) {
		if (strlen(login) > AUTH_LOGIN_MAX ||
		    auth_lockout_room(lo, now) != 0)
			return (0);
		e = xcalloc(1, sizeof *e);
		strlcpy(e->login, login, sizeof e->login);
		TAILQ_INSERT_HEAD(&lo->entries, e, entry);
		lo->n++;
	}
	if (now < e->locked_until)
		return ((int)(e->locked_until - now));
	e->last = now;
	auth_lockout_age(lo, e, now);
	e->fails[e->nfails++] = now;
	if (e->nfails < lo->failures)
		return (0);
	e->nfails = 0;
	e->locked_until = now + lo->lock_time;
	return (lo->lock_time);
}

void
auth_lockout_clear(struct auth_lockout *lo, const char *login)
{
	struct auth_entry	*e;

	if ((e = auth_lockout_find(lo, login)) != NULL)
		auth_lockout_remove(lo, e);
}

int
auth_lockout_count(struct auth_lockout *lo)
{
	return (lo->n);
}

json_t *
auth_lockout_export(struct auth_lockout *lo, const char *login, time_t now)
{
	struct auth_entry	*e;
	json_t			*fails;
	int			 i;

	if ((e = auth_lockout_find(lo, login)) == NULL)
		return (NULL);
	auth_lockout_age(lo, e, now);
	if (e->nfails == 0 && now >= e->locked_until)
		return (NULL);
	fails = json_array();
	for (i = 0; i < e->nfails; i++)
		json_array_append_new(fails, json_integer(e->fails[i]));
	return (json_pack("{s:o,s:I}", "fails", fails, "locked_until",
	    (json_int_t)e->locked_until));
}

void
auth_lockout_import(struct auth_lockout *lo, const char *login,
    const json_t *j, time_t now)
{
	struct auth_entry	*e;
	json_t			*t;
	size_t			 i;

	if (strlen(login) > AUTH_LOGIN_MAX || !json_is_object(j) ||
	    auth_lockout_find(lo, login) != NULL ||
	    auth_lockout_room(lo, now) != 0)
		return;
	e = xcalloc(1, sizeof *e);
	strlcpy(e->login, login, sizeof e->login);
	json_array_foreach(json_object_get(j, "fails"), i, t) {
		/* Only past failures, as many as the policy counts. */
		if (e->nfails < lo->failures - 1 && json_is_integer(t) &&
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
		return;
	}
	TAILQ_INSERT_HEAD(&lo->entries, e, entry);
	lo->n++;
}
