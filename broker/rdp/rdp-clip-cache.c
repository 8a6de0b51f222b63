/*
 * The guest's last clipboard text per user and desktop, kept by the
 * gateway across RDP sessions (issue 12), so a client that reconnects is
 * offered what was copied in the desktop before it left.
 *
 * Why a cache and not QEMU: QEMU 7.2's VNC server tells a client about
 * the clipboard only when it changes (ui/vnc-clipboard.c: the peer is
 * registered in vnc_server_cut_text_caps, and vs->cbinfo is set only by
 * the next QEMU_CLIPBOARD_UPDATE_INFO), and it ignores a REQUEST while
 * vs->cbinfo is NULL. A new VNC connection therefore can neither learn
 * nor ask for the text the guest already holds.
 *
 * The session threads share it, under one lock; entries are keyed by
 * login and desktop (a desktop given to another user never shows them
 * the old one's text) and capped in number and bytes, least recently
 * used first out, and for RDP_CLIP_CACHE_TTL at most (a clipboard may
 * hold a password; it is wiped when dropped). Between sessions the
 * desktop's clipboard keeper (rdp-clip-keep.c) puts what the guest
 * copies meanwhile; before a desktop's first session nothing does.
 */
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "compat.h"
#include "queue.h"
#include "rdp-chan.h"
#include "rdp-int.h"
#include "xmalloc.h"

struct rdp_clip_entry {
	char				 login[RDP_LOGIN_MAX];
	char				 vm[RDP_VM_MAX];
	char				*text;		/* UTF-8 */
	size_t				 len;
	time_t				 kept;		/* monotonic s */
	TAILQ_ENTRY(rdp_clip_entry)	 entry;	/* most recent first */
};
TAILQ_HEAD(rdp_clip_entries, rdp_clip_entry);

static pthread_mutex_t		 rdp_clip_cache_lock = PTHREAD_MUTEX_INITIALIZER;
static struct rdp_clip_entries	 rdp_clip_cache =
    TAILQ_HEAD_INITIALIZER(rdp_clip_cache);
static size_t			 rdp_clip_cache_n;
static size_t			 rdp_clip_cache_bytes;

static time_t
rdp_clip_cache_now(void)
{
	struct timespec	ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (ts.tv_sec);
}

/* The entry of login on vm, or NULL; the lock is held. */
static struct rdp_clip_entry *
rdp_clip_cache_find(const char *login, const char *vm)
{
	struct rdp_clip_entry	*e;

	TAILQ_FOREACH(e, &rdp_clip_cache, entry) {
		if (strcmp(e->login, login) == 0 && strcmp(e->vm, vm) == 0)
			return (e);
	}
	return (NULL);
}

/* Drop e; the lock is held. */
static void
rdp_clip_cache_drop(struct rdp_clip_entry *e)
{
	TAILQ_REMOVE(&rdp_clip_cache, e, entry);
	rdp_clip_cache_n--;
	rdp_clip_cache_bytes -= e->len;
	explicit_bzero(e->text, e->len);
	free(e->text);
	free(e);
}

/*
 * Keep text (len bytes of UTF-8) as the guest's clipboard for login on
 * vm; NULL forgets it (the guest's clipboard changed or is empty, or the
 * client's copy replaced it).
 */
void
rdp_clip_cache_put(const char *login, const char *vm, const char *text,
    size_t len)
{
	struct rdp_clip_entry	*e;

	if (login == NULL || vm == NULL || *login == '\0' || *vm == '\0' ||
	    strlen(login) >= RDP_LOGIN_MAX || strlen(vm) >= RDP_VM_MAX)
		return;
	pthread_mutex_lock(&rdp_clip_cache_lock);
	if ((e = rdp_clip_cache_find(login, vm)) != NULL)
		rdp_clip_cache_drop(e);
	if (text != NULL && len > 0 && len <= RDP_CLIP_MAX) {
		e = xcalloc(1, sizeof *e);
		strlcpy(e->login, login, sizeof e->login);
		strlcpy(e->vm, vm, sizeof e->vm);
		e->text = xmalloc(len + 1);
		memcpy(e->text, text, len);
		e->text[len] = '\0';
		e->len = len;
		e->kept = rdp_clip_cache_now();
		TAILQ_INSERT_HEAD(&rdp_clip_cache, e, entry);
		rdp_clip_cache_n++;
		rdp_clip_cache_bytes += len;
		while (rdp_clip_cache_n > RDP_CLIP_CACHE_ENTRIES ||
		    rdp_clip_cache_bytes > RDP_CLIP_CACHE_BYTES)
			rdp_clip_cache_drop(TAILQ_LAST(&rdp_clip_cache,
			    rdp_clip_entries));
	}
	pthread_mutex_unlock(&rdp_clip_cache_lock);
}

/* A copy of the text kept for login on vm (its length in *len), or NULL. */
char *
rdp_clip_cache_get(const char *login, const char *vm, size_t *len)
{
	struct rdp_clip_entry	*e;
	char			*text = NULL;

	*len = 0;
	if (login == NULL || vm == NULL)
		return (NULL);
	pthread_mutex_lock(&rdp_clip_cache_lock);
	if ((e = rdp_clip_cache_find(login, vm)) != NULL &&
	    rdp_clip_cache_now() - e->kept > RDP_CLIP_CACHE_TTL) {
		rdp_clip_cache_drop(e);
		e = NULL;
	}
	if (e != NULL) {
		TAILQ_REMOVE(&rdp_clip_cache, e, entry);
		TAILQ_INSERT_HEAD(&rdp_clip_cache, e, entry);
		text = xmalloc(e->len + 1);
		memcpy(text, e->text, e->len + 1);
		*len = e->len;
	}
	pthread_mutex_unlock(&rdp_clip_cache_lock);
	return (text);
}
