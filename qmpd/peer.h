/*
 * peer.c: a client one qmpd uses to call another host's qmpd, over the
 * same JSON-lines protocol as the admin socket (proto.h). Addresses:
 *
 *   unix:PATH          another qmpd's socket on this machine (tests, and
 *                      root over a unix socket is admin: it may call the
 *                      host-to-host commands too)
 *   tls:ADDR:PORT      the cluster listener of another host (mutual TLS
 *                      with qmpd->cluster's ca, cert and key)
 *
 * Calls get an id and wait in a FIFO, as qmp.c's do; no callback ever
 * fires from inside peer_call. When the connection closes every pending
 * callback fires once with errclass "Disconnected", then the close
 * callback. peer_free from inside any callback is allowed.
 */
#ifndef QDESK_PEER_H
#define QDESK_PEER_H

#include <jansson.h>

struct peer;

/* ret borrowed, errclass NULL on success; else errclass and desc. */
typedef void	(*peer_reply_cb)(struct peer *, json_t *ret,
		    const char *errclass, const char *desc, void *arg);
/* The connection is gone (cause says why); the peer must still be freed. */
typedef void	(*peer_close_cb)(struct peer *, const char *cause, void *arg);

struct peer	*peer_open(const char *addr, peer_close_cb, void *arg,
		    char **cause);
/* The same, and a tls: peer's certificate must have CN cn (NULL: any). */
struct peer	*peer_open_cn(const char *addr, const char *cn,
		    peer_close_cb, void *arg, char **cause);
/* args stolen (may be NULL). -1 once the connection is closed. */
int		 peer_call(struct peer *, const char *cmd, json_t *args,
		    peer_reply_cb, void *arg);
/*
 * The same for a call whose answer turns the connection into a byte
 * stream (image.fetch): the only call on the peer; from its callback,
 * peer_take_stream hands the connection over.
 */
int		 peer_call_stream(struct peer *, const char *cmd,
		    json_t *args, peer_reply_cb, void *arg);
struct bufferevent;
struct bufferevent *peer_take_stream(struct peer *);
void		 peer_free(struct peer *);
const char	*peer_addr(const struct peer *);
/* Is addr one peer_open understands ("unix:..." or "tls:...")? */
int		 peer_addr_valid(const char *addr);

#endif
