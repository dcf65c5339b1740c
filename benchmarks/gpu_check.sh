#!/usr/bin/env bash
# The one GPU check: installs what it needs, then runs benchmarks/gpu_check.py (60 s of 480x832 video from
# a random-weight Wan2.1-1.3B, context_forcing and full memory, eager and compiled, bf16) and writes gpu_check.json.
# Usage: bash benchmarks/gpu_check.sh [OUT.json]   (about 8 minutes on one H100; runs stop starting after 7)
set -euo pipefail
cd "$(dirname "$0")/.."
OUT="${1:-${OUT:-.}/gpu_check.json}"
PY=python3
if ! $PY -c "import torch, sys; sys.exit(0 if torch.cuda.is_available() else 1)" 2>/dev/null; then
    # no CUDA torch in the system Python: a virtual environment with the pinned requirements (torch included)
    $PY -m venv .venv-gpu && PY=.venv-gpu/bin/python
    $PY -m pip install --quiet -r requirements.txt torch
fi
$PY -m pip install --quiet -r requirements.txt 2>/dev/null || true  # the pack's light dependencies, if missing
$PY -c "import torch; print('torch', torch.__version__, 'cuda', torch.version.cuda, torch.cuda.get_device_name())"
$PY -m benchmarks.gpu_check --out "$OUT"
