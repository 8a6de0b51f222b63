/* fuzz-sources: qmpd/qmp.c qmpd/jsonl.c common/sock.c common/log.c common/textbuf.c common/xmalloc.c common/compat/strlcpy.c */
/* fuzz-libs: jansson libevent */
/*
 * libFuzzer harness for qmp_line_classify, the parser every line from QEMU
 * goes through.  Beyond not crashing or leaking, a verdict must be
 * consistent: garbage gives no value, anything else an object with the
 * right key, and the value re-encoded must classify the same way.
 */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "qmp.h"

int	LLVMFuzzerTestOneInput(const uint8_t *, size_t);

/* Check the key that decided the kind is there with the right shape. */
static void
fuzz_check_shape(enum qmp_line_kind kind, json_t *v)
{
	if (!json_is_object(v))
		abort();
	switch (kind) {
	case QMP_LINE_GREETING:
		if (!json_is_object(json_object_get(v, "QMP")))
			abort();
		break;
	case QMP_LINE_EVENT:
		if (!json_is_string(json_object_get(v, "event")))
			abort();
		break;
	case QMP_LINE_RETURN:
		if (json_object_get(v, "return") == NULL)
			abort();
		break;
	case QMP_LINE_ERROR:
		if (!json_is_object(json_object_get(v, "error")))
			abort();
		break;
	case QMP_LINE_GARBAGE:
		abort();
	}
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	enum qmp_line_kind	 kind, again;
	json_t			*out, *out2;
	char			*s;

	kind = qmp_line_classify((const char *)data, size, &out);
	if (kind == QMP_LINE_GARBAGE) {
		if (out != NULL)
			abort();
		return (0);
	}
	if (out == NULL)
		abort();
	fuzz_check_shape(kind, out);

	/* What the client would log at debug level must parse back alike. */
	if ((s = json_dumps(out, JSON_COMPACT)) == NULL)
		abort();
	again = qmp_line_classify(s, strlen(s), &out2);
	if (again != kind || out2 == NULL || !json_equal(out, out2))
		abort();
	json_decref(out2);
	free(s);
	json_decref(out);
	return (0);
}
