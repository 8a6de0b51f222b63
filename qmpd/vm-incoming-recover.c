/*
 * A target's qmpd that went away mid-migration (issue 14: "a qmpd
 * restart on either side mid-migration → reconciled from QMP and etcd,
 * never two running copies"). While a VM is an incoming half, qmpd keeps
 * a note of it in DIR/incoming/NAME (root's alone: the VM's run dir is
 * its uid's), with the disk copy it made. A qmpd that starts and finds a
 * note does not treat that VM as its own desktop: the QEMU, if it lives,
 * runs only when placement in etcd names this host (the switchover's
 * compare-and-swap landed before qmpd died: the source has let go), and
 * is killed otherwise; a half whose QEMU is gone goes with its disk copy
 * and run dir, never restarted here.
 */
#include <sys/stat.h>

#include <dirent.h>
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <event2/event.h>

#include "cluster.h"
#include "log.h"
#include "qmp.h"
#include "qmpd.h"
#include "vm.h"
#include "xmalloc.h"

#define VM_RECOVER_RETRY_S	1	/* etcd not answering yet */

static char *
vm_incoming_note_path(const char *name)
{
	char	*path;

	xasprintf(&path, "%s/incoming/%s", qmpd->state_dir, name);
	return (path);
}

/* The note of an incoming half: written once its record is saved. */
int
vm_incoming_note(const struct vm *vm, char **cause)
{
	char	*dir, *path, *text;
	FILE	*f;
	json_t	*j;

	xasprintf(&dir, "%s/incoming", qmpd->state_dir);
	if (mkdir(dir, 0700) == -1 && errno != EEXIST) {
		xasprintf(cause, "mkdir %s: %s", dir, strerror(errno));
		free(dir);
		return (-1);
	}
	free(dir);
	j = json_pack("{s:s?,s:s?,s:b,s:s}", "disk", vm->mig->disk, "image",
	    vm->mig->image, "copy", vm->mig->copy, "from", vm->mig->peer_addr);
	text = json_dumps(j, JSON_COMPACT);
	json_decref(j);
	path = vm_incoming_note_path(vm->def.name);
	if ((f = fopen(path, "we")) == NULL || fprintf(f, "%s\n", text) < 0 ||
	    fclose(f) != 0) {
		xasprintf(cause, "%s: %s", path, strerror(errno));
		free(path);
		free(text);
		return (-1);
	}
	free(path);
	free(text);
	return (0);
}

/* The half took over, or went: its note goes. */
void
vm_incoming_unnote(const char *name)
{
	char	*path = vm_incoming_note_path(name);

	if (unlink(path) == -1 && errno != ENOENT)
		log_warn("unlink %s", path);
	free(path);
}

/*
 * Start-up, before re-attaching: each VM with a note becomes an incoming
 * half again (its vm_mig), so its exit discards it and nothing restarts
 * it; a note without a VM leaves only its disk copy (or clone) to remove.
 */
void
vm_incoming_recover(void)
{
	struct dirent	*de;
	struct vm	*vm;
	struct vm_mig	*m;
	DIR		*d;
	char		*dir, *path;
	json_t		*j;
	const char	*disk;

	xasprintf(&dir, "%s/incoming", qmpd->state_dir);
	d = opendir(dir);
	free(dir);
	if (d == NULL)
		return;
	while ((de = readdir(d)) != NULL) {
		if (de->d_name[0] == '.')
			continue;
		path = vm_incoming_note_path(de->d_name);
		j = json_load_file(path, 0, NULL);
		free(path);
		disk = json_string_value(json_object_get(j, "disk"));
		if ((vm = vm_find(de->d_name)) == NULL || vm->mig != NULL) {
			log_warnx("%s: an incoming migration's leftover "
			    "removed", de->d_name);
			if (disk != NULL && unlink(disk) == -1 &&
			    errno != ENOENT)
				log_warn("unlink %s", disk);
			/* A clone made for it (vm-migrate-image.c) too. */
			if (vm == NULL && json_string_value(json_object_get(j,
			    "image")) != NULL)
				vm_incoming_image_drop(de->d_name,
				    json_string_value(json_object_get(j,
				    "image")));
			vm_incoming_unnote(de->d_name);
			json_decref(j);
			continue;
		}
		m = vm->mig = xcalloc(1, sizeof *m);
		m->incoming = 1;
		m->state = VM_MIG_PREPARING;
		m->copy = json_is_true(json_object_get(j, "copy"));
		m->disk = disk != NULL ? xstrdup(disk) : NULL;
		m->peer_addr = xstrdup(json_string_value(json_object_get(j,
		    "from")) != NULL ? json_string_value(json_object_get(j,
		    "from")) : "?");
		m->reason = xstrdup("this host's qmpd restarted during the "
		    "migration");
		m->t0 = vm_migrate_now_ms();
		log_warnx("%s: incoming from %s when qmpd went away: "
		    "reconciling", vm->def.name, m->peer_addr);
		json_decref(j);
	}
	closedir(d);
}

/*
 * After re-attaching: a half whose QEMU is gone is removed (record, run
 * dir, disk copy); the names first, since removing edits the list.
 */
void
vm_incoming_recover_dead(void)
{
	struct vm	*vm;
	char		**names = NULL;
	size_t		 n = 0, i;

	TAILQ_FOREACH(vm, &vms, entry) {
		if (vm->mig != NULL && vm->mig->incoming &&
		    vm->mig->state != VM_MIG_COMPLETED && vm->pidfd == -1) {
			names = xrealloc(names, (n + 1) * sizeof *names);
			names[n++] = xstrdup(vm->def.name);
		}
	}
	for (i = 0; i < n; i++) {
		if ((vm = vm_find(names[i])) != NULL)
			(void)vm_migrate_exited(vm);
		free(names[i]);
	}
	free(names);
}

static void	vm_incoming_recover_ask(struct vm *);

static void
vm_incoming_recover_retry(evutil_socket_t fd, short events, void *arg)
{
	char		*name = arg;
	struct vm	*vm;

	if ((vm = vm_find(name)) != NULL && vm->mig != NULL &&
	    vm->mig->incoming && vm->mig->state == VM_MIG_PREPARING)
		vm_incoming_recover_ask(vm);
	free(name);
}

/* etcd's placement of a re-attached half: run it here, or kill it. */
static void
vm_incoming_recover_where(const char *name, const char *host,
    const char *err, void *arg)
{
	struct vm	*vm;
	struct timeval	 tv = { VM_RECOVER_RETRY_S, 0 };

	if ((vm = vm_find(name)) == NULL || vm->mig == NULL ||
	    !vm->mig->incoming || vm->mig->state != VM_MIG_PREPARING ||
	    vm->qmp == NULL)
		return;
	if (err != NULL) {
		log_warnx("%s: placement unknown (%s): asking again", name,
		    err);
		event_base_once(qmpd->base, -1, EV_TIMEOUT,
		    vm_incoming_recover_retry, xstrdup(name), &tv);
		return;
	}
	if (host != NULL && strcmp(host, cluster_name()) == 0) {
		log_info("%s: placement names this host: the switchover "
		    "finishes here", name);
		vm_incoming_takeover(vm);
		return;
	}
	log_warnx("%s: placement names %s: this incoming half goes", name,
	    host != NULL ? host : "no host");
	vm_pidfd_signal(vm, SIGKILL);
}

static void
vm_incoming_recover_ask(struct vm *vm)
{
	cluster_migrate_where(vm->def.name, vm_incoming_recover_where, NULL);
}

/*
 * QMP is up again on a half (vm_qmp_attach): in a cluster placement
 * decides; without one the source resumes when its peer goes away, so
 * this half goes.
 */
void
vm_incoming_reattached(struct vm *vm)
{
	struct timeval	tv = { 0, 0 };

	/* Re-attaching comes before cluster_init: ask from the loop. */
	if (qmpd->cluster != NULL) {
		event_base_once(qmpd->base, -1, EV_TIMEOUT,
		    vm_incoming_recover_retry, xstrdup(vm->def.name), &tv);
		return;
	}
	log_warnx("%s: incoming half without a cluster: it goes (the "
	    "source resumes)", vm->def.name);
	vm_pidfd_signal(vm, SIGKILL);
}
