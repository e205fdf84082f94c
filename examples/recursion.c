/*
 * recursion: main -> recurse x depth -> leaf_spin.
 *
 * recurse(depth) calls itself until `depth` recurse frames are on the stack, then calls
 * leaf_spin, which burns a few milliseconds; then everything returns and main starts the next
 * descent. Going down and back up costs about a microsecond, so nearly every sample is in
 * leaf_spin with exactly `depth` recurse frames beneath it (120 by default, argv[2] overrides).
 *
 * 120 is chosen to sit just under the usual 127-frame limit of perf and of BPF stack maps
 * (kernel.perf_event_max_stack): a frame-pointer walk gives 123 frames (leaf_spin, 120 x
 * recurse, main, __libc_start_call_main, where glibc's missing frame pointers end the walk)
 * and a DWARF walk 125 (plus __libc_start_main and _start), so a profiler that truncates, or
 * walks the frame chain wrongly, shows it. Depths above about 122 hit the limit on purpose.
 */
#include <stdint.h>
#include <stdio.h>

#include "common.h"

#define DEFAULT_DEPTH 120
#define MAX_DEPTH 100000
#define LEAF_ITERS 1000000

/* A volatile stack slot gives this leaf a frame; see split.c for why GCC 12 needs that. */
__attribute__((noinline, noclone)) void leaf_spin(void)
{
	volatile uint64_t acc = 3;

	for (uint64_t i = 0; i < LEAF_ITERS; i++)
		acc = (acc ^ i) * 0x94d049bb133111ebull;
	sink = acc;
}

/*
 * The volatile read after the call is what keeps one real frame per level: without work left
 * to do after the recursive call, -O2 turns the recursion into a jump (sibling call) or a loop.
 */
__attribute__((noinline, noclone)) void recurse(int depth)
{
	volatile int level = depth;

	if (depth > 1)
		recurse(depth - 1);
	else
		leaf_spin();
	sink += (unsigned long long)level;
}

static int parse_depth(int argc, char **argv)
{
	char *end;
	long depth;

	if (argc < 3)
		return DEFAULT_DEPTH;
	depth = strtol(argv[2], &end, 10);
	if (end == argv[2] || *end != '\0' || depth < 1 || depth > MAX_DEPTH) {
		fprintf(stderr, "usage: %s [seconds] [depth 1..%d]  (got '%s')\n", argv[0], MAX_DEPTH,
			argv[2]);
		exit(2);
	}
	return (int)depth;
}

int main(int argc, char **argv)
{
	double seconds = parse_seconds(argc, argv);
	int depth = parse_depth(argc, argv);
	double start = monotonic_seconds();
	double deadline = start + seconds;
	unsigned long descents = 0;

	do {
		recurse(depth);
		descents++;
	} while (!past(deadline));

	fprintf(stderr, "recursion: %lu descents to depth %d in %.2f s\n", descents, depth,
		monotonic_seconds() - start);
	return 0;
}
