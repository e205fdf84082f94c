#!/usr/bin/env bash
# Profiles a benchmark and fails when a function got more expensive than in the baseline.
#
#   examples/ci/profile-gate.sh BASELINE.folded OUTDIR -- BENCHMARK [ARGS...]
#
# 1. Runs BENCHMARK under `ember record` (needs root, for eBPF) and writes
#    OUTDIR/profile.folded: the artifact to keep, and on the main branch the next baseline.
# 2. When BASELINE exists, runs `ember diff BASELINE OUTDIR/profile.folded`: prints the
#    functions whose share of samples changed most, writes OUTDIR/diff.svg (differential
#    flame graph: red grew, blue shrank) and OUTDIR/diff.folded (stack base new), and applies
#    the gates. Without a baseline it says so and passes.
#
# Environment:
#   EMBER                     the ember binary (default: `ember` on PATH)
#   EMBER_FREQUENCY           samples per second (default 999: ~3,000 samples in 3 s keep
#                             counting noise near 1 point, well under a 5-point gate)
#   EMBER_FAIL_ON_REGRESSION  limit on any function's self-share growth, in percentage
#                             points of all samples (default 5%; empty for no such gate)
#   EMBER_FAIL_ON             space-separated 'FUNC>+P%' gates on named functions' total share
#
# Exit status: 0 passed (or no baseline yet), 1 a gate tripped (explained on stderr),
# 2 bad usage or unreadable profiles, 3 the benchmark or the recording failed.
set -uo pipefail

usage() { sed -n '2,3p' "$0" >&2; exit 2; }
[ $# -ge 4 ] && [ "$3" = "--" ] || usage
baseline=$1
outdir=$2
shift 3

ember=${EMBER:-ember}
frequency=${EMBER_FREQUENCY:-999}
regression=${EMBER_FAIL_ON_REGRESSION-5%}

mkdir -p "$outdir" || exit 2
profile="$outdir/profile.folded"

echo "profile-gate: recording $* at $frequency Hz" >&2
if ! "$ember" record -q -F "$frequency" -f folded -o "$profile" -- "$@"; then
  echo "profile-gate: the benchmark or the recording failed" >&2
  exit 3
fi

if [ ! -e "$baseline" ]; then
  echo "profile-gate: no baseline at $baseline yet: keep $profile as the baseline" >&2
  exit 0
fi

gates=()
[ -n "$regression" ] && gates+=(--fail-on-regression "$regression")
read -r -a named <<< "${EMBER_FAIL_ON:-}"
for gate in "${named[@]}"; do
  gates+=(--fail-on "$gate")
done

"$ember" diff "$baseline" "$profile" \
  --svg "$outdir/diff.svg" --folded "$outdir/diff.folded" "${gates[@]}"
status=$?
case $status in
  0) echo "profile-gate: passed; artifacts in $outdir" >&2 ;;
  1) echo "profile-gate: REGRESSION; see $outdir/diff.svg" >&2 ;;
esac
exit $status
