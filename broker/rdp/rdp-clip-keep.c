/*
 * The guest's clipboard while no RDP session is open (issue 12).
 *
 * QEMU 7.2 tells a VNC connection about the clipboard only when it
 * changes (ui/vnc-clipboard.c: vnc_server_cut_text_caps registers the
 * peer and announces nothing; a REQUEST is ignored until the next
 * QEMU_CLIPBOARD_UPDATE_INFO set vs->cbinfo), and no peek exists. A copy
 * in the guest while no VNC client is there is therefore lost to every
 * later client. So when a session's client leaves, its VNC connection
 * stays open as a keeper: no screen (no update requests, the sound
 * capture turned off), only the clipboard. Each NOTIFY of the guest's is
 * fetched at once and kept (rdp-clip-cache.c) for that login and
 * desktop, as the session did; the next session offers it to its client
 * as if the guest had just copied it.
 *
 * A keeper ends when a new session on the same desktop has its own
 * clipboard peer registered at QEMU (its VNC caps arrived: from then on
 * QEMU tells that session, so nothing falls between the two), when the
 * VNC stream ends (the desktop stopped or moved), after
 * RDP_CLIP_CACHE_TTL, or when RDP_CLIP_KEEP_MAX keepers exist and a
 * newer one needs the room (the oldest goes). One thread each, detached,
 * polling only its VNC stream and a stop pipe.
 */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "compat.h"
#include "log.h"
#include "queue.h"
#include "rdp-chan.h"
#include "rdp-int.h"
#include "xmalloc.h"

struct rdp_clip_keeper {
	char				 login[RDP_LOGIN_MAX];
	char				 vm[RDP_VM_MAX];
	struct rdp_rfb			*rfb;
	struct rdp_clip			*clip;
	int				 stopp[2];	/* stop: a byte */
	int				 stopped;	/* under the lock */
	TAILQ_ENTRY(rdp_clip_keeper)	 entry;		/* oldest first */
};
TAILQ_HEAD(rdp_clip_keepers, rdp_clip_keeper);

static pthread_mutex_t		 rdp_clip_keep_lock = PTHREAD_MUTEX_INITIALIZER;
static struct rdp_clip_keepers	 rdp_clip_keepers =
    TAILQ_HEAD_INITIALIZER(rdp_clip_keepers);
static int			 rdp_clip_keep_n;

static uint64_t
rdp_clip_keep_s(void)
{
	struct timespec	ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (ts.tv_sec);
}

/* Tell keeper k to end; the lock is held. Its thread frees it. */
static void
rdp_clip_keep_signal(struct rdp_clip_keeper *k)
{
	if (k->stopped)
		return;
	k->stopped = 1;
	(void)write(k->stopp[1], "", 1);
}

/* Run keeper k's VNC stream until it ends or k is stopped. */
static void
rdp_clip_keep_run(struct rdp_clip_keeper *k)
{
	struct pollfd	 pfd[2];
	uint64_t	 until;
	char		*cause = NULL;
	int		 n, i, timeout;

	until = rdp_clip_keep_s() + RDP_CLIP_CACHE_TTL;
	for (;;) {
		pfd[0] = (struct pollfd){ .fd = rdp_rfb_pollfd(k->rfb),
		    .events = POLLIN };
		pfd[1] = (struct pollfd){ .fd = k->stopp[0],
		    .events = POLLIN };
		timeout = rdp_rfb_buffered(k->rfb) ? 0 : 1000;
		n = poll(pfd, 2, timeout);
		if (n == -1 && errno != EINTR) {
			log_warn("RDP clipboard keeper for %s on %s: poll",
			    k->login, k->vm);
			return;
		}
		if (pfd[1].revents != 0) {
			log_info("RDP clipboard keeper for %s on %s: a new "
			    "session has the clipboard", k->login, k->vm);
			return;
		}
		if (rdp_clip_keep_s() > until) {
			log_info("RDP clipboard keeper for %s on %s: %d s "
			    "passed", k->login, k->vm, RDP_CLIP_CACHE_TTL);
			return;
		}
		for (i = 0; i < 64 && rdp_rfb_ready(k->rfb, i == 0 &&
		    pfd[0].revents != 0); i++) {
			if (rdp_rfb_process(k->rfb, &cause) != 0) {
				log_info("RDP clipboard keeper for %s on %s: "
				    "%s", k->login, k->vm, cause);
				free(cause);
				return;
			}
			/* Damage is not sent anywhere: drop it. */
			k->rfb->ndamage = 0;
		}
	}
}

static void *
rdp_clip_keep_main(void *arg)
{
	struct rdp_clip_keeper	*k = arg;

	rdp_clip_keep_run(k);
	pthread_mutex_lock(&rdp_clip_keep_lock);
	TAILQ_REMOVE(&rdp_clip_keepers, k, entry);
	rdp_clip_keep_n--;
	pthread_mutex_unlock(&rdp_clip_keep_lock);
	rdp_rfb_free(k->rfb);	/* QEMU unregisters the peer */
	rdp_clip_free(k->clip);
	close(k->stopp[0]);
	close(k->stopp[1]);
	free(k);
	return (NULL);
}

/*
 * Keep rfb's VNC connection for the clipboard of login on vm once its
 * session has ended. Takes rfb and returns 0, or returns -1 (rfb stays
 * the caller's) when there is nothing to keep: no extended clipboard
 * (no NOTIFY would come), or the stream is gone.
 */
int
rdp_clip_keep_start(struct rdp_rfb *rfb, const char *login, const char *vm)
{
	static const unsigned char	 audio_off[] = { 255, 1, 0, 1 };
	struct rdp_clip_keeper		*k;
	pthread_attr_t			 attr;
	pthread_t			 tid;
	sigset_t			 all, old;
	int				 error;

	if (rfb == NULL || !rfb->cbext || rfb->fd == -1)
		return (-1);
	k = xcalloc(1, sizeof *k);
	strlcpy(k->login, login, sizeof k->login);
	strlcpy(k->vm, vm, sizeof k->vm);
	if (pipe2(k->stopp, O_CLOEXEC | O_NONBLOCK) != 0) {
		log_warn("RDP clipboard keeper: pipe");
		free(k);
		return (-1);
	}
	/*
	 * No more screen: the reader thread stops asking for updates, and
	 * QEMU stops capturing sound for us (the session's clipboard and
	 * sound are freed with the session; the keeper has its own).
	 */
	__atomic_store_n(&rfb->quiet, 1, __ATOMIC_RELAXED);
	if (rfb->audio && rdp_rfb_send(rfb, audio_off, sizeof audio_off) != 0)
		log_warnx("RDP clipboard keeper: VNC write failed");
	rfb->sound = NULL;
	k->clip = rdp_clip_create();
	rdp_clip_owner(k->clip, login, vm);
	rfb->clip = k->clip;
	k->rfb = rfb;

	pthread_mutex_lock(&rdp_clip_keep_lock);
	if (rdp_clip_keep_n >= RDP_CLIP_KEEP_MAX) {
		struct rdp_clip_keeper	*old_k;

		TAILQ_FOREACH(old_k, &rdp_clip_keepers, entry) {
			if (!old_k->stopped) {
				rdp_clip_keep_signal(old_k);
				break;
			}
		}
	}
	TAILQ_INSERT_TAIL(&rdp_clip_keepers, k, entry);
	rdp_clip_keep_n++;
	pthread_attr_init(&attr);
	pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
	sigfillset(&all);
	pthread_sigmask(SIG_SETMASK, &all, &old);
	error = pthread_create(&tid, &attr, rdp_clip_keep_main, k);
	pthread_sigmask(SIG_SETMASK, &old, NULL);
	pthread_attr_destroy(&attr);
	if (error != 0) {
		TAILQ_REMOVE(&rdp_clip_keepers, k, entry);
		rdp_clip_keep_n--;
		pthread_mutex_unlock(&rdp_clip_keep_lock);
		log_warnx("RDP clipboard keeper: cannot start a thread: %s",
		    strerror(error));
		rfb->clip = NULL;
		rdp_clip_free(k->clip);
		close(k->stopp[0]);
		close(k->stopp[1]);
		free(k);
		return (-1);
	}
	pthread_mutex_unlock(&rdp_clip_keep_lock);
	log_info("RDP clipboard keeper for %s on %s: the guest's clipboard "
	    "is watched until the next session", login, vm);
	return (0);
}

/*
 * A new session on vm has its own clipboard peer at QEMU: the keepers of
 * vm (whoever's) end, so another user's copies are never kept for them.
 */
void
rdp_clip_keep_stop(const char *vm)
{
	struct rdp_clip_keeper	*k;

	if (vm == NULL || *vm == '\0')
		return;
	pthread_mutex_lock(&rdp_clip_keep_lock);
	TAILQ_FOREACH(k, &rdp_clip_keepers, entry) {
		if (strcmp(k->vm, vm) == 0)
			rdp_clip_keep_signal(k);
	}
	pthread_mutex_unlock(&rdp_clip_keep_lock);
}
