/*
 * video-kvm: video.img's picture without Linux, for a guest that KVM runs
 * at full speed (issue 12's 1080p frame-rate target: under TCG the Linux
 * video guest paints ~3 frames/s at 1920x1080, so the transport was never
 * what was measured).
 *
 * The scene is video.c's: both include video-scene.h (the same xorshift
 * seed, fractal terrain coloured by height and lit by its slope, grain, a
 * cloud layer drifting against the camera's glide), so the content
 * entropy is the same frame for frame and codec figures on this guest and
 * on video.img compare. Time is the PIT's: motion follows the clock, and
 * a frame is drawn at each 30 Hz tick, the CPU halted in between (a busy
 * guest would take a core from the transport it is there to measure).
 *
 * Freestanding 64-bit code, loaded at 0x10000 by video-kvm.s, entered in
 * long mode (the first 4 GiB identity-mapped) with interrupts off. This
 * machine's KVM (kvm_pvm) runs paged 64-bit ring-3 code natively and
 * emulates everything else instruction by instruction, so ring 0 only
 * sets up (mode, IDT, PIT) and handles the tick and two calls, and the
 * scene is built and painted in ring 3 (video_run). It sets the Bochs VBE
 * mode through the DISPI ports (0x1ce/0x1cf) with the linear framebuffer, whose
 * address is BAR0 of the first PCI VGA device (std VGA, qxl-vga), and
 * prints on COM1 "QDESK VIDEO UP WxH ..." once the first frame is drawn,
 * then "QDESK VIDEO FPS=N frames=M" every second.
 *
 * Built by scripts/mkguest: gcc -m64 -mno-red-zone -ffreestanding -O2
 * -DVIDEO_WIDTH=W -DVIDEO_HEIGHT=H, linked with video-kvm.ld.
 */

#include <stdint.h>

#ifndef VIDEO_WIDTH
#define VIDEO_WIDTH	1920
#endif
#ifndef VIDEO_HEIGHT
#define VIDEO_HEIGHT	1080
#endif
#define VIDEO_FPS	30
#define VIDEO_PIT_HZ	1193182

#define DISPI_INDEX	0x1ce
#define DISPI_DATA	0x1cf
#define DISPI_XRES	1
#define DISPI_YRES	2
#define DISPI_BPP	3
#define DISPI_ENABLE	4
#define DISPI_ENABLED	0x01
#define DISPI_LFB	0x40
#define VIDEO_LFB_DEFAULT 0xe0000000u		/* isa-vga's fixed address */

#define COM1		0x3f8

/*
 * Ring 3 (see video_start): kvm_pvm runs it natively; ring 0 code, as
 * the first version of this program was, it emulates instruction by
 * instruction. Ring 0 keeps the interrupts and the halt.
 */
#define VIDEO_STACK0	0x6f000		/* below the page tables */
#define VIDEO_STACK3	0x8f000
#define VIDEO_USER_CS	0x4b		/* video-kvm.s's GDT, RPL 3 */
#define VIDEO_USER_SS	0x43
#define VIDEO_RFLAGS	0x0202		/* IF; kvm_pvm ignores IOPL */

extern char	video_bss_start[], video_bss_end[];
extern volatile uint64_t video_tss_rsp0;	/* video-kvm.ld */

static uint32_t	*video_pixels;		/* the linear framebuffer */
static uintptr_t video_heap = 0x100000;		/* past the first MiB */
static uint64_t	 video_idt[2 * 256];	/* 16-byte gates */
volatile uint32_t video_ticks;

void	video_start(void) __attribute__((section(".text.entry"), noreturn));
void	video_irq0(void);
void	video_trap(void);
void	video_fault(void);
static void	video_run(void) __attribute__((noreturn));

/*
 * The interrupt entries: IRQ 0 (the PIT, remapped to vector 0x20) counts
 * a tick and acknowledges the PIC; every other vector is a fault here
 * (the other IRQs are masked), which is reported once and stops the CPU.
 */
__asm__(
	".text\n"
	".globl video_irq0\n"
	"video_irq0:\n"
	"	pushq %rax\n"
	"	incl video_ticks(%rip)\n"
	"	movb $0x20, %al\n"
	"	outb %al, $0x20\n"
	"	popq %rax\n"
	"	iretq\n"
	".globl video_trap\n"
	"video_trap:\n"		/* ud2 from ring 3, interrupts off */
	"	addq $2, (%rsp)\n"		/* return past the ud2 */
	"	cmpl $1, %eax\n"
	"	jne 2f\n"
	"1:	cmpl %edi, video_ticks(%rip)\n"	/* 1: wait for a tick */
	"	jne 3f\n"			/*    other than %edi */
	"	sti\n"			/* hlt runs before the tick can land */
	"	hlt\n"
	"	cli\n"
	"	jmp 1b\n"
	"2:	cmpl $2, %eax\n"		/* 2: COM1 <- string at %rdi */
	"	jne video_fault\n"		/* a real ud2: a bug */
	"	call video_puts\n"
	"3:	iretq\n"
	".globl video_fault\n"
	"video_fault:\n"
	"	cli\n"
	"	movq %rsp, %rdi\n"
	"	call video_fault_report\n"
	"1:	hlt\n"
	"	jmp 1b\n");

/*
 * outb/inb, outw/inw, outl/inl: one port access of each width, the
 * instruction's suffix and the value's type the only difference.
 */
#define VIDEO_PORT_IO(suffix, type)					\
static inline void							\
out##suffix(uint16_t port, type v)					\
{									\
	__asm__ volatile("out" #suffix " %0, %1" : : "a"(v), "Nd"(port)); \
}									\
static inline type							\
in##suffix(uint16_t port)						\
{									\
	type	v;							\
									\
	__asm__ volatile("in" #suffix " %1, %0" : "=a"(v) : "Nd"(port)); \
	return (v);							\
}
VIDEO_PORT_IO(b, uint8_t)
VIDEO_PORT_IO(w, uint16_t)
VIDEO_PORT_IO(l, uint32_t)

/* gcc may turn loops into these calls even in freestanding code. */
void *
memset(void *d, int c, unsigned int n)
{
	unsigned char	*p = d;

	while (n-- > 0)
		*p++ = (unsigned char)c;
	return (d);
}

void *
memcpy(void *d, const void *s, unsigned int n)
{
	unsigned char		*p = d;
	const unsigned char	*q = s;

	while (n-- > 0)
		*p++ = *q++;
	return (d);
}

/* The scene, here where the memset it uses is defined. */
#include "video-scene.h"

static void
video_putc(char c)
{
	while ((inb(COM1 + 5) & 0x20) == 0)	/* THR empty? */
		;
	outb(COM1, (uint8_t)c);
}

void __attribute__((used))
video_puts(const char *s)
{
	while (*s != '\0')
		video_putc(*s++);
}

/* A line for COM1, built in any ring. */
struct video_line {
	char		buf[160];
	unsigned int	n;
};

static void
video_add(struct video_line *l, const char *s)
{
	while (*s != '\0' && l->n < sizeof l->buf - 1)
		l->buf[l->n++] = *s++;
	l->buf[l->n] = '\0';
}

static void
video_addu(struct video_line *l, uint32_t v, unsigned int base)
{
	char		 buf[12];
	unsigned int	 i = 0;

	do {
		buf[i++] = "0123456789abcdef"[v % base];
		v /= base;
	} while (v != 0);
	while (i > 0 && l->n < sizeof l->buf - 1)
		l->buf[l->n++] = buf[--i];
	l->buf[l->n] = '\0';
}

/* The caller-saved registers, which video_trap may change. */
#define VIDEO_TRAP_CLOBBERS "rcx", "rdx", "rsi", "r8", "r9", "r10", \
	"r11", "memory"

/*
 * From ring 3, which may not touch ports here: ud2 traps to video_trap
 * in ring 0, which prints it. (kvm_pvm refused ring 3 in, out, cli,
 * sti and hlt, even with IOPL 3; int $n and syscall did not reach ring
 * 0 either; exceptions do.)
 */
static void
video_say(struct video_line *l)
{
	uint64_t	rax = 2, rdi = (uint64_t)(uintptr_t)l->buf;

	__asm__ volatile("ud2" : "+a"(rax), "+D"(rdi) : :
	    VIDEO_TRAP_CLOBBERS);
	l->n = 0;
}

/*
 * Called by video_fault with its stack: say so once, where a person reads
 * the log, with the frame the CPU pushed (error code if any, RIP, CS,
 * RFLAGS, RSP, SS).
 */
void __attribute__((used))
video_fault_report(const uint64_t *frame)
{
	struct video_line	l = { .n = 0 };
	unsigned int		i;

	video_add(&l, "QDESK VIDEO FAILED: CPU exception, frame");
	for (i = 0; i < 6; i++) {
		video_add(&l, " 0x");
		video_addu(&l, (uint32_t)frame[i], 16);
	}
	video_add(&l, "\r\n");
	video_puts(l.buf);
}

/*
 * The scene's allocator: a bump allocator over the memory past 1 MiB,
 * which frees by rewinding to p (the scene frees the newest block first).
 */
static void *
scene_alloc(uint32_t size)
{
	void	*p = (void *)video_heap;

	video_heap = (video_heap + size + 15) & ~(uintptr_t)15;
	return (p);
}

static void
scene_free(void *p)
{
	video_heap = (uintptr_t)p;
}

/*
 * sin of phase half-turns in 16.16 fixed point (0x10000 = pi), times
 * 65536: Bhaskara I's approximation, 16k / (5 - 4k) with k = x(pi - x) /
 * pi^2, within 0.2% of sin, which is plenty for a camera's path. Integer
 * only: the first FPU or SSE instruction stalled this machine's KVM
 * (kvm_pvm), so this program has no floating point at all.
 */
static int64_t
video_sin(uint64_t phase)
{
	uint64_t	u = phase & 0xffff, k = u * (65536 - u);
	int64_t		v;

	v = (int64_t)((16 * k << 16) / ((5ULL << 32) - 4 * k));
	return ((phase >> 16) & 1 ? -v : v);
}

/*
 * a * t + b * sin(t / w) in whole pixels, t = tick / 30 s: video.c's
 * camera glide (w = 1 / 0.3 s and 1 / 0.2 s; its cos is sin a quarter
 * turn on, quarter = 1).
 */
static uint32_t
video_glide(uint32_t tick, int64_t a, int64_t b, uint64_t w100, int quarter)
{
	uint64_t	phase;

	/* t / w radians in half-turns: tick * 100 / (30 w100 pi), 16.16. */
	phase = (uint64_t)tick * 100 * 65536 * 1000000 /
	    (VIDEO_FPS * w100 * 3141593) + (quarter ? 0x8000 : 0);
	return ((uint32_t)((a * tick * 65536 / VIDEO_FPS +
	    b * video_sin(phase)) >> 16));
}

/*
 * One frame of the scene at the clock's tick (video.c's camera glide and
 * cloud drift in seconds, in fixed point).
 */
static void
video_draw(uint32_t *pixels, uint32_t tick)
{
	struct scene_camera	camera;

	/* 70 t + 40 sin(0.3 t) and 25 t + 60 cos(0.2 t), as video.c. */
	camera.x = video_glide(tick, 70, 40, 333, 0);
	camera.y = video_glide(tick, 25, 60, 500, 1);
	camera.cloud_x = (uint32_t)-(int32_t)(tick * 45 / VIDEO_FPS) &
	    CLOUD_MASK;
	camera.cloud_y = (tick * 30 / VIDEO_FPS) & CLOUD_MASK;
	scene_paint(pixels, VIDEO_WIDTH, VIDEO_HEIGHT, VIDEO_WIDTH, &camera);
}

static uint32_t
video_pci_read(unsigned int dev, unsigned int reg)
{
	outl(0xcf8, 0x80000000u | dev << 11 | (reg & 0xfc));
	return (inl(0xcfc));
}

/*
 * The linear framebuffer: BAR0 of the first VGA-class device on bus 0,
 * where SeaBIOS put it (std VGA and qxl-vga keep their VRAM there), or
 * isa-vga's fixed address when there is none.
 */
static uint32_t
video_lfb(void)
{
	unsigned int	dev;
	uint32_t	cmd;

	for (dev = 0; dev < 32; dev++) {
		if ((video_pci_read(dev, 0x00) & 0xffff) == 0xffff)
			continue;
		if (video_pci_read(dev, 0x08) >> 16 != 0x0300)
			continue;
		cmd = video_pci_read(dev, 0x04);
		if ((cmd & 2) == 0) {		/* memory decoding off */
			outl(0xcf8, 0x80000000u | dev << 11 | 0x04);
			outl(0xcfc, cmd | 2);
		}
		return (video_pci_read(dev, 0x10) & ~0xfu);
	}
	return (VIDEO_LFB_DEFAULT);
}

static void
video_dispi(uint16_t reg, uint16_t v)
{
	outw(DISPI_INDEX, reg);
	outw(DISPI_DATA, v);
}

static uint16_t
video_dispi_get(uint16_t reg)
{
	outw(DISPI_INDEX, reg);
	return (inw(DISPI_DATA));
}

/*
 * A 64-bit interrupt gate to handler, in the code segment 0x18; user
 * set lets ring 3 raise it with int (DPL 3).
 */
static void
video_gate(unsigned int vector, void (*handler)(void), int user)
{
	uint64_t	off = (uint64_t)(uintptr_t)handler;

	video_idt[2 * vector] = (off & 0xffff) | (uint64_t)0x18 << 16 |
	    (uint64_t)(user ? 0xee00 : 0x8e00) << 32 |
	    ((off >> 16) & 0xffff) << 48;
	video_idt[2 * vector + 1] = off >> 32;
}

/*
 * The 30 Hz clock: the IDT, the PICs remapped to vectors 0x20-0x2f with
 * every IRQ but the PIT's masked, and PIT channel 0 in mode 2.
 */
static void
video_clock(void)
{
	struct {
		uint16_t	limit;
		uint64_t	base;
	} __attribute__((packed)) idtr;
	unsigned int	 i;
	uint16_t	 divisor = VIDEO_PIT_HZ / VIDEO_FPS;

	for (i = 0; i < 256; i++)
		video_gate(i, video_fault, 0);
	video_gate(0x20, video_irq0, 0);
	video_gate(6, video_trap, 0);		/* #UD: ring 3's calls */

	/* The TSS's RSP0 (video-kvm.s put it at 0x500): ring 0's stack. */
	video_tss_rsp0 = VIDEO_STACK0;
	idtr.limit = sizeof video_idt - 1;
	idtr.base = (uint64_t)(uintptr_t)video_idt;
	__asm__ volatile("lidt %0" : : "m"(idtr));

	outb(0x20, 0x11);			/* ICW1: edge, cascade, ICW4 */
	outb(0xa0, 0x11);
	outb(0x21, 0x20);			/* ICW2: vector bases */
	outb(0xa1, 0x28);
	outb(0x21, 0x04);			/* ICW3: slave on IRQ 2 */
	outb(0xa1, 0x02);
	outb(0x21, 0x01);			/* ICW4: 8086 mode */
	outb(0xa1, 0x01);
	outb(0x21, 0xfe);			/* only IRQ 0 */
	outb(0xa1, 0xff);

	outb(0x43, 0x34);			/* channel 0, lo/hi, mode 2 */
	outb(0x40, divisor & 0xff);
	outb(0x40, divisor >> 8);
}

/*
 * Wait for the tick after tick, from ring 3 (no cli, sti or hlt there):
 * video_trap, in ring 0, tests the tick with interrupts off and
 * halts with sti;hlt, so the tick cannot slip in between.
 */
static void
video_wait(uint32_t tick)
{
	uint64_t	rax = 1, rdi = tick;

	__asm__ volatile("ud2" : "+a"(rax), "+D"(rdi) : :
	    VIDEO_TRAP_CLOBBERS);
}

void
video_start(void)
{
	memset(video_bss_start, 0, (unsigned int)(video_bss_end -
	    video_bss_start));

	outb(COM1 + 1, 0x00);			/* no UART interrupts */
	outb(COM1 + 3, 0x80);			/* DLAB */
	outb(COM1 + 0, 0x01);			/* 115200 baud */
	outb(COM1 + 1, 0x00);
	outb(COM1 + 3, 0x03);			/* 8N1 */

	video_dispi(DISPI_ENABLE, 0);
	video_dispi(DISPI_XRES, VIDEO_WIDTH);
	video_dispi(DISPI_YRES, VIDEO_HEIGHT);
	video_dispi(DISPI_BPP, 32);
	video_dispi(DISPI_ENABLE, DISPI_ENABLED | DISPI_LFB);
	if (video_dispi_get(DISPI_XRES) != VIDEO_WIDTH ||
	    video_dispi_get(DISPI_YRES) != VIDEO_HEIGHT) {
		struct video_line	l = { .n = 0 };

		video_add(&l, "QDESK VIDEO FAILED: the VGA refused ");
		video_addu(&l, VIDEO_WIDTH, 10);
		video_add(&l, "x");
		video_addu(&l, VIDEO_HEIGHT, 10);
		video_add(&l, "x32 (too little VRAM?)\r\n");
		video_puts(l.buf);
		for (;;)
			__asm__ volatile("cli; hlt");
	}
	video_pixels = (uint32_t *)(uintptr_t)video_lfb();
	video_clock();

	/* To ring 3, interrupts on: iretq with a frame made for it. */
	__asm__ volatile("pushq %0\n\tpushq %1\n\tpushq %2\n\t"
	    "pushq %3\n\tpushq %4\n\tiretq" : :
	    "i"(VIDEO_USER_SS), "i"(VIDEO_STACK3), "i"(VIDEO_RFLAGS),
	    "i"(VIDEO_USER_CS), "r"((uint64_t)(uintptr_t)video_run));
	for (;;)
		;
}

/* Ring 3: build the scene and paint a frame at each tick, for ever. */
static void
video_run(void)
{
	struct video_line	 l = { .n = 0 };
	uint32_t		*pixels = video_pixels, tick, frames = 0;
	uint32_t		 total = 0, mark;

	scene_world();
	video_draw(pixels, 0);
	video_add(&l, "QDESK VIDEO UP ");
	video_addu(&l, VIDEO_WIDTH, 10);
	video_add(&l, "x");
	video_addu(&l, VIDEO_HEIGHT, 10);
	video_add(&l, " kvm lfb=0x");
	video_addu(&l, (uint32_t)(uintptr_t)pixels, 16);
	video_add(&l, " 30 fps\r\n");
	video_say(&l);

	/*
	 * A frame at each tick; a frame that takes longer than a tick is
	 * followed at once by the next one, drawn at the clock's time.
	 */
	mark = video_ticks;
	for (tick = video_ticks;; tick = video_ticks) {
		video_draw(pixels, tick);
		frames++;
		total++;
		if (tick - mark >= VIDEO_FPS) {
			video_add(&l, "QDESK VIDEO FPS=");
			video_addu(&l, frames * VIDEO_FPS / (tick - mark), 10);
			video_add(&l, " frames=");
			video_addu(&l, total, 10);
			video_add(&l, "\r\n");
			video_say(&l);
			mark = tick;
			frames = 0;
		}
		video_wait(tick);
	}
}
