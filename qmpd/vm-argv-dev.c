/*
 * The desktop devices on the QEMU command line (issue 11): the display
 * adapter sized for its heads, HDA sound on SPICE's audio backend, SPICE
 * USB redirection on the xHCI controller, the memory balloon. Pure, like
 * vm-argv.c, and pinned by the same golden files.
 */
#include <stdio.h>
#include <string.h>

#include "compat.h"
#include "vm.h"
#include "xmalloc.h"

/*
 * Windows' Hyper-V enlightenments, as Proxmox's and libvirt's Windows
 * profiles list them: QEMU implements them on KVM only (it refuses
 * hv_vpindex and hv_synic under TCG).
 */
#define VM_ARGV_DEV_HV \
	"hv_relaxed,hv_vapic,hv_spinlocks=0x1fff,hv_vpindex,hv_runtime," \
	"hv_synic,hv_stimer,hv_time,hv_frequencies,hv_reset"

/* One head of 1920x1200 at 32 bits, in bytes. */
#define VM_ARGV_DEV_HEAD	(1920 * 1200 * 4)

/*
 * QXL's VGA memory (vgamem_mb) holds the primary surface of every head:
 * the power of two of MiB that fits heads 1920x1200 screens (QEMU's
 * default, 16, fits one). The device RAM must be at least twice it.
 */
static int
vm_argv_dev_vgamem(int heads)
{
	int	mb = 16;

	while ((long long)mb * 1024 * 1024 < (long long)heads *
	    VM_ARGV_DEV_HEAD)
		mb *= 2;
	return (mb);
}

/*
 * The -cpu value, or NULL for QEMU's default. Windows guests get the
 * Hyper-V flags on the CPU model asked for (host by default on KVM; under
 * TCG, max, so Windows 11 finds the x86-64-v2 instructions it needs).
 */
char *
vm_argv_dev_cpu(const struct vm_def *def, const char *accel)
{
	char	*s;

	if (!vm_def_dev_windows(def))
		return (def->cpu[0] != '\0' ? xstrdup(def->cpu) : NULL);
	if (strcmp(accel, "kvm") != 0)
		return (xstrdup(def->cpu[0] != '\0' ? def->cpu : "max"));
	xasprintf(&s, "%s,%s", def->cpu[0] != '\0' ? def->cpu : "host",
	    VM_ARGV_DEV_HV);
	return (s);
}

/*
 * The video adapter, id video0. Several heads on qxl: one qxl-vga with
 * max_outputs (Linux's qxl DRM driver drives them all), or, for Windows
 * guests, one qxl device per head, as Proxmox and oVirt give them (the
 * Windows QXL driver drives one head per device).
 */
void
vm_argv_dev_video(struct argv *a, const struct vm_def *def)
{
	int	i, mb;

	vm_argv_add(a, "-device");
	if (strcmp(def->video, "vga") == 0) {
		vm_argv_add(a, "VGA,id=video0");
		return;
	}
	if (strcmp(def->video, "virtio") == 0) {
		if (def->heads > 1)
			vm_argv_add(a, "virtio-vga,id=video0,max_outputs=%d",
			    def->heads);
		else
			vm_argv_add(a, "virtio-vga,id=video0");
		return;
	}
	if (def->heads == 1 || vm_def_dev_windows(def)) {
		vm_argv_add(a, "qxl-vga,id=video0");
		for (i = 1; i < def->heads; i++) {
			vm_argv_add(a, "-device");
			vm_argv_add(a, "qxl,id=video%d,ram_size_mb=64,"
			    "vram_size_mb=32", i);
		}
		return;
	}
	mb = vm_argv_dev_vgamem(def->heads);
	vm_argv_add(a, "qxl-vga,id=video0,max_outputs=%d,vgamem_mb=%d,"
	    "ram_size_mb=%d", def->heads, mb, mb * 2 > 64 ? mb * 2 : 64);
}

/*
 * The xHCI controller: QEMU's default 4 USB 2 ports hold the tablet and
 * three more; with redirection channels, every port xHCI can have.
 */
const char *
vm_argv_dev_xhci(const struct vm_def *def)
{
	if (def->usbredir > 0)
		return ("qemu-xhci,id=usb0,p2=15,p3=15");
	return ("qemu-xhci,id=usb0");
}

/*
 * The agent port com.redhat.spice.0 on virtio-serial bus vser0, where the
 * guest's spice-vdagent looks for its peer. Without clipboard: SPICE's
 * agent channel (spicevmc), for the viewer. With it: QEMU's own agent
 * peer, qemu-vdagent with clipboard=on, which puts the guest's clipboard
 * in QEMU's, the one QEMU's VNC server shares with the RDP gateway and
 * the browser console (SPICE viewers then lose the agent). mouse=off:
 * the USB tablet already gives absolute positions.
 */
void
vm_argv_dev_agentport(struct argv *a, const struct vm_def *def)
{
	if (strcmp(def->display, "spice") != 0 && !def->clipboard)
		return;
	vm_argv_add(a, "-device");
	vm_argv_add(a, "virtio-serial-pci,id=vser0");
	vm_argv_add(a, "-chardev");
	if (def->clipboard)
		vm_argv_add(a, "qemu-vdagent,id=vdagent,name=vdagent,"
		    "clipboard=on,mouse=off");
	else
		vm_argv_add(a, "spicevmc,id=vdagent,name=vdagent");
	vm_argv_add(a, "-device");
	vm_argv_add(a, "virtserialport,bus=vser0.0,chardev=vdagent,"
	    "name=com.redhat.spice.0");
}

/*
 * -vnc: no socket (the RDP gateway adds clients by fd); with sound, the
 * VNC server captures audio0, the guest's output, for the clients that
 * ask (QEMU's audio pseudo-encoding: the gateway's rdpsnd).
 */
const char *
vm_argv_dev_vnc(const struct vm_def *def)
{
	return (def->audio ? "none,audiodev=audio0" : "none");
}

/*
 * Sound, USB redirection and the balloon, after the USB tablet. Sound:
 * an ICH9 HDA controller with a duplex codec (line out and mic in) on
 * the SPICE audio backend (the viewer's playback and record channels),
 * or without SPICE on the none backend, which only paces the guest's
 * output for the VNC server's capture (vm_argv_dev_vnc).
 * Each usbredir chardev is one SPICE usbredir channel, its usb-redir
 * device plugged into usb0 when the viewer redirects a device. The
 * balloon reports free pages, so memory the guest frees goes back.
 * Windows keeps its clock in local time.
 */
void
vm_argv_dev_rest(struct argv *a, const struct vm_def *def)
{
	int	i;

	if (def->audio) {
		vm_argv_add(a, "-audiodev");
		vm_argv_add(a, "%s,id=audio0", strcmp(def->display,
		    "spice") == 0 ? "spice" : "none");
		vm_argv_add(a, "-device");
		vm_argv_add(a, "ich9-intel-hda,id=sound0");
		vm_argv_add(a, "-device");
		vm_argv_add(a, "hda-duplex,id=sound0-codec0,bus=sound0.0,"
		    "cad=0,audiodev=audio0");
	}
	for (i = 0; i < def->usbredir; i++) {
		vm_argv_add(a, "-chardev");
		vm_argv_add(a, "spicevmc,id=usbredir%d,name=usbredir", i);
		vm_argv_add(a, "-device");
		vm_argv_add(a, "usb-redir,chardev=usbredir%d,id=usbredir%d-dev,"
		    "bus=usb0.0", i, i);
	}
	if (def->balloon) {
		vm_argv_add(a, "-device");
		vm_argv_add(a, "virtio-balloon-pci,id=balloon0,"
		    "free-page-reporting=on");
	}
	if (vm_def_dev_windows(def)) {
		vm_argv_add(a, "-rtc");
		vm_argv_add(a, "base=localtime");
	}
}
