"""Memory plan: the bytes each part of a policy will take on each device, computed before any weight loads.

For the configured policy (sparsevideonav or janusvln), device, dtype, quantisation and memory windows:

* weights: every parameter and buffer of the real modules, built on the meta device from the real configs
  (the checkpoint's config.json files, the tiny model's, or the released sizes), at the dtype the loader
  gives them (diffusers' float32-kept modules included); quantised matrices at torchao's real bytes per weight
  including scales (janusvln/quantization.quantized_weight_bytes, measured against the library by the tests);
* KV memories at their full windows: JanusVLN's spatial memory (SpatialMemory: a ring of initial + sliding + 1
  frame slots per cached global-attention layer of the aggregator, keys and values (1, heads, slots, tokens,
  head_dim)) and semantic memory (SemanticMemory: Qwen's per-layer keys/values (1, kv_heads, tokens, head_dim)
  of the prompt prefix + initial + sliding frame blocks), plus the per-step working copy transformers'
  DynamicCache makes of it (it concatenates, the memory keeps its own tensors);
* the largest activation of a step: an estimate, stated per phase in the plan (the live intermediates of the
  widest layer at the step's token count; attention scores are not counted: PyTorch's fused SDPA kernels on
  CUDA do not materialise them), plus the transient a quantised matmul makes (torchao dequantises the matrix);
* the CUDA context: CUDA_CONTEXT_BYTES, a stated constant (CUDA context + cuBLAS/cuDNN workspaces of torch 2.x
  with lazy module loading, typically 0.4-0.6 GiB on Ada/Hopper GPUs; counted on every CUDA device the plan
  uses, also when the free memory is measured after the context exists, so the plan errs on the safe side).

The total per device is compared with the device's free memory (torch.cuda.mem_get_info on CUDA, or a given
number). A plan that does not fit names settings that would (each computed with this same plan).

All sizes are bytes; printed in GiB (2^30 bytes), the unit nvidia-smi's MiB and torch report in.
"""
from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Optional

import torch

GiB = 2 ** 30
CUDA_CONTEXT_BYTES = 600 * 2 ** 20  # see the module docstring
CAMERA_SIZE = (480, 640)  # (height, width) of the camera frames planned for (camera_node's default 640 x 480)
INSTRUCTION_TOKENS = 64  # an instruction of about 50 words (tokens of the task text the step runs)
PREFIX_TOKENS_ESTIMATE = 96  # system turn + user header when the checkpoint's tokenizer is not at hand
SUFFIX_TOKENS_ESTIMATE = 64 + INSTRUCTION_TOKENS  # task text, action list, assistant header + the instruction
ELEMENT = {"float32": 4, "bfloat16": 2, "float16": 2}
DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


class MemoryPlanError(ValueError):
    """The plan cannot be computed (no config to read, unknown policy)."""


@dataclass
class Part:
    name: str
    device: str
    nbytes: int
    kind: str  # weights | kv | activation | context
    detail: str = ""


@dataclass
class MemoryPlan:
    policy: str
    device: str  # the policy's main device
    settings: dict[str, Any]
    parts: list[Part]
    free_bytes: Optional[int] = None  # free memory of `device` (None: unknown, nothing compared)
    free_source: str = ""
    alternatives: list[str] = field(default_factory=list)  # settings that would fit (when it does not)

    def device_bytes(self, device: Optional[str] = None) -> int:
        device = self.device if device is None else device
        return sum(p.nbytes for p in self.parts if p.device == device)

    def kind_bytes(self, kind: str, device: Optional[str] = None) -> int:
        device = self.device if device is None else device
        return sum(p.nbytes for p in self.parts if p.kind == kind and p.device == device)

    @property
    def devices(self) -> list[str]:
        return sorted({p.device for p in self.parts}, key=lambda d: (d != self.device, d))

    @property
    def fits(self) -> Optional[bool]:
        return None if self.free_bytes is None else self.device_bytes() <= self.free_bytes

    def breakdown(self, device: Optional[str] = None) -> str:
        """'weights 8.9, KV 9.9, activations 0.9, CUDA context 0.6' (GiB) on `device`."""
        names = (("weights", "weights"), ("kv", "KV"), ("activation", "activations"), ("context", "CUDA context"))
        return ", ".join(f"{label} {gib(self.kind_bytes(kind, device))}" for kind, label in names
                         if self.kind_bytes(kind, device))

    def summary(self) -> str:
        """One line: total on the main device vs free memory, the breakdown, other devices."""
        total = self.device_bytes()
        if self.free_bytes is None:
            head = f"{gib(total)} GiB on {self.device} (free memory not known)"
        else:
            head = (f"{gib(total)} of {gib(self.free_bytes)} GiB free on {self.device} "
                    f"({'fits' if self.fits else 'does NOT fit'})")
        others = [f"{gib(self.device_bytes(d))} GiB on {d}" for d in self.devices if d != self.device]
        return f"memory plan {head}: {self.breakdown()}" + (f"; {', '.join(others)}" if others else "")

    def refusal(self) -> str:
        """The one-line error of a plan that does not fit."""
        fixes = "; or ".join(self.alternatives) if self.alternatives else "no single setting found that fits"
        return f"{self.policy} does not fit: {self.summary()}; would fit: {fixes}"

    def table(self) -> str:
        lines = [f"{self.policy} memory plan ({', '.join(f'{k} {v}' for k, v in self.settings.items())})"]
        for device in self.devices:
            lines.append(f"  {device}:")
            for part in (p for p in self.parts if p.device == device):
                lines.append(f"    {part.name:<34} {size(part.nbytes):>11}  {part.detail}")
            lines.append(f"    {'total':<34} {size(self.device_bytes(device)):>11}")
        lines.append(self.summary())
        if self.fits is False:
            lines.append("would fit: " + ("; or ".join(self.alternatives) or "no single setting found"))
        return "\n".join(lines)


def gib(nbytes: float) -> str:
    return f"{nbytes / GiB:.2f}"


def size(nbytes: float) -> str:
    """'8.08 GiB', or '3.52 MiB' below 0.1 GiB (the tiny models)."""
    return f"{nbytes / GiB:.2f} GiB" if nbytes >= 0.1 * GiB else f"{nbytes / 2 ** 20:.2f} MiB"


def is_cuda(device: str) -> bool:
    return str(device).strip().lower().startswith("cuda")


def normal_device(device: str) -> str:
    device = str(device).strip().lower()
    return "cuda:0" if device == "cuda" else device


def free_device_memory(device: str, device_memory_gb: Optional[float] = None) -> tuple[Optional[int], str]:
    """(free bytes, where the number came from): a given size wins, else torch.cuda.mem_get_info on CUDA."""
    if device_memory_gb is not None:
        return int(device_memory_gb * GiB), f"given: {device_memory_gb:g} GiB"
    if is_cuda(device) and torch.cuda.is_available():
        free, _total = torch.cuda.mem_get_info(torch.device(normal_device(device)))
        return int(free), "torch.cuda.mem_get_info"
    return None, "not known"


# -- counting tensors on the meta device ------------------------------------------------------------

@dataclass(frozen=True)
class TensorShape:
    name: str
    shape: tuple[int, ...]
    floating: bool
    element: int  # bytes per element as built (non-floating tensors keep theirs)

    @property
    def numel(self) -> int:
        n = 1
        for s in self.shape:
            n *= s
        return n


def meta_tensors(build: Callable[[], torch.nn.Module]) -> tuple[torch.nn.Module, list[TensorShape]]:
    """Build a module on the meta device (no memory) and list its parameters and buffers (shared ones once)."""
    with torch.device("meta"):
        module = build()
    seen: set[int] = set()
    tensors = []
    for name, tensor in list(module.named_parameters()) + list(module.named_buffers()):
        if id(tensor) in seen:
            continue
        seen.add(id(tensor))
        tensors.append(TensorShape(name, tuple(tensor.shape), tensor.is_floating_point(), tensor.element_size()))
    return module, tensors


def tensors_bytes(tensors: list[TensorShape], dtype: str, keep_fp32: tuple[str, ...] = (),
                  weight_bytes: Optional[Callable[[TensorShape], Optional[int]]] = None) -> int:
    """Bytes of `tensors` after the loader's cast to `dtype` (names containing a `keep_fp32` module stay
    float32, as diffusers' from_pretrained keeps them); `weight_bytes` may price a tensor itself (quantised)."""
    total = 0
    for t in tensors:
        priced = weight_bytes(t) if weight_bytes is not None else None
        if priced is not None:
            total += priced
        elif not t.floating:
            total += t.numel * t.element
        elif keep_fp32 and any(m in t.name for m in keep_fp32):
            total += t.numel * 4
        else:
            total += t.numel * ELEMENT[dtype]
    return total


# -- JanusVLN ----------------------------------------------------------------------------------------

@dataclass
class JanusShapes:
    """What the JanusVLN plan needs of the model: tensors per part (meta device), sizes, prompt lengths."""

    arch: Any  # models.Architecture
    parts: dict[str, list[TensorShape]]
    linear_shapes: dict[str, tuple[int, int]]  # quantisable Linear weight name -> (out, in)
    prefix_tokens: int
    suffix_tokens: int
    source: str

    @classmethod
    def from_architecture(cls, arch, source: str, prefix_tokens: int = PREFIX_TOKENS_ESTIMATE,
                          suffix_tokens: int = SUFFIX_TOKENS_ESTIMATE) -> "JanusShapes":
        from sparsevideonav_ros.policies.janusvln.models import JanusVLNModel
        from sparsevideonav_ros.policies.janusvln.quantization import quantized_linears

        model, tensors = meta_tensors(lambda: JanusVLNModel(arch))
        linears = {f"{name}.weight": tuple(module.weight.shape) for name, module in quantized_linears(model.qwen)}
        groups = (("Qwen language model", ("qwen.model.language_model.", "qwen.lm_head.")),
                  ("Qwen ViT", ("qwen.model.visual.",)), ("VGGT aggregator", ("vggt.",)), ("spatial merger", ("merger.",)))
        parts: dict[str, list[TensorShape]] = {name: [] for name, _ in groups}
        for t in tensors:
            for name, prefixes in groups:
                if t.name.startswith(prefixes):
                    parts[name].append(t)
                    break
            else:
                raise MemoryPlanError(f"JanusVLN tensor {t.name} belongs to no part of the plan")
        return cls(arch, parts, linears, prefix_tokens, suffix_tokens, source)

    @classmethod
    def from_checkpoint(cls, checkpoint: str) -> "JanusShapes":
        """From the checkpoint's config.json and tokenizer ('tiny': the cached tiny model's)."""
        from sparsevideonav_ros.policies.janusvln.models import load_architecture, resolve_checkpoint

        folder = resolve_checkpoint(checkpoint)
        if not (folder / "config.json").is_file():
            raise MemoryPlanError(f"janusvln.checkpoint {folder} has no config.json to plan from (give the folder, "
                                  f"or plan for the released sizes)")
        prefix, suffix = _janus_prompt_lengths(folder)
        return cls.from_architecture(load_architecture(folder), str(folder), prefix, suffix)

    @classmethod
    def released(cls) -> "JanusShapes":
        from sparsevideonav_ros.policies.janusvln.models import release_architecture

        return cls.from_architecture(release_architecture(), "released sizes (Qwen2.5-VL-7B + VGGT-1B)")


def _janus_prompt_lengths(folder: Path) -> tuple[int, int]:
    """(prefix tokens, suffix tokens for an INSTRUCTION_TOKENS-word instruction) from the folder's tokenizer."""
    from sparsevideonav_ros.policies.janusvln.models import load_architecture
    from sparsevideonav_ros.policies.janusvln.prompt import PromptLayout, find_chat_template, load_tokenizer

    try:
        tokenizer = load_tokenizer(folder)
        qwen = load_architecture(folder).qwen
        layout = PromptLayout.build(tokenizer, find_chat_template(tokenizer, folder), qwen.image_token_id,
                                    qwen.vision_start_token_id, qwen.vision_end_token_id)
    except Exception:  # noqa: BLE001 - no usable tokenizer: the stated estimates
        return PREFIX_TOKENS_ESTIMATE, SUFFIX_TOKENS_ESTIMATE
    return len(layout.prefix_ids), len(layout.suffix_ids(" ".join(["go"] * INSTRUCTION_TOKENS)))


def janus_frame_geometry(arch, camera_size: tuple[int, int] = CAMERA_SIZE) -> dict[str, int]:
    """Token counts of one frame: aggregator tokens (special + patches), Qwen merged tokens, ViT patches."""
    from sparsevideonav_ros.policies.janusvln.vision_inputs import crop_rows, resized_shape

    p = arch.aggregator.patch_size
    height, width = resized_shape(camera_size[0], camera_size[1], arch.image_width, p)
    rows_px = crop_rows(height, arch.image_width)
    height = rows_px.stop - rows_px.start
    rows, cols = height // p, width // p
    merge = int(arch.qwen.vision_config.spatial_merge_size)
    q_rows, q_cols = rows // merge * merge, cols // merge * merge
    return {"aggregator_tokens": arch.aggregator.patch_start + rows * cols, "vit_patches": q_rows * q_cols,
            "merged_tokens": (q_rows // merge) * (q_cols // merge), "merged_rows": q_rows // merge,
            "merged_cols": q_cols // merge}


def janusvln_plan(config, shapes: JanusShapes, free_bytes: Optional[int] = None, free_source: str = "",
                  camera_size: tuple[int, int] = CAMERA_SIZE, alternatives: bool = True) -> MemoryPlan:
    """The plan of a JanusVLNConfig for a model of `shapes` (everything on config.device)."""
    from sparsevideonav_ros.policies.janusvln.configuration_janusvln import resolve_dtype, resolve_kv_dtype
    from sparsevideonav_ros.policies.janusvln.models import FEATURE_LAYER
    from sparsevideonav_ros.policies.janusvln.quantization import quantized_weight_bytes

    device = normal_device(config.device)
    dtype = resolve_dtype(config.dtype, config.device)
    kv_dtype = resolve_kv_dtype(config.kv_cache_dtype, config.dtype, config.device)
    e, kv_e = ELEMENT[dtype], ELEMENT[kv_dtype]
    arch, text, vision, agg = shapes.arch, shapes.arch.qwen.text_config, shapes.arch.qwen.vision_config, \
        shapes.arch.aggregator
    q = config.quantization
    geo = janus_frame_geometry(arch, camera_size)
    parts: list[Part] = []

    def quantised(t: TensorShape) -> Optional[int]:
        shape = shapes.linear_shapes.get(t.name)
        return None if shape is None or q == "none" else quantized_weight_bytes(shape[0], shape[1], q,
                                                                                DTYPES[dtype])

    for name, tensors in shapes.parts.items():
        count = sum(t.numel for t in tensors)
        if name == "Qwen language model" and q != "none":
            nbytes = tensors_bytes(tensors, dtype, weight_bytes=quantised)
            detail = f"{count / 1e9:.3f} B parameters, decoder linears {q} (torchao), embeddings + lm_head {dtype}"
        else:
            nbytes = tensors_bytes(tensors, dtype)
            detail = f"{count / 1e9:.3f} B parameters, {dtype}"
        parts.append(Part(f"weights: {name}", device, nbytes, "weights", detail))

    # Spatial memory: the global blocks 0 .. FEATURE_LAYER of the aggregator cache whole frames.
    frames = config.initial_window + config.sliding_window
    cached_layers = FEATURE_LAYER % agg.depth + 1
    p_tokens = geo["aggregator_tokens"]
    if config.spatial_memory:
        slots = frames + 1
        nbytes = 2 * cached_layers * agg.embed_dim * slots * p_tokens * kv_e
        parts.append(Part("KV: spatial memory", device, nbytes, "kv",
                          f"k+v x {cached_layers} layers x ({agg.num_heads} heads x {agg.embed_dim // agg.num_heads}) x "
                          f"{slots} slots ({config.initial_window} + {config.sliding_window} + 1) x {p_tokens} tokens, "
                          f"{kv_dtype}"))
    layers = int(text.num_hidden_layers)
    kv_heads = int(text.num_key_value_heads)
    head_dim = int(getattr(text, "head_dim", None) or text.hidden_size // text.num_attention_heads)
    per_token = 2 * layers * kv_heads * head_dim  # elements of keys + values per token
    block = geo["merged_tokens"] + 2
    step_tokens = shapes.suffix_tokens + config.max_new_tokens
    if config.semantic_memory:
        tokens = shapes.prefix_tokens + frames * block
        parts.append(Part("KV: semantic memory", device, per_token * tokens * kv_e, "kv",
                          f"k+v x {layers} layers x ({kv_heads} kv heads x {head_dim}) x {tokens} tokens "
                          f"(prefix {shapes.prefix_tokens} + {frames} frames x {block}), {kv_dtype}"))
        parts.append(Part("KV: semantic working copy", device, per_token * (tokens + step_tokens) * e, "kv",
                          f"the step's DynamicCache: memory + {step_tokens} task/answer tokens, {dtype}"))
        vit_frames, lm_tokens = 1, max(block, shapes.suffix_tokens)
    else:
        images = config.history_frames + 1
        tokens = shapes.prefix_tokens + images * block + step_tokens
        parts.append(Part("KV: prompt (rebuilt every step)", device, per_token * tokens * e, "kv",
                          f"{tokens} tokens ({images} images x {block} + text + answer), {dtype}"))
        vit_frames, lm_tokens = images, tokens - config.max_new_tokens

    # Largest activation of a step (estimate; the phases run one after the other).
    hidden, inter = int(text.hidden_size), int(text.intermediate_size)
    dequant = 0
    if q != "none":
        dequant = max(o * i for o, i in shapes.linear_shapes.values()) * e
    n_vit = vit_frames * geo["vit_patches"]
    phases = {
        f"Qwen decoder over {lm_tokens} tokens": lm_tokens * (3 * inter + 4 * hidden) * e + dequant
        + int(text.vocab_size) * 4,
        f"Qwen ViT over {n_vit} patches": n_vit * (3 * int(vision.intermediate_size) + 4 * int(vision.hidden_size)) * e
        + n_vit * 1176 * (4 + e),
    }
    mlp = int(agg.embed_dim * agg.mlp_ratio)
    agg_act = p_tokens * (mlp + 6 * agg.embed_dim) * e
    if config.spatial_memory:
        if kv_dtype != dtype:
            agg_act += 2 * (frames + 1) * p_tokens * agg.embed_dim * e  # the held frames cast to the compute dtype
        phases[f"aggregator step over {p_tokens} tokens"] = agg_act
    else:
        s = frames + 1  # no memory: all frames of the episode each step (grows; planned at the windows' size)
        phases[f"aggregator over {s} frames (grows with the episode)"] = s * p_tokens * (mlp + 8 * agg.embed_dim) * e
    phase, largest = max(phases.items(), key=lambda item: item[1])
    parts.append(Part("largest step activation", device, largest, "activation",
                      f"estimate: {phase}" + (f", incl. one {q} matrix dequantised to {dtype}" if dequant and
                                              phase.startswith("Qwen decoder") else "")))
    if is_cuda(device):
        parts.append(Part("CUDA context", device, CUDA_CONTEXT_BYTES, "context", "stated constant"))

    settings = {"checkpoint": shapes.source, "device": device, "dtype": dtype, "quantization": q,
                "kv_cache_dtype": kv_dtype, "spatial_memory": config.spatial_memory,
                "semantic_memory": config.semantic_memory,
                "windows": f"{config.initial_window} + {config.sliding_window}"}
    plan = MemoryPlan("janusvln", device, settings, parts, free_bytes, free_source)
    if alternatives and plan.fits is False:
        plan.alternatives = janusvln_alternatives(config, shapes, free_bytes, camera_size)
    return plan


def janusvln_alternatives(config, shapes: JanusShapes, free_bytes: int,
                          camera_size: tuple[int, int] = CAMERA_SIZE) -> list[str]:
    """Settings that would fit `free_bytes`, each one planned: a stronger quantisation, a narrower KV dtype, the
    largest sliding window that fits (with the current quantisation, else with nf4)."""
    def total(**changes) -> int:
        return janusvln_plan(dataclasses.replace(config, **changes), shapes, free_bytes,
                             camera_size=camera_size, alternatives=False).device_bytes()

    found: list[str] = []
    order = ("none", "int8", "nf4")
    for q in order[order.index(config.quantization) + 1:]:
        size = total(quantization=q)
        if size <= free_bytes:
            found.append(f"janusvln.quantization {q} ({gib(size)} GiB)")
    from sparsevideonav_ros.policies.janusvln.configuration_janusvln import resolve_dtype, resolve_kv_dtype
    if ELEMENT[resolve_kv_dtype(config.kv_cache_dtype, config.dtype, config.device)] > 2:
        size = total(kv_cache_dtype="bfloat16")
        if size <= free_bytes:
            found.append(f"janusvln.kv_cache_dtype bfloat16 ({gib(size)} GiB)")
    if resolve_dtype(config.dtype, config.device) == "float32":
        size = total(dtype="bfloat16")
        if size <= free_bytes:
            found.append(f"janusvln.dtype bfloat16 ({gib(size)} GiB)")
    if config.spatial_memory or config.semantic_memory:
        for q in dict.fromkeys((config.quantization, "nf4")):
            best = None
            for window in range(config.sliding_window - 1, 0, -1):
                size = total(quantization=q, sliding_window=window)
                if size <= free_bytes:
                    best = (window, size)
                    break
            if best is not None:
                prefix = "" if q == config.quantization else f"janusvln.quantization {q} + "
                found.append(f"{prefix}janusvln.sliding_window {best[0]} frames ({gib(best[1])} GiB)")
                break
    return found


# -- SparseVideoNav -----------------------------------------------------------------------------------

@dataclass
class SvnShapes:
    """Tensors of the SparseVideoNav parts on the meta device and the sizes the plan reads."""

    transformer: list[TensorShape]
    transformer_fp32: tuple[str, ...]
    vae: list[TensorShape]
    vae_fp32: tuple[str, ...]
    text_encoder: list[TensorShape]
    action_head: Optional[list[TensorShape]]
    transformer_config: dict
    vae_config: dict
    image_size: int
    source: str

    @classmethod
    def build(cls, transformer_config: dict, vae_config: dict, text_config: dict, head_config: Optional[dict],
              image_size: int, source: str) -> "SvnShapes":
        from diffusers import AutoencoderKLWan
        from transformers import UMT5Config, UMT5EncoderModel

        from sparsevideonav_ros.policies.sparsevideonav.action_head import SparseVideoNavActionHead
        from sparsevideonav_ros.policies.sparsevideonav.transformer import SparseVideoNavTransformer

        transformer, t_tensors = meta_tensors(lambda: SparseVideoNavTransformer.from_config(transformer_config))
        vae, v_tensors = meta_tensors(lambda: AutoencoderKLWan.from_config(vae_config))
        _, text = meta_tensors(lambda: UMT5EncoderModel(UMT5Config(**text_config)))
        head = None
        if head_config is not None:
            _, head = meta_tensors(lambda: SparseVideoNavActionHead.from_config(head_config))
        return cls(t_tensors, tuple(transformer._keep_in_fp32_modules or ()), v_tensors,
                   tuple(vae._keep_in_fp32_modules or ()), text, head, dict(transformer.config),
                   dict(vae.config), image_size, source)

    @classmethod
    def from_checkpoint(cls, config) -> "SvnShapes":
        """From our layout's config files ('tiny': the cached tiny set); the authors' release layout is planned at
        the released sizes (its svn_ckpt/config.json uses the authors' naming)."""
        from sparsevideonav_ros.policies.sparsevideonav import models

        folder = models.tiny_checkpoint_dir() if config.checkpoint == models.TINY else Path(config.checkpoint).expanduser()
        layout = folder / models.LAYOUT_FILE
        if not layout.is_file():
            if (folder / "svn_ckpt").is_dir():
                return cls.released(head=config.action_head != "pose" and bool(config.action_head_dir))
            raise MemoryPlanError(f"sparsevideonav.checkpoint {folder} has no {models.LAYOUT_FILE} to plan from "
                                  f"(give the folder, or plan for the released sizes)")
        head, _why = models.resolve_action_head(config, folder / "action_head")
        head_dir = Path(config.action_head_dir).expanduser() if config.action_head_dir else folder / "action_head"
        read = (lambda path: json.loads(path.read_text()))
        return cls.build(read(folder / "transformer" / "config.json"), read(folder / "vae" / "config.json"),
                         read(folder / "text_encoder" / "config.json"),
                         read(head_dir / "config.json") if head == "dit" else None,
                         int(read(layout)["image_size"]), str(folder))

    @classmethod
    def released(cls, head: bool = True) -> "SvnShapes":
        """The paper's sizes: Wan2.1-T2V-1.3B + the formers (512/4/8/10240, 512/6/8/2560), the Wan2.1 VAE,
        umT5-xxl, and the paper's action head (as bench/bench_sparsevideonav.py's full_size_spec)."""
        from sparsevideonav_ros.policies.sparsevideonav.action_head import ActionHeadConfig, SparseVideoNavActionHead
        from sparsevideonav_ros.policies.sparsevideonav.text_encoding import UMT5_XXL_CONFIG
        from sparsevideonav_ros.policies.sparsevideonav.video_latents import WAN21_VAE_CONFIG

        tokens = 32 * 32
        transformer = dict(num_attention_heads=12, attention_head_dim=128, ffn_dim=8960, num_layers=30, text_dim=4096,
                           freq_dim=256,
                           qformer_config=dict(dim=512, depth=4, heads=8, num_latents=10 * tokens, language_dim=4096),
                           video_former_config=dict(dim=512, depth=6, heads=8, dim_head=64, num_latents=10 * tokens // 4,
                                                    num_slots=10, input_dim=512, language_dim=4096))
        head_config = None
        if head:
            with torch.device("meta"):
                head_config = dict(SparseVideoNavActionHead.from_head_config(ActionHeadConfig()).config)
        return cls.build(transformer, dict(WAN21_VAE_CONFIG), dict(UMT5_XXL_CONFIG), head_config, 256,
                         "released sizes (Wan2.1-T2V-1.3B + formers, Wan2.1 VAE, umT5-xxl)")


def sparsevideonav_plan(config, shapes: SvnShapes, free_bytes: Optional[int] = None, free_source: str = "",
                        alternatives: bool = True) -> MemoryPlan:
    device = normal_device(config.device)
    text_device = "cpu" if config.text_encoder_offload else normal_device(config.text_encoder_device)
    dtype = config.dtype
    e = ELEMENT[dtype]
    parts: list[Part] = []

    def weights(name: str, tensors: list[TensorShape], keep: tuple[str, ...], where: str, as_dtype: str) -> None:
        count = sum(t.numel for t in tensors)
        parts.append(Part(f"weights: {name}", where, tensors_bytes(tensors, as_dtype, keep if as_dtype != "float32"
                                                                   else ()), "weights",
                          f"{count / 1e9:.3f} B parameters, {as_dtype}" + (" (float32-kept modules)" if keep and
                                                                          as_dtype != "float32" else "")))

    weights("backbone (Wan2.1 + formers)", shapes.transformer, shapes.transformer_fp32, device, dtype)
    # The VAE loads with load_vae(dtype=...), which casts everything (no float32-kept modules).
    weights("VAE", shapes.vae, (), device, dtype)
    if shapes.action_head is not None:
        weights("action head", shapes.action_head, (), device, dtype)
    weights("text encoder (umT5)", shapes.text_encoder, (), text_device, "float32")
    if config.text_encoder_offload and is_cuda(config.text_encoder_device):
        umt5 = next(p for p in parts if p.name.startswith("weights: text encoder"))
        parts.append(Part("text encoder while encoding", normal_device(config.text_encoder_device), umt5.nbytes,
                          "weights", "moved there per instruction, then freed"))

    t = shapes.transformer_config
    dim = int(t["num_attention_heads"]) * int(t["attention_head_dim"])
    grid = shapes.image_size // 8
    tokens = 10 * (grid // 2) ** 2  # 2 reference + 8 future latents, 2 x 2 patches
    q_config = t.get("qformer_config") or {}
    max_frames = int(q_config.get("max_frames", 512))
    history_tokens = max_frames * grid * grid
    q_dim = int(q_config.get("dim", 512))
    base = int(shapes.vae_config.get("base_dim", 96))
    phases = {
        f"backbone block over {tokens} tokens": tokens * (int(t["ffn_dim"]) + 6 * dim) * e,
        f"history compression of {max_frames} chunks ({history_tokens} tokens)":
            history_tokens * (dim + 3 * q_dim) * e,
        "VAE decode of a 4-frame chunk": 8 * 2 * base * 4 * shapes.image_size ** 2 * e,
    }
    phase, largest = max(phases.items(), key=lambda item: item[1])
    parts.append(Part("largest step activation", device, largest, "activation", f"estimate: {phase}"))
    history = max_frames * 16 * grid * grid * e
    parts.append(Part("history latents", device, history, "kv", f"{max_frames} chunks x 16 x {grid} x {grid}, {dtype}"))
    for where in sorted({p.device for p in parts if is_cuda(p.device)}):
        parts.append(Part("CUDA context", where, CUDA_CONTEXT_BYTES, "context", "stated constant"))
    settings = {"checkpoint": shapes.source, "device": device, "dtype": dtype, "text_encoder_device": text_device}
    plan = MemoryPlan("sparsevideonav", device, settings, parts, free_bytes, free_source)
    if alternatives and plan.fits is False:
        found = []
        for label, changes in (("sparsevideonav.dtype bfloat16", dict(dtype="bfloat16")),
                               ("sparsevideonav.text_encoder_device cpu", dict(text_encoder_device="cpu",
                                                                               text_encoder_offload=False))):
            other = sparsevideonav_plan(dataclasses.replace(config, **changes), shapes, free_bytes,
                                        alternatives=False)
            if other.fits and other.device_bytes() < plan.device_bytes():
                found.append(f"{label} ({gib(other.device_bytes())} GiB)")
        plan.alternatives = found
    return plan


# -- entry points ---------------------------------------------------------------------------------------

def plan_for(policy: str, config, device_memory_gb: Optional[float] = None, released_sizes: bool = False,
             camera_size: tuple[int, int] = CAMERA_SIZE) -> MemoryPlan:
    """The plan of `policy` with its config (free memory: `device_memory_gb`, else measured on CUDA)."""
    free, source = free_device_memory(config.device, device_memory_gb)
    if policy == "janusvln":
        shapes = JanusShapes.released() if released_sizes else JanusShapes.from_checkpoint(config.checkpoint)
        return janusvln_plan(config, shapes, free, source, camera_size)
    if policy == "sparsevideonav":
        shapes = (SvnShapes.released(head=config.action_head == "dit" or bool(config.action_head_dir))
                  if released_sizes else SvnShapes.from_checkpoint(config))
        return sparsevideonav_plan(config, shapes, free, source)
    raise MemoryPlanError(f"no memory plan for policy {policy!r} (known: janusvln, sparsevideonav)")


def check_before_loading(policy: str, config, error: type = RuntimeError) -> Optional[MemoryPlan]:
    """On CUDA: plan, and raise `error` (one line: the plan and what would fit) when it does not fit the free
    memory. Returns the plan (None off CUDA: nothing is checked there)."""
    if not is_cuda(config.device) or not torch.cuda.is_available():
        return None
    try:
        plan = plan_for(policy, config)
    except MemoryPlanError:
        return None  # no config to plan from: the loader then says what is missing, in its own words
    if plan.fits is False:
        raise error(plan.refusal())
    return plan


def policy_plan_line(policy, name: str) -> str:
    """The one-line plan of a loaded policy (planned once per policy: the plan made before loading when there was
    one, else now), for its start-up line and policy/status."""
    plan = getattr(policy, "_memory_plan_cache", None)
    if plan is None:
        plan = getattr(getattr(policy, "models", None), "memory_plan", None)
    if plan is None:
        try:
            plan = plan_for(name, policy.config)
        except (MemoryPlanError, OSError, ValueError) as error:
            return f"memory plan: not available ({error})"
    policy._memory_plan_cache = plan
    return plan.summary()
