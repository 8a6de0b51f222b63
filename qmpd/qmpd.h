/*
 * qmpd: the root daemon. One libevent loop; the only other threads hash
 * passwords (auth-pool.c) and touch nothing but their own jobs. This
 * header holds the structures shared between the daemon's files, as
 * tmux.h does.
 */
#ifndef QDESK_QMPD_H
#define QDESK_QMPD_H

#include <sys/types.h>

#include <stdarg.h>
#include <time.h>

#include <event2/event.h>
#include <jansson.h>

#include "compat.h"
#include "db.h"
#include "proto.h"

struct qmp;

/* The daemon's global state. */
struct qmpd {
	struct event_base	*base;
	char			*state_dir;
	char			*socket_path;
	struct db		*db;
	time_t			 started;
	int			 kvm_ok;	/* /dev/kvm can create a VM */

	/* QEMU runs as this unprivileged user. */
	char			*vm_user;
	uid_t			 vm_uid;
	gid_t			 vm_gid;
	gid_t			*vm_groups;
	int			 vm_ngroups;

	/* The broker's user, for the "broker" role; -1 when none. */
	uid_t			 broker_uid;
	gid_t			 admin_gid;	/* group "qdesk"; -1 if none */

	const char		*qemu_binary;
	int			 foreground;
};
extern struct qmpd	*qmpd;

/* Roles, from SO_PEERCRED. A command names the least role it needs. */
enum role {
	ROLE_NONE = 0,
	ROLE_BROKER = 1,
	ROLE_ADMIN = 2
};

/* server.c: the admin socket, its clients and event subscribers. */
struct client;
int	 server_listen(const char *path, char **cause);
void	 server_close(void);
void	 server_send_line(struct client *, const char *line);
int	 server_send_line_fd(struct client *, const char *line, int fd);
void	 server_subscribe(struct client *, const char *vm);
void	 server_event(const char *event, const char *vm, json_t *fields);
enum role client_role(const struct client *);
uid_t	 client_uid(const struct client *);

/* cmd.c: the command table and requests in flight. */
enum cmd_retval {
	CMD_RETURN_DONE,	/* the exec function answered already */
	CMD_RETURN_WAIT		/* it will answer later, from a callback */
};

enum cmd_argtype {
	ARG_STR,
	ARG_INT,
	ARG_BOOL,
	ARG_ARRAY,
	ARG_OBJECT
};

struct cmd_arg {
	const char	*name;
	enum cmd_argtype type;
	int		 required;
};
/* The arguments of every command that takes only a "name" (cmd.c). */
extern const struct cmd_arg	cmd_name_args[];

struct cmd_req;

struct cmd_entry {
	const char		*name;
	const struct cmd_arg	*args;	/* NULL-name terminated */
	enum role		 role;
	enum cmd_retval		(*exec)(struct cmd_req *);
};

/* A request in flight. The client may go away before the answer. */
struct cmd_req {
	struct client		*client;	/* NULL once it has gone */
	json_t			*id;
	const struct cmd_entry	*entry;
	json_t			*args;
	TAILQ_ENTRY(cmd_req)	 entry_client;
};

void	 cmd_dispatch(struct client *, const char *line, size_t len);
void	 cmd_reply(struct cmd_req *, json_t *ret);	/* steals ret */
void	 cmd_error(struct cmd_req *, const char *errclass, const char *fmt,
	    ...) __attribute__((format(printf, 3, 4)));
void	 cmd_progress(struct cmd_req *, json_t *progress); /* steals */
void	 cmd_reply_fd(struct cmd_req *, json_t *ret, int fd); /* keeps fd */
void	 cmd_req_detach(struct cmd_req *);
const char *cmd_arg_str(struct cmd_req *, const char *name, const char *dflt);
json_int_t cmd_arg_int(struct cmd_req *, const char *name, json_int_t dflt);
int	 cmd_arg_bool(struct cmd_req *, const char *name, int dflt);

/* The command families; each file exports its entries. */
extern const struct cmd_entry	cmd_server_entries[];
extern const struct cmd_entry	cmd_vm_entries[];
extern const struct cmd_entry	cmd_vm_disk_entries[];
extern const struct cmd_entry	cmd_image_entries[];
extern const struct cmd_entry	cmd_net_entries[];
extern const struct cmd_entry	cmd_user_entries[];
extern const struct cmd_entry	cmd_broker_entries[];
extern const struct cmd_entry	cmd_session_entries[];

/* cmd-user.c: office users and the desktops assigned to them. */
struct vm;
json_t	*cmd_user_get(const char *login);
const char *cmd_user_owner(const struct vm *);

/*
 * cmd-broker.c: revocation. End login's open sessions at once, on vm or
 * (vm NULL) on all of theirs: SPICE clients are disconnected (a fresh,
 * expired password), RDP sessions learn it from desktop.revoked. why goes
 * into the session records ("revoked: why").
 */
void	 cmd_broker_revoke(const char *login, const char *vm, const char *why);

/* session.c: SPICE sessions, fed by server_event. */
void	 session_event(const char *event, const char *vm, json_t *fields);
/* The next disconnects of vm's SPICE clients end for this reason. */
void	 session_end_reason(const char *vm, const char *why);
void	 session_ticket(const char *vm, const char *login, uid_t uid,
	    long long at, long long expires);

/*
 * spice-tls.c: the host's SPICE TLS certificate (made at first start) in
 * DIR/spice-tls, QEMU's x509-dir; its PEM text and subject for viewers.
 */
int		 spice_tls_init(char **cause);
const char	*spice_tls_dir(void);
const char	*spice_tls_ca(void);
const char	*spice_tls_subject(void);

/* accel.c */
int	 accel_kvm_usable(void);

#endif
