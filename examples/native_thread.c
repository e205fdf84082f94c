/*
 * A native thread that becomes a Python thread: native_then_python() starts a pthread that
 * spins in C (native_spin) for a while and only then calls back into Python through a
 * ctypes callback. CPython gives the thread its thread state at the callback, so the first
 * samples of the thread find no Python state for it and the later ones must.
 *
 * Built as a shared library (libnativethread.so) for examples/python/native_thread.py.
 */
#include <pthread.h>
#include <stddef.h>

#include "common.h"

__attribute__((noinline)) void native_spin(double seconds)
{
	double end = monotonic_seconds() + seconds;

	while (!past(end))
		for (int i = 0; i < 20000; i++)
			sink += (unsigned long long)i * i;
}

struct start {
	double seconds;
	void (*callback)(void);
};

__attribute__((noinline)) void *native_thread_main(void *arg)
{
	struct start *start = arg;

	native_spin(start->seconds);
	start->callback();
	return NULL;
}

/* Runs native_thread_main on a new thread and waits for it; 0 on success. */
int native_then_python(double seconds, void (*callback)(void))
{
	struct start start = { seconds, callback };
	pthread_t thread;

	if (pthread_create(&thread, NULL, native_thread_main, &start) != 0)
		return -1;
	return pthread_join(thread, NULL);
}
