"""The estimator contract: current frame + K imagined future frames -> K relative camera poses.

Torch-free (numpy only), so the pose head, the renderer tests and the ``opencv`` estimator never
import torch. Conventions (docs/pose_head.md):

- Camera frame: OpenCV (x right, y down, z forward), optical centre at the origin.
- ``PoseEstimate.camera_to_reference[k]`` (4, 4) maps a point from future camera k's frame into the
  reference (current) camera's frame: ``X_ref = R @ X_k + t``. Its translation column is therefore
  the position of future camera k in the reference camera frame, in **metres** (each estimator
  scales its up-to-scale geometry from the camera mount's height above the ground plane).
- A frame the estimator cannot vouch for is ``valid[k] == False`` with ``reasons[k]`` saying why
  (``too_few_inliers``, ``ground_not_visible``, ...); its transform is NaN, never a guess.
"""
from __future__ import annotations

import abc
from dataclasses import dataclass, field
from typing import Any, ClassVar, Sequence

import numpy as np

from sparsevideonav_ros.core.intrinsics import intrinsics_from_fov  # noqa: F401 (re-exported)


class PoseEstimationError(RuntimeError):
    """The estimator cannot run at all (bad input, missing weights), as opposed to a frame it
    cannot vouch for (that is an invalid frame in the PoseEstimate)."""


# Reasons an estimate is refused, shared by the estimators so the pose head and the status can name
# them. Each stands for a check that failed; the free text after ': ' gives the measured numbers.
REASONS = (
    "too_few_features",      # fewer matched features than the estimator needs
    "too_few_inliers",       # the RANSAC model explains too few matches (or too small a fraction)
    "degenerate_motion",     # the two-view geometry is ill-posed (e.g. motion the model cannot resolve)
    "ground_not_visible",    # too few points on a ground plane to fix the metric scale
    "ground_inconsistent",   # the fitted ground plane disagrees with the camera mount (tilt, height)
    "inconsistent_scale",    # the ground points disagree with each other about the scale
    "non_finite",            # NaN or inf somewhere in the estimate
    "non_planar_motion",     # the estimated body motion tilts/lifts more than a ground robot can
    "previous_invalid",      # chained estimate: an earlier link of the chain was refused
)


def reason_code(reason: str) -> str:
    """'too_few_inliers: 12 < 25' -> 'too_few_inliers'."""
    return reason.split(":", 1)[0].strip()


@dataclass
class PoseEstimate:
    """Relative camera poses of K future frames.

    camera_to_reference: (K, 4, 4) float64, metres (NaN where invalid).
    valid: (K,) bool. confidence: (K,) float in [0, 1] (0 where invalid; estimator-specific meaning,
      e.g. the RANSAC inlier fraction). reasons: K strings, '' where valid.
    rotation_only: (K,) bool, True where the estimator found no measurable parallax and reports a turn
      in place about base_link (the camera translation is then the mount offset swept by that turn).
    info: estimator name, licence of loaded weights, scale source, per-frame diagnostics.
    timings_s: named compute durations in seconds.
    """

    camera_to_reference: np.ndarray
    valid: np.ndarray
    confidence: np.ndarray
    reasons: tuple[str, ...]
    rotation_only: np.ndarray = None  # type: ignore[assignment]
    info: dict[str, Any] = field(default_factory=dict)
    timings_s: dict[str, float] = field(default_factory=dict)

    def __post_init__(self) -> None:
        k = len(self.reasons)
        self.camera_to_reference = np.asarray(self.camera_to_reference, dtype=float).reshape(k, 4, 4)
        self.valid = np.asarray(self.valid, dtype=bool).reshape(k)
        self.confidence = np.asarray(self.confidence, dtype=float).reshape(k)
        if self.rotation_only is None:
            self.rotation_only = np.zeros(k, dtype=bool)
        self.rotation_only = np.asarray(self.rotation_only, dtype=bool).reshape(k)
        # A transform with NaN/inf is never valid, whatever the estimator said.
        for i in range(k):
            if self.valid[i] and not np.all(np.isfinite(self.camera_to_reference[i])):
                self.valid[i] = False
                self.reasons = self.reasons[:i] + ("non_finite: transform has NaN/inf",) + self.reasons[i + 1:]
            if not self.valid[i]:
                self.camera_to_reference[i] = np.nan
                self.confidence[i] = 0.0
                if not self.reasons[i]:
                    raise ValueError(f"invalid frame {i} without a reason")

    def __len__(self) -> int:
        return len(self.reasons)

    @classmethod
    def all_invalid(cls, k: int, reason: str, **info: Any) -> "PoseEstimate":
        return cls(np.full((k, 4, 4), np.nan), np.zeros(k, bool), np.zeros(k), (reason,) * k, info=dict(info))


class PoseEstimator(abc.ABC):
    """Estimates where the camera of each imagined frame is, relative to the current frame.

    name: the parameter value that selects it (``opencv``, ``da3``).
    """

    name: ClassVar[str]

    @abc.abstractmethod
    def estimate(self, current: np.ndarray, futures: Sequence[np.ndarray], intrinsics: np.ndarray) -> PoseEstimate:
        """current: (H, W, 3) uint8 RGB, the frame the plan is made from. futures: K frames (H, W, 3)
        uint8 RGB in time order. intrinsics: (3, 3) pinhole matrix of these frames' pixel grid (px).
        Returns a PoseEstimate of K frames (camera-to-reference, metres)."""

    def describe(self) -> dict[str, Any]:
        """Name, weights, licence: what the start-up log and the status say about this estimator."""
        return {"estimator": self.name}


def check_frames(current: np.ndarray, futures: Sequence[np.ndarray], intrinsics: np.ndarray) -> np.ndarray:
    """Validate the estimator inputs; returns the intrinsics as a (3, 3) float64 array."""
    frames = [current, *futures]
    for i, frame in enumerate(frames):
        if not (isinstance(frame, np.ndarray) and frame.ndim == 3 and frame.shape[2] == 3 and frame.dtype == np.uint8):
            shape = getattr(frame, "shape", None)
            raise PoseEstimationError(f"frame {i} must be (H, W, 3) uint8 RGB, got {shape} {getattr(frame, 'dtype', type(frame))}")
        if frame.shape != current.shape:
            raise PoseEstimationError(f"frame {i} is {frame.shape}, the current frame {current.shape}: one camera, one size")
    if not futures:
        raise PoseEstimationError("no future frames to estimate")
    k = np.asarray(intrinsics, dtype=float)
    if k.shape != (3, 3) or not np.all(np.isfinite(k)) or k[0, 0] <= 0 or k[1, 1] <= 0:
        raise PoseEstimationError(f"intrinsics must be a finite (3, 3) pinhole matrix with fx, fy > 0, got {k.tolist()}")
    return k


def resize_intrinsics(intrinsics: np.ndarray, scale_x: float, scale_y: float) -> np.ndarray:
    """(3, 3) K of an image resized by (scale_x, scale_y); pixel centres at integer coordinates, so a
    resize maps u -> (u + 0.5) * scale - 0.5."""
    k = np.asarray(intrinsics, dtype=float).copy()
    k[0, 0] *= scale_x
    k[0, 1] *= scale_x
    k[1, 1] *= scale_y
    k[0, 2] = (k[0, 2] + 0.5) * scale_x - 0.5
    k[1, 2] = (k[1, 2] + 0.5) * scale_y - 0.5
    return k


def crop_resize_intrinsics(intrinsics: np.ndarray, width: int, height: int, size: int) -> np.ndarray:
    """Intrinsics of the policy's frames: centre-cropped to a square, resized to ``size`` x ``size``
    (how SparseVideoNav prepares frames). intrinsics: (3, 3) of the width x height camera image."""
    k = np.asarray(intrinsics, dtype=float).copy()
    side = min(width, height)
    k[0, 2] -= 0.5 * (width - side)
    k[1, 2] -= 0.5 * (height - side)
    return resize_intrinsics(k, size / side, size / side)
