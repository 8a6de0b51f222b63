/*
 * The desktop devices of a VM definition (issue 11): the display adapter
 * and its heads, sound, SPICE USB redirection and the memory balloon,
 * and the --os profiles that pick them (with the firmware, TPM and guest
 * agent fields, whose devices other files build). Read and written here,
 * beside vm-def.c, so that the golden argv tests and the daemon check
 * them by the same rules.
 */
#include <stdlib.h>
#include <string.h>

#include "compat.h"
#include "vm.h"
#include "xmalloc.h"

/* The keys this file owns in a definition (vm_def_unknown asks). */
static const char *vm_def_dev_keys[] = {
	"video", "heads", "audio", "usbredir", "balloon", "os", "firmware",
	"tpm", "agent", "clipboard"
};

static const char *const vm_def_dev_videos[] = { "vga", "qxl", "virtio",
    NULL };
static const char *const vm_def_dev_firmwares[] = { "bios", "uefi",
    "uefi-secure", NULL };

/*
 * The --os profiles: what each sets when the definition does not say.
 * windows11 is what Windows 11 requires (UEFI with Secure Boot, TPM 2.0)
 * plus what an office desktop wants; windows10 the same on plain UEFI
 * without a TPM; linux plain UEFI; generic sets nothing (the defaults of
 * every field, as before profiles). A NULL or -1 entry sets nothing.
 */
static const struct vm_def_dev_os {
	const char	*os;
	const char	*machine;
	const char	*firmware;
	int		 tpm;
	const char	*video;
	int		 audio;
	int		 usbredir;
	int		 agent;
	int		 balloon;
	int		 clipboard;	/* without SPICE only */
} vm_def_dev_oses[] = {
	{ "generic", NULL, NULL, -1, NULL, -1, -1, -1, -1, -1 },
	{ "linux", "q35", "uefi", -1, "qxl", 1, 4, 1, 1, 1 },
	{ "windows10", "q35", "uefi", -1, "qxl", 1, 4, 1, 1, 1 },
	{ "windows11", "q35", "uefi-secure", 1, "qxl", 1, 4, 1, 1, 1 },
};

/* Is key one of this file's (so vm_def_unknown lets it through)? */
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

/* Sets key to v (a new reference) in j unless j has it already. */
static void
vm_def_dev_default(json_t *j, const char *key, json_t *v)
{
	json_t	*old = json_object_get(j, key);

	if (old == NULL || json_is_null(old))
		json_object_set_new(j, key, v);
	else
		json_decref(v);
}

/*
 * The definition with its --os profile's values added where it has none
 * (explicit fields win), as a new reference; NULL and a cause for an
 * unknown os. Without the SPICE display, the profile adds no SPICE
 * device (qxl, sound, USB redirection): an explicit display none wins.
 */
json_t *
vm_def_dev_profile(json_t *j, char **cause)
{
	const struct vm_def_dev_os	*p = NULL;
	json_t				*v = json_object_get(j, "os"), *out;
	const char			*os = "generic", *display;
	size_t				 i;

	if (v != NULL && !json_is_null(v)) {
		if (!json_is_string(v)) {
			xasprintf(cause, "'os' must be a string");
			return (NULL);
		}
		os = json_string_value(v);
	}
	for (i = 0; i < nitems(vm_def_dev_oses); i++)
		if (strcmp(os, vm_def_dev_oses[i].os) == 0)
			p = &vm_def_dev_oses[i];
	if (p == NULL) {
		xasprintf(cause, "os must be generic, linux, windows10 or "
		    "windows11, not '%.32s'", os);
		return (NULL);
	}
	out = json_copy(j);
	display = json_string_value(json_object_get(j, "display"));
	if (p->machine != NULL)
		vm_def_dev_default(out, "machine", json_string(p->machine));
	if (p->firmware != NULL)
		vm_def_dev_default(out, "firmware", json_string(p->firmware));
	if (p->tpm != -1)
		vm_def_dev_default(out, "tpm", json_boolean(p->tpm));
	if (p->agent != -1)
		vm_def_dev_default(out, "agent", json_boolean(p->agent));
	if (p->balloon != -1)
		vm_def_dev_default(out, "balloon", json_boolean(p->balloon));
	/*
	 * Without SPICE, the desktop is reached through the RDP gateway or
	 * the browser console: sound plays there (VNC capture) and the
	 * clipboard goes through QEMU's (qemu-vdagent). With SPICE, the
	 * agent port stays the viewer's unless clipboard is asked for.
	 */
	if (display != NULL && strcmp(display, "spice") != 0) {
		if (p->audio != -1)
			vm_def_dev_default(out, "audio",
			    json_boolean(p->audio));
		if (p->clipboard != -1)
			vm_def_dev_default(out, "clipboard",
			    json_boolean(p->clipboard));
		return (out);
	}
	if (p->video != NULL)
		vm_def_dev_default(out, "video", json_string(p->video));
	if (p->audio != -1)
		vm_def_dev_default(out, "audio", json_boolean(p->audio));
	if (p->usbredir != -1)
		vm_def_dev_default(out, "usbredir", json_integer(p->usbredir));
	return (out);
}

/* Is it a Windows guest (Hyper-V enlightenments, one qxl per head)? */
int
vm_def_dev_windows(const struct vm_def *def)
{
	return (strncmp(def->os, "windows", 7) == 0);
}

/*
 * The profile's own fields: the os, and the firmware, TPM and agent it
 * sets, checked against the machine: Secure Boot needs q35 (its SMM),
 * Windows 11 needs UEFI (and its TPM is a UEFI one).
 */
static int
vm_def_dev_os(struct vm_def *def, json_t *j, char **cause)
{
	static const char *const oses[] = { "generic", "linux", "windows10",
	    "windows11", NULL };

	if (vm_def_word(j, "os", "generic", oses, def->os,
	    sizeof def->os, 32, cause) != 0 ||
	    vm_def_word(j, "firmware", "bios", vm_def_dev_firmwares,
	    def->firmware, sizeof def->firmware, 32, cause) != 0 ||
	    vm_def_bool(j, "tpm", &def->tpm, cause) != 0 ||
	    vm_def_bool(j, "agent", &def->agent, cause) != 0)
		return (-1);
	if (strcmp(def->firmware, "uefi-secure") == 0 &&
	    strcmp(def->machine, "q35") != 0) {
		xasprintf(cause, "firmware uefi-secure needs machine q35, not "
		    "%s", def->machine);
		return (-1);
	}
	if (strcmp(def->os, "windows11") == 0 &&
	    strcmp(def->firmware, "bios") == 0) {
		xasprintf(cause, "os windows11 needs firmware uefi or "
		    "uefi-secure (Windows 11 and its TPM boot on UEFI)");
		return (-1);
	}
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
 * than one head needs qxl or virtio, USB redirection travels over SPICE
 * channels so it needs the SPICE display. Sound and clipboard work with
 * either: SPICE's channels, or QEMU's VNC server for the RDP gateway.
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
	    vm_def_bool(j, "audio", &def->audio, cause) != 0 ||
	    vm_def_bool(j, "balloon", &def->balloon, cause) != 0 ||
	    vm_def_bool(j, "clipboard", &def->clipboard, cause) != 0 ||
	    vm_def_dev_os(def, j, cause) != 0)
		return (-1);
	if (def->heads > 1 && strcmp(def->video, "vga") == 0) {
		xasprintf(cause, "video vga has one head: %d heads need video "
		    "qxl or virtio", def->heads);
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
	json_object_set_new(j, "clipboard", json_boolean(def->clipboard));
	/* Every field the profile sets, so a record never takes it twice. */
	json_object_set_new(j, "os", json_string(def->os));
	json_object_set_new(j, "firmware", json_string(def->firmware));
	json_object_set_new(j, "tpm", json_boolean(def->tpm));
	json_object_set_new(j, "agent", json_boolean(def->agent));
}
