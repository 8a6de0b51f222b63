/*
 * Virtual machines: the definition (what the admin asked for, in LMDB),
 * and the runtime (the QEMU process, its QMP connection, its state).
 */
#ifndef QDESK_VM_H
#define QDESK_VM_H

#include <sys/types.h>

#include <stdint.h>

#include <jansson.h>

#include "compat.h"
#include "netctl.h"
#include "qmpd.h"

#define VM_NAME_MAX	64
#define VM_UUID_LEN	37
#define VM_NICS_MAX	8
#define VM_HEADS_MAX	4
#define VM_USBREDIR_MAX	8

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

/* SPICE transport profiles (vm-argv.c maps each to -spice options). */
enum vm_profile {
	VM_PROFILE_LAN,
	VM_PROFILE_WAN
};

/* A NIC of a definition: its netdev id, network and leased MAC (and IP). */
struct vm_def_nic {
	char		 id[8];			/* net0 ... net7 */
	char		 network[NETCTL_NETNAME_MAX + 1];
	uint8_t		 mac[6];		/* 52:54:00:xx:xx:xx */
	uint32_t	 ip;			/* 0 on bridge-mode networks */
};

/*
 * The definition: pure data, JSON in LMDB, the argv builder's input.
 * Every field is parsed and checked once, by vm_def_from_json.
 */
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
	enum vm_profile	 profile;		/* SPICE transport: lan wan */
	enum vm_restart	 restart;
	int		 autostart;
	long long	 created;

	/* NICs, each leased on its network (vm-net.c). */
	struct vm_def_nic nics[VM_NICS_MAX];
	u_int		 nnics;
	/* vm.create only, never saved: one NIC to lease on each network. */
	char		*nets[VM_NICS_MAX];
	u_int		 nnets;

	/* The image store (vm-disk.c): cloned from, and its own disk. */
	char		*from;
	char		*image;
	char		*store;		/* a shared image store's, or NULL */

	/* Desktops: who it is assigned to, and its pool's marks (pool.c). */
	char		*owner;
	char		*pool;
	int		 pool_dirty;	/* given back, disk not reset yet */
	int		 pool_doomed;	/* being removed from its pool */

	/* Desktop devices (vm-def-dev.c reads them, vm-argv-dev.c builds). */
	char		 video[8];	/* vga qxl virtio */
	int		 heads;		/* 1 to VM_HEADS_MAX */
	int		 audio;		/* HDA: SPICE's backend or none, +VNC */
	int		 clipboard;	/* qemu-vdagent on com.redhat.spice.0 */
	int		 usbredir;	/* SPICE USB redirection channels */
	int		 balloon;	/* virtio-balloon, free pages back */
	/*
	 * The --os profile, and what it sets that other files build: the
	 * firmware (bios uefi uefi-secure), a TPM, the guest agent.
	 */
	char		 os[16];	/* generic linux windows10 windows11 */
	char		 firmware[16];
	int		 tpm;
	int		 agent;
};

/* A firmware the definition may name, and the OVMF files it runs on. */
struct vm_firmware {
	const char	*name;
	const char	*code;		/* OVMF code, read-only; NULL: BIOS */
	const char	*vars;		/* the NVRAM template */
	int		 secure;	/* Secure Boot: q35 with SMM */
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

/*
 * Where QEMU placed a PCI device, from query-pci (vm-argv-pin.c): a
 * migration target's QEMU puts each at the same place, so the stream
 * loads after a hotplug moved the devices off the definition's layout.
 */
#define VM_PCI_PINS_MAX	64
#define VM_PCI_ID_MAX	32
struct vm_pci_pin {
	char		 id[VM_PCI_ID_MAX];	/* the device's qdev id */
	char		 bus[VM_PCI_ID_MAX];	/* its bridge's id; "" root */
	u_int		 slot;
	u_int		 func;
};
struct vm_pci_pins {
	u_int			 n;
	struct vm_pci_pin	 v[VM_PCI_PINS_MAX];
};

/* Paths and fds the argv builder needs that are not in the definition. */
struct vm_runtime_paths {
	const char	*dir;		/* DIR/vms/NAME */
	int		 qmp_fd;	/* listening socket QEMU inherits */
	int		 disk_fd;	/* the disk, opened by qmpd; -1 none */
	const char	*accel;		/* resolved: kvm or tcg */
	const struct vm_disk *image;	/* the image-store disk, or NULL */
	const int	*tap_fds;	/* one per NIC of the definition */
	int		 ntap_fds;
	const char	*spice_tls_dir;	/* x509-dir; NULL: plain SPICE */
	const char	*spice_addr;	/* SPICE listens here; NULL: def's */
	int		 nvram_fd;	/* OVMF vars, opened by qmpd; -1 none */
	int		 tpm_fd;	/* swtpm's control socket; -1 none */
	int		 agent_fd;	/* QEMU's end of the agent port; -1 */
	int		 incoming;	/* -incoming defer: a migration target */
	const struct vm_pci_pins *pins;	/* the source's layout; NULL: QEMU's */
};

struct qmp;
struct qga;
struct cmd_req;
struct vm_waiter;
struct vm_agent;
struct vm_mig;

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
	/* Its swtpm (vm-tpm.c), watched like QEMU. */
	pid_t			 tpm_pid;
	int			 tpm_pidfd;
	struct event		*tpm_ev;
	char			*tpm_status;	/* once reaped */
	TAILQ_HEAD(, vm_waiter)	 waiters;
	struct vm_agent		*agent;		/* vm-agent.c; NULL: none yet */
	struct vm_mig		*mig;		/* vm-migrate.c; NULL: none */
	int			 disk_away;	/* its shared store's clone is
						   another host's: delete forgets */
	TAILQ_ENTRY(vm)		 entry;
};
TAILQ_HEAD(vms, vm);
extern struct vms	vms;

/* vm-def.c: definition <-> JSON, validation. Pure. */
int	 vm_def_from_json(struct vm_def *, json_t *, char **cause);
json_t	*vm_def_to_json(const struct vm_def *);
void	 vm_def_clear(struct vm_def *);
json_t	*vm_def_nic_json(const struct vm_def_nic *);
int	 vm_def_word(json_t *, const char *key, const char *dflt,
	    const char *const *allowed, char *out, size_t outlen, int showmax,
	    char **cause);
int	 vm_def_bool(json_t *, const char *key, int *out, char **cause);
const char *vm_state_name(enum vm_state);
int	 vm_state_from_name(const char *, enum vm_state *);
const char *vm_restart_name(enum vm_restart);
const struct vm_firmware *vm_def_firmware(const char *name);
const char *vm_profile_name(enum vm_profile);
int	 vm_profile_from_name(const char *, enum vm_profile *);

/* vm-argv.c: the QEMU command line. Pure. */
char	**vm_argv_build(const struct vm_def *, const struct vm_runtime_paths *,
	    const char *qemu_binary, char **cause);
void	 vm_argv_free(char **);
/* An argv being built; vm_argv_add appends one printf-formatted word. */
struct argv {
	char	**v;
	size_t	  n;
	size_t	  cap;
};
void	 vm_argv_add(struct argv *, const char *fmt, ...)
	    __attribute__((format(printf, 2, 3)));

/* vm-argv-pin.c: PCI places from query-pci, on the wire, in argv. Pure. */
int	 vm_pci_pins_query(const json_t *query_pci, struct vm_pci_pins *,
	    char **cause);
json_t	*vm_pci_pins_to_json(const struct vm_pci_pins *);
int	 vm_pci_pins_from_json(const json_t *, struct vm_pci_pins *,
	    char **cause);
const struct vm_pci_pin *vm_pci_pins_find(const struct vm_pci_pins *,
	    const char *id);
int	 vm_argv_pin(struct argv *, const struct vm_pci_pins *, char **cause);

/* vm-def-dev.c: the desktop devices of a definition. Pure. */
int	 vm_def_dev_from_json(struct vm_def *, json_t *, char **cause);
void	 vm_def_dev_to_json(const struct vm_def *, json_t *);
int	 vm_def_dev_key(const char *key);
json_t	*vm_def_dev_profile(json_t *, char **cause);
int	 vm_def_dev_windows(const struct vm_def *);

/* vm-argv-dev.c: the desktop devices on the QEMU command line. Pure. */
void	 vm_argv_dev_video(struct argv *, const struct vm_def *);
const char *vm_argv_dev_xhci(const struct vm_def *);
char	*vm_argv_dev_cpu(const struct vm_def *, const char *accel);
void	 vm_argv_dev_rest(struct argv *, const struct vm_def *);
void	 vm_argv_dev_agentport(struct argv *, const struct vm_def *);
const char *vm_argv_dev_vnc(const struct vm_def *);

/* vm-firmware.c: a UEFI VM's private NVRAM (OVMF vars) file. */
int	 vm_firmware_create(struct vm *, char **cause);
int	 vm_firmware_open(struct vm *, int *fd, char **cause);
int	 vm_firmware_reset(struct vm *, char **cause);
void	 vm_firmware_delete(struct vm *);
long long vm_firmware_size(const struct vm *, int template);

/* vm-tpm.c: a VM's swtpm, started before QEMU, stopped after it. */
int	 vm_tpm_start(struct vm *, int *qemu_fd, char **cause);
void	 vm_tpm_attach(struct vm *);
void	 vm_tpm_stop(struct vm *);
int	 vm_tpm_reaped(pid_t, int status);
void	 vm_tpm_delete(struct vm *);
/* vm-migrate-tpm.c: a migration's TPM state and NVRAM, both sides. */
void	 vm_migrate_tpm_offer(const struct vm *, json_t *prepare);
int	 vm_migrate_tpm_prepare(struct vm *, json_t *prepare, char **cause);
int	 vm_migrate_tpm_incoming(const struct vm *);

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
struct vm *vm_find(const char *name);
struct vm *vm_alloc(void);
void	 vm_free(struct vm *);
struct vm *vm_create(json_t *args, char **cause);
int	 vm_delete(struct vm *, char **cause);
int	 vm_start(struct vm *, char **cause);
int	 vm_watch(struct vm *, pid_t, char **cause);
void	 vm_unwatch(struct vm *);
int	 vm_pidfd_signal(struct vm *, int sig);
int	 vm_stop(struct vm *, int force, int timeout, char **cause);
int	 vm_kill(struct vm *, char **cause);
void	 vm_set_state(struct vm *, enum vm_state, const char *reason);
json_t	*vm_to_json(const struct vm *);
json_t	*vm_record(const struct vm *);
int	 vm_save(struct vm *, char **cause);
int	 vm_save_state(struct vm *, char **cause);
int	 vm_set_field(struct vm *, char **field, const char *value,
	    char **cause);
int	 vm_set_flag(struct vm *, int *flag, int value, char **cause);
int	 vm_is_active(const struct vm *);
void	 vm_shutdown_all(void);
int	 vm_port_alloc(struct vm *, char **cause);
int	 vm_port_range(const char *spec, char **cause);

/* vm-exit.c: a QEMU is gone; the restart policy. */
void	 vm_exit_seen(struct vm *);
void	 vm_exit_reaped(pid_t, int status);
void	 vm_exit_cleanup(struct vm *);
void	 vm_exit_restart(struct vm *);

/* vm-attach.c: definitions loaded at start, QEMUs re-attached. */
int	 vm_attach_load(char **cause);
void	 vm_attach_all(void);

/* vm-wait.c: waiting for a VM to reach a state. */
void	 vm_wait_add(struct vm *, unsigned int okmask, unsigned int failmask,
	    int timeout, done_cb, void *arg);
void	 vm_wait_notify(struct vm *);
void	 vm_wait_fail_all(struct vm *, const char *errclass, const char *desc);
#define VM_MASK(s)	(1U << (s))

/* vm-qmp.c: QMP events and the QMP steps of start and re-attach. */
int	 vm_qmp_attach(struct vm *, int fd, int fresh, char **cause);
void	 vm_qmp_cont(struct vm *);
char	*vm_qmp_secret(void);

/* vm-ticket.c: SPICE console tickets, and who got the last one. */
void	 vm_ticket(struct vm *, long long ttl, const char *login, uid_t uid,
	    done_cb, void *arg);
int	 vm_ticket_last(const char *name, const char **login, uid_t *uid,
	    long long *at, long long *expires);
/* A live migration takes the last ticket along (issue 14). */
json_t	*vm_ticket_carry(const char *name);
int	 vm_ticket_take(const char *name, json_t *, char **cause);
int	 vm_ticket_restore(const char *name, json_t *, char **cause);
void	 vm_ticket_arm(struct vm *, long long window);
void	 vm_ticket_settle(struct vm *);

/* vm-vnc.c: a VNC client connection by fd, no VNC port. */
typedef void (*vm_vnc_cb)(int fd, const char *err, void *arg);
int	 vm_vnc_connect(struct vm *, vm_vnc_cb, void *arg, char **cause);

/* vm-disk.c: a VM's disk from the image store. */
/* The image a VM runs on ("image" in its definition), or NULL. */
const char	*vm_disk_image(const struct vm *);
/* Is an image record a snapshot of this VM (name and uuid)? */
int		 vm_disk_owns(const struct vm *, json_t *rec);
/* vm create --from: the VM's own linked clone, named NAME-disk. */
int		 vm_disk_create(struct vm *, char **cause);
/* vm delete: the VM's own disk and its snapshots go too. */
void		 vm_disk_delete(struct vm *);
/*
 * vm start: check the chain with the store's parser and open every
 * file (read-only below the top), for vm_spawn to pass to QEMU. *out
 * stays NULL for a VM without an image. vm_disk_free closes the fds.
 */
int		 vm_disk_open(struct vm *, struct vm_disk **out,
		     char **cause);
void		 vm_disk_free(struct vm_disk *);
/* vm reset-disk, for stateless desktops too. */
int		 vm_disk_reset(struct vm *, char **cause);

/* vm-net.c: the NICs of VMs (def.nics): leases, TAPs at start. */
struct db_txn;
struct net;
struct netctl_nft_tap;
/* One NIC, parsed from the definition. */
struct vm_nic {
	char		 id[16];		/* net0: the netdev id */
	char		 dev[24];		/* net0-nic: the device id */
	char		 network[NETCTL_NETNAME_MAX + 1];
	char		 tap[IFNAMSIZ];
	uint8_t		 mac[6];
	uint32_t	 ip;			/* 0 on bridge-mode networks */
	int		 fd;			/* until QEMU has it */
};

enum vm_net_rules {
	VM_NET_RULES_PENDING,
	VM_NET_RULES_OK,
	VM_NET_RULES_FAILED
};

/* Told once the ruleset lists a VM's TAPs (err NULL), or failed. */
typedef void (*vm_net_rules_cb)(struct vm *, int arg, const char *err);

/* The TAPs of an active VM, and whether the ruleset lists them yet. */
struct vm_netrt {
	char			 vm[VM_NAME_MAX];
	unsigned int		 gen;
	struct vm_nic		*nics;
	size_t			 nnics;
	int			*fds;		/* for the argv builder */
	enum vm_net_rules	 rules;
	char			*rules_err;
	int			 cont_waiting;
	vm_net_rules_cb		 rules_cb;	/* an incoming migration's */
	int			 rules_arg;
	TAILQ_ENTRY(vm_netrt)	 entry;
};
void	 vm_net_init(void);
void	 vm_net_relink(void);
int	 vm_net_create(struct vm *, char **cause);
void	 vm_net_deleted(struct vm *);
int	 vm_net_open(struct vm *, struct vm_runtime_paths *, char **cause);
void	 vm_net_opened(struct vm *, int spawned);
int	 vm_net_cont_wait(struct vm *);
void	 vm_net_stopped(struct vm *);
void	 vm_net_json(const struct vm *, json_t *);
/* The VMs with a NIC on network, as a JSON array of names. */
json_t	*vm_net_users(const char *network);
/* The TAPs of active VMs for the ruleset; borrowed until the next change. */
void	 vm_net_taps(struct netctl_nft_tap **, size_t *);
/* For vm-nic.c: a NIC's runtime view, the TAPs of active VMs, leases. */
void	 vm_net_nic_load(struct vm_nic *, const struct vm_def_nic *);
void	 vm_net_nic_def(const struct vm_nic *, struct vm_def_nic *);
json_t	*vm_net_nic_json(const struct vm_nic *);
struct vm_netrt *vm_net_rt_find(const char *vm);
struct vm_netrt *vm_net_rt_new(const char *vm);
void	 vm_net_rt_free(struct vm_netrt *);
void	 vm_net_rt_add(struct vm_netrt *, const struct vm_nic *);
void	 vm_net_rt_remove(struct vm_netrt *, const char *id);
int	 vm_net_save_txn(struct vm *, struct db_txn *, char **cause);
int	 vm_net_lease(struct vm *, struct db_txn *, struct net *,
	    const char *id, struct vm_nic *, char **cause);
struct net *vm_net_usable(const char *network, char **cause);
void	 vm_net_next_id(const struct vm_def_nic *, u_int n, char *id,
	    size_t len);
int	 vm_net_tap(struct vm_nic *, char **cause);

/* vm-agent.c: the guest agent's port and client (--agent). */
int	 vm_agent_open(struct vm *, struct vm_runtime_paths *, char **cause);
void	 vm_agent_opened(struct vm *, int spawned);
void	 vm_agent_attach(struct vm *);
void	 vm_agent_stopped(struct vm *, int gone);
void	 vm_agent_free(struct vm *);
struct qga *vm_agent_ready(const struct vm *);
void	 vm_agent_json(const struct vm *, json_t *);
int	 vm_agent_stop_begin(struct vm *, int timeout);
int	 vm_agent_stop_fallback(struct vm *);
typedef void (*vm_agent_freeze_cb)(int frozen, const char *note, void *arg);
void	 vm_agent_freeze(struct vm *, vm_agent_freeze_cb, void *arg);
void	 vm_agent_thaw(struct vm *);

/* vm-nic.c: NIC hotplug and unplug. */
void	 vm_nic_add(struct vm *, const char *network, done_cb, void *arg);
void	 vm_nic_rm(struct vm *, const char *mac, done_cb, void *arg);
void	 vm_nic_deleted(struct vm *, json_t *data);
void	 vm_nic_stopped(struct vm *);
const char *vm_nic_busy(const struct vm *);

/*
 * vm-migrate*.c (the source) and vm-incoming.c (the target): a live
 * migration (issue 14). The source drives: it asks the target's qmpd
 * (peer.c) to prepare the same VM with -incoming defer, copies the disk
 * over NBD when asked, then migrates RAM over QMP, never waiting on the
 * loop. The target switches over on its own MIGRATION "completed":
 * placement (vm_migrate_place), then cont. One struct vm_mig per VM, kept
 * after the end so vm show can say how it went.
 */
enum vm_mig_state {
	VM_MIG_PREPARING,	/* the target's QEMU is coming up */
	VM_MIG_MIRRORING,	/* --storage copy: disks to the target's NBD */
	VM_MIG_ACTIVE,		/* RAM pages going over */
	VM_MIG_SWITCHOVER,	/* the source is stopped; the target takes over */
	VM_MIG_COMPLETED,
	VM_MIG_FAILED,
	VM_MIG_CANCELLED
};

struct peer;
struct vm_mig {
	int			 incoming;	/* this is the target */
	enum vm_mig_state	 state;
	char			*peer_addr;	/* where to, or where from */
	struct peer		*peer;		/* the source's line to the target */
	int			 copy;		/* --storage copy */
	int			 tls;		/* the stream is TLS */
	int			 downtime_limit; /* ms */
	int			 bandwidth;	/* MiB/s; 0: no cap */
	int			 spice_follow;	/* client_migrate_info sent */
	int			 spice_done;	/* SPICE_MIGRATE_COMPLETED came */
	int			 timeout;	/* s; 0: none */
	long long		 t0;		/* monotonic ms at the start */
	long long		 total_ms;
	long long		 downtime_ms;	/* QEMU's, plus the target's resume */
	long long		 qemu_downtime_ms;
	long long		 resume_ms;	/* target: completed -> running */
	unsigned long long	 ram_bytes;	/* RAM sent so far */
	unsigned long long	 ram_total;
	unsigned long long	 ram_remaining;
	unsigned long long	 disk_bytes;	/* copied over NBD */
	unsigned long long	 disk_total;
	long long		 disk_t0;	/* monotonic ms: the mirror began */
	long long		 disk_ms;	/* source: mirror until READY */
	int			 progress;	/* percent */
	char			*reason;	/* why it failed or was cancelled */
	done_cb			 done;		/* answers vm.migrate or prepare */
	progress_cb		 report;	/* source: each step, to done_arg */
	void			*done_arg;
	done_cb			 finish;	/* target: answers migrate.finish */
	void			*finish_arg;
	struct event		*poll;		/* query-migrate, query-block-jobs */
	struct event		*timer;		/* --timeout */
	/* What the target told the source in its prepare answer. */
	json_t			*target;
	char			*disk;		/* target: the copy's file */
	char			*image;		/* target: the clone made here,
						   until the record owns it */
	long long		 completed_at;	/* target: monotonic ms */
	/* Wall clock ms: the source's STOP, the target's cont (downtime). */
	long long		 stopped_at;
	long long		 resumed_at;
	/* Where QEMU's PCI devices sit (source: query-pci; target: argv). */
	struct vm_pci_pins	*pins;
	/* Source: its stream failed, the target is asked why (QEMU's own
	   words meanwhile). Target: its QEMU could not load the stream,
	   and the source's migrate.status waiting for the half's end. */
	int			 asking;
	int			 cancelling;	/* source: migrate_cancel sent */
	char			*qemu_error;
	int			 load_failed;
	int			 adopted;	/* target: a shared store's clone
						   indexed here (vm-migrate-image.c) */
	done_cb			 status;
	void			*status_arg;
};

/*
 * The reason of a source found paused in "postmigrate" by a qmpd that was
 * not there when its migration ended: the target may run the desktop, so
 * this copy is never resumed (vm.resume refuses).
 */
#define VM_MIG_POSTMIGRATE	"postmigrate: migrated away while qmpd was " \
	"down; not resumed here (the target may run it): vm kill this copy"

/* vm-migrate*.c: the source's state machine, and what both sides share. */
/* progress (may be NULL) hears each step, so a waiting client knows it
   is alive: preparing and a disk copy are not bounded by --timeout. */
void	 vm_migrate(struct vm *, json_t *args, done_cb, progress_cb,
	    void *arg);
void	 vm_migrate_free(struct vm *);
void	 vm_migrate_json(const struct vm *, json_t *);
int	 vm_migrate_busy(const struct vm *);
int	 vm_migrate_exited(struct vm *);
void	 vm_migrate_ev_migration(struct vm *, json_t *);
void	 vm_migrate_ev_spice_done(struct vm *, json_t *);
void	 vm_migrate_ev_job_ready(struct vm *, json_t *);
void	 vm_migrate_ev_job_done(struct vm *, json_t *);
void	 vm_migrate_stopped(struct vm *);
long long vm_migrate_now_ms(void);
long long vm_migrate_wall_ms(void);
long long vm_migrate_downtime(const struct vm_mig *);
const char *vm_migrate_state_name(enum vm_mig_state);
int	 vm_migrate_check(const struct vm_def *, int copy, char **cause);
/* vm-migrate-image.c: a disk on the image store, its clone's top copied. */
int	 vm_migrate_image_check(const struct vm_def *, int copy, char **);
int	 vm_migrate_image_offer(struct vm *, json_t *req, char **cause);
int	 vm_migrate_image_ready(struct vm *, char **cause);
int	 vm_incoming_image_need(json_t *args, done_cb, void *arg);
int	 vm_incoming_image_adopt(struct vm *, json_t *args, char **cause);
int	 vm_incoming_image_clone(struct vm *, json_t *args, long long size,
	    char **cause);
void	 vm_incoming_image_undo(struct vm *);
void	 vm_incoming_image_drop(const char *vmname, const char *image);
int	 vm_incoming_image_abort(const char *name);
/* vm-migrate-tls.c: the stream's TLS from the cluster's certificates. */
struct qmp;
int	 vm_migrate_tls(struct vm *, int server, const char *hostname,
	    void (*)(struct qmp *, json_t *, const char *, const char *,
	    void *), char **cause);
int	 vm_migrate_tls_peer(struct vm *, json_t *target,
	    void (*)(struct qmp *, json_t *, const char *, const char *,
	    void *), char **cause);
const char *vm_migrate_tls_id(void);
/* vm-migrate-nic.c: NICs, their networks and leases on the target. */
json_t	*vm_migrate_nic_nets(const struct vm_def *, char **cause);
int	 vm_migrate_nic_check(const struct vm_def *, const json_t *nets,
	    char **cause);
int	 vm_migrate_nic_save(struct vm *, char **cause);
int	 vm_migrate_nic_wait(struct vm *, int arg, vm_net_rules_cb);
/* vm-migrate-dev.c: the devices QEMU has now, hotplugged ones too. */
void	 vm_migrate_dev_query(struct vm *);
void	 vm_migrate_dev_offer(const struct vm *, json_t *prepare);
int	 vm_migrate_dev_take(struct vm *, const json_t *prepare, char **cause);
/*
 * The switchover's placement step, on the target (one function, for the
 * cluster's compare-and-swap of placement/NAME): cb(0) to go on and run
 * the VM here, cb(-1, why) to refuse (the source then resumes).
 */
typedef void (*vm_migrate_place_cb)(struct vm *, int ok, const char *why);
void	 vm_migrate_place(struct vm *, const char *from, vm_migrate_place_cb);

/* vm-incoming.c: the target's side. */
void	 vm_incoming_prepare(json_t *args, done_cb, void *arg);
/* vm-incoming-why.c: why a half ended here, for the source to say. */
void	 vm_incoming_status(const char *name, done_cb, void *arg);
void	 vm_incoming_ended(struct vm *);
char	*vm_incoming_qemu_lines(struct vm *);
void	 vm_incoming_attached(struct vm *);
void	 vm_incoming_completed(struct vm *);
void	 vm_incoming_streaming(struct vm *);
void	 vm_incoming_finish(struct vm *, json_t *args, done_cb, void *arg);
int	 vm_incoming_abort(struct vm *, const char *why, char **cause);
const char *vm_incoming_addr(void);
const char *vm_spice_addr(const struct vm *);
void	 vm_incoming_takeover(struct vm *);
/* vm-incoming-recover.c: a half found by a restarted qmpd. */
int	 vm_incoming_note(const struct vm *, char **cause);
void	 vm_incoming_unnote(const char *name);
void	 vm_incoming_recover(void);
void	 vm_incoming_recover_dead(void);
void	 vm_incoming_reattached(struct vm *);

#endif
