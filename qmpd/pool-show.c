/*
 * What `pool show` answers, on one host (pool.c) and in a cluster
 * (cluster-pool.c) alike: the pool's record, its desktops and their
 * counts. The counts are taken from the desktops listed, so the two can
 * never disagree.
 */
#include <string.h>

#include <jansson.h>

#include "pool.h"

/* Counts in a member what its "free", "owner" and "state" say. */
static void
pool_show_count(json_t *d, int *free_, int *used, int *running)
{
	const char	*state = json_string_value(json_object_get(d,
			    "state"));

	*free_ += json_is_true(json_object_get(d, "free"));
	*used += json_is_string(json_object_get(d, "owner"));
	*running += state != NULL && strcmp(state, "running") == 0;
}

json_t *
pool_show_json(json_t *pool, json_t *desktops)
{
	json_t	*j, *d;
	size_t	 i;
	int	 free_ = 0, used = 0, running = 0;

	json_array_foreach(desktops, i, d)
		pool_show_count(d, &free_, &used, &running);
	j = json_deep_copy(pool);
	json_object_set_new(j, "desktops", desktops);
	json_object_set_new(j, "count", json_integer(json_array_size(
	    desktops)));
	json_object_set_new(j, "free", json_integer(free_));
	json_object_set_new(j, "in_use", json_integer(used));
	json_object_set_new(j, "running", json_integer(running));
	return (j);
}
