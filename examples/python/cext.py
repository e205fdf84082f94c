"""A C-extension hot path: nearly all CPU is in zlib's deflate, called from
<module>;main;run;compress_loop, so the top Python frame is compress_loop (at its
zlib.compress line) with native zlib frames under it. The buffer is built once, before the
timed loop. Usage: cext.py [SECONDS] (default 5).
"""

import random
import sys
import time
import zlib


def make_buffer(size):
    rng = random.Random(99)
    words = [rng.randbytes(rng.randint(2, 9)) for _ in range(512)]
    chunk = b" ".join(rng.choices(words, k=8192))
    return (chunk * (size // len(chunk) + 1))[:size]


def compress_loop(data, seconds):
    calls = 0
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        zlib.compress(data, 6)
        calls += 1
    return calls


def run(seconds):
    data = make_buffer(1 << 20)
    return compress_loop(data, seconds)


def main():
    try:
        seconds = float(sys.argv[1]) if len(sys.argv) > 1 else 5.0
    except ValueError:
        print("usage: cext.py [SECONDS]", file=sys.stderr)
        sys.exit(2)
    calls = run(seconds)
    print("cext: %d zlib.compress calls on 1 MiB" % calls, file=sys.stderr)


if __name__ == "__main__":
    main()
