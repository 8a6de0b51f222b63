/*
 * netctl's one way to fill a caller's cause: like xasprintf, but a NULL
 * cause (a caller that only wants the verdict) is allowed.
 */
#ifndef QDESK_NETCTL_CAUSE_H
#define QDESK_NETCTL_CAUSE_H

#include <stdarg.h>
#include <stdio.h>

#include "xmalloc.h"

static inline void __attribute__((format(printf, 2, 3)))
netctl_cause(char **cause, const char *fmt, ...)
{
	va_list	ap;

	if (cause == NULL)
		return;
	va_start(ap, fmt);
	xvasprintf(cause, fmt, ap);
	va_end(ap);
}

#endif
