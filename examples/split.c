/*
 * split: main -> work -> fn_a (70 % of CPU time) / fn_b (30 %).
 *
 * The split is fixed by counting, not by timing, so it is the same on any CPU:
 *  - fn_a and fn_b each run one "unit": the same loop with the same instructions and the same
 *    dependency chain, so a unit costs the same in either function. Only the multiplier
 *    constant differs, which keeps the compiler from merging the two into one symbol.
 *  - work runs rounds of ten units, exactly seven in fn_a and three in fn_b.
 *
 * A fixed pattern (a,a,a,a,a,a,a,b,b,b, ...) would have a fixed period, and a sampler whose
 * period is near a multiple of it locks onto a few phases of the pattern (a 10.1 ms loop under
 * 99 Hz read 59/41 for a true 70/30). So each round places its three fn_b units at positions
 * drawn from a fixed-seed pseudo-random generator: there is no period to lock onto, and a
 * sample at any rate is simply a 70/30 draw. The only error left is counting noise,
 * sqrt(0.21 / samples): about 2 points for 500 samples (99 Hz for 5 s).
 *
 * A unit is about 0.4 ms on a 2-3 GHz x86 core; its length doesn't affect the split.
 */
#include <stdint.h>
#include <stdio.h>

#include "common.h"

#define UNIT_ITERS 400000
/*
 * The CI recipe's "regression": build with -DFN_B_WORK_FACTOR=2 and each fn_b unit does twice
 * the work, so fn_b's share goes from 30 % to 6/13 = 46 % (examples/ci, tests/it/ci_recipe.rs).
 * At the default of 1 the code is exactly the 70/30 split.
 */
#ifndef FN_B_WORK_FACTOR
#define FN_B_WORK_FACTOR 1
#endif
#define UNITS_PER_ROUND 10
#define B_UNITS_PER_ROUND 3

/*
 * The accumulator is a volatile local on purpose: GCC 12 gives a leaf function that never
 * touches the stack no frame, even with -fno-omit-frame-pointer (-mno-omit-leaf-frame-pointer
 * does not change that), and a frame-pointer walk from such a leaf skips its caller
 * (main;fn_a instead of main;work;fn_a). A stack slot forces the frame. It also makes every
 * iteration a store-to-load chain through memory, so the cost per iteration is the same
 * in both functions.
 */
__attribute__((noinline, noclone)) void fn_a(void)
{
	volatile uint64_t acc = 1;

	for (uint64_t i = 0; i < UNIT_ITERS; i++)
		acc = acc * 0x9e3779b97f4a7c15ull + i;
	sink = acc;
}

__attribute__((noinline, noclone)) void fn_b(void)
{
	volatile uint64_t acc = 2;

	for (uint64_t i = 0; i < (uint64_t)UNIT_ITERS * FN_B_WORK_FACTOR; i++)
		acc = acc * 0xbf58476d1ce4e5b9ull + i;
	sink = acc;
}

/* xorshift64: cheap, and fixed-seeded so every run does the same work. */
static uint64_t next_random(uint64_t *state)
{
	uint64_t x = *state;

	x ^= x << 13;
	x ^= x >> 7;
	x ^= x << 17;
	*state = x;
	return x;
}

__attribute__((noinline, noclone)) unsigned long work(double deadline)
{
	uint64_t rng = 0x2545f4914f6cdd1dull;
	unsigned long rounds = 0;

	/* Whole rounds only, so the unit counts are exactly 7:3 when the run ends. */
	do {
		int is_b[UNITS_PER_ROUND] = { 0 };

		for (int placed = 0; placed < B_UNITS_PER_ROUND;) {
			int slot = (int)(next_random(&rng) % UNITS_PER_ROUND);

			if (!is_b[slot]) {
				is_b[slot] = 1;
				placed++;
			}
		}
		for (int slot = 0; slot < UNITS_PER_ROUND; slot++) {
			if (is_b[slot])
				fn_b();
			else
				fn_a();
		}
		rounds++;
	} while (!past(deadline));
	return rounds;
}

int main(int argc, char **argv)
{
	double seconds = parse_seconds(argc, argv);
	double start = monotonic_seconds();
	unsigned long rounds = work(start + seconds);
	double elapsed = monotonic_seconds() - start;

	fprintf(stderr, "split: %lu rounds (%lu fn_a + %lu fn_b units) in %.2f s, %.3f ms per unit\n",
		rounds, rounds * (UNITS_PER_ROUND - B_UNITS_PER_ROUND), rounds * B_UNITS_PER_ROUND,
		elapsed, elapsed * 1e3 / (double)(rounds * UNITS_PER_ROUND));
	return 0;
}
