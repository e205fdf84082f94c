/*
 * offcpu: threads that wait a known share of their time, for the off-CPU profile.
 *
 *   offcpu SECONDS MODE
 *
 * MODE is one of:
 *  - sleep: one thread, cycles of compute_burst (about 3 ms of CPU) then sleep_wait
 *    (nanosleep 7 ms): it waits about 70 % of the wall time, all of it under sleep_wait,
 *    and burns its CPU under compute_burst.
 *  - mutex: a holder thread takes a mutex, computes about 4 ms under hold_and_compute and
 *    lets go for a moment; a waiter thread blocks in lock_waiter on the same mutex, so it
 *    waits most of its time there.
 *  - pipe: a reader thread blocks in pipe_reader on a pipe that a writer thread feeds one
 *    byte every 20 ms (the writer sleeps in writer_pause between writes).
 *
 * At exit it prints, per waiting function, the wall time it measured itself around each
 * blocking call, as `blocked FUNCTION MICROSECONDS`, so a test can compare what the profiler
 * charged against what the program saw (both include the wake-up latency).
 */
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "common.h"

static double deadline;

/* About `ms` milliseconds of CPU, as a dependency chain the compiler cannot shorten. */
__attribute__((noinline)) static void spin_ms(double ms)
{
	volatile unsigned long long x = 1;
	double until = monotonic_seconds() + ms / 1000.0;

	do {
		for (int i = 0; i < 20000; i++)
			x = x * 6364136223846793005ULL + 1442695040888963407ULL;
	} while (monotonic_seconds() < until);
	sink = x;
}

__attribute__((noinline)) static void compute_burst(void)
{
	spin_ms(3.0);
}

static double us_since(double t0)
{
	return (monotonic_seconds() - t0) * 1e6;
}

static double sleep_blocked_us;

__attribute__((noinline)) static void sleep_wait(void)
{
	struct timespec ts = {.tv_sec = 0, .tv_nsec = 7 * 1000 * 1000};
	double t0 = monotonic_seconds();

	nanosleep(&ts, NULL);
	sleep_blocked_us += us_since(t0);
}

static void run_sleep(void)
{
	while (monotonic_seconds() < deadline) {
		compute_burst();
		sleep_wait();
	}
	printf("blocked sleep_wait %.0f\n", sleep_blocked_us);
}

static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static double lock_blocked_us;

__attribute__((noinline)) static void hold_and_compute(void)
{
	pthread_mutex_lock(&lock);
	spin_ms(4.0);
	pthread_mutex_unlock(&lock);
}

static void *holder(void *arg)
{
	(void)arg;
	while (monotonic_seconds() < deadline) {
		hold_and_compute();
		/* A moment unlocked, so the waiter gets the mutex now and then. */
		struct timespec ts = {.tv_sec = 0, .tv_nsec = 200 * 1000};
		nanosleep(&ts, NULL);
	}
	return NULL;
}

__attribute__((noinline)) static void lock_waiter(void)
{
	double t0 = monotonic_seconds();

	pthread_mutex_lock(&lock);
	lock_blocked_us += us_since(t0);
	pthread_mutex_unlock(&lock);
}

static void *waiter(void *arg)
{
	(void)arg;
	while (monotonic_seconds() < deadline)
		lock_waiter();
	return NULL;
}

static int fds[2];
static double pipe_blocked_us;

__attribute__((noinline)) static void writer_pause(void)
{
	struct timespec ts = {.tv_sec = 0, .tv_nsec = 20 * 1000 * 1000};

	nanosleep(&ts, NULL);
}

static void *writer(void *arg)
{
	(void)arg;
	while (monotonic_seconds() < deadline) {
		writer_pause();
		if (write(fds[1], "x", 1) != 1)
			break;
	}
	close(fds[1]);
	return NULL;
}

__attribute__((noinline)) static int pipe_reader(void)
{
	char c;
	double t0 = monotonic_seconds();
	ssize_t n = read(fds[0], &c, 1);

	pipe_blocked_us += us_since(t0);
	return n == 1;
}

static void *reader(void *arg)
{
	(void)arg;
	while (pipe_reader())
		;
	return NULL;
}

static void run_pair(void *(*a)(void *), void *(*b)(void *))
{
	pthread_t ta, tb;

	if (pthread_create(&ta, NULL, a, NULL) || pthread_create(&tb, NULL, b, NULL)) {
		fprintf(stderr, "offcpu: cannot start threads\n");
		exit(2);
	}
	pthread_join(ta, NULL);
	pthread_join(tb, NULL);
}

int main(int argc, char **argv)
{
	double seconds = parse_seconds(argc, argv);
	const char *mode = argc > 2 ? argv[2] : "sleep";

	deadline = monotonic_seconds() + seconds;
	if (strcmp(mode, "sleep") == 0) {
		run_sleep();
	} else if (strcmp(mode, "mutex") == 0) {
		run_pair(holder, waiter);
		printf("blocked lock_waiter %.0f\n", lock_blocked_us);
	} else if (strcmp(mode, "pipe") == 0) {
		if (pipe(fds) != 0) {
			perror("offcpu: pipe");
			return 2;
		}
		run_pair(writer, reader);
		printf("blocked pipe_reader %.0f\n", pipe_blocked_us);
	} else {
		fprintf(stderr, "offcpu: unknown mode `%s` (sleep, mutex or pipe)\n", mode);
		return 2;
	}
	return 0;
}
