/*
 * Test hooks: points in qmpd where a test makes it die as kill -9 would,
 * to drive a recovery branch that no outside timing can reach (the
 * target's qmpd gone between the placement swap and cont, say), or fail
 * a step on purpose (an etcd write a cluster's NIC change needs). Only
 * in a build with -Dtest_hooks=true (the developers' default; the Debian
 * package turns it off); there QDESK_TEST_HOOK=POINT:NAME[,POINT:NAME]
 * arms points, each for one VM (or network) name. Elsewhere they do
 * nothing. A point may also make qmpd differ (test_hook_armed):
 * incoming-differ gives a migration target's QEMU 64 MiB more RAM than
 * the source's, so it cannot load the stream.
 */
#include <signal.h>
#include <stdlib.h>
#include <string.h>

#include "log.h"
#include "qmpd.h"

/* Does QDESK_TEST_HOOK arm point for name? */
int
test_hook_armed(const char *point, const char *name)
{
#ifdef QDESK_TEST_HOOKS
	const char	*h = getenv("QDESK_TEST_HOOK"), *end;
	size_t		 n = strlen(point), len;

	for (; h != NULL && *h != '\0'; h = *end == ',' ? end + 1 : end) {
		end = h + strcspn(h, ",");
		len = end - h;
		if (len == n + 1 + strlen(name) && strncmp(h, point, n) == 0 &&
		    h[n] == ':' && strncmp(h + n + 1, name, len - n - 1) == 0)
			return (1);
	}
	return (0);
#else
	(void)point;
	(void)name;
	return (0);
#endif
}

/* Die (SIGKILL) if QDESK_TEST_HOOK names point and vm. */
void
test_hook(const char *point, const char *vm)
{
	if (!test_hook_armed(point, vm))
		return;
	log_warnx("%s: test hook %s: qmpd dies here (SIGKILL)", vm, point);
	raise(SIGKILL);
}

/* 1 if QDESK_TEST_HOOK names point and name: the caller fails there. */
int
test_hook_fail(const char *point, const char *name)
{
	if (!test_hook_armed(point, name))
		return (0);
	log_warnx("%s: test hook %s: this step fails", name, point);
	return (1);
}
