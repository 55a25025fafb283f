"""Message <-> numpy conversion (cv_bridge is not installable on pip-only machines)."""
from __future__ import annotations

from typing import Any, Optional

import numpy as np
from geometry_msgs.msg import PoseStamped, Twist
from nav_msgs.msg import Odometry, Path
from sensor_msgs.msg import CameraInfo, CompressedImage, Image

from sparsevideonav_ros.core import images, se2
from sparsevideonav_ros.core.intrinsics import intrinsics_from_fov


def image_msg_from_array(array: np.ndarray, encoding: str, header: Any) -> Image:
    msg = Image(header=header)
    for key, value in images.image_fields_from_array(array, encoding).items():
        setattr(msg, key, value)
    return msg


def array_from_image_msg(msg: Image) -> np.ndarray:
    return images.array_from_image_fields(msg.height, msg.width, msg.encoding, msg.is_bigendian, msg.step,
                                          bytes(msg.data))


def rgb_from_image_msg(msg: Image) -> np.ndarray:
    """(H, W, 3) uint8 RGB from rgb8/bgr8/mono8; ImageEncodingError otherwise."""
    return images.to_rgb(array_from_image_msg(msg), msg.encoding)


def compressed_msg_from_rgb(rgb: np.ndarray, quality: int, header: Any) -> CompressedImage:
    return CompressedImage(header=header, format=images.compressed_format_string(),
                           data=images.encode_jpeg(rgb, quality))


def rgb_from_compressed_msg(msg: CompressedImage) -> np.ndarray:
    return images.decode_compressed(msg.format, bytes(msg.data))


def camera_info_msg(width: int, height: int, horizontal_fov_rad: float, header: Any,
                    intrinsics: Optional[tuple[float, float, float, float]] = None) -> CameraInfo:
    """Pinhole intrinsics (no distortion): the device's (fx, fy, cx, cy) when given, else from a horizontal FOV."""
    k = intrinsics_from_fov(width, height, horizontal_fov_rad)
    fx, fy, cx, cy = k[0, 0], k[1, 1], k[0, 2], k[1, 2]
    if intrinsics is not None:
        fx, fy, cx, cy = (float(v) for v in intrinsics)
    msg = CameraInfo(header=header, width=width, height=height, distortion_model="plumb_bob")
    msg.d = [0.0] * 5
    msg.k = [fx, 0.0, cx, 0.0, fy, cy, 0.0, 0.0, 1.0]
    msg.r = [1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0]
    msg.p = [fx, 0.0, cx, 0.0, 0.0, fy, cy, 0.0, 0.0, 0.0, 1.0, 0.0]
    return msg


def path_msg_from_waypoints(waypoints: np.ndarray, header: Any) -> Path:
    """(N, 3) x, y, yaw -> nav_msgs/Path in ``header.frame_id``; every pose shares the plan's header."""
    msg = Path(header=header)
    for x, y, yaw in np.asarray(waypoints, dtype=float).reshape(-1, 3):
        pose = PoseStamped(header=header)
        pose.pose.position.x, pose.pose.position.y = float(x), float(y)
        qx, qy, qz, qw = se2.quaternion_from_yaw(float(yaw))
        pose.pose.orientation.x, pose.pose.orientation.y = qx, qy
        pose.pose.orientation.z, pose.pose.orientation.w = qz, qw
        msg.poses.append(pose)
    return msg


def waypoints_from_path_msg(msg: Path) -> np.ndarray:
    """nav_msgs/Path -> (N, 3) x, y, yaw (z and roll/pitch ignored: ground robot)."""
    rows = []
    for pose in msg.poses:
        q = pose.pose.orientation
        rows.append((pose.pose.position.x, pose.pose.position.y, se2.yaw_from_quaternion(q.x, q.y, q.z, q.w)))
    return np.asarray(rows, dtype=float).reshape(-1, 3)


def pose_from_odometry_msg(msg: Odometry) -> np.ndarray:
    p, q = msg.pose.pose.position, msg.pose.pose.orientation
    return np.array([p.x, p.y, se2.yaw_from_quaternion(q.x, q.y, q.z, q.w)])


def twist_msg(vx: float, vy: float, wz: float) -> Twist:
    msg = Twist()
    msg.linear.x, msg.linear.y, msg.angular.z = float(vx), float(vy), float(wz)
    return msg


def twist_values(msg: Twist) -> tuple[float, float, float]:
    return msg.linear.x, msg.linear.y, msg.angular.z
