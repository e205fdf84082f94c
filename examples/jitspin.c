/* jitspin: spins in code it wrote into an anonymous executable mapping, as a JIT does.
 *
 *   jitspin [SECONDS]   (default 10, fractions allowed)
 *
 * The code sits at 0x7f0000000000 in a mapping with no file behind it, so a profiler can
 * only name it from the process's perf map, /tmp/perf-PID.map: which is what the hostile
 * perf-map tests (tests/it/hostile.rs) make a FIFO, a 1 GiB sparse file or a symlink, by
 * creating it in a shell that then execs jitspin (so the shell's $$ is jitspin's pid):
 *
 *   sh -c 'mkfifo /tmp/perf-$$.map; exec jitspin 15'
 *
 * Prints one line on stderr, exits 0 when the time is up, 2 on a bad argument, 1 if the
 * mapping cannot be made.
 */
#define _GNU_SOURCE
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/time.h>
#include <unistd.h>

#define JIT_ADDR ((void *)0x7f0000000000UL)

static void done(int sig)
{
	(void)sig;
	_exit(0);
}

int main(int argc, char **argv)
{
	char *end = NULL;
	double seconds = argc > 1 ? strtod(argv[1], &end) : 10.0;
	if (argc > 2 || (argc > 1 && (end == argv[1] || *end != '\0')) || !(seconds > 0) ||
	    seconds > 1e6) {
		fprintf(stderr, "usage: jitspin [SECONDS]\n");
		return 2;
	}
	unsigned char *code = mmap(JIT_ADDR, 4096, PROT_READ | PROT_WRITE | PROT_EXEC,
				   MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED_NOREPLACE, -1, 0);
	if (code == MAP_FAILED) {
		perror("jitspin: mmap");
		return 1;
	}
#if defined(__x86_64__) || defined(__i386__)
	static const unsigned char spin[] = { 0xeb, 0xfe }; /* jmp . */
#elif defined(__aarch64__)
	static const unsigned char spin[] = { 0x00, 0x00, 0x00, 0x14 }; /* b . */
#else
#error "jitspin: no spin loop for this architecture"
#endif
	memcpy(code, spin, sizeof spin);
	__builtin___clear_cache((char *)code, (char *)code + sizeof spin);

	signal(SIGALRM, done);
	struct itimerval timer = { 0 };
	timer.it_value.tv_sec = (time_t)seconds;
	timer.it_value.tv_usec = (suseconds_t)((seconds - (double)(time_t)seconds) * 1e6);
	if (timer.it_value.tv_sec == 0 && timer.it_value.tv_usec == 0)
		timer.it_value.tv_usec = 1;
	setitimer(ITIMER_REAL, &timer, NULL);
	fprintf(stderr, "jitspin: pid %d spinning at %p for %g s\n", (int)getpid(), (void *)code,
		seconds);
	((void (*)(void))code)();
	return 0;
}
