/* A growing text buffer for generated files (dnsmasq config, nft rules). */
#ifndef QDESK_TEXTBUF_H
#define QDESK_TEXTBUF_H

#include <stddef.h>

/* Zero it to start; textbuf_finish hands the text over. */
struct textbuf {
	char	*s;
	size_t	 len;
	size_t	 size;
};

void	 textbuf_printf(struct textbuf *, const char *fmt, ...)
	    __attribute__((format(printf, 2, 3)));
/* The text, owned by the caller ("" when nothing was written). */
char	*textbuf_finish(struct textbuf *);

#endif
