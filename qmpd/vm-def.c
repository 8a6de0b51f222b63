/*
 * VM definitions: the one place that turns JSON (a create request or an
 * LMDB record) into a validated struct vm_def and back. Pure, so the argv
 * golden tests and the daemon see the same rules.
 */
#include <arpa/inet.h>

#include <stdlib.h>
#include <string.h>

#include "compat.h"
#include "names.h"
#include "vm.h"
#include "xmalloc.h"

#define VM_MEMORY_MIN	16
#define VM_MEMORY_MAX	(1024 * 1024)
#define VM_VCPUS_MAX	64

static const char *vm_state_names[] = {
	[VM_STOPPED] = "stopped",
	[VM_STARTING] = "starting",
	[VM_RUNNING] = "running",
	[VM_PAUSED] = "paused",
	[VM_STOPPING] = "stopping",
	[VM_CRASHED] = "crashed",
};

static const char *vm_restart_names[] = {
	[VM_RESTART_NO] = "no",
	[VM_RESTART_ON_CRASH] = "on-crash",
	[VM_RESTART_ALWAYS] = "always",
};

/* The keys vm_def owns; anything else is kept verbatim in extra. */
static const char *vm_def_keys[] = {
	"name", "uuid", "memory", "vcpus", "accel", "machine", "cpu", "kernel",
	"initrd", "append", "disk", "disk_format", "display", "listen",
	"spice_port", "restart", "autostart", "created"
};

const char *
vm_state_name(enum vm_state s)
{
	return (vm_state_names[s]);
}

int
vm_state_from_name(const char *name, enum vm_state *s)
{
	size_t	i;

	for (i = 0; i < nitems(vm_state_names); i++) {
		if (strcmp(vm_state_names[i], name) == 0) {
			*s = i;
			return (0);
		}
	}
	return (-1);
}

const char *
vm_restart_name(enum vm_restart r)
{
	return (vm_restart_names[r]);
}

void
vm_def_clear(struct vm_def *def)
{
	free(def->kernel);
	free(def->initrd);
	free(def->append);
	free(def->disk);
	free(def->disk_format);
	json_decref(def->extra);
	memset(def, 0, sizeof *def);
}

/* Copy an optional string field; a present non-string is an error. */
static int
vm_def_str(json_t *j, const char *key, char **out, char **cause)
{
	json_t	*v = json_object_get(j, key);

	if (v == NULL || json_is_null(v))
		return (0);
	if (!json_is_string(v)) {
		xasprintf(cause, "'%s' must be a string", key);
		return (-1);
	}
	*out = xstrdup(json_string_value(v));
	return (0);
}

/* Pick one of a fixed set of words into a small buffer. */
static int
vm_def_word(json_t *j, const char *key, const char *dflt,
    const char *const *allowed, char *out, size_t outlen, char **cause)
{
	json_t		*v = json_object_get(j, key);
	const char	*s = dflt;
	size_t		 i;

	if (v != NULL && !json_is_null(v)) {
		if (!json_is_string(v)) {
			xasprintf(cause, "'%s' must be a string", key);
			return (-1);
		}
		s = json_string_value(v);
	}
	for (i = 0; allowed[i] != NULL; i++) {
		if (strcmp(allowed[i], s) == 0) {
			strlcpy(out, s, outlen);
			return (0);
		}
	}
	xasprintf(cause, "invalid %s '%s'", key, s);
	return (-1);
}

static int
vm_def_int(json_t *j, const char *key, long long dflt, long long min,
    long long max, long long *out, char **cause)
{
	json_t	*v = json_object_get(j, key);

	*out = dflt;
	if (v == NULL || json_is_null(v))
		return (0);
	if (!json_is_integer(v)) {
		xasprintf(cause, "'%s' must be an integer", key);
		return (-1);
	}
	*out = json_integer_value(v);
	if (*out < min || *out > max) {
		xasprintf(cause, "%s %lld is out of range (%lld to %lld)", key,
		    *out, min, max);
		return (-1);
	}
	return (0);
}

static int
vm_def_path(const char *what, const char *path, char **cause)
{
	if (path != NULL && path[0] != '/') {
		xasprintf(cause, "%s path '%s' must be absolute", what, path);
		return (-1);
	}
	return (0);
}

int
vm_def_from_json(struct vm_def *def, json_t *j, char **cause)
{
	static const char *const accels[] = { "auto", "kvm", "tcg", NULL };
	static const char *const machines[] = { "pc", "q35", NULL };
	static const char *const displays[] = { "spice", "none", NULL };
	static const char *const formats[] = { "raw", "qcow2", NULL };
	char		 word[16], addr[16];
	const char	*key;
	json_t		*v;
	long long	 n;
	size_t		 i;

	memset(def, 0, sizeof *def);
	if (!json_is_object(j)) {
		xasprintf(cause, "a VM definition must be an object");
		return (-1);
	}
	v = json_object_get(j, "name");
	if (!json_is_string(v)) {
		xasprintf(cause, "a VM needs a name");
		return (-1);
	}
	if (names_valid(json_string_value(v), "VM", cause) != 0)
		return (-1);
	strlcpy(def->name, json_string_value(v), sizeof def->name);

	v = json_object_get(j, "uuid");
	if (json_is_string(v) && strlen(json_string_value(v)) == 36)
		strlcpy(def->uuid, json_string_value(v), sizeof def->uuid);

	if (vm_def_int(j, "memory", 256, VM_MEMORY_MIN, VM_MEMORY_MAX, &n,
	    cause) != 0)
		goto fail;
	def->memory = n;
	if (vm_def_int(j, "vcpus", 1, 1, VM_VCPUS_MAX, &n, cause) != 0)
		goto fail;
	def->vcpus = n;
	if (vm_def_int(j, "spice_port", 0, 0, 65535, &n, cause) != 0)
		goto fail;
	def->spice_port = n;
	if (vm_def_int(j, "created", 0, 0, (long long)1 << 40, &n, cause) != 0)
		goto fail;
	def->created = n;

	if (vm_def_word(j, "accel", "auto", accels, def->accel,
	    sizeof def->accel, cause) != 0)
		goto fail;
	if (vm_def_word(j, "machine", "pc", machines, def->machine,
	    sizeof def->machine, cause) != 0)
		goto fail;
	if (vm_def_word(j, "display", "spice", displays, def->display,
	    sizeof def->display, cause) != 0)
		goto fail;
	if (vm_def_word(j, "restart", "no", vm_restart_names, word,
	    sizeof word, cause) != 0)
		goto fail;
	for (i = 0; i < nitems(vm_restart_names); i++)
		if (strcmp(word, vm_restart_names[i]) == 0)
			def->restart = i;

	/* A CPU model name, or "host"; features as QEMU writes them. */
	v = json_object_get(j, "cpu");
	if (v != NULL && !json_is_null(v)) {
		const char *m = json_is_string(v) ? json_string_value(v) : "";

		if (*m == '\0' || strlen(m) >= sizeof def->cpu ||
		    strspn(m, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTU"
		    "VWXYZ0123456789,._+=-") != strlen(m) || *m == ',') {
			xasprintf(cause, "cpu must be a QEMU CPU model such as "
			    "host or Skylake-Client,-hle");
			goto fail;
		}
		strlcpy(def->cpu, m, sizeof def->cpu);
	}

	v = json_object_get(j, "autostart");
	if (v != NULL && !json_is_null(v) && !json_is_boolean(v)) {
		xasprintf(cause, "'autostart' must be true or false");
		goto fail;
	}
	def->autostart = json_is_true(v);

	v = json_object_get(j, "listen");
	strlcpy(def->listen, "127.0.0.1", sizeof def->listen);
	if (v != NULL && !json_is_null(v)) {
		if (!json_is_string(v) ||
		    (inet_pton(AF_INET, json_string_value(v), addr) != 1 &&
		    inet_pton(AF_INET6, json_string_value(v), addr) != 1)) {
			xasprintf(cause, "listen must be an IPv4 or IPv6 "
			    "address");
			goto fail;
		}
		strlcpy(def->listen, json_string_value(v), sizeof def->listen);
	}

	if (vm_def_str(j, "kernel", &def->kernel, cause) != 0 ||
	    vm_def_str(j, "initrd", &def->initrd, cause) != 0 ||
	    vm_def_str(j, "append", &def->append, cause) != 0 ||
	    vm_def_str(j, "disk", &def->disk, cause) != 0)
		goto fail;
	if (vm_def_path("kernel", def->kernel, cause) != 0 ||
	    vm_def_path("initrd", def->initrd, cause) != 0 ||
	    vm_def_path("disk", def->disk, cause) != 0)
		goto fail;
	if (def->kernel == NULL && (def->initrd != NULL ||
	    def->append != NULL)) {
		xasprintf(cause, "initrd and append need a kernel");
		goto fail;
	}
	if (def->disk != NULL) {
		if (vm_def_word(j, "disk_format", "raw", formats, word,
		    sizeof word, cause) != 0)
			goto fail;
		def->disk_format = xstrdup(word);
	}
	if (def->append != NULL && strchr(def->append, '\n') != NULL) {
		xasprintf(cause, "append must be one line");
		goto fail;
	}

	def->extra = json_object();
	json_object_foreach(j, key, v) {
		for (i = 0; i < nitems(vm_def_keys); i++)
			if (strcmp(key, vm_def_keys[i]) == 0)
				break;
		if (i == nitems(vm_def_keys) && !json_is_null(v))
			json_object_set(def->extra, key, v);
	}
	return (0);
fail:
	vm_def_clear(def);
	return (-1);
}

json_t *
vm_def_to_json(const struct vm_def *def)
{
	json_t	*j;

	j = json_pack("{s:s,s:s,s:i,s:i,s:s,s:s,s:s,s:s,s:i,s:s,s:b,s:I}",
	    "name", def->name, "uuid", def->uuid, "memory", def->memory,
	    "vcpus", def->vcpus, "accel", def->accel, "machine", def->machine,
	    "display", def->display, "listen", def->listen,
	    "spice_port", def->spice_port,
	    "restart", vm_restart_names[def->restart],
	    "autostart", def->autostart, "created", (json_int_t)def->created);
	if (def->cpu[0] != '\0')
		json_object_set_new(j, "cpu", json_string(def->cpu));
	if (def->kernel != NULL)
		json_object_set_new(j, "kernel", json_string(def->kernel));
	if (def->initrd != NULL)
		json_object_set_new(j, "initrd", json_string(def->initrd));
	if (def->append != NULL)
		json_object_set_new(j, "append", json_string(def->append));
	if (def->disk != NULL) {
		json_object_set_new(j, "disk", json_string(def->disk));
		json_object_set_new(j, "disk_format",
		    json_string(def->disk_format));
	}
	if (def->extra != NULL)
		json_object_update_missing(j, def->extra);
	return (j);
}
