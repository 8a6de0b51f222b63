/*
 * VM definitions: the one place that turns JSON (a create request or an
 * LMDB record) into a validated struct vm_def and back. Pure, so the argv
 * golden tests and the daemon see the same rules.
 */
#include <arpa/inet.h>

#include <stdlib.h>
#include <string.h>

#include "compat.h"
#include "ipam.h"
#include "names.h"
#include "store.h"
#include "vm.h"
#include "xmalloc.h"

#define VM_MEMORY_MIN	16
#define VM_MEMORY_MAX	(1024 * 1024)
#define VM_VCPUS_MAX	64
#define VM_OWNER_MAX	63	/* a login: AUTH_LOGIN_MAX */

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

static const char *vm_profile_names[] = {
	[VM_PROFILE_LAN] = "lan",
	[VM_PROFILE_WAN] = "wan",
};

/* Every key a definition may hold; anything else is refused. */
static const char *vm_def_keys[] = {
	"name", "uuid", "memory", "vcpus", "accel", "machine", "cpu", "kernel",
	"initrd", "append", "disk", "disk_format", "display", "listen",
	"spice_port", "restart", "autostart", "created", "nics", "nets",
	"from", "image", "owner", "pool", "pool_dirty", "pool_doomed",
	"profile", "store"
};

/* Firmwares, from Debian's ovmf package (4M images). */
#define VM_OVMF_DIR	"/usr/share/OVMF/"
static const struct vm_firmware vm_firmwares[] = {
	{ "bios", NULL, NULL, 0 },
	{ "uefi", VM_OVMF_DIR "OVMF_CODE_4M.fd", VM_OVMF_DIR "OVMF_VARS_4M.fd",
	    0 },
	{ "uefi-secure", VM_OVMF_DIR "OVMF_CODE_4M.secboot.fd",
	    VM_OVMF_DIR "OVMF_VARS_4M.ms.fd", 1 },
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

/* The firmware named name, or NULL. */
const struct vm_firmware *
vm_def_firmware(const char *name)
{
	size_t	i;

	for (i = 0; i < nitems(vm_firmwares); i++)
		if (strcmp(vm_firmwares[i].name, name) == 0)
			return (&vm_firmwares[i]);
	return (NULL);
}

const char *
vm_profile_name(enum vm_profile p)
{
	return (vm_profile_names[p]);
}

/* A profile by name, for vm.create, pool.create and pool.set alike. */
int
vm_profile_from_name(const char *name, enum vm_profile *p)
{
	size_t	i;

	for (i = 0; name != NULL && i < nitems(vm_profile_names); i++) {
		if (strcmp(vm_profile_names[i], name) == 0) {
			*p = i;
			return (0);
		}
	}
	return (-1);
}

void
vm_def_clear(struct vm_def *def)
{
	u_int	i;

	free(def->kernel);
	free(def->initrd);
	free(def->append);
	free(def->disk);
	free(def->disk_format);
	for (i = 0; i < def->nnets; i++)
		free(def->nets[i]);
	free(def->from);
	free(def->image);
	free(def->store);
	free(def->owner);
	free(def->pool);
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

/*
 * Pick one of a fixed set of words into a small buffer, dflt when absent;
 * the error quotes at most showmax bytes of a bad word (-1: all of it).
 */
int
vm_def_word(json_t *j, const char *key, const char *dflt,
    const char *const *allowed, char *out, size_t outlen, int showmax,
    char **cause)
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
	xasprintf(cause, "invalid %s '%.*s'", key, showmax, s);
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

/* A true/false field, false when absent. */
int
vm_def_bool(json_t *j, const char *key, int *out, char **cause)
{
	json_t	*v = json_object_get(j, key);

	if (v != NULL && !json_is_null(v) && !json_is_boolean(v)) {
		xasprintf(cause, "'%s' must be true or false", key);
		return (-1);
	}
	*out = json_is_true(v);
	return (0);
}

/* The name, and the uuid when it is one. */
static int
vm_def_ident(struct vm_def *def, json_t *j, char **cause)
{
	json_t	*v;

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
	return (0);
}

/* Memory, vCPUs, the SPICE port and the creation time. */
static int
vm_def_numbers(struct vm_def *def, json_t *j, char **cause)
{
	long long	n;

	if (vm_def_int(j, "memory", 256, VM_MEMORY_MIN, VM_MEMORY_MAX, &n,
	    cause) != 0)
		return (-1);
	def->memory = n;
	if (vm_def_int(j, "vcpus", 1, 1, VM_VCPUS_MAX, &n, cause) != 0)
		return (-1);
	def->vcpus = n;
	if (vm_def_int(j, "spice_port", 0, 0, 65535, &n, cause) != 0)
		return (-1);
	def->spice_port = n;
	if (vm_def_int(j, "created", 0, 0, (long long)1 << 40, &n, cause) != 0)
		return (-1);
	def->created = n;
	return (0);
}

/* Accelerator, machine, display, restart policy, autostart, CPU model. */
static int
vm_def_machine(struct vm_def *def, json_t *j, char **cause)
{
	static const char *const accels[] = { "auto", "kvm", "tcg", NULL };
	static const char *const machines[] = { "pc", "q35", NULL };
	static const char *const displays[] = { "spice", "none", NULL };
	char		 word[16];
	json_t		*v;
	const char	*m;
	size_t		 i;

	if (vm_def_word(j, "accel", "auto", accels, def->accel,
	    sizeof def->accel, -1, cause) != 0 ||
	    vm_def_word(j, "machine", "pc", machines, def->machine,
	    sizeof def->machine, -1, cause) != 0 ||
	    vm_def_word(j, "display", "spice", displays, def->display,
	    sizeof def->display, -1, cause) != 0 ||
	    vm_def_word(j, "restart", "no", vm_restart_names, word,
	    sizeof word, -1, cause) != 0)
		return (-1);
	for (i = 0; i < nitems(vm_restart_names); i++)
		if (strcmp(word, vm_restart_names[i]) == 0)
			def->restart = i;
	if (vm_def_bool(j, "autostart", &def->autostart, cause) != 0)
		return (-1);

	/* A CPU model name, or "host"; features as QEMU writes them. */
	v = json_object_get(j, "cpu");
	if (v == NULL || json_is_null(v))
		return (0);
	m = json_is_string(v) ? json_string_value(v) : "";
	if (*m == '\0' || strlen(m) >= sizeof def->cpu ||
	    strspn(m, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTU"
	    "VWXYZ0123456789,._+=-") != strlen(m) || *m == ',') {
		xasprintf(cause, "cpu must be a QEMU CPU model such as "
		    "host or Skylake-Client,-hle");
		return (-1);
	}
	strlcpy(def->cpu, m, sizeof def->cpu);
	return (0);
}

/* The SPICE transport profile, lan unless the definition says wan. */
static int
vm_def_profile(struct vm_def *def, json_t *j, char **cause)
{
	json_t	*v = json_object_get(j, "profile");

	def->profile = VM_PROFILE_LAN;
	if (v == NULL || json_is_null(v))
		return (0);
	if (vm_profile_from_name(json_string_value(v), &def->profile) != 0) {
		xasprintf(cause, "profile must be lan or wan");
		return (-1);
	}
	return (0);
}

/* The SPICE listen address: loopback unless an IPv4 or IPv6 address. */
static int
vm_def_listen(struct vm_def *def, json_t *j, char **cause)
{
	json_t	*v = json_object_get(j, "listen");
	char	 addr[16];

	strlcpy(def->listen, "127.0.0.1", sizeof def->listen);
	if (v == NULL || json_is_null(v))
		return (0);
	if (!json_is_string(v) ||
	    (inet_pton(AF_INET, json_string_value(v), addr) != 1 &&
	    inet_pton(AF_INET6, json_string_value(v), addr) != 1)) {
		xasprintf(cause, "listen must be an IPv4 or IPv6 address");
		return (-1);
	}
	strlcpy(def->listen, json_string_value(v), sizeof def->listen);
	return (0);
}

/* Kernel, initrd, append and a plain disk file. */
static int
vm_def_boot(struct vm_def *def, json_t *j, char **cause)
{
	static const char *const formats[] = { "raw", "qcow2", NULL };
	char	word[16];

	if (vm_def_str(j, "kernel", &def->kernel, cause) != 0 ||
	    vm_def_str(j, "initrd", &def->initrd, cause) != 0 ||
	    vm_def_str(j, "append", &def->append, cause) != 0 ||
	    vm_def_str(j, "disk", &def->disk, cause) != 0)
		return (-1);
	if (vm_def_path("kernel", def->kernel, cause) != 0 ||
	    vm_def_path("initrd", def->initrd, cause) != 0 ||
	    vm_def_path("disk", def->disk, cause) != 0)
		return (-1);
	if (def->kernel == NULL && (def->initrd != NULL ||
	    def->append != NULL)) {
		xasprintf(cause, "initrd and append need a kernel");
		return (-1);
	}
	if (def->disk != NULL) {
		if (vm_def_word(j, "disk_format", "raw", formats, word,
		    sizeof word, -1, cause) != 0)
			return (-1);
		def->disk_format = xstrdup(word);
	}
	if (def->append != NULL && strchr(def->append, '\n') != NULL) {
		xasprintf(cause, "append must be one line");
		return (-1);
	}
	return (0);
}

/* One NIC: {"id": "netN", "network", "mac": "52:54:00:..", "ip"?}. */
static int
vm_def_nic(const json_t *j, struct vm_def_nic *nic, char **cause)
{
	const char	*id, *network, *mac, *ip;
	const char	*p;
	json_t		*v;

	memset(nic, 0, sizeof *nic);
	if (!json_is_object(j)) {
		xasprintf(cause, "a NIC must be an object");
		return (-1);
	}
	id = json_string_value(json_object_get(j, "id"));
	network = json_string_value(json_object_get(j, "network"));
	mac = json_string_value(json_object_get(j, "mac"));
	ip = json_string_value(json_object_get(j, "ip"));
	if (id == NULL || strncmp(id, "net", 3) != 0) {
		xasprintf(cause, "a NIC has no valid id");
		return (-1);
	}
	for (p = id + 3; *p >= '0' && *p <= '9'; p++)
		;
	if (*p != '\0' || p == id + 3 || p - id > 5) {
		xasprintf(cause, "a NIC has an invalid id %s", id);
		return (-1);
	}
	if (netctl_net_name_check(network, cause) != 0)
		return (-1);
	if (netctl_mac_parse(mac, nic->mac) != 0 || nic->mac[0] != 0x52 ||
	    nic->mac[1] != 0x54 || nic->mac[2] != 0x00) {
		xasprintf(cause, "NIC %s has an invalid MAC %s", id,
		    mac == NULL ? "(none)" : mac);
		return (-1);
	}
	v = json_object_get(j, "ip");
	if (v != NULL && !json_is_null(v) && (ip == NULL ||
	    netctl_ip_parse(ip, &nic->ip) != 0 || nic->ip == 0)) {
		xasprintf(cause, "NIC %s has an invalid address %s", id,
		    ip != NULL ? ip : "(not a string)");
		return (-1);
	}
	strlcpy(nic->id, id, sizeof nic->id);
	strlcpy(nic->network, network, sizeof nic->network);
	return (0);
}

/*
 * The NICs of a saved VM ("nics"), or the networks a new one asks for
 * ("nets"): at most VM_NICS_MAX, no id or MAC twice.
 */
static int
vm_def_nics(struct vm_def *def, json_t *j, char **cause)
{
	json_t	*nics = json_object_get(j, "nics");
	json_t	*nets = json_object_get(j, "nets"), *v;
	size_t	 i, k;

	if (nics != NULL && !json_is_null(nics) && nets != NULL &&
	    !json_is_null(nets)) {
		xasprintf(cause, "a VM definition has either 'nics' or 'nets', "
		    "not both");
		return (-1);
	}
	if (nets != NULL && !json_is_null(nets)) {
		if (!json_is_array(nets)) {
			xasprintf(cause, "'nets' must be an array of network "
			    "names");
			return (-1);
		}
		if (json_array_size(nets) > VM_NICS_MAX) {
			xasprintf(cause, "a VM has at most %d NICs",
			    VM_NICS_MAX);
			return (-1);
		}
		json_array_foreach(nets, i, v) {
			if (!json_is_string(v)) {
				xasprintf(cause, "'nets' must be an array of "
				    "network names");
				return (-1);
			}
			def->nets[def->nnets++] = xstrdup(json_string_value(v));
		}
	}
	if (nics == NULL || json_is_null(nics))
		return (0);
	if (!json_is_array(nics)) {
		xasprintf(cause, "'nics' must be an array of NICs");
		return (-1);
	}
	if (json_array_size(nics) > VM_NICS_MAX) {
		xasprintf(cause, "a VM has at most %d NICs", VM_NICS_MAX);
		return (-1);
	}
	json_array_foreach(nics, i, v) {
		if (vm_def_nic(v, &def->nics[i], cause) != 0)
			return (-1);
		for (k = 0; k < i; k++) {
			if (strcmp(def->nics[k].id, def->nics[i].id) == 0) {
				xasprintf(cause, "two NICs have the id %s",
				    def->nics[i].id);
				return (-1);
			}
			if (memcmp(def->nics[k].mac, def->nics[i].mac,
			    sizeof def->nics[i].mac) == 0) {
				xasprintf(cause, "NICs %s and %s have the same "
				    "MAC", def->nics[k].id, def->nics[i].id);
				return (-1);
			}
		}
		def->nnics++;
	}
	return (0);
}

/* An optional name field checked by valid (names_valid's signature). */
static int
vm_def_name(json_t *j, const char *key, const char *what, char **out,
    char **cause)
{
	char	*why = NULL;

	if (vm_def_str(j, key, out, cause) != 0)
		return (-1);
	if (*out == NULL)
		return (0);
	if (names_valid(*out, what, &why) != 0) {
		xasprintf(cause, "'%s': %s", key, why);
		free(why);
		return (-1);
	}
	return (0);
}

/* An image name, by the store's own rule. */
static int
vm_def_image(json_t *j, const char *key, char **out, char **cause)
{
	char	*why = NULL;

	if (vm_def_str(j, key, out, cause) != 0)
		return (-1);
	if (*out != NULL && imgstore_name_valid(*out, &why) != 0) {
		xasprintf(cause, "'%s': %s", key, why);
		free(why);
		return (-1);
	}
	return (0);
}

/* The image store's names, the desktop's owner and its pool's marks. */
static int
vm_def_desktop(struct vm_def *def, json_t *j, char **cause)
{
	if (vm_def_image(j, "from", &def->from, cause) != 0 ||
	    vm_def_image(j, "image", &def->image, cause) != 0 ||
	    vm_def_image(j, "store", &def->store, cause) != 0)
		return (-1);
	if (def->store != NULL && def->from == NULL) {
		xasprintf(cause, "'store' is where a --from clone is made: "
		    "give --from IMAGE too");
		return (-1);
	}
	if (vm_def_str(j, "owner", &def->owner, cause) != 0)
		return (-1);
	/* A login: as auth.c's rule, lower-case, digits, '.', '_', '-'. */
	if (def->owner != NULL && (strlen(def->owner) > VM_OWNER_MAX ||
	    strspn(def->owner, "abcdefghijklmnopqrstuvwxyz0123456789._-") !=
	    strlen(def->owner) || strchr("._-", def->owner[0]) != NULL)) {
		xasprintf(cause, "'owner' must be a login, not '%.64s'",
		    def->owner);
		return (-1);
	}
	if (vm_def_name(j, "pool", "pool", &def->pool, cause) != 0)
		return (-1);
	if (vm_def_bool(j, "pool_dirty", &def->pool_dirty, cause) != 0 ||
	    vm_def_bool(j, "pool_doomed", &def->pool_doomed, cause) != 0)
		return (-1);
	if (def->pool == NULL && (def->pool_dirty || def->pool_doomed)) {
		xasprintf(cause, "pool_dirty and pool_doomed need a pool");
		return (-1);
	}
	return (0);
}

/* A key no field owns: refused, so that a typo is never kept silently. */
static int
vm_def_unknown(json_t *j, char **cause)
{
	const char	*key;
	json_t		*v;
	size_t		 i;

	json_object_foreach(j, key, v) {
		for (i = 0; i < nitems(vm_def_keys); i++)
			if (strcmp(key, vm_def_keys[i]) == 0)
				break;
		if (i == nitems(vm_def_keys) && !vm_def_dev_key(key)) {
			xasprintf(cause, "unknown field '%.64s' in a VM "
			    "definition", key);
			return (-1);
		}
	}
	return (0);
}

/* JSON (a create request or an LMDB record) to a checked definition. */
int
vm_def_from_json(struct vm_def *def, json_t *j0, char **cause)
{
	json_t	*j;
	int	 rc = 0;

	memset(def, 0, sizeof *def);
	if (!json_is_object(j0)) {
		xasprintf(cause, "a VM definition must be an object");
		return (-1);
	}
	/* The --os profile fills what the definition leaves out. */
	if ((j = vm_def_dev_profile(j0, cause)) == NULL)
		return (-1);
	if (vm_def_ident(def, j, cause) != 0 ||
	    vm_def_unknown(j, cause) != 0 ||
	    vm_def_numbers(def, j, cause) != 0 ||
	    vm_def_machine(def, j, cause) != 0 ||
	    vm_def_listen(def, j, cause) != 0 ||
	    vm_def_profile(def, j, cause) != 0 ||
	    vm_def_boot(def, j, cause) != 0 ||
	    vm_def_nics(def, j, cause) != 0 ||
	    vm_def_desktop(def, j, cause) != 0 ||
	    vm_def_dev_from_json(def, j, cause) != 0) {
		vm_def_clear(def);
		rc = -1;
	}
	json_decref(j);
	return (rc);
}

/* A NIC as the definition, vm show and nic-add's answer write it. */
json_t *
vm_def_nic_json(const struct vm_def_nic *nic)
{
	char	 mac[NETCTL_MACSTRLEN], ip[NETCTL_IPSTRLEN];
	json_t	*j;

	j = json_pack("{s:s,s:s,s:s}", "id", nic->id, "network", nic->network,
	    "mac", netctl_mac_format(nic->mac, mac, sizeof mac));
	if (nic->ip != 0)
		json_object_set_new(j, "ip", json_string(netctl_ip_format(
		    nic->ip, ip, sizeof ip)));
	return (j);
}

/* Adds key: value to j unless value is NULL. */
static void
vm_def_set_str(json_t *j, const char *key, const char *value)
{
	if (value != NULL)
		json_object_set_new(j, key, json_string(value));
}

/* The definition as LMDB keeps it (and vm_def_from_json reads it). */
json_t *
vm_def_to_json(const struct vm_def *def)
{
	json_t	*j, *nics;
	u_int	 i;

	j = json_pack("{s:s,s:s,s:i,s:i,s:s,s:s,s:s,s:s,s:i,s:s,s:b,s:I}",
	    "name", def->name, "uuid", def->uuid, "memory", def->memory,
	    "vcpus", def->vcpus, "accel", def->accel, "machine", def->machine,
	    "display", def->display, "listen", def->listen,
	    "spice_port", def->spice_port,
	    "restart", vm_restart_names[def->restart],
	    "autostart", def->autostart, "created", (json_int_t)def->created);
	if (def->cpu[0] != '\0')
		json_object_set_new(j, "cpu", json_string(def->cpu));
	vm_def_set_str(j, "kernel", def->kernel);
	vm_def_set_str(j, "initrd", def->initrd);
	vm_def_set_str(j, "append", def->append);
	if (def->disk != NULL) {
		json_object_set_new(j, "disk", json_string(def->disk));
		json_object_set_new(j, "disk_format",
		    json_string(def->disk_format));
	}
	if (def->nnics > 0) {
		nics = json_array();
		for (i = 0; i < def->nnics; i++)
			json_array_append_new(nics,
			    vm_def_nic_json(&def->nics[i]));
		json_object_set_new(j, "nics", nics);
	}
	vm_def_set_str(j, "from", def->from);
	vm_def_set_str(j, "image", def->image);
	vm_def_set_str(j, "store", def->store);
	vm_def_set_str(j, "owner", def->owner);
	vm_def_set_str(j, "pool", def->pool);
	json_object_set_new(j, "profile",
	    json_string(vm_profile_names[def->profile]));
	if (def->pool_dirty)
		json_object_set_new(j, "pool_dirty", json_true());
	if (def->pool_doomed)
		json_object_set_new(j, "pool_doomed", json_true());
	vm_def_dev_to_json(def, j);
	return (j);
}
