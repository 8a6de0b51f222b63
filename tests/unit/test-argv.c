/*
 * Golden files for the QEMU command line: each tests/golden/argv/NAME.json
 * holds {"def": VM definition, "accel": "kvm"|"tcg"} and NAME.args the
 * expected argv, one argument a line. QDESK_GOLDEN_UPDATE=1 rewrites them.
 * fail-*.json must be refused, by vm_def_from_json or by the builder,
 * with the one-line error NAME.err holds. A passing definition must come
 * back from vm_def_to_json with every field it was given, unchanged (the
 * LMDB record format), and read back to the same JSON.
 */
#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "check.h"
#include "compat.h"
#include "vm.h"
#include "xmalloc.h"

static char *
argv_join(char **argv)
{
	size_t	 len = 1;
	char	*s, **p;

	for (p = argv; *p != NULL; p++)
		len += strlen(*p) + 1;
	s = xcalloc(1, len);
	for (p = argv; *p != NULL; p++) {
		strcat(s, *p);
		strcat(s, "\n");
	}
	return (s);
}

static char *
slurp(const char *path)
{
	FILE	*f;
	char	*buf;
	long	 n;

	if ((f = fopen(path, "r")) == NULL)
		return (NULL);
	fseek(f, 0, SEEK_END);
	n = ftell(f);
	rewind(f);
	buf = xcalloc(1, n + 1);
	if (fread(buf, 1, n, f) != (size_t)n)
		n = 0;
	fclose(f);
	return (buf);
}

/* Write text to path (QDESK_GOLDEN_UPDATE). */
static void
spill(const char *path, const char *text)
{
	FILE	*f;

	if ((f = fopen(path, "w")) == NULL) {
		perror(path);
		return;
	}
	fputs(text, f);
	fclose(f);
}

/* A fail-* case's error against NAME.err (path: NAME.json). */
static void
check_error(const char *path, const char *cause)
{
	char	 errpath[4096], *want, *got;

	snprintf(errpath, sizeof errpath, "%.*s.err", (int)strlen(path) - 5,
	    path);
	xasprintf(&got, "%s\n", cause != NULL ? cause : "(no error text)");
	if (getenv("QDESK_GOLDEN_UPDATE") != NULL)
		spill(errpath, got);
	want = slurp(errpath);
	if (want == NULL)
		fprintf(stderr, "%s: missing; the error was: %s", errpath, got);
	CHECK_STR(got, want);
	free(got);
	free(want);
}

/*
 * Every field given comes back from vm_def_to_json as it was ("nets"
 * only lives until vm.create leases its NICs), and reads back the same.
 */
static void
check_roundtrip(const char *file, const struct vm_def *def, json_t *in)
{
	struct vm_def	 again;
	json_t		*out, *out2, *v;
	const char	*key;
	char		*cause = NULL;

	out = vm_def_to_json(def);
	json_object_foreach(in, key, v) {
		if (strcmp(key, "nets") == 0 || json_is_null(v))
			continue;
		if (!json_equal(v, json_object_get(out, key)))
			fprintf(stderr, "%s: field %s not written back\n", file,
			    key);
		CHECK(json_equal(v, json_object_get(out, key)));
	}
	CHECK(vm_def_from_json(&again, out, &cause) == 0);
	if (cause != NULL) {
		fprintf(stderr, "%s: read back: %s\n", file, cause);
		free(cause);
		json_decref(out);
		return;
	}
	out2 = vm_def_to_json(&again);
	CHECK(json_equal(out, out2));
	json_decref(out);
	json_decref(out2);
	vm_def_clear(&again);
}

static void
one(const char *dir, const char *file)
{
	struct vm_def		 def;
	struct vm_runtime_paths	 rt;
	json_t			*j;
	char			 path[4096], rundir[256], *cause = NULL;
	char			**argv, *got, *want;
	static const int	 tap_fds[] = { 5, 6, 7, 8, 9, 10, 11, 12 };
	int			 expect_fail = strncmp(file, "fail-", 5) == 0;
	struct vm_disk		 idisk;
	struct vm_disk_link	 links[8];
	struct vm_pci_pins	 pins;
	json_t			*img, *l;
	size_t			 i;

	snprintf(path, sizeof path, "%s/%s", dir, file);
	j = json_load_file(path, 0, NULL);
	CHECK(j != NULL);
	if (j == NULL)
		return;
	if (vm_def_from_json(&def, json_object_get(j, "def"), &cause) != 0) {
		if (!expect_fail)
			fprintf(stderr, "%s: %s\n", file, cause);
		CHECK(expect_fail);
		if (expect_fail)
			check_error(path, cause);
		free(cause);
		json_decref(j);
		return;
	}
	if (!expect_fail)
		check_roundtrip(file, &def, json_object_get(j, "def"));
	snprintf(rundir, sizeof rundir, "/var/lib/qdesk/vms/%s", def.name);
	rt.dir = rundir;
	rt.qmp_fd = 3;
	rt.disk_fd = def.disk != NULL ? 4 : -1;
	rt.accel = json_string_value(json_object_get(j, "accel"));
	/* A migration target (-incoming defer): "incoming": true. */
	rt.incoming = json_is_true(json_object_get(j, "incoming"));
	rt.spice_tls_dir = json_string_value(json_object_get(j,
	    "spice_tls_dir"));
	/* The NVRAM of a UEFI VM, opened by qmpd ("no_nvram": missing). */
	rt.nvram_fd = json_is_true(json_object_get(j, "no_nvram")) ? -1 : 30;
	/* The swtpm's control socket ("no_tpm": not started). */
	rt.tpm_fd = json_is_true(json_object_get(j, "no_tpm")) ? -1 : 31;
	/* An image-store chain, top first: {"image", "format"}, fds 20+. */
	rt.image = NULL;
	if (json_is_array(img = json_object_get(j, "image"))) {
		memset(links, 0, sizeof links);
		json_array_foreach(img, i, l) {
			if (i == nitems(links))
				break;
			links[i].fd = 20 + i;
			strlcpy(links[i].format, json_string_value(
			    json_object_get(l, "format")), sizeof links[i].format);
			strlcpy(links[i].image, json_string_value(
			    json_object_get(l, "image")), sizeof links[i].image);
		}
		idisk.n = i;
		idisk.links = links;
		rt.image = &idisk;
	}
	/* TAP fds for the NICs, in order, after the QMP socket and disk. */
	rt.tap_fds = tap_fds;
	rt.ntap_fds = def.nnics;
	/* The guest agent port's socket: "agent_fd" in the case, else 30. */
	rt.agent_fd = def.agent ? 30 : -1;
	if (json_is_integer(json_object_get(j, "agent_fd")))
		rt.agent_fd = json_integer_value(json_object_get(j,
		    "agent_fd"));
	/* A migration target's PCI layout, as migrate.prepare's "pci". */
	rt.pins = NULL;
	if (json_object_get(j, "pci") != NULL) {
		if (vm_pci_pins_from_json(json_object_get(j, "pci"), &pins,
		    &cause) != 0) {
			CHECK(expect_fail);
			if (expect_fail)
				check_error(path, cause);
			free(cause);
			vm_def_clear(&def);
			json_decref(j);
			return;
		}
		rt.pins = &pins;
	}
	argv = vm_argv_build(&def, &rt, "qemu-system-x86_64", &cause);
	if (expect_fail) {
		CHECK(argv == NULL);
		if (argv == NULL) {
			check_error(path, cause);
			free(cause);
		} else
			vm_argv_free(argv);
		goto out;
	}
	CHECK(argv != NULL);
	if (argv == NULL) {
		fprintf(stderr, "%s: %s\n", file, cause);
		goto out;
	}
	got = argv_join(argv);
	path[strlen(path) - 5] = '\0';
	strcat(path, ".args");
	if (getenv("QDESK_GOLDEN_UPDATE") != NULL)
		spill(path, got);
	want = slurp(path);
	CHECK_STR(got, want);
	free(got);
	free(want);
	vm_argv_free(argv);
out:
	vm_def_clear(&def);
	json_decref(j);
}

int
main(int argc, char **argv)
{
	DIR		*d;
	struct dirent	*de;
	int		 n = 0;

	if (argc != 2) {
		fprintf(stderr, "usage: test-argv GOLDEN-DIR\n");
		return (2);
	}
	if ((d = opendir(argv[1])) == NULL) {
		perror(argv[1]);
		return (1);
	}
	while ((de = readdir(d)) != NULL) {
		size_t len = strlen(de->d_name);
		if (len > 5 && strcmp(de->d_name + len - 5, ".json") == 0) {
			one(argv[1], de->d_name);
			n++;
		}
	}
	closedir(d);
	CHECK(n >= 4);
	return (check_exit());
}
