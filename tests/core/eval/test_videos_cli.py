"""The eval command end to end on two tiny mp4s and a tiny weights dir; input errors exit with a clear message."""

from __future__ import annotations

import json
import shutil

import pytest

from context_forcing_core.eval.videos_cli import main
from tests.core.eval.eval_tiny_backbones import save_tiny_backbones, smooth_frames, write_video


@pytest.fixture(scope="module")
def inputs(tmp_path_factory):
    root = tmp_path_factory.mktemp("eval")
    videos = root / "videos"
    videos.mkdir()
    write_video(videos / "b_second.mp4", smooth_frames(20, seed=2), fps=16)  # 1.25 s
    write_video(videos / "a_first.mp4", smooth_frames(28, seed=1), fps=16)  # 1.75 s
    (videos / "notes.txt").write_text("not a video")
    prompts = root / "prompts.txt"
    prompts.write_text("a cat runs\na dog\n", encoding="utf-8")
    return {"root": root, "videos": videos, "prompts": prompts, "weights": save_tiny_backbones(root / "weights")}


def args(inputs, out, *extra):
    return ["--videos", str(inputs["videos"]), "--prompts", str(inputs["prompts"]), "--weights-dir",
            str(inputs["weights"]), "--out", str(out), "--image-size", "32", "--batch-size", "8", "--no-progress",
            "--timestamps", "0.5,1.5,10", *extra]


def test_writes_per_video_and_aggregate_json(inputs, tmp_path, capsys):
    assert main(args(inputs, tmp_path / "out")) == 0
    first = json.loads((tmp_path / "out" / "videos" / "a_first.json").read_text())
    second = json.loads((tmp_path / "out" / "videos" / "b_second.json").read_text())
    assert (first["prompt"], second["prompt"]) == ("a cat runs", "a dog")  # lines follow the sorted names
    assert (first["num_frames"], first["fps"]) == (28, 16.0)
    assert first["timestamps_s"] == [0.5, 1.5] and second["timestamps_s"] == [0.5, 1.5]  # 10 s dropped
    assert sorted(first["curves"]) == ["clip_f", "clip_t", "dinov2"] and all(len(c) == 2 for c in first["curves"].values())
    assert sorted(first["scores"]) == ["background_consistency", "background_consistency_2s", "clip_t_start_end_delta",
                                       "subject_consistency", "subject_consistency_2s"]
    assert all(0.0 <= first["scores"][k] <= 1.0 for k in ("subject_consistency", "background_consistency"))
    agg = json.loads((tmp_path / "out" / "aggregate.json").read_text())
    assert agg["num_videos"] == 2 and agg["curves"]["dinov2"]["num_videos"] == [2, 2]
    mean = (first["scores"]["subject_consistency"] + second["scores"]["subject_consistency"]) / 2
    assert agg["scores"]["subject_consistency"]["mean"] == pytest.approx(mean)
    assert agg["config"]["backbones"]["clip"]["preprocess"]["crop"] == 32
    assert "aggregate.json" in capsys.readouterr().out


def test_backbone_subset(inputs, tmp_path):
    assert main(args(inputs, tmp_path / "out", "--backbones", "dino")) == 0
    result = json.loads((tmp_path / "out" / "videos" / "a_first.json").read_text())
    assert result["curves"] == {} and sorted(result["scores"]) == ["subject_consistency", "subject_consistency_2s"]


def test_missing_prompt_line_exits_naming_the_file(inputs, tmp_path, capsys):
    short = tmp_path / "short.txt"
    short.write_text("only one\n", encoding="utf-8")
    argv = args(inputs, tmp_path / "out")
    argv[argv.index("--prompts") + 1] = str(short)
    with pytest.raises(SystemExit) as err:
        main(argv)
    assert err.value.code == 2 and "short.txt has 1 lines but there are 2 videos" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


def test_missing_weights_exit_naming_the_path(inputs, tmp_path, capsys):
    weights = tmp_path / "weights"
    shutil.copytree(inputs["weights"], weights)
    shutil.rmtree(weights / "clip")
    argv = args(inputs, tmp_path / "out")
    argv[argv.index("--weights-dir") + 1] = str(weights)
    with pytest.raises(SystemExit) as err:
        main(argv)
    message = capsys.readouterr().err
    assert err.value.code == 2 and str(weights / "clip" / "config.json") in message
    assert "hf download openai/clip-vit-base-patch32" in message and "Traceback" not in message


def test_bad_flags_exit(inputs, tmp_path, capsys):
    with pytest.raises(SystemExit):
        main(args(inputs, tmp_path / "out", "--backbones", "dino,siglip"))
    assert "subset of dinov2,dino,clip" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(args(inputs, tmp_path / "out", "--device", "cuda:99"))
    assert "CUDA device(s)" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(args(inputs, tmp_path / "out", "--device", "gpu-please"))
    assert "--device 'gpu-please'" in capsys.readouterr().err
