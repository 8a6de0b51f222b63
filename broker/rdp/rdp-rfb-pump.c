/*
 * The VNC stream's reader thread. It drains QEMU's socket into memory
 * while the session thread encodes the previous frame, so QEMU's VNC
 * server does not find its output still queued at a display refresh
 * (it then sends nothing that refresh and waits 50 ms longer for the
 * next), and it asks QEMU for the next update as soon as one is here
 * whole (onupdate), so a request is pending at every refresh. The
 * session thread still parses every message itself (clipboard, sound,
 * resize stay on it), is woken for whole messages only (msglen), so it
 * never waits inside an 8 MB update, and copies the bytes once, from
 * this buffer straight into its framebuffer.
 *
 * No backlog grows: QEMU sends at most one update a refresh (30 ms) and
 * the session applies all it has before each frame; past RDP_PUMP_SIZE
 * the thread stops reading until the session has taken everything (QEMU
 * then waits, as it did before). The buffer is linear: the thread
 * appends at len, the session takes from off, and the thread starts
 * again at 0 once the two meet, so neither ever moves bytes the other
 * is using.
 */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "compat.h"
#include "rdp-int.h"
#include "xmalloc.h"

/*
 * Room for a 3840x2160 update (33 MB) and more; pages are touched only
 * as far as the largest burst (a 1080p update is 8.3 MB).
 */
#define RDP_PUMP_SIZE	(64 * 1024 * 1024)

struct rdp_pump {
	int			 fd;		/* QEMU's socket; not ours */
	size_t			(*msglen)(const unsigned char *, size_t);
	void			(*onupdate)(void *);	/* a whole update in */
	void			*arg;
	int			 wake[2];	/* readable: bytes arrived */
	int			 stopp[2];	/* readable: stop reading */
	pthread_t		 thread;

	pthread_mutex_t		 mtx;
	pthread_cond_t		 cond;		/* bytes in, or room */
	unsigned char		*buf;
	size_t			 size;
	size_t			 off;		/* the session's next byte */
	size_t			 len;		/* the thread's next byte */
	size_t			 scan;		/* framed up to here */
	int			 framed;	/* past the handshake */
	int			 stop;
	int			 err;		/* errno of the end, or -1 EOF */
	uint64_t		 bytes;
	uint64_t		 updates;	/* whole updates read */
	uint64_t		 full;		/* times it waited for room */
	uint64_t		 waitus;	/* the session waited mid-message */
};

static uint64_t
rdp_pump_us(void)
{
	struct timespec	ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ((uint64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000);
}

/*
 * Under the lock: frame the messages that became whole since the last
 * scan (only past the handshake, whose bytes are no messages); how many
 * were framebuffer updates (type 0).
 */
static int
rdp_pump_scan(struct rdp_pump *p)
{
	size_t	n;
	int	updates = 0;

	if (!p->framed)
		return (0);
	if (p->scan < p->off)
		p->scan = p->off;
	while (p->scan < p->len &&
	    (n = p->msglen(p->buf + p->scan, p->len - p->scan)) != 0) {
		if (p->buf[p->scan] == 0)
			updates++;
		p->scan += n;
	}
	return (updates);
}

/* The thread: read what QEMU sends until EOF, an error or a stop. */
static void *
rdp_pump_main(void *arg)
{
	struct rdp_pump	*p = arg;
	struct pollfd	 pfd[2];
	unsigned char	*dst;
	size_t		 room;
	ssize_t		 n;
	int		 updates;

	pthread_mutex_lock(&p->mtx);
	for (;;) {
		if (p->off == p->len)
			p->off = p->len = p->scan = 0;
		if (p->stop)
			break;
		if (p->len == p->size) {
			p->full++;
			pthread_cond_wait(&p->cond, &p->mtx);
			continue;
		}
		dst = p->buf + p->len;
		room = p->size - p->len;
		pthread_mutex_unlock(&p->mtx);

		pfd[0] = (struct pollfd){ .fd = p->fd, .events = POLLIN };
		pfd[1] = (struct pollfd){ .fd = p->stopp[0], .events = POLLIN };
		n = -1;
		errno = EAGAIN;
		if (poll(pfd, 2, -1) > 0 && pfd[1].revents == 0)
			n = read(p->fd, dst, room);

		pthread_mutex_lock(&p->mtx);
		if (pfd[1].revents != 0)
			continue;	/* stop is set */
		if (n == -1 && (errno == EAGAIN || errno == EWOULDBLOCK ||
		    errno == EINTR))
			continue;
		if (n <= 0) {
			/*
			 * EOF, or a reset: QEMU killed with our last request
			 * unread (AF_UNIX says ECONNRESET then). Both are the
			 * desktop going away, and are told as such.
			 */
			p->err = n == 0 || errno == ECONNRESET ? -1 : errno;
			pthread_cond_broadcast(&p->cond);
			(void)write(p->wake[1], "", 1);
			break;
		}
		p->len += n;
		p->bytes += n;
		updates = rdp_pump_scan(p);
		p->updates += updates;
		pthread_cond_broadcast(&p->cond);
		/* The session polls this: a message may be whole now. */
		(void)write(p->wake[1], "", 1);
		/*
		 * Ask for the next update at once, so a request is pending
		 * at QEMU's every refresh even while the session encodes:
		 * a refresh that finds none adds 50 ms to QEMU's interval.
		 */
		if (updates > 0 && p->onupdate != NULL) {
			pthread_mutex_unlock(&p->mtx);
			p->onupdate(p->arg);
			pthread_mutex_lock(&p->mtx);
		}
	}
	pthread_mutex_unlock(&p->mtx);
	return (NULL);
}

/*
 * Start reading fd (non-blocking, still the caller's) on a thread;
 * msglen tells from the bytes in hand whether a whole message is there
 * (0: not yet), so the session takes only whole messages. Once framed
 * (rdp_pump_framed), onupdate(arg) runs on the thread for each whole
 * framebuffer update that arrives.
 */
struct rdp_pump *
rdp_pump_start(int fd, size_t (*msglen)(const unsigned char *, size_t),
    void (*onupdate)(void *), void *arg, char **cause)
{
	struct rdp_pump		*p;
	pthread_condattr_t	 ca;
	int			 rv;

	p = xcalloc(1, sizeof *p);
	p->fd = fd;
	p->msglen = msglen;
	p->onupdate = onupdate;
	p->arg = arg;
	p->wake[0] = p->wake[1] = p->stopp[0] = p->stopp[1] = -1;
	if (pipe2(p->wake, O_CLOEXEC | O_NONBLOCK) == -1 ||
	    pipe2(p->stopp, O_CLOEXEC | O_NONBLOCK) == -1) {
		xasprintf(cause, "VNC reader: pipe: %s", strerror(errno));
		goto fail;
	}
	p->size = RDP_PUMP_SIZE;
	p->buf = xmalloc(p->size);
	pthread_mutex_init(&p->mtx, NULL);
	/* Waits are timed on the monotonic clock, as the loop's are. */
	pthread_condattr_init(&ca);
	pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
	pthread_cond_init(&p->cond, &ca);
	pthread_condattr_destroy(&ca);
	if ((rv = pthread_create(&p->thread, NULL, rdp_pump_main, p)) != 0) {
		xasprintf(cause, "VNC reader: thread: %s", strerror(rv));
		pthread_cond_destroy(&p->cond);
		pthread_mutex_destroy(&p->mtx);
		goto fail;
	}
	pthread_setname_np(p->thread, "rdp-vnc-read");
	return (p);

fail:
	if (p->wake[0] != -1) {
		close(p->wake[0]);
		close(p->wake[1]);
	}
	if (p->stopp[0] != -1) {
		close(p->stopp[0]);
		close(p->stopp[1]);
	}
	free(p->buf);
	free(p);
	return (NULL);
}

/* Stop the thread and free everything but the socket. */
void
rdp_pump_stop(struct rdp_pump *p)
{
	if (p == NULL)
		return;
	pthread_mutex_lock(&p->mtx);
	p->stop = 1;
	pthread_cond_broadcast(&p->cond);
	pthread_mutex_unlock(&p->mtx);
	(void)write(p->stopp[1], "", 1);
	pthread_join(p->thread, NULL);
	pthread_cond_destroy(&p->cond);
	pthread_mutex_destroy(&p->mtx);
	close(p->wake[0]);
	close(p->wake[1]);
	close(p->stopp[0]);
	close(p->stopp[1]);
	free(p->buf);
	free(p);
}

/*
 * The handshake is over (the session read exactly its bytes): from here
 * on the bytes are server messages, framed by the thread as they come.
 */
void
rdp_pump_framed(struct rdp_pump *p)
{
	pthread_mutex_lock(&p->mtx);
	p->framed = 1;
	p->scan = p->off;
	(void)rdp_pump_scan(p);
	pthread_mutex_unlock(&p->mtx);
}

/* The fd the session polls: readable when bytes (or the end) arrived. */
int
rdp_pump_fd(const struct rdp_pump *p)
{
	return (p->wake[0]);
}

/*
 * The session saw the fd readable: empty it before it looks at the
 * buffer, so bytes that come after the look wake it again.
 */
void
rdp_pump_clear(struct rdp_pump *p)
{
	char	buf[64];

	while (read(p->wake[0], buf, sizeof buf) > 0)
		;
}

/*
 * Whether the session may parse without waiting: a whole message in
 * hand, or the stream ended. A full buffer counts too (a message longer
 * than the buffer is read as it comes, or refused by the parser).
 */
int
rdp_pump_buffered(struct rdp_pump *p)
{
	int	rv;

	pthread_mutex_lock(&p->mtx);
	rv = p->err != 0 || p->len == p->size || (p->len > p->off &&
	    p->msglen(p->buf + p->off, p->len - p->off) != 0);
	pthread_mutex_unlock(&p->mtx);
	return (rv);
}

/*
 * What went through, how often the buffer was full, and how long the
 * session waited for the rest of a message (ms).
 */
void
rdp_pump_stats(struct rdp_pump *p, uint64_t *bytes, uint64_t *updates,
    uint64_t *full, uint64_t *waitms)
{
	pthread_mutex_lock(&p->mtx);
	*bytes = p->bytes;
	*updates = p->updates;
	*full = p->full;
	*waitms = p->waitus / 1000;
	pthread_mutex_unlock(&p->mtx);
}

/*
 * Take len bytes into dst (NULL: drop them), waiting at most timeout ms
 * for each part: QEMU writes a message whole, so a long wait in the
 * middle of one means it is gone or stuck. The copy runs outside the
 * lock: the thread never writes below len nor resets while off < len.
 */
int
rdp_pump_read(struct rdp_pump *p, void *dst, size_t len, int timeout,
    char **cause)
{
	unsigned char	*d = dst;
	struct timespec	 until;
	size_t		 have;
	uint64_t	 t0;
	int		 rv = 0, w;

	clock_gettime(CLOCK_MONOTONIC, &until);
	until.tv_sec += timeout / 1000;
	until.tv_nsec += (long)(timeout % 1000) * 1000000;
	if (until.tv_nsec >= 1000000000) {
		until.tv_sec++;
		until.tv_nsec -= 1000000000;
	}
	pthread_mutex_lock(&p->mtx);
	while (len > 0) {
		if (p->len == p->off) {
			if (p->err == -1) {
				xasprintf(cause, "the console's VNC "
				    "connection closed (the desktop "
				    "stopped?)");
				rv = -1;
				break;
			}
			if (p->err != 0) {
				xasprintf(cause, "VNC connection: read: %s",
				    strerror(p->err));
				rv = -1;
				break;
			}
			t0 = rdp_pump_us();
			w = pthread_cond_timedwait(&p->cond, &p->mtx, &until);
			p->waitus += rdp_pump_us() - t0;
			if (w == ETIMEDOUT && p->len == p->off) {
				xasprintf(cause, "VNC connection: QEMU sent "
				    "nothing for %d s", timeout / 1000);
				rv = -1;
				break;
			}
			continue;
		}
		have = p->len - p->off;
		if (have > len)
			have = len;
		if (d != NULL) {
			pthread_mutex_unlock(&p->mtx);
			memcpy(d, p->buf + p->off, have);
			d += have;
			pthread_mutex_lock(&p->mtx);
		}
		p->off += have;
		len -= have;
		if (p->off == p->len)
			pthread_cond_broadcast(&p->cond);	/* room */
	}
	pthread_mutex_unlock(&p->mtx);
	return (rv);
}
