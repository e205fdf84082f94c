#!/usr/bin/env bash
# Builds Ember (installing the eBPF toolchain when missing) and starts it.
#
#   scripts/up.sh                 build, then profile the whole machine for 10 s into ember.svg
#   scripts/up.sh ARGS...         build, then run `ember ARGS...`
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/bootstrap.sh
echo "up: building ember (release)" >&2
cargo build --release --locked -p profiler-agent
if [ $# -eq 0 ]; then
  set -- record --all --duration 10s --output ember.svg
fi
echo "up: running target/release/ember $*" >&2
exec target/release/ember "$@"
