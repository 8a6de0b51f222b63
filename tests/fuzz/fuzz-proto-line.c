/* fuzz-sources: common/proto.c common/names.c common/log.c common/textbuf.c common/xmalloc.c common/compat/strlcpy.c */
/* fuzz-libs: jansson */
/*
 * The admin protocol's request parser, exactly as the daemon runs it on
 * every line a client sends: it must never crash, leak or accept a request
 * without a command, and every error reply it leads to must be valid JSON.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "names.h"
#include "proto.h"

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct proto_req	 req;
	const char		*errclass = NULL;
	char			*cause = NULL, *line, *name;
	json_t			*j;

	if (proto_parse_request((const char *)data, size, &req, &errclass,
	    &cause) == 0) {
		if (req.cmd == NULL || !json_is_object(req.args))
			abort();
		line = proto_return(req.id, req.args);
	} else {
		if (errclass == NULL || cause == NULL)
			abort();
		line = proto_error(req.id, errclass, cause);
	}
	if ((j = json_loads(line, 0, NULL)) == NULL)
		abort();
	json_decref(j);
	free(line);
	free(cause);
	proto_req_clear(&req);

	/* Names arrive inside requests too. */
	name = strndup((const char *)data, size < 80 ? size : 80);
	cause = NULL;
	if (names_valid(name, "VM", &cause) != 0 && cause == NULL)
		abort();
	free(cause);
	free(name);
	return (0);
}
