#!/usr/bin/env bash
# Runs every test of the project (the README's test command; CI runs it too):
# style gates, unit and integration tests against the real RabbitMQ and real images,
# a short fuzz run of each parser, and the static checks of the deploy files.
set -euo pipefail
cd "$(dirname "$0")/.."

integration/ensure-deps.sh

cargo fmt --all --check
cargo clippy --workspace --all-targets -- -D warnings
cargo test --workspace --all-targets
integration/fuzz-smoke.sh
bash .ci/validate-deploy.sh
echo "all tests passed"
