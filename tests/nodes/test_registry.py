"""The pack passes comfy-cli's registry validation (pyproject metadata, and no flagged calls such as eval/exec)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def test_comfy_node_validate_passes():
    comfy = Path(sys.executable).parent / "comfy"
    out = subprocess.run([str(comfy), "--skip-prompt", "--no-enable-telemetry", "node", "validate"], cwd=REPO,
                         capture_output=True, text=True, timeout=120, stdin=subprocess.DEVNULL)
    assert out.returncode == 0, out.stdout + out.stderr
    text = out.stdout + out.stderr
    assert "All validation checks passed" in text and "Security warnings" not in text, text  # eval/exec/... flagged
