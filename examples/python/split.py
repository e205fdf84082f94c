"""Pure-Python 70/30 split: stack <module>;main;run;work;fn_a for 70 % of the CPU and
<module>;main;run;work;fn_b for 30 %.

fn_a and fn_b run the same loop on equal units of work; each round has exactly 7 fn_a and 3
fn_b units in an order drawn from a fixed-seed generator, so the split holds on any CPU and
the workload has no period for a sampler to alias with. Usage: split.py [SECONDS] (default 5).
"""

import random
import sys
import time

UNIT = 4000


def fn_a():
    total = 0
    for i in range(UNIT):
        total += i * i % 7
    return total


def fn_b():
    total = 1
    for i in range(UNIT):
        total += i * i % 7
    return total


def work(order):
    done = 0
    for is_a in order:
        if is_a:
            done += fn_a()
        else:
            done += fn_b()
    return done


def run(seconds):
    rng = random.Random(1234)
    rounds = 0
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        order = [True] * 7 + [False] * 3
        rng.shuffle(order)
        work(order)
        rounds += 1
    return rounds


def main():
    try:
        seconds = float(sys.argv[1]) if len(sys.argv) > 1 else 5.0
    except ValueError:
        print("usage: split.py [SECONDS]", file=sys.stderr)
        sys.exit(2)
    rounds = run(seconds)
    print("split: %d rounds of 7 fn_a + 3 fn_b" % rounds, file=sys.stderr)


if __name__ == "__main__":
    main()
