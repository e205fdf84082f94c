/*
 * threads: two CPU-bound threads named hot-alpha and hot-beta.
 *
 *   hot-alpha: hot_thread -> alpha_spin
 *   hot-beta:  hot_thread -> beta_spin
 *   main thread: blocked in pthread_join, so it gets (almost) no samples.
 *
 * Both threads run the same loop for the same wall time, so alpha_spin and beta_spin get
 * about equal CPU. Each thread names itself before it starts spinning, so every sample of it
 * already carries its name.
 */
#define _GNU_SOURCE /* pthread_setname_np */
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include "common.h"

#define CHUNK_ITERS 1000000

/* Volatile stack slots give these leaves frames; see split.c for why GCC 12 needs that. */
__attribute__((noinline, noclone)) void alpha_spin(void)
{
	volatile uint64_t acc = 5;

	for (uint64_t i = 0; i < CHUNK_ITERS; i++)
		acc = acc * 0xd6e8feb86659fd93ull + i;
	sink = acc;
}

__attribute__((noinline, noclone)) void beta_spin(void)
{
	volatile uint64_t acc = 7;

	for (uint64_t i = 0; i < CHUNK_ITERS; i++)
		acc = acc * 0xa0761d6478bd642full + i;
	sink = acc;
}

struct hot_thread {
	const char *name;
	void (*spin)(void);
	double deadline;
	pthread_t id;
	unsigned long chunks;
};

__attribute__((noinline, noclone)) void *hot_thread(void *arg)
{
	struct hot_thread *t = arg;

	pthread_setname_np(pthread_self(), t->name);
	do {
		t->spin();
		t->chunks++;
	} while (!past(t->deadline));
	return NULL;
}

int main(int argc, char **argv)
{
	double seconds = parse_seconds(argc, argv);
	double start = monotonic_seconds();
	struct hot_thread threads[] = {
		{ .name = "hot-alpha", .spin = alpha_spin, .deadline = start + seconds },
		{ .name = "hot-beta", .spin = beta_spin, .deadline = start + seconds },
	};
	int n = (int)(sizeof(threads) / sizeof(threads[0]));

	for (int i = 0; i < n; i++) {
		int err = pthread_create(&threads[i].id, NULL, hot_thread, &threads[i]);

		if (err) {
			fprintf(stderr, "threads: pthread_create: %s\n", strerror(err));
			return 1;
		}
	}
	for (int i = 0; i < n; i++)
		pthread_join(threads[i].id, NULL);

	fprintf(stderr, "threads: hot-alpha %lu chunks, hot-beta %lu chunks in %.2f s\n",
		threads[0].chunks, threads[1].chunks, monotonic_seconds() - start);
	return 0;
}
