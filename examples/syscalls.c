/*
 * syscalls: main -> do_syscalls -> (kernel) read of 64 KiB from /dev/zero, in a loop.
 *
 * Nearly all the time is in the kernel zeroing the user buffer, so samples carry kernel
 * frames (the syscall entry, the read path of /dev/zero, the user-memory clearing routine)
 * on top of the user stack do_syscalls -> main. The user share is only syscall entry and exit.
 *
 * The syscall instruction is issued inline from do_syscalls rather than through libc's read():
 * Debian's glibc has no frame pointers, and a frame-pointer walk that starts inside a libc
 * wrapper skips the wrapper's caller, so do_syscalls would vanish from the stacks. Inline, the
 * user-mode instruction pointer of every sample is in do_syscalls itself.
 */
#include <fcntl.h>
#include <stdio.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "common.h"

#define CHUNK (64 * 1024)
#define READS_PER_CHECK 256

static char buf[CHUNK];

__attribute__((noinline, noclone)) unsigned long do_syscalls(int fd, double deadline)
{
	unsigned long reads = 0;

	do {
		for (int i = 0; i < READS_PER_CHECK; i++) {
			long ret;

			__asm__ volatile("syscall"
					 : "=a"(ret)
					 : "0"((long)SYS_read), "D"((long)fd), "S"(buf), "d"((long)CHUNK)
					 : "rcx", "r11", "memory");
			if (ret != CHUNK) {
				fprintf(stderr, "syscalls: read(/dev/zero) returned %ld\n", ret);
				exit(1);
			}
		}
		reads += READS_PER_CHECK;
	} while (!past(deadline));
	/* Make the kernel's writes observable so the reads are not "dead" to anyone reading this. */
	sink = (unsigned long long)buf[CHUNK - 1];
	return reads;
}

int main(int argc, char **argv)
{
	double seconds = parse_seconds(argc, argv);
	int fd = open("/dev/zero", O_RDONLY | O_CLOEXEC);
	double start;
	unsigned long reads;

	if (fd < 0) {
		perror("syscalls: open /dev/zero");
		return 1;
	}
	start = monotonic_seconds();
	reads = do_syscalls(fd, start + seconds);
	fprintf(stderr, "syscalls: %lu reads of %d KiB in %.2f s\n", reads, CHUNK / 1024,
		monotonic_seconds() - start);
	close(fd);
	return 0;
}
