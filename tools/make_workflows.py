"""Write the shipped workflows (UI format) in workflows/: python -m tools.make_workflows.

Each graph is declared once here as nodes with widget values and links; the JSON files are what artists load
(template browser or drag and drop). tests/nodes/test_real_comfyui.py checks the files are current and that a real
ComfyUI accepts each one converted to the API format.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

from context_forcing_core.student import WAN_FPS
from context_forcing_core.toyworld.constants import FRAMES_PER_SECOND
from context_forcing_core.toyworld.story import story_schedule

OUT = Path(__file__).resolve().parent.parent / "workflows"


@dataclass
class Node:
    """One node: type, widget values, socket inputs (name, type) and outputs (name, type)."""

    type: str
    widgets: list
    inputs: list[tuple[str, str]] = field(default_factory=list)
    outputs: list[tuple[str, str]] = field(default_factory=list)
    pos: tuple[int, int] = (0, 0)
    size: tuple[int, int] = (320, 160)
    title: str | None = None


def graph(nodes: list[Node], edges: list[tuple[int, str, int, str]], note: str) -> dict:
    """UI-format workflow; ``edges`` are (from node index, output name, to node index, input name)."""
    ui_nodes, links = [], []
    for i, n in enumerate(nodes, start=1):
        ui_nodes.append({
            "id": i, "type": n.type, "pos": list(n.pos), "size": list(n.size), "flags": {}, "order": i - 1, "mode": 0,
            "inputs": [{"name": name, "type": kind, "link": None} for name, kind in n.inputs],
            "outputs": [{"name": name, "type": kind, "links": [], "slot_index": s}
                        for s, (name, kind) in enumerate(n.outputs)],
            "properties": {"Node name for S&R": n.type}, "widgets_values": n.widgets,
            **({"title": n.title} if n.title else {}),
        })
    for link_id, (src, out_name, dst, in_name) in enumerate(edges, start=1):
        s_node, d_node = ui_nodes[src - 1], ui_nodes[dst - 1]
        s_slot = [o["name"] for o in s_node["outputs"]].index(out_name)
        d_slot = [x["name"] for x in d_node["inputs"]].index(in_name)
        kind = s_node["outputs"][s_slot]["type"]
        s_node["outputs"][s_slot]["links"].append(link_id)
        d_node["inputs"][d_slot]["link"] = link_id
        links.append([link_id, src, s_slot, dst, d_slot, kind])
    note_id = len(ui_nodes) + 1
    ui_nodes.append({"id": note_id, "type": "Note", "pos": [0, -260], "size": [520, 220], "flags": {}, "order": note_id,
                     "mode": 0, "inputs": [], "outputs": [], "properties": {}, "widgets_values": [note]})
    return {"last_node_id": note_id, "last_link_id": len(links), "nodes": ui_nodes, "links": links, "groups": [],
            "config": {}, "extra": {"ds": {"scale": 0.8, "offset": [40, 300]}}, "version": 0.4}


def loader(ckpt: str, pos: tuple[int, int], lora: str = "none") -> Node:
    """The loader, with room below for the family text it shows after a run."""
    return Node("CF_LoadModel", [ckpt, "default", lora, 1.0], [("model", "MODEL")], [("cf_model", "CF_MODEL")], pos,
                (320, 160))


def memory(preset: str, pos: tuple[int, int], threshold: float = -1) -> Node:
    return Node("CF_MemoryConfig", [preset, -1, -1, -1, threshold, -1, "preset", "preset"], [],
                [("memory", "CF_MEMORY_CONFIG")], pos, (320, 260), title=f"Memory: {preset}")


def sampler(seconds: float, prompt: str, pos: tuple[int, int], fps_note: str = "") -> Node:
    return Node("CF_LongRolloutSampler", [seconds, 0, "fixed", 4, 5.0, 832, 480, prompt, False],
                [("model", "CF_MODEL"), ("memory", "CF_MEMORY_CONFIG"), ("conditioning", "CONDITIONING"),
                 ("schedule", "CF_PROMPT_SCHEDULE")],
                [("latent", "LATENT"), ("memory_trace", "CF_MEMORY_TRACE")], pos, (340, 330), title=fps_note or None)


def inspector(pos: tuple[int, int]) -> Node:
    return Node("CF_SurprisalInspector", [0], [("memory_trace", "CF_MEMORY_TRACE")],
                [("plot", "IMAGE"), ("summary", "STRING")], pos, (560, 480))


def toy_decode(pos: tuple[int, int]) -> Node:
    return Node("CF_ToyDecode", [8], [("latent", "LATENT")], [("images", "IMAGE")], pos, (260, 90))


def streaming_decode(prefix: str, pos: tuple[int, int]) -> Node:
    return Node("CF_StreamingDecode", [prefix, "mp4", WAN_FPS], [("samples", "LATENT"), ("vae", "VAE")],
                [("path", "STRING")], pos, (380, 460))


def video(fps: float, prefix: str, pos: tuple[int, int]) -> list[Node]:
    return [Node("CreateVideo", [fps], [("images", "IMAGE"), ("audio", "AUDIO")], [("VIDEO", "VIDEO")], pos, (260, 80)),
            Node("SaveVideo", [prefix, "auto", "auto"], [("video", "VIDEO")], [], (pos[0] + 300, pos[1]), (420, 460))]


def story_switches(first_index: int, pos: tuple[int, int]) -> tuple[list[Node], list[tuple[int, str, int, str]]]:
    """The toy story's Prompt Switch chain (one node per cut) as nodes numbered from ``first_index``, and its edges
    (each switch feeds the next; the last one's ``schedule`` output is for the sampler).
    """
    visits = story_schedule().visits
    nodes = []
    for i, v in enumerate(visits[1:]):
        at = v.start / FRAMES_PER_SECOND
        nodes.append(Node("CF_PromptSwitch", [at, v.prompt.text],
                          [("conditioning", "CONDITIONING"), ("schedule", "CF_PROMPT_SCHEDULE")],
                          [("schedule", "CF_PROMPT_SCHEDULE")], (pos[0] + 340 * (i % 4), pos[1] + 170 * (i // 4)),
                          (320, 150), title=f"at {at:g} s"))
    edges = [(first_index + i, "schedule", first_index + i + 1, "schedule") for i in range(len(nodes) - 1)]
    return nodes, edges


STORY_NOTE = ("The chain of Prompt Switch nodes is the story: five scenes, each prompt a palette and a style, cut "
              "to and back; the sunset returns after 28.5 s. Every toy scene prompt allows four pictures, so a "
              "returning scene shows the same picture as before only if the memory kept it. `make demo` prints the "
              "revisit error of every return (0: the same picture, 1: another of the prompt's pictures).")


def toy_long_video() -> dict:
    first = story_schedule().visits[0].prompt.text
    switches, chain = story_switches(8, (0, 560))
    nodes = [loader("toy-student (bundled)", (0, 0)), memory("context_forcing", (0, 270)),
             sampler(60.0, first, (380, 0)), toy_decode((780, 0)), *video(4.0, "context_forcing/toy_long_video",
                                                                         (1080, 0)),
             inspector((1380, 600)), *switches]
    edges = [(1, "cf_model", 3, "model"), (2, "memory", 3, "memory"), (3, "latent", 4, "latent"),
             (4, "images", 5, "images"), (5, "VIDEO", 6, "video"), (3, "memory_trace", 7, "memory_trace"), *chain,
             (7 + len(switches), "schedule", 3, "schedule")]
    note = ("Context Forcing toy demo (runs on CPU, no downloads): the bundled toy student generates a 60-s toy story "
            "(240 frames of 32 x 32 pixels at 4 frames per second) chunk by chunk through the Slow-Fast Memory. "
            + STORY_NOTE + " The Surprisal Inspector shows the cut chunks entering slow memory.")
    return graph(nodes, edges, note)


WAN_CKPT = "context_forcing_wan2.1_t2v_1.3b.safetensors"


def _wan_graph(ckpt: str, preset: str, prefix: str, lora: str = "none") -> tuple[list[Node], list]:
    """Loader, memory, umT5 with two prompts (a switch at 30 s), 60-s sampler, streaming decode, inspector."""
    nodes = [
        loader(ckpt, (0, 0), lora), memory(preset, (0, 270)),
        Node("CLIPLoader", ["umt5_xxl_fp16.safetensors", "wan", "default"], [], [("CLIP", "CLIP")], (0, 560), (320, 110)),
        Node("CLIPTextEncode", ["A red fox trots through a snowy birch forest, tracking shot, soft morning light."],
             [("clip", "CLIP")], [("CONDITIONING", "CONDITIONING")], (380, 460), (400, 160), title="Prompt from 0 s"),
        Node("CLIPTextEncode", ["The fox reaches a frozen lake and looks across the ice, same forest, same light."],
             [("clip", "CLIP")], [("CONDITIONING", "CONDITIONING")], (380, 660), (400, 160), title="Prompt from 30 s"),
        Node("CF_PromptSwitch", [30.0, ""], [("conditioning", "CONDITIONING"), ("schedule", "CF_PROMPT_SCHEDULE")],
             [("schedule", "CF_PROMPT_SCHEDULE")], (820, 660), (320, 160)),
        sampler(60.0, "", (820, 0)),
        Node("VAELoader", ["wan_2.1_vae.safetensors"], [], [("VAE", "VAE")], (820, 380), (320, 60)),
        streaming_decode(prefix, (1200, 0)),
        inspector((1200, 520)),
    ]
    edges = [(1, "cf_model", 7, "model"), (2, "memory", 7, "memory"), (3, "CLIP", 4, "clip"), (3, "CLIP", 5, "clip"),
             (4, "CONDITIONING", 7, "conditioning"), (5, "CONDITIONING", 6, "conditioning"),
             (6, "schedule", 7, "schedule"), (7, "latent", 9, "samples"), (8, "VAE", 9, "vae"),
             (7, "memory_trace", 10, "memory_trace")]
    return nodes, edges


WAN_FILES_NOTE = ("- models/text_encoders/umt5_xxl_fp16.safetensors (or the fp8 version)\n"
                  "- models/vae/wan_2.1_vae.safetensors\n"
                  "The prompt switches at 30 s; the recent frames are re-encoded under the new prompt so the scene "
                  "carries over. Streaming Decode writes the mp4 to the output folder as it decodes, one latent frame "
                  "at a time, so a minute of video never sits in memory at once.")


def wan_long_video() -> dict:
    nodes, edges = _wan_graph(WAN_CKPT, "context_forcing", "context_forcing/wan_long_video")
    note = ("Wan2.1-T2V-1.3B long video with Context Forcing memory. Put these files in your ComfyUI models folder:\n"
            f"- models/context_forcing/{WAN_CKPT} (a causal Context Forcing student, e.g. exported with "
            "python -m training.run export; models/diffusion_models works too)\n" + WAN_FILES_NOTE)
    return graph(nodes, edges, note)


LONGLIVE_CKPT = "longlive_base.pt"
LONGLIVE_LORA = "longlive_lora.pt"


def longlive_lora_video() -> dict:
    nodes, edges = _wan_graph(LONGLIVE_CKPT, "longlive", "context_forcing/longlive_video", LONGLIVE_LORA)
    note = ("LongLive (NVlabs/LongLive 1.0) in ComfyUI: its base student plus its LoRA, merged at load. From the "
            "release (Hugging Face Efficient-Large-Model/LongLive-1.3B), put:\n"
            f"- models/context_forcing/{LONGLIVE_CKPT} (models/longlive_base.pt; the 'generator' weights are taken)\n"
            f"- models/loras/{LONGLIVE_LORA} (models/lora.pt renamed; rank 256, alpha 256, PEFT keys under "
            "'generator_lora')\n" + WAN_FILES_NOTE + " The memory is LongLive's own (a 3-frame sink and a "
            "rolling window, 12 latent frames in all); switch the Memory Config to context_forcing to try the "
            "Slow-Fast Memory on it training-free.")
    return graph(nodes, edges, note)


def memory_comparison() -> dict:
    first = story_schedule().visits[0].prompt.text
    switches, chain = story_switches(12, (0, 870))
    nodes = [
        loader("toy-student (bundled)", (0, 0)), memory("context_forcing", (0, 270)),
        memory("self_forcing", (0, 570)),
        sampler(60.0, first, (380, 0)), sampler(60.0, first, (380, 380)),
        toy_decode((780, 0)), toy_decode((780, 380)),
        Node("ImageStitch", ["right", True, 8, "black"], [("image1", "IMAGE"), ("image2", "IMAGE")],
             [("IMAGE", "IMAGE")], (1080, 0), (270, 150)),
        *video(4.0, "context_forcing/memory_comparison", (1400, 0)),
        inspector((1080, 380)), *switches,
    ]
    last = 11 + len(switches)
    edges = [(1, "cf_model", 4, "model"), (1, "cf_model", 5, "model"), (2, "memory", 4, "memory"),
             (3, "memory", 5, "memory"), (4, "latent", 6, "latent"), (5, "latent", 7, "latent"),
             (6, "images", 8, "image1"), (7, "images", 8, "image2"), (8, "IMAGE", 9, "images"),
             (9, "VIDEO", 10, "video"), (4, "memory_trace", 11, "memory_trace"), *chain,
             (last, "schedule", 4, "schedule"), (last, "schedule", 5, "schedule")]
    note = ("Same model, same seed, same story, two memories side by side: Context Forcing's Slow-Fast Memory (left) "
            "and a Self-Forcing rolling window (right). " + STORY_NOTE + " Swap either Memory Config preset to "
            "compare others.")
    return graph(nodes, edges, note)


WORKFLOWS = {"toy_long_video.json": toy_long_video, "wan_long_video.json": wan_long_video,
             "longlive_lora_video.json": longlive_lora_video, "memory_comparison.json": memory_comparison}


def render(name: str) -> str:
    """The JSON text of one shipped workflow."""
    return json.dumps(WORKFLOWS[name](), indent=1) + "\n"


def main() -> None:
    for name in WORKFLOWS:
        (OUT / name).write_text(render(name))
        print(f"wrote {OUT / name}")


if __name__ == "__main__":
    main()
