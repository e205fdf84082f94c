#!/usr/bin/env bash
# Installs what building Ember needs on a fresh Debian machine, and nothing twice:
#   - nightly Rust with rust-src (the eBPF crate is built with -Z build-std=core)
#   - llvm-22-dev and bpf-linker (links the eBPF object)
#   - with --test: what the test suite needs beyond that (perf, go for `go tool pprof`,
#     chromium + playwright-core for the browser tests, llvm-22 for llvm-symbolizer,
#     speedscope + ajv to validate speedscope exports against speedscope's schema,
#     systemd-analyze and kubernetes-validate for the deploy/ checks, opentelemetry-proto
#     and grpcio-tools for the push receiver)
# Safe to run again: every step checks first.
set -euo pipefail

want_test=0
for arg in "$@"; do
  case "$arg" in
    --test) want_test=1 ;;
    -h|--help) sed -n '2,10p' "$0"; exit 0 ;;
    *) echo "bootstrap: unknown argument '$arg' (try --help)" >&2; exit 2 ;;
  esac
done

say() { printf '\033[1mbootstrap:\033[0m %s\n' "$*" >&2; }
SUDO=""
if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi

apt_updated=0
apt_install() {
  local missing=()
  for p in "$@"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
  done
  [ ${#missing[@]} -eq 0 ] && return 0
  if [ $apt_updated -eq 0 ]; then
    say "apt-get update"
    $SUDO apt-get update -qq
    apt_updated=1
  fi
  say "installing ${missing[*]}"
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${missing[@]}" >/dev/null
}

command -v cargo >/dev/null || { echo "bootstrap: cargo not found; install Rust with rustup first" >&2; exit 1; }

if ! rustup toolchain list | grep -q '^nightly'; then
  say "installing the nightly toolchain"
  rustup toolchain install nightly --profile minimal
fi
if ! rustup component list --toolchain nightly --installed 2>/dev/null | grep -q '^rust-src'; then
  say "adding rust-src to nightly"
  rustup component add rust-src --toolchain nightly
fi

if ! command -v bpf-linker >/dev/null || ! bpf-linker --version 2>/dev/null | grep -q '0.13'; then
  apt_install llvm-22-dev libpolly-22-dev zlib1g-dev libzstd-dev
  say "building bpf-linker 0.13 against LLVM 22 (about a minute)"
  LLVM_PREFIX=/usr/lib/llvm-22 cargo install --locked bpf-linker --version 0.13.0 \
    --no-default-features --features llvm-22
fi

apt_install gcc make

if [ $want_test -eq 1 ]; then
  apt_install linux-perf golang-1.19-go llvm-22 binutils chromium procps util-linux
  # Separate debug info of glibc by build-id (/usr/lib/debug/.build-id): names the dynamic
  # loader and libc frames of short-lived processes in the symbolizer's storm test.
  apt_install libc6-dbg
  # This image ships Node.js and npm of its own; Debian's would conflict with them.
  command -v npm >/dev/null || apt_install nodejs npm
  if [ ! -d "$(dirname "$0")/../tests/browser/node_modules/playwright-core" ]; then
    say "installing playwright-core for the browser tests"
    (cd "$(dirname "$0")/../tests/browser" && npm install --no-audit --no-fund --silent)
  fi
  if [ ! -d "$(dirname "$0")/../tests/speedscope/node_modules/speedscope" ]; then
    say "installing speedscope + ajv for the speedscope schema test"
    (cd "$(dirname "$0")/../tests/speedscope" && npm ci --no-audit --no-fund --silent)
  fi
  # systemd-analyze checks deploy/systemd/ember.service (tests/it/deploy.rs); the package
  # is only a tool here, nothing needs systemd to run as PID 1.
  command -v systemd-analyze >/dev/null || apt_install systemd
  # kubernetes-validate (PyPI, pinned in tests/kubernetes/requirements.txt) checks
  # deploy/kubernetes against the Kubernetes API schemas, from a venv of its own.
  kube_dir="$(dirname "$0")/../tests/kubernetes"
  if ! cmp -s "$kube_dir/requirements.txt" "$kube_dir/.venv/installed-requirements.txt"; then
    command -v python3 >/dev/null || apt_install python3
    python3 -c 'import ensurepip, venv' 2>/dev/null || apt_install python3-venv
    say "installing kubernetes-validate into tests/kubernetes/.venv"
    rm -rf "$kube_dir/.venv"
    python3 -m venv "$kube_dir/.venv"
    "$kube_dir/.venv/bin/pip" install --quiet --disable-pip-version-check \
      --requirement "$kube_dir/requirements.txt"
    cp "$kube_dir/requirements.txt" "$kube_dir/.venv/installed-requirements.txt"
  fi
  # The push receiver of tests/it/push.rs decodes with the official schemas: PyPI
  # opentelemetry-proto and protobuf, and Pyroscope's push.proto (tests/push/proto)
  # compiled by grpcio-tools into tests/push/.venv/gen.
  push_dir="$(dirname "$0")/../tests/push"
  if ! cmp -s "$push_dir/requirements.txt" "$push_dir/.venv/installed-requirements.txt" \
     || [ ! -f "$push_dir/.venv/gen/pyroscope/push/v1/push_pb2.py" ]; then
    command -v python3 >/dev/null || apt_install python3
    python3 -c 'import ensurepip, venv' 2>/dev/null || apt_install python3-venv
    say "installing opentelemetry-proto, protobuf and grpcio-tools into tests/push/.venv"
    rm -rf "$push_dir/.venv"
    python3 -m venv "$push_dir/.venv"
    "$push_dir/.venv/bin/pip" install --quiet --disable-pip-version-check \
      --requirement "$push_dir/requirements.txt"
    mkdir -p "$push_dir/.venv/gen"
    "$push_dir/.venv/bin/python" -m grpc_tools.protoc -I "$push_dir/proto" \
      --python_out="$push_dir/.venv/gen" \
      pyroscope/push/v1/push.proto pyroscope/types/v1/types.proto
    cp "$push_dir/requirements.txt" "$push_dir/.venv/installed-requirements.txt"
  fi
fi
say "toolchain ready"
