"""The pack in a real ComfyUI 0.3.75 (--cpu, 127.0.0.1), driven over HTTP and its websocket like the editor does."""

from __future__ import annotations

import copy
import json
import urllib.request
from pathlib import Path

import imageio_ffmpeg
import pytest
from real_server import listen, messages

from tools.comfy_server import ComfyServer
from tools.make_workflows import WAN_CKPT, WORKFLOWS, render
from tools.workflow_api import to_api

REPO = Path(__file__).resolve().parents[2]
EXPECTED_INPUTS = {
    "CF_LoadModel": ["ckpt_name", "dtype", "model"],
    "CF_MemoryConfig": ["preset", "sink_frames", "slow_frames", "fast_frames", "threshold", "consolidate_every",
                        "positions", "similarity_reference"],
    "CF_PromptSwitch": ["at_seconds", "prompt", "conditioning", "schedule"],
    "CF_LongRolloutSampler": ["model", "seconds", "seed", "steps", "shift", "width", "height", "prompt", "memory",
                              "conditioning", "schedule"],
    "CF_SurprisalInspector": ["memory_trace", "layer"],
    "CF_ToyDecode": ["latent", "scale"],
}


def _toy_prompt(server: ComfyServer, **sampler_inputs: object) -> dict:
    prompt = to_api(json.loads((REPO / "workflows" / "toy_long_video.json").read_text()), server.object_info)
    prompt["3"]["inputs"].update(sampler_inputs)
    return prompt


def test_object_info_lists_every_node_with_its_inputs(server):
    for node, names in EXPECTED_INPUTS.items():
        info = server.object_info[node]
        order = info["input_order"]
        assert [*order["required"], *order.get("optional", [])] == names, node
        assert info["category"] == "Context Forcing" and info["display_name"]
    assert "corrupt.safetensors" in server.object_info["CF_LoadModel"]["input"]["required"]["ckpt_name"][1]["options"]


def test_frontend_extension_is_served(server):
    listed = server.get("/extensions")
    assert "/extensions/context_forcing/context_forcing.js" in listed
    with urllib.request.urlopen(f"{server.url}/extensions/context_forcing/js/summary.js", timeout=30) as r:
        assert "CF_SurprisalInspector" in r.read().decode()


def test_template_browser_offers_the_shipped_workflows(server):
    offered = server.get("/workflow_templates")["context_forcing"]
    assert sorted(offered) == sorted(name.removesuffix(".json") for name in WORKFLOWS)
    with urllib.request.urlopen(f"{server.url}/api/workflow_templates/context_forcing/toy_long_video.json") as r:
        assert json.loads(r.read()) == json.loads((REPO / "workflows" / "toy_long_video.json").read_text())


def test_shipped_workflows_are_current():
    for name in WORKFLOWS:
        assert (REPO / "workflows" / name).read_text() == render(name), f"run python -m tools.make_workflows ({name})"


def test_toy_workflow_makes_a_60_second_video(server):
    status, answer = server.queue(_toy_prompt(server))
    assert status == 200, answer
    entry = server.wait(answer["prompt_id"], 600)
    assert entry["status"]["status_str"] == "success", entry["status"]
    videos = [p for p in server.output_files(entry) if p.suffix == ".mp4"]
    assert len(videos) == 1 and videos[0].exists()
    frames, seconds = imageio_ffmpeg.count_frames_and_secs(str(videos[0]))
    assert frames == 240 and seconds == pytest.approx(60.0)
    inspector = entry["outputs"]["7"]
    assert inspector["images"] and inspector["text"][0].startswith("80 chunks, 240 latent frames")


def test_interrupt_stops_within_one_chunk_and_the_next_prompt_runs(server):
    ws = listen(server)
    try:
        status, answer = server.queue(_toy_prompt(server, seconds=1800.0, seed=1))  # 2,400 chunks
        assert status == 200, answer
        pid, ticks_after, interrupted_at, end = answer["prompt_id"], 0, None, None
        for kind, data in messages(ws, pid, {"execution_interrupted", "execution_error", "execution_success"}):
            if kind == "progress" and data.get("node") == "3":
                if interrupted_at is None and data["value"] >= 2:
                    assert data["max"] == 2400
                    code, _ = server.post("/interrupt")
                    assert code == 200
                    interrupted_at = data["value"]
                elif interrupted_at is not None:
                    ticks_after += 1
            if kind in {"execution_interrupted", "execution_error", "execution_success"}:
                end = kind
        assert end == "execution_interrupted" and ticks_after <= 1
    finally:
        ws.close()
    status, answer = server.queue(_toy_prompt(server, seconds=5.0, seed=1))
    assert status == 200, answer
    assert server.wait(answer["prompt_id"], 300)["status"]["status_str"] == "success"


@pytest.mark.parametrize(("node", "inputs", "expected"), [
    ("2", {"sink_frames": 65}, "Value 65 bigger than max of 64"),
    ("2", {"threshold": 3.0}, "threshold must lie in [-1.0, 1.0], got 3.0"),
    ("3", {"seconds": 0.0}, "seconds must lie in [0.25, 3600.0], got 0.0"),
    ("3", {"steps": 0}, "Value 0 smaller than min of 1"),
    ("1", {"ckpt_name": "corrupt.safetensors"}, "corrupt.safetensors"),
    ("1", {"ckpt_name": "missing.safetensors"}, "no model file named 'missing.safetensors'"),
])
def test_bad_inputs_come_back_as_validation_errors(server, node, inputs, expected):
    prompt = _toy_prompt(server)
    prompt[node]["inputs"].update(inputs)
    status, answer = server.queue(prompt)
    assert status == 400 and node in answer["node_errors"], answer
    errors = answer["node_errors"][node]["errors"]
    assert len(errors) == 1, errors  # one error, on the input it concerns
    assert errors[0]["extra_info"]["input_name"] == next(iter(inputs))
    details = f"{errors[0]['message']} {errors[0]['details']}"
    assert expected in details and "Traceback" not in details
    assert server.alive()


def test_an_execution_time_input_mistake_is_a_message_without_traceback(server):
    prompt = _toy_prompt(server, seconds=5.0)
    prompt["20"] = {"class_type": "CF_PromptSwitch", "inputs": {"at_seconds": 3.0, "prompt": "a city panorama"}}
    prompt["21"] = {"class_type": "CF_PromptSwitch",
                    "inputs": {"at_seconds": 2.0, "prompt": "an ocean panorama", "schedule": ["20", 0]}}
    prompt["3"]["inputs"]["schedule"] = ["21", 0]
    ws = listen(server)
    try:
        status, answer = server.queue(prompt)
        assert status == 200, answer
        errors = [d for k, d in messages(ws, answer["prompt_id"], {"execution_interrupted", "execution_success"})
                  if k == "execution_error"]
    finally:
        ws.close()
    assert errors and all(e["exception_type"] == "ExecutionBlocked" and e["traceback"] == [] for e in errors)
    assert "Prompt Switch at 2.0 s must come after the previous switch at 3.0 s" in errors[0]["exception_message"]
    assert server.alive()


def test_every_shipped_workflow_is_accepted(server):
    for name in WORKFLOWS:
        prompt = to_api(json.loads((REPO / "workflows" / name).read_text()), server.object_info)
        if name == "wan_long_video.json":  # up to its model files, which cannot be downloaded here
            status, answer = server.queue(copy.deepcopy(prompt))
            assert status == 400, answer
            bad = {prompt[n]["class_type"]: " ".join(e["details"] for e in err["errors"])
                   for n, err in answer["node_errors"].items()}
            assert set(bad) == {"CF_LoadModel", "CLIPLoader", "VAELoader"}, bad
            assert WAN_CKPT in bad["CF_LoadModel"] and "umt5_xxl" in bad["CLIPLoader"] and "wan_2.1_vae" in bad["VAELoader"]
            continue
        status, answer = server.queue(prompt)
        assert status == 200 and not answer["node_errors"], (name, answer)
        assert server.wait(answer["prompt_id"], 600)["status"]["status_str"] == "success", name
