/*
 * qdesk-man: makes qdesk(1) from man/qdesk.1.in and the CLI's command
 * table, so the page's synopsis of each command is the usage text the CLI
 * prints. Each "qdesk GROUP VERB" of the table has exactly one line
 *
 *	.\" @cmd GROUP VERB
 *
 * in the template (followed by its description), which becomes the
 * command's list item. A command without one, or a line naming no
 * command, is reported; with -s (the unit test) it is an error, so the
 * page cannot go stale without a test saying so, while the build (without
 * -s) still makes a page with every command's synopsis.
 *
 *	qdesk-man [-s] TEMPLATE OUTPUT
 */
#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "compat.h"
#include "qdesk.h"
#include "xmalloc.h"

#define MANPAGE_MARK	".\\\" @cmd "

/*
 * Print one usage word as mdoc: FOO an argument, --foo a flag, a|b
 * literal words, "Full Name" a quoted argument.
 */
static void
manpage_word(FILE *f, const char *w, size_t n)
{
	size_t	i, start;

	if (n >= 2 && w[0] == '"' && w[n - 1] == '"') {
		fprintf(f, ".Dq Ar %.*s\n", (int)n - 2, w + 1);
		return;
	}
	if (n >= 2 && w[0] == '-' && w[1] == '-') {
		fprintf(f, ".Fl \\-%.*s\n", (int)n - 2, w + 2);
		return;
	}
	fputc('.', f);
	for (i = start = 0; i <= n; i++) {
		if (i < n && w[i] != '|')
			continue;
		if (start > 0)
			fputs(" Ns | Ns ", f);
		fprintf(f, "%s %.*s", isupper((unsigned char)w[start]) ?
		    "Ar" : "Cm", (int)(i - start), w + start);
		start = i + 1;
	}
	fputc('\n', f);
}

/* Print the usage of one command as an mdoc list item. */
static void
manpage_item(FILE *f, const struct ctl_command *ce)
{
	const char	*s = ce->usage;
	size_t		 n;

	fprintf(f, ".It Xo\n.Cm %s", ce->group);
	if (ce->verb != NULL)
		fprintf(f, " %s", ce->verb);
	fputc('\n', f);
	while (*s != '\0') {
		if (*s == ' ') {
			s++;
			continue;
		}
		if (*s == '[') {
			fputs(".Oo\n", f);
			s++;
			continue;
		}
		if (*s == ']') {
			fputs(".Oc\n", f);
			s++;
			continue;
		}
		if (strncmp(s, "...", 3) == 0) {
			fputs("\\&...\n", f);
			s += 3;
			continue;
		}
		if (*s == '|' && (s[1] == ' ' || s[1] == '\0')) {
			fputs("|\n", f);
			s++;
			continue;
		}
		if (*s == '"') {
			n = 1;
			while (s[n] != '\0' && s[n] != '"')
				n++;
			if (s[n] == '"')
				n++;
		} else
			n = strcspn(s, " []");
		if (strncmp(s + n - (n >= 3 ? 3 : 0), "...", 3) == 0)
			n -= 3;
		manpage_word(f, s, n);
		s += n;
	}
	fputs(".Xc\n", f);
}

/* The entry a marker names ("vm create" or "status"), or NULL. */
static size_t
manpage_find(const char *name)
{
	char	 buf[128];
	size_t	 i;

	for (i = 0; i < ctl_commands_size; i++) {
		if (ctl_commands[i].verb != NULL)
			snprintf(buf, sizeof buf, "%s %s", ctl_commands[i].group,
			    ctl_commands[i].verb);
		else
			snprintf(buf, sizeof buf, "%s", ctl_commands[i].group);
		if (strcmp(buf, name) == 0)
			return (i);
	}
	return (ctl_commands_size);
}

/*
 * Print, at the end of the list holding group's entries, the commands of
 * that group (all undescribed ones when group is NULL) that have no entry.
 */
static void
manpage_missing(FILE *f, const char *group, const char *seen, char *done)
{
	size_t	i;

	for (i = 0; i < ctl_commands_size; i++) {
		if (seen[i] || done[i])
			continue;
		if (group != NULL && strcmp(ctl_commands[i].group, group) != 0)
			continue;
		manpage_item(f, &ctl_commands[i]);
		done[i] = 1;
	}
}

int
main(int argc, char **argv)
{
	FILE		*in, *out;
	char		*line = NULL, *name, *seen, *done, *last = NULL;
	const char	*tmpl, *outpath;
	size_t		 size = 0, i;
	ssize_t		 len;
	unsigned	 lineno = 0, lists = 0;
	int		 bad = 0, strict = 0;

	if (argc == 4 && strcmp(argv[1], "-s") == 0) {
		strict = 1;
		argv++;
		argc--;
	}
	if (argc != 3) {
		fprintf(stderr, "usage: qdesk-man [-s] TEMPLATE OUTPUT\n");
		return (2);
	}
	tmpl = argv[1];
	outpath = argv[2];
	if ((in = fopen(tmpl, "r")) == NULL) {
		fprintf(stderr, "qdesk-man: %s: %s\n", tmpl, strerror(errno));
		return (1);
	}

	/* First pass: which commands have an entry, and where lists end. */
	seen = xcalloc(ctl_commands_size, 1);
	done = xcalloc(ctl_commands_size, 1);
	while ((len = getline(&line, &size, in)) != -1) {
		lineno++;
		if (len > 0 && line[len - 1] == '\n')
			line[--len] = '\0';
		if (strncmp(line, ".El", 3) == 0 && last != NULL)
			lists = lineno;
		if (strncmp(line, MANPAGE_MARK, strlen(MANPAGE_MARK)) != 0)
			continue;
		name = line + strlen(MANPAGE_MARK);
		free(last);
		last = xstrdup(name);
		if ((i = manpage_find(name)) == ctl_commands_size) {
			fprintf(stderr, "qdesk-man: %s:%u: no command "
			    "'qdesk %s' in cli/cmds.c\n", tmpl, lineno, name);
			bad = 1;
		} else if (seen[i]++) {
			fprintf(stderr, "qdesk-man: %s:%u: 'qdesk %s' "
			    "described twice\n", tmpl, lineno, name);
			bad = 1;
		}
	}
	for (i = 0; i < ctl_commands_size; i++) {
		if (seen[i])
			continue;
		fprintf(stderr, "qdesk-man: 'qdesk %s%s%s' has no entry in "
		    "%s\n", ctl_commands[i].group, ctl_commands[i].verb ? " " : "",
		    ctl_commands[i].verb ? ctl_commands[i].verb : "", tmpl);
		bad = 1;
	}
	if (bad && strict)
		goto out;

	/*
	 * Second pass. Without -s a command lacking its entry still gets its
	 * synopsis, at the end of its group's list (or of the last list), so
	 * the installed page is complete while the unit test (-s) fails.
	 */
	if ((out = fopen(outpath, "w")) == NULL) {
		fprintf(stderr, "qdesk-man: %s: %s\n", outpath,
		    strerror(errno));
		bad = 1;
		goto out;
	}
	rewind(in);
	free(last);
	last = NULL;
	lineno = 0;
	while ((len = getline(&line, &size, in)) != -1) {
		lineno++;
		if (len > 0 && line[len - 1] == '\n')
			line[--len] = '\0';
		if (strncmp(line, ".El", 3) == 0 && last != NULL) {
			manpage_missing(out, last, seen, done);
			if (lineno == lists)
				manpage_missing(out, NULL, seen, done);
			free(last);
			last = NULL;
		}
		if (strstr(line, "@VERSION@") != NULL) {
			*strstr(line, "@VERSION@") = '\0';
			fprintf(out, "%s%s%s\n", line, QDESK_VERSION,
			    line + strlen(line) + strlen("@VERSION@"));
			continue;
		}
		if (strncmp(line, MANPAGE_MARK, strlen(MANPAGE_MARK)) != 0) {
			fprintf(out, "%s\n", line);
			continue;
		}
		name = line + strlen(MANPAGE_MARK);
		if ((i = manpage_find(name)) == ctl_commands_size)
			continue;
		if (!done[i])
			manpage_item(out, &ctl_commands[i]);
		done[i] = 1;
		free(last);
		last = xstrdup(ctl_commands[i].group);
	}
	if (fclose(out) != 0) {
		fprintf(stderr, "qdesk-man: %s: %s\n", outpath,
		    strerror(errno));
		remove(outpath);
		bad = 1;
	} else if (!strict)
		bad = 0;
out:
	free(line);
	free(last);
	free(seen);
	free(done);
	fclose(in);
	return (bad);
}
