"""Many threads, the busy ones oldest: 30 threads start, then 90 more that wait on an event,
and only then do the 30 run Thread.run;spin_loop;spin_hot. The busy threads are at the tail
of the interpreter's thread list (CPython adds each new thread at its head), behind the 90
idle ones. Usage: many_threads.py [SECONDS] (default 5).
"""

import sys
import threading
import time


def spin_hot():
    total = 0
    for i in range(2000):
        total += i * 5 % 13
    return total


def spin_loop(go, seconds):
    # Spinning starts only once every thread exists: the first sample of a busy thread
    # has to find it behind the others.
    go.wait()
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        spin_hot()


def idle(stop):
    stop.wait()


def main():
    try:
        seconds = float(sys.argv[1]) if len(sys.argv) > 1 else 5.0
    except ValueError:
        print("usage: many_threads.py [SECONDS]", file=sys.stderr)
        sys.exit(2)
    go = threading.Event()
    stop = threading.Event()
    busy = [threading.Thread(target=spin_loop, args=(go, seconds)) for _ in range(30)]
    for t in busy:
        t.start()
    waiting = [threading.Thread(target=idle, args=(stop,)) for _ in range(90)]
    for t in waiting:
        t.start()
    go.set()
    for t in busy:
        t.join()
    stop.set()
    for t in waiting:
        t.join()
    print("many_threads: 30 busy and 90 waiting threads", file=sys.stderr)


if __name__ == "__main__":
    main()
