/*
 * Virtual machines: the definition (what the admin asked for, in LMDB),
 * and the runtime (the QEMU process, its QMP connection, its state).
 */
#ifndef QDESK_VM_H
#define QDESK_VM_H

#include <sys/types.h>

#include <jansson.h>

#include "compat.h"

#define VM_NAME_MAX	64
#define VM_UUID_LEN	37

enum vm_state {
	VM_STOPPED,
	VM_STARTING,
	VM_RUNNING,
	VM_PAUSED,
	VM_STOPPING,
	VM_CRASHED
};

enum vm_restart {
	VM_RESTART_NO,
	VM_RESTART_ON_CRASH,
	VM_RESTART_ALWAYS
};

/* The definition: pure data, JSON in LMDB, the argv builder's input. */
struct vm_def {
	char		 name[VM_NAME_MAX];
	char		 uuid[VM_UUID_LEN];
	int		 memory;		/* MiB */
	int		 vcpus;
	char		 accel[8];		/* auto kvm tcg */
	char		 machine[8];		/* pc q35 */
	char		 cpu[64];		/* QEMU's -cpu; "" = default */
	char		*kernel;
	char		*initrd;
	char		*append;
	char		*disk;			/* a plain file */
	char		*disk_format;		/* raw qcow2 */
	char		 display[8];		/* spice none */
	char		 listen[64];
	int		 spice_port;		/* 0 until allocated */
	enum vm_restart	 restart;
	int		 autostart;
	long long	 created;
	json_t		*extra;			/* fields of later issues */
};

/*
 * A disk from the image store: its chain from the top down to the base,
 * each file opened by qmpd (read-only below the top) for QEMU to inherit.
 */
struct vm_disk_link {
	int		 fd;
	char		 format[8];	/* qcow2 raw */
	char		 image[64];	/* image name, the fd set's opaque */
};
struct vm_disk {
	u_int			 n;
	struct vm_disk_link	*links;
};

/* Paths and fds the argv builder needs that are not in the definition. */
struct vm_runtime_paths {
	const char	*dir;		/* DIR/vms/NAME */
	int		 qmp_fd;	/* listening socket QEMU inherits */
	int		 disk_fd;	/* the disk, opened by qmpd; -1 none */
	const char	*accel;		/* resolved: kvm or tcg */
	const struct vm_disk *image;	/* the image-store disk, or NULL */
	const int	*tap_fds;	/* one per NIC of def "nics", in order */
	int		 ntap_fds;
	const char	*spice_tls_dir;	/* x509-dir; NULL: plain SPICE */
};

struct qmp;
struct cmd_req;
struct vm_waiter;

struct vm {
	struct vm_def		 def;
	enum vm_state		 state;
	char			*reason;
	pid_t			 pid;
	int			 pidfd;
	struct event		*pidfd_ev;
	struct qmp		*qmp;
	char			 accel_used[8];
	long long		 started;
	int			 is_child;	/* we can reap its status */
	int			 stop_asked;	/* admin stop/kill in flight */
	int			 guest_shutdown; /* SHUTDOWN seen */
	char			*exit_reason;	/* from waitpid, if ours */
	struct event		*stop_timer;
	struct event		*restart_timer;
	time_t			 restarts[5];	/* ring, for rate limiting */
	json_t			*spice_clients;
	int			 spice_tls;	/* its SPICE port is TLS */
	json_t			*last_io_error;
	TAILQ_HEAD(, vm_waiter)	 waiters;
	TAILQ_ENTRY(vm)		 entry;
};
TAILQ_HEAD(vms, vm);
extern struct vms	vms;

/* vm-def.c: definition <-> JSON, validation. Pure. */
int	 vm_def_from_json(struct vm_def *, json_t *, char **cause);
json_t	*vm_def_to_json(const struct vm_def *);
void	 vm_def_clear(struct vm_def *);
const char *vm_state_name(enum vm_state);
int	 vm_state_from_name(const char *, enum vm_state *);
const char *vm_restart_name(enum vm_restart);

/* vm-argv.c: the QEMU command line. Pure. */
char	**vm_argv_build(const struct vm_def *, const struct vm_runtime_paths *,
	    const char *qemu_binary, char **cause);
void	 vm_argv_free(char **);

/* vm-spawn.c: fork, setsid, fork, drop privileges, exec. */
pid_t	 vm_spawn(struct vm *, char **argv, const int *keep_fds, int nkeep,
	    char **cause);
int	 vm_rundir(struct vm *, char **path, char **cause);
void	 vm_rundir_remove(const struct vm *);
int	 vm_spawn_disk_unshared(const struct vm *, char **cause);
int	 vm_spawn_private(const struct vm *, int fd, const char *path,
	    char **cause);
uid_t	 vm_spawn_uid(const struct vm *);
int	 vm_rundir_open(const struct vm *, const char *file, int flags,
	    char **cause);
char	*vm_rundir_read(const struct vm *, const char *file, size_t max,
	    char **cause);

/* vm-uid.c: each VM's own uid, from --vm-uids, kept in LMDB. */
int	 vm_uid_init(const char *spec, char **cause);
const gid_t *vm_uid_groups(int *n);
uid_t	 vm_uid_lookup(const char *name);
int	 vm_uid_get(const struct vm *, uid_t *, char **cause);
void	 vm_uid_free(const char *name);
uid_t	 vm_uid_helper(void);
int	 vm_uid_matches(const struct vm *, pid_t, char **cause);

/* vm.c: the registry and the state machine. */
int	 vm_load_all(char **cause);
void	 vm_reattach_all(void);
void	 vm_autostart_all(void);
struct vm *vm_find(const char *name);
struct vm *vm_create(json_t *args, char **cause);
int	 vm_delete(struct vm *, char **cause);
int	 vm_start(struct vm *, char **cause);
int	 vm_stop(struct vm *, int force, int timeout, char **cause);
int	 vm_kill(struct vm *, char **cause);
void	 vm_reaped(pid_t, int status);
void	 vm_set_state(struct vm *, enum vm_state, const char *reason);
json_t	*vm_to_json(const struct vm *);
json_t	*vm_record(const struct vm *);
int	 vm_save(struct vm *, char **cause);
int	 vm_is_active(const struct vm *);
void	 vm_shutdown_all(void);

/* vm-wait.c: requests that wait for a VM to reach a state. */
void	 vm_wait_add(struct vm *, struct cmd_req *, unsigned int okmask,
	    unsigned int failmask, int timeout);
void	 vm_wait_notify(struct vm *);
void	 vm_wait_fail_all(struct vm *, const char *errclass, const char *desc);
#define VM_MASK(s)	(1U << (s))

/* vm-qmp.c: QMP events and the QMP steps of start and re-attach. */
int	 vm_qmp_attach(struct vm *, int fd, int fresh, char **cause);
void	 vm_qmp_cont(struct vm *);
char	*vm_qmp_secret(void);

/* vm-ticket.c: SPICE console tickets, and who got the last one. */
void	 vm_ticket(struct vm *, struct cmd_req *, long long ttl,
	    const char *login);
int	 vm_ticket_last(const char *name, const char **login, uid_t *uid,
	    long long *at, long long *expires);

/* vm-vnc.c: a VNC client connection by fd, no VNC port. */
typedef void (*vm_vnc_cb)(int fd, const char *err, void *arg);
int	 vm_vnc_connect(struct vm *, vm_vnc_cb, void *arg, char **cause);
enum cmd_retval vm_vnc_request(struct vm *, struct cmd_req *);

#endif
