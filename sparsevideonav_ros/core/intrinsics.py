"""Pinhole camera matrices: from a horizontal field of view, and from a sensor_msgs/CameraInfo ``k``.

One place for the convention every user of intrinsics shares (camera_node's CameraInfo, the pose head,
evaluate's overlay): square pixels, pixel centres at integer coordinates, so a centred principal point is
((W - 1) / 2, (H - 1) / 2).
"""
from __future__ import annotations

import math
from typing import Optional, Sequence

import numpy as np


def intrinsics_from_fov(width: int, height: int, horizontal_fov_rad: float) -> np.ndarray:
    """(3, 3) pinhole matrix K (px) of a width x height image with the given horizontal FOV (rad), centred."""
    if not 0.0 < horizontal_fov_rad < math.pi:
        raise ValueError(f"horizontal_fov_rad must be in (0, pi), got {horizontal_fov_rad}")
    f = 0.5 * width / math.tan(0.5 * horizontal_fov_rad)
    return np.array([[f, 0.0, 0.5 * (width - 1)], [0.0, f, 0.5 * (height - 1)], [0.0, 0.0, 1.0]])


def matrix_from_camera_info(k: Sequence[float], info_width: int, info_height: int,
                            image_width: int, image_height: int) -> Optional[np.ndarray]:
    """CameraInfo ``k`` (9 values, row major) -> (3, 3) K for an image_width x image_height image, or None.

    None when the info is for another image size (a camera that changed resolution, a resized stream: K
    of another size is wrong, not approximately right) or is uncalibrated (REP 104: all zeros) or not a
    pinhole matrix with fx, fy > 0 and a finite last row (0, 0, 1).
    """
    if (int(info_width), int(info_height)) != (int(image_width), int(image_height)):
        return None
    values = np.asarray(list(k), dtype=float)
    if values.shape != (9,) or not np.all(np.isfinite(values)):
        return None
    matrix = values.reshape(3, 3)
    if matrix[0, 0] <= 0 or matrix[1, 1] <= 0 or not np.array_equal(matrix[2], [0.0, 0.0, 1.0]):
        return None
    return matrix
