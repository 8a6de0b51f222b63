/*
 * Which proxy ticket each tunnel of the broker's SPICE proxy came with
 * (desktop.via tells it), so that a migration can send a viewer linked
 * through the proxy back through it: client_migrate_info then names
 * the ticket, not the target's address, which the viewer cannot reach.
 * Per VM, keyed by the tunnel's address as QEMU sees the client.
 *
 * The ticket goes along with the desktop: migrate.prepare carries the
 * source's (spice_via_ticket), and the target ties it to the viewer
 * that links to its incoming QEMU (spice_via_linked_now), since that
 * tunnel's desktop.via went to the source. So the next migration, from
 * the target, sends the viewer through the proxy again. What a next
 * migration needs (the tunnels and the password) is in the VM's record
 * (spice_via_record), so a qmpd restart does not lose it.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "log.h"
#include "qmp.h"
#include "qmpd.h"
#include "vm.h"
#include "xmalloc.h"

#define SPICE_VIA_MAX	64	/* tunnels remembered per VM */
#define SPICE_VIA_TICKET_MAX 256

static json_t	*spice_via_vms;	/* {vm: {"ADDR:PORT": ticket}} */
/* Target: {vm: ticket} of the viewer the source sends here. */
static json_t	*spice_via_follow;

static void
spice_via_key(char *buf, size_t len, const char *host, const char *port)
{
	snprintf(buf, len, strchr(host, ':') != NULL ? "[%s]:%s" : "%s:%s",
	    host, port);
}

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
		spice_via_key(buf, sizeof buf, host, port);
		if (strcmp(buf, key) == 0)
			return (1);
	}
	return (0);
}

/* The VM's tunnels, made on first use. */
static json_t *
spice_via_table(const char *name)
{
	json_t	*t;

	if (spice_via_vms == NULL)
		spice_via_vms = json_object();
	if ((t = json_object_get(spice_via_vms, name)) == NULL) {
		t = json_object();
		json_object_set_new(spice_via_vms, name, t);
	}
	return (t);
}

/* The record changed: write it (run state, not synced, as vm.c's). */
static void
spice_via_save(struct vm *vm)
{
	char	*cause = NULL;

	if (vm_save_state(vm, &cause) != 0) {
		log_warnx("%s: viewer's tunnels not recorded: %s",
		    vm->def.name, cause);
		free(cause);
	}
}

/* Remember that via (a tunnel into vm's SPICE port) carries ticket. */
static void
spice_via_put(struct vm *vm, const char *via, const char *ticket)
{
	json_t		*t, *v;
	const char	*key, *old;
	void		*tmp;

	t = spice_via_table(vm->def.name);
	old = json_string_value(json_object_get(t, via));
	if (old != NULL && strcmp(old, ticket) == 0)
		return;
	/* Full: keep only the tunnels of linked viewers' main channels. */
	if (json_object_size(t) >= SPICE_VIA_MAX) {
		json_object_foreach_safe(t, tmp, key, v) {
			if (!spice_via_linked(vm, key))
				json_object_del(t, key);
		}
	}
	if (json_object_size(t) < SPICE_VIA_MAX) {
		json_object_set_new(t, via, json_string(ticket));
		spice_via_save(vm);
	}
}

void
spice_via_set(struct vm *vm, const char *via, const char *ticket)
{
	spice_via_put(vm, via, ticket);
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

/*
 * Target, at migrate.prepare: the source's viewer is linked through the
 * proxy with ticket (NULL: directly, or none). Tunnels remembered from
 * an earlier stay of the VM here are stale: they go.
 */
int
spice_via_expect(const char *name, const char *ticket, char **cause)
{
	if (ticket != NULL && (*ticket == '\0' ||
	    strlen(ticket) >= SPICE_VIA_TICKET_MAX)) {
		xasprintf(cause, "the source's proxy ticket is malformed");
		return (-1);
	}
	if (spice_via_vms != NULL)
		json_object_del(spice_via_vms, name);
	if (spice_via_follow == NULL)
		spice_via_follow = json_object();
	if (ticket != NULL)
		json_object_set_new(spice_via_follow, name,
		    json_string(ticket));
	else
		json_object_del(spice_via_follow, name);
	return (0);
}

/*
 * A main channel linked (SPICE_INITIALIZED). On a migration's target
 * before it runs, only the viewer that follows can link (it alone has
 * the password): its tunnel carries the source's proxy ticket.
 */
void
spice_via_linked_now(struct vm *vm, const char *host, const char *port)
{
	const char	*ticket;
	char		 key[96];

	if (vm->mig == NULL || !vm->mig->incoming ||
	    vm->mig->state == VM_MIG_COMPLETED || spice_via_follow == NULL ||
	    (ticket = json_string_value(json_object_get(spice_via_follow,
	    vm->def.name))) == NULL)
		return;
	spice_via_key(key, sizeof key, host, port);
	log_info("%s: the source's viewer linked here as %s, through the "
	    "proxy", vm->def.name, key);
	spice_via_put(vm, key, ticket);
}

/*
 * Target, the desktop runs here: every viewer linked by now followed
 * it (the event may have come first); later ones are on their own.
 */
void
spice_via_settle(struct vm *vm)
{
	json_t		*c;
	const char	*host, *port;
	size_t		 i;

	json_array_foreach(vm->spice_clients, i, c) {
		host = json_string_value(json_object_get(c, "host"));
		port = json_string_value(json_object_get(c, "port"));
		if (host != NULL && port != NULL)
			spice_via_linked_now(vm, host, port);
	}
	if (spice_via_follow != NULL)
		json_object_del(spice_via_follow, vm->def.name);
}

/*
 * For the VM's record: what a later migration needs to take a linked
 * viewer along, {ticket: the password (vm_ticket_carry), via: tunnels};
 * NULL when there is nothing. The password is as secret as the record
 * (LMDB in the state dir, root's alone) and a viewer linked with it
 * keeps it for its whole session, expired or not.
 */
json_t *
spice_via_record(const struct vm *vm)
{
	json_t	*t, *ticket;

	t = spice_via_vms == NULL ? NULL :
	    json_object_get(spice_via_vms, vm->def.name);
	ticket = vm_ticket_carry(vm->def.name);
	if (ticket == NULL && json_object_size(t) == 0)
		return (NULL);
	return (json_pack("{s:o*,s:O*}", "ticket", ticket, "via",
	    json_object_size(t) > 0 ? t : NULL));
}

/* Start-up: what spice_via_record kept of vm; rec is borrowed. */
void
spice_via_restore(struct vm *vm, json_t *rec)
{
	json_t		*via, *v;
	const char	*key;
	char		*cause = NULL;

	if (!json_is_object(rec))
		return;
	if (json_is_object(json_object_get(rec, "ticket")) &&
	    vm_ticket_restore(vm->def.name, json_object_get(rec, "ticket"),
	    &cause) != 0) {
		log_warnx("%s: recorded SPICE ticket dropped: %s",
		    vm->def.name, cause);
		free(cause);
	}
	via = json_object_get(rec, "via");
	json_object_foreach(via, key, v) {
		if (json_is_string(v) && strlen(key) <= 64 &&
		    strlen(json_string_value(v)) < SPICE_VIA_TICKET_MAX)
			json_object_set(spice_via_table(vm->def.name), key, v);
	}
}

/* query-spice: the main channels linked now, for a re-attached QEMU. */
static void
spice_via_query_done(struct qmp *qmp, json_t *ret, const char *errclass,
    const char *errdesc, void *arg)
{
	struct vm	*vm = arg;
	json_t		*c;
	const char	*host, *port;
	size_t		 i;

	if (vm->qmp != qmp || errclass != NULL)
		return;
	json_array_clear(vm->spice_clients);
	json_array_foreach(json_object_get(ret, "channels"), i, c) {
		host = json_string_value(json_object_get(c, "host"));
		port = json_string_value(json_object_get(c, "port"));
		if (host == NULL || port == NULL || json_integer_value(
		    json_object_get(c, "channel-type")) != 1)
			continue;
		json_array_append_new(vm->spice_clients, json_pack(
		    "{s:s,s:s,s:n}", "host", host, "port", port, "since"));
	}
}

/*
 * A restarted qmpd re-attached vm's QEMU: which viewers are linked,
 * since their SPICE_INITIALIZED events went to the qmpd before it (a
 * migration looks them up in spice_via_ticket).
 */
void
spice_via_query(struct vm *vm)
{
	if (vm->qmp != NULL && strcmp(vm->def.display, "spice") == 0)
		qmp_execute(vm->qmp, "query-spice", NULL,
		    spice_via_query_done, vm);
}
