/*
 * qdesk: the admin CLI for qmpd.
 *
 *   qdesk [--socket PATH | --host ADDR:PORT --cert DIR] [--json]
 *         [--timeout S] GROUP VERB [ARGS]
 *
 * Exit status: 0 success, 1 the daemon answered with an error, 2 usage
 * error, 3 the daemon cannot be reached, 4 the host ran out of something
 * (ResourceExhausted: disk, state database, descriptors, memory).
 */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "compat.h"
#include "log.h"
#include "qdesk.h"
#include "xmalloc.h"

/* A usage error: the reason, then the usage of the command or of all. */
static int
qdesk_usage_error(const struct ctl_command *ce, const char *group,
    const char *fmt, const char *arg)
{
	fputs("qdesk: ", stderr);
	fprintf(stderr, fmt, arg);
	fputc('\n', stderr);
	if (ce != NULL)
		cmds_usage(stderr, ce);
	else if (group != NULL) {
		fprintf(stderr, "commands:\n");
		cmds_list(stderr, group);
	} else
		cmds_main_usage(stderr);
	return (EXIT_USAGE);
}

/* qdesk help [GROUP] and qdesk GROUP: the commands, on stdout. */
static int
qdesk_help(const char *group)
{
	if (group == NULL) {
		cmds_main_usage(stdout);
		return (EXIT_OK);
	}
	if (!cmds_group_exists(group))
		return (qdesk_usage_error(NULL, NULL, "unknown command '%s'",
		    group));
	printf("commands:\n");
	cmds_list(stdout, group);
	return (EXIT_OK);
}

int
main(int argc, char **argv)
{
	struct cli			 cli;
	const struct ctl_command	*ce;
	const char			*group, *verb, *env;
	json_t				*args, *local;
	char				*cause = NULL;
	int				 optind, known, ex, first;

	log_init("qdesk", 1, 0);
	signal(SIGPIPE, SIG_IGN);

	memset(&cli, 0, sizeof cli);
	cli.socket = QDESK_SOCKET_DEFAULT;
	if ((env = getenv("QDESK_SOCKET")) != NULL && *env != '\0')
		cli.socket = env;
	cli.timeout = QDESK_TIMEOUT_DEFAULT;
	if ((env = getenv("QDESK_HOST")) != NULL && *env != '\0')
		cli.host = env;
	if ((env = getenv("QDESK_CERT")) != NULL && *env != '\0')
		cli.certdir = env;

	switch (args_global(argc, argv, &cli, &optind, &cause)) {
	case -1:
		ex = qdesk_usage_error(NULL, NULL, "%s", cause);
		free(cause);
		return (ex);
	case 1:
		return (qdesk_help(NULL));
	case 2:
		printf("qdesk %s\n", QDESK_VERSION);
		return (EXIT_OK);
	}
	if (cli.host != NULL && cli.certdir == NULL)
		return (qdesk_usage_error(NULL, NULL, "%s", "--host needs "
		    "--cert DIR (qdesk cluster cert admin NAME makes one)"));
	if (optind == argc) {
		cmds_main_usage(stderr);
		return (EXIT_USAGE);
	}
	group = argv[optind];
	verb = optind + 1 < argc ? argv[optind + 1] : NULL;
	if (strcmp(group, "help") == 0)
		return (qdesk_help(verb));

	if ((ce = cmds_find(group, verb, &known)) == NULL) {
		if (!known)
			return (qdesk_usage_error(NULL, NULL,
			    "unknown command '%s'", group));
		if (verb == NULL || strcmp(verb, "help") == 0 ||
		    strcmp(verb, "-h") == 0 || strcmp(verb, "--help") == 0)
			return (qdesk_help(group));
		xasprintf(&cause, "%s: unknown command '%s'", group, verb);
		ex = qdesk_usage_error(NULL, group, "%s", cause);
		free(cause);
		return (ex);
	}

	first = optind + (ce->verb != NULL ? 2 : 1);
	if (args_parse(ce, argc - first, argv + first, &args, &local,
	    &cause) != 0) {
		ex = qdesk_usage_error(ce, NULL, "%s", cause);
		free(cause);
		return (ex);
	}
	if (json_is_true(json_object_get(local, "help"))) {
		cmds_usage(stdout, ce);
		ex = EXIT_OK;
		goto out;
	}
	if (json_is_true(json_object_get(local, "json")))
		cli.json = 1;
	if (json_is_string(json_object_get(local, "socket")))
		cli.socket = json_string_value(json_object_get(local, "socket"));

	ex = (ce->run != NULL ? ce->run : run_generic)(&cli, ce, args, local);
	if (fflush(stdout) != 0 && errno != EPIPE && ex == EXIT_OK) {
		fprintf(stderr, "qdesk: stdout: %s\n", strerror(errno));
		ex = EXIT_DAEMON;
	}
out:
	json_decref(args);
	json_decref(local);
	return (ex);
}
