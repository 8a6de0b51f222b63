/* Allocators that never return NULL: running out of memory is fatal. */
#ifndef QDESK_XMALLOC_H
#define QDESK_XMALLOC_H

#include <stdarg.h>
#include <stddef.h>

void	*xmalloc(size_t);
void	*xcalloc(size_t, size_t);
void	*xrealloc(void *, size_t);
char	*xstrdup(const char *);
char	*xstrndup(const char *, size_t);
int	 xasprintf(char **, const char *, ...)
	    __attribute__((format(printf, 2, 3)));
int	 xvasprintf(char **, const char *, va_list)
	    __attribute__((format(printf, 2, 0)));
/* Frees a NULL-terminated array of strings and the array; NULL is fine. */
void	 xfreev(char **);

#endif
