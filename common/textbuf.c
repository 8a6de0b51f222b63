/* Text built line by line, as generated configuration files are. */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "log.h"
#include "textbuf.h"
#include "xmalloc.h"

void
textbuf_printf(struct textbuf *b, const char *fmt, ...)
{
	va_list	 ap;
	char	*line;
	int	 n;

	va_start(ap, fmt);
	n = xvasprintf(&line, fmt, ap);
	va_end(ap);
	if (b->len + n + 1 > b->size) {
		b->size = (b->len + n + 1) * 2;
		b->s = xrealloc(b->s, b->size);
	}
	memcpy(b->s + b->len, line, n + 1);
	b->len += n;
	free(line);
}

char *
textbuf_finish(struct textbuf *b)
{
	char	*s = b->s;

	memset(b, 0, sizeof *b);
	return (s != NULL ? s : xstrdup(""));
}
