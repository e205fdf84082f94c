#!/usr/bin/env bash
# Runs every check and test Ember has: format, lints, docs, unit tests, and the end-to-end
# tests with real eBPF (as root; in CI they must run, elsewhere they skip loudly).
# Installs what the tests need first (scripts/bootstrap.sh --test).
set -euo pipefail
cd "$(dirname "$0")/.."
step() { printf '\n\033[1m== %s\033[0m\n' "$*" >&2; }

step "toolchain"
scripts/bootstrap.sh --test

step "cargo fmt --check"
cargo fmt --all -- --check

step "cargo clippy"
cargo clippy --workspace --all-targets --locked -- -D warnings

step "cargo doc"
RUSTDOCFLAGS="-D warnings" cargo doc --workspace --no-deps --locked --quiet

step "examples"
make -s -C examples OUT="$PWD/target/examples"

step "cargo test"
cargo test --workspace --locked
