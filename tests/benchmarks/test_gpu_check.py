"""The GPU check's CPU dry mode runs end to end and writes the figures the GPU run reports."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def test_gpu_check_dry_mode_writes_every_run(tmp_path):
    out = tmp_path / "dry.json"
    done = subprocess.run([sys.executable, "-m", "benchmarks.gpu_check", "--dry", "--out", str(out)], cwd=REPO,
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    report = json.loads(out.read_text())
    runs = [(r["memory"], r["compiled"]) for r in report["runs"]]
    assert runs == [("context_forcing", False), ("context_forcing", True), ("full", False), ("full", True)]
    assert report["skipped"] == [] and report["sdpa_kernel"] != "unknown"
    for run in report["runs"]:
        assert run["fps"] > 0 and all(v > 0 for v in run["chunk_latency_s"].values())
    assert "FPS" in done.stdout and "SDPA kernel" in done.stdout
