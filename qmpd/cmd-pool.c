/*
 * pool.* commands (admin) and desktop.acquire / desktop.release (broker):
 * a pool's record in DB_POOLS, its desktops made and removed here, handed
 * out and taken back through pool.c. In a cluster the pool and its
 * members are etcd's and cluster-pool.c does the work after the same
 * checks; resize, rm and set are single-host only for now.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cluster.h"
#include "log.h"
#include "names.h"
#include "pool.h"
#include "qmpd.h"
#include "userdb.h"
#include "vm.h"
#include "xmalloc.h"

#define CMD_POOL_MAX_SIZE	1000
#define CMD_POOL_START_TIMEOUT	180	/* a queued boot waits its turn */

/* The pool named by "name", or answered NotFound. */
static json_t *
cmd_pool_lookup(struct cmd_req *req)
{
	const char	*name = cmd_arg_str(req, "name", "");
	json_t		*pool;

	if ((pool = pool_get(name)) == NULL)
		cmd_error(req, ERR_NOTFOUND, "no pool named %.64s", name);
	return (pool);
}

static int
cmd_pool_oneof(const char *v, const char *const *allowed)
{
	for (; *allowed != NULL; allowed++)
		if (strcmp(v, *allowed) == 0)
			return (1);
	return (0);
}

/* A profile argument, when given, is lan or wan; else an error reply. */
static int
cmd_pool_profile_check(struct cmd_req *req)
{
	enum vm_profile	 p;
	const char	*name = cmd_arg_str(req, "profile", NULL);

	if (name == NULL || vm_profile_from_name(name, &p) == 0)
		return (0);
	cmd_error(req, ERR_ARG, "profile must be lan or wan");
	return (-1);
}

/*
 * pool set --profile: the pool's record for desktops made from now on,
 * and each desktop's definition, which QEMU reads at its next start.
 */
static int
cmd_pool_set_profile(const char *pname, const char *name, char **cause)
{
	struct vm	*vm;
	enum vm_profile	 p, old;

	if (vm_profile_from_name(name, &p) != 0)
		fatalx("%s: profile %s", __func__, name);
	TAILQ_FOREACH(vm, &vms, entry) {
		if (pool_of(vm) == NULL || strcmp(pool_of(vm), pname) != 0 ||
		    vm->def.profile == p)
			continue;
		old = vm->def.profile;
		vm->def.profile = p;
		if (vm_save(vm, cause) != 0) {
			vm->def.profile = old;
			return (-1);
		}
	}
	return (0);
}

static enum cmd_retval
cmd_pool_create(struct cmd_req *req)
{
	static const char *const modes[] = { "dedicated", "floating", NULL };
	static const char *const actions[] = { "none", "shutdown", "reset",
	    NULL };
	static const char *const copy[] = { "memory", "vcpus", "nets",
	    "kernel", "initrd", "append", "accel", "display", "machine",
	    "video", "heads", "audio", "usbredir", "balloon", "os", "agent",
	    "profile", "firmware", "tpm", "clipboard", "listen" };
	const char	*name = cmd_arg_str(req, "name", "");
	const char	*template = cmd_arg_str(req, "template", "");
	const char	*mode = cmd_arg_str(req, "mode", "floating");
	const char	*dept = cmd_arg_str(req, "dept", NULL);
	const char	*action = cmd_arg_str(req, "on_disconnect", "none");
	json_int_t	 size = cmd_arg_int(req, "size", 0);
	json_int_t	 prestart = cmd_arg_int(req, "prestart", 0);
	json_int_t	 grace = cmd_arg_int(req, "grace", 60);
	json_t		*pool, *rec, *v;
	struct vm	*vm, *vm1;
	char		*cause = NULL;
	size_t		 i;
	json_int_t	 n;

	if (names_valid(name, "pool", &cause) != 0) {
		cmd_fail(req, ERR_ARG, cause);
		return (CMD_RETURN_DONE);
	}
	if ((pool = pool_get(name)) != NULL) {
		json_decref(pool);
		cmd_error(req, ERR_EXISTS, "a pool named %s already exists",
		    name);
		return (CMD_RETURN_DONE);
	}
	if (size < 1 || size > CMD_POOL_MAX_SIZE) {
		cmd_error(req, ERR_ARG, "size must be 1 to %d",
		    CMD_POOL_MAX_SIZE);
		return (CMD_RETURN_DONE);
	}
	if (prestart < 0 || prestart > size) {
		cmd_error(req, ERR_ARG, "prestart must be 0 to the size, %lld",
		    (long long)size);
		return (CMD_RETURN_DONE);
	}
	if (!cmd_pool_oneof(mode, modes)) {
		cmd_error(req, ERR_ARG, "mode must be dedicated or floating");
		return (CMD_RETURN_DONE);
	}
	if (!cmd_pool_oneof(action, actions)) {
		cmd_error(req, ERR_ARG, "on_disconnect must be none, shutdown "
		    "or reset");
		return (CMD_RETURN_DONE);
	}
	if (grace < 0 || grace > 86400) {
		cmd_error(req, ERR_ARG, "grace must be 0 to 86400 seconds");
		return (CMD_RETURN_DONE);
	}
	if (cmd_pool_profile_check(req) != 0)
		return (CMD_RETURN_DONE);
	if (dept != NULL && (rec = userdb_get(DB_DEPTS, dept)) == NULL) {
		cmd_error(req, ERR_NOTFOUND, "no department named %.64s", dept);
		return (CMD_RETURN_DONE);
	} else if (dept != NULL)
		json_decref(rec);
	/* In a cluster a template another host can hand over will do. */
	if ((rec = db_get(qmpd->db, DB_IMAGES, template)) == NULL &&
	    (qmpd->cluster == NULL || !cluster_image_gettable(template))) {
		cmd_error(req, ERR_NOTFOUND, "no image named %.64s (qdesk "
		    "image list)", template);
		return (CMD_RETURN_DONE);
	}
	json_decref(rec);

	pool = json_pack("{s:s,s:s,s:I,s:I,s:s,s:b,s:s?,s:s,s:I,s:I}",
	    "name", name, "template", template, "size", size, "prestart",
	    prestart, "mode", mode, "stateless", cmd_arg_bool(req, "stateless",
	    0), "dept", dept, "on_disconnect", action, "grace", grace,
	    "created", (json_int_t)time(NULL));
	for (i = 0; i < nitems(copy); i++)
		if ((v = json_object_get(req->args, copy[i])) != NULL &&
		    !json_is_null(v))
			json_object_set(pool, copy[i], v);
	if (qmpd->cluster != NULL) {
		cluster_pool_create(req, pool);
		json_decref(pool);
		return (CMD_RETURN_WAIT);
	}
	/* The record first: a crash half-way is finished at start-up. */
	if (db_put(qmpd->db, DB_POOLS, name, pool, &cause) != 0) {
		cmd_error(req, ERR_INTERNAL, "%s", cause);
		goto out;
	}
	for (n = 0; n < size; n++) {
		if (pool_desktop_add(pool, &cause) != 0)
			break;
	}
	if (n < size) {
		/* Undo: every desktop made so far, then the record. */
		TAILQ_FOREACH_SAFE(vm, &vms, entry, vm1) {
			char *why = NULL;

			if (pool_has(vm, name) && vm_delete(vm, &why) != 0) {
				log_warnx("%s: %s", vm->def.name, why);
				free(why);
			}
		}
		char *why = NULL;
		if (db_del(qmpd->db, DB_POOLS, name, &why) < 0) {
			log_warnx("pool %s: %s", name, why);
			free(why);
		}
		cmd_error(req, ERR_ARG, "pool %s not created: %s", name, cause);
		goto out;
	}
	log_info("pool %s: created, %lld desktops from %s (%s%s)", name,
	    (long long)size, template, mode, cmd_arg_bool(req, "stateless", 0)
	    ? ", stateless" : "");
	v = json_pack("{s:s}", "pool", name);
	notify_emit("pool.created", NULL, v);
	json_decref(v);
	cmd_reply(req, pool_to_json(pool));
	pool_kick();
out:
	free(cause);
	json_decref(pool);
	return (CMD_RETURN_DONE);
}

/* A pool with its desktops, this host's or (a cluster) etcd's. */
static json_t *
cmd_pool_json(json_t *pool)
{
	return (qmpd->cluster != NULL ? cluster_pool_json(pool) :
	    pool_to_json(pool));
}

static int
cmd_pool_list_cb(const char *key, json_t *rec, void *arg)
{
	json_t	*j = cmd_pool_json(rec);

	json_object_del(j, "desktops");
	json_array_append_new(arg, j);
	return (0);
}

static enum cmd_retval
cmd_pool_list(struct cmd_req *req)
{
	json_t	*a = json_array();
	char	*cause = NULL;

	if (userdb_foreach(DB_POOLS, cmd_pool_list_cb, a, &cause) < 0) {
		cmd_fail(req, ERR_INTERNAL, cause);
		json_decref(a);
		return (CMD_RETURN_DONE);
	}
	cmd_reply(req, json_pack("{s:o}", "pools", a));
	return (CMD_RETURN_DONE);
}

static enum cmd_retval
cmd_pool_show(struct cmd_req *req)
{
	json_t	*pool;

	if ((pool = cmd_pool_lookup(req)) == NULL)
		return (CMD_RETURN_DONE);
	cmd_reply(req, cmd_pool_json(pool));
	json_decref(pool);
	return (CMD_RETURN_DONE);
}

/* resize, rm and set of a cluster's pool: not yet (one line why). */
static int
cmd_pool_single(struct cmd_req *req)
{
	if (qmpd->cluster == NULL)
		return (0);
	cmd_error(req, ERR_STATE, "%s: a cluster's pools keep the size and "
	    "settings they were created with for now", req->entry->name);
	return (-1);
}

/* Up: new clones. Down: only free desktops go; in use ones stay. */
static enum cmd_retval
cmd_pool_resize(struct cmd_req *req)
{
	json_t		*pool;
	json_int_t	 size = cmd_arg_int(req, "size", 0);
	const char	*pname;
	struct vm	*vm;
	char		*cause = NULL;
	int		 have = 0, freeable = 0, n;

	if (cmd_pool_single(req) != 0)
		return (CMD_RETURN_DONE);
	if ((pool = cmd_pool_lookup(req)) == NULL)
		return (CMD_RETURN_DONE);
	pname = json_string_value(json_object_get(pool, "name"));
	if (size < 1 || size > CMD_POOL_MAX_SIZE) {
		cmd_error(req, ERR_ARG, "size must be 1 to %d",
		    CMD_POOL_MAX_SIZE);
		goto out;
	}
	TAILQ_FOREACH(vm, &vms, entry) {
		if (!pool_has(vm, pname) || vm->def.pool_doomed)
			continue;
		have++;
		if (pool_desktop_free(vm))
			freeable++;
	}
	if (size < have && have - freeable > size) {
		cmd_error(req, ERR_STATE, "pool %s has %d desktops in use or "
		    "being reset: it cannot shrink below %d now", pname,
		    have - freeable, have - freeable);
		goto out;
	}
	if (json_integer_value(json_object_get(pool, "prestart")) > size)
		json_object_set_new(pool, "prestart", json_integer(size));
	json_object_set_new(pool, "size", json_integer(size));
	if (db_put(qmpd->db, DB_POOLS, pname, pool, &cause) != 0) {
		cmd_error(req, ERR_INTERNAL, "%s", cause);
		goto out;
	}
	for (n = have; n < size; n++) {
		if (pool_desktop_add(pool, &cause) != 0) {
			cmd_error(req, ERR_ARG, "pool %s: %d of %lld desktops "
			    "made: %s", pname, n, (long long)size, cause);
			goto out;
		}
	}
	if (size < have)
		pool_doom(pname, have - size, 1);
	log_info("pool %s: resized from %d to %lld", pname, have,
	    (long long)size);
	pool_kick();
	cmd_reply(req, json_pack("{s:s,s:I}", "name", pname, "size", size));
out:
	free(cause);
	json_decref(pool);
	return (CMD_RETURN_DONE);
}

/*
 * Refused while any desktop is in use (assigned): unassign or release
 * them first. Free desktops are stopped if need be and removed with
 * their clones; the record goes at once.
 */
static enum cmd_retval
cmd_pool_rm(struct cmd_req *req)
{
	json_t		*pool, *users = json_array();
	const char	*pname;
	struct vm	*vm;
	char		*cause = NULL, *list;

	if (cmd_pool_single(req) != 0) {
		json_decref(users);
		return (CMD_RETURN_DONE);
	}
	if ((pool = cmd_pool_lookup(req)) == NULL) {
		json_decref(users);
		return (CMD_RETURN_DONE);
	}
	pname = json_string_value(json_object_get(pool, "name"));
	TAILQ_FOREACH(vm, &vms, entry)
		if (pool_has(vm, pname) && user_owner(vm) != NULL)
			json_array_append_new(users, json_sprintf("%s (%s)",
			    vm->def.name, user_owner(vm)));
	if (json_array_size(users) > 0) {
		list = json_dumps(users, JSON_COMPACT);
		cmd_error(req, ERR_STATE, "pool %s has desktops in use: %s; "
		    "release or unassign them first", pname, list);
		free(list);
		goto out;
	}
	if (db_del(qmpd->db, DB_POOLS, pname, &cause) < 0) {
		cmd_error(req, ERR_INTERNAL, "%s", cause);
		goto out;
	}
	pool_doom(pname, CMD_POOL_MAX_SIZE * 100, 0);
	log_info("pool %s: removed", pname);
	pool_kick();
	cmd_reply(req, json_pack("{s:s}", "name", pname));
out:
	free(cause);
	json_decref(users);
	json_decref(pool);
	return (CMD_RETURN_DONE);
}

/* Change what can change without remaking desktops. */
static enum cmd_retval
cmd_pool_set(struct cmd_req *req)
{
	static const char *const actions[] = { "none", "shutdown", "reset",
	    NULL };
	json_t		*pool, *v;
	const char	*pname;
	char		*cause = NULL;

	if (cmd_pool_single(req) != 0)
		return (CMD_RETURN_DONE);
	if ((pool = cmd_pool_lookup(req)) == NULL)
		return (CMD_RETURN_DONE);
	pname = json_string_value(json_object_get(pool, "name"));
	if ((v = json_object_get(req->args, "prestart")) != NULL) {
		if (json_integer_value(v) < 0 || json_integer_value(v) >
		    json_integer_value(json_object_get(pool, "size"))) {
			cmd_error(req, ERR_ARG, "prestart must be 0 to the "
			    "size");
			goto out;
		}
		json_object_set(pool, "prestart", v);
	}
	if ((v = json_object_get(req->args, "on_disconnect")) != NULL) {
		if (!cmd_pool_oneof(json_string_value(v), actions)) {
			cmd_error(req, ERR_ARG, "on_disconnect must be none, "
			    "shutdown or reset");
			goto out;
		}
		json_object_set(pool, "on_disconnect", v);
	}
	if ((v = json_object_get(req->args, "grace")) != NULL) {
		if (json_integer_value(v) < 0 || json_integer_value(v) >
		    86400) {
			cmd_error(req, ERR_ARG, "grace must be 0 to 86400");
			goto out;
		}
		json_object_set(pool, "grace", v);
	}
	if ((v = json_object_get(req->args, "profile")) != NULL) {
		if (cmd_pool_profile_check(req) != 0)
			goto out;
		json_object_set(pool, "profile", v);
	}
	if (db_put(qmpd->db, DB_POOLS, pname, pool, &cause) != 0) {
		cmd_error(req, ERR_INTERNAL, "%s", cause);
		goto out;
	}
	if ((v = json_object_get(req->args, "profile")) != NULL &&
	    cmd_pool_set_profile(pname, json_string_value(v), &cause) != 0) {
		cmd_error(req, ERR_INTERNAL, "%s", cause);
		goto out;
	}
	pool_kick();
	cmd_reply(req, pool_to_json(pool));
out:
	free(cause);
	json_decref(pool);
	return (CMD_RETURN_DONE);
}

/* The user a broker request acts for: enabled; *dept borrowed from *rec. */
static json_t *
cmd_pool_user(struct cmd_req *req)
{
	const char	*login = cmd_arg_str(req, "login", "");
	json_t		*rec;

	if ((rec = user_get(login)) == NULL) {
		cmd_error(req, ERR_NOTFOUND, "no user named %.64s", login);
		return (NULL);
	}
	if (json_is_true(json_object_get(rec, "disabled"))) {
		log_warnx("%s for disabled user %s refused", req->entry->name,
		    login);
		cmd_error(req, ERR_DENIED, "user %s is disabled", login);
		json_decref(rec);
		return (NULL);
	}
	return (rec);
}

/*
 * desktop.acquire: the user's desktop from a pool their department may
 * use (pools without a department are everyone's): the one they have, or
 * a free one, booted ones first, floating pools before dedicated ones.
 * It is started through the boot queue; the answer comes once it runs.
 */
static enum cmd_retval
cmd_pool_acquire(struct cmd_req *req)
{
	struct pool_pick	 p;
	json_t			*user;
	struct vm		*vm;
	char			*cause = NULL;
	const char		*login = cmd_arg_str(req, "login", "");

	if ((user = cmd_pool_user(req)) == NULL)
		return (CMD_RETURN_DONE);
	if (qmpd->cluster != NULL) {
		cluster_pool_acquire(req, json_string_value(json_object_get(
		    user, "dept")));
		json_decref(user);
		return (CMD_RETURN_WAIT);
	}
	if (pool_pick(&p, cmd_arg_str(req, "pool", NULL), login,
	    json_string_value(json_object_get(user, "dept")), &cause) != 0) {
		cmd_error(req, ERR_INTERNAL, "%s", cause);
		goto out;
	}
	if ((vm = p.mine) == NULL) {
		if (p.pools == 0) {
			log_warnx("desktop.acquire for %s: no pool %s%s", login,
			    p.want != NULL ? p.want : "", p.want != NULL ?
			    " for them" : "they may use");
			cmd_error(req, ERR_NOTFOUND, "no desktop pool for %s",
			    login);
			goto out;
		}
		if ((vm = p.best) == NULL) {
			cmd_error(req, ERR_BUSY, "no free desktop in the pools "
			    "of %s: try again later", login);
			goto out;
		}
		if (pool_give(vm, login, &cause) != 0) {
			cmd_error(req, ERR_INTERNAL, "%s", cause);
			goto out;
		}
	}
	if (vm->state == VM_RUNNING) {
		cmd_reply(req, vm_to_json(vm));
		goto out;
	}
	if (vm->state == VM_STOPPING || vm->state == VM_PAUSED) {
		cmd_error(req, ERR_STATE, "desktop %s is %s: try again shortly",
		    vm->def.name, vm_state_name(vm->state));
		goto out;
	}
	if (boot_queue_start(vm, CMD_POOL_START_TIMEOUT, cmd_done, req,
	    &cause) != 0) {
		log_warnx("%s: start for %s failed: %s", vm->def.name, login,
		    cause);
		cmd_error(req, ERR_QEMU, "%s", cause);
		goto out;
	}
	json_decref(user);
	return (CMD_RETURN_WAIT);
out:
	free(cause);
	json_decref(user);
	return (CMD_RETURN_DONE);
}

/*
 * desktop.release: the user is done (logout). A floating pool's desktop
 * goes back (stateless: its disk is reset before anyone gets it); a
 * dedicated one stays theirs. Without "vm", every pool desktop of the
 * user.
 */
static enum cmd_retval
cmd_pool_release(struct cmd_req *req)
{
	const char	*login = cmd_arg_str(req, "login", "");
	const char	*name = cmd_arg_str(req, "vm", NULL);
	json_t		*user, *pool, *released, *kept;
	struct vm	*vm, *vm1;
	const char	*owner;
	int		 floating;

	if ((user = cmd_pool_user(req)) == NULL)
		return (CMD_RETURN_DONE);
	json_decref(user);
	if (qmpd->cluster != NULL)
		return (cluster_pool_release(req));
	if (name != NULL) {
		vm = vm_find(name);
		owner = vm != NULL ? user_owner(vm) : NULL;
		if (owner == NULL || strcmp(owner, login) != 0 ||
		    pool_of(vm) == NULL) {
			log_warnx("desktop.release of %.64s for %s refused",
			    name, login);
			cmd_error(req, ERR_DENIED, "desktop %.64s is not a pool "
			    "desktop of yours", name);
			return (CMD_RETURN_DONE);
		}
	}
	released = json_array();
	kept = json_array();
	TAILQ_FOREACH_SAFE(vm, &vms, entry, vm1) {
		if (pool_of(vm) == NULL || (owner = user_owner(vm)) ==
		    NULL || strcmp(owner, login) != 0)
			continue;
		if (name != NULL && strcmp(vm->def.name, name) != 0)
			continue;
		pool = pool_get(pool_of(vm));
		floating = pool != NULL && strcmp(json_string_value(
		    json_object_get(pool, "mode")), "floating") == 0;
		json_decref(pool);
		if (!floating) {
			json_array_append_new(kept, json_string(vm->def.name));
			continue;
		}
		json_array_append_new(released, json_string(vm->def.name));
		pool_return(vm, "released");
	}
	cmd_reply(req, json_pack("{s:o,s:o}", "released", released, "kept",
	    kept));
	return (CMD_RETURN_DONE);
}

/* The boot queue as it stands. */
static enum cmd_retval
cmd_pool_boot_queue(struct cmd_req *req)
{
	cmd_reply(req, json_pack("{s:i,s:i,s:i}", "cap", boot_queue_cap,
	    "booting", boot_queue_booting(), "queued", boot_queue_length()));
	return (CMD_RETURN_DONE);
}

static const struct cmd_arg cmd_pool_create_args[] = {
	{ "name", ARG_STR, 1 },
	{ "template", ARG_STR, 1 },
	{ "size", ARG_INT, 1 },
	{ "prestart", ARG_INT, 0 },
	{ "mode", ARG_STR, 0 },
	{ "stateless", ARG_BOOL, 0 },
	{ "dept", ARG_STR, 0 },
	{ "memory", ARG_INT, 0 },
	{ "vcpus", ARG_INT, 0 },
	{ "nets", ARG_ARRAY, 0 },
	{ "kernel", ARG_STR, 0 },
	{ "initrd", ARG_STR, 0 },
	{ "append", ARG_STR, 0 },
	{ "accel", ARG_STR, 0 },
	{ "display", ARG_STR, 0 },
	{ "listen", ARG_STR, 0 },
	{ "machine", ARG_STR, 0 },
	{ "on_disconnect", ARG_STR, 0 },
	{ "grace", ARG_INT, 0 },
	{ "profile", ARG_STR, 0 },
	CMD_ARGS_VM_DEV,
	{ NULL, 0, 0 }
};

static const struct cmd_arg cmd_pool_resize_args[] = {
	{ "name", ARG_STR, 1 },
	{ "size", ARG_INT, 1 },
	{ NULL, 0, 0 }
};

static const struct cmd_arg cmd_pool_set_args[] = {
	{ "name", ARG_STR, 1 },
	{ "prestart", ARG_INT, 0 },
	{ "on_disconnect", ARG_STR, 0 },
	{ "grace", ARG_INT, 0 },
	{ "profile", ARG_STR, 0 },
	{ NULL, 0, 0 }
};

static const struct cmd_arg cmd_pool_acquire_args[] = {
	{ "login", ARG_STR, 1 },
	{ "pool", ARG_STR, 0 },
	{ NULL, 0, 0 }
};

static const struct cmd_arg cmd_pool_release_args[] = {
	{ "login", ARG_STR, 1 },
	{ "vm", ARG_STR, 0 },
	{ NULL, 0, 0 }
};

const struct cmd_entry cmd_pool_entries[] = {
	{ "pool.create", cmd_pool_create_args, ROLE_ADMIN, cmd_pool_create },
	{ "pool.list", NULL, ROLE_ADMIN, cmd_pool_list },
	{ "pool.show", cmd_name_args, ROLE_ADMIN, cmd_pool_show },
	{ "pool.resize", cmd_pool_resize_args, ROLE_ADMIN, cmd_pool_resize },
	{ "pool.rm", cmd_name_args, ROLE_ADMIN, cmd_pool_rm },
	{ "pool.set", cmd_pool_set_args, ROLE_ADMIN, cmd_pool_set },
	{ "boot.queue", NULL, ROLE_ADMIN, cmd_pool_boot_queue },
	{ "desktop.acquire", cmd_pool_acquire_args, ROLE_BROKER,
	    cmd_pool_acquire },
	{ "desktop.release", cmd_pool_release_args, ROLE_BROKER,
	    cmd_pool_release },
	{ NULL, NULL, 0, NULL }
};
