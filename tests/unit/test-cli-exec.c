/*
 * The real build/cli/qdesk binary against a tiny fake qmpd: a child that
 * listens on a temporary unix socket, greets, and answers each request
 * with canned lines. Checks the exit codes 0/1/2/3, the "qdesk: CLASS:
 * desc" line, the request that was sent, and the output.
 *
 * usage: test-cli-exec /path/to/qdesk
 */
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <jansson.h>

#include "check.h"

static const char	*qdesk;
static char		 dir[] = "/tmp/test-cli-exec.XXXXXX";
static char		 sockpath[PATH_MAX];
static char		 logpath[PATH_MAX];

#define HELLO	"{\"qdesk\":{\"version\":\"0.1.0\",\"protocol\":1}}\n"

/* One request the fake server reads, and what it does about it. */
struct step {
	int		 delay_ms;	/* before answering */
	const char	*reply;		/* lines to send; NULL: hang up */
};

static void
fake_write(int fd, const char *s, size_t len)
{
	ssize_t	n;

	while (len > 0) {
		if ((n = write(fd, s, len)) <= 0)
			_exit(1);
		s += n;
		len -= n;
	}
}

/* Read one line from fd into the log file; 0 at EOF. */
static int
fake_read_request(int fd, FILE *log)
{
	char	c;
	ssize_t	n;
	int	any = 0;

	while ((n = read(fd, &c, 1)) == 1) {
		any = 1;
		fputc(c, log);
		if (c == '\n')
			break;
	}
	fflush(log);
	return (any);
}

static void
fake_address(struct sockaddr_un *sun, const char *path)
{
	memset(sun, 0, sizeof *sun);
	sun->sun_family = AF_UNIX;
	if (strlen(path) >= sizeof sun->sun_path) {
		fprintf(stderr, "socket path too long: %s\n", path);
		exit(1);
	}
	memcpy(sun->sun_path, path, strlen(path) + 1);
}

/*
 * Send a canned reply line by line; "#sleep MS" pauses and "#close" hangs
 * up, so a script can pace progress lines or end an event stream.
 */
static void
fake_reply(int fd, const char *reply)
{
	struct timespec	 ts;
	const char	*nl;
	size_t		 len;
	int		 ms;

	for (; *reply != '\0'; reply += len) {
		nl = strchr(reply, '\n');
		len = nl != NULL ? (size_t)(nl - reply) + 1 : strlen(reply);
		if (sscanf(reply, "#sleep %d", &ms) == 1) {
			ts.tv_sec = ms / 1000;
			ts.tv_nsec = ms % 1000 * 1000000L;
			nanosleep(&ts, NULL);
		} else if (strncmp(reply, "#close", 6) == 0)
			_exit(0);
		else
			fake_write(fd, reply, len);
	}
}

/*
 * Start the fake qmpd: greet with hello (NULL: HELLO), then per step read
 * one request and send the step's reply; then wait for the client to
 * close. The socket listens before fork so the client never races it.
 */
static pid_t
fake_start(const char *hello, const struct step *steps, int nsteps)
{
	struct sockaddr_un	 sun;
	struct timespec		 ts;
	FILE			*log;
	pid_t			 pid;
	char			 c;
	int			 lfd, fd, i;

	unlink(sockpath);
	unlink(logpath);
	fake_address(&sun, sockpath);
	if ((lfd = socket(AF_UNIX, SOCK_STREAM, 0)) == -1 ||
	    bind(lfd, (struct sockaddr *)&sun, sizeof sun) == -1 ||
	    listen(lfd, 4) == -1) {
		perror("fake qmpd");
		exit(1);
	}
	if ((pid = fork()) == -1) {
		perror("fork");
		exit(1);
	}
	if (pid != 0) {
		close(lfd);
		return (pid);
	}

	alarm(30);
	if ((fd = accept(lfd, NULL, NULL)) == -1)
		_exit(1);
	if ((log = fopen(logpath, "w")) == NULL)
		_exit(1);
	hello = hello != NULL ? hello : HELLO;
	fake_write(fd, hello, strlen(hello));
	for (i = 0; i < nsteps; i++) {
		if (!fake_read_request(fd, log))
			_exit(0);
		if (steps[i].delay_ms != 0) {
			ts.tv_sec = steps[i].delay_ms / 1000;
			ts.tv_nsec = steps[i].delay_ms % 1000 * 1000000L;
			nanosleep(&ts, NULL);
		}
		if (steps[i].reply == NULL)
			_exit(0);
		fake_reply(fd, steps[i].reply);
	}
	while (read(fd, &c, 1) == 1)
		;
	_exit(0);
}

static void
fake_wait(pid_t pid)
{
	int	status;

	if (waitpid(pid, &status, 0) == -1 || !WIFEXITED(status) ||
	    WEXITSTATUS(status) != 0)
		fprintf(stderr, "fake qmpd did not exit cleanly\n");
}

static char *
slurp(const char *path)
{
	FILE	*f;
	char	*buf;
	long	 len;

	if ((f = fopen(path, "r")) == NULL)
		return (strdup(""));
	fseek(f, 0, SEEK_END);
	len = ftell(f);
	rewind(f);
	buf = malloc(len + 1);
	buf[fread(buf, 1, len, f)] = '\0';
	fclose(f);
	return (buf);
}

/* The output of the last run, and the requests the fake server read. */
static char	*out, *err, *requests;

/*
 * Run qdesk with args (NULL-terminated after the binary), stdin from the
 * text in, and return its exit status; out and err hold what it printed.
 */
static int
run(const char *in, ...)
{
	char		*argv[32], path[PATH_MAX + 16];
	const char	*a;
	va_list		 ap;
	pid_t		 pid;
	int		 argc = 0, status, fd;
	FILE		*f;

	argv[argc++] = (char *)qdesk;
	va_start(ap, in);
	while ((a = va_arg(ap, const char *)) != NULL && argc < 31)
		argv[argc++] = (char *)a;
	va_end(ap);
	argv[argc] = NULL;

	snprintf(path, sizeof path, "%s/stdin", dir);
	f = fopen(path, "w");
	fputs(in != NULL ? in : "", f);
	fclose(f);
	if ((pid = fork()) == 0) {
		fd = open(path, O_RDONLY);
		dup2(fd, 0);
		snprintf(path, sizeof path, "%s/stdout", dir);
		fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
		dup2(fd, 1);
		snprintf(path, sizeof path, "%s/stderr", dir);
		fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
		dup2(fd, 2);
		execv(qdesk, argv);
		_exit(127);
	}
	waitpid(pid, &status, 0);
	free(out);
	free(err);
	free(requests);
	snprintf(path, sizeof path, "%s/stdout", dir);
	out = slurp(path);
	snprintf(path, sizeof path, "%s/stderr", dir);
	err = slurp(path);
	requests = slurp(logpath);
	if (!WIFEXITED(status))
		return (-1);
	return (WEXITSTATUS(status));
}

/* Run against a fake server that answers one request with reply. */
static int
run1(const char *reply, ...)
{
	struct step	 step = { 0, reply };
	const char	*argv[32];
	va_list		 ap;
	pid_t		 pid;
	int		 n = 0, ex;

	va_start(ap, reply);
	while ((argv[n] = va_arg(ap, const char *)) != NULL && n < 30)
		n++;
	va_end(ap);
	argv[n] = NULL;
	pid = fake_start(NULL, &step, 1);
	ex = run(NULL, "--socket", sockpath, argv[0], argv[1], argv[2],
	    argv[3], argv[4], argv[5], argv[6], argv[7], (char *)NULL);
	fake_wait(pid);
	return (ex);
}

/* Whether the n-th request line (from 0) equals the JSON text want. */
static int
request_is(int n, const char *want)
{
	const char	*p = requests;
	json_t		*got, *w;
	int		 eq;

	while (n-- > 0 && p != NULL && (p = strchr(p, '\n')) != NULL)
		p++;
	if (p == NULL || *p == '\0') {
		fprintf(stderr, "no request %d in: %s\n", n, requests);
		return (0);
	}
	got = json_loadb(p, strcspn(p, "\n"), 0, NULL);
	w = json_loads(want, 0, NULL);
	eq = got != NULL && w != NULL && json_equal(got, w);
	if (!eq)
		fprintf(stderr, "request: %.*s\nwanted:  %s\n",
		    (int)strcspn(p, "\n"), p, want);
	json_decref(got);
	json_decref(w);
	return (eq);
}

static int
starts(const char *s, const char *prefix)
{
	if (strncmp(s, prefix, strlen(prefix)) == 0)
		return (1);
	fprintf(stderr, "\"%s\" does not start with \"%s\"\n", s, prefix);
	return (0);
}

static void
test_exit_codes(void)
{
	char	path[PATH_MAX + 16];
	pid_t	pid;
	struct step step = { 0, "{\"id\":1,\"return\":{\"name\":\"desk1\","
	    "\"state\":\"running\"}}\n" };

	/* 0: a return, printed as "name: state". */
	CHECK(run1("{\"id\":1,\"return\":{\"name\":\"desk1\",\"state\":"
	    "\"running\",\"pid\":42}}\n", "vm", "start", "desk1", NULL) == 0);
	CHECK_STR(out, "desk1: running\n");
	CHECK_STR(err, "");
	CHECK(request_is(0, "{\"id\":1,\"cmd\":\"vm.start\","
	    "\"args\":{\"name\":\"desk1\"}}"));

	/* 1: an error from the daemon, one line on stderr. */
	CHECK(run1("{\"id\":1,\"error\":{\"class\":\"NotFound\","
	    "\"desc\":\"no VM named desk1\"}}\n", "vm", "kill", "desk1",
	    NULL) == 1);
	CHECK_STR(out, "");
	CHECK_STR(err, "qdesk: NotFound: no VM named desk1\n");
	CHECK(request_is(0, "{\"id\":1,\"cmd\":\"vm.kill\","
	    "\"args\":{\"name\":\"desk1\"}}"));

	/* 2: usage errors never reach the daemon. */
	unlink(logpath);
	CHECK(run(NULL, "--socket", sockpath, "vm", "start", NULL) == 2);
	CHECK(starts(err, "qdesk: missing NAME\nusage: qdesk vm start NAME\n"));
	CHECK_STR(out, "");
	CHECK(run(NULL, "--socket", sockpath, "vm", "create", "d",
	    "--memory", "abc", NULL) == 2);
	CHECK(starts(err, "qdesk: --memory wants a whole number, not 'abc'\n"
	    "usage: qdesk vm create NAME"));
	CHECK(run(NULL, "vm", "create", "d", "--disk", "/nonexistent/d.img",
	    NULL) == 2);
	CHECK(starts(err, "qdesk: --disk '/nonexistent/d.img': No such file"));
	CHECK(run(NULL, "frobnicate", NULL) == 2);
	CHECK(starts(err, "qdesk: unknown command 'frobnicate'\nusage: "));
	CHECK(run(NULL, "vm", "frobnicate", NULL) == 2);
	CHECK(starts(err, "qdesk: vm: unknown command 'frobnicate'\n"
	    "commands:\n  qdesk vm create"));
	CHECK(run(NULL, NULL) == 2);
	CHECK(run(NULL, "--timeout", "x", "status", NULL) == 2);
	CHECK(starts(err, "qdesk: --timeout wants a whole number"));

	/* Help goes to stdout with status 0. */
	CHECK(run(NULL, "help", NULL) == 0);
	CHECK(strstr(out, "  qdesk vm start NAME\n") != NULL);
	CHECK(strstr(out, "  qdesk pool resize NAME N\n") != NULL);
	CHECK(run(NULL, "image", NULL) == 0);
	CHECK(starts(out, "commands:\n  qdesk image import NAME FILE"));
	CHECK(strstr(out, "qdesk vm") == NULL);
	CHECK(run(NULL, "vm", "stop", "--help", NULL) == 0);
	CHECK_STR(out, "usage: qdesk vm stop NAME [--force] [--timeout S]\n");

	/* 3: nothing at the path, or nobody listening. */
	snprintf(path, sizeof path, "%s/none.sock", dir);
	CHECK(run(NULL, "--socket", path, "status", NULL) == 3);
	CHECK(starts(err, "qdesk: cannot reach qmpd at "));
	CHECK(strstr(err, "none.sock: No such file or directory") != NULL);
	CHECK(strstr(err, "is qmpd running?") != NULL);
	CHECK(strchr(err, '\n') == err + strlen(err) - 1);
	{
		struct sockaddr_un	sun;
		int			fd;

		fake_address(&sun, path);
		fd = socket(AF_UNIX, SOCK_STREAM, 0);
		CHECK(bind(fd, (struct sockaddr *)&sun, sizeof sun) == 0);
		close(fd);	/* the file stays, nobody listens */
	}
	CHECK(run(NULL, "--socket", path, "vm", "list", NULL) == 3);
	CHECK(strstr(err, "none.sock: Connection refused") != NULL);

	/* The socket from QDESK_SOCKET, and --socket over it. */
	pid = fake_start(NULL, &step, 1);
	setenv("QDESK_SOCKET", sockpath, 1);
	CHECK(run(NULL, "vm", "resume", "desk1", NULL) == 0);
	CHECK_STR(out, "desk1: running\n");
	fake_wait(pid);
	setenv("QDESK_SOCKET", path, 1);
	pid = fake_start(NULL, &step, 1);
	CHECK(run(NULL, "--socket", sockpath, "vm", "resume", "desk1",
	    NULL) == 0);
	fake_wait(pid);
	CHECK(run(NULL, "vm", "resume", "desk1", NULL) == 3);
	unsetenv("QDESK_SOCKET");

	/* The daemon refuses us instead of greeting: its error, status 1. */
	pid = fake_start("{\"error\":{\"class\":\"PermissionDenied\","
	    "\"desc\":\"uid 1000 is not allowed\"}}\n", NULL, 0);
	CHECK(run(NULL, "--socket", sockpath, "status", NULL) == 1);
	CHECK_STR(err, "qdesk: PermissionDenied: uid 1000 is not allowed\n");
	fake_wait(pid);

	/* Something that is not qmpd. */
	pid = fake_start("SSH-2.0-OpenSSH\n", NULL, 0);
	CHECK(run(NULL, "--socket", sockpath, "status", NULL) == 3);
	CHECK(starts(err, "qdesk: cannot reach qmpd at "));
	fake_wait(pid);
}

static void
test_replies(void)
{
	struct step	 steps[3];
	json_t		*j;
	pid_t		 pid;
	char		*big, *reply;
	size_t		 n;

	/* Events, other ids and progress are skipped while waiting. */
	CHECK(run1("{\"event\":\"vm.state\",\"vm\":\"x\",\"state\":\"running\"}\n"
	    "{\"id\":99,\"return\":{\"name\":\"other\",\"state\":\"paused\"}}\n"
	    "{\"id\":1,\"progress\":{\"done\":1,\"total\":2,\"what\":\"copy\"}}\n"
	    "{\"id\":1,\"return\":{\"name\":\"desk1\",\"state\":\"paused\"}}\n",
	    "vm", "pause", "desk1", NULL) == 0);
	CHECK_STR(out, "desk1: paused\n");
	CHECK_STR(err, "");

	/* --json prints the return value alone, indented; late --json too. */
	CHECK(run1("{\"id\":1,\"return\":{\"name\":\"desk1\",\"uuid\":\"u\","
	    "\"spice\":{\"host\":\"127.0.0.1\",\"port\":5900}}}\n",
	    "--json", "vm", "show", "desk1", NULL) == 0);
	j = json_loads(out, 0, NULL);
	CHECK(j != NULL && json_integer_value(json_object_get(
	    json_object_get(j, "spice"), "port")) == 5900);
	json_decref(j);
	CHECK(strstr(out, "\n  \"name\": \"desk1\",\n") != NULL);
	CHECK(run1("{\"id\":1,\"return\":{\"vms\":[]}}\n", "vm", "list",
	    "--json", NULL) == 0);
	CHECK_STR(out, "{\n  \"vms\": []\n}\n");

	/* A 3 MiB line is read whole. */
	n = 3 * 1024 * 1024;
	big = malloc(n + 1);
	memset(big, 'x', n);
	big[n - 1] = '\n';
	big[n] = '\0';
	j = json_pack("{s:i,s:{s:s,s:i,s:i}}", "id", 1, "return", "data", big,
	    "offset", (int)n, "size", (int)n);
	reply = json_dumps(j, JSON_COMPACT);
	json_decref(j);
	big = realloc(big, strlen(reply) + 2);
	snprintf(big, strlen(reply) + 2, "%s\n", reply);
	free(reply);
	CHECK(run1(big, "vm", "console", "desk1", NULL) == 0);
	CHECK(strlen(out) == n && out[0] == 'x' && out[n - 1] == '\n');
	free(big);

	/* A daemon that hangs up instead of answering. */
	steps[0].delay_ms = 0;
	steps[0].reply = NULL;
	pid = fake_start(NULL, steps, 1);
	CHECK(run(NULL, "--socket", sockpath, "vm", "list", NULL) == 3);
	CHECK(starts(err, "qdesk: qmpd at "));
	CHECK(strstr(err, "closed the connection") != NULL);
	fake_wait(pid);

	/* image verify with problems: listed, then exit 1 with a count. */
	CHECK(run1("{\"id\":1,\"return\":{\"ok\":false,\"problems\":["
	    "{\"image\":\"c1\",\"problem\":\"backing file is absolute\"}]}}\n",
	    "image", "verify", NULL) == 1);
	CHECK_STR(out, "IMAGE  PROBLEM\nc1     backing file is absolute\n");
	CHECK_STR(err, "qdesk: 1 problem\n");
	CHECK(request_is(0, "{\"id\":1,\"cmd\":\"image.verify\","
	    "\"args\":{}}"));
}

static void
test_timeouts(void)
{
	struct step	 step;
	struct timespec	 t0, t1;
	pid_t		 pid;
	double		 secs;

	/* No reply within --timeout: status 3, quickly. */
	step.delay_ms = 0;
	step.reply = "";
	pid = fake_start(NULL, &step, 1);
	clock_gettime(CLOCK_MONOTONIC, &t0);
	CHECK(run(NULL, "--socket", sockpath, "--timeout", "1", "vm", "list",
	    NULL) == 3);
	clock_gettime(CLOCK_MONOTONIC, &t1);
	secs = (t1.tv_sec - t0.tv_sec) + (t1.tv_nsec - t0.tv_nsec) / 1e9;
	CHECK(secs >= 0.9 && secs < 5);
	CHECK(strstr(err, "no reply from qmpd at ") != NULL);
	CHECK(strstr(err, "within 1 s") != NULL);
	fake_wait(pid);

	/* vm stop waits longer than its own --timeout, whatever --timeout. */
	step.delay_ms = 1500;
	step.reply = "{\"id\":1,\"return\":{\"name\":\"desk1\","
	    "\"state\":\"stopped\"}}\n";
	pid = fake_start(NULL, &step, 1);
	CHECK(run(NULL, "--socket", sockpath, "--timeout", "1", "vm", "stop",
	    "desk1", "--timeout", "3", NULL) == 0);
	CHECK_STR(out, "desk1: stopped\n");
	CHECK(request_is(0, "{\"id\":1,\"cmd\":\"vm.stop\","
	    "\"args\":{\"name\":\"desk1\",\"timeout\":3}}"));
	fake_wait(pid);

	/* Progress keeps a long request alive past --timeout. */
	step.delay_ms = 0;
	step.reply =
	    "{\"id\":1,\"progress\":{\"done\":1,\"total\":3}}\n#sleep 700\n"
	    "{\"id\":1,\"progress\":{\"done\":2,\"total\":3}}\n#sleep 700\n"
	    "{\"id\":1,\"progress\":{\"done\":3,\"total\":3}}\n#sleep 700\n"
	    "{\"id\":1,\"return\":{\"name\":\"gold\"}}\n";
	pid = fake_start(NULL, &step, 1);
	CHECK(run(NULL, "--socket", sockpath, "--timeout", "1", "image",
	    "import", "gold", dir, NULL) == 0);
	CHECK_STR(out, "gold: imported\n");
	CHECK_STR(err, "");
	fake_wait(pid);
}

static void
test_commands(void)
{
	struct step	 steps[3];
	char		 file[PATH_MAX + 16], want[2 * PATH_MAX];
	char		*png, real[PATH_MAX], cwd[PATH_MAX];
	pid_t		 pid;
	FILE		*f;

	/* screenshot: base64 decoded into FILE, format from the suffix. */
	snprintf(file, sizeof file, "%s/shot.png", dir);
	CHECK(run1("{\"id\":1,\"return\":{\"format\":\"png\","
	    "\"data\":\"iVBORw0KGgo=\"}}\n", "vm", "screenshot", "desk1", file,
	    NULL) == 0);
	png = slurp(file);
	CHECK(memcmp(png, "\x89PNG\r\n\x1a\n", 8) == 0);
	free(png);
	snprintf(want, sizeof want, "wrote %s (8 bytes)\n", file);
	CHECK_STR(out, want);
	CHECK(request_is(0, "{\"id\":1,\"cmd\":\"vm.screenshot\","
	    "\"args\":{\"name\":\"desk1\",\"format\":\"png\"}}"));
	snprintf(file, sizeof file, "%s/shot.ppm", dir);
	CHECK(run1("{\"id\":1,\"return\":{\"format\":\"ppm\","
	    "\"data\":\"UDYK\"}}\n", "vm", "screenshot", "desk1", file,
	    NULL) == 0);
	CHECK(request_is(0, "{\"id\":1,\"cmd\":\"vm.screenshot\","
	    "\"args\":{\"name\":\"desk1\",\"format\":\"ppm\"}}"));
	png = slurp(file);
	CHECK_STR(png, "P6\n");
	free(png);
	/* Bad base64: status 1 and no file. */
	snprintf(file, sizeof file, "%s/bad.png", dir);
	CHECK(run1("{\"id\":1,\"return\":{\"format\":\"png\","
	    "\"data\":\"!!!\"}}\n", "vm", "screenshot", "desk1", file,
	    NULL) == 1);
	CHECK(access(file, F_OK) == -1);

	/* console --follow: from the returned offset until NotFound. */
	steps[0].delay_ms = steps[1].delay_ms = steps[2].delay_ms = 0;
	steps[0].reply = "{\"id\":1,\"return\":{\"data\":\"boot\\n\","
	    "\"offset\":5,\"size\":5}}\n";
	steps[1].reply = "{\"id\":2,\"return\":{\"data\":\"READY\\n\","
	    "\"offset\":11,\"size\":11}}\n";
	steps[2].reply = "{\"id\":3,\"error\":{\"class\":\"NotFound\","
	    "\"desc\":\"no VM named desk1\"}}\n";
	pid = fake_start(NULL, steps, 3);
	CHECK(run(NULL, "--socket", sockpath, "vm", "console", "desk1",
	    "--follow", NULL) == 1);
	fake_wait(pid);
	CHECK_STR(out, "boot\nREADY\n");
	CHECK_STR(err, "qdesk: NotFound: no VM named desk1\n");
	CHECK(request_is(0, "{\"id\":1,\"cmd\":\"vm.console\","
	    "\"args\":{\"name\":\"desk1\"}}"));
	CHECK(request_is(1, "{\"id\":2,\"cmd\":\"vm.console\","
	    "\"args\":{\"name\":\"desk1\",\"offset\":5}}"));
	CHECK(request_is(2, "{\"id\":3,\"cmd\":\"vm.console\","
	    "\"args\":{\"name\":\"desk1\",\"offset\":11}}"));

	/* events: one line each until the daemon closes the stream. */
	steps[0].reply = "{\"id\":1,\"return\":{}}\n"
	    "{\"event\":\"vm.state\",\"vm\":\"desk1\",\"state\":\"running\","
	    "\"reason\":\"started\",\"ts\":86400.5}\n"
	    "{\"id\":7,\"return\":{}}\n"
	    "{\"event\":\"vm.spice\",\"vm\":\"desk1\",\"ts\":86401,"
	    "\"client\":\"10.0.0.9\"}\n#close\n";
	pid = fake_start(NULL, steps, 1);
	setenv("TZ", "UTC", 1);
	CHECK(run(NULL, "--socket", sockpath, "events", "--vm", "desk1",
	    NULL) == 0);
	fake_wait(pid);
	CHECK(request_is(0, "{\"id\":1,\"cmd\":\"events.subscribe\","
	    "\"args\":{\"vm\":\"desk1\"}}"));
	CHECK_STR(out,
	    "1970-01-02 00:00:00.500 desk1 vm.state running started\n"
	    "1970-01-02 00:00:01.000 desk1 vm.spice - - client=10.0.0.9\n");
	pid = fake_start(NULL, steps, 1);
	CHECK(run(NULL, "--socket", sockpath, "--json", "events", NULL) == 0);
	fake_wait(pid);
	CHECK_STR(out, "{\"event\":\"vm.state\",\"vm\":\"desk1\","
	    "\"state\":\"running\",\"reason\":\"started\",\"ts\":86400.5}\n"
	    "{\"event\":\"vm.spice\",\"vm\":\"desk1\",\"ts\":86401,"
	    "\"client\":\"10.0.0.9\"}\n");
	CHECK(request_is(0, "{\"id\":1,\"cmd\":\"events.subscribe\","
	    "\"args\":{}}"));

	/* user add --password-stdin: one line, newline stripped. */
	steps[0].reply = "{\"id\":1,\"return\":{\"login\":\"alice\"}}\n";
	pid = fake_start(NULL, steps, 1);
	CHECK(run("s3cret pass\n", "--socket", sockpath, "user", "add",
	    "alice", "--name", "Alice Smith", "--password-stdin", NULL) == 0);
	fake_wait(pid);
	CHECK_STR(out, "alice: added\n");
	CHECK(request_is(0, "{\"id\":1,\"cmd\":\"user.add\",\"args\":"
	    "{\"login\":\"alice\",\"name\":\"Alice Smith\","
	    "\"password\":\"s3cret pass\"}}"));
	/* Not a terminal and no --password-stdin: no password sent... */
	pid = fake_start(NULL, steps, 1);
	CHECK(run("ignored\n", "--socket", sockpath, "user", "add", "alice",
	    NULL) == 0);
	fake_wait(pid);
	CHECK(request_is(0, "{\"id\":1,\"cmd\":\"user.add\",\"args\":"
	    "{\"login\":\"alice\"}}"));
	/* ...which user passwd cannot do without. */
	CHECK(run(NULL, "--socket", sockpath, "user", "passwd", "alice",
	    NULL) == 2);
	CHECK(starts(err, "qdesk: no password: use --password-stdin"));

	/* Relative files are sent as absolute paths. */
	snprintf(file, sizeof file, "%s/disk.img", dir);
	f = fopen(file, "w");
	fclose(f);
	CHECK(realpath(file, real) != NULL);
	CHECK(getcwd(cwd, sizeof cwd) != NULL);
	CHECK(chdir(dir) == 0);
	steps[0].reply = "{\"id\":1,\"return\":{\"name\":\"d\","
	    "\"state\":\"stopped\"}}\n";
	pid = fake_start(NULL, steps, 1);
	CHECK(run(NULL, "--socket", sockpath, "vm", "create", "d", "--disk",
	    "disk.img", "--net", "lan", "--memory", "256", NULL) == 0);
	fake_wait(pid);
	CHECK(chdir(cwd) == 0);
	CHECK_STR(out, "d: stopped\n");
	snprintf(want, sizeof want, "{\"id\":1,\"cmd\":\"vm.create\","
	    "\"args\":{\"name\":\"d\",\"disk\":\"%s\",\"nets\":[\"lan\"],"
	    "\"memory\":256}}", real);
	CHECK(request_is(0, want));
}

int
main(int argc, char **argv)
{
	if (argc != 2) {
		fprintf(stderr, "usage: test-cli-exec /path/to/qdesk\n");
		return (2);
	}
	/* Absolute: one test runs qdesk from another directory. */
	if ((qdesk = realpath(argv[1], NULL)) == NULL) {
		perror(argv[1]);
		return (1);
	}
	signal(SIGPIPE, SIG_IGN);
	if (mkdtemp(dir) == NULL) {
		perror("mkdtemp");
		return (1);
	}
	snprintf(sockpath, sizeof sockpath, "%s/qmpd.sock", dir);
	snprintf(logpath, sizeof logpath, "%s/requests", dir);
	unsetenv("QDESK_SOCKET");

	test_exit_codes();
	test_replies();
	test_timeouts();
	test_commands();

	CHECK(run(NULL, "--version", NULL) == 0);
	CHECK(starts(out, "qdesk "));
	{
		char	cmd[PATH_MAX + 16];

		snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
		if (system(cmd) != 0)
			fprintf(stderr, "cannot remove %s\n", dir);
	}
	return (check_exit());
}
