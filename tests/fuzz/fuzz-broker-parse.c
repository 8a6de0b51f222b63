/* fuzz-sources: broker/ticket.c broker/httputil.c common/names.c common/log.c common/textbuf.c common/xmalloc.c common/compat/strlcpy.c */
/* fuzz-libs: openssl libevent libevent_openssl jansson */
/*
 * The broker's parsers that face the network: the CONNECT target and its
 * signed ticket, the Host header, the session cookie, the route match.
 * None may crash, and no forged ticket may verify.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "broker.h"

static const unsigned char key[32] = "qdesk fuzz key, never a real one";

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char	*s, host[256], out[256], vm[64], ticket[TICKET_MAX];
	char	*cause = NULL;
	int	 port = 0;

	s = malloc(size + 1);
	memcpy(s, data, size);
	s[size] = '\0';

	httputil_target(s, host, sizeof host, &port);
	httputil_hostname(s, out, sizeof out);
	httputil_cookie(s, "qdesk_session", out, sizeof out);
	httputil_match("/api/desktops/*/console", s, out, sizeof out);

	/* Whatever the input, it is no valid ticket (the key is secret). */
	if (ticket_verify(key, sizeof key, s, 5900, time(NULL), vm, sizeof vm,
	    &cause) == 0 && strncmp(s, "qdesk-", 6) != 0)
		abort();
	free(cause);
	cause = NULL;

	/* A ticket we make for a valid name verifies, for that port only. */
	if (size > 0 && size < 40 && ticket_make(key, sizeof key, s, 5901,
	    time(NULL) + 60, ticket, sizeof ticket) == 0) {
		if (ticket_verify(key, sizeof key, ticket, 5901, time(NULL), vm,
		    sizeof vm, &cause) != 0 || strcmp(vm, s) != 0)
			abort();
		free(cause);
		cause = NULL;
		if (ticket_verify(key, sizeof key, ticket, 5902, time(NULL),
		    vm, sizeof vm, &cause) == 0)
			abort();
		free(cause);
	}
	free(s);
	return (0);
}
