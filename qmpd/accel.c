/*
 * Which accelerators this host offers QEMU. KVM counts only when a VM can
 * really be created and the VM user may open /dev/kvm.
 */
#include <sys/ioctl.h>
#include <sys/stat.h>

#include <fcntl.h>
#include <unistd.h>

#include <linux/kvm.h>

#include "log.h"
#include "qmpd.h"

static int
accel_vm_user_may_open(const struct stat *sb)
{
	int	i;

	if ((sb->st_mode & 0006) == 0006)
		return (1);
	if (sb->st_uid == qmpd->vm_uid && (sb->st_mode & 0600) == 0600)
		return (1);
	if ((sb->st_mode & 0060) != 0060)
		return (0);
	if (sb->st_gid == qmpd->vm_gid)
		return (1);
	for (i = 0; i < qmpd->vm_ngroups; i++)
		if (qmpd->vm_groups[i] == sb->st_gid)
			return (1);
	return (0);
}

int
accel_kvm_usable(void)
{
	struct stat	sb;
	int		fd, vmfd;

	if ((fd = open("/dev/kvm", O_RDWR | O_CLOEXEC)) == -1)
		return (0);
	if (fstat(fd, &sb) == -1 ||
	    ioctl(fd, KVM_GET_API_VERSION, 0) != KVM_API_VERSION) {
		close(fd);
		return (0);
	}
	vmfd = ioctl(fd, KVM_CREATE_VM, 0);
	close(fd);
	if (vmfd == -1)
		return (0);
	close(vmfd);
	if (!accel_vm_user_may_open(&sb)) {
		log_warnx("/dev/kvm works but user %s cannot open it; VMs "
		    "fall back to tcg (scripts/setup grants it through group "
		    "kvm)", qmpd->vm_user);
		return (0);
	}
	return (1);
}
