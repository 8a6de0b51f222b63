/*
 * qdesk tiny guest: the boot sector of video-kvm.img, which loads the
 * freestanding 64-bit program video-kvm.c from the sectors after it and
 * enters it in long mode.
 *
 * Why: video.img is a Linux guest, and Linux guests need TCG here, where
 * a loaded machine paints its 1920x1080 picture at ~3 frames/s: the
 * guest, not the transport, was the bottleneck. A non-Linux guest runs
 * under KVM, so the RDP gateway and SPICE can be measured against a
 * guest that really draws 30 frames/s. This machine's KVM is kvm_pvm,
 * which runs only paged 64-bit ring-3 code natively and emulates the
 * rest instruction by instruction (a 32-bit protected-mode first version
 * never finished building its scene): hence long mode, and video-kvm.c
 * paints in ring 3 (segments 0x40/0x48 below).
 *
 * It reads SECTORS sectors (--defsym SECTORS=n, at most 127: one int 13h
 * extended read into one 64 KiB segment) from LBA 1 to 0x10000, opens
 * A20 (port 0x92), enters 32-bit protected mode, identity-maps the first
 * 4 GiB with 2 MiB pages (user-accessible) at 0x70000, turns on PAE,
 * EFER.LME and paging, loads a task register (a TSS at 0x500 whose RSP0
 * video-kvm.c fills: ring 3's interrupts need a ring-0 stack) and jumps
 * to 0x10000 in 64-bit mode, stack at 0x90000, interrupts off. A failed
 * read prints "QDESK VIDEO FAILED: disk read" on COM1 and halts.
 *
 * Assemble: as --32 --defsym SECTORS=n; ld -m elf_i386 -Ttext 0x7c00
 * --oformat binary -e _start (scripts/mkguest).
 */
	.code16
	.text
	.globl _start

	.set	LOAD_SEG, 0x1000	/* 0x1000:0000 = 0x10000 */
	.set	ENTRY, 0x10000
	.set	PML4, 0x70000		/* page tables: 0x70000-0x75fff */

_start:
	cli
	xor	%ax, %ax
	mov	%ax, %ds
	mov	%ax, %es
	mov	%ax, %ss
	mov	$0x7c00, %sp
	ljmp	$0, $1f			/* BIOSes may enter at 07c0:0000: fix CS */
1:
	/* int 13h AH=42h: DL is still the boot drive the BIOS gave us. */
	mov	$dap, %si
	mov	$0x42, %ah
	int	$0x13
	jc	failed

	in	$0x92, %al		/* fast A20 */
	or	$2, %al
	and	$0xfe, %al		/* bit 0 would reset the machine */
	out	%al, $0x92

	lgdt	gdtr
	mov	%cr0, %eax
	or	$1, %eax
	mov	%eax, %cr0
	ljmp	$0x08, $pm32

failed:
	mov	$msg, %si
2:
	lodsb
	test	%al, %al
	jz	3f
	mov	$0x3f8, %dx		/* SeaBIOS left COM1 usable; no LSR wait */
	out	%al, %dx
	jmp	2b
3:
	hlt
	jmp	3b

	.code32
pm32:
	mov	$0x10, %ax
	mov	%ax, %ds
	mov	%ax, %es
	mov	%ax, %ss
	mov	$0x90000, %esp
	/* Identity map of the first 4 GiB in 2 MiB pages at 0x70000. */
	mov	$PML4, %edi
	xor	%eax, %eax
	mov	$6 * 1024, %ecx		/* PML4, PDPT, 4 page directories */
	rep	stosl
	movl	$PML4 + 0x1007, PML4	/* present, writable, user */
	mov	$PML4 + 0x1000, %edi
	mov	$PML4 + 0x2007, %eax
	mov	$4, %ecx
1:
	mov	%eax, (%edi)
	add	$0x1000, %eax
	add	$8, %edi
	loop	1b
	mov	$PML4 + 0x2000, %edi
	mov	$0x87, %eax		/* present, writable, user, 2 MiB */
	mov	$4 * 512, %ecx
2:
	mov	%eax, (%edi)
	add	$0x200000, %eax
	add	$8, %edi
	loop	2b
	mov	%cr4, %eax
	or	$0x20, %eax		/* PAE */
	mov	%eax, %cr4
	mov	$PML4, %eax
	mov	%eax, %cr3
	mov	$0xc0000080, %ecx	/* EFER.LME */
	rdmsr
	or	$0x100, %eax
	wrmsr
	mov	%cr0, %eax
	or	$0x80000002, %eax	/* PG, MP */
	mov	%eax, %cr0
	ljmp	$0x18, $lm64

	.code64
lm64:
	mov	$0x28, %ax
	ltr	%ax
	mov	$ENTRY, %eax
	jmp	*%rax

	.p2align 3
gdt:
	.quad	0			/* null */
	.quad	0x00cf9a000000ffff	/* 0x08: code, flat 4 GiB, 32-bit */
	.quad	0x00cf92000000ffff	/* 0x10: data, flat 4 GiB */
	/* From here in the order syscall and sysret want (STAR). */
	.quad	0x00af9a000000ffff	/* 0x18: code, 64-bit */
	.quad	0x00cf92000000ffff	/* 0x20: data */
	.quad	0x0000890005000067	/* 0x28: 64-bit TSS at 0x500 (above), */
	.quad	0			/* 16 bytes in long mode */
	.quad	0			/* 0x38: (32-bit ring 3 code: none) */
	.quad	0x00cff2000000ffff	/* 0x40: data, ring 3 */
	.quad	0x00affa000000ffff	/* 0x48: code, 64-bit, ring 3 */
gdtr:
	.word	gdtr - gdt - 1
	.long	gdt

dap:
	.byte	16, 0			/* size, reserved */
	.word	SECTORS			/* count */
	.word	0, LOAD_SEG		/* buffer offset, segment */
	.quad	1			/* first LBA: the sector after this */

msg:	.asciz	"QDESK VIDEO FAILED: disk read\r\n"

	.org	510
	.word	0xaa55			/* BIOS boot signature */
