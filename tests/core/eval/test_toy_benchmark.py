"""Toy benchmark: oracle rows give the known effective contexts, every row is scored and reported, the CLI works."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

from context_forcing_core.eval.toy.benchmark import BenchmarkConfig, methods, run_benchmark
from context_forcing_core.eval.toy.report import Stat, headline_table, summarise, write_report
from context_forcing_core.memory.plot import surprisal_plot
from training.run import main as run_main


@pytest.fixture(scope="module")
def run():
    """Two prompts x two seeds of 40 s: the oracle rows, the CF student and the context teacher continuing it."""
    cfg = BenchmarkConfig(prompts=2, seeds=2, seconds=40.0, teacher_context_s=34.5, teacher_steps=4,
                          only=("teacher_erft",))
    return run_benchmark(cfg, log=lambda line: None)


def test_oracle_rows_have_the_effective_context_they_were_built_with(run):
    threshold, summary = summarise(run)
    assert threshold > 0
    truth, forgets = summary["ground_truth"], summary["forgets_5s"]
    assert truth.lower_bound and truth.effective_context_s.mean >= 20  # never fails: a lower bound
    assert truth.long_gap.mean == 0 and truth.shift_residual.mean == 0 and truth.motion_ok.mean == 1
    assert forgets.effective_context_s.mean == 5.0 and forgets.effective_context_s.std == 0
    assert np.isnan(truth.frames_per_s.mean)  # nothing was generated


def test_teacher_rows_continue_the_cf_videos_and_are_scored_on_their_own_frames(run):
    assert list(run.scores) == ["ground_truth", "forgets_5s", "teacher_erft"]  # cf ran for the teacher, not listed
    made = run.config.frames - round(34.5 * 4)
    for s in run.scores["teacher_erft"]:
        assert s.frames == made and s.seconds > 0
        assert len(s.drift.palette_distance) == made  # drift and motion on the continuation only
        assert s.curve.continuous_count <= made * 32
    assert run.trace is not None and len(run.trace.chunks) == run.config.frames // 3


def test_report_files_and_table_agree_with_the_summary(run, tmp_path):
    report = write_report(run, tmp_path, "python -m training.run eval --preset toy-benchmark")
    text = report.read_text()
    _, summary = summarise(run)
    table = headline_table(run, summary)
    assert table in text and table.count("\n") == len(run.methods) + 1
    for name in ("revisit_vs_gap.png", "revisit_vs_gap_teachers.png", "drift_over_time.png", "memory_timeline.png"):
        assert (tmp_path / name).stat().st_size > 1000
    timeline = np.asarray(Image.open(tmp_path / "memory_timeline.png").convert("RGB"))
    np.testing.assert_array_equal(timeline, np.asarray(surprisal_plot(run.trace, 0)))  # the Inspector's own plot
    data = json.loads((tmp_path / "results.json").read_text())
    assert data["methods"]["forgets_5s"]["effective_context_s"]["mean"] == 5.0
    assert len(data["videos"]["teacher_erft"]) == 4


def test_stat_is_mean_and_sample_std_over_finite_values():
    s = Stat.of([1.0, 3.0, float("nan")])
    assert (s.mean, s.std) == (2.0, pytest.approx(np.sqrt(2.0)))
    assert Stat.of([4.0]).std == 0 and Stat.of([]).text() == "n/a"


def test_config_validation():
    with pytest.raises(ValueError, match="unknown methods"):
        BenchmarkConfig(only=("nope",))
    with pytest.raises(ValueError, match="strictly inside"):
        BenchmarkConfig(seconds=10.0, teacher_context_s=18.0)
    assert [m.name for m in methods(18.0)][:3] == ["ground_truth", "forgets_5s", "cf"]


def test_cli_writes_the_report(tmp_path, capsys):
    out = tmp_path / "bench"
    assert run_main(["eval", "--preset", "toy-benchmark", "--prompts", "1", "--seeds", "1", "--seconds", "6",
                     "--teacher-context", "3", "--methods", "stage1_longlive", "--out", str(out)]) == 0
    assert (out / "report.md").is_file() and "Stage-1 student, longlive" in capsys.readouterr().out
    with pytest.raises(SystemExit):
        run_main(["eval", "--preset", "toy-benchmark", "--methods", "nope", "--out", str(out)])
