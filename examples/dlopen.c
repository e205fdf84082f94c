/*
 * dlopen: a library mapped while the process runs. `dlopen [SECONDS]` (default 5) first
 * spends 1 s in its own `warm_up`, then dlopens libm and spends SECONDS in libm's cos,
 * called from `in_libm` through a pointer: stack `main;in_libm;__cos_fma` (or whichever cos
 * the CPU gets). glibc's libm keeps no frame pointers, so a frame-pointer walk from cos
 * skips `in_libm` (`main;__cos_fma`): only a table for libm, in place from the library's
 * first sample, keeps it.
 */
#include <dlfcn.h>

#include "common.h"

__attribute__((noinline)) static void warm_up(double seconds)
{
	double end = monotonic_seconds() + seconds;
	unsigned long long x = 1;

	while (monotonic_seconds() < end)
		for (int i = 0; i < 100000; i++)
			x = x * 6364136223846793005ULL + 1442695040888963407ULL;
	sink = x;
}

__attribute__((noinline)) static void in_libm(double (*cosine)(double), double seconds)
{
	double end = monotonic_seconds() + seconds;
	double x = 0;

	while (monotonic_seconds() < end)
		for (int i = 0; i < 20000; i++)
			x += cosine(x * 1e-3 + i);
	sink = (unsigned long long)x;
}

int main(int argc, char **argv)
{
	double seconds = parse_seconds(argc, argv);

	warm_up(1.0);
	void *libm = dlopen("libm.so.6", RTLD_NOW);
	if (!libm) {
		fprintf(stderr, "dlopen: %s\n", dlerror());
		return 1;
	}
	double (*cosine)(double) = (double (*)(double))dlsym(libm, "cos");
	if (!cosine) {
		fprintf(stderr, "dlopen: no cos in libm: %s\n", dlerror());
		return 1;
	}
	in_libm(cosine, seconds);
	return 0;
}
