/*
 * qmpd's side of the image store: the store opened once and its jobs
 * (img.c), slow work in child processes the loop watches (img-job.c).
 * A VM's disk made of an image chain is vm-disk.c's, in vm.h.
 */
#ifndef QDESK_QMPD_IMG_H
#define QDESK_QMPD_IMG_H

#include <sys/types.h>

#include <jansson.h>

#include "qmpd.h"

struct cmd_req;
struct imgstore;
struct vm;
struct vm_disk;

/* img.c: the store, opened once at start-up. */
extern struct imgstore	*img_store;
int		 img_init(char **cause);
/*
 * The image store of a VM's disk: this host's own (name NULL), or shared
 * store name (image store add NAME PATH --shared, a cluster's), opened
 * on first use over its own index; NULL with *cause if there is none.
 */
struct imgstore	*img_store_named(const char *name, char **cause);
/* The error class an IMGSTORE_E* code answers with. */
const char	*img_errclass(int rc);
/* done gets a store failure (frees cause), or name's record. */
void		 img_fail(done_cb, void *arg, int rc, char *cause);
void		 img_record(done_cb, void *arg, const char *name);
void		 img_record_in(struct imgstore *, done_cb, void *arg,
		     const char *name);
/*
 * Images a job is working on (import, flatten, merge): what is being
 * done to name, or NULL. Every command that changes or starts on an image
 * checks this first.
 */
const char	*img_busy(const char *name);
void		 img_busy_set(const char *name, const char *what);
void		 img_busy_clear(const char *name);
/* The first image of name's chain a job is working on, or NULL. */
const char	*img_chain_busy(const char *name, const char **what);
/* The VM whose disk image name is, or NULL. */
struct vm	*img_vm_on(const char *name);
/* Forget VMs that no longer exist from the users of an image. */
void		 img_prune_users(const char *name);

/*
 * A job (img.c): qemu-img runs with name (and also, if set) busy, its
 * progress goes to progress; at its end file, if set, is renamed from
 * tmp into the store, commit indexes the result and done gets reply, or
 * name's record if reply is NULL. On failure the new file goes and done
 * gets why.
 */
struct img_op {
	done_cb		 done;
	progress_cb	 progress;	/* may be NULL */
	void		*arg;
	char		*name;
	char		*also;
	const char	*what;		/* "importing", ... */
	char		*file;		/* the new file's name */
	char		*tmp;		/* its temporary path */
	char		*oldfile;	/* flatten: the file it replaces */
	json_t		*reply;
	int		(*commit)(struct img_op *, char **cause);
	int		 last;		/* last percent reported */
	struct imgstore	*st;		/* img_store, or a shared one */
};
struct img_op	*img_op_new(const char *name, const char *what, done_cb,
		     progress_cb, void *arg);
/* Start it; on failure done is called and op freed. */
int		 img_op_run(struct img_op *, char **argv, int infd);
/* Not started after all: done gets cause, op and tmp go. */
void		 img_op_abort(struct img_op *, const char *cause);
/* The same with a block job in QEMU as uid over fds (img_job_qemu). */
struct img_job_node;
int		 img_op_run_qemu(struct img_op *, uid_t,
		     const struct img_job_node *, u_int n, const char *cmd,
		     json_t *cmdargs);
#define IMG_QEMU_IMG	"/usr/bin/qemu-img"

/* img-job.c: a child process with its output read by the loop. */
struct img_job;
/* Progress in percent, from qemu-img -p. */
typedef void	(*img_job_progress_cb)(double percent, void *arg);
/* status is waitpid's; output the last lines the job wrote, borrowed. */
typedef void	(*img_job_done_cb)(int status, const char *output,
		     void *arg);
/*
 * Run argv (argv[0] an absolute path) with stdout and stderr on a pipe
 * the loop reads; infd, unless -1, becomes the child's fd 3. The child
 * dies with qmpd. Returns 0, or -1 with *cause (then no callback runs).
 */
int		 img_job_start(char *const argv[], int infd,
		     img_job_progress_cb, img_job_done_cb, void *arg,
		     char **cause);
/*
 * A block job run by QEMU itself, in its sandbox, as uid (never root),
 * over files it gets only as fds: nodes[i] is node name, the fd set i +
 * 1; a qcow2 node backs onto nodes[backing] (-1: none). cmd and cmdargs
 * (borrowed) start the job as "img"; progress and done as above, done
 * with exit status 0 only when the job concluded without an error.
 */
struct img_job_node {
	const char	*name;
	int		 fd;
	const char	*format;	/* qcow2 raw */
	int		 writable;
	int		 backing;	/* index in nodes, or -1 */
};
int		 img_job_qemu(uid_t uid, const struct img_job_node *, u_int n,
		     const char *cmd, json_t *cmdargs, img_job_progress_cb,
		     img_job_done_cb, void *arg, char **cause);
/* Who runs a job over an image: its VM's uid, or the helper uid. */
uid_t		 img_job_uid(const char *name);
/* image.flatten and the merge of a snapshot, as QEMU block jobs. */
struct chain;
int		 img_job_flatten(struct img_op *, const struct chain *,
		     uid_t);
int		 img_job_merge(struct img_op *, const struct chain *, int base,
		     const char *backing, uid_t);
/* The SIGCHLD handler's status for pid: 1 if it was a job's. */
int		 img_job_reaped(pid_t, int status);

#endif
