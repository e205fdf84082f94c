#!/usr/bin/env bash
# Benchmarks Ember against its peers on this machine; prints a Markdown report.
#   scripts/bench.sh [record_bench.py options]     e.g. --pairs 9 --seconds 5
# Needs root. Installs inferno's CLI (for the perf pipeline) into target/bench-tools.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/bootstrap.sh --test
cargo build --release --locked -p profiler-agent
make -s -C examples OUT="$PWD/target/examples"
if [ ! -x target/bench-tools/bin/inferno-flamegraph ]; then
  echo "bench: installing inferno's command-line tools into target/bench-tools" >&2
  cargo install --locked --quiet inferno --version 0.12.8 --root target/bench-tools
fi
exec python3 bench/record_bench.py "$@"
