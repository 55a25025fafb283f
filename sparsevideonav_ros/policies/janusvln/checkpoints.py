"""JanusVLN checkpoint naming: the authors' HF folder (both transformers layouts) <-> our module's state dict.

The authors' model (Qwen2_5_VLForConditionalGenerationForJanusVLN, saved with save_pretrained; the released
folders misstl/JanusVLN_Base / _Extra were not inspected here) holds
    visual.*                 Qwen2.5-VL ViT + patch merger      (transformers < 4.52 naming)
    model.*                  Qwen2.5 language model
    lm_head.*
    vggt.aggregator.*        VGGT-1B aggregator
    vggt.depth_head.*, vggt.point_head.*   VGGT heads, unused at inference (accepted and dropped)
    merger.*                 the spatial projector
Newer transformers name the Qwen parts model.visual.* and model.language_model.*; both layouts load.
Our module (models.JanusVLNModel) names them qwen.model.visual.*, qwen.model.language_model.*, qwen.lm_head.*,
vggt.aggregator.*, merger.*. Anything else, and any parameter left without a value, is an error naming it.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Callable, Iterable, Mapping

import torch

LAYOUTS = ("old", "new")
UNUSED_PREFIXES = ("vggt.depth_head.", "vggt.point_head.", "vggt.camera_head.", "vggt.track_head.")
WEIGHTS_INDEX = "model.safetensors.index.json"


class CheckpointError(RuntimeError):
    """A checkpoint is missing, incomplete or does not match the model; the message names what."""


def detect_layout(keys: Iterable[str]) -> str:
    keys = list(keys)
    new = any(k.startswith(("model.visual.", "model.language_model.")) for k in keys)
    old = any(k.startswith("visual.") for k in keys) or any(
        k.startswith("model.") and not k.startswith(("model.visual.", "model.language_model.")) for k in keys)
    if new and old:
        mixed = sorted(k for k in keys if k.startswith(("visual.", "model.")))[:6]
        raise CheckpointError(f"checkpoint mixes the old (visual.*, model.*) and new (model.visual.*, "
                              f"model.language_model.*) Qwen layouts, e.g. {mixed}")
    return "new" if new else "old"


def release_to_ours(state: Mapping[str, torch.Tensor]) -> tuple[dict[str, torch.Tensor], list[str], dict[str, str]]:
    """Authors' keys (either layout) -> our keys; returns (mapped, dropped unused VGGT-head keys, our name ->
    checkpoint name). Keys that belong nowhere are kept under their own name so the strict load names them."""
    layout = detect_layout(state)
    mapped: dict[str, torch.Tensor] = {}
    dropped: list[str] = []
    names: dict[str, str] = {}
    for key, value in state.items():
        if key.startswith(UNUSED_PREFIXES):
            dropped.append(key)
            continue
        if key.startswith(("vggt.aggregator.", "merger.")):
            ours = key
        elif key.startswith("lm_head."):
            ours = "qwen." + key
        elif layout == "new" and key.startswith(("model.visual.", "model.language_model.")):
            ours = "qwen." + key
        elif layout == "old" and key.startswith("visual."):
            ours = "qwen.model." + key
        elif layout == "old" and key.startswith("model."):
            ours = "qwen.model.language_model." + key[len("model."):]
        else:
            ours = key  # unexpected: reported by name
        mapped[ours] = value
        names[ours] = key
    return mapped, dropped, names


def release_name(key: str, layout: str = "old") -> str:
    """Our key -> the authors' name in `layout` ('old': visual.*/model.*, 'new': model.visual.*/...)."""
    if layout not in LAYOUTS:
        raise ValueError(f"layout must be one of {LAYOUTS}, got {layout!r}")
    if key.startswith(("vggt.", "merger.")):
        return key
    if key.startswith("qwen.lm_head."):
        return key[len("qwen."):]
    if key.startswith("qwen.model.visual."):
        return key[len("qwen."):] if layout == "new" else key[len("qwen.model."):]
    if key.startswith("qwen.model.language_model."):
        rest = key[len("qwen.model.language_model."):]
        return ("model.language_model." if layout == "new" else "model.") + rest
    raise KeyError(f"no release name for {key!r}")


def ours_to_release(state: Mapping[str, torch.Tensor], layout: str = "old") -> dict[str, torch.Tensor]:
    """Our state dict -> the authors' naming in `layout`."""
    return {release_name(key, layout): value for key, value in state.items()}


def weight_files(folder: Path) -> list[Path]:
    index = folder / WEIGHTS_INDEX
    if index.is_file():
        names = sorted(set(json.loads(index.read_text())["weight_map"].values()))
        missing = [n for n in names if not (folder / n).is_file()]
        if missing:
            raise CheckpointError(f"{index} lists weight files that are missing: {missing}")
        return [folder / n for n in names]
    files = sorted(folder.glob("*.safetensors"))
    if not files:
        raise CheckpointError(f"no weights in {folder}: expected model.safetensors or {WEIGHTS_INDEX} + shards")
    return files


def read_weights(folder: Path) -> dict[str, torch.Tensor]:
    from safetensors.torch import load_file

    from sparsevideonav_ros.core.progress import Progress

    state: dict[str, torch.Tensor] = {}
    files = weight_files(Path(folder))
    # gigabytes on a start-up: one line per shard (MB read of the total, ETA) on stderr, the node's log
    total_mb = sum(path.stat().st_size for path in files) / 1e6
    progress = Progress(f"janusvln: reading weights from {folder}", total=round(total_mb, 1), unit="MB", every_s=0.0)
    read_mb = 0.0
    for index, path in enumerate(files):
        part = load_file(str(path))
        repeated = set(state) & set(part)
        if repeated:
            raise CheckpointError(f"{path} repeats keys already loaded: {sorted(repeated)[:5]}")
        state.update(part)
        read_mb += path.stat().st_size / 1e6
        if index < len(files) - 1:  # the last one is the finish line
            progress.update(round(read_mb, 1), note=f"{path.name}")
        else:
            progress.done = round(read_mb, 1)
    progress.finish(f"{len(files)} file(s)")
    return state


def load_into(model: torch.nn.Module, state: Mapping[str, torch.Tensor], source: str,
              display: Callable[[str], str] = lambda key: key) -> None:
    """Strict load naming every missing and unexpected key (as `display` names them: the checkpoint's own
    naming); shapes are checked too."""
    expected = model.state_dict()
    missing = sorted(display(k) for k in set(expected) - set(state))
    unexpected = sorted(display(k) for k in set(state) - set(expected))
    if missing or unexpected:
        def names(keys: list[str]) -> str:
            return f"{keys[:10]}{' ...' if len(keys) > 10 else ''} ({len(keys)} in all)"
        raise CheckpointError(f"{source} does not match the JanusVLN model: missing keys {names(missing)}; "
                              f"unexpected keys {names(unexpected)}")
    wrong = [f"{display(k)}: checkpoint {tuple(v.shape)} vs model {tuple(expected[k].shape)}"
             for k, v in state.items() if tuple(v.shape) != tuple(expected[k].shape)]
    if wrong:
        raise CheckpointError(f"{source} has tensors of the wrong shape: {wrong[:6]}")
    model.load_state_dict(dict(state), strict=False, assign=True)
    left = [n for n, t in list(model.named_parameters()) + list(model.named_buffers()) if t.is_meta]
    if left:
        raise CheckpointError(f"{source}: no value for {left[:10]}")


def save_weights(state: Mapping[str, torch.Tensor], folder: Path, max_shard_bytes: int = 0) -> None:
    """Write `state` as model.safetensors, or as shards + index when `max_shard_bytes` > 0."""
    from safetensors.torch import save_file

    folder = Path(folder)
    tensors = {k: v.detach().contiguous().cpu() for k, v in state.items()}
    if max_shard_bytes <= 0:
        save_file(tensors, str(folder / "model.safetensors"), metadata={"format": "pt"})
        return
    shards: list[dict[str, torch.Tensor]] = [{}]
    size = 0
    for key, value in tensors.items():
        nbytes = value.numel() * value.element_size()
        if shards[-1] and size + nbytes > max_shard_bytes:
            shards.append({})
            size = 0
        shards[-1][key] = value
        size += nbytes
    weight_map = {}
    for i, shard in enumerate(shards, 1):
        name = f"model-{i:05d}-of-{len(shards):05d}.safetensors"
        save_file(shard, str(folder / name), metadata={"format": "pt"})
        weight_map.update({k: name for k in shard})
    total = sum(v.numel() * v.element_size() for v in tensors.values())
    (folder / WEIGHTS_INDEX).write_text(json.dumps({"metadata": {"total_size": total}, "weight_map": weight_map},
                                                   indent=2))
