/*
 * qmpd's start-up: VM definitions loaded from LMDB, and every QEMU a
 * previous qmpd left running found again (its pidfile, or failing that a
 * process of the VM's uid; a /proc/PID/cmdline that names this VM) and
 * re-attached through its QMP socket: restarting qmpd never stops a
 * desktop, and never loses one.
 */
#include <sys/stat.h>

#include <dirent.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <event2/event.h>

#include "log.h"
#include "proc.h"
#include "qmp.h"
#include "qmpd.h"
#include "vm.h"
#include "xmalloc.h"

/* Load every definition from LMDB; runtime state is settled by reattach. */
static int
vm_attach_load_one(const char *key, json_t *rec, void *arg)
{
	struct vm	*vm;
	char		*cause = NULL;
	const char	*state;

	vm = vm_alloc();
	if (vm_def_from_json(&vm->def, json_object_get(rec, "def"),
	    &cause) != 0) {
		log_warnx("VM record %s is unreadable, skipped: %s", key,
		    cause);
		free(cause);
		vm_free(vm);
		return (0);
	}
	state = json_string_value(json_object_get(rec, "state"));
	if (state == NULL || vm_state_from_name(state, &vm->state) != 0)
		vm->state = VM_STOPPED;
	if (json_is_string(json_object_get(rec, "reason")))
		vm->reason = xstrdup(json_string_value(json_object_get(rec,
		    "reason")));
	spice_via_restore(vm, json_object_get(rec, "viewer"));
	TAILQ_INSERT_TAIL(&vms, vm, entry);
	return (0);
}

/* Start-up: every VM definition in LMDB into the registry. */
int
vm_attach_load(char **cause)
{
	int	n;

	if ((n = db_foreach(qmpd->db, DB_VMS, vm_attach_load_one, NULL,
	    cause)) < 0)
		return (-1);
	log_info("%d VM definitions loaded", n);
	return (0);
}

/* Does /proc/PID/cmdline belong to this VM's QEMU? */
static int
vm_attach_cmdline(struct vm *vm, pid_t pid)
{
	char	 buf[8192], want[128];
	ssize_t	 n, i;
	int	 name_ok = 0, uuid_ok = 0, tls = 0;
	char	*p;

	if ((n = proc_cmdline(pid, buf, sizeof buf)) == 0)
		return (0);
	snprintf(want, sizeof want, "guest=%s,debug-threads=on",
	    vm->def.name);
	for (i = 0; i < n; i += strlen(p) + 1) {
		p = buf + i;
		if (strcmp(p, want) == 0)
			name_ok = 1;
		if (strcmp(p, vm->def.uuid) == 0)
			uuid_ok = 1;
		if (strncmp(p, "tls-port=", 9) == 0)
			tls = 1;
	}
	if (name_ok && uuid_ok)
		vm->spice_tls = tls;
	return (name_ok && uuid_ok);
}

/*
 * This VM's QEMU without its pidfile: the process of the VM's own uid
 * whose command line names the VM (name and uuid). -1 if none.
 */
static pid_t
vm_attach_find(struct vm *vm)
{
	DIR		*d;
	struct dirent	*de;
	struct stat	 sb;
	uid_t		 uid;
	pid_t		 pid, found = -1;

	if ((uid = vm_uid_lookup(vm->def.name)) == (uid_t)-1 ||
	    (d = opendir("/proc")) == NULL)
		return (-1);
	while (found == -1 && (de = readdir(d)) != NULL) {
		if ((pid = atoi(de->d_name)) <= 0 ||
		    fstatat(dirfd(d), de->d_name, &sb, 0) == -1 ||
		    sb.st_uid != uid)
			continue;
		if (vm_attach_cmdline(vm, pid))
			found = pid;
	}
	closedir(d);
	return (found);
}

/* Find this VM's QEMU from a previous qmpd, and attach to it. */
static int
vm_attach_one(struct vm *vm, char **cause)
{
	char	*path, *text, *end;
	long	 pid = -1;
	int	 fd;

	/* Written by QEMU, in a dir its uid owns: read without trusting it. */
	if ((text = vm_rundir_read(vm, "qemu.pid", 32, cause)) != NULL) {
		pid = strtol(text, &end, 10);
		if (end == text || (*end != '\0' && *end != '\n'))
			pid = -1;
		free(text);
	}
	if (pid <= 0 || !vm_attach_cmdline(vm, pid) ||
	    !vm_uid_matches(vm, pid, NULL)) {
		/* A lost or false pidfile must not lose a live QEMU. */
		if ((pid = vm_attach_find(vm)) <= 0) {
			if (*cause == NULL)
				xasprintf(cause, "QEMU exited while qmpd was "
				    "not running");
			return (-1);
		}
		if (*cause != NULL)
			log_warnx("%s: %s; found its QEMU as pid %ld all the "
			    "same", vm->def.name, *cause, pid);
		free(*cause);
		*cause = NULL;
	}
	if (vm_watch(vm, pid, cause) != 0)
		return (-1);
	xasprintf(&path, "%s/vms/%s/qmp.sock", qmpd->state_dir, vm->def.name);
	fd = qmp_connect_unix(path);
	free(path);
	if (fd == -1 || vm_qmp_attach(vm, fd, 0, cause) != 0) {
		if (fd != -1)
			close(fd);
		if (*cause == NULL)
			xasprintf(cause, "cannot reach the QMP socket of "
			    "pid %ld", pid);
		return (-1);
	}
	log_info("%s: re-attached to QEMU pid %ld", vm->def.name, pid);
	vm_tpm_attach(vm);
	vm_agent_attach(vm);
	return (0);
}

/*
 * Start-up: every VM that was active when qmpd went away is re-attached
 * to its QEMU, or marked stopped or crashed (and maybe restarted).
 */
void
vm_attach_all(void)
{
	struct vm	*vm;
	char		*cause;

	TAILQ_FOREACH(vm, &vms, entry) {
		if (!vm_is_active(vm))
			continue;
		cause = NULL;
		if (vm_attach_one(vm, &cause) == 0) {
			free(cause);
			continue;
		}
		log_warnx("%s: %s", vm->def.name, cause);
		/* Alive but unreachable: it goes, and its exit is seen. */
		if (vm->pidfd != -1 && vm_pidfd_signal(vm, SIGKILL) == 0) {
			vm_set_state(vm, VM_CRASHED, cause);
			free(cause);
			continue;
		}
		/* An incoming half is never restarted here (recover_dead). */
		if (vm->mig != NULL && vm->mig->incoming) {
			vm_unwatch(vm);
			free(cause);
			continue;
		}
		/* It was running when qmpd went away, and is gone now. */
		vm_unwatch(vm);
		vm_exit_cleanup(vm);
		vm_set_state(vm, vm->state == VM_STOPPING ? VM_STOPPED :
		    VM_CRASHED, cause);
		free(cause);
		if (vm->state == VM_CRASHED)
			vm_exit_restart(vm);
	}
}

