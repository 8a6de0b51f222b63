/*
 * From argv to a request: global options, then the arguments of one
 * command mapped one to one onto the JSON "args" of its daemon command.
 * Nothing here does I/O beyond resolving file paths, so the unit test
 * drives it directly.
 */
#include <errno.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>

#include "compat.h"
#include "qdesk.h"
#include "xmalloc.h"

/* Parse a whole decimal number; -1 on anything else or overflow. */
int
args_int(const char *s, long long *v)
{
	char	*end;

	if (*s == '\0' || *s == ' ' || *s == '\t' || *s == '+')
		return (-1);
	errno = 0;
	*v = strtoll(s, &end, 10);
	if (errno != 0 || *end != '\0')
		return (-1);
	return (0);
}

/* Split "--name=value" into its name (in buf) and value. */
static const char *
args_split(const char *arg, char *buf, size_t len)
{
	const char	*eq;

	if ((eq = strchr(arg, '=')) == NULL || (size_t)(eq - arg) >= len) {
		strlcpy(buf, arg, len);
		return (NULL);
	}
	memcpy(buf, arg, eq - arg);
	buf[eq - arg] = '\0';
	return (eq + 1);
}

/*
 * Parse the global options in front of the command. Returns 0 and sets
 * *optind to the first word of the command, 1 for --help, 2 for
 * --version, -1 with *cause on a usage error.
 */
int
args_global(int argc, char **argv, struct cli *cli, int *optind,
    char **cause)
{
	char		 name[32];
	const char	*value;
	long long	 n;
	int		 i;

	for (i = 1; i < argc; i++) {
		if (strcmp(argv[i], "--") == 0) {
			i++;
			break;
		}
		if (strcmp(argv[i], "-h") == 0 || strcmp(argv[i], "--help") == 0)
			return (1);
		if (strcmp(argv[i], "--version") == 0)
			return (2);
		if (argv[i][0] != '-')
			break;
		value = args_split(argv[i], name, sizeof name);
		if (strcmp(name, "--json") == 0 && value == NULL) {
			cli->json = 1;
			continue;
		}
		if (strcmp(name, "--socket") != 0 &&
		    strcmp(name, "--timeout") != 0 &&
		    strcmp(name, "--host") != 0 &&
		    strcmp(name, "--cert") != 0) {
			xasprintf(cause, "unknown option %s", argv[i]);
			return (-1);
		}
		if (value == NULL) {
			if (i + 1 == argc) {
				xasprintf(cause, "%s needs a value", name);
				return (-1);
			}
			value = argv[++i];
		}
		if (strcmp(name, "--socket") == 0) {
			if (*value == '\0') {
				xasprintf(cause, "--socket needs a path");
				return (-1);
			}
			cli->socket = value;
		} else if (strcmp(name, "--host") == 0 ||
		    strcmp(name, "--cert") == 0) {
			if (*value == '\0') {
				xasprintf(cause, "%s needs a value", name);
				return (-1);
			}
			if (name[2] == 'h')
				cli->host = value;
			else
				cli->certdir = value;
		} else {
			if (args_int(value, &n) != 0 || n < 0 || n > INT_MAX) {
				xasprintf(cause, "--timeout wants a whole number "
				    "of seconds, not '%s'", value);
				return (-1);
			}
			cli->timeout = n;
		}
	}
	*optind = i;
	return (0);
}

/* Set one argument's value from its text; -1 with *cause if it is wrong. */
static int
args_set(const struct ctl_arg *ca, const char *value, json_t *into,
    char **cause)
{
	char		 path[PATH_MAX];
	json_t		*list;
	long long	 n;

	switch (ca->type) {
	case CTL_STR:
		json_object_set_new(into, ca->key, json_string(value));
		break;
	case CTL_INT:
		if (args_int(value, &n) != 0) {
			xasprintf(cause, "%s wants a whole number, not '%s'",
			    ca->name, value);
			return (-1);
		}
		json_object_set_new(into, ca->key, json_integer(n));
		break;
	case CTL_BOOL:
		json_object_set_new(into, ca->key, json_true());
		break;
	case CTL_STRLIST:
		list = json_object_get(into, ca->key);
		if (list == NULL) {
			list = json_array();
			json_object_set_new(into, ca->key, list);
		}
		json_array_append_new(list, json_string(value));
		break;
	case CTL_PATH:
		/* The daemon runs elsewhere: send an absolute path. */
		if (*value == '\0') {
			xasprintf(cause, "%s needs a file name", ca->name);
			return (-1);
		}
		if (realpath(value, path) == NULL) {
			xasprintf(cause, "%s '%s': %s", ca->name, value,
			    strerror(errno));
			return (-1);
		}
		json_object_set_new(into, ca->key, json_string(path));
		break;
	}
	return (0);
}

/* Global options also taken after the command, unless it has its own. */
static const struct ctl_arg args_globals[] = {
	{ "--json",	"json",		CTL_BOOL,	CTL_LOCAL },
	{ "--socket",	"socket",	CTL_STR,	CTL_LOCAL },
};

static const struct ctl_arg *
args_find_global(const char *name)
{
	size_t	i;

	for (i = 0; i < nitems(args_globals); i++) {
		if (strcmp(args_globals[i].name, name) == 0)
			return (&args_globals[i]);
	}
	return (NULL);
}

static const struct ctl_arg *
args_find_opt(const struct ctl_command *ce, const char *name)
{
	const struct ctl_arg	*ca;

	if (ce->opts == NULL)
		return (NULL);
	for (ca = ce->opts; ca->name != NULL; ca++) {
		if (strcmp(ca->name, name) == 0)
			return (ca);
	}
	return (NULL);
}

/*
 * Map the words after "qdesk GROUP VERB" onto the request's args and the
 * values the CLI keeps for itself (local: --follow, FILE, --help, and
 * --json or --socket given after the command). Options and positionals
 * may be mixed; "--" ends options.
 * Returns -1 with *cause (no "qdesk: " prefix) on a usage error.
 */
int
args_parse(const struct ctl_command *ce, int argc, char **argv, json_t **argsp,
    json_t **localp, char **cause)
{
	const struct ctl_arg	*ca;
	char			 name[64];
	const char		*value;
	json_t			*args, *local;
	int			 i, npos = 0, dashdash = 0;

	args = json_object();
	local = json_object();
	for (i = 0; i < argc; i++) {
		if (!dashdash && strcmp(argv[i], "--") == 0) {
			dashdash = 1;
			continue;
		}
		if (!dashdash && (strcmp(argv[i], "-h") == 0 ||
		    strcmp(argv[i], "--help") == 0)) {
			json_object_set_new(local, "help", json_true());
			continue;
		}
		if (dashdash || strncmp(argv[i], "--", 2) != 0) {
			ca = &ce->pos[npos];
			if (npos == CTL_MAXPOS || ca->name == NULL) {
				xasprintf(cause, "too many arguments: '%s'",
				    argv[i]);
				goto fail;
			}
			npos++;
			if (args_set(ca, argv[i], (ca->flags & CTL_LOCAL) ?
			    local : args, cause) != 0)
				goto fail;
			continue;
		}

		value = args_split(argv[i], name, sizeof name);
		if ((ca = args_find_opt(ce, name)) == NULL)
			ca = args_find_global(name);
		if (ca == NULL) {
			xasprintf(cause, "unknown option %s", name);
			goto fail;
		}
		if (ca->type == CTL_BOOL) {
			if (value != NULL) {
				xasprintf(cause, "%s takes no value", name);
				goto fail;
			}
		} else if (value == NULL) {
			if (i + 1 == argc) {
				xasprintf(cause, "%s needs a value", name);
				goto fail;
			}
			value = argv[++i];
		}
		if (args_set(ca, value, (ca->flags & CTL_LOCAL) ? local : args,
		    cause) != 0)
			goto fail;
	}

	if (json_object_get(local, "help") == NULL) {
		ca = &ce->pos[npos];
		if (npos < CTL_MAXPOS && ca->name != NULL &&
		    !(ca->flags & CTL_OPTIONAL)) {
			xasprintf(cause, "missing %s", ca->name);
			goto fail;
		}
		for (ca = ce->opts; ca != NULL && ca->name != NULL; ca++) {
			if ((ca->flags & CTL_REQUIRED) &&
			    json_object_get(args, ca->key) == NULL) {
				xasprintf(cause, "%s is required", ca->name);
				goto fail;
			}
		}
	}
	*argsp = args;
	*localp = local;
	return (0);

fail:
	json_decref(args);
	json_decref(local);
	return (-1);
}
