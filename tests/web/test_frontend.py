"""The frontend extension's logic under Node's test runner (tests/web/*.test.mjs)."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent


@pytest.mark.skipif(shutil.which("node") is None, reason="needs Node.js")
def test_frontend_extension_under_node_test_runner():
    files = sorted(str(p) for p in HERE.glob("*.test.mjs"))
    out = subprocess.run(["node", "--test", *files], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stdout + out.stderr
    assert "# pass 3" in out.stdout and "# fail 0" in out.stdout
