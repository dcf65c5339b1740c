"""Helpers of the real-server tests: the server's websocket messages, as the editor receives them."""

from __future__ import annotations

import json
import time

import websocket

from tools.comfy_server import ComfyServer

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
