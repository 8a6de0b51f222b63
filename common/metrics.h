/*
 * The Prometheus text exposition format (version 0.0.4), written into a
 * textbuf: a family's HELP and TYPE lines, then its samples. Pure, for
 * both daemons' /metrics; histograms keep their buckets here too.
 */
#ifndef QDESK_METRICS_H
#define QDESK_METRICS_H

#include <stdint.h>

#include "textbuf.h"

#define METRICS_CONTENT_TYPE	"text/plain; version=0.0.4; charset=utf-8"
#define METRICS_HIST_MAX	16

/* A histogram: upper bounds ascending, +Inf implied. Zero the rest. */
struct metrics_hist {
	const double	*bounds;
	int		 nbounds;		/* at most METRICS_HIST_MAX */
	uint64_t	 counts[METRICS_HIST_MAX];	/* not cumulative */
	uint64_t	 count;
	double		 sum;
};

/* HELP and TYPE ("counter", "gauge", "histogram") of a family. */
void	 metrics_family(struct textbuf *, const char *name, const char *type,
	    const char *help);
/*
 * One sample. labels is NULL or "k1", "v1", ..., NULL (label values are
 * escaped here, names must be valid already).
 */
void	 metrics_sample(struct textbuf *, const char *name, double value,
	    const char *label, ...);
/* A family of one sample without labels: a counter's or a gauge's. */
void	 metrics_scalar(struct textbuf *, const char *name, const char *type,
	    const char *help, double value);
void	 metrics_hist_observe(struct metrics_hist *, double value);
/* A histogram's buckets, sum and count, under its family line. */
void	 metrics_hist_write(struct textbuf *, const char *name,
	    const struct metrics_hist *);

#endif
