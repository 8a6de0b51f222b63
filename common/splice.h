/*
 * Two bufferevents joined into one byte stream, each way, with
 * backpressure: a cluster host's TLS connection turned into the VNC
 * stream of a desktop (qmpd/cluster-listen.c), and the broker's end of it
 * (broker/cluster-stream.c). Both bufferevents are taken; when either
 * side ends, what it sent is flushed to the other, then both are freed.
 */
#ifndef QDESK_SPLICE_H
#define QDESK_SPLICE_H

struct bufferevent;

void	splice_join(struct bufferevent *, struct bufferevent *);

#endif
