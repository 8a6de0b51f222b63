/*
 * PCI places for a migration target (issue 14). QEMU's migration stream
 * carries each device's state under its place on the bus, and the target
 * must have the same device at the same bus and slot. Built from the
 * definition the layout matches only until a NIC is hot-added (QEMU puts
 * it in the first free slot, or behind a spare q35 root port) or removed
 * (a hole, and the devices after it would shift). So the source asks its
 * QEMU (query-pci) where every device with an id sits, and the target's
 * argv gives each of them that place. Pure: JSON in, argv words out.
 */
#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "compat.h"
#include "vm.h"
#include "xmalloc.h"

/* A qdev id as this file accepts it: one word QEMU's parser keeps whole. */
static int
vm_pci_id_valid(const char *s)
{
	size_t	i;

	if (s == NULL || *s == '\0' || strlen(s) >= VM_PCI_ID_MAX)
		return (0);
	for (i = 0; s[i] != '\0'; i++) {
		if (!isalnum((u_char)s[i]) && strchr("-_.", s[i]) == NULL)
			return (0);
	}
	return (1);
}

static int
vm_pci_pins_add(struct vm_pci_pins *p, const char *id, const char *bus,
    json_int_t slot, json_int_t func, char **cause)
{
	struct vm_pci_pin	*x;

	if (!vm_pci_id_valid(id) || (*bus != '\0' && !vm_pci_id_valid(bus))) {
		xasprintf(cause, "PCI device id '%s' on bus '%s' is not a "
		    "plain word", id, bus);
		return (-1);
	}
	if (slot < 0 || slot > 31 || func < 0 || func > 7) {
		xasprintf(cause, "PCI device %s at slot %lld function %lld: "
		    "out of range", id, (long long)slot, (long long)func);
		return (-1);
	}
	if (vm_pci_pins_find(p, id) != NULL) {
		xasprintf(cause, "PCI device %s is listed twice", id);
		return (-1);
	}
	if (p->n == VM_PCI_PINS_MAX) {
		xasprintf(cause, "more than %d PCI devices", VM_PCI_PINS_MAX);
		return (-1);
	}
	x = &p->v[p->n++];
	strlcpy(x->id, id, sizeof x->id);
	strlcpy(x->bus, bus, sizeof x->bus);
	x->slot = slot;
	x->func = func;
	return (0);
}

/*
 * One bus of query-pci's answer: each device with an id, and the devices
 * behind each bridge with an id (q35's root ports), which QEMU names by
 * the bridge's id. Built-in devices (host bridge, ISA bridge) have none.
 */
static int
vm_pci_pins_bus(const json_t *devices, const char *bus, int depth,
    struct vm_pci_pins *p, char **cause)
{
	const json_t	*d, *br;
	const char	*id;
	size_t		 i;

	if (depth > 8) {
		xasprintf(cause, "query-pci: bridges nested too deep");
		return (-1);
	}
	json_array_foreach(devices, i, d) {
		id = json_string_value(json_object_get(d, "qdev_id"));
		if (id == NULL || *id == '\0')
			continue;
		if (vm_pci_pins_add(p, id, bus, json_integer_value(
		    json_object_get(d, "slot")), json_integer_value(
		    json_object_get(d, "function")), cause) != 0)
			return (-1);
		br = json_object_get(json_object_get(d, "pci_bridge"),
		    "devices");
		if (json_is_array(br) &&
		    vm_pci_pins_bus(br, id, depth + 1, p, cause) != 0)
			return (-1);
	}
	return (0);
}

/* The places of query-pci's answer (its first bus is the root bus). */
int
vm_pci_pins_query(const json_t *ret, struct vm_pci_pins *p, char **cause)
{
	const json_t	*devices;

	p->n = 0;
	devices = json_object_get(json_array_get(ret, 0), "devices");
	if (!json_is_array(devices)) {
		xasprintf(cause, "query-pci answered without a root bus");
		return (-1);
	}
	return (vm_pci_pins_bus(devices, "", 0, p, cause));
}

/* For migrate.prepare: [{"id", "bus", "slot", "function"}]. */
json_t *
vm_pci_pins_to_json(const struct vm_pci_pins *p)
{
	json_t	*a;
	u_int	 i;

	a = json_array();
	for (i = 0; i < p->n; i++) {
		json_array_append_new(a, json_pack("{s:s,s:s,s:i,s:i}", "id",
		    p->v[i].id, "bus", p->v[i].bus, "slot", p->v[i].slot,
		    "function", p->v[i].func));
	}
	return (a);
}

/* The target's side of vm_pci_pins_to_json, every field checked. */
int
vm_pci_pins_from_json(const json_t *a, struct vm_pci_pins *p, char **cause)
{
	const json_t	*x;
	const char	*id, *bus;
	size_t		 i;

	p->n = 0;
	if (!json_is_array(a)) {
		xasprintf(cause, "the PCI layout is not a list");
		return (-1);
	}
	json_array_foreach(a, i, x) {
		id = json_string_value(json_object_get(x, "id"));
		bus = json_string_value(json_object_get(x, "bus"));
		if (id == NULL || bus == NULL ||
		    !json_is_integer(json_object_get(x, "slot")) ||
		    !json_is_integer(json_object_get(x, "function"))) {
			xasprintf(cause, "PCI layout entry %zu lacks id, bus, "
			    "slot or function", i);
			return (-1);
		}
		if (vm_pci_pins_add(p, id, bus, json_integer_value(
		    json_object_get(x, "slot")), json_integer_value(
		    json_object_get(x, "function")), cause) != 0)
			return (-1);
	}
	return (0);
}

const struct vm_pci_pin *
vm_pci_pins_find(const struct vm_pci_pins *p, const char *id)
{
	u_int	i;

	for (i = 0; i < p->n; i++) {
		if (strcmp(p->v[i].id, id) == 0)
			return (&p->v[i]);
	}
	return (NULL);
}

/*
 * Option key=... of a -device word ("driver,k=v,..."; a doubled comma is
 * a literal one): a pointer to its value, or NULL.
 */
static const char *
vm_argv_pin_opt(const char *word, const char *key)
{
	const char	*p;
	size_t		 len = strlen(key);

	for (p = word; *p != '\0'; p++) {
		if (*p != ',')
			continue;
		if (p[1] == ',') {
			p++;
			continue;
		}
		if (strncmp(p + 1, key, len) == 0 && p[1 + len] == '=')
			return (p + 2 + len);
	}
	return (NULL);
}

/* The pin of a -device word, by its id=, or NULL. */
static const struct vm_pci_pin *
vm_argv_pin_of(const char *word, const struct vm_pci_pins *p)
{
	const char	*v;
	char		 id[VM_PCI_ID_MAX];
	size_t		 n;

	if ((v = vm_argv_pin_opt(word, "id")) == NULL)
		return (NULL);
	n = strcspn(v, ",");
	if (n >= sizeof id)
		return (NULL);
	memcpy(id, v, n);
	id[n] = '\0';
	return (vm_pci_pins_find(p, id));
}

/*
 * Each -device with a pin gets its addr= (and bus= behind a bridge).
 * Devices behind a bridge move to the end, after every bridge exists;
 * the others keep their order, so devices without an id (none of
 * vm-argv.c's PCI ones) are placed as on the source. A pin no -device
 * takes is a device the source has and this definition lacks: the
 * stream would not load, so that is refused.
 */
int
vm_argv_pin(struct argv *a, const struct vm_pci_pins *p, char **cause)
{
	const struct vm_pci_pin	*x;
	char			**late, *w;
	u_char			 used[VM_PCI_PINS_MAX];
	size_t			 i, j, nlate = 0;
	u_int			 k;

	memset(used, 0, sizeof used);
	late = xcalloc(a->n + 1, sizeof *late);
	for (i = j = 0; i < a->n; i++) {
		if (strcmp(a->v[i], "-device") != 0 || i + 1 == a->n ||
		    (x = vm_argv_pin_of(a->v[i + 1], p)) == NULL) {
			a->v[j++] = a->v[i];
			continue;
		}
		used[x - p->v] = 1;
		w = a->v[i + 1];
		if (vm_argv_pin_opt(w, "addr") == NULL) {
			xasprintf(&a->v[i + 1], "%s,addr=0x%x.%x%s%s", w,
			    x->slot, x->func, *x->bus != '\0' &&
			    vm_argv_pin_opt(w, "bus") == NULL ? ",bus=" : "",
			    *x->bus != '\0' && vm_argv_pin_opt(w, "bus") ==
			    NULL ? x->bus : "");
			free(w);
		}
		if (*x->bus != '\0') {
			late[nlate++] = a->v[i];
			late[nlate++] = a->v[i + 1];
		} else {
			a->v[j++] = a->v[i];
			a->v[j++] = a->v[i + 1];
		}
		i++;
	}
	memcpy(a->v + j, late, nlate * sizeof *late);
	a->v[a->n] = NULL;
	free(late);
	for (k = 0; k < p->n; k++) {
		if (!used[k]) {
			xasprintf(cause, "device %s (PCI %s%s%02x.%x) runs on "
			    "the source but is not in the definition: the "
			    "migration stream would not load", p->v[k].id,
			    p->v[k].bus, *p->v[k].bus != '\0' ? ":" : "",
			    p->v[k].slot, p->v[k].func);
			return (-1);
		}
	}
	return (0);
}
