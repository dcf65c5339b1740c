"""Node adapters called directly (ComfyUI stubbed by comfy_stubs): they must only convert types around the core."""

from __future__ import annotations

import asyncio
import types

import comfy_stubs
import pytest
import torch
from comfy_stubs import INTERRUPT, MODELS, PROGRESS, InterruptProcessingException

from context_forcing_core import PromptSchedule, generate, memory_preset, save_model
from context_forcing_core.latents import wan_denormalize
from context_forcing_core.models.config import WanConfig
from context_forcing_core.models.family import RUN_CONFIG_METADATA_KEY
from context_forcing_core.models.wan import WanModel
from context_forcing_core.student import Student, load_student
from context_forcing_core.toyworld.codec import ToyCodec
from context_forcing_core.toyworld.text import ToyTextEncoder
from nodes.decode import ToyDecode
from nodes.inspector import SurprisalInspector
from nodes.loader import BUNDLED, LoadModel, checkpoint_names
from nodes.memory import MemoryConfigNode, build_memory
from nodes.prompts import PromptSwitch
from nodes.sampler import LongRolloutSampler, budget_refusal, conditioning_states, step_list
from nodes.types import ModelHandle, ScheduledPrompt

assert comfy_stubs  # installed on import

TOY_SMALL = WanConfig(dim=32, ffn_dim=64, freq_dim=16, num_layers=2, num_heads=2, in_channels=48, out_channels=48,
                      text_dim=4096, text_len=16)
WAN_SMALL = WanConfig(dim=32, ffn_dim=64, freq_dim=16, num_layers=2, num_heads=2, in_channels=16, out_channels=16,
                      text_dim=24, text_len=8)


def _student(cfg: WanConfig, seed: int = 0) -> Student:
    torch.manual_seed(seed)
    return Student(model=WanModel(cfg).eval(), name="random", toy=cfg.in_channels == 48)


def _run(handle: ModelHandle, **kw: object):
    args = {"seconds": 3.0, "seed": 7, "steps": 4, "shift": 5.0, "width": 64, "height": 32,
            "prompt": "a forest scene, vertical bands"} | kw
    return LongRolloutSampler.execute(handle, **args)


@pytest.fixture(autouse=True)
def _reset():
    PROGRESS.clear()
    INTERRUPT["after_ticks"] = None


def test_memory_node_keeps_the_preset_unless_a_field_is_set():
    keep = dict(sink_frames=-1, slow_frames=-1, fast_frames=-1, consolidate_every=-1, positions="preset",
                similarity_reference="preset")
    for preset in ("context_forcing", "longlive", "self_forcing", "infinity_rope", "uniform"):
        assert build_memory(preset, -1, **keep) == memory_preset(preset)
    changed = build_memory("context_forcing", 0.9, **(keep | {"slow_frames": 6, "positions": "absolute"}))
    assert changed == memory_preset("context_forcing").replace(tau=0.9, slow_frames=6, positions="absolute")


def test_memory_node_rejects_bad_combinations_with_readable_messages():
    keep = dict(sink_frames=-1, slow_frames=-1, fast_frames=-1, threshold=-1, consolidate_every=-1,
                positions="preset", similarity_reference="preset")
    msg = MemoryConfigNode.execute("context_forcing", **(keep | {"fast_frames": 2})).block_execution
    assert "Memory Config: " in msg and "fast_frames (2)" in msg and "MemoryConfig." not in msg
    msg = MemoryConfigNode.execute("context_forcing", **(keep | {"consolidate_every": 0})).block_execution
    assert "consolidate_every must lie in [1, 64], got 0" in msg
    assert "unknown memory preset" in MemoryConfigNode.execute("nope", **keep).block_execution
    assert MemoryConfigNode.execute("longlive", **(keep | {"sink_frames": 1, "positions": "slot"})).block_execution is None
    # slow_frames 0 turns slow memory off instead of asking for an option the node does not have
    off = MemoryConfigNode.execute("context_forcing", **(keep | {"sink_frames": 0, "slow_frames": 0})).args[0]
    assert (off.sink_frames, off.slow_frames, off.slow_select) == (0, 0, "none")


def test_float_inputs_refuse_nan_and_infinities_at_validation_naming_input_value_and_range():
    for bad in (float("nan"), float("inf"), -float("inf")):
        msg = MemoryConfigNode.validate_inputs(bad)
        assert msg.startswith("Memory Config: threshold must lie in [-1.0, 1.0], got ") and "MemoryConfig" not in msg
        assert PromptSwitch.validate_inputs(bad).startswith("Prompt Switch: at_seconds must lie in [0.25, 3600.0]")
        assert asyncio.run(LongRolloutSampler.validate_inputs(bad)).startswith(
            "Long Rollout Sampler: seconds must lie in [0.25, 3600.0], got ")
    assert MemoryConfigNode.validate_inputs(1.5) == "Memory Config: threshold must lie in [-1.0, 1.0], got 1.5"
    assert MemoryConfigNode.validate_inputs(-1.0) is True
    assert asyncio.run(LongRolloutSampler.validate_inputs(3600.0)) is True
    handle = ModelHandle(student=_student(TOY_SMALL))
    for bad in (float("nan"), float("inf")):
        assert "shift must lie in [0.1, 20.0], got" in _run(handle, shift=bad).block_execution
    assert "width must be a multiple of 16, got 100" in _run(ModelHandle(student=_student(WAN_SMALL)),
                                                              width=100).block_execution


def test_each_node_names_at_most_one_input_in_validate_inputs():
    # ComfyUI 0.3.75 repeats a custom validation error once per input named here and skips its own checks for them
    import inspect

    from nodes import NODES
    for node in NODES:
        if "validate_inputs" in vars(node):
            assert len(inspect.signature(node.validate_inputs).parameters) == 1, node.__name__


def test_the_budget_of_a_queued_graph_is_known_at_validation():
    folder = MODELS / "context_forcing"
    folder.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(0)
    save_model(WanModel(WAN_SMALL), folder / "wan_small.safetensors")
    graph = {"1": {"class_type": "CF_LoadModel", "inputs": {"ckpt_name": "wan_small.safetensors", "dtype": "default"}},
             "2": {"class_type": "CF_MemoryConfig", "inputs": {
                 "preset": "self_forcing", "sink_frames": -1, "slow_frames": -1, "fast_frames": -1, "threshold": -1,
                 "consolidate_every": -1, "positions": "preset", "similarity_reference": "preset"}},
             "3": {"class_type": "CF_LongRolloutSampler", "inputs": {
                 "model": ["1", 0], "memory": ["2", 0], "seconds": 3600.0, "width": 4096, "height": 4096}}}
    message = budget_refusal(graph, "3")  # an hour at 4096 x 4096: ~240 GB of latents
    assert message.startswith("Long Rollout Sampler: this rollout needs ") and "GB available; lower seconds" in message
    graph["3"]["inputs"].update(seconds=5.0, width=64, height=32)
    assert budget_refusal(graph, "3") is None  # fits
    graph["2"]["inputs"]["fast_frames"] = 1  # the memory node reports its own mistake: no guess here
    assert budget_refusal(graph, "3") is None
    graph["1"]["inputs"]["model"] = ["9", 0]  # a connected ComfyUI MODEL: only known at run time
    assert budget_refusal(graph, "3") is None


def test_the_sampler_refuses_a_rollout_over_budget_before_allocating():
    handle = ModelHandle(student=_student(WAN_SMALL))
    comfy_stubs.FREE_MEMORY["bytes"] = 10_000
    try:
        msg = _run(handle).block_execution
    finally:
        comfy_stubs.FREE_MEMORY["bytes"] = 8 * 1024**3
    assert msg.startswith("Long Rollout Sampler: this rollout needs ") and "this machine's RAM has 0.00 GB available"
    assert "lower seconds, width / height (Wan models) or the Memory Config's sink / slow / fast frames" in msg
    assert not PROGRESS  # refused before the first chunk
    big = _run(handle, seconds=3600.0, width=4096, height=4096).block_execution  # 241 GB of latents
    assert "this rollout needs 2" in big and "GB available" in big


def test_prompt_switch_chains_in_order_and_blocks_a_switch_going_back():
    first = PromptSwitch.execute(10.0, "a").args[0]
    both = PromptSwitch.execute(20.0, "b", None, first).args[0]
    assert [(p.seconds, p.text) for p in both] == [(10.0, "a"), (20.0, "b")]
    blocked = PromptSwitch.execute(5.0, "c", None, both)
    assert "must come after the previous switch at 20.0 s" in blocked.block_execution


def test_the_default_prompt_is_the_demo_story_first_scene():
    from context_forcing_core.toyworld.story import story_schedule
    from context_forcing_core.toyworld.text import VOCABULARY, tokenize
    from nodes.sampler import DEFAULT_PROMPT

    assert DEFAULT_PROMPT == story_schedule().visits[0].prompt.text == "a desert scene, shapes over bands"
    assert all(w in VOCABULARY for w in tokenize(DEFAULT_PROMPT))


def test_toy_decode_inverts_the_codec_and_upscales_by_nearest_neighbour():
    codec = ToyCodec()
    frames = torch.rand(1, 5, 3, 32, 32)
    raw = codec.denormalize(codec.encode(frames))  # what the sampler outputs
    images = ToyDecode.execute({"samples": raw}, 2).args[0]  # (5, 64, 64, 3)
    assert images.shape == (5, 64, 64, 3)
    torch.testing.assert_close(images[:, ::2, ::2].permute(0, 3, 1, 2), codec.snap(frames)[0], rtol=0, atol=1e-6)
    assert "VAE Decode" in ToyDecode.execute({"samples": torch.zeros(1, 16, 2, 4, 4)}, 1).block_execution


def test_toy_sampler_equals_core_generation_with_one_tick_and_preview_per_chunk():
    student = _student(TOY_SMALL)
    out = _run(ModelHandle(student=student))
    latents, trace = out.args
    text = ToyTextEncoder(width=4096, max_tokens=16).encode(["a forest scene, vertical bands"])
    ref = generate(student.model, text, num_latent_frames=12, memory="context_forcing", seed=7, latent_size=(8, 8))
    assert torch.equal(latents["samples"], ToyCodec().denormalize(ref.latents))
    assert [p[0] for p in PROGRESS] == [1, 2, 3, 4] and {p[1] for p in PROGRESS} == {4}
    assert all(p[2][0] == "JPEG" and p[2][1].size == (256, 256) for p in PROGRESS)
    assert len(trace.chunks) == 4


def test_interrupt_stops_between_chunks_and_the_next_run_is_unaffected():
    handle = ModelHandle(student=_student(TOY_SMALL))
    full = _run(handle, seconds=6.0).args[0]["samples"]
    PROGRESS.clear()
    INTERRUPT["after_ticks"] = 2
    with pytest.raises(InterruptProcessingException):
        _run(handle, seconds=6.0)
    assert [p[0] for p in PROGRESS] == [1, 2]  # the third chunk never started
    INTERRUPT["after_ticks"] = None
    assert torch.equal(_run(handle, seconds=6.0).args[0]["samples"], full)


def test_wan_sampler_outputs_raw_vae_latents_from_the_conditioning():
    student = _student(WAN_SMALL)
    states = torch.randn(1, 12, 24)  # longer than text_len: truncated, as the model attends to 8 rows
    out = _run(ModelHandle(student=student), conditioning=[[states, {"pooled_output": None}]])
    ref = generate(student.model, states[:, :8], num_latent_frames=12, memory="context_forcing", seed=7,
                   latent_size=(4, 8))
    assert torch.equal(out.args[0]["samples"], wan_denormalize(ref.latents))


def test_wan_sampler_blocks_input_mistakes_with_a_message():
    handle = ModelHandle(student=_student(WAN_SMALL))
    assert "connect a CONDITIONING" in _run(handle).block_execution
    wrong = [[torch.randn(1, 8, 4096), {}]]
    assert "expects width 24" in _run(handle, conditioning=wrong).block_execution
    switch = (ScheduledPrompt(seconds=1.0, text="", conditioning=None),)
    assert "connect a CONDITIONING" in _run(handle, conditioning=[[torch.randn(1, 8, 24), {}]],
                                            schedule=switch).block_execution
    good = [[torch.randn(1, 8, 24), {}]]
    assert "Wan video size: width must be a multiple of 16, got 70" in _run(handle, width=70,
                                                                             conditioning=good).block_execution
    assert "own text encoder" in _run(ModelHandle(student=_student(TOY_SMALL)),
                                      conditioning=[[torch.randn(1, 8, 4096), {}]]).block_execution


def test_conditioning_is_padded_with_zero_rows_to_the_model_text_length():
    student = _student(WAN_SMALL)
    states = torch.randn(1, 3, 24)
    padded = conditioning_states([[states, {}]], student)
    assert padded.shape == (1, 8, 24) and torch.equal(padded[:, :3], states) and not padded[:, 3:].any()


def test_step_list_matches_the_default_four_steps():
    assert step_list(4) == [1000.0, 750.0, 500.0, 250.0] and step_list(1) == [1000.0]


def test_loader_lists_files_validates_them_and_loads(tmp_path):
    folder = MODELS / "context_forcing"
    folder.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(0)
    save_model(WanModel(TOY_SMALL), folder / "small_toy.safetensors", metadata={RUN_CONFIG_METADATA_KEY: "{}"})
    (folder / "broken.safetensors").write_bytes(b"not a safetensors file")
    (folder / "notes.txt").write_text("not a model")
    names = checkpoint_names()
    assert names[0] == BUNDLED and "small_toy.safetensors" in names and "broken.safetensors" in names
    assert "notes.txt" not in names  # only files the loader reads are offered

    def validate(name: str) -> bool | str:
        return asyncio.run(LoadModel.validate_inputs(name))

    assert validate("small_toy.safetensors") is True
    msg = validate("broken.safetensors")
    assert isinstance(msg, str) and "broken.safetensors" in msg and str(MODELS) not in msg
    assert "models/context_forcing/broken.safetensors" not in msg  # the dropdown name, not a server path
    assert "no model file named" in validate("missing.safetensors")
    assert "no model file named 'notes.txt'" in validate("notes.txt")
    assert "no model file named" in validate("../" * 5 + "etc/passwd")
    blocked = LoadModel.execute("broken.safetensors", "default").block_execution
    assert blocked.startswith("Load Context Forcing Model: broken.safetensors") and str(MODELS) not in blocked
    out = LoadModel.execute("small_toy.safetensors", "default")
    handle = out.args[0]
    assert handle.student.toy and handle.student.model.dtype == torch.float32
    assert out.ui["text"][0].startswith("Context Forcing (this pack's export) (metadata of its export). Trained with "
                                        "3-frame chunks, 4 steps")  # the loader shows the family it recognised
    assert LoadModel.execute("small_toy.safetensors", "bfloat16").args[0].student.model.dtype == torch.bfloat16


def test_a_comfyui_model_is_wrapped_without_copying_its_weights():
    torch.manual_seed(0)
    module = WanModel(TOY_SMALL)
    patcher = types.SimpleNamespace(model=types.SimpleNamespace(diffusion_model=module))
    student = ModelHandle(patcher=patcher).resolve()
    ours = dict(student.model.named_parameters())
    for name, p in module.named_parameters():
        assert ours[name].data_ptr() == p.data_ptr(), name
    copied = load_student(module.state_dict(), config=TOY_SMALL).model  # the default copies
    assert student.toy and copied.blocks[0].ffn[0].weight.data_ptr() != module.blocks[0].ffn[0].weight.data_ptr()


def test_inspector_plots_and_summarises_and_clamps_a_missing_layer():
    out = _run(ModelHandle(student=_student(TOY_SMALL)), seconds=12.0)
    trace = out.args[1]
    image, summary = SurprisalInspector.execute(trace, 0).args
    assert image.ndim == 4 and image.shape[0] == 1 and image.shape[-1] == 3 and 0 <= image.min() <= image.max() <= 1
    assert summary.startswith("16 chunks, 48 latent frames; layer 0 of 2")
    shown = SurprisalInspector.execute(trace, 5)
    assert shown.args[1].startswith("layer 5 does not exist (layers 0..1); showing layer 1")
    assert shown.ui["text"][0] == shown.args[1]


def test_a_prompt_switch_reaches_the_core_schedule_at_its_latent_frame():
    student = _student(TOY_SMALL)
    a, b = "a forest scene, vertical bands", "an ocean scene, shapes on plain ground"
    switches = PromptSwitch.execute(1.5, b).args[0]  # 1.5 s = latent frame 6 = the start of chunk 2
    out = _run(ModelHandle(student=student), prompt=a, schedule=switches).args[0]["samples"]
    enc = ToyTextEncoder(width=4096, max_tokens=16)
    schedule = PromptSchedule(texts=[enc.encode([a]), enc.encode([b])], switch_frames=[6])
    ref = generate(student.model, schedule, num_latent_frames=12, memory="context_forcing", seed=7, latent_size=(8, 8))
    assert torch.equal(out, ToyCodec().denormalize(ref.latents))
    unswitched = _run(ModelHandle(student=student), prompt=a).args[0]["samples"]
    assert torch.equal(out[:, :, :6], unswitched[:, :, :6]) and not torch.equal(out[:, :, 6:], unswitched[:, :, 6:])


def test_the_sampler_on_a_comfyui_model_equals_the_sampler_on_the_same_weights_loaded_by_the_pack():
    torch.manual_seed(1)
    module = WanModel(TOY_SMALL).eval()
    patcher = types.SimpleNamespace(model=types.SimpleNamespace(diffusion_model=module))
    via_model = _run(ModelHandle(patcher=patcher)).args[0]["samples"]
    direct = _run(ModelHandle(student=Student(model=module, name="direct", toy=True))).args[0]["samples"]
    assert torch.equal(via_model, direct)


def test_a_model_that_is_not_wan_is_refused_with_a_message():
    other = types.SimpleNamespace(model=types.SimpleNamespace(diffusion_model=torch.nn.Linear(4, 4)))
    out = LoadModel.execute(BUNDLED, "default", other)
    assert "is not a Wan2.1 T2V model" in out.block_execution


def test_constants_in_place_of_connections_are_refused_with_a_message():
    handle = ModelHandle(student=_student(TOY_SMALL))
    assert _run("a string", ).block_execution == ("Long Rollout Sampler: input 'model' must be connected to Load "
                                                  "Context Forcing Model, got a str")
    assert "input 'memory' must be connected" in _run(handle, memory="x").block_execution
    assert "input 'schedule' must be connected" in _run(handle, schedule="x").block_execution
    assert "input 'conditioning' must be connected" in _run(handle, conditioning="x").block_execution
    assert "input 'schedule' must be connected" in PromptSwitch.execute(5.0, "a", None, "x").block_execution
    assert "input 'latent' must be connected" in ToyDecode.execute("x", 2).block_execution
    shown = SurprisalInspector.execute("x", 0)
    assert "input 'memory_trace' must be connected" in shown.block_execution
    assert shown.ui["text"][0] == shown.block_execution  # an output node: the message shows on the node itself


def test_a_slow_checkpoint_check_never_blocks_the_event_loop(monkeypatch):
    import time

    import nodes.loader as loader

    monkeypatch.setattr(loader, "INSPECT_SECONDS", 0.2)
    monkeypatch.setattr(loader, "checkpoint_path", lambda name: "/models/slow.pt")
    monkeypatch.setattr(loader, "inspect_checkpoint_cached", lambda path: time.sleep(0.5))  # a slow pickle

    async def main() -> tuple[bool | str, int]:
        ticks = 0

        async def tick() -> None:
            nonlocal ticks
            while True:
                await asyncio.sleep(0.01)
                ticks += 1

        ticker = asyncio.create_task(tick())
        answer = await LoadModel.validate_inputs("slow.pt")
        ticker.cancel()
        return answer, ticks

    answer, ticks = asyncio.run(main())
    assert answer.startswith("Load Context Forcing Model: checking 'slow.pt' takes longer than 0.2 s")
    assert ticks >= 5  # the loop kept running while the file was checked


def test_a_model_that_outputs_nan_is_stopped_at_its_first_chunk():
    student = _student(TOY_SMALL)
    with torch.no_grad():
        student.model.head.head.bias.fill_(float("nan"))
    out = _run(ModelHandle(student=student))
    assert out.block_execution == ("Long Rollout Sampler: chunk 0 came out with NaN or infinite values (a broken "
                                   "checkpoint, or float16 overflow: try dtype bfloat16 or float32)")
    assert not PROGRESS


def test_a_frame_wise_release_loaded_by_name_samples_one_latent_frame_per_chunk():
    folder = MODELS / "context_forcing" / "framewise"
    folder.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(0)
    cfg = WanConfig(dim=128, ffn_dim=64, freq_dim=16, num_layers=1, num_heads=1, in_channels=16, out_channels=16,
                    text_dim=24)  # what a .pt without metadata infers back (heads = dim / 128, text length 512)
    weights = {"model._fsdp_wrapped_module." + k: v for k, v in WanModel(cfg).state_dict().items()}
    torch.save({"generator_ema": weights}, folder / "causal_forcing.pt")  # as the frame-wise release ships
    out = LoadModel.execute("framewise/causal_forcing.pt", "default")
    assert out.ui["text"][0].startswith("Causal Forcing (frame-wise)") and "1-frame chunks" in out.ui["text"][0]
    handle = out.args[0]
    states = torch.randn(1, 8, 24)
    sampled = _run(handle, seconds=1.0, conditioning=[[states, {}]])  # no Memory Config: the family's memory
    trace = sampled.args[1]
    assert [len(c.frames) for c in trace.chunks] == [1, 1, 1, 1] and len(PROGRESS) == 4
    padded = torch.cat([states, torch.zeros(1, cfg.text_len - 8, 24)], dim=1)  # the node pads to the text length
    ref = generate(handle.student.model, padded, num_latent_frames=4, seed=7, latent_size=(4, 8),
                   memory=memory_preset("self_forcing").replace(chunk_frames=1))
    assert torch.equal(sampled.args[0]["samples"], wan_denormalize(ref.latents))
