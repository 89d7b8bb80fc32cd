#!/usr/bin/env bash
# Runs every test of the project (the README's test command; CI runs it too):
# style gates, unit and integration tests against the real RabbitMQ and real images,
# a short fuzz run of each parser, and the static checks of the deploy files.
# Prints how long each stage took, so a slow CI run shows where the time went.
set -euo pipefail
cd "$(dirname "$0")/.."

stage() { # NAME COMMAND...
  local name=$1 start=$SECONDS
  shift
  echo "=== $name"
  "$@"
  echo "=== $name: $((SECONDS - start)) s"
}

stage deps integration/ensure-deps.sh
stage fmt cargo fmt --all --check
stage clippy cargo clippy --workspace --all-targets -- -D warnings
stage tests cargo test --workspace --all-targets
stage fuzz integration/fuzz-smoke.sh
stage deploy bash .ci/validate-deploy.sh
echo "all tests passed in $SECONDS s"
