/*
 * qmpd's cluster mode (issue 13): what a host needs to be one member of
 * a qdesk cluster on etcd. Single-host qmpd never reads any of this; a
 * cluster is opt-in with `qmpd --cluster FILE`.
 *
 * Declarations for qmpd/cluster*.c, one section per file (the header
 * rule of qmpd.h).
 */
#ifndef QDESK_QMPD_CLUSTER_H
#define QDESK_QMPD_CLUSTER_H

#include <jansson.h>

#include "compat.h"

#include "cluster-conf.h"

/*
 * cluster-listen.c: the mutual-TLS listener (qmpd --listen or the file's
 * "listen"), the admin protocol over TCP with the role from the client
 * certificate's CN (host:NAME, broker, admin:NAME). cluster_listen_role
 * (a ROLE_* of qmpd.h, ROLE_NONE with *why) and cluster_listen_parse
 * ("ADDR:PORT") are pure, for the unit test.
 */
struct sockaddr_storage;
int	 cluster_listen_start(const char *addr, char **cause);
void	 cluster_listen_stop(void);
int	 cluster_listen_role(const char *cn, char **why);
int	 cluster_listen_parse(const char *text, struct sockaddr_storage *,
	    int *sslen, char **cause);

/*
 * cluster.c: the etcd client on qmpd's loop and one watch on every key
 * under /qdesk/v1/, whose events go to the host view (hosts/, members/,
 * drain/) and to placement (vms/, placement/, stores/). Started by
 * qmpd.c when qmpd->cluster is set; cluster_init returns once this host
 * has joined, or fails start-up with a one-line cause (a name another
 * live qmpd holds, a clock that disagrees with the members').
 */
struct etcd;
extern struct etcd	*cluster_etcd;
int		 cluster_init(char **cause);
void		 cluster_close(void);
void		 cluster_load(void);
/* Counts full reads; each record seen in one carries its number. */
extern unsigned int	 cluster_gen;
/* "/qdesk/v1/" and the rest; the caller frees it. */
char		*cluster_key(const char *fmt, ...)
		    __attribute__((format(printf, 1, 2)));
/* This host's name (clocks: common/clock.h). */
const char	*cluster_name(void);
/* "2026-12-02T11:20:03.123Z" for logs that others' logs are held to. */
const char	*cluster_stamp(void);

/*
 * cluster-host.c: this host's record hosts/H under its lease (refreshed
 * every lease_ttl/3 and at each VM state change), members/H (no lease:
 * who was ever part of the cluster, so a dead host is still listed),
 * drain/H, and the view of every host that the watch keeps current.
 */
struct cluster_host {
	char		*name;
	json_t		*rec;		/* its hosts/ record; NULL when down */
	json_t		*member;	/* its members/ record */
	int		 draining;
	long long	 seen_ms;	/* mono: its record last written */
	long long	 down_ms;	/* mono: when its key went; 0 if up */
	unsigned int	 gen;		/* cluster_gen its record was seen */
	unsigned int	 drain_gen;	/* cluster_gen its drain/ was seen */
	TAILQ_ENTRY(cluster_host) entry;
};
TAILQ_HEAD(cluster_hosts, cluster_host);
extern struct cluster_hosts	cluster_hosts;
struct cluster_host *cluster_host_find(const char *name);
int		 cluster_host_up(const struct cluster_host *);
/* Is name in host's record list (running, starting)? */
int		 cluster_host_lists(const struct cluster_host *,
		    const char *list, const char *name);
void		 cluster_host_event(const char *key, json_t *kv, int put);
void		 cluster_host_sweep(unsigned int gen);
void		 cluster_host_join(void);
int		 cluster_host_joined(void);
/* Join checks on the initial view: NULL, or why this host may not join. */
char		*cluster_host_refuse(void);
/* cluster-cert.c: NULL, or why this host's certificate may not join
 * (not of etcd's cluster CA, or not CN host:NAME); kvs: the initial read. */
char		*cluster_cert_refuse(json_t *kvs);
/* Write this host's record again soon (a VM changed). */
void		 cluster_host_touch(void);
/* A start of name failed here (in the record for the requester); why
 * NULL: it started, forget the failure. */
void		 cluster_host_failed(const char *name, long long epoch,
		    const char *why);
json_t		*cluster_host_list(void);
void		 cluster_host_lost(const char *why);

/*
 * cluster-image.c: templates copied between hosts. images/T = {sha256,
 * size, format, kind, host}, published create-only by the first host
 * that hashed T; image.fetch T streams the file to a host that needs
 * it, which checks size and sum before it indexes the copy.
 */
typedef void	(*cluster_image_cb)(const char *cause, void *arg);
void		 cluster_image_event(const char *key, json_t *kv, int put);
void		 cluster_image_sweep(unsigned int gen);
void		 cluster_image_start(void);
void		 cluster_image_stop(void);
/* Can template name be fetched here (published, a host up that has it)? */
int		 cluster_image_gettable(const char *name);
int		 cluster_image_listable(const char *name, json_t *rec);
/* An image record's sha256 if it is of its file now (borrowed), or NULL. */
const char	*cluster_image_sum(json_t *rec);
void		 cluster_image_removed(const char *name);
/*
 * Have template name here: 1 if it is, -1 with *cause if it cannot come,
 * else 0 and cb fires once it came or failed (one fetch for all waiters).
 */
int		 cluster_image_need(const char *name, cluster_image_cb,
		    void *arg, char **cause);
struct cmd_req;
enum cmd_retval	 cluster_image_serve(struct cmd_req *);

/*
 * cluster-place.c: VM definitions (vms/VM) and their placement
 * (placement/VM = {"host","epoch","state"}, written only by etcd_cas),
 * as the watch keeps them; the choice of a host; this host acting on
 * what placement gives it. The accessors take NULL as no placement.
 */
#define CLUSTER_WAIT_S	120	/* a start or stop asked of another host */
struct cluster_place {
	char			*name;
	json_t			*def;	/* vms/ value: {"def","host",...} */
	int64_t			 def_rev;
	json_t			*pl;	/* placement/ value */
	int64_t			 pl_rev;
	unsigned int		 def_gen, pl_gen;	/* cluster_gen seen */
	TAILQ_ENTRY(cluster_place) entry;
};
TAILQ_HEAD(cluster_places, cluster_place);
extern struct cluster_places	cluster_places;
struct cluster_place *cluster_place_find(const char *name);
/* The host placement names, its epoch, running or not, this host's. */
const char	*cluster_place_at(const struct cluster_place *);
long long	 cluster_place_epoch(const struct cluster_place *);
int		 cluster_place_running(const struct cluster_place *);
int		 cluster_place_mine(const struct cluster_place *);
/* The vm.create arguments; the host it is pinned to or NULL. */
json_t		*cluster_place_def(const struct cluster_place *);
const char	*cluster_place_pin(const struct cluster_place *);
int		 cluster_place_movable(const struct cluster_place *);
/* Why a desktop that cannot move waits: "its disk ..." follows. */
const char	*cluster_place_stuck(const struct cluster_place *);
/* The path of shared store name (stores/NAME), or NULL. */
const char	*cluster_store_path(const char *name);
const char	*cluster_place_choose(struct cluster_place *,
		    const char *exclude, char **cause);
/* A placement value to write: host, next epoch, running or stopped. */
char		*cluster_place_value(struct cluster_place *, const char *host,
		    int running, const char *why);
/* An etcd_cas callback that logs; arg is an xstrdup'd VM name. */
void		 cluster_place_cas_log(void *arg, json_t *res,
		    const char *errclass, const char *cause);
void		 cluster_place_event(const char *key, json_t *kv, int put);
void		 cluster_place_sweep(unsigned int gen);
void		 cluster_place_reconcile(void);
void		 cluster_place_vm_event(const char *event, const char *vm,
		    json_t *fields, void *arg);
const char	*cluster_place_host(const char *vm);

/*
 * cluster-clone.c: a desktop's linked clone on a shared image store,
 * recorded in vms/VM's "clone" by the host that runs it, so that another
 * host with the store mounted adopts it on failover; the stale record of
 * a host it left goes, the file stays.
 */
struct vm;
int		 cluster_clone_host_has(json_t *hostrec, const char *store);
const char	*cluster_clone_store(const struct cluster_place *);
int		 cluster_clone_movable(const struct cluster_place *);
const char	*cluster_clone_stuck(const struct cluster_place *);
void		 cluster_clone_record(struct cluster_place *, struct vm *);
struct vm	*cluster_clone_create(struct cluster_place *, char **cause);
int		 cluster_clone_release(struct cluster_place *, struct vm *);
/* The shared stores (stores/) whose path this host sees: a new array. */
json_t		*cluster_stores_here(void);

/*
 * cluster-migrate.c: a live migration's placement. The target's
 * switchover swap (1: not a VM of the cluster, 0: cb(name, ok, why, arg)
 * follows, -1: cause), and the source's check before it resumes
 * (cb(name, mine, arg)).
 */
int		 cluster_migrate_switch(const char *name, const char *from,
		    void (*)(const char *, int, const char *, void *),
		    void *arg, char **cause);
void		 cluster_migrate_resume(const char *name,
		    void (*)(const char *, int, void *), void *arg);
void		 cluster_migrate_where(const char *name,
		    void (*)(const char *, const char *, const char *, void *),
		    void *);

/*
 * cluster-nic.c: vm nic-add and nic-rm of a desktop etcd defines write its
 * NICs' networks to vms/VM ("nets") by CAS (cluster_nic_cmd: -1 when the
 * local command should run). cluster_nic_sync keeps etcd and this host's
 * copy in step: the running host writes its own, a stopped copy takes
 * etcd's. cluster_nic_event hears vm.nics (vm-nic.c).
 */
struct cmd_req;
int		 cluster_nic_cmd(struct cmd_req *);
void		 cluster_nic_sync(struct cluster_place *);
void		 cluster_nic_sync_all(void);
void		 cluster_nic_event(const char *event, const char *vm,
		    json_t *fields, void *arg);
/* cluster-nic-plan.c, pure: what a copy changes to have etcd's NICs. */
int		 cluster_nic_plan(json_t *local, json_t *etcd, int *keep,
		    json_t **add);

/*
 * cluster-drain.c: host drain --live, here or asked of the host by its
 * listener (host.evacuate).
 */
struct cmd_req;
enum cmd_retval	 cluster_drain_live(struct cmd_req *, const char *name);
enum cmd_retval	 cluster_drain_evacuate(struct cmd_req *);

/*
 * cluster-failover.c: fence_delay after a host's lease went, the
 * desktops it ran that can run elsewhere are placed on another host.
 * cluster_failover_again: failover of hosts long down (a store came,
 * this host joined again).
 */
void		 cluster_failover_host_down(const char *host);
void		 cluster_failover_host_up(const char *host);
void		 cluster_failover_again(void);

/*
 * cluster-cmd.c: vm.create, start, stop, delete, show and list in
 * cluster mode (cluster_cmd: -1 when the local command should run); a
 * start or stop waits for the host's record, which cluster_cmd_recheck
 * looks at again.
 */
struct cmd_req;
int		 cluster_cmd(struct cmd_req *);
void		 cluster_cmd_recheck(void);
/* vm.start's placement of a VM defined in etcd, for the broker's start. */
int		 cluster_cmd_start(struct cmd_req *, const char *vm);

/*
 * cluster-desktop.c: office users' desktops in cluster mode. The broker's
 * start goes through placement like vm.start (-1: the local action is
 * right); a desktop not here answers with the host it is on, or is
 * placed by a start if it is the user's and nowhere yet. Assignments
 * are etcd's (userdb.h), so any host assigns a desktop etcd defines.
 */
struct vm;
int		 cluster_desktop_power(struct cmd_req *, struct vm *,
		    const char *action);
int		 cluster_desktop_elsewhere(struct cmd_req *, const char *vm);
void		 cluster_desktop_moved(const char *vm, const char *host);
int		 cluster_desktop_defined(const char *vm);
int		 cluster_desktop_stale(const struct vm *);
json_t		*cluster_desktop_json(const char *vm);

/*
 * cluster-pool.c: pools in cluster mode: pools/NAME and members vms/NAME-N
 * in etcd, a checkout is owners/VM created by CAS; every host resets and
 * stops the members it holds. cmd-pool.c calls these in a cluster.
 */
enum cmd_retval	 cluster_pool_create(struct cmd_req *, json_t *pool);
json_t		*cluster_pool_json(json_t *pool);
enum cmd_retval	 cluster_pool_acquire(struct cmd_req *, const char *dept);
enum cmd_retval	 cluster_pool_release(struct cmd_req *);
/* One etcd transaction (at most 128 operations) makes a pool's members. */
#define CLUSTER_POOL_MAX_SIZE	100
/* cluster-pool-admin.c: pool resize, rm and set, one transaction each. */
enum cmd_retval	 cluster_pool_resize(struct cmd_req *, json_t *pool,
		    int64_t size);
enum cmd_retval	 cluster_pool_rm(struct cmd_req *, json_t *pool);
enum cmd_retval	 cluster_pool_set(struct cmd_req *, json_t *pool);
void		 cluster_pool_member_put(json_t *cmp, json_t *ops,
		    json_t *pool, const char *name);
/* cluster-pool-prestart.c: keep a pool's prestart free members booted. */
void		 cluster_pool_prestart(void);
int		 cluster_pool_free_running(const char *pool);
void		 cluster_pool_event(const char *event, const char *vm,
		    json_t *fields, void *arg);
void		 cluster_pool_kick(void);
int		 cluster_pool_disposable(const struct cluster_place *);

/*
 * cluster-quorum.c: etcd without quorum does not fence. While renewals
 * fail, every etcd member is asked; proof that none can lead keeps the
 * desktops running past the lease's end (cluster_quorum_until: until
 * when they may run, given the lease's held_until) and refuses
 * placement with one line (cluster_quorum_refuse: 1, replied).
 */
struct etcd_keeper;
void		 cluster_quorum_start(void);
long long	 cluster_quorum_until(long long held);
int		 cluster_quorum_refuse(struct cmd_req *);
/* This host's lease keeper (cluster-host.c), NULL when not joined. */
struct etcd_keeper *cluster_host_keeper(void);

/*
 * cluster-fence.c: self-fencing. When this host's lease is lost (or was
 * never renewed in time after a restart), every local desktop is killed
 * at once, with a timestamp in the log, before any other host may start
 * them (they wait for the lease to expire and fence_delay more).
 */
void		 cluster_fence(const char *why);
void		 cluster_fence_arm(int seconds);
void		 cluster_fence_disarm(void);
int		 cluster_fencing(void);
/* The watchdog: the lease holds until then (CLOCK_MONOTONIC ms). */
void		 cluster_fence_watchdog(long long held_until);

#endif
