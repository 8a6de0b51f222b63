/*
 * What the source's vm-migrate*.c files share among themselves and no
 * one else (the rest of qmpd uses vm.h): the state machine's steps, one
 * per file, call each other through these.
 */
#ifndef VM_MIGRATE_H
#define VM_MIGRATE_H

#include <event2/event.h>

#define VM_MIG_POLL_MS		250
#define VM_MIG_DOWNTIME_MS	100	/* Proxmox's start; QEMU's own is 300 */
#define VM_MIG_TIMEOUT		300	/* seconds: --timeout's default, counted
					   from the moment RAM migration starts */
/*
 * The steps before it have bounds of their own, so that a slow
 * preparation does not eat --timeout and a dead target still fails:
 * preparing may fetch a template and start QEMU on a loaded host; the
 * disk mirror fails only when its copy stops moving.
 */
#define VM_MIG_PREPARE_S	300	/* migrate.prepare answered */
#define VM_MIG_STALL_S		120	/* the mirror's offset unchanged */
#define VM_MIG_WHY_S		10	/* the target says why it failed */
#define VM_MIG_CANCEL_S		10	/* QEMU's migrate_cancel ends */
#define VM_MIG_BANDWIDTH	(4ULL << 30)	/* bytes/s: QEMU's 32 MiB/s
						   default would crawl */
#define VM_MIG_QUIT_MS		5000	/* after quit, SIGKILL */
#define VM_MIG_SPICE_MS		5000	/* a viewer's switch, before quit */
#define VM_MIG_JOB		"mig-disk0"
#define VM_MIG_NBD_NODE		"mig-nbd0"

struct peer;
struct qmp;

/* vm-migrate-status.c */
void	vm_migrate_set(struct vm *, enum vm_mig_state);
void	vm_migrate_report(struct vm *);
void	vm_migrate_info(struct vm_mig *, json_t *ret);
void	vm_migrate_poll_arm(struct vm *);
void	vm_migrate_poll_cb(evutil_socket_t, short, void *);

/* vm-migrate-fail.c */
void	vm_migrate_fail(struct vm *, enum vm_mig_state, const char *, ...)
	    __attribute__((format(printf, 3, 4)));
void	vm_migrate_step_done(struct qmp *, json_t *, const char *,
	    const char *, void *);
void	vm_migrate_peer_closed(struct peer *, const char *, void *);
void	vm_migrate_timeout_cb(evutil_socket_t, short, void *);
void	vm_migrate_timer_arm(struct vm *, int);
void	vm_migrate_cancel(struct vm *);
void	vm_migrate_why(struct vm *, const char *);

/* vm-migrate-qmp.c */
void	vm_migrate_ram(struct vm *);
json_int_t vm_migrate_bandwidth(struct vm_mig *);

/* vm-migrate-mirror.c */
void	vm_migrate_mirror(struct vm *);

#endif
