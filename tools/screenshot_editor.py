"""Open a shipped workflow in the real ComfyUI editor (headless Chromium), optionally run it, and save a screenshot.

    python -m tools.screenshot_editor workflows/toy_long_video.json --run-seconds 30 --out docs/comfyui_toy_workflow.png

Needs Chromium and the provisioned ComfyUI. ``--chromium`` names the binary (default: ``$CHROMIUM``, else
``chromium`` on PATH, the Debian package). Without a Debian package, the npm package ``@sparticuz/chromium`` carries a
compressed headless Chromium inside its tarball (no download); unpack it outside the repository:

    mkdir -p /tmp/chromium-npm && cd /tmp/chromium-npm && npm install @sparticuz/chromium@143.0.4
    node -e "require('@sparticuz/chromium').default.executablePath().then(console.log)"   # -> /tmp/chromium
    python -m tools.screenshot_editor workflows/toy_long_video.json --run-seconds 60 --chromium /tmp/chromium

Drives the page over the Chrome DevTools protocol:
load the workflow with the frontend's own ``app.loadGraphData``, close the first-run template dialog, queue it
like the Run button does, wait until the queue is empty, fit the whole graph into the window, capture. This is how
the README's picture was made.
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import subprocess
import time
import urllib.request
from pathlib import Path

import websocket

from .comfy_server import DEFAULT_HOME, ComfyServer, free_port, provision

APP = "(window.app || window.comfyAPI.app.app)"


class Page:
    """One Chromium tab over the DevTools websocket."""

    def __init__(self, port: int) -> None:
        for _ in range(60):
            try:
                tabs = json.loads(urllib.request.urlopen(f"http://127.0.0.1:{port}/json", timeout=5).read())
                break
            except OSError:
                time.sleep(0.5)
        tab = next(t for t in tabs if t["type"] == "page")
        self.ws = websocket.create_connection(tab["webSocketDebuggerUrl"], timeout=120)
        self.next_id = 0

    def call(self, method: str, **params: object) -> dict:
        """Send one DevTools command and return its answer."""
        self.next_id += 1
        self.ws.send(json.dumps({"id": self.next_id, "method": method, "params": params}))
        while True:
            msg = json.loads(self.ws.recv())
            if msg.get("id") == self.next_id:
                return msg

    def js(self, expression: str) -> object:
        """Evaluate (and await) JavaScript in the page; returns its value."""
        answer = self.call("Runtime.evaluate", expression=expression, awaitPromise=True, returnByValue=True)
        return answer.get("result", {}).get("result", {}).get("value")


def main(argv: list[str] | None = None) -> None:
    """Start ComfyUI and Chromium, load (and run) the workflow, write the screenshot."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("workflow", type=Path)
    parser.add_argument("--out", type=Path, default=Path("outputs/editor.png"))
    parser.add_argument("--run-seconds", type=float, default=0.0, help="queue the workflow; wait at most this long")
    parser.add_argument("--size", default="1800,1000")
    parser.add_argument("--chromium", default=os.environ.get("CHROMIUM", "chromium"), help="Chromium binary")
    args = parser.parse_args(argv)
    comfy_dir = provision()
    workflow = args.workflow.read_text()
    with ComfyServer(comfy_dir, DEFAULT_HOME / "venv" / "bin" / "python", DEFAULT_HOME / "editor") as server:
        port = free_port()
        chrome = subprocess.Popen([args.chromium, "--headless=new", "--no-sandbox", "--disable-gpu",
                                   f"--remote-debugging-port={port}", f"--remote-allow-origins=http://127.0.0.1:{port}",
                                   f"--window-size={args.size}", "about:blank"],
                                  stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            server.post("/settings/Comfy.TutorialCompleted", True)  # no first-run template browser over the graph
            server.post("/settings/Comfy.Minimap.Visible", False)  # nor a minimap or canvas statistics over its corners
            server.post("/settings/Comfy.Graph.CanvasInfo", False)
            page = Page(port)
            page.call("Page.enable")
            page.call("Page.navigate", url=server.url)
            types = json.dumps(sorted({n["type"] for n in json.loads(workflow)["nodes"]}))
            for _ in range(120):  # until the frontend's app exists and knows every node type (else none is queued)
                if page.js(f"!!(window.app?.graph || window.comfyAPI?.app?.app?.graph) && "
                           f"{types}.every(t => window.LiteGraph?.registered_node_types?.[t])"):
                    break
                time.sleep(0.5)
            nodes = page.js(f"(async () => {{ await {APP}.loadGraphData({workflow}); "
                            f"return Object.keys({APP}.graph._nodes_by_id).length; }})()")
            print(f"loaded {args.workflow.name}: {nodes} nodes")
            if args.run_seconds > 0:
                page.js(f"(async () => {{ await {APP}.queuePrompt(0); return 1; }})()")
                deadline = time.monotonic() + args.run_seconds
                time.sleep(2)
                while time.monotonic() < deadline:
                    queue = server.get("/queue")
                    if not queue["queue_running"] and not queue["queue_pending"]:
                        break
                    time.sleep(1)
            time.sleep(3)
            for kind in ("keyDown", "keyUp"):  # close the first-run template dialog
                page.call("Input.dispatchKeyEvent", type=kind, key="Escape", code="Escape", windowsVirtualKeyCode=27)
            for _ in range(3):  # the close button's class differs between frontend versions
                page.js("document.querySelectorAll('.p-dialog-close-button, .p-dialog-header-close, "
                        "[aria-label=\\'Close\\']').forEach(b => b.click())")
                time.sleep(1)
            page.js("[...document.querySelectorAll('div')].filter(d => d.querySelector('button') && "  # the release banner
                    "d.textContent.trim().startsWith('Introducing Nodes')).slice(-1).forEach(d => { "
                    "while (d.parentElement && d.parentElement.getBoundingClientRect().height < 80) d = d.parentElement; "
                    "d.remove(); })")
            # last, as the workflow's own stored view is applied after loading: fit every node (with its output
            # previews), centred in the canvas right of the side bar and below the tabs
            page.js(f"(() => {{ const c = {APP}.canvas, r = c.canvas.getBoundingClientRect(), b = [1e9, 1e9, -1e9, -1e9]; "
                    f"for (const n of {APP}.graph._nodes) {{ const [x, y, w, h] = n.boundingRect; "
                    "b[0] = Math.min(b[0], x); b[1] = Math.min(b[1], y); b[2] = Math.max(b[2], x + w); "
                    "b[3] = Math.max(b[3], y + h); } "
                    "const left = 90, top = 60, pad = 30, w = r.width - left - pad, h = r.height - top - pad, "
                    "s = Math.min(w / (b[2] - b[0]), h / (b[3] - b[1])); c.ds.scale = s; "
                    "c.ds.offset = [(left + w / 2) / s - (b[0] + b[2]) / 2, (top + h / 2) / s - (b[1] + b[3]) / 2]; "
                    "c.setDirty(true, true); })()")
            page.js("document.querySelector('.subgraph-breadcrumb')?.remove()")  # the workflow's name over the canvas
            time.sleep(1)
            shot = page.call("Page.captureScreenshot", format="png")["result"]["data"]
            args.out.parent.mkdir(parents=True, exist_ok=True)
            args.out.write_bytes(base64.b64decode(shot))
            print(f"wrote {args.out}")
        finally:
            chrome.kill()


if __name__ == "__main__":
    main()
