/*
 * A VM's disk from the image store. vm create --from IMAGE gives the VM
 * its own linked clone, NAME-disk, recorded in its definition as "image"
 * and in the image's users; vm delete removes it with the VM's snapshots.
 * At start the chain is checked with the store's own parser and every
 * file is opened here: QEMU, as the VM user, gets fds, never a path.
 * Snapshots freeze the disk's content under NAME.SNAP (imgstore_freeze):
 * offline when the VM is stopped, live through QMP when it runs. With
 * --store S the clone lives on shared image store S (its template
 * there too), indexed in that store's own table; a live migration hands
 * it to the target's index (vm-migrate-image.c), so the side that lost
 * the desktop forgets it and leaves the file.
 */
#include <sys/stat.h>

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <jansson.h>

#include "chain.h"
#include "cluster.h"
#include "img.h"
#include "log.h"
#include "qmp.h"
#include "qmpd.h"
#include "store.h"
#include "vm.h"
#include "xmalloc.h"

const char *
vm_disk_image(const struct vm *vm)
{
	return (vm->def.image);
}

/* The store the VM's disk is in: this host's, or a shared one. */
static struct imgstore *
vm_disk_store(const struct vm *vm, char **cause)
{
	char	*why = NULL;
	struct imgstore *st;

	if ((st = img_store_named(vm->def.store, &why)) == NULL) {
		xasprintf(cause, "VM %s: %s", vm->def.name, why);
		free(why);
	}
	return (st);
}

/*
 * Does another host own the disk now? A shared store's clone is then
 * only forgotten here: the source's after it moved, a target's half that
 * never ran, the copy of a host a failover left.
 */
static int
vm_disk_handed_over(const struct vm *vm)
{
	const struct vm_mig	*m = vm->mig;
	const char		*at;

	if (vm->def.store != NULL && vm->disk_away)
		return (1);	/* a cluster host took it (cluster-clone.c) */
	/* A stale copy of a desktop placed elsewhere: never its file. */
	if (vm->def.store != NULL && qmpd->cluster != NULL && (at =
	    cluster_place_host(vm->def.name)) != NULL && strcmp(at,
	    cluster_name()) != 0)
		return (1);
	if (vm->def.store == NULL || m == NULL)
		return (0);
	return (m->incoming ? m->state != VM_MIG_COMPLETED :
	    m->state == VM_MIG_COMPLETED);
}

/*
 * Is image record rec a snapshot of this VM? Its name and uuid, so that a
 * later VM of the same name does not inherit snapshots kept because
 * other images are based on them.
 */
int
vm_disk_owns(const struct vm *vm, json_t *rec)
{
	const char	*owner, *uuid, *kind;

	owner = json_string_value(json_object_get(rec, "vm"));
	uuid = json_string_value(json_object_get(rec, "vm_uuid"));
	kind = json_string_value(json_object_get(rec, "kind"));
	return (owner != NULL && kind != NULL &&
	    strcmp(owner, vm->def.name) == 0 &&
	    strcmp(kind, "snapshot") == 0 &&
	    (uuid == NULL || strcmp(uuid, vm->def.uuid) == 0));
}

/* Refuse if a job works on any image of name's chain; 1 if refused. */
static int
vm_disk_busy(const char *vmname, const char *image, char **cause)
{
	const char	*busy, *what;

	if ((busy = img_chain_busy(image, &what)) == NULL)
		return (0);
	xasprintf(cause, "VM %s: image %s%s%s is being %s; try again when "
	    "that is done", vmname, busy, strcmp(busy, image) != 0 ?
	    ", under its disk " : "", strcmp(busy, image) != 0 ? image : "",
	    what);
	return (1);
}

/*
 * The clone is made and used before the definition is saved: a failure
 * after this point removes it (vm_disk_delete from vm_create's failure
 * path); a crash leaves an image gc and verify point at.
 */
int
vm_disk_create(struct vm *vm, char **cause)
{
	const char	*parent = vm->def.from;
	struct vm	*other;
	struct imgstore	*st;
	char		*image, *why = NULL;
	int		 rc;

	if (parent == NULL)
		return (0);
	/* A shared store's clone another host made: adopted, not made. */
	if (vm->def.store != NULL && vm->def.image != NULL &&
	    qmpd->cluster != NULL)
		return (0);
	if (vm->def.disk != NULL) {
		xasprintf(cause, "VM %s: give --disk FILE or --from IMAGE, not "
		    "both", vm->def.name);
		return (-1);
	}
	if (vm_disk_busy(vm->def.name, parent, cause))
		return (-1);
	if ((other = img_vm_on(parent)) != NULL) {
		xasprintf(cause, "image %s is the disk of VM %s, which writes "
		    "it: create VM %s from a snapshot or a template of it",
		    parent, other->def.name, vm->def.name);
		return (-1);
	}
	xasprintf(&image, "%s-disk", vm->def.name);
	if (imgstore_name_valid(image, &why) != 0) {
		xasprintf(cause, "VM %s: its disk image %s: %s", vm->def.name,
		    image, why);
		goto fail;
	}
	if ((st = vm_disk_store(vm, cause)) == NULL) {
		free(image);
		return (-1);
	}
	/* A shared store's template another host imported: learnt. */
	if (vm->def.store != NULL && imgstore_learn(st, parent, &why) != 0) {
		xasprintf(cause, "VM %s: store %s: %s", vm->def.name,
		    vm->def.store, why);
		goto fail;
	}
	rc = imgstore_clone_for(st, parent, image, "clone",
	    vm->def.name, &why);
	if (rc == IMGSTORE_EEXISTS) {
		xasprintf(cause, "VM %s: %s (left by an earlier VM %s? "
		    "qdesk image rm %s)", vm->def.name, why, vm->def.name,
		    image);
		goto fail;
	}
	if (rc != 0) {
		xasprintf(cause, "VM %s: %s", vm->def.name, why);
		goto fail;
	}
	free(vm->def.image);
	vm->def.image = image;
	log_info("%s: disk %s cloned from %s", vm->def.name, image, parent);
	return (0);
fail:
	free(why);
	free(image);
	return (-1);
}

/*
 * Remove the VM's own snapshots that nothing depends on, over and over:
 * each removal may free its parent. Those with other children stay.
 */
static void
vm_disk_delete_snapshots(const struct vm *vm, struct imgstore *st)
{
	const char	*vmname = vm->def.name;
	json_t		*list, *rec;
	const char	*name;
	char		*cause = NULL;
	size_t		 i;
	int		 progress = 1, kept;

	while (progress) {
		progress = kept = 0;
		if ((list = imgstore_list(st, &cause)) == NULL) {
			log_warnx("%s: %s", vmname, cause);
			free(cause);
			return;
		}
		json_array_foreach(list, i, rec) {
			name = json_string_value(json_object_get(rec, "name"));
			if (name == NULL || !vm_disk_owns(vm, rec))
				continue;
			if (json_integer_value(json_object_get(rec,
			    "children")) > 0) {
				kept++;
				continue;
			}
			if (imgstore_rm(st, name, &cause) != 0) {
				log_warnx("%s: snapshot %s kept: %s", vmname,
				    name, cause);
				free(cause);
				cause = NULL;
				continue;
			}
			log_info("%s: snapshot %s removed", vmname, name);
			progress = 1;
		}
		json_decref(list);
		if (!progress && kept > 0)
			log_warnx("%s: %d snapshots kept: other images are "
			    "based on them", vmname, kept);
	}
}

void
vm_disk_delete(struct vm *vm)
{
	const char	*image = vm_disk_image(vm);
	struct imgstore	*st;
	char		*cause = NULL;

	if (image == NULL)
		return;
	if ((st = vm_disk_store(vm, &cause)) == NULL) {
		log_warnx("%s: disk image %s kept", cause, image);
		free(cause);
		return;
	}
	if (vm_disk_handed_over(vm)) {
		if (imgstore_forget(st, image, &cause) != 0) {
			log_warnx("%s: disk image %s: %s", vm->def.name, image,
			    cause);
			free(cause);
		} else
			log_info("%s: disk image %s left to the host that runs "
			    "it (shared store %s)", vm->def.name, image,
			    vm->def.store);
		return;
	}
	if (imgstore_unuse(st, image, vm->def.name, &cause) != 0 &&
	    cause != NULL) {
		log_warnx("%s: %s", vm->def.name, cause);
		free(cause);
		cause = NULL;
	}
	if (imgstore_rm(st, image, &cause) != 0) {
		log_warnx("%s: disk image %s kept: %s", vm->def.name, image,
		    cause);
		free(cause);
	} else
		log_info("%s: disk image %s removed", vm->def.name, image);
	vm_disk_delete_snapshots(vm, st);
}

void
vm_disk_free(struct vm_disk *d)
{
	u_int	i;

	if (d == NULL)
		return;
	for (i = 0; i < d->n; i++) {
		if (d->links[i].fd != -1)
			close(d->links[i].fd);
	}
	free(d->links);
	free(d);
}

/*
 * Check the chain (files walked with the store's parser and matched
 * against the index) and open it; vm_start hands the fds to vm_spawn,
 * which lets QEMU inherit them, and closes them after the spawn.
 */
int
vm_disk_open(struct vm *vm, struct vm_disk **out, char **cause)
{
	const char	*image = vm_disk_image(vm);
	struct vm_disk	*d;
	struct imgstore	*st;
	struct chain	*c;
	struct stat	 sb;
	json_t		*rec;
	char		*why = NULL;
	u_int		 i;
	int		 flags;

	*out = NULL;
	if (image == NULL)
		return (0);
	if (vm_disk_busy(vm->def.name, image, cause))
		return (-1);
	if ((st = vm_disk_store(vm, cause)) == NULL)
		return (-1);
	if (imgstore_chain(st, image, &c, &why) != 0) {
		xasprintf(cause, "VM %s: refusing its disk: %s", vm->def.name,
		    why);
		free(why);
		return (-1);
	}
	if ((rec = imgstore_get(st, image, &why)) == NULL) {
		xasprintf(cause, "VM %s: %s", vm->def.name, why);
		free(why);
		chain_free(c);
		return (-1);
	}
	if (json_integer_value(json_object_get(rec, "children")) > 0) {
		xasprintf(cause, "VM %s: image %s has children, so it is "
		    "read-only; a VM cannot run on it", vm->def.name, image);
		json_decref(rec);
		chain_free(c);
		return (-1);
	}
	json_decref(rec);

	d = xcalloc(1, sizeof *d);
	d->links = xcalloc(c->n, sizeof *d->links);
	for (i = 0; i < c->n; i++)
		d->links[i].fd = -1;
	d->n = c->n;
	for (i = 0; i < c->n; i++) {
		flags = (i == 0 ? O_RDWR : O_RDONLY) | O_NOFOLLOW | O_NOCTTY |
		    O_CLOEXEC;
		if ((d->links[i].fd = open(c->links[i].path, flags)) == -1 ||
		    fstat(d->links[i].fd, &sb) == -1 || !S_ISREG(sb.st_mode)) {
			xasprintf(cause, "VM %s: image %s: %s: %s",
			    vm->def.name, c->links[i].name, c->links[i].path,
			    d->links[i].fd == -1 ? strerror(errno) :
			    "not a regular file");
			goto fail;
		}
		strlcpy(d->links[i].format, c->links[i].format,
		    sizeof d->links[i].format);
		strlcpy(d->links[i].image, c->links[i].name,
		    sizeof d->links[i].image);
	}
	chain_free(c);
	/* Repairs a use lost to a crash between clone and definition. */
	if (imgstore_use(st, image, vm->def.name, &why) != 0) {
		log_warnx("%s: %s", vm->def.name, why);
		free(why);
	}
	*out = d;
	return (0);
fail:
	chain_free(c);
	vm_disk_free(d);
	return (-1);
}

int
vm_disk_reset(struct vm *vm, char **cause)
{
	const char	*image = vm_disk_image(vm);
	struct imgstore	*st;
	char		*why = NULL;

	if (image == NULL) {
		xasprintf(cause, "VM %s has no disk from the image store",
		    vm->def.name);
		return (-1);
	}
	if (vm_is_active(vm)) {
		xasprintf(cause, "VM %s is %s: stop it first", vm->def.name,
		    vm_state_name(vm->state));
		return (-1);
	}
	if (vm_disk_busy(vm->def.name, image, cause))
		return (-1);
	if ((st = vm_disk_store(vm, cause)) == NULL)
		return (-1);
	if (imgstore_reset(st, image, &why) != 0) {
		xasprintf(cause, "VM %s: %s", vm->def.name, why);
		free(why);
		return (-1);
	}
	log_info("%s: disk %s reset", vm->def.name, image);
	return (0);
}
