/* Name validation, one rule for every kind of object. */
#include <string.h>

#include "names.h"
#include "xmalloc.h"

#define NAMES_MAX	63

int
names_valid(const char *name, const char *what, char **cause)
{
	size_t	i, len;

	len = strlen(name);
	if (len == 0) {
		xasprintf(cause, "%s name is empty", what);
		return (-1);
	}
	if (len > NAMES_MAX) {
		xasprintf(cause, "%s name is %zu characters long, the limit is "
		    "%d", what, len, NAMES_MAX);
		return (-1);
	}
	for (i = 0; i < len; i++) {
		char c = name[i];

		if ((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9'))
			continue;
		if (c == '-' && i > 0)
			continue;
		xasprintf(cause, "invalid %s name '%s': use lower-case letters, "
		    "digits and '-', starting with a letter or digit", what,
		    name);
		return (-1);
	}
	return (0);
}
