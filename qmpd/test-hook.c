/*
 * Test hooks: points in qmpd where a test makes it die as kill -9 would,
 * to drive a recovery branch that no outside timing can reach (the
 * target's qmpd gone between the placement swap and cont, say). Only in
 * a build with -Dtest_hooks=true (the developers' default; the Debian
 * package turns it off); there QDESK_TEST_HOOK=POINT:VM arms one point
 * for one VM. Elsewhere test_hook does nothing. A hook may also change
 * what qmpd does rather than kill it (test_hook_armed): incoming-differ
 * gives a migration target's QEMU 64 MiB more RAM than the source's, so
 * it cannot load the stream.
 */
#include <signal.h>
#include <stdlib.h>
#include <string.h>

#include "log.h"
#include "qmpd.h"

/* Does QDESK_TEST_HOOK name point and vm? */
int
test_hook_armed(const char *point, const char *vm)
{
#ifdef QDESK_TEST_HOOKS
	const char	*h = getenv("QDESK_TEST_HOOK");
	size_t		 n = strlen(point);

	return (h != NULL && strncmp(h, point, n) == 0 && h[n] == ':' &&
	    strcmp(h + n + 1, vm) == 0);
#else
	(void)point;
	(void)vm;
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
