#!/usr/bin/env bash
# Benchmarks Ember against its peers on this machine; prints a Markdown report.
#   scripts/bench.sh            every report: record, agent, then the UI rendering benchmark
#   scripts/bench.sh record|agent|ui|diff|unwind|storm [options]   one of them, with its options
#   scripts/bench.sh symbolize  symbolization throughput vs llvm-symbolizer/addr2line, storm naming
#   scripts/bench.sh python     Python frames: BPF cost per sample vs native, py-spy, agent at 19 Hz
#   scripts/bench.sh cost       issue 19's goals: record's CPU + BPF vs perf, BPF µs per sample
# Needs root. Installs inferno's CLI (for the perf pipeline) into target/bench-tools.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/bootstrap.sh --test
cargo build --release --locked -p ember
make -s -C examples OUT="$PWD/target/examples"
if [ ! -x target/bench-tools/bin/inferno-flamegraph ]; then
  echo "bench: installing inferno's command-line tools into target/bench-tools" >&2
  cargo install --locked --quiet inferno --version 0.12.8 --root target/bench-tools
fi
case "${1:-all}" in
  record) shift; exec python3 bench/record_bench.py "$@" ;;
  agent) shift; exec python3 bench/agent_bench.py "$@" ;;
  ui) shift; exec bench/ui_bench.sh "$@" ;;
  symbolize) shift
    cargo build --release --locked -p symbolizer --example symbolize_bench
    exec python3 bench/symbolize_bench.py "$@" ;;
  diff) shift; exec python3 bench/diff_bench.py "$@" ;;
  unwind) shift; exec python3 bench/unwind_bench.py "$@" ;;
  storm) shift; exec python3 bench/storm_bench.py "$@" ;;
  python) shift; exec python3 bench/python_bench.py "$@" ;;
  cost) shift
    cargo build --release --locked -p symbolizer --example symbolize_bench
    exec python3 bench/cost_bench.py "$@" ;;
  all) python3 bench/record_bench.py; python3 bench/agent_bench.py; bench/ui_bench.sh
    python3 bench/diff_bench.py; python3 bench/unwind_bench.py ;;
  *) echo "bench: unknown report '$1' (record, agent, ui, diff, unwind, storm, symbolize, python, cost)" >&2; exit 2 ;;
esac
