#!/usr/bin/env bash
# The race hunt of issue 9: runs every test (`cargo test --workspace --all-targets`)
# RUNS times in a row (default 3) while `stress-ng --cpu 2` keeps both cores busy, so a
# test that reads asynchronous state too early fails here rather than once in a while in
# CI. Not part of test-all.sh: it takes about an hour. Logs go to LOG_DIR (default
# target/stress-logs), one file per run; the summary says each run's result and time.
#
#   integration/stress.sh [RUNS]
set -euo pipefail
cd "$(dirname "$0")/.."

runs=${1:-3}
log_dir=${LOG_DIR:-target/stress-logs}
mkdir -p "$log_dir"
command -v stress-ng >/dev/null || integration/ensure-deps.sh

# Built before the load starts: the hunt is for races in the tests, not for slow builds.
cargo test --workspace --all-targets --no-run

stress-ng --cpu 2 --timeout 0 --quiet &
stress_pid=$!
trap 'kill "$stress_pid" 2>/dev/null || true' EXIT

failed=0
for i in $(seq 1 "$runs"); do
  start=$SECONDS
  if cargo test --workspace --all-targets >"$log_dir/run-$i.log" 2>&1; then
    result=passed
  else
    result=FAILED
    failed=$((failed + 1))
  fi
  summary=$(grep -E '^test result:' "$log_dir/run-$i.log" | awk '{p+=$4; f+=$6; ig+=$8} END {print p" passed, "f" failed, "ig" ignored"}')
  echo "run $i/$runs: $result in $((SECONDS - start)) s ($summary; $log_dir/run-$i.log)"
  grep -E '^test .* FAILED$' "$log_dir/run-$i.log" || true
done
[ "$failed" -eq 0 ]
