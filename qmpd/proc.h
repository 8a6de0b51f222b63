/*
 * Helper processes the loop watches (nft, dnsmasq): spawned with an
 * optional text on stdin and stderr captured or sent to a log, reaped by
 * qmpd's SIGCHLD handler, which hands each status to proc_reaped().  The
 * exit callback runs from the loop once the process is reaped and its
 * output has reached EOF.
 */
#ifndef QDESK_QMPD_PROC_H
#define QDESK_QMPD_PROC_H

#include <sys/types.h>

/*
 * status is waitpid's; output is what the process wrote on stderr (at
 * most PROC_OUTPUT_MAX bytes, "" when sent to a log), borrowed.
 */
typedef void (*proc_cb)(pid_t, int status, const char *output, void *arg);

#define PROC_OUTPUT_MAX	2048

/*
 * Runs argv[0] (searched in PATH, then /usr/sbin) with input on its stdin
 * (NULL: /dev/null) and stdout and stderr into logfd when it is not -1,
 * else stderr captured.  timeout_ms > 0 kills it with SIGKILL after that
 * long.  Returns the pid, or -1 with cause (cb is then never called).
 */
pid_t	 proc_spawn(char *const argv[], const char *input, int logfd,
	    int timeout_ms, proc_cb cb, void *arg, char **cause);
/* The SIGCHLD handler's status for pid: 1 if it was one of ours, else 0. */
int	 proc_reaped(pid_t, int status);
/* Forget a process: its callback will not run (it keeps running). */
void	 proc_forget(pid_t);
/* Daemon exit: forget every process, leaving them running. */
void	 proc_shutdown(void);
/*
 * Start a process in a session of its own that is not our child (fork,
 * setsid, fork), as QEMU and swtpm run so that they outlive qmpd: child
 * runs in the grandchild with default signal handlers and must exec or
 * _exit.  No handler of ours runs in between.  Returns the grandchild's
 * pid, or -1 with cause ("could not fork WHAT").
 */
pid_t	 proc_fork_session(void (*child)(void *), void *arg, const char *what,
	    char **cause);
/* /proc/PID/cmdline into buf, NUL-terminated: its length, 0 if none. */
ssize_t	 proc_cmdline(pid_t, char *buf, size_t size);
/* "exit status 2", "killed by signal 9": for causes. */
const char *proc_status_text(int status, char *buf, size_t len);

#endif
