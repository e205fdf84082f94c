/* storm: a process storm, for short-lived-process symbolization.
 *
 *   storm [SECONDS [CHILD_MS [PARALLEL]]]      default: 5 s, 20 ms children, 2 at a time
 *
 * The launcher fork+execs itself (`storm child N MS`) over and over, keeping
 * PARALLEL children running; each child burns CHILD_MS of CPU in one of four named hot
 * functions (storm_hot_alpha .. storm_hot_delta, by N % 4) and exits. With 20 ms children
 * on two CPUs that is about 100 new processes a second, each of which has exited long
 * before a profiler's next drain. At the end the launcher prints how many children ran. */
#define _GNU_SOURCE
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static volatile unsigned long sink;

static double cpu_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
    return ts.tv_sec * 1e3 + ts.tv_nsec / 1e6;
}

static double wall_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec / 1e9;
}

#define HOT(name)                                                                        \
    __attribute__((noinline)) void name(double until_ms) {                               \
        unsigned long x = 1;                                                             \
        while (cpu_ms() < until_ms)                                                      \
            for (int i = 0; i < 20000; i++)                                              \
                x = x * 6364136223846793005UL + 1442695040888963407UL;                   \
        sink = x;                                                                        \
    }

HOT(storm_hot_alpha)
HOT(storm_hot_beta)
HOT(storm_hot_gamma)
HOT(storm_hot_delta)

static int child(int n, double ms) {
    void (*hot[4])(double) = {storm_hot_alpha, storm_hot_beta, storm_hot_gamma, storm_hot_delta};
    hot[n % 4](cpu_ms() + ms);
    return 0;
}

/* The launcher's own path: exec'ing it (not /proc/self/exe) gives children the comm `storm`. */
static char self[4096];

static pid_t launch(int n, const char *ms) {
    char num[16];
    snprintf(num, sizeof num, "%d", n);
    pid_t pid = fork();
    if (pid == 0) {
        execl(self, "storm", "child", num, ms, (char *)NULL);
        _exit(127);
    }
    return pid;
}

int main(int argc, char **argv) {
    if (argc >= 4 && strcmp(argv[1], "child") == 0)
        return child(atoi(argv[2]), atof(argv[3]));
    double seconds = argc > 1 ? atof(argv[1]) : 5;
    const char *ms = argc > 2 ? argv[2] : "20";
    int parallel = argc > 3 ? atoi(argv[3]) : 2;
    if (seconds <= 0 || atof(ms) <= 0 || parallel < 1) {
        fprintf(stderr, "usage: storm [SECONDS [CHILD_MS [PARALLEL]]]\n");
        return 2;
    }
    ssize_t len = readlink("/proc/self/exe", self, sizeof self - 1);
    if (len <= 0) {
        perror("storm: readlink /proc/self/exe");
        return 1;
    }
    self[len] = 0;
    double end = wall_s() + seconds;
    int started = 0, running = 0, failed = 0;
    while (wall_s() < end || running > 0) {
        while (running < parallel && wall_s() < end) {
            if (launch(started++, ms) > 0)
                running++;
            else
                failed++;
        }
        int status;
        if (wait(&status) > 0) {
            running--;
            if (!WIFEXITED(status) || WEXITSTATUS(status) != 0)
                failed++;
        }
    }
    printf("storm: %d children in %.1f s (%.0f/s), %d failed\n", started, seconds,
           started / seconds, failed);
    return failed != 0;
}
