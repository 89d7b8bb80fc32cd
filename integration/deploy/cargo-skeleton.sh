#!/bin/sh
# cargo-skeleton.sh SRC OUT
#
# Writes into OUT a copy of the cargo workspace at SRC reduced to what decides
# its dependency graph: every manifest, Cargo.lock, the cargo config, and an
# empty `fn main() {}` at the path of every target cargo knows (libs, bins,
# tests, benches, examples, build scripts). `cargo build` in OUT then compiles
# exactly the dependencies of SRC, and OUT changes only when a manifest or the
# set of targets changes. Why: the Dockerfile builds dependencies in their own
# layer from this skeleton, so editing a source file does not rebuild them.
# CI runs this same script (integration/deploy/validate.py) to prove the
# skeleton is a valid workspace whose Cargo.lock is current.
#
# Needs only cargo and POSIX sh (the builder image has no jq or python).
set -eu

if [ "$#" -ne 2 ]; then
    echo "usage: $0 SRC OUT" >&2
    exit 2
fi
src=$(cd "$1" && pwd -P)
mkdir -p "$2"
out=$(cd "$2" && pwd -P)

# --no-deps: members only, no resolution, no network.
meta=$(cd "$src" && cargo metadata --no-deps --offline --format-version 1)

# Pull one string field out of cargo's JSON. Paths here never contain a
# double quote, so a pattern match is enough without a JSON parser.
field() {
    printf '%s\n' "$meta" | grep -o "\"$1\":\"[^\"]*\"" | cut -d'"' -f4
}

# Make an absolute path under SRC relative, refusing anything outside it.
relative() {
    case "$1" in
        "$src"/*) printf '%s\n' "${1#"$src"/}" ;;
        *) echo "cargo-skeleton: $1 is outside $src" >&2; exit 1 ;;
    esac
}

# One path per line; read line by line so a path with a space survives.
field manifest_path | while IFS= read -r manifest; do
    rel=$(relative "$manifest")
    mkdir -p "$out/$(dirname "$rel")"
    cp "$manifest" "$out/$rel"
done
field src_path | while IFS= read -r target; do
    rel=$(relative "$target")
    mkdir -p "$out/$(dirname "$rel")"
    echo 'fn main() {}' > "$out/$rel"
done
for extra in Cargo.lock .cargo/config.toml .cargo/config rust-toolchain.toml rust-toolchain; do
    if [ -f "$src/$extra" ]; then
        mkdir -p "$out/$(dirname "$extra")"
        cp "$src/$extra" "$out/$extra"
    fi
done
if [ ! -f "$out/Cargo.lock" ]; then
    echo "cargo-skeleton: $src has no Cargo.lock; the image build uses --locked" >&2
    exit 1
fi
echo "cargo-skeleton: $(field src_path | wc -l) target stubs written to $out"
