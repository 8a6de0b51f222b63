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

/*
 * The lockout policy: this many failures in WINDOW s from one client
 * address lock that login from that address for LOCK s; the login as a
 * whole is locked only after LOGIN_FAILURES failures in the window, which
 * takes at least LOGIN_FAILURES / FAILURES addresses. Made-up logins have
 * a room of their own (ENTRIES records), so they cannot push out a real
 * user's records; real users' records are bounded by KNOWN_ENTRIES.
 */
#define AUTH_LOCK_FAILURES	5
#define AUTH_LOCK_LOGIN_FAILURES 40
#define AUTH_LOCK_WINDOW	600
#define AUTH_LOCK_TIME		300
#define AUTH_LOCK_ENTRIES	4096
#define AUTH_LOCK_KNOWN_ENTRIES	16384

#define AUTH_ADDR_MAX		63	/* a client address, without port */
#define AUTH_KEY_MAX		(AUTH_LOGIN_MAX + 1 + AUTH_ADDR_MAX + 1)

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
 * The client address in what the broker sends as "client": "192.0.2.1",
 * "RDP 192.0.2.1:3390", "[2001:db8::1]:443" give the address alone (a port
 * would make every connection a new address). "unknown" when there is
 * none or it is too long (then -1).
 */
int	 auth_addr_normalize(const char *client, char *buf, size_t len);

/*
 * Failed-login counters in memory, per (login, client address) and per
 * login; a caller that wants them to outlive the process stores what
 * auth_lockout_export gives after each failure (keyed by
 * auth_lockout_key), deletes what the evict callback names, and hands the
 * records back to auth_lockout_import at start. "known" says whether the
 * login exists.
 */
struct auth_lockout;
struct auth_lockout *auth_lockout_create(int failures, int login_failures,
	    int window, int lock_time, int max_unknown, int max_known);
void	 auth_lockout_free(struct auth_lockout *);
/* cb(key) for each stored record forgotten by the table itself. */
void	 auth_lockout_on_evict(struct auth_lockout *,
	    void (*cb)(const char *key, void *), void *arg);
/* "login@addr", or "login" for the login as a whole (addr NULL or ""). */
void	 auth_lockout_key(const char *login, const char *addr, char *buf,
	    size_t len);
/* Seconds login stays locked from addr at now, 0 when it is not. */
int	 auth_lockout_check(struct auth_lockout *, const char *login,
	    const char *addr, time_t now);
/* Count a failure from addr; returns the seconds it is now locked, or 0. */
int	 auth_lockout_fail(struct auth_lockout *, const char *login,
	    const char *addr, int known, time_t now);

/*
 * An attempt as it arrives, before any hash. AUTH_LOCKED: refuse, *left
 * seconds to wait. AUTH_REFUSED: an unusable password (empty, too long,
 * NUL), refused at once and counted as a failure. AUTH_BUSY: as many
 * attempts are in flight as may still fail before the lock; refused, not
 * counted (a burst cannot outrun the lock). AUTH_CHECK: hash it, then
 * auth_lockout_done with the verdict.
 */
#define AUTH_CHECK	0
#define AUTH_LOCKED	1
#define AUTH_REFUSED	2
#define AUTH_BUSY	3
int	 auth_lockout_admit(struct auth_lockout *, const char *login,
	    const char *addr, int known, const char *password, size_t len,
	    time_t now, int *left, char **cause);
/*
 * The verdict of an attempt admitted with AUTH_CHECK: a failure is
 * counted (returns the seconds locked now, or 0); a good one is not (the
 * caller then calls auth_lockout_clear).
 */
int	 auth_lockout_done(struct auth_lockout *, const char *login,
	    const char *addr, int known, int ok, time_t now);
/*
 * A good login forgets the failures of login from addr and of the login
 * as a whole; returns which of them had been exported (to delete).
 */
#define AUTH_STORED_ADDR	1
#define AUTH_STORED_LOGIN	2
int	 auth_lockout_clear(struct auth_lockout *, const char *login,
	    const char *addr);
int	 auth_lockout_count(struct auth_lockout *);
/*
 * {"fails": [t, ...], "locked_until": t, "known": b} of login from addr
 * (NULL: as a whole), NULL if none to keep; marks it stored.
 */
json_t	*auth_lockout_export(struct auth_lockout *, const char *login,
	    const char *addr, time_t now);
/*
 * Put back what auth_lockout_export gave under key; stale parts are
 * dropped. 1 if kept, 0 if there was nothing left to keep.
 */
int	 auth_lockout_import(struct auth_lockout *, const char *key,
	    const json_t *, time_t now);

#endif
