#!/usr/bin/env bash
# Builds and tests every project under downstream/ (each outside the masp workspace, using our
# crates by path as a user would), plus each project's own dependency checks.
#
# Needs the asset cache (`cargo xtask setup`): the model comes from GUARD_ONNX_MODEL, else
# $MASP_HOME (default ~/.cache/masp).
#
# All projects build into one target directory, so our crates and the dependencies the projects
# share are compiled once (and CI caches one directory): DOWNSTREAM_TARGET_DIR, else
# `downstream/` under the workspace's target directory ($CARGO_TARGET_DIR, default target/).
# Kept apart from the workspace's own artifacts: each project has its own Cargo.lock and
# profile, which would otherwise churn the workspace's cache.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(dirname "$here")"
CARGO_TARGET_DIR_WORKSPACE="${CARGO_TARGET_DIR:-$root/target}"
[[ "$CARGO_TARGET_DIR_WORKSPACE" = /* ]] || CARGO_TARGET_DIR_WORKSPACE="$PWD/$CARGO_TARGET_DIR_WORKSPACE"
target="${DOWNSTREAM_TARGET_DIR:-$CARGO_TARGET_DIR_WORKSPACE/downstream}"
# Each project builds from its own directory: a relative path must not mean one per project.
[[ "$target" = /* ]] || target="$PWD/$target"
export CARGO_TARGET_DIR="$target"
echo "check.sh: building in $CARGO_TARGET_DIR"
masp_home="${MASP_HOME:-$HOME/.cache/masp}"
model="${GUARD_ONNX_MODEL:-$masp_home/models/silero-vad-6.2.3/silero_vad_16k_sequence.onnx}"
if [[ ! -f "$model" ]]; then
    echo "check.sh: model $model is missing: run \`cargo xtask setup\` in the masp workspace" \
        "(or set GUARD_ONNX_MODEL / MASP_HOME)" >&2
    exit 1
fi
export GUARD_ONNX_MODEL="$model"

n=0
for manifest in "$here"/*/Cargo.toml; do
    [[ -f "$manifest" ]] || continue
    dir="$(dirname "$manifest")"
    name="$(basename "$dir")"
    echo "== downstream/$name"
    # vad-embed uses the workspace's own dependencies at the workspace's profile (its Cargo.lock
    # is the workspace's, pruned): built in the workspace's target directory it reuses the
    # ONNX Runtime bindings, decoders and resampler the workspace built, and only our crates
    # and itself compile. The others keep the shared downstream directory.
    project_target="$CARGO_TARGET_DIR"
    if [[ "$name" == vad-embed ]]; then
        project_target="${CARGO_TARGET_DIR_WORKSPACE:-$root/target}"
    fi
    # --locked: each project's Cargo.lock pins what a user would build (tract's version too).
    (cd "$dir" && CARGO_TARGET_DIR="$project_target" cargo build --locked \
        && CARGO_TARGET_DIR="$project_target" cargo test --locked)
    case "$name" in
        guard-onnx)
            # The point of this project: ONNX models without ONNX Runtime, so no `ort` (nor
            # `ort-sys`) anywhere in its tree, dev and build dependencies included.
            tree="$(cd "$dir" && cargo tree --locked -e normal,dev,build)"
            if grep -nE '^.*\bort\b' <<<"$tree"; then
                echo "check.sh: downstream/$name depends on ONNX Runtime (lines above)" >&2
                exit 1
            fi
            ;;
    esac
    n=$((n + 1))
done
if [[ $n -eq 0 ]]; then
    echo "check.sh: no project with a Cargo.toml under $here" >&2
    exit 1
fi
echo "check.sh: $n downstream project(s) built, tested and checked"
