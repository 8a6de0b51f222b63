/*
 * qmpd/cluster-listen.c's pure parts: the role a client certificate's CN
 * gives, and the --listen value, each bad one with its one-line error.
 */
#include <sys/socket.h>

#include <netinet/in.h>

#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "cluster.h"
#include "qmpd.h"

/* What cluster-listen.c calls that the test never reaches. */
struct qmpd	*qmpd;

struct client *
server_client_new(struct bufferevent *bev, enum role role, const char *remote)
{
	abort();
}

static const struct {
	const char	*cn;
	int		 role;
	const char	*why;
} roles[] = {
	{ "host:h1", ROLE_HOST, NULL },
	{ "broker", ROLE_BROKER, NULL },
	{ "admin:alice", ROLE_ADMIN, NULL },
	{ "admin:", ROLE_NONE, "certificate CN \"admin:\": " },
	{ "host:H1", ROLE_NONE, "certificate CN \"host:H1\": " },
	{ "host:../x", ROLE_NONE, "certificate CN \"host:../x\": " },
	{ "guest", ROLE_NONE, "certificate CN \"guest\" names no role "
	  "(host:NAME, broker or admin:NAME)" },
	{ "brokers", ROLE_NONE, "certificate CN \"brokers\" names no role " },
	{ "Broker", ROLE_NONE, "certificate CN \"Broker\" names no role " },
	{ "", ROLE_NONE, "certificate CN \"\" names no role " },
	{ NULL, ROLE_NONE, "the certificate has no CN" },
};

static const char *good_listen[] = {
	"127.0.0.1:7443", "10.0.0.11:1", "0.0.0.0:65535", "[::1]:7443",
};

static const char *bad_listen[] = {
	"nonsense", "127.0.0.1:", ":7443", "127.0.0.1:0", "127.0.0.1:65536",
	"127.0.0.1:70000", "host.example:7443", "127.0.0.1:+7", "127.0.0.1:7x",
	"1.2.3.4.5:7", "",
};

int
main(void)
{
	struct sockaddr_storage	 ss;
	char			*why, *cause;
	size_t			 i;
	int			 sslen;

	for (i = 0; i < sizeof roles / sizeof roles[0]; i++) {
		CHECK(cluster_listen_role(roles[i].cn, &why) == roles[i].role);
		if (roles[i].why == NULL)
			CHECK(why == NULL);
		else {
			CHECK(why != NULL && strncmp(why, roles[i].why,
			    strlen(roles[i].why)) == 0);
			CHECK(strchr(why, '\n') == NULL);
		}
		free(why);
	}

	for (i = 0; i < sizeof good_listen / sizeof good_listen[0]; i++) {
		cause = NULL;
		CHECK(cluster_listen_parse(good_listen[i], &ss, &sslen,
		    &cause) == 0);
		CHECK(cause == NULL);
	}
	CHECK(cluster_listen_parse("10.0.0.11:7443", &ss, &sslen, &cause) == 0);
	CHECK(ss.ss_family == AF_INET && sslen == sizeof(struct sockaddr_in));
	CHECK(ntohs(((struct sockaddr_in *)&ss)->sin_port) == 7443);
	for (i = 0; i < sizeof bad_listen / sizeof bad_listen[0]; i++) {
		cause = NULL;
		CHECK(cluster_listen_parse(bad_listen[i], &ss, &sslen,
		    &cause) == -1);
		CHECK(cause != NULL && strstr(cause, "want ADDR:PORT") !=
		    NULL && strchr(cause, '\n') == NULL);
		free(cause);
	}
	return (check_exit());
}
