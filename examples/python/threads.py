"""Two threads, each with its own hot function: thread "alpha" runs
Thread.run;alpha_loop;alpha_hot, thread "beta" runs Thread.run;beta_loop;beta_hot, while
the main thread waits in join. Usage: threads.py [SECONDS] (default 5).
"""

import sys
import threading
import time


def alpha_hot():
    total = 0
    for i in range(3000):
        total += i * 3 % 11
    return total


def beta_hot():
    total = 0
    for i in range(3000):
        total += i * 5 % 13
    return total


def alpha_loop(end):
    n = 0
    while time.monotonic() < end:
        alpha_hot()
        n += 1
    return n


def beta_loop(end):
    n = 0
    while time.monotonic() < end:
        beta_hot()
        n += 1
    return n


def main():
    try:
        seconds = float(sys.argv[1]) if len(sys.argv) > 1 else 5.0
    except ValueError:
        print("usage: threads.py [SECONDS]", file=sys.stderr)
        sys.exit(2)
    end = time.monotonic() + seconds
    threads = [
        threading.Thread(target=alpha_loop, args=(end,), name="alpha"),
        threading.Thread(target=beta_loop, args=(end,), name="beta"),
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    print("threads: alpha and beta ran %.1f s" % seconds, file=sys.stderr)


if __name__ == "__main__":
    main()
