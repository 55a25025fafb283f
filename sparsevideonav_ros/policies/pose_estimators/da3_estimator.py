"""``da3``: Depth Anything 3 (PyPI ``depth-anything-3==0.1.1``, Apache-2.0 code) as the pose estimator.

Why the model path and not ``depth_anything_3.api.DepthAnything3``: the api module imports, at load,
moviepy 1.0.3, evo, pycolmap, trimesh, plyfile, imageio, matplotlib, ... (export and CLI helpers),
which the package's declared dependencies pin to versions unusable here (numpy<2). The network itself,
``depth_anything_3.model.da3.DepthAnything3Net``, needs only torch, numpy, einops, addict and
omegaconf; so the package is installed ``--no-deps`` with those (Makefile, requirements.txt) and this
module builds the network from the package's own YAML presets and runs its forward.

Weights: a local folder in the layout ``DepthAnything3.save_pretrained`` writes (and the published
model folders have): ``config.json`` = {"model_name": "da3-small" | ...} and ``model.safetensors`` with
every key prefixed ``model.``. It is loaded like ``from_pretrained(dir)`` but strictly (every key
present, none unexpected; the hub mixin's default is non-strict). The licence of the loaded weights is
part of ``describe()`` (DA3-Small/Base Apache-2.0, Large/Giant/Nested CC BY-NC 4.0).

Conventions: the forward returns extrinsics (B, N, 3, 4) OpenCV world->camera with the world frame
at the reference view; ``ref_view_strategy="first"`` pins the reference to view 0 = the current
frame. The camera-to-reference transform of view k is computed as E_0 @ inv(E_k) anyway, so the
result is relative to the current frame even where the model's view 0 is not exactly the identity.
Scale: DA3 (non-metric presets) is up to scale; depth and poses share it. The current view's depth
is back-projected with the camera intrinsics (scaled to the processed size), the ground plane is
fitted with the mount's normal, and its distance is set to the mount height (same as ``opencv``).
"""
from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional, Sequence, Union

import numpy as np
import torch

from sparsevideonav_ros.policies.pose_estimators.base import (PoseEstimate, PoseEstimationError, PoseEstimator,
                                                              check_frames, resize_intrinsics)
from sparsevideonav_ros.policies.pose_estimators.mount import (CameraMount, GroundScaleConfig, ground_scale,
                                                               invert_transform)

CONFIG_NAME = "config.json"
WEIGHTS_NAME = "model.safetensors"
KEY_PREFIX = "model."
PATCH = 14
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)

# Licence of the published weights per preset (model card). Only presets with a camera head estimate poses.
LICENCES = {
    "da3-small": "Apache-2.0",
    "da3-base": "Apache-2.0",
    "da3-large": "CC BY-NC 4.0",
    "da3-giant": "CC BY-NC 4.0",
    "da3nested-giant-large": "CC BY-NC 4.0",
    "da3metric-large": "Apache-2.0",
    "da3mono-large": "Apache-2.0",
}
POSE_PRESETS = ("da3-small", "da3-base", "da3-large", "da3-giant", "da3nested-giant-large")

# Tiny random configuration for wiring tests (config.json key below): the da3-small preset with a
# 6-block ViT-S (global attention from block 2, like the preset's from block 4) and a narrow DPT head.
TINY_KEY = "sparsevideonav_ros_tiny"
TINY = {"depth": 6, "alt_start": 2, "out_layers": [2, 3, 4, 5], "head_features": 16,
        "head_out_channels": [16, 32, 64, 128]}


class _Holder(torch.nn.Module):
    """The published files hold the network under ``model.`` (the api class's attribute name)."""

    def __init__(self, net: torch.nn.Module) -> None:
        super().__init__()
        self.model = net


def licence_of(model_name: str) -> str:
    """Licence of the published weights of a DA3 preset ('unknown' for names the card does not list)."""
    return LICENCES.get(model_name, "unknown")


def build_network(model_name: str = "da3-small", tiny: Optional[dict[str, Any]] = None) -> torch.nn.Module:
    """A randomly initialised DepthAnything3Net of a packaged preset (``tiny``: the TINY overrides)."""
    from depth_anything_3.cfg import create_object, load_config
    from depth_anything_3.registry import MODEL_REGISTRY

    if model_name not in MODEL_REGISTRY:
        raise PoseEstimationError(f"unknown Depth Anything 3 preset {model_name!r}; known: {sorted(MODEL_REGISTRY)}")
    config = load_config(MODEL_REGISTRY[model_name])
    if tiny is not None:
        config.net.out_layers = list(tiny["out_layers"])
        config.net.alt_start = config.net.qknorm_start = config.net.rope_start = int(tiny["alt_start"])
        config.head.features = int(tiny["head_features"])
        config.head.out_channels = list(tiny["head_out_channels"])
    net = create_object(config)
    if tiny is not None:
        # The DinoV2 wrapper does not forward the ViT depth: swap in a shallower ViT-S of the same width.
        from depth_anything_3.model.dinov2.vision_transformer import vit_small
        a = int(tiny["alt_start"])
        net.backbone.pretrained = vit_small(img_size=518, patch_size=PATCH, depth=int(tiny["depth"]), ffn_layer="mlp",
                                            alt_start=a, qknorm_start=a, rope_start=a, cat_token=True)
    return net.eval()


def save_folder(net: torch.nn.Module, folder: Union[str, Path], model_name: str,
                tiny: Optional[dict[str, Any]] = None) -> Path:
    """Write ``net`` in the published folder layout (config.json + model.safetensors, keys 'model.')."""
    from safetensors.torch import save_model

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    config: dict[str, Any] = {"model_name": model_name}
    if tiny is not None:
        config[TINY_KEY] = tiny
    (folder / CONFIG_NAME).write_text(json.dumps(config, indent=2))
    # save_model (not save_file): the DualDPT head ties some weights, stored once as the mixin does.
    save_model(_Holder(net), str(folder / WEIGHTS_NAME))
    return folder


def load_folder(folder: Union[str, Path]) -> tuple[torch.nn.Module, dict[str, Any]]:
    """Load a DA3 folder strictly -> (network in eval mode, {model_name, licence, folder, parameters})."""
    from safetensors.torch import load_model

    folder = Path(folder).expanduser()
    if not (folder / CONFIG_NAME).is_file():
        raise PoseEstimationError(f"Depth Anything 3 folder {folder}: missing {CONFIG_NAME}")
    if not (folder / WEIGHTS_NAME).is_file():
        raise PoseEstimationError(f"Depth Anything 3 folder {folder}: missing {WEIGHTS_NAME}")
    config = json.loads((folder / CONFIG_NAME).read_text())
    model_name = config.get("model_name")
    if model_name not in POSE_PRESETS:
        raise PoseEstimationError(f"Depth Anything 3 preset {model_name!r} in {folder} has no camera head; "
                                  f"pose estimation needs one of {list(POSE_PRESETS)}")
    net = build_network(model_name, config.get(TINY_KEY))
    holder = _Holder(net)
    try:
        # strict=True: every parameter present, nothing unexpected (tied weights stored once count as present).
        missing, unexpected = load_model(holder, str(folder / WEIGHTS_NAME), strict=True)
    except (RuntimeError, OSError, ValueError) as error:
        raise PoseEstimationError(f"{folder / WEIGHTS_NAME} does not match preset {model_name}: {error}") from None
    licence = "random weights (tests)" if TINY_KEY in config else licence_of(model_name)
    info = {"model_name": model_name, "licence": licence, "folder": str(folder),
            "parameters": sum(p.numel() for p in net.parameters())}
    return net.eval(), info


@dataclass(frozen=True)
class Da3EstimatorConfig:
    """process_res: longest side the frames are resized to (px, rounded to a multiple of 14; the DA3
    default is 504). ground: the metric-scale step shared with the opencv estimator
    (mount.GroundScaleConfig; min_points counts depth pixels of a grid every ``ground_stride`` px)."""

    process_res: int = 504
    ground_stride: int = 4
    ground: GroundScaleConfig = GroundScaleConfig(min_points=50)
    device: str = "cpu"


class Da3PoseEstimator(PoseEstimator):
    """All frames in one DA3 forward (the current frame as the reference view), ground-plane scale."""

    name = "da3"

    def __init__(self, net: torch.nn.Module, info: dict[str, Any], mount: CameraMount,
                 config: Da3EstimatorConfig = Da3EstimatorConfig()) -> None:
        self.net = net.to(config.device).eval()
        self.info = dict(info)
        self.mount = mount
        self.config = config

    @classmethod
    def from_options(cls, mount: CameraMount, weights: str, **options: Any) -> "Da3PoseEstimator":
        net, info = load_folder(weights)
        return cls(net, info, mount, Da3EstimatorConfig(**options))

    def describe(self) -> dict[str, Any]:
        return {"estimator": self.name, "weights": self.info.get("folder", ""), "model": self.info.get("model_name"),
                "licence": self.info.get("licence"), "scale": "ground plane + mount height",
                "process_res": self.config.process_res}

    def processed_size(self, height: int, width: int) -> tuple[int, int]:
        """(H', W'): longest side to process_res, each side a multiple of 14 (at least 14)."""
        scale = self.config.process_res / max(height, width)
        return (max(PATCH, int(round(height * scale / PATCH)) * PATCH),
                max(PATCH, int(round(width * scale / PATCH)) * PATCH))

    def preprocess(self, frames: Sequence[np.ndarray]) -> torch.Tensor:
        """K+1 frames (H, W, 3) uint8 -> (1, K+1, 3, H', W') float32, ImageNet-normalised."""
        import cv2

        h, w = self.processed_size(*frames[0].shape[:2])
        batch = []
        for frame in frames:
            interp = cv2.INTER_AREA if (h < frame.shape[0]) else cv2.INTER_CUBIC
            batch.append(cv2.resize(frame, (w, h), interpolation=interp))
        x = torch.from_numpy(np.stack(batch)).float().div_(255.0).permute(0, 3, 1, 2)
        mean = torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1)
        std = torch.tensor(IMAGENET_STD).view(1, 3, 1, 1)
        return ((x - mean) / std).unsqueeze(0)

    def forward(self, x: torch.Tensor) -> tuple[np.ndarray, np.ndarray]:
        """(1, N, 3, H', W') -> (world->camera extrinsics (N, 4, 4), depth (N, H', W')) as float64 numpy."""
        device = torch.device(self.config.device)
        use_bf16 = device.type == "cuda" and torch.cuda.is_bf16_supported()
        with torch.inference_mode(), torch.autocast(device_type=device.type, dtype=torch.bfloat16, enabled=use_bf16):
            out = self.net(x.to(device), None, None, export_feat_layers=[], infer_gs=False, use_ray_pose=False,
                           ref_view_strategy="first")
        extrinsics = out["extrinsics"][0].float().cpu().numpy().astype(float)
        depth = out["depth"][0].float().cpu().numpy().astype(float)
        if extrinsics.shape[-2:] == (3, 4):
            extrinsics = np.concatenate([extrinsics, np.tile([[[0.0, 0.0, 0.0, 1.0]]], (len(extrinsics), 1, 1))], axis=1)
        return extrinsics, depth

    def estimate(self, current: np.ndarray, futures: Sequence[np.ndarray], intrinsics: np.ndarray) -> PoseEstimate:
        """current, futures: (H, W, 3) uint8 RGB; intrinsics (3, 3) px of those frames. One forward of
        all K+1 frames; camera-to-reference (current camera) transforms in metres."""
        k = check_frames(current, futures, intrinsics)
        n = len(futures)
        clock = time.perf_counter
        start = clock()
        x = self.preprocess([current, *futures])
        timings = {"preprocess_s": clock() - start}
        start = clock()
        extrinsics, depth = self.forward(x)
        timings["forward_s"] = clock() - start
        start = clock()
        info = {**self.describe(), "world_to_camera": extrinsics}
        if not (np.all(np.isfinite(extrinsics)) and np.all(np.isfinite(depth[0]))):
            return PoseEstimate.all_invalid(n, "non_finite: Depth Anything 3 returned NaN/inf", **info)
        relative = extrinsics[0] @ invert_transform(extrinsics[1:])  # camera k -> world -> camera 0
        scale, reason, ground_diag = ground_scale(self._depth_points(depth[0], k, current.shape[:2]), self.mount,
                                                  self.config.ground, "depth pixels")
        info.update(ground_diag)
        timings["scale_s"] = clock() - start
        if reason:
            return PoseEstimate.all_invalid(n, reason, **info)
        relative[:, :3, 3] *= scale
        return PoseEstimate(relative, np.ones(n, bool), np.ones(n), ("",) * n, info=info, timings_s=timings)

    def _depth_points(self, depth: np.ndarray, intrinsics: np.ndarray, size_hw: tuple[int, int]) -> np.ndarray:
        """(M, 3) camera-frame points in DA3's scale from the current view's depth (H', W'), on a grid every
        ground_stride px; intrinsics (3, 3) are of the size_hw frames, rescaled to the depth map's size."""
        h, w = depth.shape
        k = resize_intrinsics(intrinsics, w / size_hw[1], h / size_hw[0])
        s = self.config.ground_stride
        v, u = np.mgrid[s // 2:h:s, s // 2:w:s]
        z = depth[v.ravel(), u.ravel()]
        rays = np.stack([u.ravel(), v.ravel(), np.ones(u.size)], axis=1) @ np.linalg.inv(k).T
        return (rays * z[:, None])[z > 0]
