/*
 * Every qmpd event (what `qdesk events` streams) as one log line with
 * key=value fields, for log shippers reading syslog or the journal:
 * "d1: vm.state event=vm.state vm=d1 state=running pid=4242".
 */
#include <jansson.h>

#include "log.h"
#include "qmpd.h"

/* A listener of qmpd's events (qmpd.c registers it). */
void
eventlog_event(const char *event, const char *vm, json_t *fields, void *arg)
{
	json_t	*f;

	f = json_object();
	if (vm != NULL)
		json_object_set_new(f, "vm", json_string(vm));
	if (json_is_object(fields))
		json_object_update_missing(f, fields);
	log_event(0, event, f, "%s%s%s", vm != NULL ? vm : "",
	    vm != NULL ? ": " : "", event);
	json_decref(f);
}
