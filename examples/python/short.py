"""A short-lived process: about 50 ms of CPU in <module>;main;burst;short_hot, then exit,
well under 100 ms with the interpreter's start-up. Usage: short.py [SECONDS] (default 0.05).
"""

import sys
import time


def short_hot():
    total = 0
    for i in range(2000):
        total += i * 7 % 5
    return total


def burst(seconds):
    n = 0
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        short_hot()
        n += 1
    return n


def main():
    try:
        seconds = float(sys.argv[1]) if len(sys.argv) > 1 else 0.05
    except ValueError:
        print("usage: short.py [SECONDS]", file=sys.stderr)
        sys.exit(2)
    n = burst(seconds)
    print("short: %d bursts" % n, file=sys.stderr)


if __name__ == "__main__":
    main()
