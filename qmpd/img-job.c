/*
 * Image jobs: runs that last as long as an image is big (import, flatten,
 * merging a snapshot away). The child's stdout and stderr come back on
 * one pipe the loop reads: "(12.50/100%)" segments, which qemu-img -p
 * ends with a carriage return, are progress; other lines are kept for the
 * error message. The status comes from qmpd's SIGCHLD handler; the done
 * callback runs once both it and the pipe's EOF are in.
 *
 * Jobs over qcow2 metadata that a guest's QEMU wrote (flatten, merge) do
 * not run qemu-img as root: img_job_qemu runs the block job in a QEMU
 * with no machine, in its seccomp sandbox, as an unprivileged uid, and
 * hands it every file as an fd (-add-fd, /dev/fdset/N), so a hostile
 * image meets a parser with no right to any other file on the host.
 */
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/wait.h>

#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <event2/event.h>

#include "chain.h"
#include "compat.h"
#include "img.h"
#include "log.h"
#include "qmp.h"
#include "qcow2-write.h"
#include "qmpd.h"
#include "store.h"
#include "vm.h"
#include "xmalloc.h"

#define IMG_JOB_OUTPUT_MAX	1024	/* error text kept */
#define IMG_JOB_NICE		10	/* VMs first */
#define IMG_JOB_QMP_TIMEOUT	30000	/* ms, each QMP command */
#define IMG_JOB_TICK_MS		500	/* progress polls */
#define IMG_JOB_FD0		3	/* the monitor; node fds follow */

struct img_job {
	pid_t			 pid;
	int			 fd;		/* its output */
	struct event		*ev;
	int			 reaped;
	int			 status;

	char			 seg[256];	/* the segment read */
	size_t			 seglen;
	char			 out[IMG_JOB_OUTPUT_MAX + 1];
	size_t			 outlen;

	img_job_progress_cb	 progress;
	img_job_done_cb		 done;
	void			*arg;

	/* img_job_qemu: the monitor, the job's command and its outcome. */
	struct qmp		*qmp;
	struct event		*tick;
	char			*cmd;
	json_t			*cmdargs;
	int			 result;	/* 0 running, 1 ok, -1 failed */

	LIST_ENTRY(img_job)	 entry;
};
static LIST_HEAD(, img_job)	img_jobs = LIST_HEAD_INITIALIZER(img_jobs);

/* Keep a line of output, dropping the oldest lines when over the limit. */
static void
img_job_keep(struct img_job *job, const char *line, size_t len)
{
	size_t	 need, drop;
	char	*nl;

	if (len > IMG_JOB_OUTPUT_MAX / 2)
		len = IMG_JOB_OUTPUT_MAX / 2;
	need = len + (job->outlen > 0);
	if (job->outlen + need > IMG_JOB_OUTPUT_MAX) {
		drop = job->outlen + need - IMG_JOB_OUTPUT_MAX;
		nl = memchr(job->out + drop, '\n', job->outlen - drop);
		drop = nl != NULL ? (size_t)(nl - job->out) + 1 : job->outlen;
		memmove(job->out, job->out + drop, job->outlen - drop);
		job->outlen -= drop;
	}
	if (job->outlen > 0)
		job->out[job->outlen++] = '\n';
	memcpy(job->out + job->outlen, line, len);
	job->outlen += len;
	job->out[job->outlen] = '\0';
}

/* One segment of output, up to a carriage return or a newline. */
static void
img_job_segment(struct img_job *job)
{
	char	*s = job->seg, *end;
	double	 pct;

	job->seg[job->seglen] = '\0';
	job->seglen = 0;
	while (*s == ' ' || *s == '\t')
		s++;
	if (*s == '\0')
		return;
	if (*s == '(') {
		pct = strtod(s + 1, &end);
		if (end != s + 1 && strcmp(end, "/100%)") == 0) {
			if (job->progress != NULL)
				job->progress(pct, job->arg);
			return;
		}
	}
	img_job_keep(job, s, strlen(s));
}

static void
img_job_finish(struct img_job *job)
{
	struct qmp	*q;
	int		 status = job->status;

	LIST_REMOVE(job, entry);
	if (job->tick != NULL)
		event_free(job->tick);
	if ((q = job->qmp) != NULL) {
		job->qmp = NULL;
		qmp_free(q);
	}
	/* A QEMU job: it exited 0 after "quit" whatever the job did. */
	if (job->cmd != NULL && WIFEXITED(status) &&
	    WEXITSTATUS(status) == 0 && job->result != 1) {
		status = 1 << 8;	/* "exit status 1" */
		if (job->outlen == 0)
			img_job_keep(job, "the block job did not finish", 28);
	}
	if (job->done != NULL)
		job->done(status, job->out, job->arg);
	free(job->cmd);
	json_decref(job->cmdargs);
	free(job);
}

static void
img_job_read_cb(evutil_socket_t fd, short events, void *arg)
{
	struct img_job	*job = arg;
	char		 buf[4096];
	ssize_t		 n, i;

	n = read(fd, buf, sizeof buf);
	if (n == -1 && (errno == EAGAIN || errno == EINTR))
		return;
	for (i = 0; i < n; i++) {
		if (buf[i] == '\r' || buf[i] == '\n')
			img_job_segment(job);
		else if (job->seglen < sizeof job->seg - 1)
			job->seg[job->seglen++] = buf[i];
	}
	if (n > 0)
		return;
	img_job_segment(job);
	event_free(job->ev);
	job->ev = NULL;
	close(job->fd);
	job->fd = -1;
	if (job->reaped)
		img_job_finish(job);
}

/* A job for child pid whose output is read from fd, on the list. */
static struct img_job *
img_job_new(pid_t pid, int fd, img_job_progress_cb progress,
    img_job_done_cb done, void *arg)
{
	struct img_job	*job;

	job = xcalloc(1, sizeof *job);
	job->pid = pid;
	job->fd = fd;
	job->progress = progress;
	job->done = done;
	job->arg = arg;
	job->ev = event_new(qmpd->base, job->fd, EV_READ | EV_PERSIST,
	    img_job_read_cb, job);
	event_add(job->ev, NULL);
	LIST_INSERT_HEAD(&img_jobs, job, entry);
	return (job);
}

/*
 * In a job's child: die with qmpd, default signals unblocked, stdin from
 * /dev/null and stdout and stderr into out (the job's output pipe).
 */
static void
img_job_child(int out, pid_t parent)
{
	sigset_t	none;
	int		sig, null;

	if (prctl(PR_SET_PDEATHSIG, SIGKILL) == -1 || getppid() != parent)
		_exit(127);
	for (sig = 1; sig < NSIG; sig++)
		signal(sig, SIG_DFL);
	sigemptyset(&none);
	sigprocmask(SIG_SETMASK, &none, NULL);
	if ((null = open("/dev/null", O_RDONLY)) == -1 ||
	    dup2(null, STDIN_FILENO) == -1 || dup2(out, STDOUT_FILENO) == -1 ||
	    dup2(out, STDERR_FILENO) == -1)
		_exit(127);
}

/* In the child: fds, signals, priority, then exec. */
static void __attribute__((noreturn))
img_job_exec(char *const argv[], int out, int infd, pid_t parent)
{
	img_job_child(out, parent);
	if (infd != -1) {
		if (infd == 3)
			fcntl(3, F_SETFD, 0);
		else if (dup2(infd, 3) == -1)
			_exit(127);
	}
	close_range(infd != -1 ? 4 : 3, ~0U, 0);
	setpriority(PRIO_PROCESS, 0, IMG_JOB_NICE);
	execv(argv[0], argv);
	dprintf(STDERR_FILENO, "cannot run %s: %s\n", argv[0],
	    strerror(errno));
	_exit(127);
}

int
img_job_start(char *const argv[], int infd, img_job_progress_cb progress,
    img_job_done_cb done, void *arg, char **cause)
{
	sigset_t	 all, old;
	pid_t		 pid, self = getpid();
	int		 p[2];

	if (pipe2(p, O_CLOEXEC | O_NONBLOCK) == -1) {
		xasprintf(cause, "pipe: %s", strerror(errno));
		return (-1);
	}
	/* No handler of ours may run in the child before exec. */
	sigfillset(&all);
	sigprocmask(SIG_SETMASK, &all, &old);
	if ((pid = fork()) == -1) {
		sigprocmask(SIG_SETMASK, &old, NULL);
		xasprintf(cause, "fork %s: %s", argv[0], strerror(errno));
		close(p[0]);
		close(p[1]);
		return (-1);
	}
	if (pid == 0)
		img_job_exec(argv, p[1], infd, self);
	sigprocmask(SIG_SETMASK, &old, NULL);
	close(p[1]);

	img_job_new(pid, p[0], progress, done, arg);
	log_debug("%s: pid %ld", argv[0], (long)pid);
	return (0);
}

int
img_job_reaped(pid_t pid, int status)
{
	struct img_job	*job;

	LIST_FOREACH(job, &img_jobs, entry) {
		if (job->pid != pid || job->reaped)
			continue;
		job->reaped = 1;
		job->status = status;
		if (job->fd == -1)
			img_job_finish(job);
		return (1);
	}
	return (0);
}

/* Its QMP answer: the outcome of a job that has concluded; then quit. */
static void
img_job_qemu_query_cb(struct qmp *qmp, json_t *ret, const char *errclass,
    const char *errdesc, void *arg)
{
	struct img_job	*job = arg;
	json_t		*j;
	const char	*err;
	size_t		 i;

	if (job->result != 0)
		return;
	if (errclass != NULL) {
		/* Gone: its exit status and output say why. */
		if (strcmp(errclass, "Disconnected") == 0)
			return;
		img_job_keep(job, errdesc, strlen(errdesc));
		job->result = -1;
		qmp_execute(qmp, "quit", NULL, NULL, NULL);
		return;
	}
	json_array_foreach(ret, i, j) {
		if (strcmp(json_string_value(json_object_get(j, "id")) != NULL ?
		    json_string_value(json_object_get(j, "id")) : "", "img")
		    != 0)
			continue;
		if (strcmp(json_string_value(json_object_get(j, "status")) !=
		    NULL ? json_string_value(json_object_get(j, "status")) :
		    "", "concluded") != 0) {
			/* Still going: this was a progress poll. */
			json_int_t cur, tot;

			cur = json_integer_value(json_object_get(j,
			    "current-progress"));
			tot = json_integer_value(json_object_get(j,
			    "total-progress"));
			if (tot > 0 && job->progress != NULL)
				job->progress(100.0 * cur / tot, job->arg);
			return;
		}
		if ((err = json_string_value(json_object_get(j, "error"))) !=
		    NULL) {
			img_job_keep(job, err, strlen(err));
			job->result = -1;
		} else
			job->result = 1;
	}
	if (job->result == 0)
		return;
	if (job->result == 1 && job->progress != NULL)
		job->progress(100.0, job->arg);
	qmp_execute(qmp, "quit", NULL, NULL, NULL);
}

/* Every half second while the job runs: ask how far it got. */
static void
img_job_qemu_tick_cb(evutil_socket_t fd, short events, void *arg)
{
	struct img_job	*job = arg;
	struct timeval	 tv = { 0, IMG_JOB_TICK_MS * 1000 };

	if (job->qmp == NULL || job->result != 0)
		return;
	qmp_execute(job->qmp, "query-jobs", NULL, img_job_qemu_query_cb, job);
	evtimer_add(job->tick, &tv);
}

/* The job command's answer: an error ends QEMU, with the error kept. */
static void
img_job_qemu_started_cb(struct qmp *qmp, json_t *ret, const char *errclass,
    const char *errdesc, void *arg)
{
	struct img_job	*job = arg;

	if (errclass == NULL || job->result != 0 ||
	    strcmp(errclass, "Disconnected") == 0)
		return;
	img_job_keep(job, errdesc, strlen(errdesc));
	job->result = -1;
	qmp_execute(qmp, "quit", NULL, NULL, NULL);
}

/* The monitor is ready: start the job; or it closed: QEMU is going. */
static void
img_job_qemu_state_cb(struct qmp *qmp, enum qmp_state state,
    const char *cause, void *arg)
{
	struct img_job	*job = arg;
	struct timeval	 tv = { 0, IMG_JOB_TICK_MS * 1000 };

	if (state == QMP_READY) {
		qmp_execute(qmp, job->cmd, json_incref(job->cmdargs),
		    img_job_qemu_started_cb, job);
		evtimer_add(job->tick, &tv);
		return;
	}
	if (state == QMP_CLOSED && job->result == 0 && cause != NULL)
		log_debug("image job monitor: %s", cause);
}

/* JOB_STATUS_CHANGE to "concluded": fetch the outcome at once. */
static void
img_job_qemu_event_cb(struct qmp *qmp, const char *name, json_t *data,
    double ts, void *arg)
{
	struct img_job	*job = arg;
	const char	*status;

	if (strcmp(name, "JOB_STATUS_CHANGE") != 0 || job->result != 0)
		return;
	status = json_string_value(json_object_get(data, "status"));
	if (status != NULL && strcmp(status, "concluded") == 0)
		qmp_execute(qmp, "query-jobs", NULL, img_job_qemu_query_cb,
		    job);
}

static const struct qmp_callbacks img_job_qemu_callbacks = {
	img_job_qemu_state_cb,
	img_job_qemu_event_cb
};

/* -blockdev for node i of nodes: its fd set is i + 1. */
static char *
img_job_qemu_node(const struct img_job_node *nodes, u_int n, u_int i)
{
	json_t	*j;
	char	*s, name[16], file[32];
	int	 ro = !nodes[i].writable;

	snprintf(name, sizeof name, "%s", nodes[i].name);
	snprintf(file, sizeof file, "/dev/fdset/%u", i + 1);
	j = json_pack("{s:s,s:s,s:b,s:{s:s,s:s,s:b}}", "node-name", name,
	    "driver", nodes[i].format, "read-only", ro, "file", "driver",
	    "file", "filename", file, "read-only", ro);
	if (strcmp(nodes[i].format, "qcow2") == 0) {
		if (nodes[i].backing >= 0 && (u_int)nodes[i].backing < n)
			json_object_set_new(j, "backing", json_string(
			    nodes[nodes[i].backing].name));
		else
			json_object_set_new(j, "backing", json_null());
	}
	s = json_dumps(j, JSON_COMPACT);
	json_decref(j);
	return (s);
}

/* In the child: fds in place, the uid dropped to, then exec QEMU. */
static void __attribute__((noreturn))
img_job_qemu_exec(char *const argv[], int out, int mon,
    const struct img_job_node *nodes, u_int n, uid_t uid, pid_t parent)
{
	int		fd, *fds;
	u_int		i;

	/* Out of the way of 3.. first: they may sit where they must go. */
	fds = xcalloc(n + 1, sizeof *fds);
	if ((fds[0] = fcntl(mon, F_DUPFD_CLOEXEC, 64 + n)) == -1)
		_exit(127);
	for (i = 0; i < n; i++)
		if ((fds[i + 1] = fcntl(nodes[i].fd, F_DUPFD_CLOEXEC, 64 + n))
		    == -1)
			_exit(127);
	img_job_child(out, parent);
	for (i = 0; i <= n; i++)
		if (dup2(fds[i], IMG_JOB_FD0 + i) == -1)
			_exit(127);
	close_range(IMG_JOB_FD0 + n + 1, ~0U, 0);
	setpriority(PRIO_PROCESS, 0, IMG_JOB_NICE);
	if (uid == 0 || uid == (uid_t)-1 || setgroups(0, NULL) == -1 ||
	    setresgid(uid, uid, uid) == -1 || setresuid(uid, uid, uid) == -1 ||
	    setuid(0) != -1) {
		dprintf(STDERR_FILENO, "cannot drop to uid %lu\n",
		    (u_long)uid);
		_exit(127);
	}
	execv(argv[0], argv);
	fd = errno;
	dprintf(STDERR_FILENO, "cannot run %s: %s\n", argv[0], strerror(fd));
	_exit(127);
}

/*
 * Start QEMU as uid with the monitor on a socketpair and each node's fd
 * in its fd set; the job command follows once QMP is ready.
 */
int
img_job_qemu(uid_t uid, const struct img_job_node *nodes, u_int n,
    const char *cmd, json_t *cmdargs, img_job_progress_cb progress,
    img_job_done_cb done, void *arg, char **cause)
{
	struct img_job	*job;
	sigset_t	 all, old;
	pid_t		 pid, self = getpid();
	char		**argv, *s;
	int		 p[2] = { -1, -1 }, sv[2] = { -1, -1 };
	u_int		 i, a = 0;

	if (pipe2(p, O_CLOEXEC | O_NONBLOCK) == -1 ||
	    socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0,
	    sv) == -1) {
		xasprintf(cause, "pipe: %s", strerror(errno));
		goto fail;
	}
	argv = xcalloc(24 + 4 * n, sizeof *argv);
	argv[a++] = xstrdup(qmpd->qemu_binary);
	argv[a++] = xstrdup("-machine");
	argv[a++] = xstrdup("none");
	argv[a++] = xstrdup("-nodefaults");
	argv[a++] = xstrdup("-no-user-config");
	argv[a++] = xstrdup("-display");
	argv[a++] = xstrdup("none");
	argv[a++] = xstrdup("-S");
	argv[a++] = xstrdup("-sandbox");
	argv[a++] = xstrdup("on,obsolete=deny,elevateprivileges=deny,"
	    "spawn=deny,resourcecontrol=deny");
	argv[a++] = xstrdup("-chardev");
	xasprintf(&argv[a++], "socket,id=mon,fd=%d", IMG_JOB_FD0);
	argv[a++] = xstrdup("-mon");
	argv[a++] = xstrdup("chardev=mon,mode=control");
	for (i = 0; i < n; i++) {
		argv[a++] = xstrdup("-add-fd");
		xasprintf(&argv[a++], "fd=%u,set=%u", IMG_JOB_FD0 + 1 + i,
		    i + 1);
	}
	/* Bottom first: a node's backing must exist when it is added. */
	for (i = n; i-- > 0;) {
		argv[a++] = xstrdup("-blockdev");
		argv[a++] = img_job_qemu_node(nodes, n, i);
	}
	argv[a] = NULL;

	sigfillset(&all);
	sigprocmask(SIG_SETMASK, &all, &old);
	pid = fork();
	if (pid == 0)
		img_job_qemu_exec(argv, p[1], sv[1], nodes, n, uid, self);
	sigprocmask(SIG_SETMASK, &old, NULL);
	for (i = 0; i < a; i++)
		free(argv[i]);
	free(argv);
	if (pid == -1) {
		xasprintf(cause, "fork %s: %s", qmpd->qemu_binary,
		    strerror(errno));
		goto fail;
	}
	close(p[1]);
	close(sv[1]);

	job = img_job_new(pid, p[0], progress, done, arg);
	job->cmd = xstrdup(cmd);
	job->cmdargs = json_incref(cmdargs);
	job->tick = evtimer_new(qmpd->base, img_job_qemu_tick_cb, job);
	job->qmp = qmp_create(qmpd->base, sv[0], &img_job_qemu_callbacks, job,
	    IMG_JOB_QMP_TIMEOUT);
	s = json_dumps(cmdargs, JSON_COMPACT);
	log_debug("image job %s %s: QEMU pid %ld as uid %lu", cmd, s,
	    (long)pid, (u_long)uid);
	free(s);
	return (0);
fail:
	if (p[0] != -1) {
		close(p[0]);
		close(p[1]);
	}
	if (sv[0] != -1) {
		close(sv[0]);
		close(sv[1]);
	}
	return (-1);
}

/*
 * Who runs a job over image name: the uid of the VM whose disk it is (the
 * one that wrote it), or the helper uid kept for image jobs.
 */
uid_t
img_job_uid(const char *name)
{
	struct vm	*vm;
	uid_t		 uid = (uid_t)-1;

	if ((vm = img_vm_on(name)) != NULL)
		uid = vm_uid_lookup(vm->def.name);
	return (uid != (uid_t)-1 ? uid : vm_uid_helper());
}

/* Open chain c read-only, top first, as nodes n0.. for img_job_qemu. */
static struct img_job_node *
img_job_chain_nodes(const struct chain *c, u_int extra, char **cause)
{
	struct img_job_node	*nodes;
	u_int			 i;

	nodes = xcalloc(c->n + extra, sizeof *nodes);
	for (i = 0; i < c->n + extra; i++)
		nodes[i].fd = -1;
	for (i = 0; i < c->n; i++) {
		xasprintf((char **)&nodes[i].name, "n%u", i);
		nodes[i].format = c->links[i].format;
		nodes[i].backing = i + 1 < c->n ? (int)i + 1 : -1;
		nodes[i].fd = open(c->links[i].path, O_RDONLY | O_NOFOLLOW |
		    O_NONBLOCK | O_CLOEXEC);
		if (nodes[i].fd == -1) {
			xasprintf(cause, "%s: %s", c->links[i].path,
			    strerror(errno));
			return (nodes);
		}
	}
	return (nodes);
}

static void
img_job_nodes_free(struct img_job_node *nodes, u_int n)
{
	u_int	i;

	for (i = 0; i < n; i++) {
		if (nodes[i].fd != -1)
			close(nodes[i].fd);
		free((char *)nodes[i].name);
	}
	free(nodes);
}

/* pwrite all of buf at off. */
static int
img_job_pwrite(int fd, const uint8_t *buf, size_t len, off_t off)
{
	ssize_t	n;

	while (len > 0) {
		if ((n = pwrite(fd, buf, len, off)) == -1) {
			if (errno == EINTR)
				continue;
			return (-1);
		}
		buf += n;
		len -= n;
		off += n;
	}
	return (0);
}

/* Make path (a store temporary) an empty standalone qcow2 of size bytes. */
static int
img_job_empty(const char *path, uint64_t size, char **cause)
{
	struct qcow2_image	img;
	int			fd, rv = -1;

	memset(&img, 0, sizeof img);
	if (qcow2_write_build(NULL, NULL, size, &img, cause) != 0)
		return (-1);
	fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC,
	    0600);
	if (fd == -1 || ftruncate(fd, img.file_size) == -1 ||
	    img_job_pwrite(fd, img.header, img.header_len, 0) == -1 ||
	    img_job_pwrite(fd, img.reftable, sizeof img.reftable,
	    img.reftable_offset) == -1 ||
	    img_job_pwrite(fd, img.refblock, img.refblock_len,
	    img.refblock_offset) == -1)
		xasprintf(cause, "%s: %s", path, strerror(errno));
	else
		rv = 0;
	if (fd != -1)
		close(fd);
	if (rv != 0 && fd != -1)
		unlink(path);
	qcow2_write_clear(&img);
	return (rv);
}

/*
 * Flatten: copy what chain c shows into op->tmp, a new standalone qcow2
 * of the same size that qmpd makes first (blockdev-backup, sync full).
 */
int
img_job_flatten(struct img_op *op, const struct chain *c, uid_t uid)
{
	struct img_job_node	*nodes;
	json_t			*args;
	char			*cause = NULL;
	int			 rc;

	if (img_job_empty(op->tmp, c->links[0].size, &cause) != 0) {
		img_op_abort(op, cause);
		free(cause);
		return (-1);
	}
	nodes = img_job_chain_nodes(c, 1, &cause);
	if (cause == NULL) {
		nodes[c->n].name = xstrdup("target");
		nodes[c->n].format = "qcow2";
		nodes[c->n].writable = 1;
		nodes[c->n].backing = -1;
		nodes[c->n].fd = open(op->tmp, O_RDWR | O_NOFOLLOW | O_CLOEXEC);
		if (nodes[c->n].fd == -1)
			xasprintf(&cause, "%s: %s", op->tmp, strerror(errno));
	}
	if (cause != NULL) {
		img_op_abort(op, cause);
		free(cause);
		img_job_nodes_free(nodes, c->n + 1);
		return (-1);
	}
	args = json_pack("{s:s,s:s,s:s,s:s,s:b}", "job-id", "img", "device",
	    "n0", "target", "target", "sync", "full", "auto-dismiss", 0);
	rc = img_op_run_qemu(op, uid, nodes, c->n + 1, "blockdev-backup",
	    args);
	json_decref(args);
	img_job_nodes_free(nodes, c->n + 1);
	return (rc);
}

/*
 * Merge a snapshot away: chain c runs from the child (written by the
 * VM) down; what the child reads through links 1..base-1 is copied into
 * it, and it then backs onto link base, recorded as backing (a bare store
 * file name, format backing_fmt), or onto nothing when base is -1
 * (block-stream).
 */
int
img_job_merge(struct img_op *op, const struct chain *c, int base,
    const char *backing, uid_t uid)
{
	struct img_job_node	*nodes;
	json_t			*args;
	char			*cause = NULL;
	int			 rc;

	nodes = img_job_chain_nodes(c, 0, &cause);
	if (cause == NULL) {
		/* The child is written: open it again, read-write. */
		close(nodes[0].fd);
		nodes[0].writable = 1;
		nodes[0].fd = open(c->links[0].path, O_RDWR | O_NOFOLLOW |
		    O_NONBLOCK | O_CLOEXEC);
		if (nodes[0].fd == -1)
			xasprintf(&cause, "%s: %s", c->links[0].path,
			    strerror(errno));
	}
	if (cause != NULL) {
		img_op_abort(op, cause);
		free(cause);
		img_job_nodes_free(nodes, c->n);
		return (-1);
	}
	args = json_pack("{s:s,s:s,s:b}", "job-id", "img", "device", "n0",
	    "auto-dismiss", 0);
	if (base > 0 && (u_int)base < c->n) {
		json_object_set_new(args, "base-node",
		    json_string(nodes[base].name));
		json_object_set_new(args, "backing-file", json_string(backing));
	}
	rc = img_op_run_qemu(op, uid, nodes, c->n, "block-stream", args);
	json_decref(args);
	img_job_nodes_free(nodes, c->n);
	return (rc);
}
