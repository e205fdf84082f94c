"""A thread that CPython first meets mid-run: a native thread (started by
libnativethread.so, examples/native_thread.c) spins in C for 0.3 s, then calls py_hot
through a ctypes callback, which gives the thread its Python thread state only then. The
thread's samples after the spin are all in py_hot. The main thread waits in the ctypes
call meanwhile (with the GIL released). Usage: native_thread.py SECONDS LIBRARY.
"""

import ctypes
import sys
import time

SPIN = 0.3


def py_hot(seconds):
    total = 0
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        for i in range(2000):
            total += i * i
    return total


def main():
    try:
        seconds = float(sys.argv[1]) if len(sys.argv) == 3 else None
    except ValueError:
        seconds = None
    if seconds is None:
        print("usage: native_thread.py SECONDS LIBRARY", file=sys.stderr)
        sys.exit(2)
    lib = ctypes.CDLL(sys.argv[2])
    callback_type = ctypes.CFUNCTYPE(None)
    done = []
    callback = callback_type(lambda: done.append(py_hot(seconds)))
    lib.native_then_python.argtypes = [ctypes.c_double, callback_type]
    if lib.native_then_python(SPIN, callback) != 0:
        print("native_thread: pthread_create failed", file=sys.stderr)
        sys.exit(1)
    print("native_thread: py_hot ran %.1f s on a native thread" % seconds, file=sys.stderr)


if __name__ == "__main__":
    main()
