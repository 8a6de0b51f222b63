/*
 * Desktop pools (pool.c, cmd-pool.c) and the boot queue (boot-queue.c).
 */
#ifndef QDESK_POOL_H
#define QDESK_POOL_H

#include <jansson.h>

#include "qmpd.h"

struct cmd_req;
struct vm;

/* boot-queue.c: at most boot_queue_cap VMs starting at once (0: no cap). */
extern int	 boot_queue_cap;
int		 boot_queue_start(struct vm *, struct cmd_req *, int timeout,
		     char **cause);
void		 boot_queue_kick(void);
void		 boot_queue_event(const char *event, const char *vm,
		     json_t *fields, void *arg);
void		 boot_queue_autostart(void);
void		 boot_queue_cancel(const char *name, const char *why);
int		 boot_queue_booting(void);
int		 boot_queue_waiting(const char *name);
int		 boot_queue_length(void);

/* pool.c: the engine, fed by qmpd's events. */
void		 pool_init(void);
void		 pool_event(const char *event, const char *vm, json_t *fields,
		     void *arg);
void		 pool_kick(void);
const char	*pool_of(const struct vm *);
json_t		*pool_get(const char *name);
int		 pool_desktop_free(const struct vm *);
int		 pool_desktop_add(json_t *pool, char **cause);
void		 pool_return(struct vm *, const char *why);
json_t		*pool_to_json(json_t *pool);
int		 pool_user_may(json_t *pool, const char *dept);

/* cmd-pool.c */
extern const struct cmd_entry	cmd_pool_entries[];

#endif
