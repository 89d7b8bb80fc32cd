#!/usr/bin/env bash
# Runs each cargo-fuzz target briefly, seeded with the fixtures' first megabyte, so CI
# catches a parser that panics on the corpus neighbourhood. Long runs are for people:
#   RUSTC_BOOTSTRAP=1 cargo fuzz run qcow2
# The machine's toolchain is stable; RUSTC_BOOTSTRAP lets cargo-fuzz use the
# sanitizer flags it needs.
set -euo pipefail
cd "$(dirname "$0")/.."
SECONDS_PER_TARGET=${GUESTKIT_FUZZ_SECONDS:-20}
command -v cargo-fuzz >/dev/null || cargo install --locked cargo-fuzz
export RUSTC_BOOTSTRAP=1
integration/fuzz-seeds.sh
for target in $(cargo fuzz list); do
  corpus="fuzz/corpus/$target"
  mkdir -p "$corpus"
  echo "fuzzing $target for ${SECONDS_PER_TARGET}s"
  cargo fuzz run "$target" "$corpus" -- -max_total_time="$SECONDS_PER_TARGET" -rss_limit_mb=2048 -max_len=1048576
done
