/*
 * Desktop pools (pool.c): desktops that are linked clones of a template,
 * handed out and taken back, prestarted, acted on at disconnect.
 */
#ifndef QDESK_POOL_H
#define QDESK_POOL_H

#include <jansson.h>

#include "qmpd.h"

struct cmd_req;
struct vm;

/* pool.c: the engine, fed by qmpd's events. */
void		 pool_init(void);
void		 pool_event(const char *event, const char *vm, json_t *fields,
		     void *arg);
void		 pool_kick(void);
const char	*pool_of(const struct vm *);
json_t		*pool_get(const char *name);
int		 pool_desktop_free(const struct vm *);
int		 pool_desktop_add(json_t *pool, char **cause);
json_t		*pool_desktop_args(json_t *pool, const char *name);
void		 pool_return(struct vm *, const char *why);
json_t		*pool_to_json(json_t *pool);
int		 pool_user_may(json_t *pool, const char *dept);
int		 pool_has(const struct vm *, const char *pool);
int		 pool_doom(const char *pool, int max, int only_free);
int		 pool_give(struct vm *, const char *login, char **cause);

/* pool-show.c: pool show's answer, a copy of the pool's record with its
 * desktops (taken: members with "free", "owner", "state") and their
 * counts. */
json_t		*pool_show_json(json_t *pool, json_t *desktops);

/* pool-disconnect.c: the pool's on_disconnect, here and in a cluster. */
void		 pool_disconnect_ended(const char *vm, json_t *fields);

/* desktop.acquire's choice (pool_pick). */
struct pool_pick {
	const char	*want;		/* a pool asked for, or NULL */
	const char	*login;
	const char	*dept;
	int		 floating;	/* this pass: floating pools */
	struct vm	*mine;		/* the user's desktop in a pool */
	struct vm	*best;		/* a free one */
	int		 best_rank;
	int		 pools;		/* pools the user may use */
};
int		 pool_pick(struct pool_pick *, const char *want,
		     const char *login, const char *dept, char **cause);

#endif
