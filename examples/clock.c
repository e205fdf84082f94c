/*
 * clock: main -> read_clocks -> clock_gettime (glibc) -> the vDSO's __vdso_clock_gettime.
 *
 * Nearly all of the time is spent reading the clock, most of it inside the vDSO: code the
 * kernel maps into every process, with no file behind it and without frame pointers. Only
 * an unwind table for the vDSO (built from its in-memory image) steps from there back to
 * read_clocks and main.
 *
 * Usage: clock [SECONDS]   (default 5)
 */
#include <stdint.h>
#include <time.h>

#include "common.h"

__attribute__((noinline, noclone)) uint64_t read_clocks(uint64_t n)
{
	struct timespec ts;
	uint64_t sum = 0;

	for (uint64_t i = 0; i < n; i++) {
		clock_gettime(CLOCK_MONOTONIC, &ts);
		sum += (uint64_t)ts.tv_nsec;
	}
	return sum;
}

int main(int argc, char **argv)
{
	double deadline = monotonic_seconds() + parse_seconds(argc, argv);

	while (!past(deadline))
		sink += read_clocks(100000);
	return 0;
}
