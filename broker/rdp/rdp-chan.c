/*
 * A session's static virtual channels, on the channel manager the
 * session opened for its peer (rdp-peer.c, WTSOpenServerA): cliprdr
 * (rdp-clip.c) and rdpsnd (rdp-sound.c), each only when the client joined
 * it, opened once the client is active; and the dynamic Display Control
 * channel (rdp-disp.c), once drdynvc is up. The session thread polls the
 * channels' event fds with the rest and calls rdp_chan_check after the
 * peer's and the manager's checks; a broken channel ends that channel,
 * not the session.
 */
#include <stdlib.h>
#include <string.h>

#include <freerdp/channels/cliprdr.h>
#include <freerdp/channels/wtsvc.h>

#include "compat.h"
#include "log.h"
#include "rdp-chan.h"
#include "rdp-int.h"
#include "xmalloc.h"

struct rdp_chan {
	freerdp_peer		*peer;
	HANDLE			 vcm;		/* rdp-peer.c's */
	struct rdp_rfb		*rfb;
	struct rdp_clip		*clip;
	struct rdp_sound	*sound;
	struct rdp_disp		*disp;
	int			 opened;	/* channels looked at */
};

/* The channels of peer, on its channel manager (the session owns it). */
struct rdp_chan *
rdp_chan_create(freerdp_peer *peer, HANDLE vcm)
{
	struct rdp_chan	*ch;

	ch = xcalloc(1, sizeof *ch);
	ch->peer = peer;
	ch->vcm = vcm;
	ch->clip = rdp_clip_create();
	ch->disp = rdp_disp_create(peer, vcm);
	return (ch);
}

void
rdp_chan_free(struct rdp_chan *ch)
{
	if (ch == NULL)
		return;
	rdp_clip_free(ch->clip);
	rdp_sound_free(ch->sound);
	rdp_disp_free(ch->disp);
	free(ch);
}

/*
 * The console's VNC connection, before its handshake: cut text goes to
 * the clipboard (login's on vm: its text outlives the session) and, when
 * the desktop has sound, QEMU's audio to rdpsnd.
 */
void
rdp_chan_attach(struct rdp_chan *ch, struct rdp_rfb *rfb, int sound,
    const char *login, const char *vm)
{
	if (ch == NULL)
		return;
	ch->rfb = rfb;
	rfb->clip = ch->clip;
	rdp_clip_owner(ch->clip, login, vm);
	if (sound) {
		ch->sound = rdp_sound_create();
		rfb->sound = ch->sound;
	}
}

/* Add the fds to poll; returns how many. */
int
rdp_chan_pollfds(struct rdp_chan *ch, struct pollfd *pfd, int max)
{
	int	fds[3], i, n = 0;

	if (ch == NULL)
		return (0);
	fds[0] = rdp_clip_fd(ch->clip);
	fds[1] = rdp_sound_fd(ch->sound);
	fds[2] = rdp_disp_fd(ch->disp);
	for (i = 0; i < 3 && n < max; i++) {
		if (fds[i] < 0)
			continue;
		pfd[n].fd = fds[i];
		pfd[n].events = POLLIN;
		pfd[n++].revents = 0;
	}
	return (n);
}

/*
 * After the peer's check: open the channels the client joined (once,
 * when it is active) and run them; what they queue goes out with the
 * channel manager's next check (its event wakes the session's poll). A
 * broken channel is dropped; the session goes on.
 */
void
rdp_chan_check(struct rdp_chan *ch, int activated, const char *who)
{
	char	*why = NULL;

	if (ch == NULL)
		return;
	if (activated && !ch->opened && ch->rfb != NULL) {
		ch->opened = 1;
		if (WTSVirtualChannelManagerIsChannelJoined(ch->vcm,
		    CLIPRDR_SVC_CHANNEL_NAME) && rdp_clip_open(ch->clip,
		    ch->vcm, ch->peer->context) != 0)
			log_warnx("RDP: cannot open the clipboard channel");
		if (ch->sound != NULL && WTSVirtualChannelManagerIsChannelJoined(
		    ch->vcm, "rdpsnd") && rdp_sound_open(ch->sound,
		    ch->vcm, ch->peer->context) != 0)
			log_warnx("RDP: cannot open the sound channel");
	}
	if (rdp_clip_check(ch->clip, ch->rfb, &why) != 0) {
		log_warnx("RDP: %s; the session goes on without it", why);
		free(why);
		why = NULL;
		rdp_clip_free(ch->clip);
		ch->clip = NULL;
		if (ch->rfb != NULL)
			ch->rfb->clip = NULL;
	}
	if (rdp_sound_check(ch->sound, ch->rfb, &why) != 0) {
		log_warnx("RDP: %s; the session goes on without it", why);
		free(why);
		rdp_sound_free(ch->sound);
		ch->sound = NULL;
		if (ch->rfb != NULL)
			ch->rfb->sound = NULL;
	}
	rdp_disp_check(ch->disp, ch->rfb, activated, who);
}

/* Milliseconds until rdp_chan_check has timed work, or -1. */
int
rdp_chan_timeout(struct rdp_chan *ch)
{
	if (ch == NULL)
		return (-1);
	return (rdp_disp_timeout(ch->disp));
}

/* The figures of the channels, for the session's last log lines. */
void
rdp_chan_log(struct rdp_chan *ch, const char *who)
{
	if (ch == NULL)
		return;
	rdp_clip_log(ch->clip, who);
	rdp_sound_log(ch->sound, who);
	rdp_disp_log(ch->disp, who);
}
