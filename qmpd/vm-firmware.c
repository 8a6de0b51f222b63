/*
 * A UEFI VM's NVRAM: its own copy of OVMF's vars template, nvram.fd in
 * DIR/vms/NAME, made at create, kept across restarts and disk resets,
 * made again by vm reset-nvram, removed with the VM. qmpd opens it and
 * QEMU gets the fd: QEMU never opens it by path. The directory belongs
 * to the VM's user, so every open there is no-follow, and what is found
 * must be a regular file with one link, owned by that user.
 */
#include <sys/stat.h>
#include <sys/types.h>

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "log.h"
#include "qmpd.h"
#include "safefile.h"
#include "vm.h"
#include "xmalloc.h"

#define VM_FIRMWARE_NVRAM	"nvram.fd"
#define VM_FIRMWARE_NEW		"nvram.fd.new"
#define VM_FIRMWARE_MAX		(16 * 1024 * 1024)	/* 4M: 528K */

/* The firmware of vm's definition, or NULL for BIOS. */
static const struct vm_firmware *
vm_firmware_of(const struct vm *vm)
{
	const struct vm_firmware	*fw = vm_def_firmware(vm->def.firmware);

	return (fw != NULL && fw->code != NULL ? fw : NULL);
}

/*
 * The VM's runtime dir (made, and the VM's uid allocated, if need be),
 * opened through safefile; *uid is the VM's own uid.
 */
static int
vm_firmware_dir(struct vm *vm, uid_t *uid, char **cause)
{
	char	*dir;
	int	 fd;

	if (vm_rundir(vm, &dir, cause) != 0)
		return (-1);
	if (vm_uid_get(vm, uid, cause) != 0) {
		free(dir);
		return (-1);
	}
	fd = safefile_open(dir, O_RDONLY | O_DIRECTORY, 0, *uid, cause);
	free(dir);
	return (fd);
}

/*
 * Copy the vars template into the VM's dir under a new name, owned by
 * the VM's user, then rename it over nvram.fd: a half-written copy is
 * never the NVRAM. The template is half a megabyte read from the page
 * cache: copied here rather than by a child.
 */
static int
vm_firmware_copy(struct vm *vm, const struct vm_firmware *fw, char **cause)
{
	char	 buf[65536];
	ssize_t	 n;
	uid_t	 uid;
	int	 dfd = -1, in = -1, out = -1, rc = -1;

	if ((dfd = vm_firmware_dir(vm, &uid, cause)) == -1)
		return (-1);
	if ((in = open(fw->vars, O_RDONLY | O_CLOEXEC)) == -1) {
		xasprintf(cause, "NVRAM template %s: %s (apt-get install "
		    "ovmf)", fw->vars, strerror(errno));
		goto out;
	}
	if (unlinkat(dfd, VM_FIRMWARE_NEW, 0) == -1 && errno != ENOENT) {
		xasprintf(cause, "%s: %s", VM_FIRMWARE_NEW, strerror(errno));
		goto out;
	}
	out = openat(dfd, VM_FIRMWARE_NEW, O_WRONLY | O_CREAT | O_EXCL |
	    O_NOFOLLOW | O_CLOEXEC, 0600);
	if (out == -1) {
		xasprintf(cause, "NVRAM of %s: %s", vm->def.name,
		    strerror(errno));
		goto out;
	}
	while ((n = read(in, buf, sizeof buf)) != 0) {
		if (n == -1 && errno == EINTR)
			continue;
		if (n == -1 || write(out, buf, n) != n) {
			xasprintf(cause, "NVRAM of %s: copying %s: %s",
			    vm->def.name, fw->vars, strerror(errno));
			goto out;
		}
	}
	if (fchown(out, uid, uid) == -1 ||
	    fchmod(out, 0600) == -1 || fsync(out) == -1) {
		xasprintf(cause, "NVRAM of %s: %s", vm->def.name,
		    strerror(errno));
		goto out;
	}
	if (renameat(dfd, VM_FIRMWARE_NEW, dfd, VM_FIRMWARE_NVRAM) == -1) {
		xasprintf(cause, "NVRAM of %s: rename: %s", vm->def.name,
		    strerror(errno));
		goto out;
	}
	rc = 0;
out:
	if (rc != 0 && dfd != -1)
		unlinkat(dfd, VM_FIRMWARE_NEW, 0);
	if (out != -1)
		close(out);
	if (in != -1)
		close(in);
	close(dfd);
	return (rc);
}

/* vm create: a UEFI VM's NVRAM, fresh from the template. */
int
vm_firmware_create(struct vm *vm, char **cause)
{
	const struct vm_firmware	*fw;

	if ((fw = vm_firmware_of(vm)) == NULL)
		return (0);
	return (vm_firmware_copy(vm, fw, cause));
}

/*
 * vm start: the NVRAM opened read-write for QEMU to inherit (*fd, -1 for
 * BIOS), through safefile: what the VM's user may have planted there
 * instead (a link, a FIFO, a hard link to another file) is refused by
 * name.
 */
int
vm_firmware_open(struct vm *vm, int *fd, char **cause)
{
	struct stat	 sb;
	uid_t		 uid;
	char		*why = NULL;
	int		 dfd;

	*fd = -1;
	if (vm_firmware_of(vm) == NULL)
		return (0);
	if ((dfd = vm_firmware_dir(vm, &uid, cause)) == -1)
		return (-1);
	*fd = safefile_openat(dfd, VM_FIRMWARE_NVRAM, O_RDWR, 0, uid, &why);
	close(dfd);
	if (*fd == -1) {
		xasprintf(cause, "NVRAM of %s: %s (qdesk vm reset-nvram makes "
		    "a fresh one)", vm->def.name, why);
		free(why);
		return (-1);
	}
	if (fstat(*fd, &sb) == -1 || sb.st_size == 0 ||
	    sb.st_size > VM_FIRMWARE_MAX) {
		xasprintf(cause, "NVRAM of %s is not a regular file of its "
		    "own (qdesk vm reset-nvram makes a fresh one)",
		    vm->def.name);
		close(*fd);
		*fd = -1;
		return (-1);
	}
	return (0);
}

/* vm reset-nvram: a stopped VM's NVRAM back to the template's. */
int
vm_firmware_reset(struct vm *vm, char **cause)
{
	const struct vm_firmware	*fw;

	if ((fw = vm_firmware_of(vm)) == NULL) {
		xasprintf(cause, "VM %s has no NVRAM: its firmware is %s",
		    vm->def.name, vm->def.firmware);
		return (-1);
	}
	if (vm_is_active(vm)) {
		xasprintf(cause, "VM %s is %s: stop it first", vm->def.name,
		    vm_state_name(vm->state));
		return (-1);
	}
	if (vm_firmware_copy(vm, fw, cause) != 0)
		return (-1);
	log_info("%s: NVRAM reset from %s", vm->def.name, fw->vars);
	return (0);
}

/*
 * The size of vm's NVRAM file, or of its firmware's template (template
 * set), in bytes; -1 for BIOS or a file that is not a regular one. A
 * migration's target needs a file of the source's size: QEMU sizes the
 * flash chip from it, and the stream's chip must fit (vm-migrate-tpm.c).
 */
long long
vm_firmware_size(const struct vm *vm, int template)
{
	const struct vm_firmware	*fw;
	struct stat			 sb;
	char				*p;
	int				 rv;

	if ((fw = vm_firmware_of(vm)) == NULL)
		return (-1);
	if (template)
		return (stat(fw->vars, &sb) == 0 && S_ISREG(sb.st_mode) ?
		    (long long)sb.st_size : -1);
	xasprintf(&p, "%s/vms/%s/%s", qmpd->state_dir, vm->def.name,
	    VM_FIRMWARE_NVRAM);
	/* The VM's user owns the dir: a link there is not followed. */
	rv = lstat(p, &sb);
	free(p);
	return (rv == 0 && S_ISREG(sb.st_mode) ? (long long)sb.st_size : -1);
}

/* vm delete: the NVRAM goes with the VM. */
void
vm_firmware_delete(struct vm *vm)
{
	char	*p;

	xasprintf(&p, "%s/vms/%s/%s", qmpd->state_dir, vm->def.name,
	    VM_FIRMWARE_NVRAM);
	if (unlink(p) == -1 && errno != ENOENT)
		log_warn("%s", p);
	free(p);
	xasprintf(&p, "%s/vms/%s/%s", qmpd->state_dir, vm->def.name,
	    VM_FIRMWARE_NEW);
	unlink(p);
	free(p);
}
