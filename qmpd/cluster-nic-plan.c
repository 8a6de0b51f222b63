/*
 * What a copy of a cluster desktop changes to have etcd's NICs: pure,
 * for the unit test (cluster-nic.c acts on it). NICs are compared by
 * network only, as etcd's "nets" names them; a copy keeps each NIC
 * whose network etcd still lists as often (and with it its MAC and
 * lease), loses the others, and gains NICs on the networks left over.
 */
#include <string.h>

#include <jansson.h>

#include "cluster.h"

/*
 * local and etcd are arrays of network names (etcd NULL: none). keep[i]
 * says whether local NIC i stays (keep has room for every local NIC);
 * *add (the caller's, NULL if none is wanted) gets etcd's networks no
 * local NIC covers, in etcd's order. Returns how many NICs go or come:
 * 0 when both name the same networks as often, in any order.
 */
int
cluster_nic_plan(json_t *local, json_t *etcd, int *keep, json_t **add)
{
	json_t		*want = json_object(), *v;
	const char	*k;
	json_int_t	 n;
	size_t		 i;
	int		 changes = 0;

	json_array_foreach(etcd, i, v) {
		if ((k = json_string_value(v)) != NULL)
			json_object_set_new(want, k, json_integer(
			    json_integer_value(json_object_get(want, k)) + 1));
	}
	json_array_foreach(local, i, v) {
		k = json_string_value(v);
		n = k != NULL ? json_integer_value(json_object_get(want, k)) : 0;
		keep[i] = n > 0;
		if (n > 0)
			json_object_set_new(want, k, json_integer(n - 1));
		else
			changes++;
	}
	if (add != NULL)
		*add = json_array();
	json_array_foreach(etcd, i, v) {
		k = json_string_value(v);
		if (k == NULL || (n = json_integer_value(json_object_get(want,
		    k))) <= 0)
			continue;
		json_object_set_new(want, k, json_integer(n - 1));
		if (add != NULL)
			json_array_append(*add, v);
		changes++;
	}
	json_decref(want);
	return (changes);
}
