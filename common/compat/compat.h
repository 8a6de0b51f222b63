/* Functions the BSDs have and glibc 2.36 lacks. */
#ifndef QDESK_COMPAT_H
#define QDESK_COMPAT_H

#include <stddef.h>

#include "queue.h"

size_t	strlcpy(char *, const char *, size_t);
size_t	strlcat(char *, const char *, size_t);

#ifndef nitems
#define nitems(a) (sizeof(a) / sizeof((a)[0]))
#endif

#endif
