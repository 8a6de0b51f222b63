/*
 * keylat: key press to pixel, measured on the client's own screen. A
 * remote desktop client (xfreerdp, remote-viewer) runs on an X server
 * (Xvfb); keylat types into it through XTEST, as a keyboard would, and
 * waits for the first pixel of the screen to change (XDAMAGE says where
 * the client drew, XGetImage says whether the pixels there really
 * changed). The time between is the key's latency: client, wire, gateway,
 * guest echo, wire back, client drawing.
 *
 *   keylat [--keys N] [--rate KEYS_PER_S] [--timeout MS] [--quiet MS]
 *       [--watch]
 *
 * Keys alternate 'x' and BackSpace, so that a shell's line never grows and
 * every key changes the screen. Before each key the screen must have been
 * still for --quiet ms (50), so a late update of the previous key is not
 * taken for this one's echo; a key with no change within --timeout ms
 * (2000) counts as lost. With --watch it types nothing and only watches
 * the screen for --keys / --rate seconds.
 *
 * Prints "frames F keys N echoed M p50 A p95 B max C ms" (or "frames F"
 * with --watch), a frame being a burst of screen changes with no gap over
 * KEYLAT_FRAME_GAP_MS inside. Exit 0, or 2 with a one-line reason.
 */
#include <sys/time.h>

#include <errno.h>
#include <getopt.h>
#include <poll.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <X11/Xlib.h>
#include <X11/Xutil.h>
#include <X11/keysym.h>
#include <X11/extensions/XTest.h>
#include <X11/extensions/Xdamage.h>

struct keylat {
	Display		*dpy;
	Window		 root;
	int		 damage_event;
	XImage		*shadow;	/* what the screen showed last */
	unsigned long	 frames;	/* bursts of changes */
	double		 last;		/* when pixels last changed */
};

#define KEYLAT_FRAME_GAP_MS	8	/* changes closer than this: one frame */

static void
keylat_exit(const char *fmt, const char *arg)
{
	fprintf(stderr, "keylat: ");
	fprintf(stderr, fmt, arg);
	fprintf(stderr, "\n");
	exit(2);
}

static double
keylat_now(void)
{
	struct timespec	ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (ts.tv_sec * 1e3 + ts.tv_nsec / 1e6);
}

static long
keylat_number(const char *s, long min, long max, const char *what)
{
	char	*end;
	long	 v;

	errno = 0;
	v = strtol(s, &end, 10);
	if (errno != 0 || *s == '\0' || *end != '\0' || v < min || v > max)
		keylat_exit("%s wants a whole number in range", what);
	return (v);
}

/*
 * Compare a damaged rectangle with the shadow and take it in; returns
 * whether any pixel differed.
 */
static int
keylat_take(struct keylat *kl, int x, int y, int w, int h)
{
	XImage	*img;
	int	 row, changed = 0, bpp;
	size_t	 len;
	char	*a, *b;

	/* The root window's damage is inside it; anything else is no pixel. */
	if (x < 0 || y < 0 || w <= 0 || h <= 0 ||
	    x + w > kl->shadow->width || y + h > kl->shadow->height)
		return (0);
	img = XGetImage(kl->dpy, kl->root, x, y, w, h, AllPlanes, ZPixmap);
	if (img == NULL)
		return (0);
	bpp = kl->shadow->bits_per_pixel / 8;
	len = (size_t)w * bpp;
	for (row = 0; row < h; row++) {
		a = kl->shadow->data + (size_t)(y + row) *
		    kl->shadow->bytes_per_line + (size_t)x * bpp;
		b = img->data + (size_t)row * img->bytes_per_line;
		if (memcmp(a, b, len) != 0) {
			memcpy(a, b, len);
			changed = 1;
		}
	}
	XDestroyImage(img);
	if (changed) {
		if (keylat_now() - kl->last > KEYLAT_FRAME_GAP_MS)
			kl->frames++;
		kl->last = keylat_now();
	}
	return (changed);
}

/*
 * Handle X events for up to ms milliseconds (0: what is queued). Returns
 * 1 as soon as a damaged rectangle's pixels changed when stop_on_change,
 * else 0 once the time is up.
 */
static int
keylat_events(struct keylat *kl, double ms, int stop_on_change)
{
	struct pollfd		 pfd = { ConnectionNumber(kl->dpy), POLLIN, 0 };
	XEvent			 ev;
	XDamageNotifyEvent	*dn;
	double			 end = keylat_now() + ms, left;
	int			 changed = 0;

	for (;;) {
		while (XPending(kl->dpy) > 0) {
			XNextEvent(kl->dpy, &ev);
			if (ev.type != kl->damage_event + XDamageNotify)
				continue;
			dn = (XDamageNotifyEvent *)&ev;
			if (keylat_take(kl, dn->area.x, dn->area.y,
			    dn->area.width, dn->area.height))
				changed = 1;
		}
		if (changed && stop_on_change)
			return (1);
		left = end - keylat_now();
		if (left <= 0)
			return (changed);
		if (poll(&pfd, 1, left < 1 ? 1 : (int)left) == -1 &&
		    errno != EINTR)
			keylat_exit("poll: %s", strerror(errno));
	}
}

/* Wait until the screen has been still for quiet ms (at most 10 s). */
static void
keylat_settle(struct keylat *kl, double quiet)
{
	double	end = keylat_now() + 10000;

	while (keylat_events(kl, quiet, 1) && keylat_now() < end)
		;
}

/* Give the largest top-level window the keyboard, the pointer over it. */
static void
keylat_focus(struct keylat *kl)
{
	Window			 r, p, *kids = NULL, best = None;
	unsigned int		 n, i;
	XWindowAttributes	 wa;
	long			 area, most = 0;
	int			 bx = 0, by = 0, bw = 0, bh = 0;

	if (!XQueryTree(kl->dpy, kl->root, &r, &p, &kids, &n))
		keylat_exit("%s", "cannot list the screen's windows");
	for (i = 0; i < n; i++) {
		if (!XGetWindowAttributes(kl->dpy, kids[i], &wa) ||
		    wa.map_state != IsViewable || wa.class != InputOutput)
			continue;
		area = (long)wa.width * wa.height;
		if (area > most) {
			most = area;
			best = kids[i];
			bx = wa.x;
			by = wa.y;
			bw = wa.width;
			bh = wa.height;
		}
	}
	XFree(kids);
	if (best == None)
		keylat_exit("%s", "no client window on the screen");
	XSetInputFocus(kl->dpy, best, RevertToPointerRoot, CurrentTime);
	XTestFakeMotionEvent(kl->dpy, -1, bx + bw / 2, by + bh / 2, 0);
	XSync(kl->dpy, False);
}

static int
keylat_cmp(const void *a, const void *b)
{
	double	x = *(const double *)a, y = *(const double *)b;

	return (x < y ? -1 : x > y);
}

static double
keylat_pct(const double *v, int n, double p)
{
	int	i = (int)(p * n + 0.999999) - 1;

	if (i < 0)
		i = 0;
	if (i >= n)
		i = n - 1;
	return (v[i]);
}

int
main(int argc, char **argv)
{
	static const struct option longopts[] = {
		{ "keys", required_argument, NULL, 'n' },
		{ "rate", required_argument, NULL, 'r' },
		{ "timeout", required_argument, NULL, 't' },
		{ "quiet", required_argument, NULL, 'q' },
		{ "watch", no_argument, NULL, 'w' },
		{ NULL, 0, NULL, 0 }
	};
	struct keylat	 kl = { 0 };
	XWindowAttributes wa;
	KeyCode		 code[2];
	double		*lat, t0, next, quiet = 50, timeout = 2000;
	long		 keys = 50, rate = 5;
	int		 ch, i, n = 0, watch = 0, ev, err, major, minor;

	while ((ch = getopt_long(argc, argv, "", longopts, NULL)) != -1) {
		switch (ch) {
		case 'n':
			keys = keylat_number(optarg, 1, 100000, "--keys");
			break;
		case 'r':
			rate = keylat_number(optarg, 1, 100, "--rate");
			break;
		case 't':
			timeout = keylat_number(optarg, 1, 60000, "--timeout");
			break;
		case 'q':
			quiet = keylat_number(optarg, 1, 10000, "--quiet");
			break;
		case 'w':
			watch = 1;
			break;
		default:
			fprintf(stderr, "usage: keylat [--keys N] [--rate K] "
			    "[--timeout MS] [--quiet MS] [--watch]\n");
			return (2);
		}
	}
	if ((kl.dpy = XOpenDisplay(NULL)) == NULL)
		keylat_exit("cannot open display '%s'",
		    getenv("DISPLAY") ? getenv("DISPLAY") : "");
	if (!XTestQueryExtension(kl.dpy, &ev, &err, &major, &minor))
		keylat_exit("%s", "the X server has no XTEST");
	if (!XDamageQueryExtension(kl.dpy, &kl.damage_event, &err))
		keylat_exit("%s", "the X server has no DAMAGE");
	kl.root = DefaultRootWindow(kl.dpy);
	XGetWindowAttributes(kl.dpy, kl.root, &wa);
	XDamageCreate(kl.dpy, kl.root, XDamageReportRawRectangles);
	kl.shadow = XGetImage(kl.dpy, kl.root, 0, 0, wa.width, wa.height,
	    AllPlanes, ZPixmap);
	if (kl.shadow == NULL)
		keylat_exit("%s", "cannot read the screen");

	if (watch) {
		keylat_events(&kl, keys * 1000.0 / rate, 0);
		printf("frames %lu\n", kl.frames);
		return (0);
	}
	keylat_focus(&kl);
	code[0] = XKeysymToKeycode(kl.dpy, XK_x);
	code[1] = XKeysymToKeycode(kl.dpy, XK_BackSpace);
	if (code[0] == 0 || code[1] == 0)
		keylat_exit("%s", "no key codes for x and BackSpace");
	lat = calloc(keys, sizeof *lat);
	if (lat == NULL)
		keylat_exit("%s", "out of memory");
	keylat_settle(&kl, quiet);
	next = keylat_now();
	for (i = 0; i < keys; i++) {
		/* At the rate, but never before the screen is still. */
		if (next > keylat_now())
			keylat_events(&kl, next - keylat_now(), 0);
		keylat_settle(&kl, quiet);
		next += 1000.0 / rate;
		t0 = keylat_now();
		XTestFakeKeyEvent(kl.dpy, code[i % 2], True, 0);
		XTestFakeKeyEvent(kl.dpy, code[i % 2], False, 0);
		XFlush(kl.dpy);
		if (keylat_events(&kl, timeout, 1))
			lat[n++] = keylat_now() - t0;
	}
	qsort(lat, n, sizeof *lat, keylat_cmp);
	printf("frames %lu ", kl.frames);
	if (n == 0)
		printf("keys %ld echoed 0\n", keys);
	else
		printf("keys %ld echoed %d p50 %.1f p95 %.1f max %.1f ms\n",
		    keys, n, keylat_pct(lat, n, 0.5), keylat_pct(lat, n, 0.95),
		    lat[n - 1]);
	free(lat);
	XDestroyImage(kl.shadow);
	XCloseDisplay(kl.dpy);
	return (0);
}
