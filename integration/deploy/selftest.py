#!/usr/bin/env python3
"""Proves validate.py can fail: breaks one thing at a time in a scratch copy
of the repository and requires the check meant to catch it to FAIL (and the
run to exit non-zero). A validator that passes everything would pass CI too;
this is what keeps its PASS lines meaningful.

The real files are never touched. Run by .ci/validate-deploy.sh after
validate.py; prints `deploy-selftest: N passed, M failed`.
"""

import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent.parent

# Copied for each case: what validate.py reads, without build output.
IGNORE = shutil.ignore_patterns("target", ".git", "fixtures-cache", "images", "*.qcow2", "*.img", "*.raw")


def sub(old, new, count=1):
    """A transform replacing OLD (regex) by NEW; fails loudly when OLD is gone,
    so a stale case cannot pass by changing nothing."""
    def apply(text):
        out, n = re.subn(old, new, text, count=count, flags=re.M)
        if n == 0:
            raise AssertionError(f"pattern {old!r} not found")
        return out
    return apply


def append(extra):
    return lambda text: text + extra


# (what breaks, file, transform, validate.py group, name of the check that must
# FAIL, text its message must hold: the right check, for the right reason)
CASES = [
    ("runtime runs as root", "Dockerfile",
     sub(r"^USER 10001:10001$", "USER root"),
     "dockerfile", "non-root USER", "not numeric"),
    ("shell-form HEALTHCHECK", "Dockerfile",
     sub(r'CMD \["/usr/local/bin/guestkit-worker", "healthcheck"\]', "CMD /usr/local/bin/guestkit-worker healthcheck"),
     "dockerfile", "exec HEALTHCHECK", "not exec form"),
    ("runtime image with a shell", "Dockerfile",
     sub(r"^ARG RUNTIME_IMAGE=.*$", "ARG RUNTIME_IMAGE=debian:bookworm-slim"),
     "dockerfile", "distroless runtime", "would carry a shell"),
    ("dependencies built with the sources", "Dockerfile",
     sub(r"^RUN --mount=type=cache,target=/usr/local/cargo/registry \\\n.*\\\n"
         r"    cargo build --release --locked --bin guestkit-worker\n", ""),
     "dockerfile", "dependency layer cached", "COPY the skeleton"),
    ("unpinned apt install", "Dockerfile",
     sub(r"^FROM \$\{RUNTIME_IMAGE\} AS runtime$",
         "RUN apt-get update && apt-get install -y curl\nFROM ${RUNTIME_IMAGE} AS runtime"),
     "dockerfile", "hadolint", "DL3008"),
    ("toolchain older than Cargo.lock needs", "Dockerfile",
     sub(r"^ARG RUST_VERSION=.*$", "ARG RUST_VERSION=1.80.0"),
     "dockerfile", "builder rust >=", "builder rust 1.80.0 <"),
    ("templates left out of the context", ".dockerignore",
     append("templates\n"),
     "dockerfile", "keeps everything the build reads", "templates/selftest.tera"),
    ("disk images sent to the daemon", ".dockerignore",
     sub(r"^\*\*/\*\.qcow2\n", ""),
     "dockerfile", "drops build output", "tests/data/disk.qcow2"),
    ("worker does not wait for the topology", "docker-compose.yml",
     sub(r"condition: service_completed_successfully", "condition: service_started"),
     "compose", "dependencies, hardening", "service_completed_successfully"),
    ("misspelt compose key", "docker-compose.yml",
     sub(r"^    stop_grace_period:", "    stop_grace_periode:"),
     "compose", "compose-spec schema", "stop_grace_periode"),
    ("misspelt compose key (compose itself)", "docker-compose.yml",
     sub(r"^    stop_grace_period:", "    stop_grace_periode:"),
     "compose", "docker-compose config", "stop_grace_periode"),
    ("writable images", "docker-compose.yml",
     sub(r"read_only: true\n        bind:", "read_only: false\n        bind:"),
     "compose", "dependencies, hardening", "is not read-only"),
    ("stop grace below shutdown grace", "docker-compose.yml",
     sub(r"stop_grace_period: 45s", "stop_grace_period: 20s"),
     "compose", "dependencies, hardening", "stop_grace_period 20s"),
    ("misspelt setting", "docker-compose.yml",
     sub(r"GUESTKIT_MAX_CONCURRENT:", "GUESTKIT_MAX_CONCURENT:"),
     "compose", "dependencies, hardening", "GUESTKIT_MAX_CONCURENT"),
    ("topology declared on another broker", "docker-compose.yml",
     sub(r"guestkit-operator@rabbitmq:5672", "guestkit-operator@elsewhere:5672"),
     "compose", "dependencies, hardening", "disagree on the broker"),
    ("file not in kustomization", "k8s/kustomization.yaml",
     sub(r"^  - pdb.yaml\n", ""),
     "k8s", "kustomization lists every file", "pdb.yaml"),
    ("duplicate key", "k8s/secret.yaml",
     append("  amqp-url: amqp://other\n"),
     "k8s", "kustomization lists every file", "duplicate key 'amqp-url'"),
    ("KEDA counting only ready messages", "k8s/scaledobject.yaml",
     sub(r"protocol: http", "protocol: amqp"),
     "k8s", "KEDA trigger agree", "protocol is 'amqp'"),
    ("KEDA target not max-concurrent", "k8s/scaledobject.yaml",
     sub(r'value: "4"', 'value: "8"'),
     "k8s", "KEDA trigger agree", "value is '8'"),
    ("misspelt ScaledObject field", "k8s/scaledobject.yaml",
     sub(r"pollingInterval:", "pollingIntervall:"),
     "k8s", "schemas", "pollingIntervall"),
    ("misspelt Deployment field", "k8s/deployment.yaml",
     sub(r"livenessProbe:", "livenesProbe:"),
     "k8s", "schemas", "livenesProbe"),
    ("wrong type in a core kind", "k8s/pdb.yaml",
     sub(r"maxUnavailable: 1", "maxUnavailable: [1]"),
     "k8s", "schemas", "maxUnavailable"),
    ("SIGKILL before the shutdown grace ends", "k8s/deployment.yaml",
     sub(r"terminationGracePeriodSeconds: 45", "terminationGracePeriodSeconds: 30"),
     "k8s", "KEDA trigger agree", "terminationGracePeriodSeconds 30"),
    ("writable root filesystem", "k8s/deployment.yaml",
     sub(r"readOnlyRootFilesystem: true", "readOnlyRootFilesystem: false"),
     "k8s", "KEDA trigger agree", "readOnlyRootFilesystem must be true"),
    ("replicas fighting KEDA", "k8s/deployment.yaml",
     sub(r"^spec:\n", "spec:\n  replicas: 2\n"),
     "k8s", "KEDA trigger agree", "spec.replicas is set"),
    ("TriggerAuthentication on a missing key", "k8s/triggerauthentication.yaml",
     sub(r"key: management-url", "key: mgmt-url"),
     "k8s", "KEDA trigger agree", "guestkit-broker/mgmt-url"),
    ("management host KEDA cannot resolve", "k8s/secret.yaml",
     sub(r"@rabbitmq.rabbitmq.svc:15672", "@rabbitmq:15672"),
     "k8s", "KEDA trigger agree", "unqualified"),
    ("queue of another pool", "k8s/configmap.yaml",
     sub(r"GUESTKIT_POOL: default", "GUESTKIT_POOL: gpu"),
     "k8s", "KEDA trigger agree", "guestkit.jobs.gpu"),
    ("topology Job not declaring", "k8s/topology-job.yaml",
     sub(r'args: \["declare"\]', 'args: ["inspect"]'),
     "k8s", "KEDA trigger agree", "must run `declare`"),
    ("vendored schema edited", "integration/deploy/schemas/compose-spec.json",
     sub(r'"Compose Specification"', '"Compose Spec"'),
     "misc", "SHA256SUMS", "compose-spec.json"),
    ("shell script lint", "integration/deploy/cargo-skeleton.sh",
     append("echo $out\n"),
     "misc", "shellcheck", "SC2086"),
]


def fail_blocks(stdout):
    """{check name: its indented failure message} of a validate.py run."""
    blocks, current = {}, None
    for line in stdout.splitlines():
        if line.startswith("FAIL  "):
            current = line[6:]
            blocks[current] = ""
        elif current and line.startswith("      "):
            blocks[current] += line[6:] + "\n"
        else:
            current = None
    return blocks


def run_case(case, base):
    what, rel, transform, group, expect, why = case
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp) / "repo"
        shutil.copytree(base, root, ignore=IGNORE, symlinks=True)
        # A real template file, so dropping templates/ from the context is visible.
        (root / "templates").mkdir(exist_ok=True)
        (root / "templates" / "selftest.tera").write_text("{{ job_id }}\n")
        path = root / rel
        path.write_text(transform(path.read_text(encoding="utf-8")), encoding="utf-8")
        proc = subprocess.run(
            [sys.executable, str(root / "integration" / "deploy" / "validate.py"), "--root", str(root),
             "--only", group, "--quiet-tools"],
            capture_output=True, text=True)
        blocks = fail_blocks(proc.stdout)
        hit = [name for name, msg in blocks.items() if expect in name and why in msg]
        if proc.returncode != 0 and hit:
            return True, f"{hit[0]}: {why}"
        return False, (f"exit {proc.returncode}, no FAIL of '{expect}' saying '{why}':\n"
                       f"{proc.stdout[-3000:]}{proc.stderr[-2000:]}")


def main():
    passed, failed = 0, []
    # The unbroken copy must pass, or every case below would be meaningless.
    for case in [("nothing broken", "Dockerfile", lambda t: t, None, None, None)] + CASES:
        what = case[0]
        if case[3] is None:
            with tempfile.TemporaryDirectory() as tmp:
                root = Path(tmp) / "repo"
                shutil.copytree(ROOT, root, ignore=IGNORE, symlinks=True)
                proc = subprocess.run([sys.executable, str(root / "integration/deploy/validate.py"), "--root",
                                       str(root), "--quiet-tools"], capture_output=True, text=True)
                ok, detail = proc.returncode == 0, "unbroken copy passes" if proc.returncode == 0 else proc.stdout
        else:
            try:
                ok, detail = run_case(case, ROOT)
            except AssertionError as e:
                ok, detail = False, f"case is stale: {e}"
        if ok:
            passed += 1
            print(f"PASS  selftest: {what}  ({detail})")
        else:
            failed.append(what)
            print(f"FAIL  selftest: {what}")
            for line in detail.rstrip().splitlines():
                print(f"      {line}")
    print(f"deploy-selftest: {passed} passed, {len(failed)} failed")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
