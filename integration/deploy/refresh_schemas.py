#!/usr/bin/env python3
"""Re-create the vendored schemas under integration/deploy/schemas/ from the
registry packages they come from, or, with --check, prove that the vendored
files are exactly what those packages give.

Why vendored: CI validates the deployment files offline and reproducibly, and
neither schema is published as a file a registry serves directly.

- compose-spec.json: the Compose Specification JSON schema, as shipped inside
  the npm package dclint (schemas/compose.schema.json), which bundles the
  upstream compose-spec schema unchanged.
- keda/*.schema.json: the KEDA CRD schemas of ScaledObject and
  TriggerAuthentication. No registry package ships the CRDs' openAPIV3Schema
  as JSON (the npm package @kubernetes-models/keda ships compiled validators
  only), but the PyPI package cloudcoil-models-keda carries pydantic models
  generated from the KEDA CRDs; their JSON schema (model_json_schema) is what
  is vendored. validate.py adds the strictness (unknown fields rejected).

Needs npm and pip (cloudcoil-models-keda goes into a scratch directory);
CI does not run it by default: validate-deploy.sh checks SHA256SUMS instead.
"""

import argparse
import atexit
import hashlib
import io
import json
import shutil
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
SCHEMAS = HERE / "schemas"

DCLINT = "dclint@3.1.0"
DCLINT_MEMBER = "package/schemas/compose.schema.json"
CLOUDCOIL_KEDA = "cloudcoil-models-keda==2.16.1.0"
KEDA_KINDS = ("ScaledObject", "TriggerAuthentication")


def compose_schema() -> bytes:
    """The compose-spec schema file, byte for byte, from the dclint tarball."""
    with tempfile.TemporaryDirectory() as tmp:
        name = subprocess.run(
            ["npm", "pack", "--silent", DCLINT],
            cwd=tmp, check=True, capture_output=True, text=True,
        ).stdout.strip().splitlines()[-1]
        with tarfile.open(Path(tmp) / name) as tar:
            member = tar.extractfile(DCLINT_MEMBER)
            if member is None:
                sys.exit(f"{DCLINT} has no {DCLINT_MEMBER}")
            return member.read()


def keda_schemas() -> dict:
    """JSON schema text of each KEDA kind, from cloudcoil's generated models."""
    # Into a scratch directory, not the running environment: the validation
    # venv stays exactly its requirements.txt.
    scratch = tempfile.mkdtemp(prefix="cloudcoil-")
    atexit.register(shutil.rmtree, scratch, ignore_errors=True)
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--disable-pip-version-check",
                    "--target", scratch, CLOUDCOIL_KEDA], check=True)
    sys.path.insert(0, scratch)
    from cloudcoil.models.keda import v1alpha1

    out = {}
    for kind in KEDA_KINDS:
        schema = getattr(v1alpha1, kind).model_json_schema(by_alias=True, mode="validation")
        schema["$comment"] = f"{kind} of KEDA 2.16.1, generated from {CLOUDCOIL_KEDA} by refresh_schemas.py"
        out[f"keda/{kind.lower()}.schema.json"] = (json.dumps(schema, indent=1, sort_keys=True) + "\n").encode()
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="compare instead of writing")
    args = parser.parse_args()

    files = {"compose-spec.json": compose_schema(), **keda_schemas()}
    sums = io.StringIO()
    for rel in sorted(files):
        sums.write(f"{hashlib.sha256(files[rel]).hexdigest()}  {rel}\n")
    files["SHA256SUMS"] = sums.getvalue().encode()

    differ = []
    for rel, data in files.items():
        path = SCHEMAS / rel
        if args.check:
            if not path.is_file() or path.read_bytes() != data:
                differ.append(rel)
        else:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(data)
            print(f"wrote {path.relative_to(HERE.parent.parent)}")
    if differ:
        print("vendored schemas differ from their packages: " + ", ".join(differ))
        return 1
    if args.check:
        print("vendored schemas match " + DCLINT + " and " + CLOUDCOIL_KEDA)
    return 0


if __name__ == "__main__":
    sys.exit(main())
