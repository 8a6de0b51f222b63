/*
 * qmpd/cluster-nic-plan.c: what a copy of a cluster desktop keeps and
 * gains to have etcd's NICs, compared by network, in any order.
 */
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "cluster.h"

static const struct {
	const char	*local;		/* JSON arrays of network names */
	const char	*etcd;		/* NULL: etcd names none */
	int		 changes;
	const char	*keep;		/* one 0/1 per local NIC */
	const char	*add;
} plans[] = {
	{ "[]", NULL, 0, "", "[]" },
	{ "[\"a\"]", "[\"a\"]", 0, "1", "[]" },
	{ "[\"a\",\"b\"]", "[\"b\",\"a\"]", 0, "11", "[]" },
	{ "[\"a\"]", "[\"a\",\"b\"]", 1, "1", "[\"b\"]" },
	{ "[\"a\",\"b\"]", "[\"b\"]", 1, "01", "[]" },
	{ "[\"a\"]", NULL, 1, "0", "[]" },
	{ "[]", "[\"b\",\"a\"]", 2, "", "[\"b\",\"a\"]" },
	/* Twice the same network: each NIC counts. */
	{ "[\"a\",\"a\",\"b\"]", "[\"a\",\"b\",\"b\",\"c\"]", 3, "101",
	  "[\"b\",\"c\"]" },
	{ "[\"a\",\"a\"]", "[\"a\",\"a\"]", 0, "11", "[]" },
};

int
main(void)
{
	json_t	*local, *etcd, *add, *want;
	char	 got[16];
	int	 keep[8];
	size_t	 i, j;

	for (i = 0; i < sizeof plans / sizeof plans[0]; i++) {
		local = json_loads(plans[i].local, 0, NULL);
		etcd = plans[i].etcd != NULL ? json_loads(plans[i].etcd, 0,
		    NULL) : NULL;
		memset(keep, 0xff, sizeof keep);
		CHECK(cluster_nic_plan(local, etcd, keep, &add) ==
		    plans[i].changes);
		for (j = 0; j < json_array_size(local); j++)
			got[j] = keep[j] == 1 ? '1' : keep[j] == 0 ? '0' : '?';
		got[j] = '\0';
		CHECK_STR(got, plans[i].keep);
		want = json_loads(plans[i].add, 0, NULL);
		CHECK(json_equal(add, want));
		json_decref(want);
		json_decref(add);
		/* No add wanted: the count alone. */
		CHECK(cluster_nic_plan(local, etcd, keep, NULL) ==
		    plans[i].changes);
		json_decref(local);
		json_decref(etcd);
	}
	return (check_exit());
}
