/*
 * qdesk-video: natural-image motion on the guest's screen, the workload of
 * issue 12's codec comparisons (flat test patterns flatter lossless codecs).
 *
 * A photo-like aerial landscape (fractal terrain, coloured by height and lit
 * by its slope) pans across the screen while a cloud layer drifts over it
 * in another direction: every pixel changes every frame, and no frame is a
 * plain translation of the one before.  Motion follows the clock, not the
 * frame count, so a slower guest shows the same scene with fewer frames.
 * The scene itself is video-scene.h's, shared with video-kvm.c; this file
 * puts it on a Linux screen and follows the clock in seconds.
 *
 * Output through KMS (a dumb buffer on the first connected connector, with
 * DIRTYFB after each frame so qxl turns it into QXL draw commands and bochs
 * or virtio-gpu see it too), or /dev/fb0 when there is no DRM device.
 * Kernel command line: qdesk.video=WxH (default 1024x768), qdesk.fps=N
 * (default 30, 0 = as fast as it goes).  Prints "QDESK VIDEO UP ..." once
 * the first frame is on the screen and "QDESK VIDEO FPS=N" every 10 s.
 *
 * Built static by scripts/mkguest (gcc -static -O2 ... -lm); DRM headers
 * from libdrm-dev, no libdrm at run time.
 */

#include <sys/ioctl.h>
#include <sys/mman.h>

#include <errno.h>
#include <fcntl.h>
#include <linux/fb.h>
#include <linux/kd.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <drm.h>
#include <drm_mode.h>

#include "video-scene.h"

struct video_screen {
	uint32_t	*pixels;
	unsigned int	 width;
	unsigned int	 height;
	unsigned int	 stride;	/* in pixels */
	int		 drm_fd;	/* -1 for fbdev */
	uint32_t	 fb_id;
	char		 name[64];
};

/* The scene's allocator: malloc, or no picture at all. */
static void *
scene_alloc(uint32_t size)
{
	void	*p;

	if ((p = malloc(size)) == NULL) {
		perror("qdesk-video: malloc");
		exit(1);
	}
	return (p);
}

static void
scene_free(void *p)
{
	free(p);
}

/* Read qdesk.video=WxH and qdesk.fps=N from the kernel command line. */
static void
video_cmdline(unsigned int *width, unsigned int *height, unsigned int *fps)
{
	char	 line[4096], *word;
	FILE	*f;

	if ((f = fopen("/proc/cmdline", "r")) == NULL)
		return;
	if (fgets(line, sizeof line, f) != NULL) {
		for (word = strtok(line, " \n"); word != NULL;
		    word = strtok(NULL, " \n")) {
			if (sscanf(word, "qdesk.video=%ux%u", width,
			    height) == 2)
				continue;
			sscanf(word, "qdesk.fps=%u", fps);
		}
	}
	fclose(f);
}

/* ioctl that retries on EINTR and EAGAIN, as libdrm's drmIoctl does. */
static int
video_ioctl(int fd, unsigned long request, void *arg)
{
	int	rc;

	do {
		rc = ioctl(fd, request, arg);
	} while (rc == -1 && (errno == EINTR || errno == EAGAIN));
	return (rc);
}

/*
 * Light the first connected connector of /dev/dri/card0 with a width x
 * height dumb buffer and map it.  Returns -1 with *cause set on failure.
 */
static int
video_open_drm(struct video_screen *s, unsigned int width,
    unsigned int height, const char **cause)
{
	struct drm_mode_card_res	 res;
	struct drm_mode_get_connector	 conn;
	struct drm_mode_get_encoder	 enc;
	struct drm_mode_create_dumb	 dumb;
	struct drm_mode_fb_cmd		 fb;
	struct drm_mode_map_dumb	 map;
	struct drm_mode_crtc		 crtc;
	struct drm_mode_modeinfo	*modes = NULL, *mode = NULL;
	struct drm_version		 version;
	uint32_t			 conns[16], crtcs[16], encs[16];
	uint32_t			 conn_id = 0, crtc_id = 0;
	unsigned int			 i, j;
	void				*p;

	if ((s->drm_fd = open("/dev/dri/card0", O_RDWR | O_CLOEXEC)) == -1) {
		*cause = "no /dev/dri/card0";
		return (-1);
	}
	memset(&version, 0, sizeof version);
	version.name = s->name;
	version.name_len = sizeof s->name - 1;
	if (video_ioctl(s->drm_fd, DRM_IOCTL_VERSION, &version) == -1)
		strcpy(s->name, "drm");

	memset(&res, 0, sizeof res);
	res.connector_id_ptr = (uintptr_t)conns;
	res.count_connectors = 16;
	res.crtc_id_ptr = (uintptr_t)crtcs;
	res.count_crtcs = 16;
	if (video_ioctl(s->drm_fd, DRM_IOCTL_MODE_GETRESOURCES, &res) == -1) {
		*cause = "DRM_IOCTL_MODE_GETRESOURCES failed (not KMS?)";
		goto fail;
	}
	for (i = 0; i < res.count_connectors && i < 16 && mode == NULL; i++) {
		memset(&conn, 0, sizeof conn);
		conn.connector_id = conns[i];
		if (video_ioctl(s->drm_fd, DRM_IOCTL_MODE_GETCONNECTOR,
		    &conn) == -1 || conn.connection != 1 ||
		    conn.count_modes == 0)
			continue;
		free(modes);
		modes = calloc(conn.count_modes, sizeof *modes);
		if (modes == NULL) {
			*cause = "out of memory";
			goto fail;
		}
		conn.modes_ptr = (uintptr_t)modes;
		conn.encoders_ptr = (uintptr_t)encs;
		conn.count_encoders = conn.count_encoders > 16 ? 16 :
		    conn.count_encoders;
		conn.count_props = 0;
		if (video_ioctl(s->drm_fd, DRM_IOCTL_MODE_GETCONNECTOR,
		    &conn) == -1)
			continue;
		for (j = 0; j < conn.count_modes; j++) {
			if (modes[j].hdisplay == width &&
			    modes[j].vdisplay == height) {
				mode = &modes[j];
				break;
			}
		}
		if (mode == NULL)
			continue;
		conn_id = conn.connector_id;
		memset(&enc, 0, sizeof enc);
		enc.encoder_id = conn.encoder_id != 0 ? conn.encoder_id :
		    encs[0];
		if (video_ioctl(s->drm_fd, DRM_IOCTL_MODE_GETENCODER,
		    &enc) == -1) {
			*cause = "DRM_IOCTL_MODE_GETENCODER failed";
			goto fail;
		}
		crtc_id = enc.crtc_id;
		for (j = 0; crtc_id == 0 && j < res.count_crtcs && j < 16; j++) {
			if (enc.possible_crtcs & (1U << j))
				crtc_id = crtcs[j];
		}
	}
	if (mode == NULL || crtc_id == 0) {
		*cause = "no connected connector offers that mode";
		goto fail;
	}

	memset(&dumb, 0, sizeof dumb);
	dumb.width = width;
	dumb.height = height;
	dumb.bpp = 32;
	if (video_ioctl(s->drm_fd, DRM_IOCTL_MODE_CREATE_DUMB, &dumb) == -1) {
		*cause = "DRM_IOCTL_MODE_CREATE_DUMB failed";
		goto fail;
	}
	memset(&fb, 0, sizeof fb);
	fb.width = width;
	fb.height = height;
	fb.pitch = dumb.pitch;
	fb.bpp = 32;
	fb.depth = 24;
	fb.handle = dumb.handle;
	if (video_ioctl(s->drm_fd, DRM_IOCTL_MODE_ADDFB, &fb) == -1) {
		*cause = "DRM_IOCTL_MODE_ADDFB failed";
		goto fail;
	}
	s->fb_id = fb.fb_id;
	memset(&map, 0, sizeof map);
	map.handle = dumb.handle;
	if (video_ioctl(s->drm_fd, DRM_IOCTL_MODE_MAP_DUMB, &map) == -1) {
		*cause = "DRM_IOCTL_MODE_MAP_DUMB failed";
		goto fail;
	}
	p = mmap(NULL, dumb.size, PROT_READ | PROT_WRITE, MAP_SHARED,
	    s->drm_fd, (off_t)map.offset);
	if (p == MAP_FAILED) {
		*cause = "mmap of the dumb buffer failed";
		goto fail;
	}
	memset(&crtc, 0, sizeof crtc);
	crtc.crtc_id = crtc_id;
	crtc.fb_id = s->fb_id;
	crtc.set_connectors_ptr = (uintptr_t)&conn_id;
	crtc.count_connectors = 1;
	crtc.mode = *mode;
	crtc.mode_valid = 1;
	if (video_ioctl(s->drm_fd, DRM_IOCTL_MODE_SETCRTC, &crtc) == -1) {
		*cause = "DRM_IOCTL_MODE_SETCRTC failed (not DRM master?)";
		goto fail;
	}
	free(modes);
	s->pixels = p;
	s->width = width;
	s->height = height;
	s->stride = dumb.pitch / 4;
	return (0);

fail:
	free(modes);
	close(s->drm_fd);
	s->drm_fd = -1;
	return (-1);
}

/* Map /dev/fb0 when it is 32 bits per pixel and at least width x height. */
static int
video_open_fb(struct video_screen *s, unsigned int width,
    unsigned int height, const char **cause)
{
	struct fb_var_screeninfo	 var;
	struct fb_fix_screeninfo	 fix;
	int				 fd;
	void				*p;

	if ((fd = open("/dev/fb0", O_RDWR | O_CLOEXEC)) == -1) {
		*cause = "no /dev/fb0";
		return (-1);
	}
	if (ioctl(fd, FBIOGET_VSCREENINFO, &var) == -1 ||
	    ioctl(fd, FBIOGET_FSCREENINFO, &fix) == -1) {
		*cause = "/dev/fb0: FBIOGET_*SCREENINFO failed";
		goto fail;
	}
	if (var.bits_per_pixel != 32 || var.xres < width ||
	    var.yres < height) {
		*cause = "/dev/fb0 is not 32 bpp at that size";
		goto fail;
	}
	p = mmap(NULL, fix.smem_len, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
	if (p == MAP_FAILED) {
		*cause = "mmap of /dev/fb0 failed";
		goto fail;
	}
	s->pixels = p;
	s->width = width;
	s->height = height;
	s->stride = fix.line_length / 4;
	s->drm_fd = -1;
	snprintf(s->name, sizeof s->name, "fbdev %.16s", fix.id);
	return (0);

fail:
	close(fd);
	return (-1);
}

/* Draw one frame of the scene at time t (seconds since the start). */
static void
video_draw(struct video_screen *s, double t)
{
	struct scene_camera	camera;

	/* The camera glides along a slow curve; clouds drift across it. */
	camera.x = (unsigned int)(t * 70.0 + 40.0 * sin(t * 0.3));
	camera.y = (unsigned int)(t * 25.0 + 60.0 * cos(t * 0.2));
	camera.cloud_x = (unsigned int)(t * -45.0) & CLOUD_MASK;
	camera.cloud_y = (unsigned int)(t * 30.0) & CLOUD_MASK;
	scene_paint(s->pixels, s->width, s->height, s->stride, &camera);
	if (s->drm_fd != -1) {
		struct drm_mode_fb_dirty_cmd	dirty;
		struct drm_clip_rect		clip;

		clip.x1 = 0;
		clip.y1 = 0;
		clip.x2 = (unsigned short)s->width;
		clip.y2 = (unsigned short)s->height;
		memset(&dirty, 0, sizeof dirty);
		dirty.fb_id = s->fb_id;
		dirty.num_clips = 1;
		dirty.clips_ptr = (uintptr_t)&clip;
		/* ENOSYS from drivers that scan out the buffer as it is. */
		video_ioctl(s->drm_fd, DRM_IOCTL_MODE_DIRTYFB, &dirty);
	}
}

static double
video_now(void)
{
	struct timespec	ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (ts.tv_sec + ts.tv_nsec / 1e9);
}

int
main(void)
{
	struct video_screen	 s;
	const char		*cause = NULL, *cause_fb = NULL;
	unsigned int		 width = 1024, height = 768, fps = 30, frames;
	double			 start, next, now, mark;
	struct timespec		 ts;
	int			 tty;

	setvbuf(stdout, NULL, _IOLBF, 0);
	video_cmdline(&width, &height, &fps);
	memset(&s, 0, sizeof s);
	if (video_open_drm(&s, width, height, &cause) == -1 &&
	    video_open_fb(&s, width, height, &cause_fb) == -1) {
		printf("QDESK VIDEO FAILED: %ux%u: %s; %s\n", width, height,
		    cause, cause_fb);
		return (1);
	}
	/* Keep the text console from drawing over the picture. */
	if ((tty = open("/dev/tty1", O_RDWR | O_CLOEXEC)) != -1) {
		ioctl(tty, KDSETMODE, KD_GRAPHICS);
		close(tty);
	}
	scene_world();

	start = mark = next = video_now();
	video_draw(&s, 0);
	printf("QDESK VIDEO UP %ux%u %s %u fps\n", s.width, s.height, s.name,
	    fps);
	for (frames = 1;; frames++) {
		now = video_now();
		if (fps != 0) {
			next += 1.0 / fps;
			if (next > now) {
				ts.tv_sec = (time_t)(next - now);
				ts.tv_nsec = (long)((next - now -
				    (double)ts.tv_sec) * 1e9);
				nanosleep(&ts, NULL);
			} else
				next = now;	/* behind: no catching up */
		}
		now = video_now();
		if (now - mark >= 10.0) {
			printf("QDESK VIDEO FPS=%.1f\n", frames / (now - mark));
			mark = now;
			frames = 0;
		}
		video_draw(&s, now - start);
	}
}
