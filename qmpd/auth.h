/*
 * Authentication of office users: login names, yescrypt password hashes
 * (libxcrypt) and the failed-login lockout. Pure: no I/O, no event loop,
 * the clock is an argument, so the unit test drives it directly. The one
 * exception is the password pool (auth-pool.c), which runs auth_verify
 * on worker threads and answers on the loop.
 */
#ifndef QDESK_AUTH_H
#define QDESK_AUTH_H

#include <time.h>

#include <jansson.h>

#define AUTH_LOGIN_MAX		63
#define AUTH_PASSWORD_MAX	256	/* bytes */

/* The lockout policy: this many failures in WINDOW s lock for LOCK s. */
#define AUTH_LOCK_FAILURES	5
#define AUTH_LOCK_WINDOW	600
#define AUTH_LOCK_TIME		300
#define AUTH_LOCK_ENTRIES	4096	/* logins tracked at once */

/* [a-z0-9][a-z0-9._-]*, at most 63: a Unix-like login. */
int	 auth_login_valid(const char *login, char **cause);
/* Is a password acceptable to store? (not empty, not too long) */
int	 auth_password_valid(const char *password, size_t len, char **cause);

/* A new yescrypt hash of password, or NULL with *cause. */
char	*auth_hash(const char *password, char **cause);
/*
 * Does password match hash? A NULL hash (no such user, no password) still
 * costs one hash so the answer takes as long as a real one. Returns 1 or 0.
 */
int	 auth_verify(const char *password, const char *hash);

/*
 * Worker threads for auth_verify, so a hash never runs on the loop: jobs
 * wait in a bounded queue, and cb(ok, arg) runs on base's loop once the
 * verdict is in. A full queue refuses at once instead of waiting.
 */
struct event_base;
struct auth_pool;
struct auth_pool *auth_pool_create(struct event_base *, int nthreads,
	    int queue_max, char **cause);
/* Stops the workers; callbacks of unfinished jobs never run. */
void	 auth_pool_free(struct auth_pool *);
/* Queue a check (password and hash are copied); -1 with *cause if full. */
int	 auth_pool_verify(struct auth_pool *, const char *password,
	    const char *hash, void (*cb)(int, void *), void *arg,
	    char **cause);
/* Jobs queued, running or finished and not yet called back. */
int	 auth_pool_queued(struct auth_pool *);
/* CPUs this process may run on: the number of workers to start. */
int	 auth_pool_cpus(void);

/*
 * Failed-login counters, per login, in memory; a caller that wants them
 * to outlive the process stores what auth_lockout_export gives after
 * each change and hands it back to auth_lockout_import at start.
 */
struct auth_lockout;
struct auth_lockout *auth_lockout_create(int failures, int window,
	    int lock_time, int max_entries);
void	 auth_lockout_free(struct auth_lockout *);
/* Seconds the login stays locked at now, 0 when it is not. */
int	 auth_lockout_check(struct auth_lockout *, const char *login,
	    time_t now);
/* Count a failure; returns the seconds it is now locked for, or 0. */
int	 auth_lockout_fail(struct auth_lockout *, const char *login,
	    time_t now);
/* A good login forgets the failures. */
void	 auth_lockout_clear(struct auth_lockout *, const char *login);
int	 auth_lockout_count(struct auth_lockout *);
/* {"fails": [t, ...], "locked_until": t} of login, NULL if none to keep. */
json_t	*auth_lockout_export(struct auth_lockout *, const char *login,
	    time_t now);
/* Put back what auth_lockout_export gave; stale parts are dropped. */
void	 auth_lockout_import(struct auth_lockout *, const char *login,
	    const json_t *, time_t now);

#endif
