/*
 * QMP client tests, the transport side: file descriptors passed with a
 * command, pipelined commands, the oversized line (a forked child), line
 * classification, connecting to a unix socket, and one test against a
 * real qemu-system-x86_64.  The fake QEMU is qmp-fake.c.
 */
#include <sys/types.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <event2/event.h>
#include <jansson.h>

#include "check.h"
#include "compat.h"
#include "log.h"
#include "qmp.h"
#include "qmp-fake.h"

static void
hook_ok(struct peer *p, json_t *cmd, const char *name, json_int_t id)
{
	peer_replyf(p, "{\"return\": {}, \"id\": %lld}\n", (long long)id);
}

static int
same_file(int a, int b)
{
	struct stat	 sa, sb;

	if (fstat(a, &sa) == -1 || fstat(b, &sb) == -1)
		return (0);
	return (sa.st_dev == sb.st_dev && sa.st_ino == sb.st_ino);
}

/* The fd reaches the peer, on the right line, both when queued or not. */
static void
test_execute_fd(void)
{
	struct t	 t;
	struct reply	 r[5];
	char		 path[] = "/tmp/qdesk-test-qmp-XXXXXX";
	int		 fd, i;

	memset(r, 0, sizeof r);
	if ((fd = mkstemp(path)) == -1) {
		perror("mkstemp");
		CHECK(fd != -1);
		return;
	}
	unlink(path);

	t_setup(&t, 2000);
	t.peer.hook = hook_ok;
	CHECK(t_ready(&t));

	/* Output not yet written: the fd command waits for it to drain. */
	CHECK(qmp_execute(t.q, "before", NULL, t_reply_cb, &r[0]) == 0);
	CHECK(qmp_execute_fd(t.q, "getfd", json_pack("{s:s}", "fdname",
	    "vnc"), fd, t_reply_cb, &r[1]) == 0);
	CHECK(qmp_execute(t.q, "after", NULL, t_reply_cb, &r[2]) == 0);
	CHECK(run_until(&t, &r[2].fired, 2000));
	CHECK(r[0].fired && r[1].fired && r[2].fired);
	CHECK(r[1].class[0] == '\0');
	CHECK(r[0].seq < r[1].seq && r[1].seq < r[2].seq);
	CHECK(fcntl(fd, F_GETFD) != -1);	/* the caller keeps its fd */
	CHECK(t.peer.nfds == 1);
	CHECK(t.peer.nfds >= 1 && same_file(t.peer.fds[0], fd));
	CHECK(t.peer.nfds >= 1 && t.peer.fdline[0] == 2);
	CHECK_STR(line_execute(&t, 1), "before");
	CHECK_STR(line_execute(&t, 2), "getfd");
	CHECK_STR(line_execute(&t, 3), "after");

	/* Output idle: sent straight away with sendmsg. */
	CHECK(qmp_execute_fd(t.q, "add-fd", NULL, fd, t_reply_cb,
	    &r[3]) == 0);
	CHECK(run_until(&t, &r[3].fired, 2000));
	CHECK(t.peer.nfds == 2);
	CHECK(t.peer.nfds >= 2 && same_file(t.peer.fds[1], fd));
	CHECK(t.peer.nfds >= 2 && t.peer.fdline[1] == 4);
	CHECK_STR(line_execute(&t, 4), "add-fd");

	/*
	 * Socket buffer full and nothing queued in libevent: sendmsg says
	 * EAGAIN, the command waits for the socket to be writable.
	 */
	event_del(t.peer.ev);
	{
		char	 nl[4096];
		ssize_t	 n;

		memset(nl, '\n', sizeof nl);
		do
			n = write(t.qfd, nl, sizeof nl);
		while (n > 0);
		CHECK(n == -1 && errno == EAGAIN);
		while (write(t.qfd, nl, 1) == 1)
			;
	}
	CHECK(qmp_execute_fd(t.q, "getfd", NULL, fd, t_reply_cb,
	    &r[4]) == 0);
	reply_clear(&r[0]);
	CHECK(qmp_execute(t.q, "behind", NULL, t_reply_cb, &r[0]) == 0);
	run_for(&t, 50);
	CHECK(r[4].fired == 0);
	event_add(t.peer.ev, NULL);
	CHECK(run_until(&t, &r[0].fired, 2000));
	CHECK(r[4].fired == 1 && r[4].class[0] == '\0');
	CHECK(t.peer.nfds == 3);
	CHECK(t.peer.nfds >= 3 && same_file(t.peer.fds[2], fd));
	CHECK(t.peer.nfds >= 3 && t.peer.fdline[2] == 5);
	CHECK_STR(line_execute(&t, 5), "getfd");
	CHECK_STR(line_execute(&t, 6), "behind");
	reply_clear(&r[0]);
	reply_clear(&r[4]);

	/* Before READY the fd waits with its command. */
	t_teardown(&t);
	t_setup(&t, 2000);
	t.peer.hook = hook_ok;
	CHECK(qmp_execute_fd(t.q, "getfd", NULL, fd, t_reply_cb, &r[4]) == 0);
	peer_write(&t.peer, GREETING);
	CHECK(run_until(&t, &r[4].fired, 2000));
	CHECK(r[4].class[0] == '\0');
	CHECK(t.peer.nfds == 1 && same_file(t.peer.fds[0], fd));
	CHECK(qmp_execute_fd(t.q, "getfd", NULL, -1, t_reply_cb, &r[4]) == -1);
	t_teardown(&t);

	for (i = 0; i < 5; i++)
		reply_clear(&r[i]);
	close(fd);
}

static int	 pipe_reverse;

static void
hook_pipeline(struct peer *p, json_t *cmd, const char *name, json_int_t id)
{
	json_int_t	 i, first = id - 4;

	if (strcmp(name, "p4") != 0)
		return;
	for (i = 0; i < 5; i++) {
		json_int_t n = pipe_reverse ? 4 - i : i;
		peer_replyf(p, "{\"return\": {\"n\": %lld}, \"id\": %lld}\n",
		    (long long)n, (long long)(first + n));
	}
}

/* Five commands in flight; replies in order, then in reverse. */
static void
test_pipeline(void)
{
	struct t	 t;
	struct reply	 r[5];
	char		 name[16];
	int		 i, pass;

	for (pass = 0; pass < 2; pass++) {
		memset(r, 0, sizeof r);
		pipe_reverse = pass;
		t_setup(&t, 2000);
		t.peer.hook = hook_pipeline;
		CHECK(t_ready(&t));
		for (i = 0; i < 5; i++) {
			snprintf(name, sizeof name, "p%d", i);
			CHECK(qmp_execute(t.q, name, NULL, t_reply_cb,
			    &r[i]) == 0);
		}
		CHECK(run_until(&t, &r[pass ? 0 : 4].fired, 2000));
		for (i = 0; i < 5; i++) {
			CHECK(r[i].fired == 1);
			CHECK(json_integer_value(json_object_get(r[i].ret,
			    "n")) == i);
			if (i > 0 && !pass)
				CHECK(r[i - 1].seq < r[i].seq);
			if (i > 0 && pass)
				CHECK(r[i - 1].seq > r[i].seq);
		}
		for (i = 0; i < 5; i++)
			reply_clear(&r[i]);
		t_teardown(&t);
	}
}

/* A line over the cap closes the connection (written by a child). */
static void
test_long_line(void)
{
	struct t	 t;
	struct reply	 r = { 0 };
	pid_t		 pid;
	char		*big;
	size_t		 len = 17 * 1024 * 1024, off;
	ssize_t		 n;
	int		 fd;

	/*
	 * The command's timeout is not what is tested: long enough that a
	 * child starved on a busy machine still reaches the cap first (at
	 * load 60 it took over 5 s to write 17 MiB).
	 */
	t_setup(&t, 60000);
	t.peer.hook = hook_ok;
	CHECK(t_ready(&t));
	CHECK(qmp_execute(t.q, "big", NULL, t_reply_cb, &r) == 0);

	fd = t.peer.fd;
	switch ((pid = fork())) {
	case -1:
		CHECK(pid != -1);
		break;
	case 0:
		signal(SIGPIPE, SIG_DFL);
		close(t.qfd);		/* or the parent's close is no EOF */
		fcntl(fd, F_SETFL, 0);
		big = malloc(len);
		memset(big, 'x', len);
		memcpy(big, "{\"return\": \"", 12);
		for (off = 0; off < len; off += n)
			if ((n = write(fd, big + off, len - off)) <= 0)
				_exit(0);
		_exit(0);
	default:
		event_del(t.peer.ev);	/* the child owns the stream now */
		CHECK(run_until(&t, &t.closed, 60000));
		CHECK(strstr(t.cause, "over") != NULL);
		CHECK_STR(r.class, "Disconnected");
		peer_close(&t.peer);
		waitpid(pid, NULL, 0);
	}
	reply_clear(&r);
	t_teardown(&t);
}

/* The classifier on its own: by key, and the value must fit. */
static void
test_classify(void)
{
	static const struct {
		const char		*line;
		enum qmp_line_kind	 kind;
	} cases[] = {
		{ GREETING, QMP_LINE_GREETING },
		{ EV_STOP, QMP_LINE_EVENT },
		{ "{\"return\": {}, \"id\": 1}", QMP_LINE_RETURN },
		{ "{\"return\": [1]}", QMP_LINE_RETURN },
		{ "{\"error\": {\"class\": \"GenericError\", \"desc\": \"x\"}}",
		    QMP_LINE_ERROR },
		{ "{\"error\": \"x\"}", QMP_LINE_GARBAGE },
		{ "{\"event\": 1}", QMP_LINE_GARBAGE },
		{ "{\"QMP\": 1}", QMP_LINE_GARBAGE },
		{ "{\"foo\": 1}", QMP_LINE_GARBAGE },
		{ "[]", QMP_LINE_GARBAGE },
		{ "\"QMP\"", QMP_LINE_GARBAGE },
		{ "", QMP_LINE_GARBAGE },
		{ "{\"return\": {}", QMP_LINE_GARBAGE },
		{ "{\"return\": {}} trailing", QMP_LINE_GARBAGE },
	};
	json_t		*out;
	size_t		 i;

	for (i = 0; i < nitems(cases); i++) {
		out = (json_t *)1;
		CHECK(qmp_line_classify(cases[i].line, strlen(cases[i].line),
		    &out) == cases[i].kind);
		CHECK((out == NULL) == (cases[i].kind == QMP_LINE_GARBAGE));
		json_decref(out);
	}
	/* Length is respected: NUL bytes and no terminator. */
	CHECK(qmp_line_classify("{\"return\":1}\0zz", 15, &out) ==
	    QMP_LINE_GARBAGE);
	CHECK(qmp_line_classify("{\"return\":1}xyz", 12, &out) ==
	    QMP_LINE_RETURN);
	json_decref(out);
}

static void
test_connect_unix(void)
{
	char	 longpath[200];

	memset(longpath, 'a', sizeof longpath - 1);
	longpath[sizeof longpath - 1] = '\0';
	errno = 0;
	CHECK(qmp_connect_unix(longpath) == -1 && errno == ENAMETOOLONG);
	CHECK(qmp_connect_unix("/nonexistent/qdesk/q.sock") == -1 &&
	    errno == ENOENT);
}

static int
in_path(const char *prog)
{
	const char	*path = getenv("PATH");
	char		 dir[4096], file[4200];
	const char	*p, *e;

	if (path == NULL)
		path = "/usr/bin:/bin";
	for (p = path; *p != '\0'; p = *e ? e + 1 : e) {
		e = strchr(p, ':');
		if (e == NULL)
			e = p + strlen(p);
		snprintf(dir, sizeof dir, "%.*s", (int)(e - p), p);
		snprintf(file, sizeof file, "%s/%s", dir[0] ? dir : ".", prog);
		if (access(file, X_OK) == 0)
			return (1);
	}
	return (0);
}

/* The real thing: QEMU with -machine none, query-status, quit. */
static void
test_real_qemu(void)
{
	struct t	 t;
	struct reply	 r = { 0 }, rq = { 0 };
	char		 dir[] = "/tmp/qdesk-qmp-XXXXXX", sock[128], arg[160];
	struct timeval	 tv = { 0, 10000 };
	struct stat	 st;
	pid_t		 pid, w = 0;
	int		 fd = -1, i, status, devnull;

	/* The suite installs QEMU (scripts/setup): its absence is a failure. */
	if (!in_path("qemu-system-x86_64")) {
		fprintf(stderr, "no qemu-system-x86_64 in PATH: install "
		    "qemu-system-x86 (scripts/setup)\n");
		CHECK(!"qemu-system-x86_64 in PATH");
		return;
	}
	if (mkdtemp(dir) == NULL) {
		CHECK(!"mkdtemp");
		return;
	}
	snprintf(sock, sizeof sock, "%s/q.sock", dir);
	snprintf(arg, sizeof arg, "unix:%s,server=on,wait=off", sock);
	if ((pid = fork()) == 0) {
		if ((devnull = open("/dev/null", O_RDWR)) != -1) {
			dup2(devnull, 0);
			dup2(devnull, 1);
		}
		execlp("qemu-system-x86_64", "qemu-system-x86_64", "-accel",
		    "tcg", "-machine", "none", "-nodefaults", "-display",
		    "none", "-S", "-qmp", arg, (char *)NULL);
		_exit(127);
	}
	CHECK(pid > 0);
	for (i = 0; i < 500 && pid > 0; i++) {
		if (stat(sock, &st) == 0 &&
		    (fd = qmp_connect_unix(sock)) != -1)
			break;
		if (waitpid(pid, &status, WNOHANG) == pid) {
			w = pid;
			break;
		}
		usleep(10000);
	}
	CHECK(fd != -1);
	if (fd != -1) {
		memset(&t, 0, sizeof t);
		cur = &t;
		t.base = event_base_new();
		t.tick = event_new(t.base, -1, EV_PERSIST, tick_cb, NULL);
		event_add(t.tick, &tv);
		t.peer.fd = -1;
		t.q = qmp_create(t.base, fd, &t_callbacks, &t, 5000);
		CHECK(qmp_execute(t.q, "query-status", NULL, t_reply_cb,
		    &r) == 0);
		CHECK(run_until(&t, &r.fired, 5000));
		CHECK(t.ready == 1);
		CHECK(r.ret != NULL);
		CHECK_STR(json_string_value(json_object_get(r.ret, "status")),
		    "prelaunch");
		CHECK(json_is_false(json_object_get(r.ret, "running")));
		CHECK(qmp_execute(t.q, "quit", NULL, t_reply_cb, &rq) == 0);
		CHECK(run_until(&t, &t.closed, 5000));
		/* quit's reply usually beats the EOF; either is fine. */
		CHECK(rq.fired == 1);
		CHECK(rq.class[0] == '\0' || strcmp(rq.class,
		    "Disconnected") == 0);
		t_teardown(&t);
	}
	for (i = 0; i < 500 && w != pid; i++) {
		if ((w = waitpid(pid, &status, WNOHANG)) == pid)
			break;
		usleep(10000);
	}
	if (w != pid) {
		kill(pid, SIGKILL);
		waitpid(pid, &status, 0);
		CHECK(!"QEMU did not quit");
	} else
		CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 0);
	unlink(sock);
	rmdir(dir);
	reply_clear(&r);
	reply_clear(&rq);
}

int
main(void)
{
	signal(SIGPIPE, SIG_IGN);
	log_init("test-qmp-io", 1, getenv("QDESK_DEBUG") != NULL);

	test_classify();
	test_connect_unix();
	test_execute_fd();
	test_pipeline();
	test_long_line();
	test_real_qemu();
	qmp_fake_checks(&check_count, &check_failures);
	return (check_exit());
}
