/*
 * The QEMU command line, built by one pure function from a VM definition
 * and its runtime paths. Golden files in tests/golden/argv pin it down, as
 * libvirt's .args files do.
 */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "compat.h"
#include "vm.h"
#include "xmalloc.h"

static void
argv_addv(struct argv *a, const char *fmt, va_list ap)
{
	char	*s;

	if (vasprintf(&s, fmt, ap) < 0)
		s = NULL;
	if (s == NULL)
		s = xstrdup("");
	if (a->n + 2 > a->cap) {
		a->cap = a->cap == 0 ? 64 : a->cap * 2;
		a->v = xrealloc(a->v, a->cap * sizeof *a->v);
	}
	a->v[a->n++] = s;
	a->v[a->n] = NULL;
}

static void __attribute__((format(printf, 2, 3)))
argv_add(struct argv *a, const char *fmt, ...)
{
	va_list	 ap;

	va_start(ap, fmt);
	argv_addv(a, fmt, ap);
	va_end(ap);
}

/* argv_add for the device builders of the other vm-argv-*.c files. */
void
vm_argv_add(struct argv *a, const char *fmt, ...)
{
	va_list	 ap;

	va_start(ap, fmt);
	argv_addv(a, fmt, ap);
	va_end(ap);
}

/* QEMU's option parser splits on ','; a literal comma is written twice. */
static char *
argv_escape(const char *s)
{
	char	*out, *p;

	out = p = xmalloc(strlen(s) * 2 + 1);
	for (; *s != '\0'; s++) {
		*p++ = *s;
		if (*s == ',')
			*p++ = ',';
	}
	*p = '\0';
	return (out);
}

void
vm_argv_free(char **argv)
{
	char	**p;

	if (argv == NULL)
		return;
	for (p = argv; *p != NULL; p++)
		free(*p);
	free(argv);
}

/*
 * SPICE transport profiles, each chosen by measurement (bench/transport/
 * README.md): glz for both, as spice-server's default auto_glz sends a
 * framebuffer's bands with quic at ~7x the bytes; streaming of steady
 * motion for both; wan adds zlib over glz (JPEG, which replaces quic
 * only, stays allowed for WAN clients but glz leaves it nothing to do).
 */
static const struct {
	const char	*image;
	const char	*jpeg;
	const char	*zlib;
	const char	*streaming;
	const char	*playback;
} vm_argv_profiles[] = {
	[VM_PROFILE_LAN] = { "glz", "never", "never", "filter", "on" },
	[VM_PROFILE_WAN] = { "glz", "always", "always", "filter", "on" },
};

/* The -spice options of the definition's transport profile. */
static char *
vm_argv_spice_profile(const struct vm_def *def)
{
	char	*s;

	xasprintf(&s, "image-compression=%s,jpeg-wan-compression=%s,"
	    "zlib-glz-wan-compression=%s,streaming-video=%s,"
	    "playback-compression=%s", vm_argv_profiles[def->profile].image,
	    vm_argv_profiles[def->profile].jpeg,
	    vm_argv_profiles[def->profile].zlib,
	    vm_argv_profiles[def->profile].streaming,
	    vm_argv_profiles[def->profile].playback);
	return (s);
}

/*
 * Devices for a SPICE desktop: QXL (its agent port and the tablet come
 * after, as for any desktop). With a
 * certificate directory the port speaks TLS only (tls-port, no port), so
 * no channel of any viewer ever crosses the wire in the clear.
 */
static void
vm_argv_spice(struct argv *a, const struct vm_def *def,
    const struct vm_runtime_paths *rt)
{
	char		*dir, *profile;
	const char	*addr;

	addr = rt->spice_addr != NULL ? rt->spice_addr : def->listen;
	/* Ticketing stays on: no password is valid until set_password. */
	profile = vm_argv_spice_profile(def);
	argv_add(a, "-spice");
	if (rt->spice_tls_dir != NULL) {
		dir = argv_escape(rt->spice_tls_dir);
		argv_add(a, "tls-port=%d,addr=%s,x509-dir=%s,"
		    "seamless-migration=on,%s", def->spice_port, addr,
		    dir, profile);
		free(dir);
	} else
		argv_add(a, "port=%d,addr=%s,seamless-migration=on,%s",
		    def->spice_port, addr, profile);
	free(profile);
	vm_argv_dev_video(a, def);
}

#define VM_ARGV_NIC_PORTS	VM_NICS_MAX	/* q35 hotplug ports */

/*
 * NICs: each a TAP qmpd opened and QEMU inherits as an fd (no vhost, no
 * script, QEMU needs no network privilege), on virtio-net with the NIC's
 * stable MAC.  q35's root bus takes no hotplug: one spare root port per
 * NIC id (net0 to net7, port qdesk-rpN for netN) for vm.nic_add.
 */
static int
vm_argv_nics(struct argv *a, const struct vm_def *def,
    const struct vm_runtime_paths *rt, char **cause)
{
	const struct vm_def_nic	*nic;
	char			 mac[NETCTL_MACSTRLEN];
	size_t			 i;

	if (def->nnics != (u_int)(rt->ntap_fds > 0 ? rt->ntap_fds : 0)) {
		xasprintf(cause, "VM %s has %u NICs but %d TAPs", def->name,
		    def->nnics, rt->ntap_fds);
		return (-1);
	}
	for (i = 0; i < def->nnics; i++) {
		nic = &def->nics[i];
		netctl_mac_format(nic->mac, mac, sizeof mac);
		argv_add(a, "-netdev");
		argv_add(a, "tap,id=%s,fd=%d,vhost=off", nic->id,
		    rt->tap_fds[i]);
		argv_add(a, "-device");
		argv_add(a, "virtio-net-pci,netdev=%s,id=%s-nic,mac=%s",
		    nic->id, nic->id, mac);
	}
	if (strcmp(def->machine, "q35") != 0)
		return (0);
	for (i = 0; i < VM_ARGV_NIC_PORTS; i++) {
		argv_add(a, "-device");
		argv_add(a, "pcie-root-port,id=qdesk-rp%zu,chassis=%zu", i,
		    i + 1);
	}
	return (0);
}

/*
 * An image-store disk: one fd set and two -blockdev nodes (file, format)
 * per link, from the base up, each format node naming its backing node
 * (null at a qcow2 base): QEMU probes no format and follows no backing
 * file name. Every link below the top is read-only.
 */
static void
vm_argv_image(struct argv *a, const struct vm_disk *d)
{
	json_t	*file, *fmt;
	char	 node[32], fnode[40], fset[32], below[32] = "", *s;
	u_int	 i;

	for (i = d->n; i-- > 0;) {
		if (i == 0)
			strlcpy(node, "disk0", sizeof node);
		else
			snprintf(node, sizeof node, "disk0-b%u", i);
		snprintf(fnode, sizeof fnode, "%s-file", node);
		snprintf(fset, sizeof fset, "/dev/fdset/%u", i + 2);
		argv_add(a, "-add-fd");
		argv_add(a, "fd=%d,set=%u,opaque=%s", d->links[i].fd, i + 2,
		    d->links[i].image);
		file = json_pack("{s:s,s:s,s:s,s:b}", "driver", "file",
		    "filename", fset, "node-name", fnode, "read-only", i != 0);
		fmt = json_pack("{s:s,s:s,s:s,s:b}", "driver",
		    d->links[i].format, "file", fnode, "node-name", node,
		    "read-only", i != 0);
		if (i == 0) {
			json_object_set_new(file, "discard",
			    json_string("unmap"));
			json_object_set_new(fmt, "discard",
			    json_string("unmap"));
		}
		if (strcmp(d->links[i].format, "qcow2") == 0)
			json_object_set_new(fmt, "backing", i + 1 < d->n ?
			    json_string(below) : json_null());
		s = json_dumps(file, JSON_COMPACT | JSON_PRESERVE_ORDER);
		argv_add(a, "-blockdev");
		argv_add(a, "%s", s);
		free(s);
		s = json_dumps(fmt, JSON_COMPACT | JSON_PRESERVE_ORDER);
		argv_add(a, "-blockdev");
		argv_add(a, "%s", s);
		free(s);
		json_decref(file);
		json_decref(fmt);
		strlcpy(below, node, sizeof below);
	}
	argv_add(a, "-device");
	argv_add(a, "virtio-blk-pci,drive=disk0,id=vda,bootindex=1");
}

/*
 * -machine's firmware properties: OVMF's code and vars as the machine's
 * two flash chips, and SMM for Secure Boot (so the guest's OS cannot
 * write the authenticated variables behind the firmware's back).
 */
static const char *
vm_argv_firmware_machine(const struct vm_def *def)
{
	const struct vm_firmware	*fw = vm_def_firmware(def->firmware);

	if (fw == NULL || fw->code == NULL)
		return ("");
	if (fw->secure)
		return (",smm=on,pflash0=fw-code,pflash1=fw-vars");
	return (",pflash0=fw-code,pflash1=fw-vars");
}

/*
 * OVMF as pflash: the code read-only from the ovmf package, the VM's own
 * NVRAM as an fd qmpd opened (QEMU never opens it by path). With Secure
 * Boot only SMM code may write the flash.
 */
static int
vm_argv_firmware(struct argv *a, const struct vm_def *def,
    const struct vm_runtime_paths *rt, char **cause)
{
	const struct vm_firmware	*fw = vm_def_firmware(def->firmware);
	char				*e;

	if (fw == NULL || fw->code == NULL)
		return (0);
	if (rt->nvram_fd < 0) {
		xasprintf(cause, "VM %s has firmware %s but no NVRAM file",
		    def->name, def->firmware);
		return (-1);
	}
	e = argv_escape(fw->code);
	argv_add(a, "-blockdev");
	argv_add(a, "driver=file,filename=%s,node-name=fw-code-file,"
	    "read-only=on", e);
	free(e);
	argv_add(a, "-blockdev");
	argv_add(a, "driver=raw,file=fw-code-file,node-name=fw-code,"
	    "read-only=on");
	argv_add(a, "-add-fd");
	argv_add(a, "fd=%d,set=0,opaque=nvram", rt->nvram_fd);
	argv_add(a, "-blockdev");
	argv_add(a, "driver=file,filename=/dev/fdset/0,"
	    "node-name=fw-vars-file");
	argv_add(a, "-blockdev");
	argv_add(a, "driver=raw,file=fw-vars-file,node-name=fw-vars");
	if (fw->secure) {
		argv_add(a, "-global");
		argv_add(a, "driver=cfi.pflash01,property=secure,value=on");
	}
	return (0);
}

/*
 * A TPM 2.0: the control socket of the VM's swtpm, connected by qmpd and
 * inherited as an fd; the CRB interface on q35, TIS on pc.
 */
static int
vm_argv_tpm(struct argv *a, const struct vm_def *def,
    const struct vm_runtime_paths *rt, char **cause)
{
	if (!def->tpm)
		return (0);
	if (rt->tpm_fd < 0) {
		xasprintf(cause, "VM %s has a TPM but no TPM emulator",
		    def->name);
		return (-1);
	}
	argv_add(a, "-chardev");
	argv_add(a, "socket,id=tpm0,fd=%d", rt->tpm_fd);
	argv_add(a, "-tpmdev");
	argv_add(a, "emulator,id=tpm0,chardev=tpm0");
	argv_add(a, "-device");
	argv_add(a, "%s,tpmdev=tpm0,id=tpm0-dev",
	    strcmp(def->machine, "q35") == 0 ? "tpm-crb" : "tpm-tis");
	return (0);
}

/*
 * The guest agent's port, org.qemu.guest_agent.0, on the virtio-serial
 * bus (SPICE's, or one of its own). QEMU inherits the listening socket
 * qmpd bound in a directory only root can enter (vm-agent.c), so there
 * is no path the VM's user could replace, and qmpd connects again after
 * a restart of its own or when QEMU drops it (the guest closed the port).
 */
static int
vm_argv_agent(struct argv *a, const struct vm_def *def,
    const struct vm_runtime_paths *rt, char **cause)
{
	if (!def->agent)
		return (0);
	if (rt->agent_fd < 0) {
		xasprintf(cause, "VM %s has a guest agent port but no socket "
		    "for it", def->name);
		return (-1);
	}
	if (strcmp(def->display, "spice") != 0 && !def->clipboard) {
		argv_add(a, "-device");
		argv_add(a, "virtio-serial-pci,id=vser0");
	}
	argv_add(a, "-chardev");
	argv_add(a, "socket,id=qga0,fd=%d,server=on,wait=off", rt->agent_fd);
	argv_add(a, "-device");
	argv_add(a, "virtserialport,bus=vser0.0,chardev=qga0,"
	    "name=org.qemu.guest_agent.0");
	return (0);
}

char **
vm_argv_build(const struct vm_def *def, const struct vm_runtime_paths *rt,
    const char *qemu_binary, char **cause)
{
	struct argv	 a = { 0 };
	char		*e, *cpu;

	if (def->kernel == NULL && def->disk == NULL && rt->image == NULL) {
		xasprintf(cause, "VM %s has nothing to boot: give it a kernel "
		    "or a disk", def->name);
		return (NULL);
	}
	if (strcmp(def->display, "spice") == 0 && def->spice_port == 0) {
		xasprintf(cause, "VM %s has no SPICE port", def->name);
		return (NULL);
	}

	argv_add(&a, "%s", qemu_binary);
	argv_add(&a, "-name");
	argv_add(&a, "guest=%s,debug-threads=on", def->name);
	argv_add(&a, "-uuid");
	argv_add(&a, "%s", def->uuid);
	argv_add(&a, "-machine");
	argv_add(&a, "%s%s", def->machine, vm_argv_firmware_machine(def));
	argv_add(&a, "-accel");
	argv_add(&a, "%s", rt->accel);
	/*
	 * Only when asked: "host" is best on a real host, but a nested KVM
	 * such as kvm-pvm rejects some host MSRs. QEMU's default runs
	 * everywhere.
	 */
	if ((cpu = vm_argv_dev_cpu(def, rt->accel)) != NULL) {
		argv_add(&a, "-cpu");
		argv_add(&a, "%s", cpu);
		free(cpu);
	}
	argv_add(&a, "-m");
	/*
	 * Under TCG, RAM of whole 256 KiB words takes QEMU 7.2's fast path
	 * of the migration's dirty bitmap sync, which leaves TCG's TLB
	 * entries writable without marking their pages dirty again (fixed
	 * in QEMU 9.0: 03bfc2188f, "physmem: Fix migration dirty bitmap
	 * coherency with TCG memory access"): guest writes are lost on the
	 * way and the guest oopses on the target. One page more takes the
	 * page-by-page path, which re-arms the TLB (bench/migrate-README.md).
	 */
	if (strcmp(rt->accel, "tcg") == 0)
		argv_add(&a, "%lldK", (long long)def->memory * 1024 + 4);
	else
		argv_add(&a, "%d", def->memory);
	argv_add(&a, "-smp");
	argv_add(&a, "%d", def->vcpus);
	argv_add(&a, "-nodefaults");
	argv_add(&a, "-no-user-config");
	/* Paused until qmpd has configured it; stays up on guest power-off. */
	argv_add(&a, "-S");
	argv_add(&a, "-no-shutdown");
	/* A migration target: its state comes over QMP's migrate-incoming. */
	if (rt->incoming) {
		argv_add(&a, "-incoming");
		argv_add(&a, "defer");
	}
	argv_add(&a, "-sandbox");
	argv_add(&a, "on,obsolete=deny,elevateprivileges=deny,spawn=deny,"
	    "resourcecontrol=deny");
	if (vm_argv_firmware(&a, def, rt, cause) != 0) {
		vm_argv_free(a.v);
		return (NULL);
	}
	argv_add(&a, "-pidfile");
	argv_add(&a, "%s/qemu.pid", rt->dir);
	/* qmpd bound this socket; QEMU inherits the listening fd. */
	argv_add(&a, "-chardev");
	argv_add(&a, "socket,id=qmp,fd=%d,server=on,wait=off", rt->qmp_fd);
	argv_add(&a, "-mon");
	argv_add(&a, "chardev=qmp,mode=control");
	/* The serial console: a log file always, a socket for input. */
	argv_add(&a, "-chardev");
	argv_add(&a, "socket,id=serial0,path=%s/serial.sock,server=on,"
	    "wait=off,logfile=%s/serial.log,logappend=on", rt->dir, rt->dir);
	argv_add(&a, "-serial");
	argv_add(&a, "chardev:serial0");
	argv_add(&a, "-display");
	argv_add(&a, "none");
	/* A VNC server with no socket: the RDP gateway adds clients by fd. */
	argv_add(&a, "-vnc");
	argv_add(&a, "%s", vm_argv_dev_vnc(def));
	if (strcmp(def->display, "spice") == 0)
		vm_argv_spice(&a, def, rt);
	else
		vm_argv_dev_video(&a, def);
	vm_argv_dev_agentport(&a, def);
	argv_add(&a, "-device");
	argv_add(&a, "%s", vm_argv_dev_xhci(def));
	argv_add(&a, "-device");
	argv_add(&a, "usb-tablet,bus=usb0.0");
	vm_argv_dev_rest(&a, def);

	if (def->kernel != NULL) {
		argv_add(&a, "-kernel");
		argv_add(&a, "%s", def->kernel);
		if (def->initrd != NULL) {
			argv_add(&a, "-initrd");
			argv_add(&a, "%s", def->initrd);
		}
		if (def->append != NULL) {
			argv_add(&a, "-append");
			argv_add(&a, "%s", def->append);
		}
	}
	if (def->disk != NULL) {
		/*
		 * qmpd opened the file; QEMU, as the VM user, gets the fd
		 * through an fd set. Explicit nodes: QEMU never probes the
		 * format itself.
		 */
		e = argv_escape(def->disk);
		argv_add(&a, "-add-fd");
		argv_add(&a, "fd=%d,set=1,opaque=%s", rt->disk_fd, e);
		free(e);
		argv_add(&a, "-blockdev");
		argv_add(&a, "driver=file,filename=/dev/fdset/1,"
		    "node-name=disk0-file,discard=unmap");
		argv_add(&a, "-blockdev");
		argv_add(&a, "driver=%s,file=disk0-file,node-name=disk0,"
		    "discard=unmap", def->disk_format);
		argv_add(&a, "-device");
		argv_add(&a, "virtio-blk-pci,drive=disk0,id=vda,bootindex=1");
	}
	if (def->disk == NULL && rt->image != NULL && rt->image->n > 0)
		vm_argv_image(&a, rt->image);
	if (vm_argv_tpm(&a, def, rt, cause) != 0 ||
	    vm_argv_nics(&a, def, rt, cause) != 0 ||
	    vm_argv_agent(&a, def, rt, cause) != 0) {
		vm_argv_free(a.v);
		return (NULL);
	}
	/* A migration target: every device where the source has it. */
	if (rt->pins != NULL && vm_argv_pin(&a, rt->pins, cause) != 0) {
		vm_argv_free(a.v);
		return (NULL);
	}
	return (a.v);
}
