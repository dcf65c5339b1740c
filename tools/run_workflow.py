"""Run a shipped workflow headlessly in a real ComfyUI and print where its files are (the README's main job).

    python -m tools.run_workflow workflows/toy_long_video.json [--comfyui-home DIR] [--base DIR]

Provisions ComfyUI 0.3.75 on first use (tools/provision_comfyui.sh), or uses ``--comfyui DIR --python PY`` (an
existing ComfyUI and the Python that runs it). The server runs with ``--cpu`` on 127.0.0.1 and a private base
directory, and is stopped afterwards.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import time
from pathlib import Path

from context_forcing_core.toyworld.scenes import SceneSchedule
from context_forcing_core.toyworld.story import frames_from_video, revisit_lines, schedule_from_switches, visit_strip
from context_forcing_core.toyworld.visit_metrics import scene_report

from .comfy_server import DEFAULT_HOME, ComfyServer, provision
from .workflow_api import to_api

SAMPLER_PROMPT = 7
"""Widget position of the Long Rollout Sampler's prompt in UI-format workflows."""


def scene_schedule_of(workflow: dict, num_frames: int) -> SceneSchedule | None:
    """The toy scene schedule of ``num_frames`` a UI-format workflow asks for (its one Long Rollout Sampler's prompt
    and every Prompt Switch), or None when it has several samplers or a prompt that is not a toy scene prompt.
    """
    samplers = [n for n in workflow["nodes"] if n["type"] == "CF_LongRolloutSampler"]
    if len(samplers) != 1:
        return None
    switches = sorted((float(n["widgets_values"][0]), str(n["widgets_values"][1]))
                      for n in workflow["nodes"] if n["type"] == "CF_PromptSwitch")
    try:
        return schedule_from_switches(str(samplers[0]["widgets_values"][SAMPLER_PROMPT]), switches, num_frames)
    except ValueError:
        return None


def revisit_report(workflow: dict, video: Path, strip: Path | None = None) -> list[str]:
    """The revisit errors of a toy scene workflow's video (an mp4 of 32 x 32 frames enlarged), else nothing; with
    ``strip``, also write the last frame of every visit there (PNG).
    """
    if video.suffix != ".mp4" or scene_schedule_of(workflow, 1_000_000) is None:
        return []
    frames = frames_from_video(video)
    schedule = scene_schedule_of(workflow, len(frames))
    if schedule is None:
        return []
    lines = revisit_lines(scene_report(frames, schedule))
    if strip is not None:
        strip.parent.mkdir(parents=True, exist_ok=True)
        visit_strip(frames, schedule).save(strip)
        lines.append(f"wrote {strip}")
    return lines


def main(argv: list[str] | None = None) -> int:
    """Provision or find ComfyUI, run the workflow, print its output files; 0 on success."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("workflow", type=Path)
    parser.add_argument("--comfyui-home", type=Path, default=DEFAULT_HOME, help="where to provision ComfyUI")
    parser.add_argument("--comfyui", type=Path, default=None, help="an existing ComfyUI folder (skips provisioning)")
    parser.add_argument("--python", type=Path, default=None, help="the Python of --comfyui (default: its venv)")
    parser.add_argument("--base", type=Path, default=None, help="server base directory (default <home>/demo)")
    parser.add_argument("--timeout", type=float, default=3600.0)
    parser.add_argument("--images", type=Path, default=None,
                        help="copy the images the workflow shows (e.g. the Surprisal Inspector's plot) into this folder")
    parser.add_argument("--strip", type=Path, default=None,
                        help="toy scene workflows: write the last frame of every visit to this PNG")
    args = parser.parse_args(argv)

    if args.comfyui is None:
        comfy_dir, python = provision(args.comfyui_home), args.comfyui_home / "venv" / "bin" / "python"
    else:
        comfy_dir = args.comfyui
        python = args.python or next((p for p in (comfy_dir / "venv/bin/python", comfy_dir / ".venv/bin/python")
                                      if p.exists()), Path(sys.executable))
    base = args.base or args.comfyui_home / "demo"
    workflow = json.loads(args.workflow.read_text())
    start = time.perf_counter()
    with ComfyServer(comfy_dir, python, base) as server:
        print(f"ComfyUI {server.get('/system_stats')['system']['comfyui_version']} up at {server.url} "
              f"({time.perf_counter() - start:.0f} s); running {args.workflow.name}", flush=True)
        status, answer = server.queue(to_api(workflow, server.get("/object_info")))
        if status != 200:
            print(f"the server refused the workflow: {json.dumps(answer, indent=1)}", file=sys.stderr)
            return 1
        run_start = time.perf_counter()
        entry = server.wait(answer["prompt_id"], args.timeout)
        run_s = time.perf_counter() - run_start
        if entry["status"].get("status_str") != "success":
            print(f"the workflow failed: {json.dumps(entry['status'], indent=1)[-3000:]}", file=sys.stderr)
            return 1
        files = server.output_files(entry)
        if args.images is not None:  # previews live in the server's temp folder, emptied when it restarts
            args.images.mkdir(parents=True, exist_ok=True)
            for path in files:
                if path.suffix == ".png" and path.is_file():
                    shutil.copyfile(path, args.images / path.name)
                    print(f"copied {path.name} to {args.images}")
    print(f"workflow ran in {run_s:.0f} s ({time.perf_counter() - start:.0f} s with server start-up and shutdown)")
    for path in files:
        if path.suffix in {".mp4", ".webm", ".gif", ".webp"} or "output" in path.parts:
            print(f"wrote {path}")
            for line in revisit_report(workflow, path, args.strip):
                print(f"  {line}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
