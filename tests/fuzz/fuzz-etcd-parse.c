/* fuzz-sources: cluster/etcd-parse.c common/base64.c common/log.c common/textbuf.c common/xmalloc.c common/compat/strlcpy.c */
/* fuzz-libs: jansson libevent libevent_openssl openssl */
/*
 * libFuzzer harness for etcd_parse, the parser every answer from the etcd
 * gateway goes through (and base64, which it decodes with).  The first
 * byte picks the call the answer is for, the rest is the answer.  Beyond
 * not crashing or leaking: an error has a class and a cause and no value;
 * a value has the shape its call promises (kvs an array of text keys and
 * values with integer revisions, "succeeded" a boolean, ...).
 */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

/* tests/fuzz/run's include path has no cluster/. */
#include "../../cluster/etcd.h"

int	LLVMFuzzerTestOneInput(const uint8_t *, size_t);

static const char *paths[] = {
	"/v3/kv/deleterange", "/v3/kv/put", "/v3/kv/range", "/v3/kv/txn",
	"/v3/lease/grant", "/v3/lease/keepalive", "/v3/lease/revoke",
	"/v3/watch"
};

static void
fuzz_check_kvs(json_t *kvs)
{
	json_t	*kv;
	size_t	 i;

	if (!json_is_array(kvs))
		abort();
	json_array_foreach(kvs, i, kv) {
		if (!json_is_string(json_object_get(kv, "key")) ||
		    !json_is_string(json_object_get(kv, "value")) ||
		    !json_is_integer(json_object_get(kv, "mod_revision")) ||
		    !json_is_integer(json_object_get(kv, "lease")))
			abort();
	}
}

/* The promises of etcd.h, per call. */
static void
fuzz_check_shape(const char *path, json_t *v)
{
	json_t	*ev;
	size_t	 i;

	if (!json_is_object(v))
		abort();
	if (strcmp(path, "/v3/kv/range") == 0) {
		fuzz_check_kvs(json_object_get(v, "kvs"));
		if (!json_is_integer(json_object_get(v, "count")))
			abort();
	} else if (strcmp(path, "/v3/kv/txn") == 0) {
		if (!json_is_boolean(json_object_get(v, "succeeded")) ||
		    !json_is_array(json_object_get(v, "responses")))
			abort();
	} else if (strcmp(path, "/v3/kv/deleterange") == 0) {
		if (!json_is_integer(json_object_get(v, "deleted")))
			abort();
	} else if (strncmp(path, "/v3/lease/", 10) == 0 &&
	    strcmp(path, "/v3/lease/revoke") != 0) {
		if (!json_is_integer(json_object_get(v, "ID")) ||
		    !json_is_integer(json_object_get(v, "TTL")))
			abort();
	} else if (strcmp(path, "/v3/watch") == 0) {
		if (!json_is_boolean(json_object_get(v, "created")) ||
		    !json_is_integer(json_object_get(v, "compact_revision")))
			abort();
		json_array_foreach(json_object_get(v, "events"), i, ev) {
			if (!json_is_string(json_object_get(ev, "type")))
				abort();
			if (json_object_get(ev, "kv") != NULL &&
			    !json_is_string(json_object_get(json_object_get(ev,
			    "kv"), "key")))
				abort();
		}
	}
	if (json_object_get(v, "header") != NULL &&
	    !json_is_integer(json_object_get(json_object_get(v, "header"),
	    "revision")))
		abort();
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	const char	*path, *class;
	json_t		*out;
	char		*cause, *enc, *dec;
	size_t		 len;

	if (size == 0)
		return (0);
	path = paths[data[0] % (sizeof paths / sizeof paths[0])];
	if (etcd_parse(path, (const char *)data + 1, size - 1, &out, &class,
	    &cause) == 0) {
		if (class != NULL || cause != NULL)
			abort();
		fuzz_check_shape(path, out);
		json_decref(out);
	} else {
		if (out != NULL || class == NULL || cause == NULL ||
		    *cause == '\0')
			abort();
		free(cause);
	}

	/* base64 round trip of the raw bytes. */
	enc = etcd_base64_encode(data, size);
	dec = etcd_base64_decode(enc, strlen(enc), &len);
	if (dec == NULL || len != size || memcmp(dec, data, size) != 0)
		abort();
	free(enc);
	free(dec);
	/* Decoding arbitrary text never overruns. */
	dec = etcd_base64_decode((const char *)data, size, &len);
	free(dec);
	return (0);
}
