/*
 * qdesk tiny guest: a 512-byte boot sector that keeps dirtying its RAM
 * at a fixed rate and checks every page before it rewrites it (issue
 * 14's "busy guest" for live-migration benchmarks under this machine's
 * KVM, where a Linux guest does not run and TCG corrupts a busy one).
 *
 * It enters 32-bit protected mode (flat segments) and rewrites the RAM
 * from 16 MiB up, REGION MiB at most, and never the top 4 MiB of RAM
 * (CMOS 0x34/0x35): SeaBIOS keeps its tables and the virtio-blk ring it
 * booted from there, and a clobbered ring fails the migration ("VQ 0
 * size 0x100 < last_avail_idx") or makes the target's virtio-blk run
 * garbage requests that write into the guest. Page after page for
 * ever: in pass p, page i gets i + (p + 1) * M in its first and its
 * last dword, after a check that both still hold the previous pass's
 * value. One dword dirties the whole
 * page for the migration (its unit is the page), and a page whose last
 * update did not reach the target is stale at both ends: the next pass
 * finds it. The first bad page prints "CORRUPT" on COM1; every counter
 * line carries the count.
 *
 * Time: the PIT's channel 0 is set to 20 Hz (mode 2, 1193182 / 59659);
 * its IRQ0 (vector 8, where the BIOS left the PIC) is a tick. Each tick
 * the guest rewrites RATE pages, then halts until the next one, so the
 * dirtying rate is the image's, unless the host cannot keep up (the
 * counter lines tell: ticks then come late). Every tick prints
 * "CTR tick pass page bad\r\n" (hex) on COM1, the 50 ms serial counter
 * bench/migrate.sh follows across a migration.
 *
 * This machine's /dev/kvm is kvm_pvm (software nested virtualization):
 * it runs only PVM-aware 64-bit kernels natively and emulates anything
 * else instruction by instruction, this sector included: it manages
 * about 27000 pages (100 MiB) per second at most.
 *
 * Assemble: as --32 [--defsym RATE=PAGES_PER_TICK] [--defsym REGION=MIB]
 * ; ld -m elf_i386 -Ttext 0x7c00 --oformat binary -e _start
 * (scripts/mkguest, like bootsect.s).
 */
	.code16
	.text
	.globl _start

	.ifndef RATE
	.set	RATE, 102		/* pages per 50 ms: 8 MiB/s */
	.endif
	.ifndef REGION
	.set	REGION, 64		/* MiB rewritten, at most */
	.endif
	.set	BASE, 0x1000000		/* the region starts at 16 MiB */
	.set	M, 0x01000193		/* pass step of the page pattern */
	.set	PIT_DIV, 59659		/* 1193182 Hz / 20 */

_start:
	cli
	cld
	xor	%ax, %ax
	mov	%ax, %ds
	mov	%ax, %ss
	mov	$0x7c00, %sp
	ljmp	$0, $1f			/* BIOSes may enter at 07c0:0000: fix CS */
1:
	/* COM1 and A20: QEMU's UART needs no set-up, SeaBIOS left A20 on. */
	lgdt	gdtr
	mov	%cr0, %eax
	or	$1, %al			/* PE */
	mov	%eax, %cr0
	ljmp	$0x08, $pm

	.code32
pm:
	mov	$0x10, %ax
	mov	%ax, %ds
	mov	%ax, %es
	mov	%ax, %ss
	mov	$0x7c00, %esp
	lidt	idtr

	mov	$0x34, %al		/* PIT ch0: lo/hi byte, mode 2, binary */
	out	%al, $0x43
	mov	$(PIT_DIV & 0xff), %al
	out	%al, $0x40
	mov	$(PIT_DIV >> 8), %al
	out	%al, $0x40
	mov	$0xfe, %al		/* only IRQ0 */
	out	%al, $0x21
	mov	$0xff, %al
	out	%al, $0xa1

	mov	$0x35, %al		/* RAM above 16 MiB, in 64 KiB */
	out	%al, $0x70
	in	$0x71, %al
	mov	%al, %ah
	mov	$0x34, %al
	out	%al, $0x70
	in	$0x71, %al
	movzwl	%ax, %eax
	shl	$4, %eax		/* in pages */
	sub	$1024, %eax		/* not the top 4 MiB: SeaBIOS keeps its ring there */
	cmp	$(REGION << 8), %eax
	jbe	1f
	mov	$(REGION << 8), %eax	/* at most REGION MiB */
1:
	mov	%eax, npages

	mov	$up, %esi
	call	puts
	mov	npages, %eax
	call	hex
	call	crlf

	xor	%ebx, %ebx		/* page */
	xor	%ebp, %ebp		/* pass */
	mov	%ebx, ticks
	mov	%ebx, bad
	mov	$RATE, %esi		/* pages left in this tick */
/* The loop runs with interrupts off but at two points, where all its
 * state is in %ebx, %ebp and %esi: there irq0 may take over. */
work:
	sti
	nop				/* sti's shadow ends: IRQ0 comes here */
	cli
	test	%esi, %esi
	jz	idle
	call	page
	dec	%esi
	jmp	work
idle:
	sti
	hlt				/* or here, until the next tick */
	jmp	work

/* page: check page %ebx against pass %ebp - 1, rewrite it, move on. */
page:
	mov	%ebx, %edi
	shl	$12, %edi
	add	$BASE, %edi
	imul	$M, %ebp, %eax
	add	%ebx, %eax		/* the previous pass's value */
	test	%ebp, %ebp
	jz	write			/* pass 0: nothing written yet */
	cmp	%eax, (%edi)
	jne	1f
	cmp	%eax, 4092(%edi)
	je	write
1:
	cmpl	$0, bad
	jne	2f			/* say it once; the count goes on */
	push	%esi
	mov	$corrupt, %esi
	call	puts
	pop	%esi
2:
	incl	bad
write:
	add	$M, %eax
	mov	%eax, (%edi)
	mov	%eax, 4092(%edi)
	inc	%ebx
	cmp	npages, %ebx
	jb	1f
	xor	%ebx, %ebx
	inc	%ebp
1:
	ret

/*
 * IRQ0, from work's nop or hlt: a tick. It drops its frame and goes
 * back to work instead of returning: this machine's nested KVM cannot
 * emulate a protected-mode iret ("KVM internal error. Suberror: 1"),
 * and work needs nothing from the frame.
 */
irq0:
	add	$12, %esp		/* eip, cs, eflags */
	incl	ticks
	mov	$0x20, %al		/* EOI */
	out	%al, $0x20
	mov	$ctr, %esi
	call	puts
	mov	ticks, %eax
	call	hex
	mov	%ebp, %eax
	call	hex
	mov	%ebx, %eax
	call	hex
	mov	bad, %eax
	call	hex
	call	crlf
	mov	$RATE, %esi
	jmp	work

/* hex: " %08x" of %eax. */
hex:
	mov	%eax, %edi
	mov	$' ', %al
	call	putc
	mov	$8, %ecx
1:
	rol	$4, %edi
	mov	%edi, %eax
	and	$15, %al
	add	$'0', %al
	cmp	$'9', %al
	jbe	2f
	add	$7, %al
2:
	call	putc
	loop	1b
	ret

crlf:
	mov	$nl, %esi
/* puts: the string at %esi. */
puts:
	lodsb
	test	%al, %al
	jz	1f
	call	putc
	jmp	puts
1:
	ret

/* putc: %al to COM1, polling the LSR so no byte is lost. */
putc:
	mov	%al, %ah
	mov	$0x3fd, %dx
1:
	in	%dx, %al
	test	$0x20, %al		/* THR empty? */
	jz	1b
	mov	%ah, %al
	mov	$0x3f8, %dx
	out	%al, %dx
	ret

	.p2align 3
gdt:
	.quad	0
	.quad	0x00cf9a000000ffff	/* 0x08: code, flat 4 GiB */
	.quad	0x00cf92000000ffff	/* 0x10: data, flat 4 GiB */
gdtr:
	.word	gdtr - gdt - 1
	.long	gdt
/* Vector 8 only (IRQ0 as the BIOS mapped the PIC): the IDT's base is
 * 64 bytes before this gate, vectors 0-7 are never raised. */
gate8:
	.word	irq0, 0x08, 0x8e00, 0
idtr:
	.word	9 * 8 - 1
	.long	gate8 - 64

up:	.asciz	"QDESK BUSY UP"
ctr:	.asciz	"CTR"
corrupt: .asciz	"CORRUPT\r\n"
nl:	.asciz	"\r\n"

	.org	510
	.word	0xaa55			/* BIOS boot signature */

	/* Variables past the sector (set to 0 before the loop). */
	.set	ticks, 0x7e00
	.set	bad, 0x7e04
	.set	npages, 0x7e08
