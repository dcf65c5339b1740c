"""Toy prompts: canonical text, parsing round trips and free text, validation, random draws."""

from __future__ import annotations

import numpy as np
import pytest

from context_forcing_core.toyworld.camera import MOTIONS
from context_forcing_core.toyworld.prompts import ToyPrompt, all_prompts, parse_prompt, random_prompt
from context_forcing_core.toyworld.world import PALETTES, STYLES


def test_every_combination_round_trips_and_texts_are_distinct():
    prompts = all_prompts()
    assert len(prompts) == len(PALETTES) * len(STYLES) * len(MOTIONS) == 72
    for p in prompts:
        assert parse_prompt(p.text) == p
        assert parse_prompt(p.text.upper()) == p
    assert len({p.text for p in prompts}) == 72


def test_canonical_text():
    prompt = ToyPrompt(palette="desert", style="mixed", motion="slow_pan")
    assert prompt.text == "a desert panorama, shapes over bands, slow pan"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("Ocean STRIPES, fast pan", ToyPrompt(palette="ocean", style="bands", motion="fast_pan")),
        ("neon shapes circling", ToyPrompt(palette="neon", style="shapes", motion="loop")),
        ("a snowy... no, snow world: shapes and bands, slow", ToyPrompt(palette="snow", style="mixed", motion="slow_pan")),
        ("sunset, mixed, loop", ToyPrompt(palette="sunset", style="mixed", motion="loop")),
        ("forest bands with a few pauses", ToyPrompt(palette="forest", style="bands", motion="pan_with_pauses")),
        ("", ToyPrompt(palette="desert", style="mixed", motion="pan_with_pauses")),
        ("something else entirely", ToyPrompt()),
    ],
)
def test_free_text(text, expected):
    assert parse_prompt(text) == expected


@pytest.mark.parametrize("field", ["palette", "style", "motion"])
def test_validation_names_allowed_values(field):
    with pytest.raises(ValueError, match="allowed"):
        ToyPrompt(**{field: "purple"})


def test_random_prompt_is_seeded_and_covers_choices():
    a = [random_prompt(np.random.default_rng(5)) for _ in range(2)]
    assert a[0] == a[1]
    rng = np.random.default_rng(0)
    drawn = [random_prompt(rng) for _ in range(400)]
    assert {p.palette for p in drawn} == set(PALETTES)
    assert {p.style for p in drawn} == set(STYLES)
    assert {p.motion for p in drawn} == set(MOTIONS)
