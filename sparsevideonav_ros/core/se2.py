"""SE(2) pose algebra on numpy arrays.

A pose is an array of shape (..., 3) holding (x, y, yaw): position in metres
and heading in radians, counter-clockwise from the parent frame's x axis
(REP-103). All functions broadcast over leading dimensions, so a batch of
poses (N, 3) can be composed with a single pose (3,).
"""

from __future__ import annotations

import math

import numpy as np

TWO_PI = 2.0 * math.pi


def wrap_angle(a):
    """Wrap angle(s) in radians to [-pi, pi). Accepts scalars or arrays."""
    return np.mod(np.asarray(a, dtype=float) + math.pi, TWO_PI) - math.pi


def _as_pose(p) -> np.ndarray:
    p = np.asarray(p, dtype=float)
    if p.shape[-1:] != (3,):
        raise ValueError(f"expected pose array of shape (..., 3), got {p.shape}")
    return p


def compose(a, b) -> np.ndarray:
    """Return a ⊕ b: pose b (expressed in a's frame) mapped into a's parent frame.

    a, b: (..., 3) arrays (x m, y m, yaw rad); broadcast against each other.
    Returns (..., 3) with yaw wrapped to [-pi, pi).
    """
    a, b = _as_pose(a), _as_pose(b)
    c, s = np.cos(a[..., 2]), np.sin(a[..., 2])
    x = a[..., 0] + c * b[..., 0] - s * b[..., 1]
    y = a[..., 1] + s * b[..., 0] + c * b[..., 1]
    return np.stack([x, y, wrap_angle(a[..., 2] + b[..., 2])], axis=-1)


def inverse(a) -> np.ndarray:
    """Return a⁻¹ such that compose(a, inverse(a)) is the identity. Shape (..., 3)."""
    a = _as_pose(a)
    c, s = np.cos(a[..., 2]), np.sin(a[..., 2])
    x = -(c * a[..., 0] + s * a[..., 1])
    y = -(-s * a[..., 0] + c * a[..., 1])
    return np.stack([x, y, wrap_angle(-a[..., 2])], axis=-1)


def relative(a, b) -> np.ndarray:
    """Return inverse(a) ⊕ b: pose b expressed in the frame of pose a. Shape (..., 3)."""
    return compose(inverse(a), b)


def poses_from_deltas(deltas) -> np.ndarray:
    """Chain successive relative motions into poses.

    deltas: (N, 3); deltas[i] is the motion from pose i-1 to pose i expressed in
    pose i-1's frame, with pose -1 being the identity. Returns (N, 3) where
    out[i] = deltas[0] ⊕ ... ⊕ deltas[i] (so out[0] == deltas[0]).
    """
    deltas = _as_pose(deltas)
    if deltas.ndim != 2:
        raise ValueError(f"expected deltas of shape (N, 3), got {deltas.shape}")
    out = np.empty_like(deltas)
    pose = np.zeros(3)
    for i, d in enumerate(deltas):
        pose = compose(pose, d)
        out[i] = pose
    return out


def _v_coeffs(theta: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """sin(t)/t and (1 - cos(t))/t, using Taylor series near 0 where they are 0/0."""
    small = np.abs(theta) < 1e-6
    safe = np.where(small, 1.0, theta)
    a = np.where(small, 1.0 - theta**2 / 6.0, np.sin(safe) / safe)
    b = np.where(small, theta / 2.0 - theta**3 / 24.0, (1.0 - np.cos(safe)) / safe)
    return a, b


def exp(twist) -> np.ndarray:
    """Pose reached by holding a constant body twist for unit time.

    twist: (..., 3) = (vx*dt m, vy*dt m, wz*dt rad), i.e. a body velocity
    already multiplied by the duration. Unlike compose(pose, twist), this
    follows the arc the robot actually drives while it turns.
    Returns (..., 3) expressed in the starting pose's frame.
    """
    t = _as_pose(twist)
    a, b = _v_coeffs(t[..., 2])
    x = a * t[..., 0] - b * t[..., 1]
    y = b * t[..., 0] + a * t[..., 1]
    return np.stack([x, y, wrap_angle(t[..., 2])], axis=-1)


def log(pose) -> np.ndarray:
    """Inverse of exp for yaw in [-pi, pi): the constant twist (..., 3) reaching pose."""
    p = _as_pose(pose)
    theta = wrap_angle(p[..., 2])
    a, b = _v_coeffs(theta)
    det = a * a + b * b
    vx = (a * p[..., 0] + b * p[..., 1]) / det
    vy = (-b * p[..., 0] + a * p[..., 1]) / det
    return np.stack([vx, vy, theta], axis=-1)


def yaw_from_quaternion(x: float, y: float, z: float, w: float) -> float:
    """Yaw (rad, rotation about z) of a quaternion; roll and pitch are ignored.

    Assumes a unit quaternion, as ROS messages carry.
    """
    return math.atan2(2.0 * (w * z + x * y), 1.0 - 2.0 * (y * y + z * z))


def quaternion_from_yaw(yaw: float) -> tuple[float, float, float, float]:
    """Unit quaternion (x, y, z, w) for a pure rotation of yaw rad about z."""
    half = 0.5 * float(yaw)
    return (0.0, 0.0, math.sin(half), math.cos(half))


def interpolate(p0, p1, alpha) -> np.ndarray:
    """Interpolate between poses: linear in x, y and along the shorter arc in yaw.

    p0, p1: (..., 3); alpha: scalar or array broadcastable to (...,) where 0
    gives p0 and 1 gives p1 (values outside [0, 1] extrapolate).
    """
    p0, p1 = _as_pose(p0), _as_pose(p1)
    alpha = np.asarray(alpha, dtype=float)[..., None]
    xy = p0[..., :2] + alpha[..., :1] * (p1[..., :2] - p0[..., :2])
    dyaw = wrap_angle(p1[..., 2] - p0[..., 2])
    yaw = wrap_angle(p0[..., 2] + alpha[..., 0] * dyaw)
    return np.concatenate([xy, yaw[..., None]], axis=-1)
