"""The core demo runs end to end and writes its trace and picture."""

from __future__ import annotations

import json

from context_forcing_core import demo


def test_demo_writes_trace_and_slot_map(tmp_path, capsys):
    demo.main(["--frames", "48", "--out", str(tmp_path)])
    trace = json.loads((tmp_path / "trace.json").read_text())
    assert len(trace["chunks"]) == 16
    assert trace["chunks"][-1]["frames"] == [45, 46, 47]
    assert (tmp_path / "slot_map.png").stat().st_size > 0
    assert "48 latent frames (12 s of video)" in capsys.readouterr().out
