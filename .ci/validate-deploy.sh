#!/usr/bin/env bash
# Static validation of the deployment files: Dockerfile, .dockerignore,
# docker-compose.yml and k8s/ (no container engine or cluster needed).
#
#   bash .ci/validate-deploy.sh
#
# Installs its tools (integration/deploy/requirements.txt) into a venv of its
# own, once: a stamp of the requirements' hash skips pip on later runs. Then
# runs integration/deploy/validate.py, which prints one PASS/FAIL line per
# check and `deploy: N passed, M failed`, then integration/deploy/selftest.py,
# which breaks one thing at a time in a scratch copy and requires the right
# check to catch it (`deploy-selftest: N passed, M failed`). Exits non-zero on
# any failure.
#
# GUESTKIT_DEPLOY_VENV overrides where the venv lives; PYTHON, which python
# creates it. GUESTKIT_DEPLOY_SELFTEST=0 skips the self-test (about a minute).
# GUESTKIT_DEPLOY_PROVENANCE=1 also re-derives the vendored schemas from their
# registry packages (npm + PyPI) and compares.
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
deploy=$root/integration/deploy
venv=${GUESTKIT_DEPLOY_VENV:-${XDG_CACHE_HOME:-$HOME/.cache}/guestkit/deploy-venv}
python=${PYTHON:-python3}
want=$(sha256sum "$deploy/requirements.txt" | cut -d' ' -f1)

if [[ ! -x $venv/bin/python || "$(cat "$venv/.requirements.sha256" 2>/dev/null)" != "$want" ]]; then
    echo "validate-deploy: installing tools into $venv"
    rm -f "$venv/.requirements.sha256"
    "$python" -m venv "$venv"
    "$venv/bin/python" -m pip install --quiet --disable-pip-version-check -r "$deploy/requirements.txt"
    echo "$want" > "$venv/.requirements.sha256"
fi
# The venv's hadolint, shellcheck and kubernetes-validate come first.
export PATH="$venv/bin:$PATH"

status=0
"$venv/bin/python" "$deploy/validate.py" --root "$root" || status=$?

if [[ ${GUESTKIT_DEPLOY_SELFTEST:-1} != 0 ]]; then
    echo
    "$venv/bin/python" "$deploy/selftest.py" || status=1
fi
if [[ ${GUESTKIT_DEPLOY_PROVENANCE:-0} == 1 ]]; then
    "$venv/bin/python" "$deploy/refresh_schemas.py" --check || status=1
fi
exit "$status"
