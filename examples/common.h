/*
 * Helpers shared by the C example workloads.
 *
 * Every workload takes its run time in seconds as argv[1] (default 5, fractions allowed) and
 * stops by wall clock. Reading the clock costs tens of nanoseconds through the vDSO; callers
 * check it only between chunks of work that last a good fraction of a millisecond, so the
 * check never shows up in a 99 Hz profile.
 *
 * Nothing here is hot, so these helpers carry no attributes: their names are not part of the
 * workloads' expected profiles.
 */
#ifndef EMBER_EXAMPLES_COMMON_H
#define EMBER_EXAMPLES_COMMON_H

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#define DEFAULT_SECONDS 5.0

/*
 * Hot loops store their result here so the compiler must compute it; volatile because an
 * unobservable result lets the optimizer delete the loop or fold two look-alike functions.
 */
static volatile unsigned long long sink;

static inline double monotonic_seconds(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* Bad arguments are a caller bug worth a loud failure, not a silent default. */
static inline double parse_seconds(int argc, char **argv)
{
	char *end;
	double s;

	if (argc < 2)
		return DEFAULT_SECONDS;
	errno = 0;
	s = strtod(argv[1], &end);
	if (errno != 0 || end == argv[1] || *end != '\0' || !isfinite(s) || s < 0) {
		fprintf(stderr, "usage: %s [seconds]  (got '%s')\n", argv[0], argv[1]);
		exit(2);
	}
	return s;
}

static inline int past(double deadline)
{
	return monotonic_seconds() >= deadline;
}

#endif
