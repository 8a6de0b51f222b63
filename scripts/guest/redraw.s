/*
 * qdesk tiny guest: a 512-byte real-mode boot sector that redraws a
 * 1024x768x32 screen for ever (the RDP gateway's benchmark load).
 *
 * Why: the Linux test guest has no framebuffer driver that QEMU's VGA can
 * drive at 1024x768, and a benchmark wants every frame to be full-screen
 * damage.  This sector prints "QDESK REDRAW UP\r\n" on COM1, sets
 * 1024x768x32 through the Bochs VBE "dispi" registers (index port 0x1ce,
 * data port 0x1cf; QEMU's std VGA and qxl-vga have them), without the
 * linear framebuffer bit, so the 3 MiB screen is written through the
 * 64 KiB window at a000:0000, one bank (VBE_DISPI_INDEX_BANK) at a time:
 * 48 banks per frame.  Every frame changes every pixel: pixel k of a bank
 * is colour + k (blue/green ramps 16 rows high), and colour moves on by
 * 0x00050301 each frame.  Frame n also goes to COM1 as one '.' every 64
 * frames, so a log shows that it runs.
 *
 * Assemble: as --32 -I scripts/guest ; ld -m elf_i386 -Ttext 0x7c00
 * --oformat binary -e _start (scripts/mkguest, like bootsect.s).
 */
	.code16
	.text
	.globl _start

	.set	DISPI_INDEX, 0x1ce
	.set	DISPI_DATA, 0x1cf
	.set	DISPI_XRES, 1
	.set	DISPI_YRES, 2
	.set	DISPI_BPP, 3
	.set	DISPI_ENABLE, 4
	.set	DISPI_BANK, 5
	.set	BANKS, 1024 * 768 * 4 / 65536

_start:
	.include "start16.inc"

	mov	$msg, %si
next:
	lodsb
	test	%al, %al
	jz	mode
	call	putc
	jmp	next

mode:
	/* Disable, set the geometry, enable (banked: no LFB bit 0x40). */
	mov	$DISPI_ENABLE, %ax
	xor	%bx, %bx
	call	dispi
	mov	$DISPI_XRES, %ax
	mov	$1024, %bx
	call	dispi
	mov	$DISPI_YRES, %ax
	mov	$768, %bx
	call	dispi
	mov	$DISPI_BPP, %ax
	mov	$32, %bx
	call	dispi
	mov	$DISPI_ENABLE, %ax
	mov	$1, %bx
	call	dispi

	mov	$0xa000, %ax
	mov	%ax, %es
	xor	%ecx, %ecx		/* colour of this frame */
	xor	%bp, %bp		/* frame counter */
frame:
	add	$0x00050301, %ecx
	xor	%bx, %bx		/* bank */
bank:
	mov	$DISPI_BANK, %ax
	call	dispi			/* window a000:0000 = bank %bx */
	xor	%di, %di
	mov	%ecx, %eax
	mov	$16384, %si		/* 64 KiB of 32-bit pixels */
pixel:
	stosl
	inc	%eax
	dec	%si
	jnz	pixel
	inc	%bx
	cmp	$BANKS, %bx
	jb	bank
	inc	%bp
	test	$63, %bp
	jnz	frame
	mov	$'.', %al
	call	putc
	jmp	frame

/* dispi: register %ax = %bx. */
dispi:
	mov	$DISPI_INDEX, %dx
	out	%ax, %dx
	inc	%dx
	mov	%bx, %ax
	out	%ax, %dx
	ret

/* putc: %al to COM1, polling the LSR so no byte is lost. */
putc:
	push	%ax
	mov	$0x3fd, %dx		/* LSR */
1:
	in	%dx, %al
	test	$0x20, %al		/* THR empty? */
	jz	1b
	pop	%ax
	mov	$0x3f8, %dx
	out	%al, %dx
	ret

msg:	.asciz	"QDESK REDRAW UP\r\n"

	.org	510
	.word	0xaa55			/* BIOS boot signature */
