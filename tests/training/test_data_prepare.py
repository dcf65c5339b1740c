"""prepare-data end to end on tiny Wan components: skips counted by reason, cache equals direct encodes, resume."""

from __future__ import annotations

import logging

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader

pytest.importorskip("diffusers")
pytest.importorskip("transformers")

from data_tiny_models import LATENTS_MEAN, LATENTS_STD, noise_frames, ramp_frames, save_tiny_wan, write_video  # noqa: E402

from training.data.cache import LatentClip, LatentClipDataset  # noqa: E402
from training.data.encoders import UMT5TextEncoder, WanVideoEncoder  # noqa: E402
from training.data.negative import negative_is_current, read_negative  # noqa: E402
from training.data.prepare import PrepareConfig, main, prepare_prompts, prepare_videos  # noqa: E402
from training.data.prompt_cache import EncodedPromptDataset  # noqa: E402
from training.data.videos import VideoConfig, load_clip, to_unit_range  # noqa: E402

CFG = PrepareConfig(video=VideoConfig(fps=16, height=16, width=16, num_frames=9, min_source_fps=15), device="cpu",
                    text_dtype="float32", save_dtype="float32", log_every=2)


@pytest.fixture(scope="module")
def wan_root(tmp_path_factory):
    return save_tiny_wan(tmp_path_factory.mktemp("wan"))


@pytest.fixture
def videos(tmp_path):
    root = tmp_path / "videos"
    root.mkdir()
    write_video(root / "good.mp4", noise_frames(24, seed=0), fps=16)
    (root / "sub").mkdir()
    write_video(root / "sub" / "fast.mp4", noise_frames(24, seed=1), fps=32)  # 32 fps: needs 17 of 24 frames
    write_video(root / "short.mp4", ramp_frames(6), fps=16)  # needs 9
    (root / "corrupt.mp4").write_bytes(np.random.default_rng(0).bytes(4096))
    table = root / "captions.csv"
    table.write_text("path,caption\n"
                     "good.mp4,a cat runs on the beach\n"
                     "corrupt.mp4,a dog walks\n"
                     "missing.mp4,a red car\n"
                     "short.mp4,the ocean at night\n"
                     "good.mp4,\n"
                     "sub/fast.mp4,a blue car in the city at night\n"
                     "good.mp4,a cat runs on the beach\n")
    return root, table


def test_prepare_videos_counts_skips_and_caches_direct_encodes(wan_root, videos, tmp_path, caplog, capsys,
                                                               monkeypatch):
    from diffusers import AutoencoderKLWan
    from transformers import AutoTokenizer, UMT5EncoderModel

    root, table = videos
    out = tmp_path / "cache"
    with caplog.at_level(logging.WARNING):
        report = prepare_videos(root, table, out, vae_dir=wan_root, text_encoder_dir=wan_root, cfg=CFG)
    assert (report.encoded, report.cached) == (2, 0)
    assert report.skipped == {"corrupt": 1, "missing_file": 1, "too_short": 1, "empty_caption": 1,
                              "duplicate_row": 1}
    warnings = [r.getMessage() for r in caplog.records if r.name == "training.data"]
    assert len(warnings) == 5
    for name in ("corrupt.mp4", "missing.mp4", "short.mp4", "captions.csv:6 (good.mp4)"):
        assert sum(name in w for w in warnings) == 1, (name, warnings)
    assert "prepare-data: 2/6 videos" in capsys.readouterr().out and report.seconds > 0

    ds = LatentClipDataset(out)
    assert [c.source for c in ds] == ["good.mp4", "sub/fast.mp4"]
    vae = AutoencoderKLWan.from_pretrained(wan_root / "vae").eval()
    model = UMT5EncoderModel.from_pretrained(wan_root / "text_encoder").eval()
    tok = AutoTokenizer.from_pretrained(wan_root / "tokenizer")
    mean, std = torch.tensor(LATENTS_MEAN).view(1, 16, 1, 1, 1), torch.tensor(LATENTS_STD).view(1, 16, 1, 1, 1)
    for clip, path in zip(ds, (root / "good.mp4", root / "sub" / "fast.mp4")):
        frames = load_clip(path, CFG.video)  # (3, 9, 16, 16) uint8
        with torch.no_grad():
            mu = vae.encode(frames[None].float() / 127.5 - 1).latent_dist.mean  # (1, 16, 3, 2, 2)
            ids = tok(clip.prompt, return_tensors="pt").input_ids
            text = model(input_ids=ids).last_hidden_state[0]  # (n, 16)
        assert clip.latents.shape == (16, 3, 2, 2)
        torch.testing.assert_close(clip.latents, ((mu - mean) / std)[0], rtol=1e-5, atol=1e-5)
        assert clip.text.shape == (512, 16)
        torch.testing.assert_close(clip.text[: len(text)], text, rtol=1e-4, atol=1e-5)
        assert not clip.text[len(text) :].any()
    batch = next(iter(DataLoader(ds, batch_size=2, collate_fn=LatentClip.collate)))
    assert batch["latents"].shape == (2, 16, 3, 2, 2) and batch["text"].shape == (2, 512, 16)
    assert torch.equal(to_unit_range(torch.tensor([0, 255], dtype=torch.uint8)), torch.tensor([-1.0, 1.0]))

    files = {p: p.stat().st_mtime_ns for p in (out / "clips").iterdir()}
    for cls in (WanVideoEncoder, UMT5TextEncoder):  # a fully cached re-run loads no model
        monkeypatch.setattr(cls, "from_pretrained", classmethod(lambda *a, **k: pytest.fail("model loaded")))
    again = prepare_videos(root, table, out, vae_dir=wan_root, text_encoder_dir=wan_root, cfg=CFG)
    assert (again.encoded, again.cached, again.skipped) == (0, 2, report.skipped)  # negative prompt too
    assert {p: p.stat().st_mtime_ns for p in (out / "clips").iterdir()} == files
    assert len(LatentClipDataset(out)) == 2


def test_settings_change_needs_a_new_folder(wan_root, videos, tmp_path):
    root, table = videos
    out = tmp_path / "cache"
    prepare_videos(root, table, out, vae_dir=wan_root, text_encoder_dir=wan_root, cfg=CFG)
    other = PrepareConfig(video=VideoConfig(fps=16, height=16, width=16, num_frames=5), device="cpu",
                          text_dtype="float32", save_dtype="float32")
    with pytest.raises(ValueError, match="other settings"):
        prepare_videos(root, table, out, vae_dir=wan_root, text_encoder_dir=wan_root, cfg=other)


def test_prepare_prompts_dedups_encodes_in_shards_and_resumes(wan_root, tmp_path, capsys):
    from transformers import AutoTokenizer, UMT5EncoderModel

    prompts = tmp_path / "prompts.txt"
    prompts.write_text("a cat runs\n\na dog walks\n  a cat  runs\nthe red car\n \nocean at night\na dog walks\n")
    cfg = PrepareConfig(device="cpu", text_dtype="float32", save_dtype="float32", shard_size=2, prompt_batch=3)
    out = tmp_path / "prompts"
    report = prepare_prompts(prompts, out, text_encoder_dir=wan_root / "text_encoder", cfg=cfg)
    assert (report.encoded, report.cached, report.skipped) == (4, 0, {"blank": 2, "duplicate": 2})
    assert "shard 2/2" in capsys.readouterr().out
    ds = EncodedPromptDataset(out)
    assert [ds[i][0] for i in range(len(ds))] == ["a cat runs", "a dog walks", "the red car", "ocean at night"]
    model = UMT5EncoderModel.from_pretrained(wan_root / "text_encoder").eval()
    tok = AutoTokenizer.from_pretrained(wan_root / "tokenizer")
    for text, states in ds:
        with torch.no_grad():
            direct = model(input_ids=tok(text, return_tensors="pt").input_ids).last_hidden_state[0]  # (n, 16)
        assert states.shape == (512, 16) and not states[len(direct) :].any()
        torch.testing.assert_close(states[: len(direct)], direct, rtol=1e-4, atol=1e-5)
    with torch.no_grad():  # the default negative prompt, encoded beside the prompts for guidance
        empty = model(input_ids=tok("", return_tensors="pt").input_ids).last_hidden_state[0]  # (1, 16)
    negative = read_negative(out, text_len=512, text_dim=16)  # (1, 512, 16)
    torch.testing.assert_close(negative[0, : len(empty)], empty, rtol=1e-4, atol=1e-5)
    assert not negative[0, len(empty) :].any()
    again = prepare_prompts(prompts, out, text_encoder_dir=wan_root / "text_encoder", cfg=cfg)
    assert (again.encoded, again.cached) == (0, 4)
    prompts.write_text("a cat runs\na dog walks\nthe blue car\n")  # shard 0 unchanged, shard 1 changed and shorter
    third = prepare_prompts(prompts, out, text_encoder_dir=wan_root / "text_encoder", cfg=cfg)
    assert (third.encoded, third.cached) == (1, 2)
    assert [t for t, _ in EncodedPromptDataset(out)] == ["a cat runs", "a dog walks", "the blue car"]


def test_command_line(wan_root, tmp_path, capsys):
    prompts = tmp_path / "p.txt"
    prompts.write_text("a cat\na cat\n")
    out = tmp_path / "cli"
    assert main(["--out", str(out), "--prompts", str(prompts), "--text-encoder", str(wan_root), "--device", "cpu",
                 "--text-dtype", "float32", "--text-len", "16", "--negative-prompt", "blurry, static"]) == 0
    printed = capsys.readouterr().out
    assert "prompts -> " in printed and "1 encoded, 0 already cached, 1 skipped (duplicate 1)" in printed
    assert EncodedPromptDataset(out)[0][1].shape == (16, 16)
    assert negative_is_current(out, "blurry, static") and not negative_is_current(out, "")
    with pytest.raises(SystemExit):
        main(["--out", str(out), "--videos", str(tmp_path), "--text-encoder", str(wan_root)])
