/*
 * What the image tests share for driving QEMU's own tools: a shell
 * command from a format, and the check that the tools are there (the
 * suite installs them, so their absence fails the test, not skips it).
 */
#ifndef QDESK_TEST_SH_H
#define QDESK_TEST_SH_H

#include <sys/wait.h>

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>

/* Run a shell command built from fmt; returns its exit status. */
static inline int __attribute__((format(printf, 1, 2)))
sh(const char *fmt, ...)
{
	va_list	 ap;
	char	*cmd;
	int	 rc;

	va_start(ap, fmt);
	if (vasprintf(&cmd, fmt, ap) == -1)
		abort();
	va_end(ap);
	rc = system(cmd);
	free(cmd);
	return (WIFEXITED(rc) ? WEXITSTATUS(rc) : -1);
}

/*
 * 0 if qemu-img (and qemu-io, if with_io) run; else say which is missing
 * and where it comes from, and return -1 for main to fail with.
 */
static inline int
sh_need_qemu_tools(int with_io)
{
	const char	*missing = NULL;

	if (sh("qemu-img --version >/dev/null 2>&1") != 0)
		missing = "qemu-img";
	else if (with_io && sh("qemu-io --version >/dev/null 2>&1") != 0)
		missing = "qemu-io";
	if (missing == NULL)
		return (0);
	fprintf(stderr, "%s not found: scripts/setup installs qemu-utils, "
	    "without which these checks cannot run\n", missing);
	return (-1);
}

#endif
