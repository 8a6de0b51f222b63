/*
 * Sound from the guest to the RDP client (issue 12). QEMU's VNC server
 * captures the guest's sound output (-vnc none,audiodev=audio0, qmpd's
 * argv for desktops with sound) for clients that ask with QEMU's audio
 * pseudo-encoding (-259) and client message 255/1: set the format (S16,
 * 2 channels, 44100 Hz) and enable; QEMU then sends 255/1 begin, data
 * (PCM) and end. The gateway passes the PCM to the client's rdpsnd
 * channel (FreeRDP 2's server context on the session's channel manager,
 * driven from the session thread: no channel thread). A client without
 * rdpsnd, or with no PCM format the same as QEMU's, gets nothing, and
 * QEMU is never asked to capture for it.
 */
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <freerdp/codec/audio.h>
#include <freerdp/server/rdpsnd.h>

#include "compat.h"
#include "log.h"
#include "rdp-chan.h"
#include "rdp-int.h"
#include "xmalloc.h"

#define RDP_SOUND_BYTES_PER_FRAME	(2 * RDP_SOUND_CHANNELS)
#define RDP_SOUND_LATENCY		50	/* ms a Wave PDU carries */

struct rdp_sound {
	RdpsndServerContext	*ctx;
	freerdp_peer		*peer;
	AUDIO_FORMAT		 fmt;		/* QEMU's, our only one */
	int			 selected;	/* a client format matched */
	int			 enabled;	/* QEMU asked to capture */
	unsigned char		 rest[RDP_SOUND_BYTES_PER_FRAME];
	size_t			 nrest;		/* bytes of a split frame */

	uint64_t		 vnc_bytes;	/* PCM from QEMU */
	uint64_t		 frames;	/* passed to the client */
	uint64_t		 confirmed;	/* blocks the client played */
	uint64_t		 dropped;	/* before the client was ready */
};

/* Wave PDUs carry a 16-bit millisecond clock; the client echoes it. */
static UINT16
rdp_sound_ms(void)
{
	struct timespec	ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ((UINT16)(ts.tv_sec * 1000 + ts.tv_nsec / 1000000));
}

struct rdp_sound *
rdp_sound_create(void)
{
	struct rdp_sound	*snd;

	snd = xcalloc(1, sizeof *snd);
	snd->fmt.wFormatTag = WAVE_FORMAT_PCM;
	snd->fmt.nChannels = RDP_SOUND_CHANNELS;
	snd->fmt.nSamplesPerSec = RDP_SOUND_RATE;
	snd->fmt.wBitsPerSample = 16;
	snd->fmt.nBlockAlign = RDP_SOUND_BYTES_PER_FRAME;
	snd->fmt.nAvgBytesPerSec = RDP_SOUND_RATE * RDP_SOUND_BYTES_PER_FRAME;
	return (snd);
}

void
rdp_sound_free(struct rdp_sound *snd)
{
	void	*h;

	if (snd == NULL)
		return;
	/*
	 * Without its own thread the context's Stop leaves the channel
	 * open (it stops only a thread): close it here.
	 */
	if (snd->ctx != NULL) {
		if ((h = WTSChannelGetHandleByName(snd->peer, "rdpsnd")) != NULL)
			WTSVirtualChannelClose(h);
		rdpsnd_server_context_free(snd->ctx);
	}
	free(snd);
}

/* The client said which formats it plays: pick QEMU's PCM, or none. */
static void
rdp_sound_activated(RdpsndServerContext *ctx)
{
	struct rdp_sound	*snd = ctx->data;
	UINT16			 i;

	for (i = 0; i < ctx->num_client_formats; i++) {
		if (audio_format_compatible(&snd->fmt,
		    &ctx->client_formats[i])) {
			if (ctx->SelectFormat(ctx, i) == CHANNEL_RC_OK) {
				snd->selected = 1;
				log_debug("RDP sound: client format %u (PCM "
				    "%u Hz)", i, RDP_SOUND_RATE);
			}
			return;
		}
	}
	log_info("RDP sound: the client plays no 16-bit %u Hz stereo PCM; "
	    "no sound for it", RDP_SOUND_RATE);
}

static UINT
rdp_sound_confirm(RdpsndServerContext *ctx, BYTE block, UINT16 ts)
{
	struct rdp_sound	*snd = ctx->data;

	snd->confirmed++;
	return (CHANNEL_RC_OK);
}

/* The client joined rdpsnd: announce our one format. 0, or -1. */
int
rdp_sound_open(struct rdp_sound *snd, HANDLE vcm, rdpContext *context)
{
	RdpsndServerContext	*ctx;

	if ((ctx = rdpsnd_server_context_new(vcm)) == NULL)
		return (-1);
	ctx->data = snd;
	ctx->rdpcontext = context;
	snd->peer = context->peer;
	/* The context frees its server formats. */
	ctx->server_formats = audio_formats_new(1);
	ctx->server_formats[0] = snd->fmt;
	ctx->num_server_formats = 1;
	ctx->src_format = &snd->fmt;
	ctx->latency = RDP_SOUND_LATENCY;
	ctx->Activated = rdp_sound_activated;
	ctx->ConfirmBlock = rdp_sound_confirm;
	if (ctx->Initialize(ctx, FALSE) != CHANNEL_RC_OK) {
		rdpsnd_server_context_free(ctx);
		return (-1);
	}
	snd->ctx = ctx;
	return (0);
}

int
rdp_sound_fd(struct rdp_sound *snd)
{
	HANDLE	h;

	if (snd == NULL || snd->ctx == NULL ||
	    (h = rdpsnd_server_get_event_handle(snd->ctx)) == NULL)
		return (-1);
	return (GetEventFileDescriptor(h));
}

/* QEMU: set the format (S16, stereo, 44100 Hz), then enable capture. */
int
rdp_sound_vnc_start(struct rdp_rfb *rfb)
{
	unsigned char	msg[14];

	msg[0] = 255;
	msg[1] = 1;
	msg[2] = 0;
	msg[3] = 2;		/* set format */
	msg[4] = 3;		/* AUD_FMT_S16 */
	msg[5] = RDP_SOUND_CHANNELS;
	rdp_rfb_put32(msg + 6, RDP_SOUND_RATE);
	msg[10] = 255;
	msg[11] = 1;
	msg[12] = 0;
	msg[13] = 0;		/* enable */
	return (rdp_rfb_send(rfb, msg, sizeof msg));
}

/*
 * The client's messages, and once it has a format and QEMU acknowledged
 * the audio encoding, capture on. -1 and a cause when the channel broke
 * (the session goes on without sound).
 */
int
rdp_sound_check(struct rdp_sound *snd, struct rdp_rfb *rfb, char **cause)
{
	HANDLE	h;
	UINT	rc;
	int	i;

	if (snd == NULL || snd->ctx == NULL)
		return (0);
	h = rdpsnd_server_get_event_handle(snd->ctx);
	for (i = 0; i < 256 && WaitForSingleObject(h, 0) == WAIT_OBJECT_0;
	    i++) {
		rc = rdpsnd_server_handle_messages(snd->ctx);
		if (rc == ERROR_NO_DATA)
			break;
		if (rc != CHANNEL_RC_OK && !snd->selected) {
			/* FreeRDP refuses a client with no usable format. */
			xasprintf(cause, "sound: the client plays no 16-bit "
			    "%u Hz stereo PCM (rdpsnd error %u)",
			    RDP_SOUND_RATE, rc);
			return (-1);
		}
		if (rc != CHANNEL_RC_OK) {
			xasprintf(cause, "sound channel: error %u", rc);
			return (-1);
		}
	}
	if (snd->selected && !snd->enabled && rfb != NULL && rfb->audio) {
		if (rdp_sound_vnc_start(rfb) != 0) {
			xasprintf(cause, "sound: VNC write failed");
			return (-1);
		}
		snd->enabled = 1;
		log_debug("RDP sound: capture on");
	}
	return (0);
}

/* A QEMU audio message: op 0 end, 1 begin, 2 data (PCM, len bytes). */
void
rdp_sound_vnc(struct rdp_sound *snd, int op, const unsigned char *buf,
    size_t len)
{
	const unsigned char *p = buf;
	size_t		 n, take;
	UINT16		 ts;

	if (snd == NULL || op != 2)
		return;
	snd->vnc_bytes += len;
	/*
	 * Sound is live: when the client is not reading (its socket is
	 * full), skip rather than queue it behind the screen.
	 */
	if (snd->ctx == NULL || !snd->selected ||
	    snd->peer->IsWriteBlocked(snd->peer)) {
		snd->dropped += len;
		return;
	}
	ts = rdp_sound_ms();
	/* Whole frames only; a frame split between messages waits. */
	if (snd->nrest > 0) {
		take = RDP_SOUND_BYTES_PER_FRAME - snd->nrest;
		if (take > len)
			take = len;
		memcpy(snd->rest + snd->nrest, p, take);
		snd->nrest += take;
		p += take;
		len -= take;
		if (snd->nrest == RDP_SOUND_BYTES_PER_FRAME) {
			snd->ctx->SendSamples(snd->ctx, snd->rest, 1, ts);
			snd->frames++;
			snd->nrest = 0;
		}
	}
	n = len / RDP_SOUND_BYTES_PER_FRAME;
	if (n > 0) {
		if (snd->ctx->SendSamples(snd->ctx, p, n, ts) == CHANNEL_RC_OK)
			snd->frames += n;
		else
			snd->dropped += n * RDP_SOUND_BYTES_PER_FRAME;
	}
	p += n * RDP_SOUND_BYTES_PER_FRAME;
	len -= n * RDP_SOUND_BYTES_PER_FRAME;
	memcpy(snd->rest, p, len);
	snd->nrest = len;
}

/* The session's sound figures (event rdp.sound), at its end. */
void
rdp_sound_log(struct rdp_sound *snd, const char *who)
{
	json_t	*f;

	if (snd == NULL || (snd->vnc_bytes == 0 && snd->ctx == NULL))
		return;
	f = json_pack("{s:I,s:I,s:I,s:I}",
	    "pcm_bytes", (json_int_t)snd->vnc_bytes,
	    "frames", (json_int_t)snd->frames,
	    "blocks", (json_int_t)snd->confirmed,
	    "dropped", (json_int_t)snd->dropped);
	log_event(0, "rdp.sound", f, "%s: sound: %llu bytes of PCM from QEMU, "
	    "%llu frames (%u Hz stereo) to the client, %llu blocks played by "
	    "the client, %llu bytes dropped", who,
	    (unsigned long long)snd->vnc_bytes,
	    (unsigned long long)snd->frames, RDP_SOUND_RATE,
	    (unsigned long long)snd->confirmed,
	    (unsigned long long)snd->dropped);
	json_decref(f);
}
