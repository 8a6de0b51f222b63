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
 * The video adapter, id video0. Several heads on qxl: one qxl-vga with
 * max_outputs (Linux's qxl DRM driver drives them all).
 */
void
vm_argv_dev_video(struct argv *a, const struct vm_def *def)
{
	int	mb;

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
	if (def->heads == 1) {
		vm_argv_add(a, "qxl-vga,id=video0");
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
 * Sound, USB redirection and the balloon, after the USB tablet. Sound:
 * an ICH9 HDA controller with a duplex codec (line out and mic in) on
 * the SPICE audio backend, the viewer's playback and record channels.
 * Each usbredir chardev is one SPICE usbredir channel, its usb-redir
 * device plugged into usb0 when the viewer redirects a device. The
 * balloon reports free pages, so memory the guest frees goes back.
 */
void
vm_argv_dev_rest(struct argv *a, const struct vm_def *def)
{
	int	i;

	if (def->audio) {
		vm_argv_add(a, "-audiodev");
		vm_argv_add(a, "spice,id=audio0");
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
}
