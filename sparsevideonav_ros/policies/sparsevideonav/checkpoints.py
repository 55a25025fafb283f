"""Checkpoint layouts: the authors' release (original Wan naming) and our own save_pretrained folder.

Authors' release (cannot be downloaded here; the layout is from their inference config):
    <release>/svn_ckpt/            config.json (vgm_*) + diffusion_pytorch_model.safetensors (a diffusers
                                   ModelMixin folder: the name their from_pretrained reads; or sharded with
                                   diffusion_pytorch_model.safetensors.index.json), keys under `vgm.` in
                                   ORIGINAL Wan naming
    <release>/Wan2.1_VAE.pth       original Wan VAE
    <release>/google/umt5-xxl/     tokenizer; models_t5_umt5-xxl-enc-bf16.pth (Wan's own T5 naming)
The diffusers-format Wan2.1-T2V-1.3B folder carries the same VAE and umT5 as vae/, text_encoder/, tokenizer/.

Standard Wan keys are converted with diffusers' own converter; the history modules are ours to map.
Any key that cannot be mapped, and any parameter left without a value, is an error that names it.
"""
from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Iterable

import torch

from sparsevideonav_ros.policies.sparsevideonav import history_formers
from sparsevideonav_ros.policies.sparsevideonav.transformer import SparseVideoNavTransformer

RELEASE_PREFIX = "vgm."
WEIGHT_SUFFIXES = (".safetensors", ".bin", ".pth", ".pt")
# The file names diffusers' ModelMixin.from_pretrained looks for (the authors load svn_ckpt/ with it), in its order.
RELEASE_WEIGHTS = "diffusion_pytorch_model.safetensors"
RELEASE_WEIGHTS_INDEX = "diffusion_pytorch_model.safetensors.index.json"
RELEASE_WEIGHTS_BIN = "diffusion_pytorch_model.bin"


class CheckpointError(RuntimeError):
    """A checkpoint is missing, incomplete or does not match the model; the message names what."""


# 1. Key conversion ---------------------------------------------------------------------------

_HISTORY_ATTN = {"q": "to_q", "k": "to_k", "v": "to_v", "o": "to_out.0", "norm_q": "norm_q", "norm_k": "norm_k"}
_HISTORY_ATTN_BACK = {v: k for k, v in _HISTORY_ATTN.items()}
_RELEASE_HISTORY_ATTN = re.compile(r"^blocks\.(\d+)\.history_cross_attn\.(q|k|v|o|norm_q|norm_k)\.(weight|bias)$")
_OUR_HISTORY_ATTN = re.compile(r"^blocks\.(\d+)\.attn_history\.(to_q|to_k|to_v|to_out\.0|norm_q|norm_k)\.(weight|bias)$")
_SAME_NAME = re.compile(r"^(blocks\.\d+\.(history_proj\.[02]|norm_history)|history_pre_proj|history_post_proj)\.")
_FORMERS = ("qformer.", "video_former.")


def release_to_ours(release: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Authors' `vgm.*` state dict (original Wan naming) -> SparseVideoNavTransformer state dict."""
    from diffusers.loaders.single_file_utils import convert_wan_transformer_to_diffusers

    wan, converted, formers = {}, {}, {prefix: {} for prefix in _FORMERS}
    for key, value in release.items():
        if not key.startswith(RELEASE_PREFIX):
            raise CheckpointError(f"unexpected key {key!r}: SparseVideoNav release keys start with {RELEASE_PREFIX!r}")
        key = key[len(RELEASE_PREFIX):]
        match = _RELEASE_HISTORY_ATTN.match(key)
        if match:
            block, name, kind = match.groups()
            converted[f"blocks.{block}.attn_history.{_HISTORY_ATTN[name]}.{kind}"] = value
        elif _SAME_NAME.match(key):
            converted[key] = value
        elif key.startswith(_FORMERS):
            prefix = next(p for p in _FORMERS if key.startswith(p))
            formers[prefix][key[len(prefix):]] = value
        else:
            wan[key] = value
    # diffusers' converter renames by substring; it only ever sees plain Wan keys.
    converted.update(convert_wan_transformer_to_diffusers(wan))
    for prefix, state in formers.items():
        former = prefix.rstrip(".")
        try:
            mapped = history_formers.convert_original_former_keys(state, "", former=former)
        except KeyError as error:
            raise CheckpointError(f"cannot map the release's {former} weights: {error}") from error
        converted.update({prefix + k: v for k, v in mapped.items()})
    return converted


def _wan_key_to_release(key: str) -> str:
    """Inverse of diffusers' Wan renaming for the T2V keys our model has (checked by a round trip)."""
    rules = [
        ("condition_embedder.time_embedder.linear_1", "time_embedding.0"),
        ("condition_embedder.time_embedder.linear_2", "time_embedding.2"),
        ("condition_embedder.text_embedder.linear_1", "text_embedding.0"),
        ("condition_embedder.text_embedder.linear_2", "text_embedding.2"),
        ("condition_embedder.time_proj", "time_projection.1"),
        ("attn1.", "self_attn."), ("attn2.", "cross_attn."),
        (".to_out.0.", ".o."), (".to_q.", ".q."), (".to_k.", ".k."), (".to_v.", ".v."),
        ("ffn.net.0.proj", "ffn.0"), ("ffn.net.2", "ffn.2"),
        ("proj_out", "head.head"),
    ]
    if key == "scale_shift_table":
        return "head.modulation"
    key = key.replace("scale_shift_table", "modulation")
    for ours, theirs in rules:
        key = key.replace(ours, theirs)
    # diffusers swaps norm2 (cross-attention norm) and norm3 (FFN norm) relative to the original.
    return re.sub(r"\.norm([23])\.", lambda m: f".norm{'3' if m.group(1) == '2' else '2'}.", key)


def ours_to_release(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """SparseVideoNavTransformer state dict -> authors' naming (export, and the loader's round-trip test)."""
    release, formers = {}, {prefix: {} for prefix in _FORMERS}
    for key, value in state.items():
        match = _OUR_HISTORY_ATTN.match(key)
        if match:
            block, name, kind = match.groups()
            release[f"blocks.{block}.history_cross_attn.{_HISTORY_ATTN_BACK[name]}.{kind}"] = value
        elif _SAME_NAME.match(key):
            release[key] = value
        elif key.startswith(_FORMERS):
            prefix = next(p for p in _FORMERS if key.startswith(p))
            formers[prefix][key[len(prefix):]] = value
        else:
            release[_wan_key_to_release(key)] = value
    for prefix, former_state in formers.items():
        release.update(history_formers.convert_to_original_former_keys(former_state, prefix.rstrip("."), prefix))
    return {RELEASE_PREFIX + k: v for k, v in release.items()}


# 2. Release config ---------------------------------------------------------------------------

# Release config names -> ours. video_feature_dim of the Q-Former is unused by its forward (features
# arrive already projected), dropout/activation settings are training-only or fixed (GELU).
_QFORMER_FIELDS = {"dim": "dim", "depth": "depth", "heads": "heads", "num_latents": "num_latents",
                   "language_dim": "language_dim", "max_frames": "max_frames", "ff_mult": "ff_mult"}
_VIDEO_FORMER_FIELDS = {"dim": "dim", "depth": "depth", "heads": "heads", "dim_head": "dim_head",
                        "num_latents": "num_latents", "num_frame": "num_slots", "video_feature_dim": "input_dim",
                        "language_dim": "language_dim", "ff_mult": "ff_mult"}
_IGNORED_FORMER_FIELDS = {"video_feature_dim", "attn_pdrop", "resid_pdrop", "activation"}


def _former_config(release: dict, fields: dict[str, str], name: str) -> dict:
    if release.get("activation", "gelu") != "gelu":
        raise CheckpointError(f"{name}.activation={release['activation']!r}: only gelu is implemented")
    unknown = set(release) - set(fields) - _IGNORED_FORMER_FIELDS
    if unknown:
        raise CheckpointError(f"{name} config has unknown fields {sorted(unknown)}")
    return {ours: release[theirs] for theirs, ours in fields.items() if theirs in release}


def transformer_config_from_release(config: dict) -> dict:
    """svn_ckpt/config.json (vgm_dim, vgm_ffn_dim, vgm_num_heads, vgm_num_layers, vgm_*_config) -> our kwargs."""
    required = ("vgm_dim", "vgm_ffn_dim", "vgm_num_heads", "vgm_num_layers", "vgm_qformer_config",
                "vgm_video_former_config")
    missing = [k for k in required if k not in config]
    if missing:
        raise CheckpointError(f"svn_ckpt/config.json lacks {missing}")
    heads = config["vgm_num_heads"]
    if config["vgm_dim"] % heads:
        raise CheckpointError(f"vgm_dim {config['vgm_dim']} is not divisible by vgm_num_heads {heads}")
    # The release's SVNModel fixes text_dim 4096 and freq_dim 256; our exports of smaller test models
    # add vgm_text_dim / vgm_freq_dim (SVNModel ignores unknown config keys).
    return dict(num_attention_heads=heads, attention_head_dim=config["vgm_dim"] // heads,
                ffn_dim=config["vgm_ffn_dim"], num_layers=config["vgm_num_layers"],
                text_dim=config.get("vgm_text_dim", 4096), freq_dim=config.get("vgm_freq_dim", 256),
                qformer_config=_former_config(config["vgm_qformer_config"], _QFORMER_FIELDS, "vgm_qformer_config"),
                video_former_config=_former_config(config["vgm_video_former_config"], _VIDEO_FORMER_FIELDS,
                                                   "vgm_video_former_config"))


def release_config_from_transformer(model: SparseVideoNavTransformer) -> dict:
    q, v = model.qformer.config, model.video_former.config
    return {"_class_name": "SVNModel", "vgm_dim": model.config.num_attention_heads * model.config.attention_head_dim,
            "vgm_ffn_dim": model.config.ffn_dim, "vgm_num_heads": model.config.num_attention_heads,
            "vgm_num_layers": model.config.num_layers, "vgm_text_dim": model.config.text_dim,
            "vgm_freq_dim": model.config.freq_dim,
            "vgm_qformer_config": {theirs: getattr(q, ours) for theirs, ours in _QFORMER_FIELDS.items()}
            | {"video_feature_dim": q.dim},
            "vgm_video_former_config": {theirs: getattr(v, ours) for theirs, ours in _VIDEO_FORMER_FIELDS.items()}}


# 3. Files ------------------------------------------------------------------------------------

def read_state_dict(paths: Iterable[Path]) -> dict[str, torch.Tensor]:
    """Tensors from .safetensors / .bin / .pth files (torch files loaded with weights_only)."""
    from safetensors.torch import load_file
    state: dict[str, torch.Tensor] = {}
    for path in paths:
        part = load_file(str(path)) if path.suffix == ".safetensors" else torch.load(path, map_location="cpu",
                                                                                     weights_only=True)
        if isinstance(part, dict) and "state_dict" in part and isinstance(part["state_dict"], dict):
            part = part["state_dict"]
        duplicated = set(state) & set(part)
        if duplicated:
            raise CheckpointError(f"{path} repeats keys already loaded: {sorted(duplicated)[:5]}")
        state.update(part)
    return state


def weight_files(folder: Path) -> list[Path]:
    files = sorted(p for p in folder.iterdir() if p.suffix in WEIGHT_SUFFIXES)
    if not files:
        raise CheckpointError(f"no weight files ({', '.join(WEIGHT_SUFFIXES)}) in {folder}")
    return files


def release_weight_files(svn_ckpt: Path) -> list[Path]:
    """The weight files of an svn_ckpt/ folder, by the names diffusers reads (sharded index, safetensors, bin);
    a folder with none of them (e.g. our exports before they used that name: model.safetensors) is read whole."""
    svn_ckpt = Path(svn_ckpt)
    index = svn_ckpt / RELEASE_WEIGHTS_INDEX
    if index.is_file():
        shards = sorted(set(json.loads(index.read_text()).get("weight_map", {}).values()))
        missing = [name for name in shards if not (svn_ckpt / name).is_file()]
        if not shards or missing:
            raise CheckpointError(f"{index} lists {'missing shards ' + str(missing) if missing else 'no shards'}")
        return [svn_ckpt / name for name in shards]
    for name in (RELEASE_WEIGHTS, RELEASE_WEIGHTS_BIN):
        if (svn_ckpt / name).is_file():
            return [svn_ckpt / name]
    return weight_files(svn_ckpt)


def load_into(model: torch.nn.Module, state: dict[str, torch.Tensor], source: str) -> None:
    """Strict load that names every missing and unexpected key."""
    expected = set(model.state_dict())
    missing, unexpected = sorted(expected - set(state)), sorted(set(state) - expected)
    if missing or unexpected:
        raise CheckpointError(f"{source} does not match the model: missing keys {missing[:10]}"
                              f"{' ...' if len(missing) > 10 else ''} ({len(missing)} in all); unexpected keys "
                              f"{unexpected[:10]}{' ...' if len(unexpected) > 10 else ''} ({len(unexpected)} in all)")
    model.load_state_dict(state, strict=True, assign=True)


def load_release_transformer(svn_ckpt: Path, device: str = "cpu",
                             dtype: torch.dtype = torch.float32) -> SparseVideoNavTransformer:
    """Build the backbone from the authors' svn_ckpt/ folder (config.json + weights in original naming)."""
    from accelerate import init_empty_weights

    svn_ckpt = Path(svn_ckpt)
    config_path = svn_ckpt / "config.json"
    if not config_path.is_file():
        raise CheckpointError(f"expected the release config {config_path}")
    kwargs = transformer_config_from_release(json.loads(config_path.read_text()))
    with init_empty_weights():  # no full-size random init before the real weights arrive
        model = SparseVideoNavTransformer(**kwargs)
    state = release_to_ours(read_state_dict(release_weight_files(svn_ckpt)))
    # Persistent buffers that are recomputed deterministically are still checked, never silently taken.
    load_into(model, state, str(svn_ckpt))
    cast_keeping_fp32_modules(model, dtype)
    return model.to(device).eval()


def cast_keeping_fp32_modules(model: torch.nn.Module, dtype: torch.dtype) -> None:
    """Cast parameters to ``dtype`` except those diffusers keeps in float32 (norms, time embedding, RoPE),
    as from_pretrained(torch_dtype=...) does."""
    keep = set(getattr(model, "_keep_in_fp32_modules", None) or ())
    for name, parameter in model.named_parameters():
        if not keep & set(name.split(".")):
            parameter.data = parameter.data.to(dtype)


def export_release_transformer(model: SparseVideoNavTransformer, svn_ckpt: Path) -> Path:
    """Write `model` in the authors' layout: config.json + diffusion_pytorch_model.safetensors with `vgm.` keys,
    the file their diffusers from_pretrained reads (one file, unsharded). Returns the folder."""
    from safetensors.torch import save_file

    svn_ckpt = Path(svn_ckpt)
    svn_ckpt.mkdir(parents=True, exist_ok=True)
    (svn_ckpt / "config.json").write_text(json.dumps(release_config_from_transformer(model), indent=2))
    state = {k: v.detach().contiguous().cpu() for k, v in ours_to_release(model.state_dict()).items()}
    save_file(state, str(svn_ckpt / RELEASE_WEIGHTS), metadata={"format": "pt"})
    return svn_ckpt
