/*
 * Image jobs: qemu-img runs that last as long as an image is big (import,
 * flatten, merging a snapshot away). The child's stdout and stderr come
 * back on one pipe the loop reads: "(12.50/100%)" segments, which
 * qemu-img -p ends with a carriage return, are progress; other lines are
 * kept for the error message. The status comes from qmpd's SIGCHLD
 * handler; the done callback runs once both it and the pipe's EOF are in.
 */
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/wait.h>

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <event2/event.h>

#include "compat.h"
#include "img.h"
#include "log.h"
#include "qmpd.h"
#include "xmalloc.h"

#define IMG_JOB_OUTPUT_MAX	1024	/* error text kept */
#define IMG_JOB_NICE		10	/* VMs first */

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
	LIST_REMOVE(job, entry);
	if (job->done != NULL)
		job->done(job->status, job->out, job->arg);
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

/* In the child: fds, signals, priority, then exec. */
static void __attribute__((noreturn))
img_job_exec(char *const argv[], int out, int infd, pid_t parent)
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
	struct img_job	*job;
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

	job = xcalloc(1, sizeof *job);
	job->pid = pid;
	job->fd = p[0];
	job->progress = progress;
	job->done = done;
	job->arg = arg;
	job->ev = event_new(qmpd->base, job->fd, EV_READ | EV_PERSIST,
	    img_job_read_cb, job);
	event_add(job->ev, NULL);
	LIST_INSERT_HEAD(&img_jobs, job, entry);
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
