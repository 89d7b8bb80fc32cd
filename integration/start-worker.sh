#!/usr/bin/env bash
# Quick start: runs the worker against a local RabbitMQ, starting one when none
# answers. Extra arguments go to the worker, e.g. --pool gpu --image-root /srv/images.
set -euo pipefail
cd "$(dirname "$0")/.."
integration/ensure-deps.sh
exec cargo run --release --bin guestkit-worker -- "$@"
