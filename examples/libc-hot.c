/*
 * libc-hot: main -> sort_round -> qsort (glibc, built without frame pointers) -> compare.
 *
 * Nearly all of the time is spent inside glibc's qsort (its merge sort, msort_with_tmp, and
 * the memcpy calls it makes) and in the comparison callback it calls. Built with frame
 * pointers itself, so a frame-pointer walk from the callback gets lost in glibc's frames;
 * only unwind tables for libc reach sort_round and main through qsort.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common.h"

#define ELEMENTS 20000

struct item {
	uint64_t key;
	char payload[24];
};

__attribute__((noinline, noclone)) int compare_items(const void *a, const void *b)
{
	const struct item *x = a, *y = b;

	return (x->key > y->key) - (x->key < y->key);
}

__attribute__((noinline, noclone)) void sort_round(struct item *items, uint64_t *rng)
{
	for (int i = 0; i < ELEMENTS; i++) {
		uint64_t r = *rng;

		r ^= r << 13;
		r ^= r >> 7;
		r ^= r << 17;
		*rng = r;
		items[i].key = r;
	}
	qsort(items, ELEMENTS, sizeof(items[0]), compare_items);
	sink += items[0].key;
}

int main(int argc, char **argv)
{
	double seconds = parse_seconds(argc, argv);
	double start = monotonic_seconds();
	struct item *items = calloc(ELEMENTS, sizeof(*items));
	uint64_t rng = 0x2545f4914f6cdd1dull;
	unsigned long rounds = 0;

	if (!items)
		return 1;
	do {
		sort_round(items, &rng);
		rounds++;
	} while (!past(start + seconds));
	fprintf(stderr, "libc-hot: %lu sorts of %d items in %.2f s\n", rounds, ELEMENTS,
		monotonic_seconds() - start);
	free(items);
	return 0;
}
