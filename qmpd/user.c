/*
 * Office users, their departments and the desktops assigned to them: the
 * model behind cmd-user.c's commands, the broker's and the pools'. Users
 * and departments are JSON records in userdb (DB_USERS, DB_DEPTS: LMDB,
 * or etcd in a cluster); a
 * desktop's owner is its VM definition's owner field, so deleting a VM
 * takes its assignment with it.
 */
#include <stdlib.h>
#include <string.h>

#include "log.h"
#include "qmpd.h"
#include "userdb.h"
#include "vm.h"
#include "xmalloc.h"

/* A user's record, or NULL; the caller owns it. */
json_t *
user_get(const char *login)
{
	return (userdb_get(DB_USERS, login));
}

/* The login a desktop is assigned to, or NULL. */
const char *
user_owner(const struct vm *vm)
{
	return (userdb_owner(vm->def.name, vm->def.owner));
}

/* Set or clear (login NULL) a desktop's owner, saved with the VM. */
int
user_set_owner(struct vm *vm, const char *login, char **cause)
{
	return (vm_set_field(vm, &vm->def.owner, login, cause));
}

/* A user's record as others see it: everything but the hash. */
json_t *
user_public(json_t *rec)
{
	json_t	*j;

	j = json_deep_copy(rec);
	json_object_del(j, "hash");
	json_object_set_new(j, "password", json_boolean(json_is_string(
	    json_object_get(rec, "hash"))));
	return (j);
}

/* The names of the desktops assigned to login (a cluster's, in etcd). */
json_t *
user_desktops(const char *login)
{
	json_t	*a;
	char	*cause = NULL;

	if ((a = user_match(USERDB_OWNERS, "login", login, &cause)) == NULL) {
		log_warnx("desktops of %s: %s", login, cause);
		free(cause);
		a = json_array();
	}
	return (a);
}

/* Records of table whose field equals value: who still uses a name. */
struct user_match {
	const char	*field;
	const char	*value;
	json_t		*keys;
};

static int
user_match_cb(const char *key, json_t *val, void *arg)
{
	struct user_match	*m = arg;
	const char		*v;

	v = json_string_value(json_object_get(val, m->field));
	if (v != NULL && strcmp(v, m->value) == 0)
		json_array_append_new(m->keys, json_string(key));
	return (0);
}

/* The keys of table's records whose field is value, or NULL with cause. */
json_t *
user_match(const char *table, const char *field, const char *value,
    char **cause)
{
	struct user_match	m = { field, value, json_array() };

	if (userdb_foreach(table, user_match_cb, &m, cause) < 0) {
		json_decref(m.keys);
		return (NULL);
	}
	return (m.keys);
}

/*
 * Is department dept (NULL: none) want, or below it? Parents are
 * followed up to 32 levels, so a loop in the records ends.
 */
int
user_dept_within(const char *dept, const char *want)
{
	json_t	*rec;
	char	*d;
	int	 depth, ok = 0;

	if (dept == NULL)
		return (0);
	d = xstrdup(dept);
	for (depth = 0; d != NULL && depth < 32 && !ok; depth++) {
		if (strcmp(d, want) == 0) {
			ok = 1;
			break;
		}
		rec = userdb_get(DB_DEPTS, d);
		free(d);
		d = NULL;
		if (rec != NULL && json_is_string(json_object_get(rec,
		    "parent")))
			d = xstrdup(json_string_value(json_object_get(rec,
			    "parent")));
		json_decref(rec);
	}
	free(d);
	return (ok);
}
