"""The real ComfyUI 0.3.75 server with the pack, started once for every real-server test file."""

from __future__ import annotations

import pytest

from tools.comfy_server import ComfyServer, provision


@pytest.fixture(scope="session")
def server(tmp_path_factory):
    comfy_dir = provision()
    base = tmp_path_factory.mktemp("comfy-base")
    (base / "models" / "context_forcing").mkdir(parents=True)
    (base / "models" / "context_forcing" / "corrupt.safetensors").write_bytes(b"\x08\x00\x00\x00\x00\x00\x00\x00{bad}")
    with ComfyServer(comfy_dir, comfy_dir.parent.parent / "venv" / "bin" / "python", base) as srv:
        srv.object_info = srv.get("/object_info")
        yield srv
