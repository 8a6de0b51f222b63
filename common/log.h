/* Logging in the manner of vmd: stderr in the foreground, syslog detached. */
#ifndef QDESK_LOG_H
#define QDESK_LOG_H

#include <stdarg.h>

#include <jansson.h>

void	log_init(const char *, int foreground, int verbose);
void	log_setverbose(int);
int	log_getverbose(void);
void	log_warn(const char *, ...) __attribute__((format(printf, 1, 2)));
void	log_warnx(const char *, ...) __attribute__((format(printf, 1, 2)));
void	log_info(const char *, ...) __attribute__((format(printf, 1, 2)));
void	log_debug(const char *, ...) __attribute__((format(printf, 1, 2)));
/*
 * An event, for log shippers: the message, then event=EVENT and each
 * scalar of fields (borrowed, may be NULL) as key=value, values quoted
 * when they hold spaces, quotes or '='. warn picks LOG_WARNING over info.
 */
void	log_event(int warn, const char *event, json_t *fields,
	    const char *, ...) __attribute__((format(printf, 4, 5)));
/* The " event=... k=v" text of log_event, owned by the caller. */
char	*log_fields(const char *event, json_t *fields);
void	fatal(const char *, ...) __attribute__((format(printf, 1, 2), noreturn));
void	fatalx(const char *, ...) __attribute__((format(printf, 1, 2), noreturn));

#endif
