/*
 * The portal's static files, built into the binary (portal-files.c is
 * generated from broker/portal/ by embed.py), so the page and the API
 * always come from the same build.
 */
#include <string.h>

#include "broker.h"

extern const struct portal_file	portal_files[];

const struct portal_file *
portal_find(const char *path)
{
	const struct portal_file	*f;

	if (strcmp(path, "/") == 0)
		path = "/index.html";
	for (f = portal_files; f->path != NULL; f++) {
		if (strcmp(f->path, path) == 0)
			return (f);
	}
	return (NULL);
}

/* Serve one of the files; the page is small, so no caching games. */
void
portal_get(struct http_call *call)
{
	const struct portal_file	*f;

	if ((f = portal_find(call->path)) == NULL) {
		http_reply_error(call, 404, "no such page: %s", call->path);
		return;
	}
	http_header(call, "Cache-Control", "no-cache");
	http_reply_data(call, 200, f->type, f->data, f->size);
}
