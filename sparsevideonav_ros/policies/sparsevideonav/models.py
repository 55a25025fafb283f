"""Loading and saving the SparseVideoNav model set (video backbone, VAE, umT5, action head).

Our layout (save_pretrained):                 The authors' release layout:
    <folder>/sparsevideonav.json                  <folder>/svn_ckpt/  (config.json + weights, `vgm.` keys)
    <folder>/transformer/   (backbone)            <folder>/Wan2.1_VAE.pth
    <folder>/vae/           (AutoencoderKLWan)    <folder>/google/umt5-xxl/ (tokenizer)
    <folder>/text_encoder/  (UMT5EncoderModel)  + wan_diffusers_dir (text_encoder/, tokenizer/, vae/)
    <folder>/tokenizer/                         + action_head_dir (the authors' action head is unreleased)
    <folder>/action_head/

`tiny` builds a small random set once into a cache folder and loads it through the same code.
`sparsevideonav.action_head_dir`, when set, replaces the folder's action head in every layout (tiny, ours,
release); start-up logs one line naming the head that was loaded.

`sparsevideonav.action_head` picks the head (resolve_action_head): `dit` loads a trained head (the folder's
action_head/ or action_head_dir; an error without one), `pose` loads none (the pose head turns decoded imagined
frames into a plan; policy.py builds it), `auto` = dit where a trained head is present, else pose (the
authors' release has no head).
"""
from __future__ import annotations

import json
import logging
import math
import shutil
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import numpy as np
import torch

from sparsevideonav_ros.core.progress import loading, start_loading
from sparsevideonav_ros.policies import random_init
from sparsevideonav_ros.policies.model_cache import cached_folder
from sparsevideonav_ros.policies.sparsevideonav.action_head import ActionHeadConfig, SparseVideoNavActionHead
from sparsevideonav_ros.policies.sparsevideonav.checkpoints import CheckpointError, load_release_transformer
from sparsevideonav_ros.policies.sparsevideonav.configuration_sparsevideonav import TINY, SparseVideoNavConfig
from sparsevideonav_ros.policies.sparsevideonav.sampling import (REFERENCE_LATENTS, SPARSE_FUTURE_OFFSETS,
                                                                 future_times_s)
from sparsevideonav_ros.policies.sparsevideonav.text_encoding import InstructionEncoder, make_tiny_text_encoder
from sparsevideonav_ros.policies.sparsevideonav.transformer import SparseVideoNavTransformer
from sparsevideonav_ros.policies.sparsevideonav.video_latents import (decode_latents, load_vae, tiny_vae_config,
                                                                     use_fast_cpu_kernels)

# Loading happens in a node at start-up: progress bars would only clutter its log.
import diffusers.utils.logging as _diffusers_logging  # noqa: E402
import transformers.utils.logging as _transformers_logging  # noqa: E402

_diffusers_logging.disable_progress_bar()
_transformers_logging.disable_progress_bar()
log = logging.getLogger("sparsevideonav_ros.policies.sparsevideonav")

LAYOUT_FILE = "sparsevideonav.json"
LAYOUT_FORMAT = "sparsevideonav_ros"
LAYOUT_VERSION = 1
VAE_SPATIAL_STRIDE = 8
# The tiny set's cache folder is TINY_VERSION + a digest of the code that builds it (tiny_build_key): bump
# TINY_VERSION only for a change that code does not show.
TINY_VERSION = "tiny-v3"
DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}
# Written next to a head by training (training/trainer.py): the backbone its futures came from (latent grid,
# channels, text width, weights digest); checked against the backbone the head is loaded with (the grid and
# text width in SparseVideoNavModels, the weights digest in load_models: check_head_backbone_weights).
HEAD_BACKBONE_FILE = "backbone.json"


@dataclass
class SparseVideoNavModels:
    transformer: SparseVideoNavTransformer
    vae: torch.nn.Module
    action_head: Optional[SparseVideoNavActionHead]  # None when the pose head runs (head == "pose")
    text_encoder: InstructionEncoder
    image_size: int
    action_head_source: str = ""  # where the action head came from (folder and why), for logs and status
    head: str = "dit"  # the head that turns imagined futures into plans: dit | pose (resolve_action_head)
    head_reason: str = ""  # why that head runs (resolve_action_head), for the start-up line

    def __post_init__(self) -> None:
        use_fast_cpu_kernels(self.vae)  # however the VAE was built (loaded, tiny, bench): same kernels
        text_dim = self.transformer.config.text_dim
        if self.text_encoder.hidden_size != text_dim:
            raise CheckpointError(f"text encoder width {self.text_encoder.hidden_size} != backbone text_dim {text_dim}")
        if (self.action_head is None) != (self.head == "pose"):
            raise CheckpointError(f"head {self.head!r} with action head {type(self.action_head).__name__}: the dit "
                                  f"head needs a trained action head, the pose head none")
        head_text_dim = text_dim if self.action_head is None else self.action_head.config.language_dim
        if head_text_dim != text_dim:
            raise CheckpointError(f"action head {self.action_head_source or ''} expects instruction embeddings of "
                                  f"width {head_text_dim}, the text encoder gives {text_dim}: a head trained for "
                                  f"another model set")
        grid = int(math.isqrt(self.transformer.qformer.config.num_latents // self.transformer.history_slots))
        if grid * VAE_SPATIAL_STRIDE != self.image_size:
            raise CheckpointError(f"image_size {self.image_size} does not match the Q-Former's {grid}x{grid} latent "
                                  f"grid (image size {grid * VAE_SPATIAL_STRIDE})")
        if self.action_head is not None:
            self._check_head_matches_backbone()

    def _check_head_matches_backbone(self) -> None:
        """A head reads the backbone's future latents: their channels, their count and (when training recorded
        it, backbone.json) the latent grid the head was trained on must be this backbone's."""
        head, source = self.action_head.head_config, self.action_head_source or "the action head"
        channels = int(self.transformer.config.out_channels)
        if head.latent_channels != channels or head.num_future_latents != len(SPARSE_FUTURE_OFFSETS):
            raise CheckpointError(f"action head {source} reads {head.num_future_latents} future latents of "
                                  f"{head.latent_channels} channels, the backbone imagines {len(SPARSE_FUTURE_OFFSETS)} "
                                  f"of {channels}: a head trained for another model set")
        trained_on = getattr(self.action_head, "trained_on", None) or {}
        grid = [self.image_size // VAE_SPATIAL_STRIDE] * 2
        if trained_on.get("latent_grid") and list(trained_on["latent_grid"]) != grid:
            raise CheckpointError(f"action head {source} was trained on {trained_on['latent_grid'][0]}x"
                                  f"{trained_on['latent_grid'][1]} future latents ({HEAD_BACKBONE_FILE}), this "
                                  f"backbone imagines {grid[0]}x{grid[1]} (image size {self.image_size})")
        if trained_on.get("text_dim") and int(trained_on["text_dim"]) != int(self.transformer.config.text_dim):
            raise CheckpointError(f"action head {source} was trained with {trained_on['text_dim']}-wide instruction "
                                  f"embeddings ({HEAD_BACKBONE_FILE}), this backbone's are "
                                  f"{self.transformer.config.text_dim} wide")

    @property
    def max_history_chunks(self) -> int:
        return self.transformer.qformer.config.max_frames

    def encode_instruction(self, text: str) -> tuple[torch.Tensor, torch.Tensor]:
        """(embeds (1, 512, text_dim) on the backbone's device, mask (1, 512) bool)."""
        embeds, mask = self.text_encoder.encode(text)
        device = self.transformer.device
        return embeds.to(device, self.transformer.dtype), mask.to(device)

    def preview_mosaic(self, latents: torch.Tensor, frames: Optional[torch.Tensor] = None) -> np.ndarray:
        """Decoded sparse future as a 2 x 4 RGB mosaic (uint8), each tile labelled with its time ahead.

        latents: (1, 16, 10, h, w) = 2 reference + 8 future latents. With the causal VAE, latent i >= 1
        decodes to frames 4i-3 .. 4i; the last of them stands for that latent's instant. frames: their
        decode (3, 37, H, W) in [-1, 1] when the caller already has it (the pose head), else decoded here.
        """
        import cv2
        if frames is None:
            frames = decode_latents(self.vae, latents.to(self.vae.dtype))[0]  # (3, T, H, W) in [-1, 1]
        tiles = []
        for index, seconds in zip(range(REFERENCE_LATENTS, latents.shape[2]), future_times_s()):
            tile = ((frames[:, 4 * index].float().clamp(-1, 1) + 1) * 127.5).byte().permute(1, 2, 0).cpu().numpy()
            tile = np.ascontiguousarray(tile)
            cv2.putText(tile, f"T+{seconds:.0f}s", (2, 12), cv2.FONT_HERSHEY_SIMPLEX, 0.35, (255, 255, 0), 1)
            tiles.append(tile)
        return np.concatenate([np.concatenate(tiles[:4], axis=1), np.concatenate(tiles[4:], axis=1)], axis=0)

    def save_pretrained(self, folder: Path) -> Path:
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        self.transformer.save_pretrained(folder / "transformer")
        self.vae.save_pretrained(folder / "vae")
        if self.action_head is not None:  # a pose-head set saves without one (auto then picks pose again)
            self.action_head.save_pretrained(folder / "action_head")
        self.text_encoder.save_pretrained(folder / "text_encoder", folder / "tokenizer")
        (folder / LAYOUT_FILE).write_text(json.dumps(
            {"format": LAYOUT_FORMAT, "version": LAYOUT_VERSION, "image_size": self.image_size}, indent=2))
        return folder


def _require(path: Path, what: str) -> Path:
    if not path.exists():
        raise CheckpointError(f"missing {what}: expected {path}")
    return path


def _load_action_head(folder: Path, dtype: torch.dtype, device: str, why: str) -> tuple[SparseVideoNavActionHead, str]:
    """An action head saved with save_pretrained (config.json + diffusion_pytorch_model.safetensors) -> (head on
    `device` in eval mode, "folder (why)"). A missing or unreadable file is a CheckpointError naming it."""
    folder = Path(folder).expanduser()
    _require(folder / "config.json", f"action head config ({why})")
    weights = sorted(p.name for p in folder.glob("diffusion_pytorch_model*"))
    if not weights:
        raise CheckpointError(f"missing action head weights ({why}): expected {folder / 'diffusion_pytorch_model.safetensors'}")
    try:
        with loading("sparsevideonav: loading the action head", folder):
            head = SparseVideoNavActionHead.from_pretrained(folder, torch_dtype=dtype)
    except Exception as error:  # diffusers raises OSError, ValueError, SafetensorError, JSON errors ...
        raise CheckpointError(f"cannot load the action head ({why}) from {folder} "
                              f"({', '.join(weights)} + config.json): {type(error).__name__}: {error}") from error
    # diffusers leaves parameters the file lacks on the meta device (a warning, then a crash on .to()).
    missing = [name for name, tensor in [*head.named_parameters(), *head.named_buffers()] if tensor.is_meta]
    if missing:
        raise CheckpointError(f"the action head in {folder / weights[0]} ({why}) lacks {len(missing)} tensors of "
                              f"its config.json's architecture, e.g. {missing[:5]}")
    trained_on = folder / HEAD_BACKBONE_FILE
    try:
        head.trained_on = json.loads(trained_on.read_text()) if trained_on.is_file() else {}
    except ValueError as error:
        raise CheckpointError(f"cannot read {trained_on} ({why}): {error}") from error
    source = f"{folder} ({why})"
    parameters = sum(p.numel() for p in head.parameters())
    # One line at start-up: with several heads around, which one drives the robot must be visible in the log.
    log.info("sparsevideonav action head: %s, %.2fM parameters", source, parameters / 1e6)
    return head.to(device).eval(), source


def resolve_action_head(config: SparseVideoNavConfig, own_head: Optional[Path]) -> tuple[str, str]:
    """(head, why): which head runs for ``config.action_head`` given the checkpoint's own head folder
    (``own_head``; None for the authors' release, which has none). head is "dit" or "pose"; why is the
    reason the start-up line gives. `dit` without any trained head is a CheckpointError saying where it looked."""
    has_own = own_head is not None and (own_head / "config.json").is_file()
    present = bool(config.action_head_dir) or has_own
    if config.action_head == "pose":
        return "pose", "sparsevideonav.action_head is pose"
    if config.action_head == "dit":
        if not present:
            looked = f"{own_head} has no config.json" if own_head is not None else "the authors' release has no head"
            raise CheckpointError(f"sparsevideonav.action_head is dit but no trained action head is present ({looked} "
                                  f"and sparsevideonav.action_head_dir is empty): train one with `python -m "
                                  f"sparsevideonav_ros.tools.train_action_head` and set action_head_dir, or use "
                                  f"action_head pose (or auto)")
        return "dit", "sparsevideonav.action_head is dit"
    if present:
        return "dit", "auto: a trained action head is present"
    where = "the authors' release has no action head" if own_head is None else f"no trained head at {own_head}"
    return "pose", f"auto: {where} and sparsevideonav.action_head_dir is empty"


def _load_ours(folder: Path, config: SparseVideoNavConfig) -> SparseVideoNavModels:
    layout = json.loads(_require(folder / LAYOUT_FILE, "layout file").read_text())
    if layout.get("format") != LAYOUT_FORMAT or layout.get("version") != LAYOUT_VERSION:
        raise CheckpointError(f"{folder / LAYOUT_FILE} is {layout}, expected format {LAYOUT_FORMAT} v{LAYOUT_VERSION}")
    dtype = DTYPES[config.dtype]
    # Start-up messages on stderr (the node's log, evaluate's output): gigabytes load for minutes.
    with loading("sparsevideonav: loading the backbone", folder / "transformer"):
        transformer = SparseVideoNavTransformer.from_pretrained(
            _require(folder / "transformer" / "config.json", "backbone config").parent, torch_dtype=dtype)
    head, why = resolve_action_head(config, folder / "action_head")
    if head == "pose":
        action_head, head_source = None, f"none: the pose head runs ({why})"
    elif config.action_head_dir:
        action_head, head_source = _load_action_head(Path(config.action_head_dir), dtype, config.device,
                                                     "sparsevideonav.action_head_dir, replacing "
                                                     f"{folder / 'action_head'}")
    else:
        action_head, head_source = _load_action_head(folder / "action_head", dtype, config.device,
                                                     "the checkpoint's own head")
    with loading("sparsevideonav: loading the VAE", folder / "vae"):
        vae = load_vae(_require(folder / "vae", "VAE folder"), device=config.device, dtype=dtype)
    text_loaded = start_loading("sparsevideonav: loading the umT5 text encoder", folder / "text_encoder")
    text = InstructionEncoder.from_pretrained(_require(folder / "text_encoder", "text encoder folder"),
                                              _require(folder / "tokenizer", "tokenizer folder"),
                                              **_text_encoder_placement(config))
    text_loaded()
    return SparseVideoNavModels(transformer.to(config.device).eval(), vae.eval(), action_head, text,
                                int(layout["image_size"]), head_source, head, why)


def _load_release(folder: Path, config: SparseVideoNavConfig) -> SparseVideoNavModels:
    dtype = DTYPES[config.dtype]
    # The head first: a wrong head folder fails in a second, not after the 1.3B backbone has loaded.
    head, why = resolve_action_head(config, None)
    if head == "pose":
        action_head, head_source = None, f"none: the pose head runs ({why})"
    else:
        action_head, head_source = _load_action_head(Path(config.action_head_dir), dtype, config.device,
                                                     "sparsevideonav.action_head_dir")
    wan = Path(config.wan_diffusers_dir) if config.wan_diffusers_dir else folder / "wan_diffusers_dir-unset"
    with loading("sparsevideonav: loading the backbone svn_ckpt", folder / "svn_ckpt"):
        transformer = load_release_transformer(folder / "svn_ckpt", device=config.device, dtype=dtype)
    original_vae = folder / "Wan2.1_VAE.pth"
    vae_config = wan / "vae" if (wan / "vae" / "config.json").is_file() else None  # else the standard Wan2.1 VAE
    if original_vae.is_file():
        vae = load_vae(original_vae, device=config.device, dtype=dtype, config=vae_config)
    else:
        vae = load_vae(_require(wan / "vae", "VAE (Wan2.1_VAE.pth or <wan_diffusers_dir>/vae)"),
                       device=config.device, dtype=dtype)
    tokenizer = folder / "google" / "umt5-xxl"
    wan_t5 = folder / "models_t5_umt5-xxl-enc-bf16.pth"
    text_source = wan / "text_encoder" if (wan / "text_encoder").is_dir() else wan_t5
    text_loaded = start_loading("sparsevideonav: loading the umT5 text encoder", text_source)
    text = InstructionEncoder.from_pretrained(
        _require(text_source, "umT5 encoder (<wan_diffusers_dir>/text_encoder or models_t5_umt5-xxl-enc-bf16.pth)"),
        tokenizer if tokenizer.is_dir() else _require(wan / "tokenizer", "tokenizer"),
        **_text_encoder_placement(config))
    text_loaded()
    grid = int(math.isqrt(transformer.qformer.config.num_latents // transformer.history_slots))
    return SparseVideoNavModels(transformer, vae.eval(), action_head, text, grid * VAE_SPATIAL_STRIDE, head_source,
                                head, why)


def _text_encoder_placement(config: SparseVideoNavConfig) -> dict:
    """InstructionEncoder device / encode_device: on text_encoder_device, or (text_encoder_offload) living on the
    CPU and encoding there."""
    if config.text_encoder_offload:
        return dict(device="cpu", encode_device=config.text_encoder_device)
    return dict(device=config.text_encoder_device)


def load_models(config: SparseVideoNavConfig) -> SparseVideoNavModels:
    """Load by `config.checkpoint`: 'tiny', our layout, or the authors' release layout."""
    folder = tiny_checkpoint_dir() if config.checkpoint == TINY else Path(config.checkpoint).expanduser()
    if not folder.is_dir():
        raise CheckpointError(f"sparsevideonav.checkpoint {folder} is not a folder")
    if (folder / LAYOUT_FILE).is_file() or (folder / "svn_ckpt").is_dir():
        # On CUDA the memory plan runs before any weight loads; a set that cannot fit is refused in one line.
        from sparsevideonav_ros.policies import memory_plan
        from sparsevideonav_ros.policies.base import PolicyError

        plan = memory_plan.check_before_loading("sparsevideonav", config, PolicyError)
        models = _load_ours(folder, config) if (folder / LAYOUT_FILE).is_file() else _load_release(folder, config)
        check_head_backbone_weights(models, config)
        models.memory_plan = plan
        return models
    raise CheckpointError(f"{folder} is neither our layout (expected {folder / LAYOUT_FILE}) nor the authors' "
                          f"release (expected {folder / 'svn_ckpt'}/)")


def backbone_weight_parts(config: SparseVideoNavConfig) -> list[Path]:
    """The files and folders the imagined futures depend on: the checkpoint folder's entries except its own
    action head (not used to imagine) and hidden entries (.git, .cache: they change without the weights), plus,
    for the release layout, wan_diffusers_dir's text_encoder, tokenizer and vae. Training
    digests them (training.future_cache.weights_digest) into the future cache key and backbone.json's
    "weights"; check_head_backbone_weights digests them again when a head is loaded."""
    folder = tiny_checkpoint_dir() if config.checkpoint == TINY else Path(config.checkpoint).expanduser()
    if not folder.is_dir():
        raise CheckpointError(f"checkpoint {folder} is not a folder")
    parts = [p for p in sorted(folder.iterdir()) if p.name != "action_head" and not p.name.startswith(".")]
    if config.wan_diffusers_dir and (folder / "svn_ckpt").is_dir():  # only the release layout reads it
        wan = Path(config.wan_diffusers_dir).expanduser()
        parts += [wan / name for name in ("text_encoder", "tokenizer", "vae") if (wan / name).exists()]
    return parts


def check_head_backbone_weights(models: SparseVideoNavModels, config: SparseVideoNavConfig) -> None:
    """A head whose backbone.json records the weights digest of the backbone it was trained on must be loaded
    with that backbone (the same digest: file sizes and the first and last MiB of each weight file, ~2 MiB read
    per file). CheckpointError naming both digests otherwise; heads without the record are not checked."""
    recorded = (getattr(models.action_head, "trained_on", None) or {}).get("weights") if models.action_head else None
    if not recorded:
        return
    from sparsevideonav_ros.training.future_cache import weights_digest
    actual = weights_digest(backbone_weight_parts(config))
    if actual != recorded:
        raise CheckpointError(f"action head {models.action_head_source or ''} was trained on the futures of backbone "
                              f"weights {recorded} ({HEAD_BACKBONE_FILE} \"weights\"), this backbone "
                              f"({config.checkpoint}) has weights digest {actual}: a head trained for another model "
                              f"set (retrain it on this checkpoint, or load the checkpoint it was trained with)")


# -- tiny random models ---------------------------------------------------------------------------

TINY_IMAGE_SIZE = 64  # 8x8 latents: 64 tokens per latent frame


def tiny_transformer_config(text_dim: int) -> dict:
    tokens = (TINY_IMAGE_SIZE // VAE_SPATIAL_STRIDE) ** 2
    return dict(num_attention_heads=2, attention_head_dim=16, ffn_dim=64, num_layers=2, text_dim=text_dim,
                freq_dim=32, qformer_config=dict(dim=32, depth=1, heads=2, num_latents=10 * tokens,
                                                 language_dim=text_dim, max_frames=64),
                video_former_config=dict(dim=32, depth=1, heads=2, dim_head=16, num_latents=10 * tokens // 4,
                                         num_slots=10, input_dim=32, language_dim=text_dim))


def tiny_action_head_config(text_dim: int) -> ActionHeadConfig:
    tokens = (TINY_IMAGE_SIZE // VAE_SPATIAL_STRIDE) ** 2
    return ActionHeadConfig(language_dim=text_dim, former_dim=32, former_depth=1, former_heads=2,
                            former_dim_head=16, former_num_latents=8 * tokens // 4, dit_dim=32, dit_depth=2,
                            dit_heads=2,
                            # The random head's actions scatter (by action_std) around this mean: a forward bias
                            # of 0.2 m/s, so the demo robot drifts forward on average. Not a navigation model.
                            action_mean=(0.05, 0.0, 0.0))


def tiny_random_transformer(text_dim: int, seed: int = 0) -> SparseVideoNavTransformer:
    """The tiny backbone with every parameter drawn (random_init.randomize_): its history attention, output
    projection and adaLN tables are not at their training-start values (zero / identity), so its output
    depends on the history, the instruction and every weight."""
    return random_init.randomize_(SparseVideoNavTransformer(**tiny_transformer_config(text_dim)), seed)


def tiny_random_action_head(text_dim: int, seed: int = 0) -> SparseVideoNavActionHead:
    """The tiny action head with every parameter drawn: no zero output layer, no adaLN-zero, so its 8 actions
    depend on the future latents, the instruction, the sampling noise and every weight."""
    return random_init.randomize_(SparseVideoNavActionHead.from_head_config(tiny_action_head_config(text_dim)), seed)


def build_tiny_models(folder: Path, seed: int = 0) -> Path:
    """Random tiny model set saved in our layout (text encoder and a real tokenizer included).

    Every parameter of every part (backbone, VAE, umT5, action head) is drawn by random_init.randomize_ (seeds
    seed .. seed + 3): plans depend on the frames, the instruction, the sampling seed and every weight, and are
    random motions (about action_std around action_mean per 0.25 s step), not navigation.
    """
    from diffusers import AutoencoderKLWan
    sys.stderr.write(f"sparsevideonav: building the tiny random model set (first use on this machine, cached) in "
                     f"{folder}...\n")
    torch.manual_seed(seed)
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    text_dir, tokenizer_dir = make_tiny_text_encoder(folder)
    for produced, wanted in ((Path(text_dir), folder / "text_encoder"), (Path(tokenizer_dir), folder / "tokenizer")):
        if produced.resolve() != wanted.resolve():
            shutil.move(str(produced), str(wanted))
    text = InstructionEncoder.from_pretrained(folder / "text_encoder", folder / "tokenizer")
    random_init.randomize_(text.text_encoder, seed + 3)
    transformer = tiny_random_transformer(text.hidden_size, seed)
    action_head = tiny_random_action_head(text.hidden_size, seed + 1)
    vae = random_init.randomize_(AutoencoderKLWan(**tiny_vae_config()), seed + 2)
    SparseVideoNavModels(transformer, vae, action_head, text, TINY_IMAGE_SIZE).save_pretrained(folder)
    return folder


def tiny_build_key() -> str:
    """Cache folder name of the tiny set: TINY_VERSION + a digest of the code that builds it."""
    return f"{TINY_VERSION}-" + random_init.source_digest(
        build_tiny_models, tiny_random_transformer, tiny_random_action_head, tiny_transformer_config,
        tiny_action_head_config, tiny_vae_config, make_tiny_text_encoder, random_init, TINY_IMAGE_SIZE)


def tiny_checkpoint_dir() -> Path:
    """Cached tiny model set (built once per tiny_build_key; see policies/model_cache.py)."""
    return cached_folder(tiny_build_key(), LAYOUT_FILE, build_tiny_models)
