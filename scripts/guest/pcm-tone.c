/*
 * qdesk-tone [SECONDS [HZ]]: play a sine tone (default 3 s of 440 Hz) on
 * the first sound card, through the kernel's ALSA PCM ioctls (no
 * alsa-lib in the tiny guests): S16_LE, stereo, 44100 Hz, the format
 * QEMU's HDA codec and VNC capture use. Prints "QDESK TONE PLAYED N
 * frames" (or why not) for the tests.
 *
 * Built static by scripts/mkguest (linux-libc-dev's sound/asound.h).
 */
#include <sys/ioctl.h>

#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <sound/asound.h>

#define TONE_RATE	44100
#define TONE_CHANNELS	2
#define TONE_CHUNK	1024		/* frames a write */

static void
mask_only(struct snd_pcm_hw_params *p, int param, unsigned int v)
{
	struct snd_mask	*m = &p->masks[param - SNDRV_PCM_HW_PARAM_FIRST_MASK];

	memset(m, 0, sizeof *m);
	m->bits[v >> 5] |= 1U << (v & 31);
}

static void
interval_only(struct snd_pcm_hw_params *p, int param, unsigned int v)
{
	struct snd_interval *i =
	    &p->intervals[param - SNDRV_PCM_HW_PARAM_FIRST_INTERVAL];

	memset(i, 0, sizeof *i);
	i->min = i->max = v;
	i->integer = 1;
}

/* Everything allowed, then our format: the kernel picks the rest. */
static void
hw_params_init(struct snd_pcm_hw_params *p)
{
	int	n;

	memset(p, 0, sizeof *p);
	for (n = 0; n <= SNDRV_PCM_HW_PARAM_LAST_MASK -
	    SNDRV_PCM_HW_PARAM_FIRST_MASK; n++)
		memset(&p->masks[n], 0xff, sizeof p->masks[n]);
	for (n = 0; n <= SNDRV_PCM_HW_PARAM_LAST_INTERVAL -
	    SNDRV_PCM_HW_PARAM_FIRST_INTERVAL; n++) {
		p->intervals[n].min = 0;
		p->intervals[n].max = ~0U;
	}
	p->rmask = ~0U;
	p->info = ~0U;
	mask_only(p, SNDRV_PCM_HW_PARAM_ACCESS,
	    SNDRV_PCM_ACCESS_RW_INTERLEAVED);
	mask_only(p, SNDRV_PCM_HW_PARAM_FORMAT, SNDRV_PCM_FORMAT_S16_LE);
	mask_only(p, SNDRV_PCM_HW_PARAM_SUBFORMAT, SNDRV_PCM_SUBFORMAT_STD);
	interval_only(p, SNDRV_PCM_HW_PARAM_CHANNELS, TONE_CHANNELS);
	interval_only(p, SNDRV_PCM_HW_PARAM_RATE, TONE_RATE);
}

int
main(int argc, char **argv)
{
	struct snd_pcm_hw_params	 hp;
	struct snd_xferi		 x;
	int16_t				 buf[TONE_CHUNK * TONE_CHANNELS];
	const char			*dev = "/dev/snd/pcmC0D0p";
	double				 secs = 3, hz = 440;
	long				 total, done = 0, n, i;
	int				 fd, c;

	if (argc > 1)
		secs = atof(argv[1]);
	if (argc > 2)
		hz = atof(argv[2]);
	if ((fd = open(dev, O_RDWR | O_CLOEXEC)) == -1) {
		printf("QDESK TONE FAILED %s: %s\n", dev, strerror(errno));
		return (1);
	}
	hw_params_init(&hp);
	if (ioctl(fd, SNDRV_PCM_IOCTL_HW_PARAMS, &hp) == -1) {
		printf("QDESK TONE FAILED hw_params: %s\n", strerror(errno));
		return (1);
	}
	if (ioctl(fd, SNDRV_PCM_IOCTL_PREPARE) == -1) {
		printf("QDESK TONE FAILED prepare: %s\n", strerror(errno));
		return (1);
	}
	total = (long)(secs * TONE_RATE);
	while (done < total) {
		n = total - done < TONE_CHUNK ? total - done : TONE_CHUNK;
		for (i = 0; i < n; i++)
			for (c = 0; c < TONE_CHANNELS; c++)
				buf[i * TONE_CHANNELS + c] = (int16_t)(12000 *
				    sin(2 * M_PI * hz * (done + i) / TONE_RATE));
		x.result = 0;
		x.buf = buf;
		x.frames = n;
		if (ioctl(fd, SNDRV_PCM_IOCTL_WRITEI_FRAMES, &x) == -1) {
			if (errno == EPIPE) {	/* underrun: start again */
				ioctl(fd, SNDRV_PCM_IOCTL_PREPARE);
				continue;
			}
			printf("QDESK TONE FAILED write: %s\n",
			    strerror(errno));
			return (1);
		}
		done += x.result;
	}
	ioctl(fd, SNDRV_PCM_IOCTL_DRAIN);
	close(fd);
	printf("QDESK TONE PLAYED %ld frames\n", done);
	return (0);
}
