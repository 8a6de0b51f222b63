/*
 * rdp-avc-bench: the gateway's H.264 encoder alone, on a synthetic
 * photo-like picture that pans and changes every frame (what video.img
 * shows), full-screen damage each frame. Prints the CPU a frame costs,
 * split into RGB to YUV conversion and x264, and the bytes a frame: the
 * machine-independent figures behind the gateway's frame rate (the
 * session adds the VNC read and the send).
 *
 *   rdp-avc-bench [-c avc420|avc444] [-n FRAMES] [-s WxH] [-t THREADS]
 *       [-p PRESET] [-q CRF] [-b MAXRATE] [-x X264PARAMS] [-d W2xH2]
 *       [-r qp|crf] [PPM...]
 *
 * -r is a large AVC420 surface's rate control: "qp" (libx264 at the
 * gateway's own QP a frame, rdp-gfx-x264.c; the default when built with
 * x264) or "crf" (libavcodec's x264 with CRF and the VBV); -q is then
 * the QP's floor.
 *
 * -b caps the rate (bit/s, the VBV's one-second buffer; the gateway's is
 * RDP_GFX_AVC_BITRATE); -x adds x264-params (psnr=1: x264 logs its PSNR
 * at the end, with its average QP).
 *
 * -d damages only a W2xH2 rectangle that moves (a window playing video)
 * instead of the whole screen. PPM files (binary P6, maxval 255, all one
 * size: a guest's screendumps in order) replace the synthetic picture:
 * each is one frame, full-screen damage, so two guests' pictures can be
 * compared at the same encoder settings (bench/transport/README.md).
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "rdp-gfx.h"

static double
bench_now(clockid_t clk)
{
	struct timespec	ts;

	clock_gettime(clk, &ts);
	return (ts.tv_sec + ts.tv_nsec / 1e9);
}

static int
bench_emit(void *arg, RDPGFX_SURFACE_COMMAND *cmd)
{
	(void)arg;
	(void)cmd;
	return (0);
}

static void
usage(void)
{
	fprintf(stderr, "usage: rdp-avc-bench [-c avc420|avc444] [-n frames] "
	    "[-s WxH] [-t threads] [-p preset] [-q crf] [-b maxrate] "
	    "[-x x264params] [-d WxH] [-r qp|crf] [PPM...]\n");
	exit(2);
}

/*
 * Read a binary PPM (P6, maxval 255) as XRGB; sets *w and *h. Exits with
 * a one-line cause on anything else: this is a bench, not a parser.
 */
static uint32_t *
bench_ppm(const char *path, int *w, int *h)
{
	FILE		*f;
	uint32_t	*px;
	unsigned char	 rgb[3];
	int		 max;
	size_t		 i;

	if ((f = fopen(path, "rb")) == NULL) {
		perror(path);
		exit(1);
	}
	if (fscanf(f, "P6 %d %d %d", w, h, &max) != 3 || max != 255 ||
	    fgetc(f) == EOF || *w < 64 || *h < 64) {
		fprintf(stderr, "rdp-avc-bench: %s: not a P6 PPM with maxval "
		    "255\n", path);
		exit(1);
	}
	if ((px = calloc((size_t)*w * *h, sizeof *px)) == NULL) {
		perror("calloc");
		exit(1);
	}
	for (i = 0; i < (size_t)*w * *h; i++) {
		if (fread(rgb, 1, 3, f) != 3) {
			fprintf(stderr, "rdp-avc-bench: %s: short\n", path);
			exit(1);
		}
		px[i] = (uint32_t)rgb[0] << 16 | rgb[1] << 8 | rgb[2];
	}
	fclose(f);
	return (px);
}

/* A smooth picture with texture, so x264 sees natural-image content. */
static uint32_t *
bench_texture(int w, int h)
{
	uint32_t	*t;
	double		 v;
	int		 x, y, r, g, b;

	t = calloc((size_t)w * h, sizeof *t);
	for (y = 0; y < h; y++) {
		for (x = 0; x < w; x++) {
			v = sin(x / 37.0) * cos(y / 23.0) + sin((x + y) / 91.0);
			r = 128 + (int)(60 * v) + (int)((x * 7 + y * 13) % 17);
			g = 100 + (int)(50 * sin(y / 41.0 + x / 97.0)) +
			    (int)((x * 11 + y * 5) % 13);
			b = 90 + (int)(70 * cos(x / 53.0)) + (int)((x ^ y) % 11);
			t[(size_t)y * w + x] = (r & 0xff) << 16 |
			    (g & 0xff) << 8 | (b & 0xff);
		}
	}
	return (t);
}

int
main(int argc, char **argv)
{
	const struct rdp_gfx_avc_stats	*st;
	struct rdp_gfx_codec	*c;
	struct rdp_gfx_image	 img;
	struct rdp_rect		 dmg;
	uint32_t		*tex, *fb;
	uint64_t		 bytes = 0;
	double			 w0, c0, wall, cpu;
	int			 ch, id = RDP_GFX_AVC420, n = 100, w = 1920, h = 1080;
	int			 dw = 0, dh = 0, f, y, ox, oy;

	while ((ch = getopt(argc, argv, "b:c:d:n:p:q:r:s:t:x:")) != -1) {
		switch (ch) {
		case 'b':
			rdp_gfx_avc_maxrate = atoi(optarg);
			break;
		case 'c':
			if (strcmp(optarg, "avc444") == 0)
				id = RDP_GFX_AVC444;
			else if (strcmp(optarg, "avc420") != 0)
				usage();
			break;
		case 'd':
			if (sscanf(optarg, "%dx%d", &dw, &dh) != 2)
				usage();
			break;
		case 'n':
			n = atoi(optarg);
			break;
		case 'p':
			rdp_gfx_avc_preset = rdp_gfx_avc_large = optarg;
			break;
		case 'q':
			rdp_gfx_avc_crf = optarg;
			break;
		case 'r':
			rdp_gfx_avc_largerc = optarg;
			break;
		case 's':
			if (sscanf(optarg, "%dx%d", &w, &h) != 2)
				usage();
			break;
		case 't':
			rdp_gfx_avc_threads = atoi(optarg);
			break;
		case 'x':
			rdp_gfx_avc_x264 = optarg;
			break;
		default:
			usage();
		}
	}
	argc -= optind;
	argv += optind;
	if (argc > 0) {
		/* Screendumps: their size, one frame each, whole screen. */
		free(bench_ppm(argv[0], &w, &h));
		n = argc;
		dw = dh = 0;
	}
	if (n <= 0 || w < 64 || h < 64 || dw > w || dh > h)
		usage();
	tex = argc > 0 ? NULL : bench_texture(w * 2, h * 2);
	fb = calloc((size_t)w * h, sizeof *fb);
	img.fb = fb;
	img.stride = w;
	img.width = w;
	img.height = h;
	if ((c = rdp_gfx_codec_create(id, w, h)) == NULL) {
		fprintf(stderr, "rdp-avc-bench: no %s encoder\n",
		    rdp_gfx_codec_name(id));
		return (1);
	}
	w0 = bench_now(CLOCK_MONOTONIC);
	c0 = bench_now(CLOCK_PROCESS_CPUTIME_ID);
	for (f = 0; f < n; f++) {
		ox = (f * 7) % w;
		oy = (f * 3) % h;
		dmg.x = dmg.y = 0;
		dmg.w = w;
		dmg.h = h;
		if (dw > 0) {
			dmg.x = (f * 16) % (w - dw + 1);
			dmg.y = (f * 8) % (h - dh + 1);
			dmg.w = dw;
			dmg.h = dh;
		}
		if (argc > 0) {
			uint32_t	*pic;
			int		 pw, ph;

			pic = bench_ppm(argv[f], &pw, &ph);
			if (pw != w || ph != h) {
				fprintf(stderr, "rdp-avc-bench: %s is %dx%d, "
				    "not %dx%d\n", argv[f], pw, ph, w, h);
				return (1);
			}
			memcpy(fb, pic, (size_t)w * h * 4);
			free(pic);
		}
		for (y = dmg.y; tex != NULL && y < dmg.y + dmg.h; y++)
			memcpy(fb + (size_t)y * w + dmg.x, tex +
			    (size_t)(y + oy) * w * 2 + ox + dmg.x, dmg.w * 4);
		if (rdp_gfx_codec_lossy(c, &img, &dmg, 1, bench_emit, NULL,
		    &bytes) != 0) {
			fprintf(stderr, "rdp-avc-bench: frame %d failed\n", f);
			return (1);
		}
	}
	wall = bench_now(CLOCK_MONOTONIC) - w0;
	cpu = bench_now(CLOCK_PROCESS_CPUTIME_ID) - c0;
	st = rdp_gfx_codec_stats(c);
	printf("%s %dx%d preset %s crf %s maxrate %d threads %d damage %dx%d: "
	    "%d frames, "
	    "%.1f ms CPU a frame (%.1f ms wall), YUV %.1f ms, x264 %.1f ms, "
	    "%.0f bytes a frame (%.2f Mbit/s at 25 frames/s), %.1f frames/s "
	    "alone\n", rdp_gfx_codec_name(id), w, h,
	    rdp_gfx_avc_preset_for(w, h),
	    rdp_gfx_avc_crf, rdp_gfx_avc_maxrate,
	    rdp_gfx_avc_threads, dw ? dw : w, dh ? dh : h, n,
	    cpu * 1000 / n, wall * 1000 / n,
	    st != NULL ? st->yuvus / 1000.0 / n : 0,
	    st != NULL ? st->x264us / 1000.0 / n : 0,
	    (double)bytes / n, bytes * 8.0 * 25 / n / 1e6, n / wall);
	rdp_gfx_codec_free(c);
	free(tex);
	free(fb);
	return (0);
}
