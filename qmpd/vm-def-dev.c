/*
 * The desktop devices of a VM definition (issue 11): the display adapter
 * and its heads, sound, SPICE USB redirection and the memory balloon.
 * Read and written here, beside vm-def.c, so that the golden argv tests
 * and the daemon check them by the same rules.
 */
#include <stdlib.h>
#include <string.h>

#include "compat.h"
#include "vm.h"
#include "xmalloc.h"

/* The keys this file owns in a definition (vm_def_unknown asks). */
static const char *vm_def_dev_keys[] = {
	"video", "heads", "audio", "usbredir", "balloon"
};

static const char *const vm_def_dev_videos[] = { "vga", "qxl", "virtio",
    NULL };

int
vm_def_dev_key(const char *key)
{
	size_t	i;

	for (i = 0; i < nitems(vm_def_dev_keys); i++)
		if (strcmp(key, vm_def_dev_keys[i]) == 0)
			return (1);
	return (0);
}

/* An integer field in [min, max], dflt when absent. */
static int
vm_def_dev_int(json_t *j, const char *key, int dflt, int min, int max,
    int *out, char **cause)
{
	json_t		*v = json_object_get(j, key);
	json_int_t	 n;

	*out = dflt;
	if (v == NULL || json_is_null(v))
		return (0);
	if (!json_is_integer(v)) {
		xasprintf(cause, "'%s' must be an integer", key);
		return (-1);
	}
	n = json_integer_value(v);
	if (n < min || n > max) {
		xasprintf(cause, "%s must be %d to %d, not %lld", key, min,
		    max, (long long)n);
		return (-1);
	}
	*out = n;
	return (0);
}

/* A true/false field, false when absent. */
static int
vm_def_dev_bool(json_t *j, const char *key, int *out, char **cause)
{
	json_t	*v = json_object_get(j, key);

	if (v != NULL && !json_is_null(v) && !json_is_boolean(v)) {
		xasprintf(cause, "'%s' must be true or false", key);
		return (-1);
	}
	*out = json_is_true(v);
	return (0);
}

/* The video adapter: qxl with SPICE (as before), std VGA without. */
static int
vm_def_dev_video(struct vm_def *def, json_t *j, char **cause)
{
	json_t		*v = json_object_get(j, "video");
	const char	*s;
	size_t		 i;

	s = strcmp(def->display, "spice") == 0 ? "qxl" : "vga";
	if (v != NULL && !json_is_null(v)) {
		if (!json_is_string(v)) {
			xasprintf(cause, "'video' must be a string");
			return (-1);
		}
		s = json_string_value(v);
	}
	for (i = 0; vm_def_dev_videos[i] != NULL; i++) {
		if (strcmp(s, vm_def_dev_videos[i]) == 0) {
			strlcpy(def->video, s, sizeof def->video);
			return (0);
		}
	}
	xasprintf(cause, "video must be vga, qxl or virtio, not '%.32s'", s);
	return (-1);
}

/*
 * The device fields, checked against each other and the display: more
 * than one head needs qxl or virtio, sound and USB redirection travel
 * over SPICE channels so they need the SPICE display.
 */
int
vm_def_dev_from_json(struct vm_def *def, json_t *j, char **cause)
{
	int	spice = strcmp(def->display, "spice") == 0;

	if (vm_def_dev_video(def, j, cause) != 0 ||
	    vm_def_dev_int(j, "heads", 1, 1, VM_HEADS_MAX, &def->heads,
	    cause) != 0 ||
	    vm_def_dev_int(j, "usbredir", 0, 0, VM_USBREDIR_MAX,
	    &def->usbredir, cause) != 0 ||
	    vm_def_dev_bool(j, "audio", &def->audio, cause) != 0 ||
	    vm_def_dev_bool(j, "balloon", &def->balloon, cause) != 0)
		return (-1);
	if (def->heads > 1 && strcmp(def->video, "vga") == 0) {
		xasprintf(cause, "video vga has one head: %d heads need video "
		    "qxl or virtio", def->heads);
		return (-1);
	}
	if (def->audio && !spice) {
		xasprintf(cause, "audio plays over SPICE: it needs display "
		    "spice");
		return (-1);
	}
	if (def->usbredir > 0 && !spice) {
		xasprintf(cause, "usbredir channels are SPICE channels: they "
		    "need display spice");
		return (-1);
	}
	return (0);
}

/* The device fields as the LMDB record and vm show write them. */
void
vm_def_dev_to_json(const struct vm_def *def, json_t *j)
{
	json_object_set_new(j, "video", json_string(def->video));
	json_object_set_new(j, "heads", json_integer(def->heads));
	json_object_set_new(j, "audio", json_boolean(def->audio));
	json_object_set_new(j, "usbredir", json_integer(def->usbredir));
	json_object_set_new(j, "balloon", json_boolean(def->balloon));
}
