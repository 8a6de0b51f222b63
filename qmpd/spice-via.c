/*
 * Which proxy ticket each tunnel of the broker's SPICE proxy came with
 * (desktop.via tells it), so that a migration can send a viewer linked
 * through the proxy back through it: client_migrate_info then names
 * the ticket, not the target's address, which the viewer cannot reach.
 * Per VM, keyed by the tunnel's address as QEMU sees the client.
 */
#include <stdio.h>
#include <string.h>

#include "qmpd.h"
#include "vm.h"

#define SPICE_VIA_MAX	64	/* tunnels remembered per VM */

static json_t	*spice_via_vms;	/* {vm: {"ADDR:PORT": ticket}} */

/* Is key ("ADDR:PORT") one of vm's linked viewers, as QEMU reported? */
static int
spice_via_linked(struct vm *vm, const char *key)
{
	json_t		*c;
	char		 buf[96];
	const char	*host, *port;
	size_t		 i;

	json_array_foreach(vm->spice_clients, i, c) {
		host = json_string_value(json_object_get(c, "host"));
		port = json_string_value(json_object_get(c, "port"));
		if (host == NULL || port == NULL)
			continue;
		snprintf(buf, sizeof buf, strchr(host, ':') != NULL ?
		    "[%s]:%s" : "%s:%s", host, port);
		if (strcmp(buf, key) == 0)
			return (1);
	}
	return (0);
}

/* Remember that via (a tunnel into vm's SPICE port) carries ticket. */
void
spice_via_set(struct vm *vm, const char *via, const char *ticket)
{
	json_t		*t, *v;
	const char	*key;
	void		*tmp;

	if (spice_via_vms == NULL)
		spice_via_vms = json_object();
	if ((t = json_object_get(spice_via_vms, vm->def.name)) == NULL) {
		t = json_object();
		json_object_set_new(spice_via_vms, vm->def.name, t);
	}
	/* Full: keep only the tunnels of linked viewers' main channels. */
	if (json_object_size(t) >= SPICE_VIA_MAX) {
		json_object_foreach_safe(t, tmp, key, v) {
			if (!spice_via_linked(vm, key))
				json_object_del(t, key);
		}
	}
	if (json_object_size(t) < SPICE_VIA_MAX)
		json_object_set_new(t, via, json_string(ticket));
}

/*
 * The proxy ticket of vm's linked viewer (its main channel, as QEMU
 * reported it), or NULL when it is linked directly or not at all.
 */
const char *
spice_via_ticket(struct vm *vm)
{
	json_t		*t, *v;
	const char	*key;

	t = spice_via_vms == NULL ? NULL :
	    json_object_get(spice_via_vms, vm->def.name);
	json_object_foreach(t, key, v) {
		if (spice_via_linked(vm, key))
			return (json_string_value(v));
	}
	return (NULL);
}
