/*
 * api-call: one admin command for many VMs, all requests pipelined on one
 * connection to qmpd (as a storm of "vm start" from a script would be),
 * timed from connect to the last reply.
 *
 * usage: api-call -s SOCK [-a JSON-MEMBERS] CMD NAME...
 *   e.g. api-call -s S vm.start desk1 desk2
 *        api-call -s S -a '"disk":"/d/{NAME}.img","display":"none"' vm.create d1
 *   {NAME} in the members stands for each request's name (qmpd refuses two
 *   VMs on one disk file, so each gets its own).
 * prints "total_us T errors E"; exit 1 if any request failed.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "util.h"

/* The members with every {NAME} replaced by name; NULL when none. */
static char *
api_call_args(const char *extra, const char *name)
{
	const char	*p, *q;
	size_t		 len = 0, cap;
	char		*out;

	if (extra == NULL)
		return (NULL);
	cap = strlen(extra) + 1;
	for (p = extra; (p = strstr(p, "{NAME}")) != NULL; p += 6)
		cap += strlen(name);
	if ((out = malloc(cap)) == NULL)
		fatal("malloc");
	for (p = extra; (q = strstr(p, "{NAME}")) != NULL; p = q + 6) {
		memcpy(out + len, p, q - p);
		len += q - p;
		memcpy(out + len, name, strlen(name));
		len += strlen(name);
	}
	strcpy(out + len, p);
	return (out);
}

static void __attribute__((noreturn))
usage(void)
{
	fprintf(stderr, "usage: api-call -s SOCK [-a JSON-MEMBERS] CMD "
	    "NAME...\n");
	exit(2);
}

int
main(int argc, char **argv)
{
	struct lconn	 c;
	const char	*sock = NULL, *extra = NULL, *cmd;
	char		*line, *req = NULL, *all = NULL, *args;
	size_t		 alllen = 0, allcap = 0, reqlen;
	uint64_t	 t0;
	long long	 id;
	int		 ch, i, n, left, errors = 0;

	while ((ch = getopt(argc, argv, "s:a:")) != -1) {
		switch (ch) {
		case 's':
			sock = optarg;
			break;
		case 'a':
			extra = optarg;
			break;
		default:
			usage();
		}
	}
	argc -= optind;
	argv += optind;
	if (sock == NULL || argc < 2)
		usage();
	cmd = argv[0];
	n = argc - 1;

	/* Build every request first: only I/O is timed. */
	for (i = 0; i < n; i++) {
		args = api_call_args(extra, argv[i + 1]);
		if (asprintf(&req, "{\"id\":%d,\"cmd\":\"%s\",\"args\":"
		    "{\"name\":\"%s\"%s%s}}\n", i, cmd, argv[i + 1],
		    args != NULL ? "," : "", args != NULL ? args : "") == -1)
			fatal("asprintf");
		free(args);
		reqlen = strlen(req);
		if (alllen + reqlen + 1 > allcap) {
			allcap = (alllen + reqlen + 1) * 2;
			if ((all = realloc(all, allcap)) == NULL)
				fatal("realloc");
		}
		memcpy(all + alllen, req, reqlen + 1);
		alllen += reqlen;
		free(req);
	}

	t0 = now_us();
	qmpd_connect(&c, sock);
	lconn_write(&c, all, alllen);
	for (left = n; left > 0;) {
		if ((line = lconn_readline(&c, NULL)) == NULL)
			fatalx("qmpd closed the connection, %d replies "
			    "missing", left);
		if ((id = reply_id(line)) < 0 || id >= n)
			continue;
		left--;
		if (reply_is_error(line)) {
			if (errors++ < 5)
				fprintf(stderr, "api-call: %s %s: %s\n", cmd,
				    argv[id + 1], line);
		}
	}
	printf("total_us %llu errors %d\n",
	    (unsigned long long)(now_us() - t0), errors);
	lconn_close(&c);
	free(all);
	return (errors > 0);
}
