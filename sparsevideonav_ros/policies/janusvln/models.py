"""The JanusVLN model (Qwen2.5-VL + VGGT aggregator + spatial merger), its loading, and the `tiny` model.

A JanusVLN folder is the authors' Hugging Face layout (config.json of Qwen2.5-VL plus `lam`, safetensors
weights named as in checkpoints.py, tokenizer files with the chat template, preprocessor_config.json).
Sizes not in the authors' config.json (they are fixed in their code) may be given by our extra fields,
used by the small test models only:
    janusvln_aggregator: {...}      aggregator sizes (default: VGGT-1B)
    janusvln_image_width: 644       model input width in pixels
    vggt_merger_hidden_dim: 4096    (read by the authors' code too)

`tiny` builds a small random model once into a cache folder (SPARSEVIDEONAV_CACHE) in the authors' layout and
loads it through the same loader as real weights. Every weight is random; on top of that, its answer is wired to
be one of MOVE_FORWARD / TURN_LEFT / TURN_RIGHT (never STOP), *which* one chosen by the random weights from the
frames and the instruction (see _wire_action_choice), so a robot driven by it keeps moving and its answer logits
change with every input and weight (with the shipped seed the pick is mostly MOVE_FORWARD: the choice margin
moves, the winner rarely flips). It is not a navigation model.
"""
from __future__ import annotations

import json
import logging
import shutil
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Optional

import torch
from torch import nn

from sparsevideonav_ros.policies.model_cache import cached_folder
from sparsevideonav_ros.policies.janusvln import checkpoints
from sparsevideonav_ros.policies.janusvln.checkpoints import CheckpointError
from sparsevideonav_ros.policies.janusvln.fusion import SpatialMerger, fuse, group_patch_features
from sparsevideonav_ros.policies.janusvln.prompt import (IM_END, PromptLayout, find_chat_template, load_tokenizer,
                                                         make_tiny_tokenizer)
from sparsevideonav_ros.policies.janusvln.semantic import LanguageModel
from sparsevideonav_ros.policies.janusvln.spatial import AggregatorConfig, SpatialEncoder, SpatialMemory
from sparsevideonav_ros.policies.janusvln.vision_inputs import FrameInputs, ImageProcessing

import transformers.utils.logging as _transformers_logging  # noqa: E402

_transformers_logging.disable_progress_bar()
log = logging.getLogger(__name__)

TINY = "tiny"
# The cache folder is TINY_VERSION + a digest of the code that builds the tiny model (tiny_build_key): bump
# TINY_VERSION only for a change that code does not show.
TINY_VERSION = "janusvln-tiny-v3"
FEATURE_LAYER = -2  # the release reads aggregated_tokens[-2] (layer 23 of 24)
DEFAULT_LAM = 0.2
DEFAULT_IMAGE_WIDTH = 644
DEFAULT_MERGER_HIDDEN = 4096
# config.json fields that are JanusVLN's, not Qwen2.5-VL's
EXTRA_FIELDS = ("lam", "use_vggt_feature", "reference_frame", "vggt_merger_hidden_dim", "janusvln_aggregator",
                "janusvln_image_width")
DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


@dataclass
class Architecture:
    """Everything that shapes the module: the Qwen2.5-VL config and the JanusVLN extras."""

    qwen: Any  # transformers Qwen2_5_VLConfig
    aggregator: AggregatorConfig = field(default_factory=AggregatorConfig)
    merger_hidden_dim: int = DEFAULT_MERGER_HIDDEN
    lam: float = DEFAULT_LAM
    image_width: int = DEFAULT_IMAGE_WIDTH

    @classmethod
    def from_config_dict(cls, values: dict) -> "Architecture":
        from transformers import Qwen2_5_VLConfig

        values = dict(values)
        extras = {name: values.pop(name) for name in EXTRA_FIELDS if name in values}
        if values.get("model_type", "qwen2_5_vl") != "qwen2_5_vl":
            raise CheckpointError(f"config.json model_type is {values['model_type']!r}, expected 'qwen2_5_vl'")
        if extras.get("use_vggt_feature", True) is not True:
            raise CheckpointError("config.json has use_vggt_feature = false: not a JanusVLN checkpoint with its "
                                  "spatial encoder")
        if "lam" not in extras:
            log.warning("config.json has no 'lam'; using the paper's fusion weight %s", DEFAULT_LAM)
        qwen = Qwen2_5_VLConfig(**values)
        qwen._attn_implementation = "sdpa"
        return cls(qwen=qwen, aggregator=AggregatorConfig.from_dict(extras.get("janusvln_aggregator", {})),
                   merger_hidden_dim=int(extras.get("vggt_merger_hidden_dim", DEFAULT_MERGER_HIDDEN)),
                   lam=float(extras.get("lam", DEFAULT_LAM)),
                   image_width=int(extras.get("janusvln_image_width", DEFAULT_IMAGE_WIDTH)))

    def to_config_dict(self) -> dict:
        values = self.qwen.to_dict()
        values.update(lam=self.lam, use_vggt_feature=True, reference_frame="first",
                      vggt_merger_hidden_dim=self.merger_hidden_dim)
        if self.aggregator != AggregatorConfig():
            values["janusvln_aggregator"] = self.aggregator.to_dict()
        if self.image_width != DEFAULT_IMAGE_WIDTH:
            values["janusvln_image_width"] = self.image_width
        values["architectures"] = ["Qwen2_5_VLForConditionalGenerationForJanusVLN"]
        return values


class JanusVLNModel(nn.Module):
    """qwen (transformers Qwen2_5_VLForConditionalGeneration) + vggt.aggregator + merger."""

    def __init__(self, arch: Architecture) -> None:
        super().__init__()
        from transformers import Qwen2_5_VLForConditionalGeneration

        self.arch = arch
        self.qwen = Qwen2_5_VLForConditionalGeneration(arch.qwen)
        self.vggt = SpatialEncoder(arch.aggregator)
        self.merge_size = int(arch.qwen.vision_config.spatial_merge_size)
        self.merger = SpatialMerger(output_dim=int(arch.qwen.text_config.hidden_size),
                                    hidden_dim=arch.merger_hidden_dim, context_dim=2 * arch.aggregator.embed_dim,
                                    merge_size=self.merge_size)
        if int(arch.qwen.vision_config.patch_size) != arch.aggregator.patch_size:
            raise CheckpointError(f"Qwen patch size {arch.qwen.vision_config.patch_size} != aggregator patch size "
                                  f"{arch.aggregator.patch_size}: the token grids would not align")

    @property
    def aggregator(self):
        return self.vggt.aggregator

    def spatial_tokens(self, features: torch.Tensor, rows: int, cols: int) -> torch.Tensor:
        """Aggregator output of one frame (P, 2C) -> projected spatial tokens (merged tokens, hidden)."""
        grouped = group_patch_features(features, rows, cols, self.arch.aggregator.patch_start, self.merge_size)
        return self.merger(grouped.to(self.merger.mlp[0].weight.dtype))

    def fuse(self, visual: torch.Tensor, spatial: torch.Tensor) -> torch.Tensor:
        return fuse(visual, spatial, self.arch.lam)


@dataclass
class JanusVLN:
    """A loaded model with what it needs around it: prompt layout, image processing."""

    model: JanusVLNModel
    layout: PromptLayout
    processing: ImageProcessing
    folder: Optional[Path] = None

    def __post_init__(self) -> None:
        self.language = LanguageModel(self.model.qwen)

    @property
    def device(self) -> torch.device:
        return self.language.device

    def frame_inputs(self, rgb) -> FrameInputs:
        return FrameInputs.from_rgb(rgb, self.processing)

    def grid(self, frame: FrameInputs) -> tuple[int, int]:
        """(rows, cols) of the aggregator's patch grid for this frame."""
        p = self.processing.patch_size
        return frame.image.shape[1] // p, frame.image.shape[2] // p

    def merged_grid(self, frame: FrameInputs) -> tuple[int, int]:
        m = self.processing.merge_size
        return int(frame.grid_thw[0, 1]) // m, int(frame.grid_thw[0, 2]) // m

    def spatial_step(self, frame: FrameInputs, memory: SpatialMemory) -> torch.Tensor:
        """Run the new frame through the aggregator against the spatial memory -> spatial tokens."""
        image = frame.vggt_image.to(self.device, self.model.aggregator.camera_token.dtype)
        features = self.model.aggregator.forward_step(image, memory, FEATURE_LAYER)
        return self.model.spatial_tokens(features, *self.grid(frame))

    def spatial_recompute(self, frames: list[FrameInputs]) -> torch.Tensor:
        """No spatial memory: the aggregator over every frame so far; spatial tokens of the last one."""
        images = torch.stack([f.vggt_image for f in frames]).to(self.device, self.model.aggregator.camera_token.dtype)
        features = self.model.aggregator.forward_frames(images, FEATURE_LAYER)[-1]
        return self.model.spatial_tokens(features, *self.grid(frames[-1]))

    def visual_tokens(self, frames: list[FrameInputs]) -> torch.Tensor:
        inputs = [f.qwen_inputs() for f in frames]
        pixels = torch.cat([pixel_values for pixel_values, _ in inputs])
        grids = torch.cat([grid for _, grid in inputs])
        return self.language.visual_tokens(pixels, grids)


# -- loading -------------------------------------------------------------------------------------

def _read_json(path: Path, what: str) -> dict:
    if not path.is_file():
        raise CheckpointError(f"missing {what}: expected {path}")
    return json.loads(path.read_text(encoding="utf-8"))


def load_architecture(folder: Path) -> Architecture:
    return Architecture.from_config_dict(_read_json(Path(folder) / "config.json", "model config"))


def build_empty(arch: Architecture) -> JanusVLNModel:
    """The full module with parameters on the meta device (no memory; for loading, or counting parameters)."""
    from accelerate import init_empty_weights

    with init_empty_weights():
        return JanusVLNModel(arch)


def load_model_weights(folder: Path, arch: Architecture) -> JanusVLNModel:
    model = build_empty(arch)
    raw = checkpoints.read_weights(folder)
    layout = checkpoints.detect_layout(raw)
    state, dropped, names = checkpoints.release_to_ours(raw)
    del raw
    if dropped:
        log.info("%s: ignoring %d unused VGGT head tensors (%s ...)", folder, len(dropped), dropped[0])
    tied = "qwen.model.language_model.embed_tokens.weight"
    if arch.qwen.tie_word_embeddings and "qwen.lm_head.weight" not in state and tied in state:
        state["qwen.lm_head.weight"] = state[tied]
    checkpoints.load_into(model, state, f"{folder} ({layout} transformers layout)",
                          display=lambda key: names.get(key) or checkpoints.release_name(key, layout))
    return model


def load_janusvln(folder: Path, device: str = "cpu", dtype: str = "float32", quantization: str = "none") -> JanusVLN:
    """Load a JanusVLN folder (the authors' layout, either transformers naming) onto `device` in `dtype`
    ('auto': bfloat16 on CUDA, float32 elsewhere); `quantization` (none | int8 | nf4) quantises the language
    model's decoder layers on `device`, one layer at a time (quantization.py)."""
    from sparsevideonav_ros.policies.janusvln.configuration_janusvln import resolve_dtype

    dtype = resolve_dtype(dtype, device)
    folder = Path(folder).expanduser()
    if not folder.is_dir():
        raise CheckpointError(f"janusvln checkpoint {folder} is not a folder")
    arch = load_architecture(folder)
    tokenizer = load_tokenizer(folder)
    qwen = arch.qwen
    generation = folder / "generation_config.json"
    eos = json.loads(generation.read_text()).get("eos_token_id", []) if generation.is_file() else []
    layout = PromptLayout.build(tokenizer, find_chat_template(tokenizer, folder), qwen.image_token_id,
                                qwen.vision_start_token_id, qwen.vision_end_token_id,
                                eos_ids=eos if isinstance(eos, list) else [eos])
    preprocessor = folder / "preprocessor_config.json"
    processing = ImageProcessing.from_preprocessor_config(
        json.loads(preprocessor.read_text()) if preprocessor.is_file() else {}, arch.image_width)
    if processing.merge_size != int(qwen.vision_config.spatial_merge_size):
        raise CheckpointError(f"preprocessor merge_size {processing.merge_size} != model spatial_merge_size "
                              f"{qwen.vision_config.spatial_merge_size}")
    model = load_model_weights(folder, arch).to(dtype=DTYPES[dtype]).eval().requires_grad_(False)
    from sparsevideonav_ros.policies.janusvln.quantization import quantize_language_model

    language_model = model.qwen.model.language_model
    layers, language_model.layers = language_model.layers, nn.ModuleList()
    try:
        model.to(device)  # everything but the decoder layers; they follow one by one, quantised on the device
    finally:
        language_model.layers = layers
    quantize_language_model(model.qwen, quantization, device)
    return JanusVLN(model, layout, processing, folder)


def save_janusvln(model: JanusVLNModel, tokenizer_dir: Path, folder: Path, layout: str = "old",
                  max_shard_bytes: int = 0) -> Path:
    """Write `model` as an authors'-layout folder (weights in `layout` naming) with the tokenizer files."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "config.json").write_text(json.dumps(model.arch.to_config_dict(), indent=2, default=str))
    state = checkpoints.ours_to_release(model.state_dict(), layout)
    if model.arch.qwen.tie_word_embeddings:
        state.pop("lm_head.weight", None)
    checkpoints.save_weights(state, folder, max_shard_bytes)
    for item in Path(tokenizer_dir).iterdir():
        if item.is_file():
            shutil.copy(item, folder / item.name)
    (folder / "preprocessor_config.json").write_text(json.dumps(
        {"image_processor_type": "Qwen2VLImageProcessor", "patch_size": 14, "merge_size": 2,
         "temporal_patch_size": 2, "image_mean": list(ImageProcessing().image_mean),
         "image_std": list(ImageProcessing().image_std)}, indent=2))
    return folder


# -- tiny random model -----------------------------------------------------------------------------

TINY_IMAGE_WIDTH = 112  # 640 x 480 -> 112 x 84: 6 x 8 aggregator patches, 3 x 4 = 12 merged Qwen tokens
TINY_AGGREGATOR = AggregatorConfig(img_size=70, patch_size=14, embed_dim=32, depth=2, num_heads=2, mlp_ratio=2.0,
                                   num_register_tokens=4, patch_embed_depth=1, patch_embed_num_heads=2)


def special_token_ids(tokenizer) -> dict[str, int]:
    return {name: tokenizer.convert_tokens_to_ids(token) for name, token in (
        ("image_token_id", "<|image_pad|>"), ("video_token_id", "<|video_pad|>"),
        ("vision_start_token_id", "<|vision_start|>"), ("vision_end_token_id", "<|vision_end|>"))}


def tiny_architecture(tokenizer) -> Architecture:
    from transformers import Qwen2_5_VLConfig

    ids = special_token_ids(tokenizer)
    qwen = Qwen2_5_VLConfig(
        text_config=dict(vocab_size=len(tokenizer), hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                         num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=32768,
                         rope_parameters={"rope_type": "default", "rope_theta": 1000000.0, "mrope_section": [2, 3, 3]},
                         rms_norm_eps=1e-6, bos_token_id=tokenizer.pad_token_id,
                         eos_token_id=tokenizer.convert_tokens_to_ids(IM_END), tie_word_embeddings=False),
        vision_config=dict(depth=2, hidden_size=32, intermediate_size=64, num_heads=2, out_hidden_size=64,
                           patch_size=14, spatial_merge_size=2, temporal_patch_size=2, window_size=56,
                           fullatt_block_indexes=[1], tokens_per_second=2, in_channels=3),
        tie_word_embeddings=False, **ids)
    qwen._attn_implementation = "sdpa"
    return Architecture(qwen=qwen, aggregator=TINY_AGGREGATOR, merger_hidden_dim=64, lam=DEFAULT_LAM,
                        image_width=TINY_IMAGE_WIDTH)


def _random_init(model: JanusVLNModel, seed: int) -> None:
    """Norm weights 1, everything else normal with std min(0.1, 1/sqrt(fan_in)) (activations stay O(1))."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, parameter in model.named_parameters():
            if parameter.ndim == 1 and name.endswith("weight") and ("norm" in name or "ln_q" in name):
                parameter.fill_(1.0)
            elif name.endswith(".gamma"):
                parameter.fill_(0.5)
            else:
                fan_in = parameter[0].numel() if parameter.ndim >= 2 else 1
                std = min(0.1, fan_in ** -0.5)
                parameter.copy_(torch.randn(parameter.shape, generator=generator) * std)


TINY_ANSWERS = ("MOVE_FORWARD", "TURN_LEFT", "TURN_RIGHT")  # STOP is never chosen: wiring runs keep moving
_STATE_GAIN = 30.0  # state direction in a token's embedding: dominates the residual updates of the random layers
_ROW_GAIN = 4.0  # lm_head rows of allowed tokens: logits ~30 against ~N(0, 1) for the other tokens
_CHOICE_SPREAD = 3.0  # random part of a choice row, orthogonal to the states: the context decides between rows


def _wire_action_choice(model: JanusVLNModel, layout: PromptLayout, tokenizer, seed: int) -> None:
    """Make greedy decoding of the random tiny model answer one of TINY_ANSWERS, then <|im_end|>.

    Four random orthonormal directions of the language model's hidden space stand for the decoding states:
    answer starts (after the prompt's last token), after MOVE, after TURN, answer complete. The embedding of the
    token that puts the decoder in a state gets a large component along that state's direction, so the final
    (RMS-normalised) hidden state points mostly along it; the lm_head rows of the tokens allowed next point along
    it too and win the argmax. Where there is a choice (MOVE or TURN first; _LEFT or _RIGHT after TURN) each
    allowed row also gets a random part orthogonal to the states: the context-dependent rest of the hidden state
    (frames, instruction, every weight) picks the row. No other weight is changed.
    """
    pieces = {answer: tokenizer(answer, add_special_tokens=False)["input_ids"] for answer in TINY_ANSWERS}
    if any(len(ids) != 2 for ids in pieces.values()) or pieces["TURN_LEFT"][0] != pieces["TURN_RIGHT"][0]:
        raise CheckpointError(f"tiny tokenizer splits the actions as {pieces}; _wire_action_choice expects "
                              f"MOVE + _FORWARD, TURN + _LEFT / _RIGHT")
    (move, forward), (turn, left), (_, right) = (pieces[a] for a in TINY_ANSWERS)
    start, end = layout.suffix_ids("x")[-1], tokenizer.convert_tokens_to_ids(IM_END)
    lm = model.qwen.model.language_model
    hidden = lm.embed_tokens.weight.shape[1]
    generator = torch.Generator().manual_seed(seed + 1)
    basis, _ = torch.linalg.qr(torch.randn(hidden, hidden, generator=generator))
    state_start, state_move, state_turn, state_end = basis[:, :4].T
    states = basis[:, :4]

    def choice_part() -> torch.Tensor:
        free = torch.randn(hidden, generator=generator)
        free -= states @ (states.T @ free)  # orthogonal to every state direction
        return _CHOICE_SPREAD * free / free.norm()

    with torch.no_grad():
        embed, head = lm.embed_tokens.weight, model.qwen.lm_head.weight
        for token, state in ((start, state_start), (move, state_move), (turn, state_turn), (forward, state_end),
                             (left, state_end), (right, state_end)):
            embed[token] += _STATE_GAIN * state
        for token, state, choice in ((move, state_start, True), (turn, state_start, True),
                                     (forward, state_move, False), (left, state_turn, True),
                                     (right, state_turn, True), (end, state_end, False)):
            head[token] = _ROW_GAIN * (state + (choice_part() if choice else 0.0))


def build_tiny_checkpoint(folder: Path, seed: int = 0, answer_actions: bool = True, layout: str = "old",
                          tokenizer_from: Optional[Path] = None,
                          architecture: Callable[[Any], Architecture] = None) -> Path:
    """A random tiny JanusVLN saved in the authors' layout (tokenizer with chat template included), with a
    tiny tokenizer trained offline, or the one of another tiny folder (`tokenizer_from`). `architecture`
    (tokenizer -> Architecture) picks other sizes (default: tiny_architecture). Every weight is random
    (_random_init); `answer_actions` adds _wire_action_choice (the default tiny model), False leaves the answers
    to the random weights alone (mostly text that names no action)."""
    folder = Path(folder)
    # stderr, like the loading lines: the first use on a machine builds for a while before anything runs
    sys.stderr.write(f"janusvln: building the tiny random model in {folder}...\n")
    folder.mkdir(parents=True, exist_ok=True)
    tokenizer_dir = folder / "_tokenizer"
    if tokenizer_from is None:
        make_tiny_tokenizer(tokenizer_dir)
    else:
        tokenizer_dir.mkdir()
        for name in ("tokenizer.json", "tokenizer_config.json", "chat_template.jinja"):
            shutil.copy(Path(tokenizer_from) / name, tokenizer_dir / name)
    tokenizer = load_tokenizer(tokenizer_dir)
    arch = (architecture or tiny_architecture)(tokenizer)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = JanusVLNModel(arch).eval()
    _random_init(model, seed)
    if answer_actions:
        prompt = PromptLayout.build(tokenizer, find_chat_template(tokenizer, tokenizer_dir), arch.qwen.image_token_id,
                                    arch.qwen.vision_start_token_id, arch.qwen.vision_end_token_id)
        _wire_action_choice(model, prompt, tokenizer, seed)
    save_janusvln(model, tokenizer_dir, folder, layout=layout)
    shutil.rmtree(tokenizer_dir)
    return folder


def tiny_build_key() -> str:
    """Cache folder name of the tiny model: TINY_VERSION + a digest of the code that builds it."""
    from sparsevideonav_ros.policies import random_init
    from sparsevideonav_ros.policies.janusvln import prompt

    return f"{TINY_VERSION}-" + random_init.source_digest(
        build_tiny_checkpoint, tiny_architecture, _random_init, _wire_action_choice, save_janusvln, prompt,
        TINY_AGGREGATOR, TINY_ANSWERS, _STATE_GAIN, _ROW_GAIN, _CHOICE_SPREAD)


def tiny_checkpoint_dir() -> Path:
    """The cached tiny model folder (built once per tiny_build_key; see policies/model_cache.py)."""
    return cached_folder(tiny_build_key(), "config.json", build_tiny_checkpoint)


def resolve_checkpoint(checkpoint: str) -> Path:
    return tiny_checkpoint_dir() if checkpoint == TINY else Path(checkpoint).expanduser()


def parameter_counts(arch: Architecture) -> dict[str, int]:
    """Parameters per part of the full module, counted on the meta device."""
    model = build_empty(arch)
    return {"qwen": sum(p.numel() for p in model.qwen.parameters()),
            "qwen_visual": sum(p.numel() for p in model.qwen.model.visual.parameters()),
            "aggregator": sum(p.numel() for p in model.vggt.parameters()),
            "merger": sum(p.numel() for p in model.merger.parameters())}


def release_architecture() -> Architecture:
    """JanusVLN at the released size: Qwen2.5-VL-7B-Instruct's config + VGGT-1B + the 8192->4096->3584 merger."""
    return Architecture.from_config_dict(dict(
        model_type="qwen2_5_vl", hidden_size=3584, intermediate_size=18944, num_hidden_layers=28,
        num_attention_heads=28, num_key_value_heads=4, vocab_size=152064, max_position_embeddings=128000,
        rope_theta=1000000.0, rope_scaling={"type": "mrope", "mrope_section": [16, 24, 24]}, rms_norm_eps=1e-6,
        tie_word_embeddings=False, image_token_id=151655, video_token_id=151656, vision_start_token_id=151652,
        vision_end_token_id=151653, bos_token_id=151643, eos_token_id=151645,
        vision_config=dict(depth=32, hidden_size=1280, intermediate_size=3420, num_heads=16, out_hidden_size=3584,
                           fullatt_block_indexes=[7, 15, 23, 31], window_size=112, tokens_per_second=2,
                           hidden_act="silu", patch_size=14, spatial_merge_size=2, temporal_patch_size=2,
                           in_chans=3),
        lam=0.2, use_vggt_feature=True, reference_frame="first"))
