"""Helpers of the real-server tests: the server fixture, a small valid graph, and the server's answers and websocket
messages as the editor receives them."""

from __future__ import annotations

import json
import time

import pytest
import websocket

from tools.comfy_server import ComfyServer, provision

BUNDLED = "toy-student (bundled)"
RUN_SECONDS = 60.0
"""Longest an accepted hostile prompt may run (1 s of toy video, 1 step)."""

TEST_NODES = '''
"""Test-only nodes of the real-server tests (never shipped): what a test cannot download."""
import torch


class RandomConditioning:
    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"seed": ("INT", {"default": 0, "min": 0, "max": 2**31}),
                             "tokens": ("INT", {"default": 8, "min": 1, "max": 512}),
                             "dim": ("INT", {"default": 4096, "min": 1, "max": 4096})}}

    RETURN_TYPES = ("CONDITIONING",)
    FUNCTION = "make"
    CATEGORY = "testing"

    def make(self, seed, tokens, dim):
        # umT5 states of a prompt, as CLIP Text Encode would give them: (1, tokens, dim)
        return ([[torch.randn(1, tokens, dim, generator=torch.Generator().manual_seed(seed)), {}]],)


NODE_CLASS_MAPPINGS = {"CFTest_RandomConditioning": RandomConditioning}
'''
"""A CONDITIONING without the 11-GB umT5: the test pack installed beside ours in the server's custom_nodes."""


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    comfy_dir = provision()
    base = tmp_path_factory.mktemp("comfy-base")
    (base / "custom_nodes" / "cf_test_nodes").mkdir(parents=True)
    (base / "custom_nodes" / "cf_test_nodes" / "__init__.py").write_text(TEST_NODES)
    (base / "models" / "context_forcing").mkdir(parents=True)
    (base / "models" / "context_forcing" / "corrupt.safetensors").write_bytes(b"\x08\x00\x00\x00\x00\x00\x00\x00{bad}")
    with ComfyServer(comfy_dir, comfy_dir.parent.parent / "venv" / "bin" / "python", base) as srv:
        srv.object_info = srv.get("/object_info")
        yield srv


def base_prompt() -> dict:
    """A small valid graph using every pack node: 1 s of toy video, one step per chunk."""
    return {
        "1": {"class_type": "CF_LoadModel", "inputs": {"ckpt_name": BUNDLED, "dtype": "default"}},
        "2": {"class_type": "CF_MemoryConfig", "inputs": {
            "preset": "context_forcing", "sink_frames": -1, "slow_frames": -1, "fast_frames": -1, "threshold": -1.0,
            "consolidate_every": -1, "positions": "preset", "similarity_reference": "preset"}},
        "8": {"class_type": "CF_PromptSwitch", "inputs": {"at_seconds": 0.5, "prompt": "a forest scene, vertical bands"}},
        "3": {"class_type": "CF_LongRolloutSampler", "inputs": {
            "model": ["1", 0], "memory": ["2", 0], "schedule": ["8", 0], "seconds": 1.0, "seed": 0, "steps": 1,
            "shift": 5.0, "width": 832, "height": 480, "prompt": "a desert scene, shapes over bands"}},
        "4": {"class_type": "CF_ToyDecode", "inputs": {"latent": ["3", 0], "scale": 1}},
        "5": {"class_type": "PreviewImage", "inputs": {"images": ["4", 0]}},
        "7": {"class_type": "CF_SurprisalInspector", "inputs": {"memory_trace": ["3", 1], "layer": 0}},
    }


def shows_traceback(obj: object) -> bool:
    """Whether an answer or history entry would show the user a traceback."""
    if isinstance(obj, dict):
        if obj.get("traceback"):
            return True
        return any(shows_traceback(v) for v in obj.values())
    if isinstance(obj, list):
        return any(shows_traceback(v) for v in obj)
    return isinstance(obj, str) and ("Traceback (most recent call last)" in obj or 'File "/' in obj)


def errors_of(answer: dict) -> dict[str, list[tuple[str, str]]]:
    """node id -> [(input name, message + details)] of a 400 answer."""
    return {node: [(e.get("extra_info", {}).get("input_name"), f"{e['message']} {e['details']}") for e in err["errors"]]
            for node, err in answer.get("node_errors", {}).items()}

ENDS = {"execution_interrupted", "execution_success"}
"""Message types that end a prompt (a failed prompt ends with ``executing`` of node None)."""


def listen(server: ComfyServer) -> websocket.WebSocket:
    """A websocket on the server as the editor opens it (messages of this client's prompts)."""
    return websocket.create_connection(f"ws://127.0.0.1:{server.port}/ws?clientId={server.client_id}", timeout=120)


def messages(ws: websocket.WebSocket, prompt_id: str, until: set[str], timeout: float = 600):
    """Yield (type, data) of JSON websocket messages of one prompt until a message type in ``until``."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        raw = ws.recv()
        if not isinstance(raw, str):
            continue  # binary preview frames
        msg = json.loads(raw)
        data = msg.get("data", {})
        if data.get("prompt_id") not in (None, prompt_id):
            continue
        yield msg["type"], data
        if msg["type"] in until or (msg["type"] == "executing" and data.get("node") is None and "prompt_id" in data):
            return
    raise TimeoutError("no end message from the server")


def run_and_collect(server: ComfyServer, prompt: dict, timeout: float = 600) -> tuple[int, object, list[tuple[str, dict]]]:
    """Queue a prompt and collect its websocket messages until it ends: (status, answer, [(type, data)]).

    A node that refuses at run time (``block_execution``) shows up only here, as an ``execution_error`` of type
    ExecutionBlocked: ComfyUI's history records the prompt as a success.
    """
    ws = listen(server)
    try:
        status, answer = server.queue(prompt)
        if status != 200:
            return status, answer, []
        return status, answer, list(messages(ws, answer["prompt_id"], ENDS, timeout))
    finally:
        ws.close()
