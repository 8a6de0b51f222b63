/*
 * qdesk tiny guest: a 512-byte real-mode boot sector.
 *
 * Why: /dev/kvm on CI is a software nested KVM that cannot run a Linux
 * kernel, but runs real-mode code fine.  This sector gives KVM tests a guest
 * that boots in milliseconds and says so on COM1 and on the VGA text screen.
 *
 * It prints "QDESK TINY GUEST UP\r\n" on COM1 (0x3f8, polling the LSR so no
 * byte is lost) and writes the same text into VGA text memory (0xb8000) so a
 * screendump is not blank.  Built with --defsym EXIT=1, it then
 * writes 0x10 to isa-debug-exit (port 0xf4): QEMU exits with status
 * (0x10 << 1) | 1 = 33, which cannot be mistaken for QEMU's own error exit 1.
 * Without that device (or without EXIT) it halts forever.
 *
 * Assemble: as --32 -I scripts/guest [--defsym EXIT=1] ; ld -m elf_i386
 * -Ttext 0x7c00 --oformat binary -e _start.  No nasm needed.
 */
	.code16
	.text
	.globl _start
_start:
	.include "start16.inc"

	/* VGA: BIOS mode 3 clears the screen (a no-op iret without a VGA). */
	mov	$0x0003, %ax
	int	$0x10
	mov	$0xb800, %ax
	mov	%ax, %es
	xor	%di, %di		/* row 0, column 0 */

	mov	$msg, %si
next:
	lodsb
	test	%al, %al
	jz	done
	mov	%al, %bl		/* keep the char across the LSR poll */
	mov	$0x3fd, %dx		/* LSR */
wait_thre:
	in	%dx, %al
	test	$0x20, %al		/* THR empty? */
	jz	wait_thre
	mov	$0x3f8, %dx
	mov	%bl, %al
	out	%al, %dx
	cmp	$0x20, %al		/* CR/LF go to the UART only */
	jb	next
	mov	$0x1f, %ah		/* white on blue: obvious in a screenshot */
	stosw
	jmp	next
done:
.ifdef EXIT
	mov	$0xf4, %dx		/* isa-debug-exit,iobase=0xf4 */
	mov	$0x10, %al
	out	%al, %dx		/* QEMU exits with status 33 */
.endif
halt:
	cli
	hlt
	jmp	halt			/* NMIs/SMIs can wake hlt: stay halted */

msg:	.asciz	"QDESK TINY GUEST UP\r\n"

	.org	510
	.word	0xaa55			/* BIOS boot signature */
