/* fuzz-sources: qmpd/qga.c qmpd/jsonl.c common/log.c common/textbuf.c common/xmalloc.c common/compat/strlcpy.c */
/* fuzz-libs: jansson libevent */
/*
 * libFuzzer harness for qga_line_classify, the parser every line from a
 * guest agent (that is, from the guest) goes through.  Beyond not
 * crashing or leaking, a verdict must be consistent: garbage gives no
 * value, a reply an object with the right key, and the value re-encoded
 * (with or without the 0xFF delimiter) must classify the same way.
 */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "qga.h"

int	LLVMFuzzerTestOneInput(const uint8_t *, size_t);

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	enum qga_line_kind	 kind, again;
	json_t			*out, *out2;
	int			 delimited, d2;
	char			*s, *t;
	size_t			 len;

	kind = qga_line_classify((const char *)data, size, &delimited, &out);
	if (delimited != (memchr(data, 0xff, size) != NULL))
		abort();
	if (kind == QGA_LINE_GARBAGE) {
		if (out != NULL)
			abort();
		return (0);
	}
	if (out == NULL || !json_is_object(out))
		abort();
	if (kind == QGA_LINE_RETURN && json_object_get(out, "return") == NULL)
		abort();
	if (kind == QGA_LINE_ERROR &&
	    !json_is_object(json_object_get(out, "error")))
		abort();

	if ((s = json_dumps(out, JSON_COMPACT)) == NULL)
		abort();
	again = qga_line_classify(s, strlen(s), &d2, &out2);
	if (again != kind || d2 || out2 == NULL || !json_equal(out, out2))
		abort();
	json_decref(out2);

	/* Behind noise and a delimiter, the same reply. */
	len = strlen(s);
	if ((t = malloc(len + 8)) == NULL)
		abort();
	memcpy(t, "x{\"a\xff", 5);
	memcpy(t + 5, s, len);
	again = qga_line_classify(t, len + 5, &d2, &out2);
	if (again != kind || !d2 || out2 == NULL || !json_equal(out, out2))
		abort();
	json_decref(out2);
	free(t);
	free(s);
	json_decref(out);
	return (0);
}
