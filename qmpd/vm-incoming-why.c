/*
 * Why a migration's target half ended (issue 14), for the source to say:
 * the source's QEMU only sees its stream cut ("Cannot write to TLS
 * channel"), while the target's QEMU wrote why it could not load it
 * ("Length mismatch: pc.ram: ...") to its qemu.log before it exited. The
 * source asks with migrate.status once its stream failed; the answer
 * waits for the half to end here, and the reason outlives the half's
 * record for a while, since the source may ask after it went.
 */
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <jansson.h>

#include "log.h"
#include "qmpd.h"
#include "vm.h"
#include "xmalloc.h"

#define VM_WHY_KEEP_S		600	/* an ended half's reason is kept */
#define VM_WHY_LINES		3	/* QEMU's last lines in a reason */
#define VM_WHY_LOG_MAX		(256 * 1024)
#define VM_WHY_LEN		600

/* Halves that ended here, by name: {"reason", "load_failed", "at"}. */
static json_t	*vm_why_ended;

/* Forget reasons nobody asked for in time. */
static void
vm_why_prune(time_t now)
{
	const char	*k;
	json_t		*v, *tmp;

	json_object_foreach_safe(vm_why_ended, tmp, k, v) {
		if (json_integer_value(json_object_get(v, "at")) +
		    VM_WHY_KEEP_S < now)
			json_object_del(vm_why_ended, k);
	}
}

/*
 * QEMU's last lines in the VM's qemu.log, its "qemu-system-x86_64: "
 * prefix off, joined with "; " (its own words on why a load failed: the
 * first says what, the last "load of migration failed"), or NULL.
 */
char *
vm_incoming_qemu_lines(struct vm *vm)
{
	char		*buf, *cause = NULL, *line, *last[VM_WHY_LINES], *out;
	char		*save = NULL, *p;
	size_t		 n = 0, i, len;

	if ((buf = vm_rundir_read(vm, "qemu.log", VM_WHY_LOG_MAX,
	    &cause)) == NULL) {
		log_debug("%s: qemu.log: %s", vm->def.name, cause);
		free(cause);
		return (NULL);
	}
	for (line = strtok_r(buf, "\n", &save); line != NULL;
	    line = strtok_r(NULL, "\n", &save)) {
		if (*line == '\0')
			continue;
		if (strncmp(line, "qemu-system-", 12) == 0 &&
		    (p = strstr(line, ": ")) != NULL)
			line = p + 2;
		if (n == VM_WHY_LINES) {
			memmove(last, last + 1, sizeof last[0] *
			    (VM_WHY_LINES - 1));
			n--;
		}
		last[n++] = line;
	}
	out = NULL;
	if (n > 0) {
		out = xcalloc(1, VM_WHY_LEN);
		for (i = 0; i < n; i++) {
			len = strlen(out);
			snprintf(out + len, VM_WHY_LEN - len, "%s%s",
			    i > 0 ? "; " : "", last[i]);
		}
		/* Its bytes are QEMU's: keep them printable on one line. */
		for (p = out; *p != '\0'; p++)
			if ((unsigned char)*p < 0x20 || *p == 0x7f)
				*p = ' ';
	}
	free(buf);
	return (out);
}

/* The answer to migrate.status for a half that ended with reason. */
static json_t *
vm_why_answer(const char *name, const json_t *ended)
{
	return (json_pack("{s:s,s:b,s:O?,s:b}", "name", name, "ended",
	    ended != NULL, "reason", ended != NULL ? json_object_get(ended,
	    "reason") : NULL, "load_failed", ended != NULL &&
	    json_is_true(json_object_get(ended, "load_failed"))));
}

/*
 * vm's half is going (its migration did not complete): keep why, and
 * answer the source if it is waiting for it.
 */
void
vm_incoming_ended(struct vm *vm)
{
	struct vm_mig	*m = vm->mig;
	json_t		*v;
	time_t		 now = time(NULL);

	if (m == NULL || !m->incoming || m->state == VM_MIG_COMPLETED)
		return;
	if (vm_why_ended == NULL)
		vm_why_ended = json_object();
	vm_why_prune(now);
	v = json_pack("{s:s,s:b,s:I}", "reason", m->reason != NULL ?
	    m->reason : "its QEMU exited", "load_failed", m->load_failed,
	    "at", (json_int_t)now);
	json_object_set_new(vm_why_ended, vm->def.name, v);
	if (m->status != NULL)
		done_ok(m->status, m->status_arg, vm_why_answer(vm->def.name,
		    v));
	m->status = NULL;
}

/*
 * migrate.status NAME: has the half of NAME ended here, and why. A half
 * still here is answered when it ends (the source asks because its
 * stream failed, so the target's QEMU is failing too; the source bounds
 * its wait, VM_MIG_WHY_S); a running or unknown VM at once.
 */
void
vm_incoming_status(const char *name, done_cb done, void *arg)
{
	struct vm	*vm = vm_find(name);
	struct vm_mig	*m = vm != NULL ? vm->mig : NULL;

	if (m != NULL && m->incoming && vm_migrate_busy(vm) &&
	    m->state != VM_MIG_SWITCHOVER) {
		if (m->status != NULL) {
			done_fail(done, arg, ERR_BUSY, "VM %s: a status is "
			    "waiting already", name);
			return;
		}
		m->status = done;
		m->status_arg = arg;
		return;
	}
	if (vm_why_ended != NULL)
		vm_why_prune(time(NULL));
	done_ok(done, arg, vm_why_answer(name, vm != NULL ? NULL :
	    json_object_get(vm_why_ended, name)));
}
