/*
 * Helper processes watched by the loop: nft runs fed through a socket on
 * their stdin, dnsmasq in the foreground with its log in a file.  Nothing
 * here waits: stdin is written and stderr read as the loop says they are
 * ready, and the status arrives from qmpd's SIGCHLD handler.
 */
#include <sys/socket.h>
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
#include "file.h"
#include "log.h"
#include "proc.h"
#include "qmpd.h"
#include "xmalloc.h"

struct proc {
	pid_t			 pid;
	proc_cb			 cb;
	void			*arg;
	int			 status;
	int			 reaped;

	int			 in_fd;		/* our end of its stdin */
	struct event		*in_ev;
	char			*input;
	size_t			 in_len;
	size_t			 in_off;

	int			 err_fd;	/* its stderr, or -1 */
	struct event		*err_ev;
	char			 output[PROC_OUTPUT_MAX + 1];
	size_t			 out_len;

	struct event		*timer;
	struct event		*done_ev;
	LIST_ENTRY(proc)	 entry;
};
static LIST_HEAD(, proc)	procs = LIST_HEAD_INITIALIZER(procs);

/* One end of a pipe to the process: its event, then the fd. */
static void
proc_close_pipe(struct event **ev, int *fd)
{
	if (*ev != NULL) {
		event_free(*ev);
		*ev = NULL;
	}
	if (*fd != -1) {
		close(*fd);
		*fd = -1;
	}
}

static void
proc_close_in(struct proc *p)
{
	proc_close_pipe(&p->in_ev, &p->in_fd);
	free(p->input);
	p->input = NULL;
}

static void
proc_close_err(struct proc *p)
{
	proc_close_pipe(&p->err_ev, &p->err_fd);
}

/* Frees p, which is off the list already. */
static void
proc_free(struct proc *p)
{
	proc_close_in(p);
	proc_close_err(p);
	if (p->timer != NULL)
		event_free(p->timer);
	if (p->done_ev != NULL)
		event_free(p->done_ev);
	free(p);
}

static void
proc_done_cb(evutil_socket_t fd, short events, void *arg)
{
	struct proc	*p = arg;
	size_t		 len = p->out_len;

	/* Trailing newlines go: the output ends up inside a cause. */
	while (len > 0 && (p->output[len - 1] == '\n' ||
	    p->output[len - 1] == ' '))
		len--;
	p->output[len] = '\0';
	/* Off the list first: the callback may spawn or forget others. */
	LIST_REMOVE(p, entry);
	if (p->cb != NULL)
		p->cb(p->pid, p->status, p->output, p->arg);
	proc_free(p);
}

/* Both the status and stderr's EOF are in: run the callback from the loop. */
static void
proc_check_done(struct proc *p)
{
	struct timeval	tv = { 0, 0 };

	if (!p->reaped || p->err_fd != -1 || p->done_ev != NULL)
		return;
	proc_close_in(p);
	if (p->timer != NULL)
		evtimer_del(p->timer);
	p->done_ev = evtimer_new(qmpd->base, proc_done_cb, p);
	evtimer_add(p->done_ev, &tv);
}

static void
proc_in_cb(evutil_socket_t fd, short events, void *arg)
{
	struct proc	*p = arg;
	ssize_t		 n;

	n = send(p->in_fd, p->input + p->in_off, p->in_len - p->in_off,
	    MSG_NOSIGNAL | MSG_DONTWAIT);
	if (n == -1 && (errno == EAGAIN || errno == EINTR))
		return;
	if (n > 0)
		p->in_off += n;
	/* Done, or the process closed its stdin: either way, stop here. */
	if (n <= 0 || p->in_off == p->in_len)
		proc_close_in(p);
}

static void
proc_err_cb(evutil_socket_t fd, short events, void *arg)
{
	struct proc	*p = arg;
	char		 sink[512];
	ssize_t		 n;

	/* Keep the start of the message, discard the rest. */
	if (p->out_len < PROC_OUTPUT_MAX)
		n = read(fd, p->output + p->out_len,
		    PROC_OUTPUT_MAX - p->out_len);
	else
		n = read(fd, sink, sizeof sink);
	if (n == -1 && (errno == EAGAIN || errno == EINTR))
		return;
	if (n > 0) {
		if (p->out_len < PROC_OUTPUT_MAX)
			p->out_len += n;
		return;
	}
	proc_close_err(p);
	proc_check_done(p);
}

static void
proc_timeout_cb(evutil_socket_t fd, short events, void *arg)
{
	struct proc	*p = arg;

	log_warnx("pid %ld did not finish in time, killing it", (long)p->pid);
	kill(p->pid, SIGKILL);
}

/* In the child: std fds, default signals, nothing else inherited, exec. */
static void __attribute__((noreturn))
proc_exec(char *const argv[], int in, int out, int err)
{
	char		*path;
	sigset_t	 none;
	int		 sig;

	if (dup2(in, STDIN_FILENO) == -1 || dup2(out, STDOUT_FILENO) == -1 ||
	    dup2(err, STDERR_FILENO) == -1)
		_exit(127);
	for (sig = 1; sig < NSIG; sig++)
		signal(sig, SIG_DFL);
	sigemptyset(&none);
	sigprocmask(SIG_SETMASK, &none, NULL);
	close_range(STDERR_FILENO + 1, ~0U, 0);
	execvp(argv[0], argv);
	if (strchr(argv[0], '/') == NULL) {
		xasprintf(&path, "/usr/sbin/%s", argv[0]);
		execv(path, argv);
	}
	dprintf(STDERR_FILENO, "cannot run %s: %s\n", argv[0],
	    strerror(errno));
	_exit(127);
}

pid_t
proc_spawn(char *const argv[], const char *input, int logfd, int timeout_ms,
    proc_cb cb, void *arg, char **cause)
{
	struct proc	*p;
	struct timeval	 tv;
	int		 in[2] = { -1, -1 }, err[2] = { -1, -1 }, null = -1;
	int		 cin, cout, cerr;
	sigset_t	 all, old;
	pid_t		 pid;

	if ((null = open("/dev/null", O_RDWR | O_CLOEXEC)) == -1) {
		xasprintf(cause, "/dev/null: %s", strerror(errno));
		return (-1);
	}
	/* Non-blocking on our ends only: the child's read and write block. */
	if (input != NULL && (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC,
	    0, in) == -1 || fcntl(in[0], F_SETFL, O_NONBLOCK) == -1)) {
		xasprintf(cause, "socketpair: %s", strerror(errno));
		goto fail;
	}
	if (logfd == -1 && (pipe2(err, O_CLOEXEC) == -1 ||
	    fcntl(err[0], F_SETFL, O_NONBLOCK) == -1)) {
		xasprintf(cause, "pipe: %s", strerror(errno));
		goto fail;
	}
	cin = input != NULL ? in[1] : null;
	cout = logfd != -1 ? logfd : null;
	cerr = logfd != -1 ? logfd : err[1];
	/* No handler of ours may run in the child before exec. */
	sigfillset(&all);
	sigprocmask(SIG_SETMASK, &all, &old);
	if ((pid = fork()) == -1) {
		sigprocmask(SIG_SETMASK, &old, NULL);
		xasprintf(cause, "fork %s: %s", argv[0], strerror(errno));
		goto fail;
	}
	if (pid == 0)
		proc_exec(argv, cin, cout, cerr);
	sigprocmask(SIG_SETMASK, &old, NULL);
	close(null);
	if (in[1] != -1)
		close(in[1]);
	if (err[1] != -1)
		close(err[1]);

	p = xcalloc(1, sizeof *p);
	p->pid = pid;
	p->cb = cb;
	p->arg = arg;
	p->in_fd = in[0];
	p->err_fd = err[0];
	LIST_INSERT_HEAD(&procs, p, entry);
	if (input != NULL) {
		p->input = xstrdup(input);
		p->in_len = strlen(input);
		if (p->in_len == 0)
			proc_close_in(p);
		else {
			p->in_ev = event_new(qmpd->base, p->in_fd,
			    EV_WRITE | EV_PERSIST, proc_in_cb, p);
			event_add(p->in_ev, NULL);
		}
	}
	if (p->err_fd != -1) {
		p->err_ev = event_new(qmpd->base, p->err_fd,
		    EV_READ | EV_PERSIST, proc_err_cb, p);
		event_add(p->err_ev, NULL);
	}
	if (timeout_ms > 0) {
		p->timer = evtimer_new(qmpd->base, proc_timeout_cb, p);
		tv.tv_sec = timeout_ms / 1000;
		tv.tv_usec = (timeout_ms % 1000) * 1000;
		evtimer_add(p->timer, &tv);
	}
	log_debug("%s: pid %ld", argv[0], (long)pid);
	return (pid);
fail:
	close(null);
	if (in[0] != -1) {
		close(in[0]);
		close(in[1]);
	}
	if (err[0] != -1) {
		close(err[0]);
		close(err[1]);
	}
	return (-1);
}

int
proc_reaped(pid_t pid, int status)
{
	struct proc	*p;

	LIST_FOREACH(p, &procs, entry) {
		if (p->pid == pid && !p->reaped) {
			p->status = status;
			p->reaped = 1;
			proc_check_done(p);
			return (1);
		}
	}
	return (0);
}

void
proc_forget(pid_t pid)
{
	struct proc	*p;

	LIST_FOREACH(p, &procs, entry) {
		if (p->pid == pid) {
			LIST_REMOVE(p, entry);
			proc_free(p);
			return;
		}
	}
}

void
proc_shutdown(void)
{
	struct proc	*p;

	while ((p = LIST_FIRST(&procs)) != NULL) {
		LIST_REMOVE(p, entry);
		proc_free(p);
	}
}

const char *
proc_status_text(int status, char *buf, size_t len)
{
	if (WIFEXITED(status))
		snprintf(buf, len, "exit status %d", WEXITSTATUS(status));
	else if (WIFSIGNALED(status))
		snprintf(buf, len, "killed by signal %d", WTERMSIG(status));
	else
		snprintf(buf, len, "status %#x", status);
	return (buf);
}

pid_t
proc_fork_session(void (*child)(void *), void *arg, const char *what,
    char **cause)
{
	sigset_t	 all, old;
	pid_t		 mid, pid = -1;
	int		 pidpipe[2], status;

	if (pipe2(pidpipe, O_CLOEXEC) == -1) {
		xasprintf(cause, "pipe: %s", strerror(errno));
		return (-1);
	}
	sigfillset(&all);
	sigprocmask(SIG_SETMASK, &all, &old);
	if ((mid = fork()) == -1) {
		sigprocmask(SIG_SETMASK, &old, NULL);
		xasprintf(cause, "fork: %s", strerror(errno));
		close(pidpipe[0]);
		close(pidpipe[1]);
		return (-1);
	}
	if (mid == 0) {
		sigset_t	none;
		pid_t		gc;
		int		sig;

		for (sig = 1; sig < NSIG; sig++)
			signal(sig, SIG_DFL);
		setsid();
		if ((gc = fork()) == 0) {
			sigemptyset(&none);
			sigprocmask(SIG_SETMASK, &none, NULL);
			child(arg);
			_exit(127);
		}
		(void)write(pidpipe[1], &gc, sizeof gc);
		_exit(gc == -1 ? 1 : 0);
	}
	sigprocmask(SIG_SETMASK, &old, NULL);
	close(pidpipe[1]);
	while (waitpid(mid, &status, 0) == -1 && errno == EINTR)
		;
	if (read(pidpipe[0], &pid, sizeof pid) != sizeof pid || pid <= 0) {
		xasprintf(cause, "could not fork %s", what);
		pid = -1;
	}
	close(pidpipe[0]);
	return (pid);
}

ssize_t
proc_cmdline(pid_t pid, char *buf, size_t size)
{
	char	path[64];

	snprintf(path, sizeof path, "/proc/%ld/cmdline", (long)pid);
	return (file_read_small(path, buf, size));
}
