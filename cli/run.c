/*
 * Running a parsed command: the generic one request, one reply path, and
 * the few commands that do more (follow a console, write a screenshot,
 * stream events, ask for a password).
 */
#include <sys/stat.h>

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <termios.h>
#include <time.h>
#include <unistd.h>

#include "base64.h"
#include "compat.h"
#include "file.h"
#include "qdesk.h"
#include "vv.h"
#include "xmalloc.h"

/* Beyond a daemon-side wait; vm.stop itself adds 15 s after its timeout. */
#define RUN_WAIT_MARGIN		20
#define RUN_POLL_MS		200	/* vm console --follow */

static void
run_sigint(int sig)
{
	client_interrupted = 1;
}

/* Let SIGINT interrupt blocking calls, so a stream ends with exit 0. */
static void
run_catch_sigint(void)
{
	struct sigaction	sa;

	memset(&sa, 0, sizeof sa);
	sa.sa_handler = run_sigint;
	sigemptyset(&sa.sa_mask);
	sigaction(SIGINT, &sa, NULL);
	sigaction(SIGTERM, &sa, NULL);
}

/* Flush stdout; a reader that went away (EPIPE) ends a stream quietly. */
static int
run_flush(void)
{
	if (fflush(stdout) == 0)
		return (0);
	if (errno != EPIPE)
		fprintf(stderr, "qdesk: stdout: %s\n", strerror(errno));
	return (-1);
}

/*
 * Connect to the daemon. On failure prints why and returns NULL with
 * *ex set: 3 when it cannot be reached, 1 when it refused us.
 */
static struct ctl_client *
run_connect(struct cli *cli, int *ex)
{
	struct ctl_client	*c;
	json_t			*error;
	char			*cause = NULL;

	if (cli->host != NULL)
		c = client_connect_tls(cli->host, cli->certdir, cli->timeout,
		    &error, &cause);
	else
		c = client_connect(cli->socket, cli->timeout, &error, &cause);
	if (c != NULL)
		return (c);
	if (error != NULL) {
		*ex = client_error_exit(error);
		json_decref(error);
	} else {
		fprintf(stderr, "qdesk: %s\n", cause);
		*ex = EXIT_UNREACHABLE;
	}
	free(cause);
	return (NULL);
}

/* The exit status and message of a call that got no return value. */
static int
run_failed(enum client_status st, json_t *reply, char *cause)
{
	int	ex;

	switch (st) {
	case CLIENT_ERROR:
		ex = client_error_exit(reply);
		break;
	case CLIENT_INTERRUPTED:
		ex = EXIT_OK;
		break;
	default:
		fprintf(stderr, "qdesk: %s\n", cause != NULL ? cause :
		    "lost the connection to qmpd");
		ex = EXIT_UNREACHABLE;
		break;
	}
	json_decref(reply);
	free(cause);
	return (ex);
}

/*
 * One request on a connection of its own: 0 and *reply (the return
 * value, the caller's to free), or -1 with *ex the exit status and the
 * failure reported (an interrupted call exits 0 without a reply).
 */
static int
run_once(struct cli *cli, const char *cmd, json_t *args, json_t **reply,
    int *ex)
{
	struct ctl_client	*c;
	enum client_status	 st;
	char			*cause = NULL;

	if ((c = run_connect(cli, ex)) == NULL)
		return (-1);
	st = client_call(c, cmd, args, reply, &cause);
	client_free(c);
	if (st != CLIENT_RETURN) {
		*ex = run_failed(st, *reply, cause);
		return (-1);
	}
	return (0);
}

/* Read one line from fd 0 into a new string without its newline. */
static char *
run_readline(void)
{
	char	*line = NULL;
	size_t	 size = 0;
	ssize_t	 n;

	if ((n = getline(&line, &size, stdin)) == -1) {
		free(line);
		return (NULL);
	}
	if (n > 0 && line[n - 1] == '\n')
		line[--n] = '\0';
	if (n > 0 && line[n - 1] == '\r')
		line[--n] = '\0';
	return (line);
}

/*
 * Prompt on the terminal with echo off; a SIGINT meanwhile restores the
 * terminal before it ends the process.
 */
static char *
run_prompt(const char *prompt)
{
	struct sigaction	 sa, old_sa;
	struct termios		 old, quiet;
	char			*line;

	fputs(prompt, stderr);
	fflush(stderr);
	if (tcgetattr(STDIN_FILENO, &old) != 0)
		return (NULL);
	memset(&sa, 0, sizeof sa);
	sa.sa_handler = run_sigint;
	sigemptyset(&sa.sa_mask);
	sigaction(SIGINT, &sa, &old_sa);
	quiet = old;
	quiet.c_lflag &= ~(ECHO | ECHONL);
	quiet.c_lflag |= ICANON;
	tcsetattr(STDIN_FILENO, TCSAFLUSH, &quiet);
	line = run_readline();
	tcsetattr(STDIN_FILENO, TCSAFLUSH, &old);
	fputc('\n', stderr);
	sigaction(SIGINT, &old_sa, NULL);
	if (client_interrupted) {
		free(line);
		raise(SIGINT);
		return (NULL);
	}
	return (line);
}

/*
 * Put a password in args for user add and user passwd: one line from
 * stdin with --password-stdin, else typed twice on a terminal, else none
 * (an error where one is needed). Returns -1 with *cause on failure.
 */
static int
run_password(const struct ctl_command *ce, json_t *args, json_t *local,
    char **cause)
{
	char	*pw, *again;

	if (json_is_true(json_object_get(local, "password_stdin"))) {
		if ((pw = run_readline()) == NULL) {
			xasprintf(cause, "no password on stdin");
			return (-1);
		}
	} else if (isatty(STDIN_FILENO)) {
		if ((pw = run_prompt("Password: ")) == NULL) {
			xasprintf(cause, "no password typed");
			return (-1);
		}
		again = run_prompt("Password again: ");
		if (again == NULL || strcmp(pw, again) != 0) {
			xasprintf(cause, "the passwords do not match");
			free(again);
			explicit_bzero(pw, strlen(pw));
			free(pw);
			return (-1);
		}
		explicit_bzero(again, strlen(again));
		free(again);
	} else if (ce->flags & CTL_NEEDPASS) {
		xasprintf(cause, "no password: use --password-stdin or run "
		    "qdesk on a terminal");
		return (-1);
	} else
		return (0);
	if (*pw == '\0') {
		free(pw);
		xasprintf(cause, "the password is empty");
		return (-1);
	}
	json_object_set_new(args, "password", json_string(pw));
	explicit_bzero(pw, strlen(pw));
	free(pw);
	return (0);
}

/*
 * The reply timeout: the global one, or longer for a command the daemon
 * may legitimately spend entry->wait seconds on (vm start waits for QEMU;
 * vm stop and vm wait for up to their own --timeout, which replaces it;
 * vm migrate's counts after it, CTL_WAIT_PLUS, and each step it reports
 * starts the wait afresh).
 * A --timeout 0 that asks the daemon to wait for ever waits for ever.
 */
int
run_timeout(const struct cli *cli, const struct ctl_command *ce, json_t *args)
{
	json_t		*t;
	long long	 wait = ce->wait;

	if (cli->timeout == 0 || ce->wait == 0)
		return (cli->timeout);
	if (json_is_integer(t = json_object_get(args, "timeout"))) {
		wait = json_integer_value(t);
		if (wait == 0)
			return (0);
	}
	if (ce->flags & CTL_WAIT_PLUS)
		wait += ce->wait;
	if (wait < 0)
		wait = 0;
	if (wait + RUN_WAIT_MARGIN > INT_MAX)
		return (0);
	if (wait + RUN_WAIT_MARGIN > cli->timeout)
		return ((int)(wait + RUN_WAIT_MARGIN));
	return (cli->timeout);
}

/* One request, one reply, printed the way the entry says. */
int
run_generic(struct cli *cli, const struct ctl_command *ce, json_t *args,
    json_t *local)
{
	json_t			*reply;
	char			*cause = NULL;
	int			 ex;

	if ((ce->flags & CTL_PASSWORD) &&
	    run_password(ce, args, local, &cause) != 0) {
		fprintf(stderr, "qdesk: %s\n", cause);
		cmds_usage(stderr, ce);
		free(cause);
		return (EXIT_USAGE);
	}
	cli->timeout = run_timeout(cli, ce, args);
	if (run_once(cli, ce->cmd, args, &reply, &ex) != 0)
		return (ex);
	if (cli->json)
		print_json(stdout, reply);
	else
		print_reply(stdout, ce, reply, args);
	ex = print_exit(stderr, ce, reply);
	json_decref(reply);
	return (ex);
}

/* Sleep ms milliseconds; 0 when SIGINT cut it short. */
static int
run_sleep(int ms)
{
	struct timespec	ts;

	ts.tv_sec = ms / 1000;
	ts.tv_nsec = (ms % 1000) * 1000000L;
	while (nanosleep(&ts, &ts) == -1) {
		if (errno != EINTR || client_interrupted)
			return (0);
	}
	return (!client_interrupted);
}

/*
 * vm console: print the serial log; with --follow keep asking from the
 * returned offset every 200 ms until SIGINT, a closed stdout, or an error
 * such as NotFound once the VM is deleted.
 */
int
run_console(struct cli *cli, const struct ctl_command *ce, json_t *args,
    json_t *local)
{
	struct ctl_client	*c;
	enum client_status	 st;
	json_t			*reply, *data, *offset;
	char			*cause = NULL, *s;
	int			 ex, follow;

	follow = json_is_true(json_object_get(local, "follow"));
	if (follow)
		run_catch_sigint();
	if ((c = run_connect(cli, &ex)) == NULL)
		return (ex);
	for (;;) {
		st = client_call(c, ce->cmd, args, &reply, &cause);
		if (st != CLIENT_RETURN) {
			client_free(c);
			return (run_failed(st, reply, cause));
		}
		data = json_object_get(reply, "data");
		if (cli->json && !follow)
			print_json(stdout, reply);
		else if (cli->json && json_string_length(data) != 0) {
			/* Following: one compact JSON document a line. */
			if ((s = json_dumps(reply, JSON_COMPACT)) != NULL)
				printf("%s\n", s);
			free(s);
		} else if (!cli->json && json_is_string(data))
			fwrite(json_string_value(data), 1,
			    json_string_length(data), stdout);
		offset = json_object_get(reply, "offset");
		if (json_is_integer(offset))
			json_object_set(args, "offset", offset);
		json_decref(reply);
		if (run_flush() != 0 || !follow || !run_sleep(RUN_POLL_MS))
			break;
	}
	client_free(c);
	return (EXIT_OK);
}

/*
 * Write len bytes to file whole or not at all (file_write_atomic), with
 * mode less the umask as open(2) would, and say so: out (taken) with
 * --json, else the line msg. Returns the exit status.
 */
static int
run_save(struct cli *cli, const char *file, const void *buf, size_t len,
    mode_t mode, json_t *out, const char *msg)
{
	mode_t	mask;
	int	ex = EXIT_OK;

	mask = umask(0);
	umask(mask);
	if (file_write_atomic(file, buf, len, mode & ~mask, (uid_t)-1,
	    (gid_t)-1, NULL) != 0) {
		fprintf(stderr, "qdesk: cannot write %s: %s\n", file,
		    strerror(errno));
		ex = EXIT_DAEMON;
	} else if (cli->json)
		print_json(stdout, out);
	else
		printf("%s\n", msg);
	json_decref(out);
	return (ex);
}

/*
 * vm screenshot NAME FILE: ask for PNG (PPM when FILE ends in .ppm),
 * decode the base64 reply and write FILE whole or not at all.
 */
int
run_screenshot(struct cli *cli, const struct ctl_command *ce, json_t *args,
    json_t *local)
{
	json_t			*reply, *data;
	const char		*file, *format;
	char			*msg;
	unsigned char		*buf;
	size_t			 len;
	ssize_t			 n;
	int			 ex;

	file = json_string_value(json_object_get(local, "file"));
	len = strlen(file);
	format = (len > 4 && strcasecmp(file + len - 4, ".ppm") == 0) ?
	    "ppm" : "png";
	json_object_set_new(args, "format", json_string(format));
	if (run_once(cli, ce->cmd, args, &reply, &ex) != 0)
		return (ex);

	data = json_object_get(reply, "data");
	if (!json_is_string(data)) {
		fprintf(stderr, "qdesk: qmpd sent a screenshot without data\n");
		json_decref(reply);
		return (EXIT_DAEMON);
	}
	buf = xmalloc(base64_decoded_max(json_string_length(data)));
	n = base64_decode(json_string_value(data), json_string_length(data),
	    buf, base64_decoded_max(json_string_length(data)), BASE64_SPACE);
	if (json_is_string(json_object_get(reply, "format")))
		format = json_string_value(json_object_get(reply, "format"));
	if (n < 0) {
		fprintf(stderr, "qdesk: qmpd sent a screenshot that is not "
		    "valid base64\n");
		ex = EXIT_DAEMON;
	} else {
		xasprintf(&msg, "wrote %s (%zd bytes)", file, n);
		ex = run_save(cli, file, buf, n, 0666, json_pack("{s:s,s:s,s:I}",
		    "file", file, "format", format, "bytes", (json_int_t)n),
		    msg);
		free(msg);
	}
	free(buf);
	json_decref(reply);
	return (ex);
}

/*
 * vm ticket NAME [--vv FILE]: a one-time SPICE password; with --vv also
 * the .vv file remote-viewer opens (host, TLS port, the certificate to
 * trust, the password), readable by its owner only.
 */
int
run_ticket(struct cli *cli, const struct ctl_command *ce, json_t *args,
    json_t *local)
{
	struct vv		 vv;
	json_t			*reply;
	const char		*file, *name;
	char			*cause = NULL, *text, *title, *msg;
	int			 ex;

	if ((file = json_string_value(json_object_get(local, "vv"))) == NULL)
		return (run_generic(cli, ce, args, local));
	if (run_once(cli, ce->cmd, args, &reply, &ex) != 0)
		return (ex);
	name = json_string_value(json_object_get(args, "name"));
	xasprintf(&title, "%s (qdesk)", name);
	memset(&vv, 0, sizeof vv);
	vv.host = json_string_value(json_object_get(reply, "host"));
	vv.port = (int)json_integer_value(json_object_get(reply, "port"));
	vv.password = json_string_value(json_object_get(reply, "password"));
	vv.title = title;
	vv.tls = json_is_true(json_object_get(reply, "tls"));
	vv.ca = json_string_value(json_object_get(reply, "ca"));
	vv.host_subject = json_string_value(json_object_get(reply,
	    "host_subject"));
	if ((text = vv_build(&vv, &cause)) == NULL) {
		fprintf(stderr, "qdesk: qmpd's ticket makes no .vv file: %s\n",
		    cause);
		free(cause);
		ex = EXIT_DAEMON;
	} else {
		xasprintf(&msg, "wrote %s: remote-viewer %s (its password "
		    "works until it expires)", file, file);
		ex = run_save(cli, file, text, strlen(text), 0600,
		    json_pack("{s:s,s:O?}", "file", file, "expires",
		    json_object_get(reply, "expires")), msg);
		free(msg);
	}
	if (text != NULL) {
		explicit_bzero(text, strlen(text));
		free(text);
	}
	free(title);
	json_decref(reply);
	return (ex);
}

/*
 * events: subscribe, then print every event until the daemon closes the
 * stream, stdout goes away or SIGINT arrives; all of these exit 0.
 */
int
run_events(struct cli *cli, const struct ctl_command *ce, json_t *args,
    json_t *local)
{
	struct ctl_client	*c;
	enum client_status	 st;
	json_t			*reply, *msg;
	char			*cause = NULL, *line;
	int			 ex;

	run_catch_sigint();
	if ((c = run_connect(cli, &ex)) == NULL)
		return (ex);
	st = client_call(c, ce->cmd, args, &reply, &cause);
	if (st != CLIENT_RETURN) {
		client_free(c);
		return (run_failed(st, reply, cause));
	}
	json_decref(reply);
	for (;;) {
		st = client_next(c, &msg, &line, &cause);
		if (st != CLIENT_RETURN)
			break;
		if (json_is_string(json_object_get(msg, "event")) &&
		    json_object_get(msg, "id") == NULL) {
			if (cli->json)
				printf("%s\n", line);
			else
				print_event(stdout, msg);
		}
		json_decref(msg);
		if (run_flush() != 0)
			break;
	}
	client_free(c);
	if (st == CLIENT_FAILED)
		return (run_failed(st, NULL, cause));
	return (EXIT_OK);
}
