"""SparseVideoNav policy cost: per-step breakdown, history length, sampler steps, sparse vs continuous
future, FLOPs per policy step at full size, and full-size timing on a GPU.

Default: a CPU-sized model set built from the real classes (128x128 frames, 4 Wan blocks of width
384, formers and action head with latent counts scaled to the 16x16 latent grid), driven through the
real policy code; 3-4 minutes on 2 cores:

    .venv/bin/python bench/bench_sparsevideonav.py [--plans 8] [--repeats 5] [--dtype auto] [--json PATH]

``--dtype auto`` (the default) is bfloat16 on CUDA and on CPUs with native bf16 (AVX512_BF16 or AMX),
float32 elsewhere: emulated bf16 makes the VAE convolutions tens of times slower (bench/_machine.py).
The header names the CPU, torch's CPU capability and the dtype with the reason it was picked.

Full size (Wan2.1-1.3B backbone + Q-Former/Video-Former + action head + Wan2.1 VAE at 256x256, the
paper's architecture with random weights, built directly on the GPU) on a CUDA device:

    .venv/bin/python bench/bench_sparsevideonav.py --full-size --device cuda --dtype bfloat16 [--peak-tflops 989]

Without a CUDA device that mode says so, prints the FLOP count (which needs no device) and exits 0.
Full size on the CPU is opt-in and times one cold policy step (~10 minutes, ~11 GB of memory):

    .venv/bin/python bench/bench_sparsevideonav.py --full-size --device cpu --dtype bfloat16 --steps 1

What is measured (wall-clock medians):

1. Policy steps through the real policy (``SparseVideoNavPolicy.observe`` x4 + ``plan``): the 4 new
   frames (preprocessing + the one new history chunk through the streaming VAE encoder), VAE encode
   of the reference clip, history compression (Q-Former + Video-Former), the 4 backbone steps
   (``sample_sparse_future``), the action head (10 DDIM steps), the preview decode (switched on for
   the last few steps only on a CPU). Stage times are the policy's own ``Plan.timings_s``; on CUDA the
   bench swaps the policy module's clock for one that synchronises the device first.
2. Per-step cost against the history length (frames older than the 8 reference frames: 8 ... 180
   frames = 2 ... 45 latent chunks at 4 FPS), which stage grows, and the ratio against the 1.10
   target, measured and with the fixed-work stages pooled over all lengths (less noise).
3. 4 vs 50 sampler steps and 4. sparse 8 vs continuous 20 future latents (``sample_sparse_future``
   with ``num_future=20``), backbone only, interleaved so load changes hit both alike.
5. FLOPs of every stage at full size, counted by ``torch.utils.flop_counter.FlopCounterMode`` running
   the real modules on the meta device (no memory, no weights), against the usually quoted figures
   (~7.9 TFLOP per plain Wan2.1-1.3B forward at 256x256, ~32 TFLOP per 4-step plan) and the floor they
   put on an RTX 4090 (165 TFLOP/s dense bf16).

On a CPU busier than its core count the bench uses one torch thread (two threads wait for each
other's descheduled half and run 3-4x slower); it prints the load average at both ends.
A benchmark: it prints figures and asserts nothing about time. Never part of the test suite.
"""
from __future__ import annotations

import argparse
import json
import math
import os
import shlex
import statistics
import sys
import tempfile
import time
import types
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Optional

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a source checkout

import numpy as np  # noqa: E402
import torch  # noqa: E402
from torch.utils.flop_counter import FlopCounterMode  # noqa: E402

from _machine import load_average, pick_dtype, print_machine  # noqa: E402
from sparsevideonav_ros.policies.base import Observation  # noqa: E402
from sparsevideonav_ros.policies.runner import PolicyRunner, Step  # noqa: E402
from sparsevideonav_ros.policies.sparsevideonav import policy as policy_module  # noqa: E402
from sparsevideonav_ros.policies.sparsevideonav.action_head import (ActionHeadConfig,  # noqa: E402
                                                                    SparseVideoNavActionHead)
from sparsevideonav_ros.policies.sparsevideonav.configuration_sparsevideonav import SparseVideoNavConfig  # noqa: E402
from sparsevideonav_ros.policies.sparsevideonav.models import SparseVideoNavModels  # noqa: E402
from sparsevideonav_ros.policies.sparsevideonav.policy import SparseVideoNavPolicy  # noqa: E402
from sparsevideonav_ros.policies.sparsevideonav.sampling import (REFERENCE_LATENTS,  # noqa: E402
                                                                 SPARSE_FUTURE_OFFSETS, sample_sparse_future)
from sparsevideonav_ros.policies.sparsevideonav.text_encoding import (InstructionEncoder,  # noqa: E402
                                                                      make_tiny_text_encoder)
from sparsevideonav_ros.policies.sparsevideonav.transformer import SparseVideoNavTransformer  # noqa: E402
from sparsevideonav_ros.policies.sparsevideonav.video_latents import (WAN21_VAE_CONFIG,  # noqa: E402
                                                                      StreamingVideoEncoder, decode_latents,
                                                                      encode_clip)

INSTRUCTION = "walk down the corridor, turn left at the red door and stop next to the plant"
FRAMES_PER_CHUNK = 4
REFERENCE_FRAMES = REFERENCE_LATENTS * FRAMES_PER_CHUNK
FPS = 4.0
CAMERA_SHAPE = (360, 640, 3)  # what the camera node hands the policy before its centre crop
DEFAULT_HISTORY_FRAMES = (8, 20, 60, 120, 180)
CONTINUOUS_FUTURE = 20
RTX4090_BF16_TFLOPS = 165.0
# Dense bf16 tensor-core peaks (vendor datasheets, no sparsity) by a substring of torch.cuda.get_device_name(),
# most specific first: the FLOP floor of the device the bench runs on, when --peak-tflops is not given.
DENSE_BF16_TFLOPS = (("H100 PCIe", 756.0), ("H100", 989.0), ("H200", 989.0), ("A100", 312.0), ("L40S", 362.0),
                     ("RTX 4090", RTX4090_BF16_TFLOPS), ("A10G", 70.0), ("A10", 125.0))


def device_peak_tflops(name: str) -> Optional[float]:
    """Dense bf16 peak of a GPU named ``name`` (DENSE_BF16_TFLOPS), None when unknown."""
    return next((peak for key, peak in DENSE_BF16_TFLOPS if key.lower() in name.lower()), None)
REFERENCE_TFLOP_PER_FORWARD = 7.9  # the figure usually quoted for one plain Wan2.1-1.3B forward at 256x256
REFERENCE_TFLOP_PER_STEP = 32.0
PAPER_SPARSE_SPEEDUP = 1.7
HISTORY_RATIO_TARGET = 1.10
TYPICAL_HISTORY = 60  # frames (15 s at 4 FPS): the history of the "per policy step" FLOP figure
DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


# -- model specifications ---------------------------------------------------------------------------

@dataclass
class ModelSpec:
    """Sizes of one SparseVideoNav model set (everything the real constructors take)."""

    name: str
    image_size: int
    transformer: dict
    vae: dict
    action_head: ActionHeadConfig
    text_dim: int = 4096
    notes: list = field(default_factory=list)

    @property
    def grid(self) -> int:
        return self.image_size // 8

    def describe(self) -> list[str]:
        t, q, v, a = (self.transformer, self.transformer["qformer_config"], self.transformer["video_former_config"],
                      self.action_head)
        dim = t["num_attention_heads"] * t["attention_head_dim"]
        seq = (REFERENCE_LATENTS + len(SPARSE_FUTURE_OFFSETS)) * (self.grid // 2) ** 2
        return [
            f"frames {self.image_size}x{self.image_size} -> latents 16x{self.grid}x{self.grid} "
            f"({self.grid ** 2} tokens per latent frame); backbone sequence 2 ref + 8 future latents = {seq} tokens",
            f"backbone: Wan2.1 layout, dim {dim} ({t['num_attention_heads']} heads x {t['attention_head_dim']}), "
            f"ffn {t['ffn_dim']}, {t['num_layers']} layers, text_dim {t['text_dim']}, history cross-attention "
            f"in every block",
            f"Q-Former: dim {q['dim']}, {q['depth']} layers, {q['heads']} heads, {q['num_latents']} latents; "
            f"Video-Former: dim {v['dim']}, {v['depth']} layers, {v['heads']} heads, {v['num_latents']} latents "
            f"(= history tokens)",
            f"action head: Action Video-Former {a.former_dim}/{a.former_depth}/{a.former_heads}/"
            f"{a.former_num_latents} latents, DiT {a.dit_dim}/{a.dit_depth}/{a.dit_heads}, 10 DDIM steps",
            f"VAE: Wan2.1 AutoencoderKLWan layout, base_dim {self.vae['base_dim']} (Wan2.1: 96)",
            *self.notes,
        ]


def _formers(grid: int, q_dim: int, q_heads: int, v_dim: int, v_heads: int, v_dim_head: int,
             text_dim: int) -> dict:
    """Q-Former/Video-Former configs at the paper's structure for a grid x grid latent: 10 slots x grid^2
    Q-Former latents, Video-Former 4x down (10 slots x grid^2/4)."""
    tokens = grid * grid
    return dict(qformer_config=dict(dim=q_dim, depth=4, heads=q_heads, num_latents=10 * tokens, language_dim=text_dim),
                video_former_config=dict(dim=v_dim, depth=6, heads=v_heads, dim_head=v_dim_head,
                                         num_latents=10 * tokens // 4, num_slots=10, input_dim=q_dim,
                                         language_dim=text_dim))


def full_size_spec() -> ModelSpec:
    """The paper's sizes: the constructors' defaults (Wan2.1-T2V-1.3B, 512/4/8/10240, 512/6/8/2560,
    256/8/8/640 + DiT 256/12/8) and the Wan2.1 VAE at 256x256."""
    return ModelSpec(name="full size (paper)", image_size=256,
                     transformer=dict(num_attention_heads=12, attention_head_dim=128, ffn_dim=8960, num_layers=30,
                                      text_dim=4096, freq_dim=256,
                                      **_formers(32, 512, 8, 512, 8, 64, 4096)),
                     vae=dict(WAN21_VAE_CONFIG), action_head=ActionHeadConfig())


def cpu_spec() -> ModelSpec:
    """A CPU-sized set: 128x128 frames (16x16 latents, 640 backbone tokens), 4 Wan blocks of width 384
    (head dim 128 as in Wan), formers of the paper's depths at width 64 with latent counts scaled to the
    16x16 grid, the paper's action head (its former latents scaled to the grid: 8 x 20), a Wan VAE of
    base width 12 (FLOPs of VAE vs backbone then about as at full size). Text width stays 4096
    (umT5-xxl), so every text projection has its real input width."""
    grid = 16
    vae = dict(WAN21_VAE_CONFIG)
    vae.update(base_dim=12)
    return ModelSpec(name="CPU-sized", image_size=grid * 8,
                     transformer=dict(num_attention_heads=3, attention_head_dim=128, ffn_dim=2240, num_layers=4,
                                      text_dim=4096, freq_dim=256, **_formers(grid, 64, 2, 64, 2, 32, 4096)),
                     vae=vae,
                     action_head=ActionHeadConfig(former_num_latents=8 * 20),
                     notes=["text encoder: a stand-in umT5 with d_model 4096 and one narrow layer (the instruction "
                            "is encoded once per instruction, never per step; umT5-xxl is not timed)"])


# -- building -----------------------------------------------------------------------------------------

def make_text_encoder(folder: Path, text_dim: int) -> InstructionEncoder:
    """A stand-in umT5 encoder of width ``text_dim`` (one narrow layer) + a real T5-style tokenizer,
    written and loaded back through ``InstructionEncoder.from_pretrained``. Per-step costs never touch
    it: the policy encodes the instruction once."""
    from transformers import UMT5Config, UMT5EncoderModel

    text_dir, tokenizer_dir = make_tiny_text_encoder(folder)
    tiny = UMT5EncoderModel.from_pretrained(str(text_dir))
    config = UMT5Config(vocab_size=tiny.config.vocab_size, d_model=text_dim, d_kv=8, d_ff=16, num_layers=1,
                        num_decoder_layers=1, num_heads=2, relative_attention_num_buckets=32,
                        relative_attention_max_distance=128, feed_forward_proj="gated-gelu", pad_token_id=0,
                        eos_token_id=1, decoder_start_token_id=0, tie_word_embeddings=False)
    torch.manual_seed(0)
    UMT5EncoderModel(config).save_pretrained(str(text_dir))
    return InstructionEncoder.from_pretrained(text_dir, tokenizer_dir)


def build_modules(spec: ModelSpec, device, dtype: torch.dtype):
    """(transformer, vae, action_head) with random weights, built directly on ``device`` (meta = shapes
    only), in eval mode without gradients."""
    from diffusers import AutoencoderKLWan

    torch.manual_seed(0)
    with torch.device(device):
        transformer = SparseVideoNavTransformer(**spec.transformer)
        vae = AutoencoderKLWan(**spec.vae)
        action_head = SparseVideoNavActionHead.from_head_config(spec.action_head)
    return tuple(cast(module, dtype).eval().requires_grad_(False) for module in (transformer, vae, action_head))


def cast(model: torch.nn.Module, dtype: torch.dtype) -> torch.nn.Module:
    """Every floating tensor to ``dtype``.

    diffusers' ``from_pretrained(torch_dtype=bfloat16)`` would keep Wan's ``_keep_in_fp32_modules``
    (norms, modulation tables, RoPE) in float32, a negligible share of the work; the policy cannot run
    such a model yet: ``sample_sparse_future`` takes its compute dtype from the first parameter, which
    is then the float32 ``scale_shift_table``, and feeds float32 latents into the bf16 patch embedding.
    """
    if dtype == torch.float32:
        return model
    import diffusers.utils.logging as diffusers_logging

    verbosity = diffusers_logging.get_verbosity()
    diffusers_logging.set_verbosity_error()  # its "should be kept in float32" warning: see the docstring
    try:
        return model.to(dtype=dtype)
    finally:
        diffusers_logging.set_verbosity(verbosity)


def build_models(spec: ModelSpec, device: str, dtype: torch.dtype, workdir: Path) -> SparseVideoNavModels:
    transformer, vae, action_head = build_modules(spec, device, dtype)
    text = make_text_encoder(workdir / "text", spec.text_dim)
    return SparseVideoNavModels(transformer, vae, action_head, text, spec.image_size)


def parameter_counts(models: SparseVideoNavModels) -> dict[str, float]:
    tr = models.transformer
    total = sum(p.numel() for p in tr.parameters())
    history = sum(p.numel() for n, p in tr.named_parameters()
                  if "history" in n or n.startswith(("qformer.", "video_former.")))
    return {"backbone_wan_M": (total - history) / 1e6, "history_modules_M": history / 1e6,
            "action_head_M": sum(p.numel() for p in models.action_head.parameters()) / 1e6,
            "vae_M": sum(p.numel() for p in models.vae.parameters()) / 1e6}


# -- clocks -------------------------------------------------------------------------------------------

class Clock:
    """perf_counter that first waits for the device's queued work (CUDA kernels run asynchronously)."""

    def __init__(self, device: torch.device) -> None:
        self.cuda = device.type == "cuda"

    def sync(self) -> None:
        if self.cuda:
            torch.cuda.synchronize()

    def __call__(self) -> float:
        self.sync()
        return time.perf_counter()


def use_clock_in_policy(clock: Clock) -> None:
    """The policy's stage timings use ``time.perf_counter`` of its module; on CUDA swap in the
    synchronising clock so every stage is charged its own kernels (this process only)."""
    if clock.cuda:
        if not hasattr(policy_module, "time"):
            raise RuntimeError("policy module no longer imports time: update the bench's clock hook")
        policy_module.time = types.SimpleNamespace(perf_counter=clock)


def timed(clock: Clock, fn: Callable, repeats: int) -> tuple[list[float], object]:
    times, result = [], None
    for _ in range(repeats):
        start = clock()
        result = fn()
        times.append(clock() - start)
    return times, result


def median(values) -> float:
    return float(statistics.median(values))


def num(value: float) -> str:
    """3 significant digits without exponents (1313, 106, 12.3, 0.119)."""
    for limit, fmt in ((100, ".0f"), (10, ".1f"), (1, ".2f")):
        if abs(value) >= limit:
            return f"{value:{fmt}}"
    return f"{value:.3g}"


def ms(seconds: float) -> str:
    return f"{seconds * 1e3:.0f}" if seconds >= 0.1 else f"{seconds * 1e3:.1f}"


# -- frames and policy driving ----------------------------------------------------------------------

class FrameStream:
    def __init__(self, seed: int = 0, shape=CAMERA_SHAPE) -> None:
        self.rng = np.random.default_rng(seed)
        self.shape = shape
        self.count = 0

    def next(self) -> Observation:
        rgb = self.rng.integers(0, 256, self.shape, dtype=np.uint8)
        obs = Observation(stamp=self.count / FPS, rgb=rgb)
        self.count += 1
        return obs


def make_policy(models: SparseVideoNavModels, spec_device: str, dtype: str, preview: bool) -> SparseVideoNavPolicy:
    # seed -1 off the CPU: the policy's seeded generator is a CPU torch.Generator, and
    # sample_sparse_future draws its noise with it directly on the model's device, which torch refuses
    # for CUDA ("Expected a 'cuda' device type for generator"). Costs do not depend on the seed.
    seed = 0 if torch.device(spec_device).type == "cpu" else -1
    config = SparseVideoNavConfig(checkpoint="bench-built", device=spec_device, dtype=dtype, preview=preview,
                                  seed=seed)
    policy = SparseVideoNavPolicy(config, models=models)
    policy.set_instruction(INSTRUCTION)
    return policy


def observe_frames(policy: SparseVideoNavPolicy, stream: FrameStream, count: int, clock: Clock) -> float:
    start = clock()
    for _ in range(count):
        policy.observe(stream.next())
    return clock() - start


def plan_once(policy: SparseVideoNavPolicy, clock: Clock) -> tuple[float, dict[str, float]]:
    start = clock()
    plan = policy.plan().validate()
    elapsed = clock() - start
    if plan.state != "ok":
        raise RuntimeError(f"policy did not plan (state {plan.state!r}) at {policy.history_length} frames")
    return elapsed, dict(plan.timings_s)


STAGES = (("observe", "4 new frames: preprocess + VAE encode of 1 history chunk"),
          ("vae_encode_reference_s", "VAE encode reference clip (8 frames)"),
          ("history_compression_s", "history compression (Q-Former + Video-Former)"),
          ("backbone_s", "backbone, 4 sampler steps"),
          ("action_head_s", "action head (Action Video-Former + DiT, 10 DDIM)"),
          ("preview_decode_s", "preview decode (VAE, 10 latents)"))


# -- 1. per-step breakdown -----------------------------------------------------------------------------

def breakdown_history_frames(plans: int, warmup: bool = True) -> list[int]:
    """History lengths (frames) of the breakdown's timed steps: the first plan comes at frame 12 (history
    4 frames); with a warm-up step the timed ones start at 8."""
    first = 2 * FRAMES_PER_CHUNK if warmup else FRAMES_PER_CHUNK
    return [first + FRAMES_PER_CHUNK * i for i in range(plans)]


class PlanTimer:
    """PolicyRunner step hook that times the plan apart: the planned frame is observed, then planned (what
    ``Policy.step`` does), so a runner step splits into observe (the batch's frames) and plan."""

    def __init__(self, clock: Clock) -> None:
        self.clock = clock
        self.plan_s = math.nan

    def __call__(self, policy: SparseVideoNavPolicy, observation: Observation):
        policy.observe(observation)
        start = self.clock()
        plan = policy.plan().validate()
        self.plan_s = self.clock() - start
        return plan


def runner_step(runner: PolicyRunner, stream: FrameStream, count: int) -> Step:
    """``count`` new frames into the runner, as policy_node feeds it, and the one step it makes of them."""
    for _ in range(count):
        observation = stream.next()
        runner.add_frame(observation.stamp, observation.rgb)
    (step,) = runner.process()
    if step.plan is None:
        raise RuntimeError(step.error)
    return step


def measure_breakdown(models, device: str, dtype: str, clock: Clock, plans: int, warmup: bool,
                      preview_plans: int) -> dict:
    """Policy steps of 4 frames each through the PolicyRunner (observe x4, plan at the chunk boundary) from
    the first plannable frame (12); the first is a warm-up (not counted) unless ``warmup`` is False. The
    policy's preview is switched on for the last ``preview_plans`` steps only (on a CPU the decode costs
    more than the rest of the step)."""
    policy = make_policy(models, device, dtype, preview=False)
    timer = PlanTimer(clock)
    runner = PolicyRunner(SparseVideoNavPolicy, lambda: policy, step=timer, clock=clock)
    if not runner.load():
        raise RuntimeError(f"policy did not load: {runner.load_error}")
    stream = FrameStream(seed=1)
    runner_step(runner, stream, REFERENCE_FRAMES)  # frames 0..7: warming up, no plan yet
    rows = []
    total = plans + (1 if warmup else 0)
    for index in range(total):
        policy.config.preview = index >= total - preview_plans
        step = runner_step(runner, stream, FRAMES_PER_CHUNK)
        if step.plan.state != "ok" or not step.new:
            raise RuntimeError(f"policy did not plan (state {step.plan.state!r}) at {policy.history_length} frames")
        total_s, timings = timer.plan_s, dict(step.plan.timings_s)
        observe_s = step.compute_s - total_s
        row = {"observe": observe_s, "preview_decode_s": float("nan"), **timings, "plan_s": total_s,
               "history_frames": policy.history_length - REFERENCE_FRAMES}
        row["step_no_preview_s"] = observe_s + total_s - timings.get("preview_decode_s", 0.0)
        if index or not warmup:
            rows.append(row)
    keys = [key for key, _ in STAGES] + ["step_no_preview_s"]
    med = {key: median([row[key] for row in rows if not math.isnan(row[key])] or [float("nan")]) for key in keys}
    med["step_s"] = med["step_no_preview_s"] + med["preview_decode_s"]
    previews = sum(not math.isnan(row["preview_decode_s"]) for row in rows)
    return {"median": med, "history_frames": [row["history_frames"] for row in rows], "steps": len(rows),
            "preview_steps": previews, "rows": rows}


def print_breakdown(result: dict, flops: Optional[dict], unit=(1e9, "GFLOP")) -> None:
    scale, name = unit
    med = result["median"]
    hist = result["history_frames"]
    middle = hist[len(hist) // 2]
    print(f"median over {result['steps']} policy steps (history {hist[0]}..{hist[-1]} frames; preview decode "
          f"on in the last {result['preview_steps']})")
    if flops is not None:
        flops = dict(flops, history_compression_s=flops["history_compression_by_frames"][middle])
    print(f"  {'stage':<58}{'ms':>9}" + (f"{name:>10}{name + '/s':>10}" if flops else ""))

    def line(label: str, seconds: float, count: Optional[float]) -> str:
        if math.isnan(seconds):
            return f"  {label:<58}{'off':>9}"
        text = f"  {label:<58}{ms(seconds):>9}"
        if count is not None:
            text += f"{num(count / scale):>10}{num(count / scale / seconds):>10}"
        return text

    for key, label in STAGES:
        print(line(label, med[key], flops.get(key) if flops else None))
    if not math.isnan(med["preview_decode_s"]):
        print(line("policy step (4 frames + plan), with preview", med["step_s"],
                   step_flops(flops, middle, preview=True) if flops else None))
    print(line("policy step without preview (the default config)", med["step_no_preview_s"],
               step_flops(flops, middle) if flops else None))
    budget = FRAMES_PER_CHUNK / FPS
    print(f"  a step is due every {budget:.1f} s (4 new frames at 4 FPS): {med['step_no_preview_s'] / budget:.2f}x "
          f"real time without preview")


# -- 2. history length -------------------------------------------------------------------------------

def measure_history(models, device: str, dtype: str, clock: Clock, history_frames, repeats: int) -> list[dict]:
    """One episode grown to every history length; at each, the last 4 frames' observe and ``repeats``
    plans (the policy replans every call at a multiple of 4 frames). No preview. This one calls the policy
    itself, not the PolicyRunner: it re-plans one history state ``repeats`` times to measure the model's
    cost at that length, which a runner (one plan per chunk boundary) never does."""
    policy = make_policy(models, device, dtype, preview=False)
    stream = FrameStream(seed=2)
    rows = []
    for history in sorted(history_frames):
        if history % FRAMES_PER_CHUNK or history < FRAMES_PER_CHUNK:
            raise ValueError(f"history lengths must be positive multiples of 4 frames, got {history}")
        target = history + REFERENCE_FRAMES
        if policy.history_length < target - FRAMES_PER_CHUNK:
            observe_frames(policy, stream, target - FRAMES_PER_CHUNK - policy.history_length, clock)
        observe_s = observe_frames(policy, stream, target - policy.history_length, clock)
        if not rows:  # a warm-up plan at the first length (allocator, kernels for new shapes)
            plan_once(policy, clock)
        plans = [plan_once(policy, clock) for _ in range(repeats)]
        chunks = policy.history_chunks
        row = {"history_frames": history, "history_chunks": chunks,
               "qformer_context_tokens": chunks * models.transformer.qformer.config.num_latents // 10,
               "observe": observe_s, "plan_s": median([p[0] for p in plans])}
        for key in ("vae_encode_reference_s", "history_compression_s", "backbone_s", "action_head_s"):
            row[key] = median([p[1][key] for p in plans])
        row["step_s"] = row["observe"] + row["plan_s"]
        rows.append(row)
    return rows


def print_history(rows: list[dict], spec_flops: Optional[dict], full_flops: Optional[dict], unit) -> dict:
    scale, name = unit
    print(f"{'history':>8}{'chunks':>7}{'Q-Former':>10}{'observe':>9}{'ref enc':>9}{'compress':>10}"
          f"{'backbone':>10}{'action':>8}{'step':>8}" + (f"{'step':>9}" if spec_flops else "")
          + (f"{'full size':>11}" if full_flops else ""))
    print(f"{'frames':>8}{'':>7}{'context':>10}{'ms':>9}{'ms':>9}{'ms':>10}{'ms':>10}{'ms':>8}{'ms':>8}"
          + (f"{name:>9}" if spec_flops else "") + (f"{'TFLOP':>11}" if full_flops else ""))
    for row in rows:
        line = (f"{row['history_frames']:>8}{row['history_chunks']:>7}{row['qformer_context_tokens']:>10}"
                f"{ms(row['observe']):>9}{ms(row['vae_encode_reference_s']):>9}"
                f"{ms(row['history_compression_s']):>10}{ms(row['backbone_s']):>10}{ms(row['action_head_s']):>8}"
                f"{ms(row['step_s']):>8}")
        if spec_flops:
            line += f"{step_flops(spec_flops, row['history_frames']) / scale:>9.1f}"
        if full_flops:
            line += f"{step_flops(full_flops, row['history_frames']) / 1e12:>11.2f}"
        print(line)
    steps = [row["step_s"] for row in rows]
    ratio = max(steps) / min(steps)
    first, last = rows[0], rows[-1]
    span = f"{first['history_frames']} -> {last['history_frames']} frames"
    verdict = "within" if ratio <= HISTORY_RATIO_TARGET else "OVER"
    print(f"measured step cost max/min over {span}: x{ratio:.2f} ({verdict} the {HISTORY_RATIO_TARGET:.2f} target)")
    result: dict = {"ratio": ratio}
    compress = last["history_compression_s"] - first["history_compression_s"]
    chunks = last["history_chunks"] - first["history_chunks"]
    print(f"  what grows: history compression {ms(first['history_compression_s'])} -> "
          f"{ms(last['history_compression_s'])} ms ({compress / max(chunks, 1) * 1e3:+.1f} ms per extra chunk): the "
          f"Q-Former's queries cross-attend to every history token, (chunks x tokens per latent frame), so it is "
          f"linear in the history; the Video-Former and everything after it see a fixed token count")
    fixed = ("observe", "vae_encode_reference_s", "backbone_s", "action_head_s")
    flat = {key: last[key] - first[key] for key in fixed}
    print("  the other stages do the same work at every length (fixed shapes); they moved by "
          + ", ".join(f"{label} {flat[key] * 1e3:+.0f} ms" for key, label in
                      (("observe", "observe"), ("vae_encode_reference_s", "ref encode"), ("backbone_s", "backbone"),
                       ("action_head_s", "action head")))
          + " = measurement noise")
    pooled = sum(median([row[key] for row in rows]) for key in fixed)
    estimate = [pooled + row["history_compression_s"] for row in rows]
    result["pooled_ratio"] = max(estimate) / min(estimate)
    result["pooled_s"] = (estimate[0], estimate[-1])
    print(f"  with those fixed stages at their median over all lengths: {ms(estimate[0])} -> {ms(estimate[-1])} ms, "
          f"max/min x{result['pooled_ratio']:.3f} over {span}")
    same = spec_flops is full_flops  # a full-size run: one line
    for flops, label, keys in ((spec_flops, "full size" if same else "this config", ("flop_ratio",)),
                               (None if same else full_flops, "full size", ("full_size_flop_ratio",))):
        if flops:
            lo, hi = step_flops(flops, first["history_frames"]), step_flops(flops, last["history_frames"])
            grow = flops["history_compression_by_frames"]
            result.update({key: hi / lo for key in keys + (("full_size_flop_ratio",) if same else ())})
            print(f"  FLOPs, {label}: x{hi / lo:.3f} per step over {span} (Q-Former + Video-Former "
                  f"{grow[first['history_frames']] / lo * 100:.1f}% -> {grow[last['history_frames']] / hi * 100:.1f}% "
                  f"of a step)")
    return result


# -- 3./4. sampler steps, sparse vs continuous ------------------------------------------------------------

def sampler_inputs(models: SparseVideoNavModels, history_frames: int, seed: int = 3):
    """What the policy hands the sampler: reference latents (encode_clip of 8 frames), text embeddings,
    history tokens (compress_history of ``history_frames`` frames' latents)."""
    device, dtype = models.transformer.device, models.vae.dtype
    g = torch.Generator().manual_seed(seed)
    size = models.image_size
    reference = encode_clip(models.vae, (torch.rand(1, 3, REFERENCE_FRAMES, size, size, generator=g) * 2 - 1)
                            .to(device, dtype))
    text, mask = models.encode_instruction(INSTRUCTION)
    history = encode_clip(models.vae, (torch.rand(1, 3, history_frames, size, size, generator=g) * 2 - 1)
                          .to(device, dtype))
    with torch.no_grad():
        tokens = models.transformer.compress_history(history, None, text, mask)
    return reference, text, tokens


def time_sampler(models, inputs, clock: Clock, steps: int, num_future: int, repeats: int) -> list[float]:
    reference, text, tokens = inputs

    def run():
        return sample_sparse_future(models.transformer, reference, text, tokens, sampler="unipc", steps=steps,
                                    num_future=num_future,
                                    generator=torch.Generator(device=reference.device).manual_seed(0))

    times, latents = timed(clock, run, repeats)
    if latents.shape[2] != REFERENCE_LATENTS + num_future:
        raise RuntimeError(f"sampler returned {tuple(latents.shape)}")
    return times


# -- 5. FLOPs ------------------------------------------------------------------------------------------------

def backbone_plan_flops(transformer, spec: "ModelSpec", steps: int = 4) -> tuple[int, int, int]:
    """(plan_context, one step reusing it, the whole plan = context + steps x step) FLOPs of the backbone with
    history, as sample_sparse_future runs it; ``transformer`` on the meta device."""
    meta = dict(device="meta")
    text = torch.zeros(1, 512, spec.text_dim, **meta)
    history = torch.zeros(1, transformer.video_former.config.num_latents, transformer.video_former.config.dim, **meta)
    latents = torch.zeros(1, 16, REFERENCE_LATENTS + len(SPARSE_FUTURE_OFFSETS), spec.grid, spec.grid, **meta)
    t = torch.full((1,), 999.0, **meta)
    with torch.no_grad():
        context = transformer.plan_context(text, history)
    once = _count(lambda: transformer.plan_context(text, history))
    step = _count(lambda: transformer(latents, t, text, history, context=context))
    return once, step, once + steps * step


def _count(fn: Callable) -> int:
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        fn()
    return int(counter.get_total_flops())


def count_flops(spec: ModelSpec, history_frames, action_steps: int = 10, text_tokens: int = 24,
                with_text_encoder: bool = False) -> dict:
    """FLOPs of every stage of one policy step, the real modules running on the meta device.

    The action head is counted as ``sample`` runs it (encode_condition, context_cache, ``action_steps``
    x denoise) without the DDIM scheduler arithmetic on 24 numbers; a sampler step is one backbone
    forward (the UniPC update is elementwise on the latents).
    """
    transformer, vae, action_head = build_modules(spec, "meta", torch.float32)
    grid, size = spec.grid, spec.image_size
    meta = dict(device="meta")
    text = torch.zeros(1, 512, spec.text_dim, **meta)
    mask = torch.ones(1, 512, dtype=torch.bool, **meta)
    out: dict = {}

    encoder = StreamingVideoEncoder(vae)
    with torch.no_grad():
        encoder.start(torch.zeros(1, 3, size, size, **meta))
    out["observe"] = _count(lambda: encoder.encode_chunk(torch.zeros(1, 3, 4, size, size, **meta)))
    out["vae_encode_reference_s"] = _count(lambda: encode_clip(vae, torch.zeros(1, 3, REFERENCE_FRAMES, size, size,
                                                                                **meta)))
    out["history_compression_by_frames"] = {
        h: _count(lambda h=h: transformer.compress_history(torch.zeros(1, 16, h // 4, grid, grid, **meta), None,
                                                           text, mask))
        for h in history_frames}
    hist_tokens = torch.zeros(1, transformer.video_former.config.num_latents, transformer.video_former.config.dim,
                              **meta)
    t = torch.full((1,), 999.0, **meta)

    def forward(frames, history):
        return _count(lambda: transformer(torch.zeros(1, 16, frames, grid, grid, **meta), t, text, history))

    sparse = REFERENCE_LATENTS + len(SPARSE_FUTURE_OFFSETS)
    out["backbone_forward"] = forward(sparse, hist_tokens)
    out["backbone_forward_no_history"] = forward(sparse, None)
    out["backbone_forward_continuous"] = forward(REFERENCE_LATENTS + CONTINUOUS_FUTURE, hist_tokens)
    # As the sampler runs it: the per-plan context (text projection, cross-attention K/V) once, then 4 steps
    # that reuse it (transformer.plan_context).
    out["plan_context"], out["backbone_step"], out["backbone_s"] = backbone_plan_flops(transformer, spec)
    # per block, one forward: where the FLOPs go
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        transformer(torch.zeros(1, 16, sparse, grid, grid, **meta), t, text, hist_tokens)
    per_module = counter.get_flop_counts()
    block = f"{type(transformer).__name__}.blocks.0"
    out["block0"] = {part: sum(per_module.get(f"{block}.{part}", {}).values())
                     for part in ("attn1", "attn2", "history_proj", "attn_history", "ffn")}
    out["blocks"] = len(transformer.blocks)

    future = torch.zeros(1, 16, len(SPARSE_FUTURE_OFFSETS), grid, grid, **meta)
    actions = torch.zeros(1, spec.action_head.num_actions, spec.action_head.action_dim, **meta)

    def head():
        context, context_mask = action_head.encode_condition(future, text, mask)
        kv = action_head.context_cache(context)
        for _ in range(action_steps):
            action_head.denoise(actions, torch.full((1,), 50, **meta), context, context_mask, kv)

    out["action_head_s"] = _count(head)
    out["preview_decode_s"] = _count(lambda: decode_latents(vae, torch.zeros(1, 16, sparse, grid, grid, **meta)))
    if with_text_encoder:
        from transformers import UMT5Config, UMT5EncoderModel

        from sparsevideonav_ros.policies.sparsevideonav.text_encoding import UMT5_XXL_CONFIG
        with torch.device("meta"):
            umt5 = UMT5EncoderModel(UMT5Config(**UMT5_XXL_CONFIG)).eval().requires_grad_(False)
        ids = torch.ones(1, text_tokens, dtype=torch.long, **meta)
        # no attention mask: an all-ones mask is skipped by transformers anyway (and meta tensors cannot be asked)
        out["umt5_xxl_per_instruction"] = _count(lambda: umt5(input_ids=ids))
        out["umt5_tokens"] = text_tokens
    return out


def step_flops(flops: dict, history_frames: int, preview: bool = False) -> float:
    total = (flops["observe"] + flops["vae_encode_reference_s"] + flops["history_compression_by_frames"][history_frames]
             + flops["backbone_s"] + flops["action_head_s"])
    return total + (flops["preview_decode_s"] if preview else 0)


def print_full_size_flops(flops: dict, history_frames, typical_history: int = TYPICAL_HISTORY) -> dict:
    tf = 1e12
    fwd, fwd_plain = flops["backbone_forward"], flops["backbone_forward_no_history"]
    blocks = flops["blocks"]
    b0 = flops["block0"]
    print("counted with torch.utils.flop_counter.FlopCounterMode, real modules on the meta device "
          "(1 multiply-add = 2 FLOP; matmuls, convolutions and attention, elementwise ops not counted)")
    print(f"  backbone forward, 2560 tokens + 512 text + 2560 history tokens: {fwd / tf:.2f} TFLOP "
          f"({fwd / blocks / 1e9:.0f} GFLOP per block)")
    print(f"    per block: self-attn {b0['attn1'] / 1e9:.1f}, text cross-attn {b0['attn2'] / 1e9:.1f}, history "
          f"cross-attn {(b0['attn_history'] + b0['history_proj']) / 1e9:.1f} (of which history_proj "
          f"{b0['history_proj'] / 1e9:.1f}), FFN {b0['ffn'] / 1e9:.1f} GFLOP")
    print(f"  of which the per-plan context (text projection, history_proj, text/history cross-attn K/V): "
          f"{flops['plan_context'] / tf:.2f} TFLOP, computed once per plan: 4 steps = "
          f"{flops['plan_context'] / tf:.2f} + 4 x {flops['backbone_step'] / tf:.2f} = {flops['backbone_s'] / tf:.2f} "
          f"TFLOP (4 full forwards: {4 * fwd / tf:.2f})")
    print(f"  same forward without history attention (plain Wan2.1-1.3B): {fwd_plain / tf:.2f} TFLOP; "
          f"usually quoted: ~{REFERENCE_TFLOP_PER_FORWARD} TFLOP per forward")
    print(f"    -> the quoted {REFERENCE_TFLOP_PER_FORWARD} TFLOP matches the forward WITHOUT the history "
          f"cross-attention; with it a forward is {fwd / fwd_plain:.2f}x that")
    rows = [("VAE encode, 1 new history chunk (4 frames)", flops["observe"]),
            ("VAE encode, reference clip (8 frames)", flops["vae_encode_reference_s"])]
    for h in history_frames:
        rows.append((f"history compression, {h} frames ({h // 4} chunks)", flops["history_compression_by_frames"][h]))
    rows += [("backbone, 4 steps", flops["backbone_s"]),
             ("action head (Action Video-Former + 10 DiT steps)", flops["action_head_s"]),
             ("preview decode (VAE, 10 latents -> 37 frames)", flops["preview_decode_s"])]
    for label, value in rows:
        print(f"  {label:<58}{value / tf:>9.3f} TFLOP")
    if "umt5_xxl_per_instruction" in flops:
        print(f"  {'umT5-xxl, once per instruction (' + str(flops['umt5_tokens']) + ' tokens)':<58}"
              f"{flops['umt5_xxl_per_instruction'] / tf:>9.3f} TFLOP")
    step = step_flops(flops, typical_history)
    step_preview = step_flops(flops, typical_history, preview=True)
    lo, hi = min(history_frames), max(history_frames)
    print(f"  policy step at {typical_history} history frames: {step / tf:.1f} TFLOP "
          f"({step_preview / tf:.1f} with preview); backbone {flops['backbone_s'] / tf:.1f} of it; "
          f"reference: ~{REFERENCE_TFLOP_PER_STEP:.0f} TFLOP per step (backbone)")
    print(f"  history {lo} -> {hi} frames: {step_flops(flops, lo) / tf:.2f} -> {step_flops(flops, hi) / tf:.2f} "
          f"TFLOP per step (x{step_flops(flops, hi) / step_flops(flops, lo):.3f})")
    floor = {name: value / (RTX4090_BF16_TFLOPS * tf) for name, value in (
        ("reference_backbone", REFERENCE_TFLOP_PER_STEP * tf), ("backbone", flops["backbone_s"]),
        ("step", step), ("step_preview", step_preview))}
    print(f"  floor on an RTX 4090 at {RTX4090_BF16_TFLOPS:.0f} TFLOP/s dense bf16 (100% utilisation, "
          f"no overheads): reference backbone {floor['reference_backbone']:.2f} s, counted backbone "
          f"{floor['backbone']:.2f} s, whole step {floor['step']:.2f} s ({floor['step_preview']:.2f} s with "
          f"preview)")
    sparse_ratio = flops["backbone_forward_continuous"] / fwd
    print(f"  continuous 20 future latents: {flops['backbone_forward_continuous'] / tf:.2f} TFLOP per forward "
          f"(x{sparse_ratio:.2f} the sparse 8); 50 sampler steps: {50 * fwd / tf:.0f} TFLOP (x12.5)")
    return {"floor_s": floor, "step_tflop": step / tf, "step_preview_tflop": step_preview / tf,
            "continuous_flop_ratio": sparse_ratio}


# -- full size ---------------------------------------------------------------------------------------

def cuda_available() -> bool:
    return torch.cuda.is_available() and torch.cuda.device_count() > 0


def run_measurements(args, spec: ModelSpec, models, clock: Clock, results: dict, spec_flops: Optional[dict],
                     full_flops: Optional[dict]) -> None:
    """Sections 1-4 on ``models`` (``spec_flops``: FLOPs of this spec, for the throughput columns)."""
    device, dtype = args.device, args.dtype
    unit = (1e12, "TFLOP") if args.full_size else (1e9, "GFLOP")
    cold = args.full_size and not clock.cuda
    print(f"\n## 1. Per-step breakdown ({spec.name}, {device}, {dtype}; the policy's own stage timings)")
    breakdown = measure_breakdown(models, device, dtype, clock, plans=args.plans, warmup=not cold,
                                  preview_plans=0 if args.no_preview else args.preview_plans)
    if cold:
        print("(cold: no warm-up step at full size on the CPU)")
    print_breakdown(breakdown, spec_flops, unit)
    results["breakdown"] = breakdown
    if cold:
        return  # full size on the CPU: the breakdown is all we do

    print(f"\n## 2. Per-step cost vs history length ({spec.name}; plan = median of {args.repeats} plans, "
          f"observe = the last 4 frames with their one chunk encode)")
    rows = measure_history(models, device, dtype, clock, args.history_frames, args.repeats)
    results["history"] = {"rows": rows, **print_history(rows, spec_flops, full_flops, unit)}

    print(f"\n## 3. Sampler steps 4 vs 50 ({spec.name}, backbone only: sample_sparse_future, UniPC, history "
          f"tokens of 20 frames; measured interleaved with 4.)")
    inputs = sampler_inputs(models, history_frames=20)
    sparse_n = len(SPARSE_FUTURE_OFFSETS)
    time_sampler(models, inputs, clock, steps=1, num_future=sparse_n, repeats=1)  # warm-up
    time_sampler(models, inputs, clock, steps=1, num_future=CONTINUOUS_FUTURE, repeats=1)
    four, cont = [], []
    for _ in range(args.repeats):  # interleaved, so a load change on the machine hits both alike
        four += time_sampler(models, inputs, clock, steps=4, num_future=sparse_n, repeats=1)
        cont += time_sampler(models, inputs, clock, steps=4, num_future=CONTINUOUS_FUTURE, repeats=1)
    fifty = time_sampler(models, inputs, clock, steps=50, num_future=sparse_n,
                         repeats=args.repeats if clock.cuda else 1)
    four_s, fifty_s, cont_s = median(four), median(fifty), median(cont)
    print(f"   4 steps {ms(four_s):>8} ms ({ms(four_s / 4)} ms per step, median of {len(four)})")
    print(f"  50 steps {ms(fifty_s):>8} ms ({ms(fifty_s / 50)} ms per step, median of {len(fifty)})")
    print(f"  50/4 = {fifty_s / four_s:.1f}x (12.5x the forwards; paper: distillation about 10x faster end to end)")
    print(f"\n## 4. Sparse 8 vs continuous {CONTINUOUS_FUTURE} future latents ({spec.name}, 4 steps, backbone only)")
    tokens = (spec.grid // 2) ** 2
    ratio = cont_s / four_s
    print(f"  sparse 8       ({(REFERENCE_LATENTS + sparse_n) * tokens:>5} tokens) {ms(four_s):>8} ms per plan")
    print(f"  continuous {CONTINUOUS_FUTURE:<3} ({(REFERENCE_LATENTS + CONTINUOUS_FUTURE) * tokens:>5} tokens) "
          f"{ms(cont_s):>8} ms per plan (median of {len(cont)})")
    line = f"  continuous/sparse = {ratio:.2f}x (paper: {PAPER_SPARSE_SPEEDUP}x)"
    if spec_flops is not None:
        line += (f"; FLOP ratio {spec_flops['backbone_forward_continuous'] / spec_flops['backbone_forward']:.2f}x "
                 f"here")
    if full_flops is not None:
        line += f", {full_flops['backbone_forward_continuous'] / full_flops['backbone_forward']:.2f}x at full size"
    print(line)
    results["sampler_steps"] = {"4_s": four_s, "50_s": fifty_s, "ratio": fifty_s / four_s}
    results["sparse_vs_continuous"] = {"sparse_s": four_s, "continuous_s": cont_s, "ratio": ratio}


def summary_table(args, spec: ModelSpec, results: dict, full_flop_summary: Optional[dict]) -> list[str]:
    threads = f", {torch.get_num_threads()} thread{'s' if torch.get_num_threads() > 1 else ''}" \
        if args.device == "cpu" else ""
    lines = [f"| {spec.name}, {args.device}, {args.dtype}{threads} | figure |", "|---|---|"]
    b = results.get("breakdown", {}).get("median")
    if b:
        lines += [f"| policy step (4 frames + plan, no preview) | {ms(b['step_no_preview_s'])} ms |",
                  f"| - VAE: new history chunk / reference clip | {ms(b['observe'])} / "
                  f"{ms(b['vae_encode_reference_s'])} ms |",
                  f"| - history compression | {ms(b['history_compression_s'])} ms |",
                  f"| - backbone, 4 steps | {ms(b['backbone_s'])} ms |",
                  f"| - action head, 10 DDIM steps | {ms(b['action_head_s'])} ms |",
                  ] + ([] if math.isnan(b["preview_decode_s"]) else
                       [f"| preview decode (optional) | {ms(b['preview_decode_s'])} ms |"])
    h = results.get("history")
    if h:
        lo, hi = h["rows"][0], h["rows"][-1]
        lines.append(f"| step cost, history {lo['history_frames']} -> {hi['history_frames']} frames (target <= "
                     f"x{HISTORY_RATIO_TARGET:.2f}) | x{h['ratio']:.2f} measured max/min; fixed stages pooled: "
                     f"{ms(h['pooled_s'][0])} -> {ms(h['pooled_s'][1])} ms, x{h['pooled_ratio']:.2f} |")
        lines.append(f"| - of which grows: history compression | {ms(lo['history_compression_s'])} -> "
                     f"{ms(hi['history_compression_s'])} ms |")
        if "flop_ratio" in h:
            lines.append(f"| same in FLOPs: this config / full size | x{h['flop_ratio']:.2f} / "
                         f"x{h.get('full_size_flop_ratio', float('nan')):.2f} |")
    s = results.get("sampler_steps")
    if s:
        lines.append(f"| backbone 50 vs 4 sampler steps | {ms(s['50_s'])} vs {ms(s['4_s'])} ms (x{s['ratio']:.1f}) |")
    c = results.get("sparse_vs_continuous")
    if c:
        lines.append(f"| backbone, continuous 20 vs sparse 8 future latents | {ms(c['continuous_s'])} vs "
                     f"{ms(c['sparse_s'])} ms (x{c['ratio']:.2f}; paper x{PAPER_SPARSE_SPEEDUP}) |")
    if full_flop_summary:
        f = full_flop_summary
        lines += [f"| full size: FLOPs per policy step ({TYPICAL_HISTORY} history frames; no preview / with "
                  f"preview) | {f['step_tflop']:.1f} / {f['step_preview_tflop']:.1f} TFLOP |",
                  f"| full size: RTX 4090 floor, 165 TFLOP/s bf16 (backbone / step) | "
                  f"{f['floor_s']['backbone']:.2f} / {f['floor_s']['step']:.2f} s |",
                  f"| full size: continuous 20 vs sparse 8, FLOPs | x{f['continuous_flop_ratio']:.2f} |"]
    return lines


# -- main ----------------------------------------------------------------------------------------------

def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--full-size", action="store_true",
                        help="the paper's sizes (random weights); needs --device cuda, or --device cpu --steps N")
    parser.add_argument("--device", default="cpu", help="torch device (cpu, cuda, cuda:1)")
    parser.add_argument("--dtype", default="auto", choices=["auto", *sorted(DTYPES)],
                        help="weights and compute (default %(default)s: bfloat16 on CUDA and on CPUs with native "
                             "bf16, AVX512_BF16 or AMX; float32 on other CPUs, where bf16 is emulated)")
    parser.add_argument("--steps", type=int, default=None,
                        help="timed policy steps for the breakdown (default: --plans); at full size on the CPU "
                             "this is required and only the breakdown runs")
    parser.add_argument("--plans", type=int, default=None, help="policy steps in the breakdown median "
                                                                "(default 8 on cpu, 20 on cuda)")
    parser.add_argument("--repeats", type=int, default=None, help="plans per history length and sampler runs "
                                                                  "(default 5 on cpu, 10 on cuda)")
    parser.add_argument("--history-frames", default=",".join(map(str, DEFAULT_HISTORY_FRAMES)),
                        help="history lengths in frames at 4 FPS, multiples of 4 (default %(default)s)")
    parser.add_argument("--threads", type=int, default=None,
                        help="torch CPU threads (default: torch's, or 1 when the load average exceeds the cpus)")
    parser.add_argument("--no-flops", action="store_true", help="skip the FLOP counts")
    parser.add_argument("--no-preview", action="store_true", help="leave the preview decode out of the breakdown")
    parser.add_argument("--preview-plans", type=int, default=None,
                        help="breakdown steps (the last ones) with the preview decode on (default 3 on cpu, all on "
                             "cuda, none at full size on cpu)")
    parser.add_argument("--peak-tflops", type=float, default=None,
                        help="the GPU's dense peak for --dtype (e.g. 989 for an H100 SXM in bf16): prints utilisation")
    parser.add_argument("--json", type=Path, default=None, help="also write the figures as JSON here")
    args = parser.parse_args(argv)
    args.history_frames = tuple(sorted({int(v) for v in args.history_frames.split(",") if v.strip()}))
    if not args.history_frames or any(h < 4 or h % 4 for h in args.history_frames):
        parser.error("--history-frames takes positive multiples of 4")
    cuda = args.device.startswith("cuda")
    args.dtype_requested = args.dtype
    args.dtype, args.dtype_reason = pick_dtype(args.dtype, args.device)
    args.repeats = args.repeats or (10 if cuda else 5)
    args.plans = args.steps or args.plans or (20 if cuda else 8)
    default_previews = args.plans if cuda else (0 if args.full_size else 3)  # full size on a CPU: 20 TFLOP of VAE
    args.preview_plans = min(args.plans, default_previews if args.preview_plans is None else args.preview_plans)
    if min(args.plans, args.repeats) < 1:
        parser.error("--plans/--steps/--repeats must be >= 1")
    return args


def main(argv=None) -> int:
    args = parse_args(argv)
    busy = (not args.device.startswith("cuda") and args.threads is None and os.cpu_count()
            and load_average() != "n/a" and float(load_average()) > os.cpu_count())
    if busy:
        args.threads = 1  # all threads of an op wait for the slowest: on busy cores 2 threads run 3-4x slower
    if args.threads:
        torch.set_num_threads(args.threads)
    command = " ".join([".venv/bin/python", "bench/bench_sparsevideonav.py", *map(shlex.quote, sys.argv[1:])])
    print(f"$ {command}")
    print_machine(args.device, args.dtype, args.dtype_reason)
    results: dict = {"command": command, "args": {k: (list(v) if isinstance(v, tuple) else str(v) if
                                                      isinstance(v, Path) else v) for k, v in vars(args).items()}}
    spec = full_size_spec() if args.full_size else cpu_spec()
    device = torch.device(args.device)
    cold = args.full_size and device.type == "cpu"
    flop_history = sorted(set(args.history_frames) | set(breakdown_history_frames(args.plans, warmup=not cold))
                          | {TYPICAL_HISTORY})

    full_flops = full_summary = None
    if not args.no_flops:
        start = time.perf_counter()
        full_flops = count_flops(full_size_spec(), flop_history, with_text_encoder=True)
        flop_seconds = time.perf_counter() - start

    if device.type == "cuda" and not cuda_available():
        print(f"\nNO CUDA DEVICE AVAILABLE: torch {torch.__version__} sees no GPU (torch.cuda.is_available() is "
              f"False), so the full-size GPU timing cannot run here. Nothing was timed.")
        if full_flops is not None:
            print("\n## 5. FLOPs per policy step at full size (what the GPU run would execute)")
            print_full_size_flops(full_flops, args.history_frames)
        return 0
    if args.full_size and device.type == "cpu" and args.steps is None:
        print("\nFull size on the CPU is opt-in (a bf16 backbone forward alone takes ~24 s on 2 cores): add "
              "--steps 1 (and --dtype bfloat16). Nothing was timed.")
        return 0
    if device.type == "cuda":
        print(f"device: {torch.cuda.get_device_name(device)}, CUDA {torch.version.cuda}")
    if busy:
        print(f"NOTE: the load average exceeds the {os.cpu_count()} cpus, so other processes share them: running on "
              f"1 torch thread (with 2, every op waits for its descheduled thread and runs 3-4x slower; --threads N "
              f"forces N). CPU timings below are slower and noisier than on an idle machine; FLOPs are exact.")

    print(f"\n## Configuration: {spec.name}")
    for line in spec.describe():
        print(f"  {line}")
    dtype = DTYPES[args.dtype]
    with tempfile.TemporaryDirectory(prefix="bench-svn-") as tmp:
        start = time.perf_counter()
        models = build_models(spec, args.device, dtype, Path(tmp))
        counts = parameter_counts(models)
        print(f"  parameters: Wan part {counts['backbone_wan_M']:.1f}M, history modules "
              f"{counts['history_modules_M']:.1f}M, action head {counts['action_head_M']:.1f}M, VAE "
              f"{counts['vae_M']:.1f}M (random weights, built on {args.device} in {time.perf_counter() - start:.1f} s)")
        results["parameters_M"] = counts
        spec_flops = None
        if not args.no_flops:
            spec_flops = full_flops if args.full_size else count_flops(spec, flop_history)
        clock = Clock(device)
        use_clock_in_policy(clock)
        if device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(device)
        run_measurements(args, spec, models, clock, results, spec_flops, full_flops)
        if device.type == "cuda":
            peak = torch.cuda.max_memory_allocated(device) / 2 ** 30
            print(f"\npeak GPU memory allocated: {peak:.1f} GiB")
            results["peak_gpu_memory_GiB"] = peak
        if spec_flops is not None and not args.full_size:
            results["flops"] = spec_flops

    if full_flops is not None:
        print(f"\n## 5. FLOPs per policy step at full size (Wan2.1-1.3B + formers + action head + Wan2.1 VAE, "
              f"256x256, 4 steps; counted in {flop_seconds:.0f} s)")
        full_summary = print_full_size_flops(full_flops, args.history_frames)
        results["full_size_flops"] = full_flops
        results["full_size_flop_summary"] = full_summary
        measured = results.get("breakdown", {}).get("median")
        peak, source = args.peak_tflops, "given by --peak-tflops"
        if peak is None and device.type == "cuda":
            name = torch.cuda.get_device_name(device)
            peak, source = device_peak_tflops(name), f"dense bf16 peak of the {name}"
        if args.full_size and measured and peak:
            backbone = full_flops["backbone_s"] / 1e12 / measured["backbone_s"]
            print(f"  measured backbone throughput {backbone:.0f} TFLOP/s = {backbone / peak * 100:.0f}% "
                  f"of the {peak:.0f} TFLOP/s {source}")
            for part in ("backbone_s", "action_head_s", "preview_decode_s"):
                if part in measured and full_flops.get(part):
                    floor_s = full_flops[part] / (peak * 1e12)
                    print(f"  {part.removesuffix('_s'):<14} {measured[part]:.3f} s = {measured[part] / floor_s:.2f}x "
                          f"its FLOP floor ({floor_s:.3f} s at {peak:.0f} TFLOP/s)")

    print("\n## 6. Full size on a GPU")
    if args.full_size and device.type == "cuda":
        print("  this run (sections 1-4 above are the full-size model on the GPU)")
    else:
        print("  .venv/bin/python bench/bench_sparsevideonav.py --full-size --device cuda --dtype bfloat16")
        print("  builds the paper-size models (random weights) directly on the GPU and times sections 1-4 there;"
              + (" no CUDA device here" if not cuda_available() else ""))

    print(f"\nload average at the end {load_average()} ({os.cpu_count()} cpus)")
    print("\n## Summary (markdown)")
    print(f"`{command}`\n")
    for line in summary_table(args, spec, results, full_summary):
        print(line)
    if args.json:
        results["breakdown"] = {k: v for k, v in results.get("breakdown", {}).items()}
        args.json.write_text(json.dumps(results, indent=2, default=float))
        print(f"\nwrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
