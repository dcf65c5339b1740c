"""The toy demo's 60-s story (scenes that come back after long gaps), prompt switches as scene schedules, and the
revisit errors of a finished video file.

``make demo`` runs the story as a ComfyUI workflow (one sampler prompt, a chain of Prompt Switch nodes) and then
scores the video it wrote: :func:`schedule_from_switches` turns the workflow's prompts back into the schedule,
:func:`frames_from_video` reads the enlarged mp4 back to 32 x 32 frames, and :func:`revisit_lines` prints every
return of a scene with its gap and relative revisit error (``visit_metrics``).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from .constants import FRAME_SIZE, FRAMES_PER_SECOND
from .scenes import ScenePrompt, SceneSchedule, Visit, all_scene_prompts
from .viewer import strip_image
from .visit_metrics import RECALL_THRESHOLD, SceneReport, chance_recall

_STORY: tuple[tuple[str, str, float], ...] = (  # (palette, style, toy seconds the visit lasts)
    ("desert", "mixed", 3.0), ("forest", "bands", 4.5), ("ocean", "shapes", 4.5), ("neon", "mixed", 3.0),
    ("ocean", "shapes", 3.0), ("sunset", "bands", 4.5), ("forest", "bands", 4.5), ("neon", "mixed", 4.5),
    ("desert", "mixed", 3.0), ("ocean", "shapes", 4.5), ("forest", "bands", 4.5), ("neon", "mixed", 4.5),
    ("ocean", "shapes", 3.0), ("sunset", "bands", 9.0),
)
"""Five scenes; returns after 3-16.5 s, and the sunset comes back after 28.5 s (the long gap the demo is for)."""


def story_schedule() -> SceneSchedule:
    """The demo's 60-s schedule (240 latent frames); pictures are those of the ground-truth video (the model picks
    its own on first visits).
    """
    visits, frame = [], 0
    for palette, style, seconds in _STORY:
        stop = frame + round(seconds * FRAMES_PER_SECOND)
        visits.append(Visit(prompt=ScenePrompt(palette=palette, style=style), picture=0, start=frame, stop=stop))
        frame = stop
    return SceneSchedule(visits=tuple(visits))


def scene_prompt_of(text: str) -> ScenePrompt:
    """The scene prompt whose canonical text is ``text`` (surrounding blanks and case ignored)."""
    wanted = " ".join(text.lower().split())
    for p in all_scene_prompts():
        if p.text == wanted:
            return p
    raise ValueError(f"{text!r} is not a scene prompt (for example {all_scene_prompts()[0].text!r})")


def schedule_from_switches(first: str, switches: Sequence[tuple[float, str]], num_frames: int) -> SceneSchedule:
    """The scene schedule of a sampler prompt and its Prompt Switch nodes ``(at_seconds, text)``, switching at the
    latent frame the sampler uses (``round(seconds * fps)``). Pictures are unknown and set to 0 (the revisit
    error compares a video with itself).
    """
    starts = [0] + [max(1, round(s * FRAMES_PER_SECOND)) for s, _ in switches]
    texts = [first] + [t for _, t in switches]
    if any(b <= a for a, b in zip(starts, starts[1:])) or starts[-1] >= num_frames:
        raise ValueError(f"switch frames {starts[1:]} must increase and lie inside the video's {num_frames} frames")
    stops = starts[1:] + [num_frames]
    return SceneSchedule(visits=tuple(Visit(prompt=scene_prompt_of(t), picture=0, start=a, stop=b)
                                      for t, a, b in zip(texts, starts, stops)))


def frames_from_video(path: str | Path, size: int = FRAME_SIZE) -> np.ndarray:
    """(T, 3, size, size) float32 RGB in [0, 1] of an enlarged toy video (mp4, any integer scale), each output pixel
    the mean of its block (which also averages the codec's compression noise).
    """
    import imageio_ffmpeg  # test and demo requirement, not needed by the library

    reader = imageio_ffmpeg.read_frames(str(path))
    meta = next(reader)
    width, height = meta["size"]
    if width != height or width % size:
        raise ValueError(f"{path}: {width} x {height} frames are not a whole enlargement of {size} x {size}")
    s = width // size
    frames = []
    for raw in reader:
        img = np.frombuffer(raw, dtype=np.uint8).reshape(height, width, 3).astype(np.float32) / 255.0
        frames.append(img.reshape(size, s, size, s, 3).mean(axis=(1, 3)).transpose(2, 0, 1))
    if not frames:
        raise ValueError(f"{path}: no frames")
    return np.stack(frames)


def revisit_lines(report: SceneReport) -> list[str]:
    """Human-readable lines: every return of a scene (gap, relative revisit error, recalled picture), then the
    summary figures (0 = the same picture as last time, 1 = another of the prompt's pictures).
    """
    lines = ["returning scene           gap (s)  revisit error (rel.)  same picture"]
    for r in report.returns:
        name = f"{r.prompt.palette} {r.prompt.style}" + (" (sink)" if r.sink else "")
        lines.append(f"{name:24s} {r.gap_s:8.1f}  {r.relative:20.2f}  {'yes' if r.recalled else 'no'}")
    kept = [r for r in report.returns if not r.sink]
    far = [r for r in kept if r.gap_s >= 10]
    if far:
        lines.append(f"returns after >= 10 s: relative error {np.mean([r.relative for r in far]):.2f}, same picture "
                     f"{np.mean([r.recalled for r in far]):.0%} (chance {chance_recall():.0%})")
    lines.append(f"effective context {report.effective_context_s:.1f} s (threshold {RECALL_THRESHOLD}); within-visit "
                 f"change {report.within_visit_change:.3f} per frame")
    return lines


def visit_strip(frames: np.ndarray, schedule: SceneSchedule, *, scale: int = 3, gap: int = 4) -> Image.Image:
    """The last frame of every visit side by side, each labelled with its start time and palette (a returning scene
    kept by the memory looks the same as at its previous visit).

    Args:
        frames: (T, 3, 32, 32) RGB in [0, 1].
        schedule: the video's visits.

    """
    picked = np.stack([frames[v.stop - 1] for v in schedule.visits])  # (visits, 3, H, W)
    strip = strip_image(picked, every=1, scale=scale, gap=gap)
    side = frames.shape[-1] * scale
    out = Image.new("RGB", (strip.width, strip.height + 28), "white")
    out.paste(strip, (0, 0))
    draw, font = ImageDraw.Draw(out), ImageFont.load_default()
    for i, v in enumerate(schedule.visits):
        x = i * (side + gap)
        draw.text((x + 2, strip.height + 2), f"{v.start / FRAMES_PER_SECOND:g} s", fill="black", font=font)
        draw.text((x + 2, strip.height + 14), v.prompt.palette, fill="black", font=font)
    return out
