/*
 * qdesk: the admin CLI. It maps "qdesk GROUP VERB ARGS" one to one onto an
 * admin protocol request through one table (cmds.c), sends it over the
 * admin socket with plain blocking I/O (client.c) and prints the reply
 * (print.c). Parsing argv into the request is pure (args.c).
 *
 * Names the daemon also has for something else are ctl_ here, as in
 * vmctl: struct ctl_command (qmpd's struct cmd_entry), struct ctl_arg and
 * CTL_STR... (its struct cmd_arg and ARG_STR...), struct ctl_client (its
 * struct client).
 */
#ifndef QDESK_CLI_H
#define QDESK_CLI_H

#include <sys/types.h>

#include <signal.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include <jansson.h>

#define QDESK_SOCKET_DEFAULT	"/var/lib/qdesk/qmpd.sock"
#define QDESK_TIMEOUT_DEFAULT	120	/* seconds to wait for a reply */

/* Exit codes. */
#define EXIT_OK			0
#define EXIT_DAEMON		1	/* the daemon answered with an error */
#define EXIT_USAGE		2
#define EXIT_UNREACHABLE	3	/* no daemon, or it went away */
#define EXIT_RESOURCE		4	/* the host ran out of something */

/* What an argument's value must look like. */
enum ctl_argtype {
	CTL_STR,
	CTL_INT,	/* a whole number */
	CTL_BOOL,	/* a flag: present means true */
	CTL_STRLIST,	/* repeatable: a JSON array of strings */
	CTL_PATH	/* an existing file, made absolute */
};

/* Argument flags. */
#define CTL_LOCAL	0x1	/* used by the CLI itself, never sent */
#define CTL_OPTIONAL	0x2	/* a positional that may be left out */
#define CTL_REQUIRED	0x4	/* an option that must be given */

/* A positional ("NAME") or an option ("--memory") and its JSON key. */
struct ctl_arg {
	const char		*name;
	const char		*key;
	enum ctl_argtype	 type;
	int			 flags;
};

/* How a reply is shown to a human. */
enum print_kind {
	PRINT_NONE,	/* nothing */
	PRINT_STATE,	/* "desk1: running" */
	PRINT_DONE,	/* the entry's done line, "$name: deleted" */
	PRINT_VM,	/* one VM, key: value */
	PRINT_VM_TABLE,	/* vm.list */
	PRINT_OBJECT,	/* generic key: value, nested objects indented */
	PRINT_LIST,	/* generic table of an array of objects */
	PRINT_VERIFY	/* image.verify: problems, and exit 1 unless ok */
};

/* How one table cell is formatted. */
enum col_format {
	COL_TEXT,	/* strings, numbers, yes/no, lists joined by "," */
	COL_BYTES,	/* a size in bytes, as 1.0G */
	COL_MIB,	/* a size in MiB, as 512M */
	COL_TIME,	/* a Unix time, as local date and time */
	COL_DURATION,	/* seconds, as 3d 4h */
	COL_PID		/* a pid, or "-" when 0 */
};

/* A column of a PRINT_LIST table. */
struct print_col {
	const char	*header;
	const char	*key;
	enum col_format	 format;
};

#define CTL_MAXPOS	3

struct cli;

/* One command: what the admin types, what the daemon is sent, the output. */
struct ctl_command {
	const char		*group;
	const char		*verb;	/* NULL: the group alone is the command */
	const char		*cmd;	/* daemon command */
	const char		*usage;	/* what follows "qdesk GROUP VERB" */
	struct ctl_arg		 pos[CTL_MAXPOS + 1];
	const struct ctl_arg	*opts;	/* NULL or ended by a NULL name */
	enum print_kind		 print;
	const char		*list;	/* PRINT_LIST: the array member */
	const struct print_col	*cols;	/* PRINT_LIST: NULL for all keys */
	const char		*done;	/* PRINT_DONE: $key from args or reply */
	int			 wait;	/* s the daemon may take; see run.c */
	int			 flags;
	int			(*run)(struct cli *,
				    const struct ctl_command *, json_t *args,
				    json_t *local);
};

/* Entry flags. */
#define CTL_PASSWORD	0x1	/* may carry a password (--password-stdin) */
#define CTL_NEEDPASS	0x2	/* must carry a password */
/* Its --timeout counts after .wait s of its own steps (vm migrate:
   preparing the target, then RAM's --timeout, default .wait as well). */
#define CTL_WAIT_PLUS	0x4

/* What the global options set. */
struct cli {
	const char	*socket;
	const char	*host;		/* --host ADDR:PORT: over mutual TLS */
	const char	*certdir;	/* --cert DIR, with --host */
	int		 json;
	int		 timeout;	/* seconds; 0 waits for ever */
};

/* cmds.c */
extern const struct ctl_command ctl_commands[];
extern const size_t ctl_commands_size;
const struct ctl_command *cmds_find(const char *group, const char *verb,
	    int *known_group);
int	 cmds_group_exists(const char *group);
void	 cmds_usage(FILE *, const struct ctl_command *);
void	 cmds_list(FILE *, const char *group);
void	 cmds_main_usage(FILE *);

/* args.c */
int	 args_global(int argc, char **argv, struct cli *, int *optind,
	    char **cause);
int	 args_parse(const struct ctl_command *, int argc, char **argv,
	    json_t **args, json_t **local, char **cause);
int	 args_int(const char *s, long long *v);


/* print.c */
void	 print_size(char *buf, size_t len, uint64_t bytes);
void	 print_time(char *buf, size_t len, double ts, int ms);
char	*print_value(json_t *v, enum col_format);
void	 print_reply(FILE *, const struct ctl_command *, json_t *ret,
	    json_t *args);
int	 print_exit(FILE *, const struct ctl_command *, json_t *ret);
void	 print_json(FILE *, json_t *ret);
void	 print_event(FILE *, json_t *event);

/* client.c */
struct ctl_client;

/* A call's outcome: transport failures are never daemon errors. */
enum client_status {
	CLIENT_RETURN,		/* *reply is the "return" value */
	CLIENT_ERROR,		/* *reply is the "error" object */
	CLIENT_FAILED,		/* no reply: *cause says why */
	CLIENT_EOF,		/* the daemon closed the connection */
	CLIENT_INTERRUPTED	/* SIGINT arrived */
};
struct ctl_client *client_connect(const char *path, int timeout,
	    json_t **error, char **cause);
struct ctl_client *client_connect_tls(const char *addr, const char *certdir,
	    int timeout, json_t **error, char **cause);
void	 client_free(struct ctl_client *);
enum client_status client_call(struct ctl_client *, const char *cmd,
	    json_t *args, json_t **reply, char **cause);
enum client_status client_next(struct ctl_client *, json_t **msg,
	    char **line, char **cause);
int	 client_error_exit(json_t *error);
extern volatile sig_atomic_t client_interrupted;

/* cluster.c: qdesk cluster init and cluster cert, done here, not by qmpd. */
int	 run_cluster_init(struct cli *, const struct ctl_command *, json_t *,
	    json_t *);
int	 run_cluster_cert(struct cli *, const struct ctl_command *, json_t *,
	    json_t *);

/* cluster-tls.c: the TLS side of client.c for --host. */
struct cluster_tls;
struct cluster_tls *cluster_tls_connect(const char *addr, const char *dir,
	    int timeout, int *fdp, char **cause);
ssize_t	 cluster_tls_read(struct cluster_tls *, void *, size_t);
ssize_t	 cluster_tls_write(struct cluster_tls *, const void *, size_t);
int	 cluster_tls_pending(struct cluster_tls *);
void	 cluster_tls_free(struct cluster_tls *);

/* run.c: commands that do more than one request and one print. */
int	 run_timeout(const struct cli *, const struct ctl_command *,
	    json_t *);
int	 run_generic(struct cli *, const struct ctl_command *, json_t *,
	    json_t *);
int	 run_console(struct cli *, const struct ctl_command *, json_t *,
	    json_t *);
int	 run_screenshot(struct cli *, const struct ctl_command *, json_t *,
	    json_t *);
int	 run_events(struct cli *, const struct ctl_command *, json_t *,
	    json_t *);
int	 run_ticket(struct cli *, const struct ctl_command *, json_t *,
	    json_t *);

#endif
