#!/usr/bin/env bash
# Renders a node-sized profile (50,000 distinct stacks in the last hour) through the
# agent's API and the web UI in headless chromium, and prints the times. Needs root.
set -euo pipefail
cd "$(dirname "$0")/.."
store=$(mktemp -d /tmp/ember-ui-bench.XXXXXX)
trap 'kill "${agent:-}" 2>/dev/null || true; rm -rf "$store"' EXIT
echo "ui_bench: filling $store with 360 windows of synthetic stacks" >&2
EMBER_BENCH_STORE="$store" cargo test --release --quiet -p profiler-store --lib \
  tests::write_ui_bench_store -- --ignored --nocapture >&2
log="$store.log"
target/release/ember agent -q -F 1 --listen 127.0.0.1:0 --data-dir "$store" 2>"$log" &
agent=$!
for _ in $(seq 100); do grep -q "API listening on" "$log" 2>/dev/null && break; sleep 0.1; done
base=$(sed -n 's/^ember: API listening on //p' "$log")
[ -n "$base" ] || { echo "ui_bench: the agent did not start: $(cat "$log")" >&2; exit 1; }
node bench/ui_bench.mjs "$base"
rm -f "$log"
