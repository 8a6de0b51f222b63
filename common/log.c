/*
 * Logging: stderr with a timestamp while in the foreground, syslog once the
 * daemon has detached. log_warn appends strerror(errno) as vmd's does.
 */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <syslog.h>
#include <time.h>

#include "log.h"
#include "textbuf.h"

static int	 log_foreground = 1;
static int	 log_verbose;
static const char *log_procname = "qdesk";

void
log_init(const char *name, int foreground, int verbose)
{
	log_procname = name;
	log_foreground = foreground;
	log_verbose = verbose;
	if (!foreground)
		openlog(name, LOG_PID | LOG_NDELAY, LOG_DAEMON);
	tzset();
}

void
log_setverbose(int v)
{
	log_verbose = v;
}

int
log_getverbose(void)
{
	return (log_verbose);
}

static void
log_vwrite(int pri, const char *fmt, va_list ap, const char *suffix)
{
	char		 msg[4096];
	struct timespec	 ts;
	struct tm	 tm;

	vsnprintf(msg, sizeof msg, fmt, ap);
	if (!log_foreground) {
		if (suffix != NULL)
			syslog(pri, "%s: %s", msg, suffix);
		else
			syslog(pri, "%s", msg);
		return;
	}
	clock_gettime(CLOCK_REALTIME, &ts);
	localtime_r(&ts.tv_sec, &tm);
	if (suffix != NULL)
		fprintf(stderr, "%02d:%02d:%02d.%03ld %s: %s: %s\n", tm.tm_hour,
		    tm.tm_min, tm.tm_sec, ts.tv_nsec / 1000000, log_procname,
		    msg, suffix);
	else
		fprintf(stderr, "%02d:%02d:%02d.%03ld %s: %s\n", tm.tm_hour,
		    tm.tm_min, tm.tm_sec, ts.tv_nsec / 1000000, log_procname,
		    msg);
}

void
log_warn(const char *fmt, ...)
{
	va_list	 ap;
	int	 saved = errno;

	va_start(ap, fmt);
	log_vwrite(LOG_ERR, fmt, ap, strerror(saved));
	va_end(ap);
	errno = saved;
}

void
log_warnx(const char *fmt, ...)
{
	va_list	 ap;

	va_start(ap, fmt);
	log_vwrite(LOG_ERR, fmt, ap, NULL);
	va_end(ap);
}

void
log_info(const char *fmt, ...)
{
	va_list	 ap;

	va_start(ap, fmt);
	log_vwrite(LOG_INFO, fmt, ap, NULL);
	va_end(ap);
}

void
log_debug(const char *fmt, ...)
{
	va_list	 ap;

	if (log_verbose < 1)
		return;
	va_start(ap, fmt);
	log_vwrite(LOG_DEBUG, fmt, ap, NULL);
	va_end(ap);
}

/* A value as logfmt wants it: bare when it can be, else quoted. */
static void
log_field_value(struct textbuf *tb, const char *v)
{
	const char	*p;

	if (*v != '\0' && strpbrk(v, " \t\"=\\\n") == NULL) {
		textbuf_printf(tb, "%s", v);
		return;
	}
	textbuf_printf(tb, "\"");
	for (p = v; *p != '\0'; p++) {
		if (*p == '"' || *p == '\\')
			textbuf_printf(tb, "\\%c", *p);
		else if (*p == '\n')
			textbuf_printf(tb, "\\n");
		else if ((unsigned char)*p < ' ')
			textbuf_printf(tb, "\\x%02x", (unsigned char)*p);
		else
			textbuf_printf(tb, "%c", *p);
	}
	textbuf_printf(tb, "\"");
}

char *
log_fields(const char *event, json_t *fields)
{
	struct textbuf	 tb = { 0 };
	const char	*k;
	json_t		*v;
	char		 num[64];

	textbuf_printf(&tb, " event=");
	log_field_value(&tb, event);
	json_object_foreach(fields, k, v) {
		if (json_is_string(v))
			snprintf(num, sizeof num, "%s", "");
		else if (json_is_integer(v))
			snprintf(num, sizeof num, "%" JSON_INTEGER_FORMAT,
			    json_integer_value(v));
		else if (json_is_real(v))
			snprintf(num, sizeof num, "%g", json_real_value(v));
		else if (json_is_boolean(v))
			snprintf(num, sizeof num, "%s", json_is_true(v) ?
			    "true" : "false");
		else
			continue;
		textbuf_printf(&tb, " %s=", k);
		log_field_value(&tb, json_is_string(v) ?
		    json_string_value(v) : num);
	}
	return (textbuf_finish(&tb));
}

void
log_event(int warn, const char *event, json_t *fields, const char *fmt, ...)
{
	va_list	 ap;
	char	*msg, *kv;

	va_start(ap, fmt);
	if (vasprintf(&msg, fmt, ap) == -1)
		msg = NULL;
	va_end(ap);
	kv = log_fields(event, fields);
	if (warn)
		log_warnx("%s%s", msg != NULL ? msg : event, kv);
	else
		log_info("%s%s", msg != NULL ? msg : event, kv);
	free(kv);
	free(msg);
}

void
fatal(const char *fmt, ...)
{
	va_list	 ap;
	int	 saved = errno;

	va_start(ap, fmt);
	log_vwrite(LOG_CRIT, fmt, ap, strerror(saved));
	va_end(ap);
	exit(1);
}

void
fatalx(const char *fmt, ...)
{
	va_list	 ap;

	va_start(ap, fmt);
	log_vwrite(LOG_CRIT, fmt, ap, NULL);
	va_end(ap);
	exit(1);
}
