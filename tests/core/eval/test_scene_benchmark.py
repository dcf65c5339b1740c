"""The scene benchmark through the CLI on a random toy model: oracle rows come out right, the files are written."""

from __future__ import annotations

import json

import numpy as np

from context_forcing_core.models.config import toy
from context_forcing_core.models.loading import save_model
from tests.conftest import random_model
from training import run


def test_scene_benchmark_cli(tmp_path, capsys):
    path = tmp_path / "student.safetensors"
    save_model(random_model(toy()), path)
    out = tmp_path / "report"
    assert run.main(["eval", "--preset", "scene-benchmark", "--student", str(path), "--schedules", "2", "--seeds", "1",
                     "--seconds", "30", "--methods", "self_forcing", "--out", str(out), "--threads", "1"]) == 0
    summary = json.loads((out / "results.json").read_text())
    assert list(summary) == ["ground truth (oracle)", "forgets after 5 s (oracle)", "student, self_forcing"]
    truth, forget = summary["ground truth (oracle)"], summary["forgets after 5 s (oracle)"]
    assert truth["within_visit_change"][0] == 0 and truth["library_distance"][0] == 0
    assert np.nanmax(np.asarray(truth["relative_by_gap"], dtype=float)) == 0
    late = np.asarray(forget["bin_edges_s"][:-1]) >= 5
    assert np.nanmin(np.asarray(forget["relative_by_gap"], dtype=float)[late]) > 0.5
    assert (out / "report.md").read_text().count("| student, self_forcing |") == 1
    assert "wrote" in capsys.readouterr().out
