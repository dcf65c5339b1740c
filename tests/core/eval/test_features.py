"""Backbones loaded from a tiny weights dir through the real loader: shapes, normalisation, batching, clear errors."""

from __future__ import annotations

import shutil

import pytest
import torch
from eval_tiny_backbones import save_tiny_backbones

from context_forcing_core.eval.backbones import BackboneConfig, check_weights, load_backbone, load_backbones
from context_forcing_core.eval.preprocess import CLIP_MEAN, CLIP_STD, Preprocess, default_preprocess, preprocess


@pytest.fixture(scope="module")
def weights_dir(tmp_path_factory):
    return save_tiny_backbones(tmp_path_factory.mktemp("weights"))


@pytest.fixture(scope="module")
def backbones(weights_dir):
    return load_backbones(weights_dir, ["dinov2", "dino", "clip"], BackboneConfig(image_size=32, batch_size=4))


def frames(num: int, seed: int = 0, height: int = 40, width: int = 56) -> torch.Tensor:
    return torch.rand(num, 3, height, width, generator=torch.Generator().manual_seed(seed))


@pytest.mark.parametrize("kind,dim", [("dinov2", 32), ("dino", 32), ("clip", 16)])
def test_image_features_shape_norm_determinism_and_batching(backbones, weights_dir, kind, dim):
    x = frames(9)
    feats = backbones[kind].embed_images(x)
    assert feats.shape == (9, dim) and feats.dtype == torch.float32 and feats.device.type == "cpu"
    assert torch.allclose(feats.norm(dim=-1), torch.ones(9), atol=1e-5)
    assert torch.equal(feats, backbones[kind].embed_images(x))
    # one batch of 9 instead of 3 batches (4, 4, 1): the same features
    whole = load_backbone(weights_dir, kind, BackboneConfig(image_size=32, batch_size=16)).embed_images(x)
    assert torch.allclose(whole, feats, atol=1e-5)
    same = backbones[kind].embed_images(x[:1].repeat(3, 1, 1, 1))
    assert torch.allclose(same, same[:1].expand(3, -1), atol=1e-6)
    assert not torch.allclose(feats[0], feats[1], atol=1e-3)  # different frames, different features


def test_pooling_choice_changes_dino_features(weights_dir, backbones):
    mean = load_backbone(weights_dir, "dinov2", BackboneConfig(image_size=32, pooling="mean")).embed_images(frames(2))
    assert mean.shape == (2, 32) and not torch.allclose(mean, backbones["dinov2"].embed_images(frames(2)), atol=1e-3)


def test_clip_text_features(backbones):
    text = backbones["clip"].embed_text(["a cat runs", "a dog", "a cat runs"])
    assert text.shape == (3, 16) and torch.allclose(text.norm(dim=-1), torch.ones(3), atol=1e-5)
    assert torch.allclose(text[0], text[2]) and not torch.allclose(text[0], text[1], atol=1e-3)
    with pytest.raises(ValueError, match="no text encoder"):
        backbones["dino"].embed_text(["a cat"])
    with pytest.raises(ValueError, match="non-empty sequence"):
        backbones["clip"].embed_text("a cat")


def test_missing_weights_name_the_path_and_the_download(tmp_path, weights_dir):
    with pytest.raises(FileNotFoundError, match=r"dinov2/config\.json.*hf download facebook/dinov2-base") as err:
        load_backbone(tmp_path, "dinov2")
    assert str(tmp_path / "dinov2") in str(err.value)
    clip = tmp_path / "clip"
    shutil.copytree(weights_dir / "clip", clip)
    (clip / "merges.txt").unlink()
    with pytest.raises(FileNotFoundError, match="merges.txt"):
        check_weights(tmp_path, "clip")
    dino = tmp_path / "dino"
    shutil.copytree(weights_dir / "dino", dino)
    (dino / "model.safetensors").rename(dino / "pytorch_model.bin")  # pickles are never loaded
    with pytest.raises(FileNotFoundError, match="model.safetensors"):
        load_backbone(tmp_path, "dino")
    with pytest.raises(FileNotFoundError, match="weights directory not found: .*nowhere"):
        load_backbone(tmp_path / "nowhere", "clip")
    with pytest.raises(ValueError, match="unknown backbone kind"):
        check_weights(tmp_path, "siglip")


def test_swapped_folder_is_named(tmp_path, weights_dir):
    shutil.copytree(weights_dir / "dino", tmp_path / "dinov2")
    with pytest.raises(ValueError, match=r"dinov2/config\.json has model_type 'vit'"):
        load_backbone(tmp_path, "dinov2")


def test_preprocess_resizes_short_side_crops_and_normalises():
    grey = torch.full((2, 3, 40, 56), 0.5)
    out = preprocess(grey, Preprocess(resize=32, crop=None))
    assert out.shape == (2, 3, 32, 45)  # short side 40 -> 32, long side 56 * 0.8 = 44.8 -> 45
    assert preprocess(grey, Preprocess(resize=32, crop=24)).shape == (2, 3, 24, 24)
    clip = preprocess(grey, default_preprocess("clip"))
    assert clip.shape == (2, 3, 224, 224)
    expected = (0.5 - torch.tensor(CLIP_MEAN)) / torch.tensor(CLIP_STD)
    assert torch.allclose(clip[0, :, 100, 100], expected, atol=1e-5)
    assert default_preprocess("dino").crop is None
    with pytest.raises(ValueError, match="larger than"):
        Preprocess(resize=32, crop=64)
    with pytest.raises(ValueError, match="interpolation"):
        Preprocess(interpolation="nearest")
    with pytest.raises(ValueError, match="larger than the frame"):
        preprocess(grey, Preprocess(resize=None, crop=48))


def test_backbone_config_validation():
    with pytest.raises(ValueError, match="pooling"):
        BackboneConfig(pooling="max")
    with pytest.raises(ValueError, match="batch_size"):
        BackboneConfig(batch_size=0)
    assert BackboneConfig(image_size=64).preprocess_for("dino").resize == 64
    assert BackboneConfig(image_size=64).preprocess_for("dino").crop is None
    assert BackboneConfig(image_size=64).preprocess_for("clip").crop == 64
