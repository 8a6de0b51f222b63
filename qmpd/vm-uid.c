/*
 * One uid per VM, as Firecracker's jailer and libvirt's dynamic ownership
 * do it: each VM's QEMU (and later its helpers) runs as a uid and gid of
 * its own, taken from the range qmpd --vm-uids FIRST-LAST, with group kvm
 * beside it for /dev/kvm (the range's last uid is kept for image jobs). An escaped guest is then one uid among many: it
 * cannot signal, trace or open what belongs to another VM. The number is
 * kept in LMDB (DB_VMUIDS, keyed by the VM's name) for the VM's life, so
 * a restarted qmpd knows whose files are whose and re-attaches only to a
 * QEMU that runs as the VM's own uid; vm delete gives it back.
 */
#include <sys/stat.h>
#include <sys/types.h>

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <pwd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "log.h"
#include "qmpd.h"
#include "vm.h"
#include "xmalloc.h"

#define VM_UID_DEFAULT_FIRST	2000000000U
#define VM_UID_DEFAULT_LAST	2000099999U
#define VM_UID_RANGE_MAX	1000000U	/* uids a range may hold */

static uid_t	vm_uid_first = VM_UID_DEFAULT_FIRST;
static uid_t	vm_uid_last = VM_UID_DEFAULT_LAST;
static gid_t	vm_uid_kvm_gid = (gid_t)-1;

static int
vm_uid_in_range(unsigned long id)
{
	return (id >= vm_uid_first && id <= vm_uid_last);
}

/*
 * Does a line of /etc/subuid or /etc/subgid ("name:start:count") hand
 * out any id of the range to some user's namespaces?
 */
static int
vm_uid_sub_overlaps(const char *path, char **who)
{
	FILE			*f;
	char			 line[512], *p, *q;
	unsigned long long	 start, count;
	int			 hit = 0;

	if ((f = fopen(path, "re")) == NULL)
		return (0);
	while (!hit && fgets(line, sizeof line, f) != NULL) {
		if ((p = strchr(line, ':')) == NULL)
			continue;
		*p++ = '\0';
		start = strtoull(p, &q, 10);
		if (q == p || *q != ':')
			continue;
		count = strtoull(q + 1, NULL, 10);
		if (count > 0 && start <= vm_uid_last &&
		    start + count - 1 >= vm_uid_first) {
			xasprintf(who, "%s gives %s ids %llu-%llu", path, line,
			    start, start + count - 1);
			hit = 1;
		}
	}
	fclose(f);
	return (hit);
}

/*
 * Take the range spec ("FIRST-LAST", or NULL for the default) and check
 * that no user, group or subordinate id range of this host holds any of
 * it: a VM's uid must be no one else's. Fills qmpd's vm_* fields.
 */
int
vm_uid_init(const char *spec, char **cause)
{
	unsigned long long	 first, last;
	struct passwd		*pw;
	struct group		*gr;
	char			*end, *who = NULL;

	if (spec != NULL) {
		errno = 0;
		first = strtoull(spec, &end, 10);
		if (end == spec || *end != '-' || errno != 0) {
			xasprintf(cause, "--vm-uids %s: want FIRST-LAST", spec);
			return (-1);
		}
		last = strtoull(end + 1, &end, 10);
		if (*end != '\0' || errno != 0) {
			xasprintf(cause, "--vm-uids %s: want FIRST-LAST", spec);
			return (-1);
		}
		if (first < 1000 || last <= first || last >= 0x7fffffffULL ||
		    last - first + 1 > VM_UID_RANGE_MAX) {
			xasprintf(cause, "--vm-uids %s: want 1000 <= FIRST < "
			    "LAST < 2147483647 and at most %u uids", spec,
			    VM_UID_RANGE_MAX);
			return (-1);
		}
		vm_uid_first = first;
		vm_uid_last = last;
	}
	setpwent();
	while ((pw = getpwent()) != NULL) {
		if (vm_uid_in_range(pw->pw_uid))
			xasprintf(&who, "user %s is uid %lu", pw->pw_name,
			    (u_long)pw->pw_uid);
		else if (vm_uid_in_range(pw->pw_gid))
			xasprintf(&who, "user %s has gid %lu", pw->pw_name,
			    (u_long)pw->pw_gid);
		if (who != NULL)
			break;
	}
	endpwent();
	setgrent();
	while (who == NULL && (gr = getgrent()) != NULL) {
		if (vm_uid_in_range(gr->gr_gid))
			xasprintf(&who, "group %s is gid %lu", gr->gr_name,
			    (u_long)gr->gr_gid);
	}
	endgrent();
	if (who != NULL || vm_uid_sub_overlaps("/etc/subuid", &who) ||
	    vm_uid_sub_overlaps("/etc/subgid", &who)) {
		xasprintf(cause, "the VM uid range %lu-%lu is not free (%s): "
		    "pass --vm-uids FIRST-LAST", (u_long)vm_uid_first,
		    (u_long)vm_uid_last, who);
		free(who);
		return (-1);
	}
	if ((gr = getgrnam("kvm")) != NULL)
		vm_uid_kvm_gid = gr->gr_gid;
	xasprintf(&qmpd->vm_user, "uids %lu-%lu", (u_long)vm_uid_first,
	    (u_long)vm_uid_last);
	qmpd->vm_uid = (uid_t)-1;
	qmpd->vm_gid = (gid_t)-1;
	qmpd->vm_ngroups = vm_uid_kvm_gid != (gid_t)-1;
	qmpd->vm_groups = xcalloc(1, sizeof *qmpd->vm_groups);
	qmpd->vm_groups[0] = vm_uid_kvm_gid;
	return (0);
}

/* The supplementary groups of every QEMU: kvm, when the host has it. */
const gid_t *
vm_uid_groups(int *n)
{
	*n = qmpd->vm_ngroups;
	return (qmpd->vm_groups);
}

/* The uid recorded for the VM named name, or (uid_t)-1. */
uid_t
vm_uid_lookup(const char *name)
{
	json_t		*rec;
	json_int_t	 id;

	if ((rec = db_get(qmpd->db, DB_VMUIDS, name)) == NULL)
		return ((uid_t)-1);
	id = json_integer_value(json_object_get(rec, "uid"));
	json_decref(rec);
	return (id > 0 && id < 0x7fffffff ? (uid_t)id : (uid_t)-1);
}

struct vm_uid_used {
	unsigned char	*map;		/* a bit per uid of the range */
};

/* db_foreach: mark the uid of one record as used. */
static int
vm_uid_mark(const char *key, json_t *rec, void *arg)
{
	struct vm_uid_used	*u = arg;
	json_int_t		 id;

	id = json_integer_value(json_object_get(rec, "uid"));
	if (id >= 0 && vm_uid_in_range(id)) {
		id -= vm_uid_first;
		u->map[id / 8] |= 1 << (id % 8);
	}
	return (0);
}

/* A dead process its parent has not reaped yet: it holds nothing. */
static int
vm_uid_zombie(const char *pid)
{
	char	 path[300], buf[512], *p;
	ssize_t	 n;
	int	 fd;

	snprintf(path, sizeof path, "/proc/%s/stat", pid);
	if ((fd = open(path, O_RDONLY | O_CLOEXEC)) == -1)
		return (1);
	n = read(fd, buf, sizeof buf - 1);
	close(fd);
	if (n <= 0)
		return (1);
	buf[n] = '\0';
	if ((p = strrchr(buf, ')')) == NULL || p[1] != ' ')
		return (0);
	return (p[2] == 'Z' || p[2] == 'X');
}

/* Does some process run as uid (say, a QEMU of a VM deleted since)? */
static int
vm_uid_busy(uid_t uid)
{
	DIR		*d;
	struct dirent	*de;
	struct stat	 sb;
	int		 busy = 0;

	if ((d = opendir("/proc")) == NULL)
		return (0);
	while (!busy && (de = readdir(d)) != NULL) {
		if (de->d_name[0] < '0' || de->d_name[0] > '9')
			continue;
		if (fstatat(dirfd(d), de->d_name, &sb, 0) == 0 &&
		    sb.st_uid == uid && !vm_uid_zombie(de->d_name))
			busy = 1;
	}
	closedir(d);
	return (busy);
}

/*
 * The VM's uid: the recorded one, or the lowest free uid of the range,
 * recorded (synced) before any file or process gets it.
 */
int
vm_uid_get(const struct vm *vm, uid_t *uid, char **cause)
{
	struct vm_uid_used	 u;
	uid_t			 id;
	size_t			 n;
	json_t			*rec;
	int			 rv;

	if ((*uid = vm_uid_lookup(vm->def.name)) != (uid_t)-1)
		return (0);
	n = (size_t)(vm_uid_last - vm_uid_first) + 1;
	u.map = xcalloc(n / 8 + 1, 1);
	if (db_foreach(qmpd->db, DB_VMUIDS, vm_uid_mark, &u, cause) < 0) {
		free(u.map);
		return (-1);
	}
	/* The last uid of the range is the image jobs' helper's. */
	for (id = vm_uid_first; id < vm_uid_last; id++) {
		n = id - vm_uid_first;
		if ((u.map[n / 8] & (1 << (n % 8))) == 0 && !vm_uid_busy(id))
			break;
	}
	free(u.map);
	if (id >= vm_uid_last || id < vm_uid_first) {
		xasprintf(cause, "every uid of %lu-%lu is taken: widen "
		    "--vm-uids", (u_long)vm_uid_first, (u_long)vm_uid_last);
		return (-1);
	}
	rec = json_pack("{s:I,s:s}", "uid", (json_int_t)id, "uuid",
	    vm->def.uuid);
	rv = db_put(qmpd->db, DB_VMUIDS, vm->def.name, rec, cause);
	json_decref(rec);
	if (rv != 0)
		return (-1);
	log_info("%s: runs as uid and gid %lu", vm->def.name, (u_long)id);
	*uid = id;
	return (0);
}

/*
 * The uid of image jobs over no VM's disk (img-job.c): the range's last,
 * which no VM is given.
 */
uid_t
vm_uid_helper(void)
{
	return (vm_uid_last);
}

/* The VM is gone: its uid goes back to the range. */
void
vm_uid_free(const char *name)
{
	char	*cause = NULL;

	if (db_del(qmpd->db, DB_VMUIDS, name, &cause) < 0) {
		log_warnx("%s: freeing its uid: %s", name, cause);
		free(cause);
	}
}

/*
 * Re-attach: does process pid run as the VM's recorded uid? A VM with no
 * record (started by a qmpd before per-VM uids) is taken as it is. cause
 * may be NULL.
 */
int
vm_uid_matches(const struct vm *vm, pid_t pid, char **cause)
{
	char		path[64];
	struct stat	sb;
	uid_t		want;

	if ((want = vm_uid_lookup(vm->def.name)) == (uid_t)-1)
		return (1);
	snprintf(path, sizeof path, "/proc/%ld", (long)pid);
	if (stat(path, &sb) == -1) {
		if (cause != NULL)
			xasprintf(cause, "pid %ld: %s", (long)pid,
			    strerror(errno));
		return (0);
	}
	if (sb.st_uid != want) {
		if (cause != NULL)
			xasprintf(cause, "pid %ld matches %s but runs as uid "
			    "%lu, not the VM's uid %lu", (long)pid,
			    vm->def.name, (u_long)sb.st_uid, (u_long)want);
		return (0);
	}
	return (1);
}
