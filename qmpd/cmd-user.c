/*
 * dept.*, user.* and desktop.* commands: the office's departments, its
 * users with their yescrypt password hashes, and which desktop (VM)
 * belongs to whom. Records are JSON in userdb (DB_DEPTS, DB_USERS: LMDB,
 * or etcd in a cluster, so any host's command writes for all); a
 * desktop's owner is the "owner" field of its VM record (in a cluster
 * owners/VM in etcd), so deleting a VM takes its assignment with it, and
 * a user who still owns desktops cannot be removed. A write answers once
 * the store has it (at once for LMDB, after etcd's CAS in a cluster).
 */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "auth.h"
#include "cluster.h"
#include "log.h"
#include "names.h"
#include "qmpd.h"
#include "userdb.h"
#include "vm.h"
#include "xmalloc.h"

#define CMD_USER_NAME_MAX	128	/* a person's full name, bytes */
#define CMD_USER_SHOW_MAX	5	/* names listed in an error */

/* "a, b, c and 2 more", for an error an admin can act on. */
static char *
cmd_user_names(json_t *names)
{
	json_t	*v;
	char	*s = xstrdup(""), *t;
	size_t	 i, n = json_array_size(names);

	json_array_foreach(names, i, v) {
		if (i == CMD_USER_SHOW_MAX) {
			xasprintf(&t, "%s and %zu more", s, n - i);
			free(s);
			return (t);
		}
		xasprintf(&t, "%s%s%s", s, i == 0 ? "" : ", ",
		    json_string_value(v));
		free(s);
		s = t;
	}
	return (s);
}

/*
 * A write in flight: once userdb has it, log done, revoke the login's
 * sessions if asked (why), and answer reply.
 */
struct cmd_user_write {
	struct cmd_req	*req;
	json_t		*reply;
	char		*done;
	char		*login;
	const char	*why;
};

static void
cmd_user_write_cb(void *arg, const char *errclass, const char *cause)
{
	struct cmd_user_write	*w = arg;

	if (errclass != NULL) {
		cmd_error(w->req, errclass, "%s", cause);
		json_decref(w->reply);
	} else {
		log_info("%s", w->done);
		if (w->why != NULL)
			cmd_broker_revoke(w->login, NULL, w->why);
		cmd_reply(w->req, w->reply);
	}
	free(w->done);
	free(w->login);
	free(w);
}

static struct cmd_user_write *
cmd_user_write(struct cmd_req *req, json_t *reply, const char *login,
    const char *why, const char *fmt, ...)
    __attribute__((format(printf, 5, 6)));

/* What cmd_user_write_cb needs; reply is stolen. */
static struct cmd_user_write *
cmd_user_write(struct cmd_req *req, json_t *reply, const char *login,
    const char *why, const char *fmt, ...)
{
	struct cmd_user_write	*w = xcalloc(1, sizeof *w);
	va_list			 ap;

	w->req = req;
	w->reply = reply;
	w->login = login != NULL ? xstrdup(login) : NULL;
	w->why = why;
	va_start(ap, fmt);
	xvasprintf(&w->done, fmt, ap);
	va_end(ap);
	return (w);
}

/* A department, under an existing parent if one is named. */
static enum cmd_retval
cmd_user_dept_add(struct cmd_req *req)
{
	const char	*name = cmd_arg_str(req, "name", "");
	const char	*parent = cmd_arg_str(req, "parent", NULL);
	json_t		*rec;
	char		*cause = NULL;

	if (names_valid(name, "department", &cause) != 0) {
		cmd_fail(req, ERR_ARG, cause);
		return (CMD_RETURN_DONE);
	}
	if ((rec = userdb_get(DB_DEPTS, name)) != NULL) {
		json_decref(rec);
		cmd_error(req, ERR_EXISTS, "a department named %s already "
		    "exists", name);
		return (CMD_RETURN_DONE);
	}
	if (parent != NULL) {
		if ((rec = userdb_get(DB_DEPTS, parent)) == NULL) {
			cmd_error(req, ERR_NOTFOUND, "no department named %s "
			    "to be the parent of %s", parent, name);
			return (CMD_RETURN_DONE);
		}
		json_decref(rec);
	}
	rec = json_pack("{s:s,s:s?,s:I}", "name", name, "parent", parent,
	    "created", (json_int_t)time(NULL));
	userdb_put(DB_DEPTS, name, rec, USERDB_CREATE, cmd_user_write_cb,
	    cmd_user_write(req, json_incref(rec), NULL, NULL,
	    "department %s added", name));
	json_decref(rec);
	return (CMD_RETURN_WAIT);
}

/* How many users each department has, for dept.list. */
static int
cmd_user_count_cb(const char *key, json_t *val, void *arg)
{
	json_t		*counts = arg;
	const char	*dept = json_string_value(json_object_get(val, "dept"));

	if (dept != NULL)
		json_object_set_new(counts, dept, json_integer(1 +
		    json_integer_value(json_object_get(counts, dept))));
	return (0);
}

static int
cmd_user_dept_list_cb(const char *key, json_t *val, void *arg)
{
	json_t	*a = arg, *counts, *d;

	counts = json_array_get(a, 0);
	d = json_pack("{s:s,s:O?,s:I,s:O?}", "name", key, "parent",
	    json_object_get(val, "parent"), "users",
	    json_integer_value(json_object_get(counts, key)), "created",
	    json_object_get(val, "created"));
	json_array_append_new(json_array_get(a, 1), d);
	return (0);
}

/* Every department with its parent and how many users it has. */
static enum cmd_retval
cmd_user_dept_list(struct cmd_req *req)
{
	json_t	*state, *depts;
	char	*cause = NULL;

	state = json_pack("[{},[]]");
	if (userdb_foreach(DB_USERS, cmd_user_count_cb,
	    json_array_get(state, 0), &cause) < 0 ||
	    userdb_foreach(DB_DEPTS, cmd_user_dept_list_cb, state,
	    &cause) < 0) {
		cmd_fail(req, ERR_INTERNAL, cause);
		json_decref(state);
		return (CMD_RETURN_DONE);
	}
	depts = json_incref(json_array_get(state, 1));
	json_decref(state);
	cmd_reply(req, json_pack("{s:o}", "depts", depts));
	return (CMD_RETURN_DONE);
}

/* A department is removed only when nothing refers to it any more. */
static enum cmd_retval
cmd_user_dept_rm(struct cmd_req *req)
{
	const char	*name = cmd_arg_str(req, "name", "");
	json_t		*rec, *users = NULL, *children = NULL;
	char		*cause = NULL, *list;

	if ((rec = userdb_get(DB_DEPTS, name)) == NULL) {
		cmd_error(req, ERR_NOTFOUND, "no department named %s", name);
		return (CMD_RETURN_DONE);
	}
	json_decref(rec);
	if ((users = user_match(DB_USERS, "dept", name, &cause)) == NULL ||
	    (children = user_match(DB_DEPTS, "parent", name,
	    &cause)) == NULL) {
		cmd_error(req, ERR_INTERNAL, "%s", cause);
		goto out;
	}
	if (json_array_size(users) != 0) {
		list = cmd_user_names(users);
		cmd_error(req, ERR_STATE, "department %s still has %zu user%s "
		    "(%s): remove %s first (qdesk user rm)", name,
		    json_array_size(users), json_array_size(users) == 1 ? "" :
		    "s", list, json_array_size(users) == 1 ? "that user" :
		    "those users");
		free(list);
		goto out;
	}
	if (json_array_size(children) != 0) {
		list = cmd_user_names(children);
		cmd_error(req, ERR_STATE, "department %s still has %s (%s): "
		    "remove %s first", name, json_array_size(children) == 1 ?
		    "a sub-department" : "sub-departments", list,
		    json_array_size(children) == 1 ? "it" : "them");
		free(list);
		goto out;
	}
	userdb_del(DB_DEPTS, name, cmd_user_write_cb, cmd_user_write(req,
	    json_object(), NULL, NULL, "department %s removed", name));
out:
	free(cause);
	json_decref(users);
	json_decref(children);
	return (CMD_RETURN_DONE);
}

/* The "password" argument, checked; NULL when absent or refused. */
static const char *
cmd_user_password_arg(struct cmd_req *req, int *refused)
{
	json_t	*v = json_object_get(req->args, "password");
	char	*cause = NULL;

	*refused = 0;
	if (!json_is_string(v))
		return (NULL);
	if (auth_password_valid(json_string_value(v), json_string_length(v),
	    &cause) != 0) {
		cmd_fail(req, ERR_ARG, cause);
		*refused = 1;
		return (NULL);
	}
	return (json_string_value(v));
}

/* Is a full name printable text of a sensible length? */
static int
cmd_user_name_valid(const char *name, char **cause)
{
	const unsigned char	*p;

	if (strlen(name) > CMD_USER_NAME_MAX) {
		xasprintf(cause, "the name is over %d bytes",
		    CMD_USER_NAME_MAX);
		return (-1);
	}
	for (p = (const unsigned char *)name; *p != '\0'; p++) {
		if (*p < 0x20 || *p == 0x7f) {
			xasprintf(cause, "the name contains a control "
			    "character");
			return (-1);
		}
	}
	return (0);
}

/* A new user, with a password only if one is given (else no login). */
static enum cmd_retval
cmd_user_add(struct cmd_req *req)
{
	const char	*login = cmd_arg_str(req, "login", "");
	const char	*name = cmd_arg_str(req, "name", NULL);
	const char	*dept = cmd_arg_str(req, "dept", NULL);
	const char	*password;
	json_t		*rec, *pub;
	char		*cause = NULL, *hash = NULL;
	int		 refused;

	if (auth_login_valid(login, &cause) != 0 ||
	    (name != NULL && cmd_user_name_valid(name, &cause) != 0)) {
		cmd_fail(req, ERR_ARG, cause);
		return (CMD_RETURN_DONE);
	}
	if ((rec = user_get(login)) != NULL) {
		json_decref(rec);
		cmd_error(req, ERR_EXISTS, "a user named %s already exists",
		    login);
		return (CMD_RETURN_DONE);
	}
	if (dept != NULL) {
		if ((rec = userdb_get(DB_DEPTS, dept)) == NULL) {
			cmd_error(req, ERR_NOTFOUND, "no department named %s: "
			    "add it first (qdesk dept add %s)", dept, dept);
			return (CMD_RETURN_DONE);
		}
		json_decref(rec);
	}
	password = cmd_user_password_arg(req, &refused);
	if (refused)
		return (CMD_RETURN_DONE);
	/* yescrypt blocks the loop ~50-100 ms: once, and only here. */
	if (password != NULL && (hash = auth_hash(password, &cause)) == NULL) {
		cmd_fail(req, ERR_INTERNAL, cause);
		return (CMD_RETURN_DONE);
	}
	rec = json_pack("{s:s,s:s?,s:s?,s:b,s:b,s:s?,s:I,s:n}", "login",
	    login, "name", name, "dept", dept, "admin",
	    cmd_arg_bool(req, "admin", 0), "disabled", 0, "hash", hash,
	    "created", (json_int_t)time(NULL), "last_login");
	if (hash != NULL) {
		explicit_bzero(hash, strlen(hash));
		free(hash);
	}
	pub = user_public(rec);
	userdb_put(DB_USERS, login, rec, USERDB_CREATE, cmd_user_write_cb,
	    cmd_user_write(req, pub, NULL, NULL, "user %s added%s", login,
	    password == NULL ? " without a password" : ""));
	json_decref(rec);
	return (CMD_RETURN_WAIT);
}

/* Look the user up by the "login" argument, or answer NotFound. */
static json_t *
cmd_user_lookup(struct cmd_req *req)
{
	const char	*login = cmd_arg_str(req, "login", "");
	json_t		*rec;

	if ((rec = user_get(login)) == NULL)
		cmd_error(req, ERR_NOTFOUND, "no user named %s", login);
	return (rec);
}

/* A new password: a fresh salt and hash; the old one stops working. */
static enum cmd_retval
cmd_user_passwd(struct cmd_req *req)
{
	const char	*login = cmd_arg_str(req, "login", "");
	const char	*password;
	json_t		*rec;
	char		*cause = NULL, *hash;
	int		 refused;

	if ((rec = cmd_user_lookup(req)) == NULL)
		return (CMD_RETURN_DONE);
	password = cmd_user_password_arg(req, &refused);
	if (refused)
		goto out;
	/* yescrypt blocks the loop ~50-100 ms: once, and only here. */
	if ((hash = auth_hash(password, &cause)) == NULL) {
		cmd_fail(req, ERR_INTERNAL, cause);
		goto out;
	}
	json_object_set_new(rec, "hash", json_string(hash));
	json_object_set_new(rec, "password_changed",
	    json_integer(time(NULL)));
	explicit_bzero(hash, strlen(hash));
	free(hash);
	userdb_put(DB_USERS, login, rec, 0, cmd_user_write_cb,
	    cmd_user_write(req, user_public(rec), login, "password changed",
	    "user %s: password changed", login));
out:
	json_decref(rec);
	return (CMD_RETURN_DONE);
}

/* user.disable and user.enable: a flag user.auth checks. */
static enum cmd_retval
cmd_user_set_disabled(struct cmd_req *req, int disabled)
{
	const char	*login = cmd_arg_str(req, "login", "");
	json_t		*rec;

	if ((rec = cmd_user_lookup(req)) == NULL)
		return (CMD_RETURN_DONE);
	json_object_set_new(rec, "disabled", json_boolean(disabled));
	userdb_put(DB_USERS, login, rec, 0, cmd_user_write_cb,
	    cmd_user_write(req, user_public(rec), login, disabled ? "user disabled" : NULL,
	    "user %s %s", login, disabled ? "disabled" : "enabled"));
	json_decref(rec);
	return (CMD_RETURN_DONE);
}

static enum cmd_retval
cmd_user_disable(struct cmd_req *req)
{
	return (cmd_user_set_disabled(req, 1));
}

static enum cmd_retval
cmd_user_enable(struct cmd_req *req)
{
	return (cmd_user_set_disabled(req, 0));
}

/* A user who still owns desktops is not removed: no dangling owners. */
static enum cmd_retval
cmd_user_rm(struct cmd_req *req)
{
	const char	*login = cmd_arg_str(req, "login", "");
	json_t		*rec, *desks;
	char		*list;

	if ((rec = cmd_user_lookup(req)) == NULL)
		return (CMD_RETURN_DONE);
	json_decref(rec);
	desks = user_desktops(login);
	if (json_array_size(desks) != 0) {
		list = cmd_user_names(desks);
		cmd_error(req, ERR_STATE, "user %s still has desktop%s %s: "
		    "unassign %s first (qdesk desktop unassign VM)", login,
		    json_array_size(desks) == 1 ? "" : "s", list,
		    json_array_size(desks) == 1 ? "it" : "them");
		free(list);
		json_decref(desks);
		return (CMD_RETURN_DONE);
	}
	json_decref(desks);
	userdb_del(DB_USERS, login, cmd_user_write_cb, cmd_user_write(req,
	    json_object(), login, "user removed", "user %s removed", login));
	return (CMD_RETURN_WAIT);
}

static int
cmd_user_list_cb(const char *key, json_t *val, void *arg)
{
	json_array_append_new(arg, user_public(val));
	return (0);
}

static enum cmd_retval
cmd_user_list(struct cmd_req *req)
{
	json_t	*a = json_array();
	char	*cause = NULL;

	if (userdb_foreach(DB_USERS, cmd_user_list_cb, a, &cause) < 0) {
		cmd_fail(req, ERR_INTERNAL, cause);
		json_decref(a);
		return (CMD_RETURN_DONE);
	}
	cmd_reply(req, json_pack("{s:o}", "users", a));
	return (CMD_RETURN_DONE);
}

/* An assignment stored (or refused): tell the listeners, answer. */
struct cmd_user_assign {
	struct cmd_req	*req;
	char		*vm;
	char		*login;
	int		 assign;	/* else unassign */
};

static void
cmd_user_assign_cb(void *arg, const char *errclass, const char *cause)
{
	struct cmd_user_assign	*a = arg;
	json_t			*f;

	if (errclass != NULL)
		cmd_error(a->req, errclass, "%s", cause);
	else {
		log_info("%s: %s %s", a->vm, a->assign ? "assigned to" :
		    "unassigned from", a->login);
		if (!a->assign)
			cmd_broker_revoke(a->login, a->vm,
			    "desktop unassigned");
		f = json_pack("{s:s}", "login", a->login);
		notify_emit(a->assign ? "desktop.assigned" :
		    "desktop.unassigned", a->vm, f);
		json_decref(f);
		cmd_reply(a->req, json_pack("{s:s,s:s}", "vm", a->vm, "login",
		    a->login));
	}
	free(a->vm);
	free(a->login);
	free(a);
}

static enum cmd_retval
cmd_user_assign_write(struct cmd_req *req, const char *name,
    const char *login, int assign)
{
	struct cmd_user_assign	*a = xcalloc(1, sizeof *a);

	a->req = req;
	a->vm = xstrdup(name);
	a->login = xstrdup(login);
	a->assign = assign;
	userdb_assign(name, assign ? login : NULL, cmd_user_assign_cb, a);
	return (CMD_RETURN_WAIT);
}

/* The owner of VM name, here or (a cluster) in etcd; NULL: no such VM. */
static int
cmd_user_vm_known(const char *name, const char **owner)
{
	struct vm	*vm = vm_find(name);

	*owner = userdb_owner(name, vm != NULL ? vm->def.owner : NULL);
	return (vm != NULL || cluster_desktop_defined(name));
}

/*
 * Give a VM to a user; assigning it to its owner again is no error. In a
 * cluster any host assigns any desktop etcd defines (owners/VM).
 */
static enum cmd_retval
cmd_user_desktop_assign(struct cmd_req *req)
{
	const char	*login = cmd_arg_str(req, "login", "");
	const char	*name = cmd_arg_str(req, "vm", "");
	const char	*owner;
	json_t		*rec;

	if ((rec = cmd_user_lookup(req)) == NULL)
		return (CMD_RETURN_DONE);
	json_decref(rec);
	if (!cmd_user_vm_known(name, &owner)) {
		cmd_error(req, ERR_NOTFOUND, "no VM named %s", name);
		return (CMD_RETURN_DONE);
	}
	if (owner != NULL) {
		if (strcmp(owner, login) == 0) {
			cmd_reply(req, json_pack("{s:s,s:s}", "vm", name,
			    "login", login));
			return (CMD_RETURN_DONE);
		}
		cmd_error(req, ERR_EXISTS, "VM %s is assigned to %s: unassign "
		    "it first (qdesk desktop unassign %s)", name, owner, name);
		return (CMD_RETURN_DONE);
	}
	return (cmd_user_assign_write(req, name, login, 1));
}

/* Take a VM back from its owner; the VM itself is left alone. */
static enum cmd_retval
cmd_user_desktop_unassign(struct cmd_req *req)
{
	const char	*name = cmd_arg_str(req, "vm", "");
	const char	*owner;

	if (!cmd_user_vm_known(name, &owner) && owner == NULL) {
		cmd_error(req, ERR_NOTFOUND, "no VM named %s", name);
		return (CMD_RETURN_DONE);
	}
	if (owner == NULL) {
		cmd_error(req, ERR_STATE, "VM %s is not assigned to anyone",
		    name);
		return (CMD_RETURN_DONE);
	}
	return (cmd_user_assign_write(req, name, owner, 0));
}

struct cmd_user_list {
	const char	*login;
	json_t		*a;
};

static int
cmd_user_desktop_list_cb(const char *name, json_t *rec, void *arg)
{
	struct cmd_user_list	*l = arg;
	const char		*owner;
	struct vm		*vm;
	json_t			*c;

	owner = json_string_value(json_object_get(rec, "login"));
	if (owner == NULL || (l->login != NULL && strcmp(owner, l->login) !=
	    0))
		return (0);
	/* Keys in this order: the CLI's columns follow them. */
	if ((vm = vm_find(name)) != NULL) {
		json_array_append_new(l->a, json_pack("{s:s,s:s,s:s,s:s?}",
		    "vm", name, "login", owner, "state",
		    vm_state_name(vm->state), "pool", vm->def.pool));
		return (0);
	}
	c = cluster_desktop_json(name);
	json_array_append_new(l->a, json_pack("{s:s,s:s,s:O?,s:O?,s:O?}",
	    "vm", name, "login", owner, "state", json_object_get(c, "state"),
	    "pool", json_object_get(c, "pool"), "host", json_object_get(c,
	    "host")));
	json_decref(c);
	return (0);
}

/* Assigned desktops, of one user or of everyone. */
static enum cmd_retval
cmd_user_desktop_list(struct cmd_req *req)
{
	struct cmd_user_list	 l;
	json_t			*rec;
	char			*cause = NULL;

	l.login = cmd_arg_str(req, "login", NULL);
	if (l.login != NULL) {
		if ((rec = cmd_user_lookup(req)) == NULL)
			return (CMD_RETURN_DONE);
		json_decref(rec);
	}
	l.a = json_array();
	if (userdb_foreach(USERDB_OWNERS, cmd_user_desktop_list_cb, &l,
	    &cause) < 0) {
		json_decref(l.a);
		cmd_fail(req, ERR_INTERNAL, cause);
		return (CMD_RETURN_DONE);
	}
	cmd_reply(req, json_pack("{s:o}", "desktops", l.a));
	return (CMD_RETURN_DONE);
}

static const struct cmd_arg cmd_user_dept_add_args[] = {
	{ "name", ARG_STR, 1 },
	{ "parent", ARG_STR, 0 },
	{ NULL, 0, 0 }
};

static const struct cmd_arg cmd_user_add_args[] = {
	{ "login", ARG_STR, 1 },
	{ "name", ARG_STR, 0 },
	{ "dept", ARG_STR, 0 },
	{ "admin", ARG_BOOL, 0 },
	{ "password", ARG_STR, 0 },
	{ NULL, 0, 0 }
};

static const struct cmd_arg cmd_user_passwd_args[] = {
	{ "login", ARG_STR, 1 },
	{ "password", ARG_STR, 1 },
	{ NULL, 0, 0 }
};

static const struct cmd_arg cmd_user_login_args[] = {
	{ "login", ARG_STR, 1 },
	{ NULL, 0, 0 }
};

static const struct cmd_arg cmd_user_assign_args[] = {
	{ "login", ARG_STR, 1 },
	{ "vm", ARG_STR, 1 },
	{ NULL, 0, 0 }
};

static const struct cmd_arg cmd_user_vm_args[] = {
	{ "vm", ARG_STR, 1 },
	{ NULL, 0, 0 }
};

static const struct cmd_arg cmd_user_desktop_list_args[] = {
	{ "login", ARG_STR, 0 },
	{ NULL, 0, 0 }
};

const struct cmd_entry cmd_user_entries[] = {
	{ "dept.add", cmd_user_dept_add_args, ROLE_ADMIN, cmd_user_dept_add },
	{ "dept.list", NULL, ROLE_ADMIN, cmd_user_dept_list },
	{ "dept.rm", cmd_name_args, ROLE_ADMIN, cmd_user_dept_rm },
	{ "user.add", cmd_user_add_args, ROLE_ADMIN, cmd_user_add },
	{ "user.passwd", cmd_user_passwd_args, ROLE_ADMIN, cmd_user_passwd },
	{ "user.disable", cmd_user_login_args, ROLE_ADMIN, cmd_user_disable },
	{ "user.enable", cmd_user_login_args, ROLE_ADMIN, cmd_user_enable },
	{ "user.rm", cmd_user_login_args, ROLE_ADMIN, cmd_user_rm },
	{ "user.list", NULL, ROLE_ADMIN, cmd_user_list },
	{ "desktop.assign", cmd_user_assign_args, ROLE_ADMIN,
	    cmd_user_desktop_assign },
	{ "desktop.unassign", cmd_user_vm_args, ROLE_ADMIN,
	    cmd_user_desktop_unassign },
	{ "desktop.list", cmd_user_desktop_list_args, ROLE_ADMIN,
	    cmd_user_desktop_list },
	{ NULL, NULL, 0, NULL }
};
