/*
 * qmpd: the root daemon. One libevent loop; the only other threads hash
 * passwords (auth-pool.c) and touch nothing but their own jobs. This
 * header holds the structures shared between the daemon's files, as
 * tmux.h does.
 *
 * Headers follow files, one rule for all of qmpd/: a file's declarations
 * go in the header its name starts with (vm.h for vm.c and every vm-*.c;
 * img.h for img.c and img-job.c; net.h, pool.h, proc.h, qmp.h, auth.h
 * for their file), and those of every other file here; each in a section
 * headed by the file's name.
 */
#ifndef QDESK_QMPD_H
#define QDESK_QMPD_H

#include <sys/types.h>

#include <stdarg.h>
#include <time.h>

#include <event2/event.h>
#include <jansson.h>

#include "compat.h"
#include "db.h"
#include "proto.h"

struct qmp;
struct cluster_conf;

/* qmpd.c: the daemon's global state. */
struct qmpd {
	struct event_base	*base;
	char			*state_dir;
	char			*socket_path;
	struct db		*db;
	time_t			 started;
	int			 kvm_ok;	/* /dev/kvm can create a VM */

	/* QEMU runs as a uid of its own per VM (vm-uid.c): "uids A-B". */
	char			*vm_user;
	uid_t			 vm_uid;
	gid_t			 vm_gid;
	gid_t			*vm_groups;
	int			 vm_ngroups;

	/* The broker's user, for the "broker" role; -1 when none. */
	uid_t			 broker_uid;
	gid_t			 admin_gid;	/* group "qdesk"; -1 if none */

	const char		*qemu_binary;
	int			 foreground;
	/*
	 * SIGTERM or SIGINT came: a loop run before the main one (the
	 * cluster join's) ends too, and the main one is not entered; a
	 * loopbreak alone is spent on whichever loop runs at that moment.
	 */
	int			 exiting;

	/* qmpd --cluster FILE (cluster.h); NULL for a single host. */
	struct cluster_conf	*cluster;
};
extern struct qmpd	*qmpd;

/*
 * Roles, from SO_PEERCRED or a cluster client certificate (ROLE_HOST:
 * another host, for host.* and migrate.*). A command names the least
 * role it needs.
 */
enum role {
	ROLE_NONE = 0,
	ROLE_BROKER = 1,
	ROLE_HOST = 2,
	ROLE_ADMIN = 3
};

/* server.c: the admin socket, its clients and event subscribers. */
struct client;
struct bufferevent;
int	 server_listen(const char *path, char **cause);
struct client *server_client_new(struct bufferevent *, enum role,
	    const char *remote);
void	 server_close(void);
void	 server_send_line(struct client *, const char *line);
int	 server_send_line_fd(struct client *, const char *line, int fd);
void	 server_subscribe(struct client *, const char *vm);
void	 server_event(const char *event, const char *vm, json_t *fields,
	    void *arg);
enum role client_role(const struct client *);
uid_t	 client_uid(const struct client *);
const char *client_name(const struct client *);
struct cmd_req;
void	 client_req_add(struct client *, struct cmd_req *);
void	 client_req_remove(struct client *, struct cmd_req *);

/*
 * notify.c: qmpd's events (vm.state, vm.spice, desktop.assigned, ...) and
 * the listeners that hear them, registered at start (qmpd.c).
 */
typedef void	(*notify_cb)(const char *event, const char *vm,
		    json_t *fields, void *arg);
void	 notify_listen(notify_cb, void *arg);
void	 notify_emit(const char *event, const char *vm, json_t *fields);
/* A table of handlers by event name, kept sorted (notify_dispatch). */
struct notify_handler {
	const char	*event;
	void		(*fn)(const char *vm, json_t *fields);
};
void	 notify_dispatch(const struct notify_handler *, size_t n,
	    const char *event, const char *vm, json_t *fields);

/*
 * done.c: a model's completion callback, called exactly once: with a
 * result (stolen) and errclass NULL, or with errclass and cause
 * (borrowed) and result NULL. cmd_done (cmd.c) answers a request.
 */
typedef void	(*done_cb)(void *arg, json_t *result, const char *errclass,
		    const char *cause);
void	 done_fail(done_cb, void *arg, const char *errclass, const char *fmt,
	    ...) __attribute__((format(printf, 4, 5)));
void	 done_ok(done_cb, void *arg, json_t *result);
/* Progress of slow work (stolen): {"what", "done", "total"}. */
typedef void	(*progress_cb)(void *arg, json_t *progress);

/* cmd.c: the command table and requests in flight. */
enum cmd_retval {
	CMD_RETURN_DONE,	/* the exec function answered already */
	CMD_RETURN_WAIT		/* it will answer later, from a callback */
};

enum cmd_argtype {
	ARG_STR,
	ARG_INT,
	ARG_BOOL,
	ARG_ARRAY,
	ARG_OBJECT
};

struct cmd_arg {
	const char	*name;
	enum cmd_argtype type;
	int		 required;
};
/* The arguments of every command that takes only a "name" (cmd.c). */
extern const struct cmd_arg	cmd_name_args[];
/*
 * The definition's device fields (vm-def-dev.c owns them), which vm.create
 * and pool.create both take: rows for an argument table.
 */
#define CMD_ARGS_VM_DEV							\
	{ "firmware", ARG_STR, 0 },		/* vm-firmware.c */	\
	{ "tpm", ARG_BOOL, 0 },			/* vm-tpm.c */		\
	{ "video", ARG_STR, 0 },					\
	{ "heads", ARG_INT, 0 },					\
	{ "audio", ARG_BOOL, 0 },					\
	{ "usbredir", ARG_INT, 0 },					\
	{ "balloon", ARG_BOOL, 0 },					\
	{ "os", ARG_STR, 0 },						\
	{ "agent", ARG_BOOL, 0 },		/* vm-agent.c */	\
	{ "clipboard", ARG_BOOL, 0 }

struct cmd_req;

struct cmd_entry {
	const char		*name;
	const struct cmd_arg	*args;	/* NULL-name terminated */
	enum role		 role;
	enum cmd_retval		(*exec)(struct cmd_req *);
};

/* A request in flight. The client may go away before the answer. */
struct cmd_req {
	struct client		*client;	/* NULL once it has gone */
	json_t			*id;
	const struct cmd_entry	*entry;
	json_t			*args;
	/*
	 * Told once how the request ended (errclass NULL: a reply), just
	 * before it is freed: a model that must undo on failure (a pool's
	 * claim when the start it led to failed) without owning the answer.
	 */
	void			(*ended)(void *arg, const char *errclass,
				    const char *desc);
	void			*ended_arg;
	TAILQ_ENTRY(cmd_req)	 entry_client;
};

void	 cmd_dispatch(struct client *, const char *line, size_t len);
void	 cmd_reply(struct cmd_req *, json_t *ret);	/* steals ret */
void	 cmd_error(struct cmd_req *, const char *errclass, const char *fmt,
	    ...) __attribute__((format(printf, 3, 4)));
void	 cmd_fail(struct cmd_req *, const char *errclass, char *cause);
					/* frees cause */
void	 cmd_progress(struct cmd_req *, json_t *progress); /* steals */
void	 cmd_reply_fd(struct cmd_req *, json_t *ret, int fd); /* keeps fd */
void	 cmd_req_detach(struct cmd_req *);
uid_t	 cmd_req_uid(const struct cmd_req *);
void	 cmd_done(void *req, json_t *result, const char *errclass,
	    const char *cause);
void	 cmd_done_progress(void *req, json_t *progress);
const char *cmd_arg_str(struct cmd_req *, const char *name, const char *dflt);
json_int_t cmd_arg_int(struct cmd_req *, const char *name, json_int_t dflt);
int	 cmd_arg_bool(struct cmd_req *, const char *name, int dflt);

/* The command families (cmd-*.c), each a table of entries for cmd.c. */
extern const struct cmd_entry	cmd_server_entries[];	/* cmd-server.c */
extern const struct cmd_entry	cmd_vm_entries[];	/* cmd-vm.c */
extern const struct cmd_entry	cmd_vm_disk_entries[];	/* cmd-vm-disk.c */
extern const struct cmd_entry	cmd_vm_firmware_entries[]; /* cmd-vm-firmware.c */
extern const struct cmd_entry	cmd_image_entries[];	/* cmd-image.c */
extern const struct cmd_entry	cmd_net_entries[];	/* cmd-net.c */
extern const struct cmd_entry	cmd_user_entries[];	/* cmd-user.c */
extern const struct cmd_entry	cmd_user_import_entries[]; /* cmd-user-import.c */
extern const struct cmd_entry	cmd_broker_entries[];	/* cmd-broker.c */
extern const struct cmd_entry	cmd_session_entries[];	/* cmd-session.c */
extern const struct cmd_entry	cmd_pool_entries[];	/* cmd-pool.c */
extern const struct cmd_entry	cmd_vm_migrate_entries[]; /* cmd-vm-migrate.c */
extern const struct cmd_entry	cmd_host_entries[];	/* cmd-host.c */

/*
 * cmd-vm.c: the VM named by the "name" argument (or NotFound answered);
 * a VNC connection's fd as the answer (vm.vnc, desktop.vnc).
 */
struct vm;
struct vm *cmd_vm_get(struct cmd_req *);
enum cmd_retval cmd_vm_vnc_reply(struct vm *, struct cmd_req *);

/*
 * cmd-broker.c: revocation. End login's open sessions at once, on vm or
 * (vm NULL) on all of theirs: SPICE clients are disconnected (a fresh,
 * expired password), RDP sessions learn it from desktop.revoked. why goes
 * into the session records ("revoked: why").
 */
void	 cmd_broker_revoke(const char *login, const char *vm, const char *why);

/* user.c: office users, departments, and the desktops assigned to them. */
struct vm;
json_t	*user_get(const char *login);
const char *user_owner(const struct vm *);
int	 user_set_owner(struct vm *, const char *login, char **cause);
json_t	*user_public(json_t *rec);
json_t	*user_desktops(const char *login);
json_t	*user_match(const char *table, const char *field, const char *value,
	    char **cause);
int	 user_dept_within(const char *dept, const char *want);

/* session.c: SPICE sessions, a listener of qmpd's events. */
void	 session_event(const char *event, const char *vm, json_t *fields,
	    void *arg);
/* The next disconnects of vm's SPICE clients end for this reason. */
void	 session_end_reason(const char *vm, const char *why);
void	 session_ticket(const char *vm, const char *login, uid_t uid,
	    long long at, long long expires);
json_t	*session_list(const char *vm, const char **errclass, char **cause);
int	 session_via(const char *vm, const char *via, const char *client);

/*
 * spice-via.c: the proxy ticket behind each tunnel, for migrations. A
 * migration names the viewer's ticket with this prefix as the host:
 * the broker's proxy (broker/proxy.c) knows it by the same prefix.
 */
#define SPICE_VIA_MIGRATE	"mig-"
struct vm;
void	 spice_via_set(struct vm *, const char *via, const char *ticket);
const char *spice_via_ticket(struct vm *);
int	 spice_via_expect(const char *name, const char *ticket, char **cause);
void	 spice_via_linked_now(struct vm *, const char *host, const char *port);
void	 spice_via_settle(struct vm *);
json_t	*spice_via_record(const struct vm *);
void	 spice_via_restore(struct vm *, json_t *rec);
void	 spice_via_query(struct vm *);

/*
 * test-hook.c: die here when QDESK_TEST_HOOK=POINT:VM (test builds);
 * test_hook_fail: 1 when it names POINT:NAME, for a step to fail.
 */
void	 test_hook(const char *point, const char *vm);
int	 test_hook_armed(const char *point, const char *vm);
int	 test_hook_fail(const char *point, const char *name);

/* boot-queue.c: at most boot_queue_cap VMs starting at once (0: no cap). */
extern int	 boot_queue_cap;
int	 boot_queue_start(struct vm *, int timeout, done_cb, void *arg,
	    char **cause);
void	 boot_queue_kick(void);
void	 boot_queue_event(const char *event, const char *vm, json_t *fields,
	    void *arg);
void	 boot_queue_autostart(void);
void	 boot_queue_cancel(const char *name, const char *why);
int	 boot_queue_booting(void);
int	 boot_queue_waiting(const char *name);
int	 boot_queue_length(void);
struct metrics_hist;
extern struct metrics_hist boot_queue_wait_hist;	/* seconds waited */

/*
 * spice-tls.c: the host's SPICE CA (made at first start, its key root's
 * alone) in DIR/spice-tls; each VM's own key and certificate, issued at
 * start into its x509-dir; the CA's PEM text and a VM's subject for
 * viewers.
 */
int		 spice_tls_init(char **cause);
const char	*spice_tls_dir(void);
const char	*spice_tls_ca(void);
char		*spice_tls_ca_file(void);
const char	*spice_tls_subject(const struct vm *);
const char	*spice_tls_issue(struct vm *, char **cause);
/* text as dfd/name, made afresh, owned by uid and readable by it alone. */
int		 spice_tls_put(int dfd, const char *name, const char *text,
		    uid_t uid, char **cause);

/*
 * metrics.c: qmpd --metrics, Prometheus text over HTTP on the loop; the
 * counters other files bump.
 */
extern unsigned long long	metrics_tickets;	/* session.c */
extern unsigned long long	metrics_lockouts;	/* cmd-broker.c */
extern unsigned long long	metrics_logins;		/* cmd-broker.c */
extern unsigned long long	metrics_login_failures;	/* cmd-broker.c */
int	 metrics_check(const char *addr, char **cause);
int	 metrics_listen(const char *addr, char **cause);
void	 metrics_close(void);
void	 metrics_event(const char *event, const char *vm, json_t *fields,
	    void *arg);

/* eventlog.c: every event as a key=value log line. */
void	 eventlog_event(const char *event, const char *vm, json_t *fields,
	    void *arg);

/* accel.c */
int	 accel_kvm_usable(void);

#endif
