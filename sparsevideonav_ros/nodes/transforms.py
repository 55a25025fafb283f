"""Transforms for RViz/Foxglove: the camera mount as base_link -> camera_link, and TFMessage when it exists.

Frames (REP-105 naming, one tree per robot namespace):
  odom -> base_link        go2_bridge_node, with every odometry message (where odometry is made, so the
                           transform and nav_msgs/Odometry never disagree); odom/transform and /tf
  base_link -> camera_link camera_node, once, latched (it stamps the images with camera_link, so it says
                           where that frame is); camera/transform and /tf_static

camera_link is the frame the images are stamped with (camera_node frame_id), so its axes are the
camera's optical axes, OpenCV convention (x right, y down, z forward: what RViz's Camera display and
Foxglove's image projection expect of an image's frame), placed by the camera mount of the pose head
(policies/pose_estimators/mount.py: MOUNT_PRESETS, or custom from the mount_* parameters).

tf2_msgs is part of every ROS 2 install but no PyPI wheel: ``TFMessage`` is None on pip-only installs,
where the nodes publish odom/transform and camera/transform only (the live view and the recorder turn
them into /tf and /tf_static).
"""
from __future__ import annotations

import math
from typing import Any, Optional

import numpy as np
from geometry_msgs.msg import TransformStamped
from std_msgs.msg import Header

from sparsevideonav_ros.policies.pose_estimators.mount import CameraMount, mount_preset

try:  # any ROS 2 install; not among the PyPI wheels
    from tf2_msgs.msg import TFMessage
except ImportError:  # pragma: no cover - depends on the install
    TFMessage = None

NO_TF2_MSGS = ("tf2_msgs is not installed (pip-only): no /{topic}; the same transform is on {source} "
               "(the Foxglove live view, foxglove:=true, and record:=true turn it into /{topic})")


def camera_mount(config: Any) -> CameraMount:
    """The mount of ``config.camera_mount`` (camera_node's or the sparsevideonav policy's parameters: same
    names): a preset of MOUNT_PRESETS, or custom from mount_height_m / mount_pitch_down_deg / mount_forward_m."""
    if config.camera_mount == "custom":
        return CameraMount(height_m=config.mount_height_m, pitch_down_rad=math.radians(config.mount_pitch_down_deg),
                           forward_m=config.mount_forward_m)
    return mount_preset(config.camera_mount)


def quaternion_from_matrix(rotation: np.ndarray) -> tuple[float, float, float, float]:
    """(x, y, z, w) unit quaternion of a (3, 3) rotation matrix, w >= 0."""
    r = np.asarray(rotation, dtype=float)
    trace = r[0, 0] + r[1, 1] + r[2, 2]
    if trace > 0:
        s = 2.0 * math.sqrt(trace + 1.0)
        w, x, y, z = 0.25 * s, (r[2, 1] - r[1, 2]) / s, (r[0, 2] - r[2, 0]) / s, (r[1, 0] - r[0, 1]) / s
    elif r[0, 0] > r[1, 1] and r[0, 0] > r[2, 2]:
        s = 2.0 * math.sqrt(1.0 + r[0, 0] - r[1, 1] - r[2, 2])
        w, x, y, z = (r[2, 1] - r[1, 2]) / s, 0.25 * s, (r[0, 1] + r[1, 0]) / s, (r[0, 2] + r[2, 0]) / s
    elif r[1, 1] > r[2, 2]:
        s = 2.0 * math.sqrt(1.0 + r[1, 1] - r[0, 0] - r[2, 2])
        w, x, y, z = (r[0, 2] - r[2, 0]) / s, (r[0, 1] + r[1, 0]) / s, 0.25 * s, (r[1, 2] + r[2, 1]) / s
    else:
        s = 2.0 * math.sqrt(1.0 + r[2, 2] - r[0, 0] - r[1, 1])
        w, x, y, z = (r[1, 0] - r[0, 1]) / s, (r[0, 2] + r[2, 0]) / s, (r[1, 2] + r[2, 1]) / s, 0.25 * s
    q = np.array([x, y, z, w])
    q /= np.linalg.norm(q)
    if q[3] < 0:
        q = -q
    return tuple(float(v) for v in q)


def matrix_from_quaternion(x: float, y: float, z: float, w: float) -> np.ndarray:
    """(3, 3) rotation of a unit quaternion (x, y, z, w)."""
    return np.array([[1 - 2 * (y * y + z * z), 2 * (x * y - z * w), 2 * (x * z + y * w)],
                     [2 * (x * y + z * w), 1 - 2 * (x * x + z * z), 2 * (y * z - x * w)],
                     [2 * (x * z - y * w), 2 * (y * z + x * w), 1 - 2 * (x * x + y * y)]])


def camera_transform_msg(mount: CameraMount, base_frame: str, camera_frame: str, stamp: Any) -> TransformStamped:
    """base_frame -> camera_frame (the mount's base_from_camera: X_base = R X_cam + t) as a TransformStamped."""
    matrix = mount.base_from_camera
    msg = TransformStamped(header=Header(stamp=stamp, frame_id=base_frame), child_frame_id=camera_frame)
    msg.transform.translation.x, msg.transform.translation.y, msg.transform.translation.z = (
        float(v) for v in matrix[:3, 3])
    r = msg.transform.rotation
    r.x, r.y, r.z, r.w = quaternion_from_matrix(matrix[:3, :3])
    return msg


def transform_matrix(msg: TransformStamped) -> np.ndarray:
    """(4, 4) matrix of a TransformStamped (parent from child)."""
    t, q = msg.transform.translation, msg.transform.rotation
    out = np.eye(4)
    out[:3, :3] = matrix_from_quaternion(q.x, q.y, q.z, q.w)
    out[:3, 3] = (t.x, t.y, t.z)
    return out


def tf_message(transforms: list) -> Optional[Any]:
    """A tf2_msgs/TFMessage of ``transforms``; None without tf2_msgs."""
    return None if TFMessage is None else TFMessage(transforms=list(transforms))
