"""Queue-time input checks (nodes/input_checks.py) on hand-made graphs; the real server's answers are in
test_real_comfyui.py."""

import comfy_stubs
import pytest

from nodes.input_checks import CHECKS, refusals, refuse_in_place

assert comfy_stubs  # installed on import


@pytest.mark.parametrize(("class_type", "inputs", "expected"), [
    ("CF_LongRolloutSampler", {"shift": float("nan"), "width": 832, "height": 480},
     {"shift": "nan is refused: shift must be a finite number"}),
    ("CF_LongRolloutSampler", {"shift": "-inf", "width": "840", "height": 472},
     {"shift": "'-inf' is refused: shift must be a finite number",
      "width": "'840' is refused: width must be a multiple of 16 (Wan latents are 1/8 of the pixels, in 2 x 2 patches)",
      "height": "472 is refused: height must be a multiple of 16 (Wan latents are 1/8 of the pixels, in 2 x 2 patches)"}),
    ("CF_MemoryConfig", {"preset": "longlive", "fast_frames": 0, "consolidate_every": 0},
     {"fast_frames": "0 is refused: fast_frames counts the chunk being generated and must be at least the chunk size "
                     "3, or -1 for the preset's",
      "consolidate_every": "0 is refused: consolidate_every must be at least 1, or -1 for the preset's"}),
])
def test_refused_values_name_the_input_and_the_rule(class_type, inputs, expected):
    assert refusals(class_type, inputs) == expected


@pytest.mark.parametrize(("class_type", "inputs"), [
    ("CF_LongRolloutSampler", {"shift": 5.0, "width": 832, "height": 480}),  # valid
    ("CF_LongRolloutSampler", {"shift": 99.0, "width": 100_000, "height": 8}),  # out of range: ComfyUI's message
    ("CF_LongRolloutSampler", {"shift": ["5", 0], "width": "abc", "height": None}),  # a link, unconvertible, missing
    ("CF_MemoryConfig", {"preset": "context_forcing", "fast_frames": -1, "consolidate_every": -1}),  # the preset's
    ("CF_MemoryConfig", {"preset": "context_forcing", "fast_frames": 3, "consolidate_every": 1}),  # the minima
    ("CF_MemoryConfig", {"preset": ["x"], "fast_frames": -2, "consolidate_every": 65}),  # left to ComfyUI
    ("CF_ToyDecode", {"scale": float("nan")}),  # no checks for this node
    ({"not": "hashable"}, {"shift": float("nan")}),
])
def test_valid_or_foreign_values_are_left_alone(class_type, inputs):
    assert refusals(class_type, inputs) == {}


def test_refuse_in_place_rewrites_only_refused_values_into_unconvertible_text():
    graph = {"2": {"class_type": "CF_MemoryConfig", "inputs": {"preset": "context_forcing", "fast_frames": 2,
                                                                "consolidate_every": 4}},
             "3": {"class_type": "CF_LongRolloutSampler", "inputs": {"shift": 5.0, "width": 500, "height": 480}},
             "9": "not a node"}
    data = refuse_in_place({"prompt": graph, "client_id": "x"})
    assert data["prompt"] is graph and graph["9"] == "not a node"
    assert graph["2"]["inputs"]["consolidate_every"] == 4 and graph["3"]["inputs"]["height"] == 480
    for node, name in (("2", "fast_frames"), ("3", "width")):
        text = graph[node]["inputs"][name]
        assert isinstance(text, str) and f"is refused: {name}" in text
        with pytest.raises(ValueError):  # what ComfyUI's conversion then does: one error on this input
            int(text)
    assert refuse_in_place(None) is None and refuse_in_place({"prompt": []}) == {"prompt": []}


def test_every_checked_input_exists_on_its_node():
    from nodes import NODES  # the registered pack nodes

    for class_type, checks in CHECKS.items():
        [node] = [n for n in NODES if n.define_schema().node_id == class_type]
        names = {i.id for i in node.define_schema().inputs}
        assert set(checks) <= names, (class_type, set(checks) - names)
