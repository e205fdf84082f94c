#!/usr/bin/env bash
# Builds Ember (installing the eBPF toolchain when missing) and starts it.
#
#   scripts/up.sh                 build, then start the continuous agent (`ember agent`)
#   scripts/up.sh ARGS...         build, then run `ember ARGS...`
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/bootstrap.sh
echo "up: building ember (release)" >&2
cargo build --release --locked -p ember
if [ $# -eq 0 ]; then
  set -- agent
fi
echo "up: running target/release/ember $*" >&2
exec target/release/ember "$@"
