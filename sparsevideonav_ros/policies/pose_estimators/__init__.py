"""Camera-pose estimators for the pose-from-imagination action head, found by name.

``make_estimator("opencv", mount)`` needs no weights; ``make_estimator("da3", mount, weights=dir)``
imports torch and Depth Anything 3 only when asked for (this package itself stays torch-free).
"""
from __future__ import annotations

from typing import Any

from sparsevideonav_ros.policies.pose_estimators.base import PoseEstimate, PoseEstimationError, PoseEstimator
from sparsevideonav_ros.policies.pose_estimators.mount import MOUNT_PRESETS, CameraMount, mount_preset

ESTIMATORS = ("opencv", "da3")


def make_estimator(name: str, mount: CameraMount, **options: Any) -> PoseEstimator:
    """Build the estimator called ``name`` (one of ESTIMATORS) for a camera on ``mount``.

    opencv: options are OpenCVEstimatorConfig fields. da3: ``weights`` (a local folder with
    config.json + model.safetensors, or "tiny" for random wiring-test weights) and Da3EstimatorConfig fields.
    """
    if name == "opencv":
        from sparsevideonav_ros.policies.pose_estimators.opencv_estimator import OpenCVEstimatorConfig, OpenCVPoseEstimator
        return OpenCVPoseEstimator(mount, OpenCVEstimatorConfig(**options))
    if name == "da3":
        from sparsevideonav_ros.policies.pose_estimators.da3_estimator import Da3PoseEstimator
        return Da3PoseEstimator.from_options(mount, **options)
    raise PoseEstimationError(f"unknown pose estimator {name!r}; known: {list(ESTIMATORS)}")


__all__ = ["ESTIMATORS", "MOUNT_PRESETS", "CameraMount", "PoseEstimate", "PoseEstimationError", "PoseEstimator",
           "make_estimator", "mount_preset"]
