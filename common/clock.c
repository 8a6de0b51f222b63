/* Milliseconds and seconds on the monotonic and realtime clocks. */
#include <time.h>

#include "clock.h"

static long long
clock_ms(clockid_t id)
{
	struct timespec	ts;

	clock_gettime(id, &ts);
	return ((long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000);
}

long long
clock_mono_ms(void)
{
	return (clock_ms(CLOCK_MONOTONIC));
}

time_t
clock_mono_s(void)
{
	struct timespec	ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (ts.tv_sec);
}

long long
clock_wall_ms(void)
{
	return (clock_ms(CLOCK_REALTIME));
}
