/*
 * offcpu: threads that wait a known share of their time, for the off-CPU profile.
 *
 *   offcpu SECONDS MODE
 *
 * MODE is one of:
 *  - sleep: one thread, cycles of compute_burst (about 3 ms of CPU) then sleep_wait
 *    (nanosleep 5-9 ms, 7 ms on average): it waits about 70 % of the wall time, all of it
 *    under sleep_wait, and burns its CPU under compute_burst. The sleep varies from cycle
 *    to cycle so the loop cannot phase-lock with a sampler: a fixed 3 + 7 ms cycle (10.05 ms
 *    with the wake-up) beside 99 Hz's 10.1 ms period gave anywhere from 2 to 271 CPU
 *    samples in 4 s, where about 119 are due.
 *  - mutex: a holder thread takes a mutex, computes about 9 ms under hold_and_compute and
 *    lets go for 300 µs (asleep in holder_pause); a waiter thread takes and drops the same
 *    mutex (lock_waiter), then naps 500 µs (waiter_nap), by when the holder has it again:
 *    the waiter blocks in lock_waiter about 90 % of the time and never spins.
 *  - pipe: a reader thread blocks in pipe_reader on a pipe that a writer thread feeds one
 *    byte about every 22 ms (the writer computes for 2 ms in produce_item, then sleeps in
 *    writer_pause).
 *  - pingpong: two threads bounce one byte over a pair of pipes as fast as they can, each
 *    blocking in pingpong_wait for the other: a context-switch-heavy load (100k+ switches
 *    a second) for benchmarks. It prints `pingpong ROUNDS`, the round trips made.
 *
 * The threads are named after their role (`holder`, `waiter`, `reader`, `writer`, `ping`,
 * `pong`). At exit it prints, per waiting function, the wall time it measured itself
 * around each blocking call, as `blocked FUNCTION MICROSECONDS`, so a test can compare what
 * the profiler charged against what the program saw (both include the wake-up latency).
 */
#define _GNU_SOURCE
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

/* A xorshift generator with a fixed seed: runs are alike, cycles are not. */
static uint32_t jitter_state = 2463534242u;

static uint32_t jitter(void)
{
	jitter_state ^= jitter_state << 13;
	jitter_state ^= jitter_state >> 17;
	jitter_state ^= jitter_state << 5;
	return jitter_state;
}

__attribute__((noinline)) static void sleep_wait(void)
{
	/* 5 to 9 ms, uniformly. */
	long ns = 5 * 1000 * 1000 + (long)(jitter() % (4 * 1000 * 1000 + 1));
	struct timespec ts = {.tv_sec = 0, .tv_nsec = ns};
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
	spin_ms(9.0);
	pthread_mutex_unlock(&lock);
}

static double holder_blocked_us;

/* A moment unlocked, so the waiter gets the mutex now and then. */
__attribute__((noinline)) static void holder_pause(void)
{
	struct timespec ts = {.tv_sec = 0, .tv_nsec = 300 * 1000};
	double t0 = monotonic_seconds();

	nanosleep(&ts, NULL);
	holder_blocked_us += us_since(t0);
}

static void *holder(void *arg)
{
	(void)arg;
	pthread_setname_np(pthread_self(), "holder");
	while (monotonic_seconds() < deadline) {
		hold_and_compute();
		holder_pause();
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

static double nap_blocked_us;

__attribute__((noinline)) static void waiter_nap(void)
{
	struct timespec ts = {.tv_sec = 0, .tv_nsec = 500 * 1000};
	double t0 = monotonic_seconds();

	nanosleep(&ts, NULL);
	nap_blocked_us += us_since(t0);
}

static void *waiter(void *arg)
{
	(void)arg;
	pthread_setname_np(pthread_self(), "waiter");
	while (monotonic_seconds() < deadline) {
		lock_waiter();
		waiter_nap();
	}
	return NULL;
}

static int fds[2];
static double pipe_blocked_us;
static double writer_blocked_us;

__attribute__((noinline)) static void writer_pause(void)
{
	struct timespec ts = {.tv_sec = 0, .tv_nsec = 20 * 1000 * 1000};
	double t0 = monotonic_seconds();

	nanosleep(&ts, NULL);
	writer_blocked_us += us_since(t0);
}

__attribute__((noinline)) static void produce_item(void)
{
	spin_ms(2.0);
}

static void *writer(void *arg)
{
	(void)arg;
	pthread_setname_np(pthread_self(), "writer");
	while (monotonic_seconds() < deadline) {
		produce_item();
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
	pthread_setname_np(pthread_self(), "reader");
	while (pipe_reader())
		;
	return NULL;
}

/* pingpong: ping writes to pings[1] and waits on pongs[0]; pong the other way round. */
static int pings[2], pongs[2];
static volatile int stop_pingpong;
static unsigned long long rounds;

/* Blocks until the other thread's byte arrives; 0 when the pipe is closed. */
__attribute__((noinline)) static int pingpong_wait(int fd)
{
	char c;

	return read(fd, &c, 1) == 1;
}

static void *ping(void *arg)
{
	(void)arg;
	pthread_setname_np(pthread_self(), "ping");
	while (monotonic_seconds() < deadline) {
		/* The clock is read once per 64 rounds: it is not what is measured. */
		for (int i = 0; i < 64; i++) {
			if (write(pings[1], "p", 1) != 1 || !pingpong_wait(pongs[0]))
				goto out;
			rounds++;
		}
	}
out:
	close(pings[1]);
	return NULL;
}

static void *pong(void *arg)
{
	(void)arg;
	pthread_setname_np(pthread_self(), "pong");
	while (pingpong_wait(pings[0]))
		if (write(pongs[1], "q", 1) != 1)
			break;
	close(pongs[1]);
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
		printf("blocked holder_pause %.0f\n", holder_blocked_us);
		printf("blocked waiter_nap %.0f\n", nap_blocked_us);
	} else if (strcmp(mode, "pipe") == 0) {
		if (pipe(fds) != 0) {
			perror("offcpu: pipe");
			return 2;
		}
		run_pair(writer, reader);
		printf("blocked pipe_reader %.0f\n", pipe_blocked_us);
		printf("blocked writer_pause %.0f\n", writer_blocked_us);
	} else if (strcmp(mode, "pingpong") == 0) {
		if (pipe(pings) != 0 || pipe(pongs) != 0) {
			perror("offcpu: pipe");
			return 2;
		}
		run_pair(ping, pong);
		printf("pingpong %llu\n", rounds);
	} else {
		fprintf(stderr, "offcpu: unknown mode `%s` (sleep, mutex, pipe or pingpong)\n", mode);
		return 2;
	}
	return 0;
}
