"""The pack in a real ComfyUI 0.3.75 (--cpu, 127.0.0.1), driven over HTTP and its websocket like the editor does.

The second half sends hostile requests: every request must be answered within a few seconds, refused
with a message (never a traceback, never a server path) or run cleanly, and the server must stay up. The crafted
model files are written by the tests into the server's private model folder, never committed. The fuzz test prints
its figures (``-s`` shows them) and writes them to ``$CF_FUZZ_REPORT`` when set.
"""

from __future__ import annotations

import copy
import json
import os
import struct
import threading
import time
import urllib.request
from pathlib import Path

import imageio_ffmpeg
import pytest
import torch
from real_server import (
    ENDS,
    RUN_SECONDS,
    base_prompt,
    errors_of,
    listen,
    messages,
    run_and_collect,
    server,
    shows_traceback,
)
from safetensors import safe_open
from safetensors.torch import load_file, save_file

from context_forcing_core.models.config import WanConfig
from context_forcing_core.models.loading import save_model
from context_forcing_core.models.wan import WanModel
from context_forcing_core.student import BUNDLED_TOY_STUDENT
from tools.comfy_server import ComfyServer
from tools.make_workflows import LONGLIVE_CKPT, LONGLIVE_LORA, WAN_CKPT, WORKFLOWS, render
from tools.workflow_api import to_api

REPO = Path(__file__).resolve().parents[2]
assert server  # the module's real ComfyUI (fixture)
EXPECTED_INPUTS = {
    "CF_LoadModel": ["ckpt_name", "dtype", "model", "lora_name", "lora_strength"],
    "CF_MemoryConfig": ["preset", "sink_frames", "slow_frames", "fast_frames", "threshold", "consolidate_every",
                        "positions", "similarity_reference"],
    "CF_PromptSwitch": ["at_seconds", "prompt", "conditioning", "schedule"],
    "CF_LongRolloutSampler": ["model", "seconds", "seed", "steps", "shift", "width", "height", "prompt", "memory",
                              "conditioning", "schedule", "compile_attention"],
    "CF_SurprisalInspector": ["memory_trace", "layer"],
    "CF_ToyDecode": ["latent", "scale"],
    "CF_StreamingDecode": ["samples", "vae", "filename_prefix", "format", "fps"],
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
    prompt["20"] = {"class_type": "CF_PromptSwitch", "inputs": {"at_seconds": 3.0, "prompt": "a city scene"}}
    prompt["21"] = {"class_type": "CF_PromptSwitch",
                    "inputs": {"at_seconds": 2.0, "prompt": "an ocean scene", "schedule": ["20", 0]}}
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


WAN_FILES = {"wan_long_video.json": [WAN_CKPT], "longlive_lora_video.json": [LONGLIVE_CKPT, LONGLIVE_LORA]}
"""Workflows that need downloaded model files: the files their loader names."""


def test_every_shipped_workflow_is_accepted(server):
    for name in WORKFLOWS:
        prompt = to_api(json.loads((REPO / "workflows" / name).read_text()), server.object_info)
        if name in WAN_FILES:  # up to its model files, which cannot be downloaded here
            status, answer = server.queue(copy.deepcopy(prompt))
            assert status == 400, answer
            bad = {prompt[n]["class_type"]: " ".join(e["details"] for e in err["errors"])
                   for n, err in answer["node_errors"].items()}
            assert set(bad) == {"CF_LoadModel", "CLIPLoader", "VAELoader"}, bad
            assert all(f in bad["CF_LoadModel"] for f in WAN_FILES[name]), bad
            assert "umt5_xxl" in bad["CLIPLoader"] and "wan_2.1_vae" in bad["VAELoader"]
            continue
        status, answer = server.queue(prompt)
        assert status == 200 and not answer["node_errors"], (name, answer)
        assert server.wait(answer["prompt_id"], 600)["status"]["status_str"] == "success", name


# Hostile requests

ANSWER_SECONDS = 5.0
"""Longest a /prompt answer may take."""
FUZZ_SECONDS = 150.0
"""Time limit of the whole fuzz test."""
WAN_TINY = WanConfig(dim=32, ffn_dim=64, freq_dim=16, num_layers=2, num_heads=2, in_channels=16, out_channels=16,
                     text_dim=24, text_len=8)


def raw_safetensors(path: Path, header: dict, data: bytes = b"", length: int | None = None) -> str:
    """A crafted safetensors file (header written by hand); returns its file name."""
    text = json.dumps(header).encode()
    path.write_bytes(struct.pack("<Q", len(text) if length is None else length) + text + data)
    return path.name


def many_blocks(path: Path, blocks: int = 20_000) -> str:
    """The file that froze the server for 73 s: ``blocks`` tiny transformer blocks (~12 MB of header)."""
    header = {f"blocks.{i}.{name}.weight": {"dtype": "F32", "shape": [1], "data_offsets": [0, 4]}
              for i in range(blocks) for name in ("norm3", "ffn.0", "ffn.2")}
    return raw_safetensors(path, header, b"\0" * 4)


class Payload:
    """Unpickling this would call os.getpid (harmless): torch.load(weights_only=True) must refuse it."""

    def __reduce__(self) -> tuple:
        return os.getpid, ()


def crafted_files(folder: Path) -> dict[str, str]:
    """Write the hostile model files; returns {what: file name}."""
    folder.mkdir(parents=True, exist_ok=True)
    toy = BUNDLED_TOY_STUDENT.read_bytes()
    (folder / "truncated.safetensors").write_bytes(toy[: len(toy) // 3])
    (folder / "empty.safetensors").write_bytes(b"")
    (folder / "notes.txt").write_text("not a model")
    (folder / "модель 🎬 ok.safetensors").write_bytes(toy)
    torch.save({"generator": Payload()}, folder / "payload.pt")
    weights = load_file(BUNDLED_TOY_STUDENT)
    weights["head.head.bias"] = torch.full_like(weights["head.head.bias"], float("nan"))
    with safe_open(BUNDLED_TOY_STUDENT, "pt") as source:  # a loadable toy student whose output is NaN
        save_file(weights, folder / "nan_weights.safetensors", metadata=source.metadata())
    return {
        "blocks": many_blocks(folder / "blocks.safetensors"),
        "header_bomb": raw_safetensors(folder / "bomb.safetensors", {}, length=2**62),
        "huge_dims": raw_safetensors(folder / "dims.safetensors",
                                     {"a": {"dtype": "F32", "shape": [2**40, 2**40], "data_offsets": [0, 4]}}, b"\0" * 4),
        "truncated": "truncated.safetensors", "empty": "empty.safetensors", "payload": "payload.pt",
        "unicode_ok": "модель 🎬 ok.safetensors", "nan_weights": "nan_weights.safetensors",
    }


def post_timed(server: ComfyServer, prompt: dict) -> tuple[int, object, float]:
    start = time.perf_counter()
    status, answer = server.queue(prompt)
    return status, answer, time.perf_counter() - start


def hostile_cases(files: dict[str, str]) -> list[tuple[str, str, object]]:
    """(node id, input, hostile value) for every widget input of every pack node."""
    ints = [-2, 10**9, 2**63, -(2**63) - 1, 2**64, 1e308, float("nan"), float("inf"), "abc", "", None, True, [], {},
            "9" * 5000, "١٢"]
    floats = [float("nan"), float("inf"), -float("inf"), -1e308, 1e308, "nan", "-inf", "abc", "", None, [1], {}]
    strings = ["", "x" * 1_000_000, "🎬\u202e\u0000" * 1000, None, 12345, {"__value__": "wrapped"}]
    combos = ["int8", "", "../../../etc/passwd", "x" * 10_000, "🎬", None, 5, {"__value__": "nope"}]
    ckpts = [*files.values(), "notes.txt", "missing.safetensors", "../../../../etc/passwd", "/etc/passwd",
             "x" * 10_000, "", None, 5]
    cases: list[tuple[str, str, object]] = []
    widgets = {"1": {"ckpt_name": ckpts, "dtype": combos},
               "2": {"preset": combos, "positions": combos, "similarity_reference": combos, "threshold": floats,
                     **{k: ints for k in ("sink_frames", "slow_frames", "fast_frames", "consolidate_every")}},
               "8": {"at_seconds": floats, "prompt": strings},
               "3": {"seconds": floats, "shift": floats, "prompt": strings,
                     **{k: ints for k in ("seed", "steps", "width", "height")}},
               "4": {"scale": ints}, "7": {"layer": ints}}
    for node, inputs in widgets.items():
        for name, values in inputs.items():
            cases += [(node, name, v) for v in values]
    cases += [("2", "sink_frames", 0), ("2", "slow_frames", 0), ("2", "fast_frames", 2), ("2", "consolidate_every", 0),
              ("3", "width", 100), ("3", "height", 4096), ("3", "seconds", 3600.25)]
    links = {"3": ("model", "memory", "schedule", "conditioning"), "8": ("schedule", "conditioning"),
             "4": ("latent",), "7": ("memory_trace",), "1": ("model",)}
    # Wrong socket types, self-links, negative slots and constants in place of links. Not a link to a missing output
    # slot (["1", 7]): ComfyUI 0.3.75 itself answers that with an IndexError traceback for any node, before any pack
    # code runs.
    for node, names in links.items():
        for name in names:
            cases += [(node, name, value) for value in (["4", 0], [node, 0], ["2", -1], "not a link")]
    return cases


def test_fuzz_every_input_of_every_node(server: ComfyServer):
    """Bounded fuzz: a fixed list of hostile requests, each answered quickly and refused or run cleanly (a refusal at
    run time is an ExecutionBlocked message without traceback); the server stays up and a valid run succeeds."""
    files = crafted_files(server.base / "models" / "context_forcing")
    offered = server.get("/object_info/CF_LoadModel")["CF_LoadModel"]["input"]["required"]["ckpt_name"][0]
    assert files["blocks"] in offered and "payload.pt" in offered and "notes.txt" not in offered
    cases = hostile_cases(files)
    start, deaths, tracebacks, leaks, max_answer, at_run_time = time.monotonic(), 0, [], [], 0.0, []
    outcomes = {"refused at validation": 0, "refused at run time": 0, "ran": 0}
    ws = listen(server)
    try:
        for node, name, value in cases:
            assert time.monotonic() - start < FUZZ_SECONDS, f"fuzz over its time limit after {sum(outcomes.values())}"
            prompt = base_prompt()
            prompt[node]["inputs"][name] = value
            status, answer, seconds = post_timed(server, prompt)
            max_answer = max(max_answer, seconds)
            label = f"{node}.{name}={str(value)[:40]!r}"
            assert seconds < ANSWER_SECONDS, f"{label}: answered in {seconds:.1f} s"
            shown = [answer]
            if status == 200:
                run = list(messages(ws, answer["prompt_id"], ENDS, RUN_SECONDS))
                shown += [data for _, data in run]
                errors = [data for kind, data in run if kind == "execution_error"]
                blocked = errors and all(e["exception_type"] == "ExecutionBlocked" for e in errors)
                blocked = blocked or any(  # the inspector, an output node, shows its refusal as its text
                    kind == "executed" and any(str(t).startswith("Surprisal Inspector:")
                                               for t in (data.get("output") or {}).get("text") or ())
                    for kind, data in run)
                # ComfyUI queues a prompt when one output is valid, dropping the outputs that failed validation
                refused_here = bool(answer.get("node_errors"))
                outcomes["refused at validation" if refused_here else "refused at run time" if blocked else "ran"] += 1
                if blocked and not refused_here:
                    at_run_time.append(label)
                if errors and not blocked:
                    tracebacks.append((label, errors[0].get("exception_message")))
            else:
                assert status == 400, (label, status, answer)
                outcomes["refused at validation"] += 1
            if any(shows_traceback(x) for x in shown):
                tracebacks.append(label)
            if any(str(server.base) in json.dumps(x) for x in shown):
                leaks.append(label)
            if server.process.poll() is not None:
                deaths += 1
                break
    finally:
        ws.close()
    status, _, run = run_and_collect(server, base_prompt(), RUN_SECONDS)
    valid_after = status == 200 and run[-1][0] == "execution_success"
    figures = {"hostile_requests": sum(outcomes.values()), **outcomes, "server_deaths": deaths,
               "tracebacks_shown": len(tracebacks), "server_paths_shown": len(leaks),
               "max_answer_seconds": round(max_answer, 3), "fuzz_seconds": round(time.monotonic() - start, 1),
               "valid_run_after": valid_after, "refused_at_run_time": at_run_time}
    print("fuzz figures:", json.dumps(figures))
    if report := os.environ.get("CF_FUZZ_REPORT"):
        Path(report).write_text(json.dumps(figures, indent=2))
    assert deaths == 0 and server.alive()
    assert not tracebacks, tracebacks
    assert not leaks, leaks
    assert sum(outcomes.values()) == len(cases) and outcomes["refused at validation"] > outcomes["ran"] > 0
    assert outcomes["refused at run time"] > 0
    assert valid_after


def test_huge_memory_and_sizes_are_refused_at_validation_once_on_their_input(server: ComfyServer):
    prompt = base_prompt()
    prompt["2"]["inputs"].update(sink_frames=1_000_000, slow_frames=10**9)
    prompt["3"]["inputs"]["width"] = 999_999_984
    prompt["1"]["inputs"]["dtype"] = "int8"
    prompt["2"]["inputs"]["threshold"] = float("nan")
    status, answer, seconds = post_timed(server, prompt)
    assert status == 400 and seconds < ANSWER_SECONDS, answer
    errors = errors_of(answer)
    assert sorted(errors["2"]) == sorted([
        ("sink_frames", "Value 1000000 bigger than max of 64 sink_frames"),
        ("slow_frames", "Value 1000000000 bigger than max of 256 slow_frames"),
        ("threshold", "Custom validation failed for node threshold - Memory Config: threshold must lie in "
                      "[-1.0, 1.0], got nan")])
    assert errors["3"] == [("width", "Value 999999984 bigger than max of 4096 width")]
    assert len(errors["1"]) == 1 and errors["1"][0][0] == "dtype" and "'int8' not in" in errors["1"][0][1]
    assert not shows_traceback(answer) and server.alive()


def test_nan_and_infinities_are_refused(server: ComfyServer):
    for node, name, value in [("3", "seconds", float("nan")), ("8", "at_seconds", float("inf")),
                              ("2", "threshold", "nan"), ("3", "shift", float("inf")), ("3", "shift", float("nan"))]:
        prompt = base_prompt()
        prompt[node]["inputs"][name] = value
        status, answer = server.queue(prompt)
        assert status == 400 and errors_of(answer)[node] == [(name, errors_of(answer)[node][0][1])], answer
        assert "nan" in errors_of(answer)[node][0][1] or "inf" in errors_of(answer)[node][0][1]


@pytest.mark.parametrize(("node", "name", "value", "expected"), [
    ("3", "shift", float("nan"), "nan is refused: shift must be a finite number"),
    ("3", "width", 500, "500 is refused: width must be a multiple of 16"),
    ("3", "height", "72", "'72' is refused: height must be a multiple of 16"),
    ("2", "fast_frames", 2, "2 is refused: fast_frames counts the chunk being generated and must be at least the "
                            "chunk size 3, or -1 for the preset's"),
    ("2", "consolidate_every", 0, "0 is refused: consolidate_every must be at least 1, or -1 for the preset's"),
])
def test_what_a_range_cannot_express_is_refused_once_on_its_input(server: ComfyServer, node, name, value, expected):
    prompt = base_prompt()
    prompt[node]["inputs"][name] = value
    status, answer = server.queue(prompt)
    assert status == 400, answer
    assert set(errors_of(answer)) == {node} and [n for n, _ in errors_of(answer)[node]] == [name], answer
    assert expected in errors_of(answer)[node][0][1] and not shows_traceback(answer)


def test_a_rollout_over_the_memory_budget_is_refused_at_validation(server: ComfyServer):
    folder = server.base / "models" / "context_forcing"
    torch.manual_seed(0)
    save_model(WanModel(WAN_TINY), folder / "wan_tiny.safetensors")  # Wan latents: 16 channels, size follows width
    prompt = base_prompt()
    prompt["1"]["inputs"]["ckpt_name"] = "wan_tiny.safetensors"
    prompt["3"]["inputs"].update(seconds=3600.0, width=4096, height=4096)  # an hour at 4K: ~240 GB of latents
    status, answer, seconds = post_timed(server, prompt)
    assert status == 400 and seconds < ANSWER_SECONDS, answer
    [(name, message)] = errors_of(answer)["3"]  # one error, on seconds (the length is what to lower first)
    assert name == "seconds" and "Long Rollout Sampler: this rollout needs 2" in message
    assert "(K/V cache" in message and "GB available; lower seconds, width / height" in message
    assert not shows_traceback(answer) and server.alive()
    prompt["3"]["inputs"].update(seconds=1.0, width=64, height=32)  # the same graph within budget is accepted
    del prompt["3"]["inputs"]["schedule"], prompt["8"], prompt["4"], prompt["5"]  # (Wan latents: no toy decode)
    status, answer, run = run_and_collect(server, prompt, RUN_SECONDS)
    assert status == 200, answer  # it then stops at the missing CONDITIONING, a message without traceback
    errors = [data for kind, data in run if kind == "execution_error"]
    assert errors and all(e["exception_type"] == "ExecutionBlocked" for e in errors) and not shows_traceback(run)
    assert "connect a CONDITIONING" in errors[0]["exception_message"]


def test_the_20000_block_file_is_refused_in_under_a_second_while_the_server_answers(server: ComfyServer):
    folder = server.base / "models" / "context_forcing"
    name = many_blocks(folder / "blocks_fresh.safetensors")  # a new file: not in the inspection cache
    prompt = base_prompt()
    prompt["1"]["inputs"]["ckpt_name"] = name
    result: dict[str, object] = {}

    def post() -> None:
        result["status"], result["answer"], result["seconds"] = post_timed(server, prompt)

    thread = threading.Thread(target=post)
    thread.start()
    stats = []
    while thread.is_alive():
        t = time.perf_counter()
        server.get("/system_stats")
        stats.append(time.perf_counter() - t)
    thread.join()
    print(f"20,000-block file refused in {result['seconds']:.3f} s; /system_stats answered {len(stats)} times "
          f"meanwhile, longest {max(stats, default=0):.3f} s")
    assert result["status"] == 400 and result["seconds"] < 1.0, result
    assert stats and max(stats) < 1.0
    assert errors_of(result["answer"])["1"] == [("ckpt_name", errors_of(result["answer"])["1"][0][1])]
    assert "60000 tensors; a Wan2.1 checkpoint has at most 10000" in errors_of(result["answer"])["1"][0][1]
    assert str(server.base) not in json.dumps(result["answer"])
