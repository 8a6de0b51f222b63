/*
 * The Prometheus text exposition format, version 0.0.4: what both
 * daemons' /metrics answer. Counters and gauges are written as they are
 * read; histograms are kept here, bucket counts plus sum and count.
 */
#include <math.h>
#include <stdint.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "metrics.h"

/* HELP text escapes backslash and newline; label values also the quote. */
static void
metrics_escape(struct textbuf *tb, const char *s, int quote)
{
	for (; *s != '\0'; s++) {
		if (*s == '\\')
			textbuf_printf(tb, "\\\\");
		else if (*s == '\n')
			textbuf_printf(tb, "\\n");
		else if (*s == '"' && quote)
			textbuf_printf(tb, "\\\"");
		else
			textbuf_printf(tb, "%c", *s);
	}
}

void
metrics_family(struct textbuf *tb, const char *name, const char *type,
    const char *help)
{
	textbuf_printf(tb, "# HELP %s ", name);
	metrics_escape(tb, help, 0);
	textbuf_printf(tb, "\n# TYPE %s %s\n", name, type);
}

/* A value as Prometheus reads it: integers exact, +Inf spelled out. */
static void
metrics_value(struct textbuf *tb, double v)
{
	if (isinf(v))
		textbuf_printf(tb, v > 0 ? "+Inf" : "-Inf");
	else if (isnan(v))
		textbuf_printf(tb, "NaN");
	else if (v == (double)(long long)v && v < 1e15 && v > -1e15)
		textbuf_printf(tb, "%lld", (long long)v);
	else
		textbuf_printf(tb, "%.9g", v);
}

/* One sample line with its labels in pairs from ap. */
static void
metrics_vsample(struct textbuf *tb, const char *name, double value,
    const char *label, va_list ap)
{
	const char	*v;
	int		 first = 1;

	textbuf_printf(tb, "%s", name);
	while (label != NULL) {
		v = va_arg(ap, const char *);
		textbuf_printf(tb, "%s%s=\"", first ? "{" : ",", label);
		metrics_escape(tb, v != NULL ? v : "", 1);
		textbuf_printf(tb, "\"");
		first = 0;
		label = va_arg(ap, const char *);
	}
	textbuf_printf(tb, "%s ", first ? "" : "}");
	metrics_value(tb, value);
	textbuf_printf(tb, "\n");
}

void
metrics_sample(struct textbuf *tb, const char *name, double value,
    const char *label, ...)
{
	va_list	ap;

	va_start(ap, label);
	metrics_vsample(tb, name, value, label, ap);
	va_end(ap);
}

void
metrics_scalar(struct textbuf *tb, const char *name, const char *type,
    const char *help, double value)
{
	metrics_family(tb, name, type, help);
	metrics_sample(tb, name, value, NULL);
}

void
metrics_hist_observe(struct metrics_hist *h, double value)
{
	int	i;

	for (i = 0; i < h->nbounds; i++) {
		if (value <= h->bounds[i]) {
			h->counts[i]++;
			break;
		}
	}
	h->count++;
	h->sum += value;
}

void
metrics_hist_write(struct textbuf *tb, const char *name,
    const struct metrics_hist *h)
{
	char		 n[128], le[32];
	uint64_t	 cum = 0;
	int		 i;

	snprintf(n, sizeof n, "%s_bucket", name);
	for (i = 0; i < h->nbounds; i++) {
		cum += h->counts[i];
		snprintf(le, sizeof le, "%g", h->bounds[i]);
		metrics_sample(tb, n, (double)cum, "le", le, NULL);
	}
	metrics_sample(tb, n, (double)h->count, "le", "+Inf", NULL);
	snprintf(n, sizeof n, "%s_sum", name);
	metrics_sample(tb, n, h->sum, NULL);
	snprintf(n, sizeof n, "%s_count", name);
	metrics_sample(tb, n, (double)h->count, NULL);
}
