"""Start a real ComfyUI with this pack installed, and talk to it over HTTP (stdlib only).

The server gets its own base directory (models, custom_nodes, input, output, user, temp), so tests and the demo
never touch a user's ComfyUI; the pack is linked into ``<base>/custom_nodes/context_forcing``.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import time
import urllib.error
import urllib.parse
import urllib.request
import uuid
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
DEFAULT_HOME = Path(os.environ.get("COMFYUI_HOME") or Path.home() / ".cache" / "context-forcing" / "comfyui-0.3.75")
"""Where ComfyUI is provisioned: $COMFYUI_HOME, else a cache folder."""


def provision(home: Path = DEFAULT_HOME) -> Path:
    """Run tools/provision_comfyui.sh (a no-op when already done); returns the ComfyUI folder."""
    out = subprocess.run(["bash", str(REPO / "tools" / "provision_comfyui.sh"), str(home)], check=True,
                         stdout=subprocess.PIPE, text=True)
    return Path(out.stdout.strip().splitlines()[-1])


def free_port() -> int:
    """A free TCP port on 127.0.0.1."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class ComfyServer:
    """A ComfyUI process on 127.0.0.1 (``--cpu``) with a private base directory; use as a context manager."""

    def __init__(self, comfy_dir: Path, python: Path, base: Path, *, port: int | None = None,
                 extra_args: tuple[str, ...] = ()) -> None:
        self.comfy_dir, self.python, self.base = Path(comfy_dir), Path(python), Path(base)
        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.client_id = uuid.uuid4().hex
        self.extra_args = extra_args
        self.process: subprocess.Popen | None = None
        self.log_path = self.base / "comfyui.log"

    def __enter__(self) -> ComfyServer:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def start(self, timeout: float = 300.0) -> None:
        """Link the pack, start the server and wait until it answers ``/system_stats``."""
        nodes = self.base / "custom_nodes"
        nodes.mkdir(parents=True, exist_ok=True)
        link = nodes / "context_forcing"
        if link.is_symlink() or link.exists():
            link.unlink()
        link.symlink_to(REPO, target_is_directory=True)
        for sub in ("models/diffusion_models", "models/context_forcing", "output", "input", "temp", "user"):
            (self.base / sub).mkdir(parents=True, exist_ok=True)
        cmd = [str(self.python), "main.py", "--cpu", "--listen", "127.0.0.1", "--port", str(self.port),
               "--base-directory", str(self.base), "--disable-auto-launch",
               "--database-url", "sqlite:///:memory:", *self.extra_args]
        self.log = open(self.log_path, "w")  # noqa: SIM115 (closed in stop)
        env = {**os.environ, "PYTHONUNBUFFERED": "1"}
        self.process = subprocess.Popen(cmd, cwd=self.comfy_dir, stdout=self.log, stderr=subprocess.STDOUT, env=env)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"ComfyUI exited with {self.process.returncode}; log:\n{self.log_tail()}")
            try:
                self.get("/system_stats")
                return
            except (urllib.error.URLError, ConnectionError, TimeoutError):
                time.sleep(1.0)
        self.stop()
        raise TimeoutError(f"ComfyUI did not answer within {timeout:.0f} s; log:\n{self.log_tail()}")

    def stop(self) -> None:
        """Terminate the server (kill after 20 s)."""
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(20)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        if self.process is not None:
            self.log.close()
        self.process = None

    def alive(self) -> bool:
        """Whether the process runs and answers."""
        if self.process is None or self.process.poll() is not None:
            return False
        try:
            self.get("/system_stats")
            return True
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            return False

    def log_tail(self, chars: int = 6000) -> str:
        """The end of the server's log."""
        return self.log_path.read_text(errors="replace")[-chars:] if self.log_path.exists() else ""

    def get(self, path: str) -> Any:
        """GET a JSON endpoint."""
        with urllib.request.urlopen(self.url + path, timeout=30) as r:
            return json.loads(r.read())

    def post(self, path: str, body: Any = None) -> tuple[int, Any]:
        """POST JSON; returns (status, decoded body) also for 4xx answers."""
        data = json.dumps({} if body is None else body).encode()
        req = urllib.request.Request(self.url + path, data=data, headers={"Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(req, timeout=60) as r:
                raw = r.read()
                return r.status, json.loads(raw) if raw else None
        except urllib.error.HTTPError as err:
            raw = err.read()
            try:
                return err.code, json.loads(raw)
            except json.JSONDecodeError:
                return err.code, raw.decode(errors="replace")

    def queue(self, prompt: dict) -> tuple[int, Any]:
        """POST /prompt; returns (status, answer): 200 with prompt_id, or 400 with error and node_errors."""
        return self.post("/prompt", {"prompt": prompt, "client_id": self.client_id})

    def wait(self, prompt_id: str, timeout: float) -> dict:
        """Poll /history until the prompt finished (success, error or interrupted); returns its history entry."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            entry = self.get(f"/history/{prompt_id}").get(prompt_id)
            if entry and entry.get("status", {}).get("completed") is not None and (
                    entry["status"]["completed"] or entry["status"].get("status_str") == "error"):
                return entry
            time.sleep(0.5)
        raise TimeoutError(f"prompt {prompt_id} did not finish within {timeout:.0f} s; log:\n{self.log_tail()}")

    def output_files(self, entry: dict) -> list[Path]:
        """Files the prompt's output nodes saved (images, videos), as paths under the base directory."""
        paths = []
        for out in entry.get("outputs", {}).values():
            for item in [*out.get("images", []), *out.get("videos", []), *out.get("gifs", [])]:
                if isinstance(item, dict) and "filename" in item:
                    paths.append(self.base / item.get("type", "output") / item.get("subfolder", "") / item["filename"])
        return paths
