/*
 * Completion callbacks: how a model (a VM's wait, the boot queue, a NIC
 * hotplug, a ticket, an image job) answers whoever asked without knowing
 * who that is. A cmd-*.c handler passes cmd_done and its request; a
 * policy passes its own function or none.
 */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>

#include "qmpd.h"

/* Call done (if any) with an error: errclass and a printf-style cause. */
void
done_fail(done_cb done, void *arg, const char *errclass, const char *fmt,
    ...)
{
	va_list	 ap;
	char	*cause;

	if (done == NULL)
		return;
	va_start(ap, fmt);
	if (vasprintf(&cause, fmt, ap) < 0)
		cause = NULL;
	va_end(ap);
	done(arg, NULL, errclass, cause != NULL ? cause : errclass);
	free(cause);
}

/* Call done (if any) with a result (stolen), or drop the result. */
void
done_ok(done_cb done, void *arg, json_t *result)
{
	if (done == NULL) {
		json_decref(result);
		return;
	}
	done(arg, result, NULL, NULL);
}
