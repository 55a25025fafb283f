"""Camera mount (camera -> base_link) and ground-plane geometry; numpy only.

Frames: base_link is REP-103 (x forward, y left, z up) with its origin on the ground plane below the
robot's body centre (only x, y, yaw of it reach a plan, so where exactly its z sits does not
matter). The camera frame is OpenCV (x right, y down, z forward).

The mount is rigid: the camera sits ``forward_m`` ahead of and ``lateral_m`` left of base_link,
``height_m`` above the ground, looking straight ahead, pitched down by ``pitch_down_rad`` (negative =
tilted up), no roll, no yaw.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

# Camera axes (OpenCV) in a level body frame (x fwd, y left, z up) when the camera looks straight ahead:
# columns are camera x (right = -y), camera y (down = -z), camera z (forward = +x).
_LEVEL_BODY_FROM_CAMERA = np.array([[0.0, 0.0, 1.0],
                                    [-1.0, 0.0, 0.0],
                                    [0.0, -1.0, 0.0]])


def rotation_y(angle_rad: float) -> np.ndarray:
    """(3, 3) rotation about +y by angle_rad (right-handed); about base_link's y (left), a positive
    angle turns the x axis (forward) down towards -z."""
    c, s = math.cos(angle_rad), math.sin(angle_rad)
    return np.array([[c, 0.0, s], [0.0, 1.0, 0.0], [-s, 0.0, c]])


@dataclass(frozen=True)
class CameraMount:
    """Where the camera sits on the robot.

    height_m: optical centre above the ground plane (m, > 0). pitch_down_rad: downward tilt of the
    optical axis from horizontal (rad; negative = tilted up). forward_m / lateral_m: optical centre
    ahead of / left of the base_link origin (m).
    """

    height_m: float
    pitch_down_rad: float
    forward_m: float = 0.0
    lateral_m: float = 0.0

    def __post_init__(self) -> None:
        if not (math.isfinite(self.height_m) and self.height_m > 0):
            raise ValueError(f"camera mount height_m must be > 0, got {self.height_m}")
        if not (math.isfinite(self.pitch_down_rad) and abs(self.pitch_down_rad) < math.radians(80)):
            raise ValueError(f"camera mount pitch_down_rad must be within +-80 deg, got {self.pitch_down_rad}")
        if not (math.isfinite(self.forward_m) and math.isfinite(self.lateral_m)):
            raise ValueError("camera mount offsets must be finite")

    @property
    def base_from_camera_rotation(self) -> np.ndarray:
        """(3, 3) rotation taking camera-frame vectors into base_link."""
        # Pitch about the body's y axis; a positive rotation about +y turns +x (forward) down.
        return rotation_y(self.pitch_down_rad) @ _LEVEL_BODY_FROM_CAMERA

    @property
    def base_from_camera(self) -> np.ndarray:
        """(4, 4) T_base_camera: X_base = R X_cam + t, t = (forward_m, lateral_m, height_m) in metres."""
        t = np.eye(4)
        t[:3, :3] = self.base_from_camera_rotation
        t[:3, 3] = (self.forward_m, self.lateral_m, self.height_m)
        return t

    @property
    def up_in_camera(self) -> np.ndarray:
        """(3,) unit vector pointing up (away from the ground), in camera coordinates."""
        return self.base_from_camera_rotation.T @ np.array([0.0, 0.0, 1.0])


# Mount presets for the cameras the stack supports. ASSUMPTIONS, not measurements: the paper states
# the Osmo Action 4 sat "about 1 m high, tilted up" and the D455 "15 deg down" without offsets; the
# other numbers are plausible Go2 mounts (a mast above the body centre for the Osmo, the D455 on a
# bracket at the front of the body). Measure your robot and set the parameters.
MOUNT_PRESETS: dict[str, CameraMount] = {
    # 1.0 m (paper), tilted up 5 deg (paper says "tilted up", amount assumed), mast 0.10 m ahead of body centre.
    "osmo": CameraMount(height_m=1.0, pitch_down_rad=math.radians(-5.0), forward_m=0.10),
    # 15 deg down (paper); 0.45 m high and 0.28 m ahead of body centre: bracket on the Go2's front (assumed).
    "d455": CameraMount(height_m=0.45, pitch_down_rad=math.radians(15.0), forward_m=0.28),
}


def mount_preset(name: str) -> CameraMount:
    try:
        return MOUNT_PRESETS[name]
    except KeyError:
        raise ValueError(f"unknown camera mount preset {name!r}; known: {sorted(MOUNT_PRESETS)}") from None


def invert_transform(t: np.ndarray) -> np.ndarray:
    """Inverse of rigid transforms (..., 4, 4)."""
    t = np.asarray(t, dtype=float)
    out = np.zeros_like(t)
    r = t[..., :3, :3]
    rt = np.swapaxes(r, -1, -2)
    out[..., :3, :3] = rt
    out[..., :3, 3] = -np.einsum("...ij,...j->...i", rt, t[..., :3, 3])
    out[..., 3, 3] = 1.0
    return out


def fit_ground_plane(points: np.ndarray, up: np.ndarray, *, relative_tolerance: float = 0.1,
                     max_tilt_rad: float = math.radians(10.0)) -> tuple[float, np.ndarray, float]:
    """Camera-to-ground distance from up-to-scale 3D points, with the ground's normal fixed by the mount.

    points: (N, 3) in camera coordinates (any common scale), already below the camera. up: (3,) the
    mount's up direction in camera coordinates (the robot stands on the plane, so the mount fixes
    the normal; 3-point plane fits on noisy small-baseline triangulations are far noisier).
    One-point RANSAC over the heights h_i = -up . X_i: the hypothesis with the most points within
    ``relative_tolerance`` of it wins (walls and clutter below the camera fall outside), then the
    median of its inliers. Then a consistency check: the least-squares normal of the inliers must lie
    within ``max_tilt_rad`` of ``up``, else the distance is NaN (the plane is not the mount's ground).
    Returns (distance d > 0 in the points' scale or NaN, inlier mask (N,), tilt rad of the fitted normal).
    """
    p = np.asarray(points, dtype=float).reshape(-1, 3)
    up = np.asarray(up, dtype=float) / np.linalg.norm(up)
    heights = -(p @ up)
    none = (math.nan, np.zeros(len(p), bool), math.nan)
    positive = heights > 0
    if positive.sum() < 3:
        return none
    order = np.sort(heights[positive])
    # Count of points within the tolerance band of each hypothesis, from the sorted heights.
    lo = np.searchsorted(order, order * (1 - relative_tolerance), side="left")
    hi = np.searchsorted(order, order * (1 + relative_tolerance), side="right")
    best = order[int(np.argmax(hi - lo))]
    inliers = positive & (np.abs(heights - best) < relative_tolerance * best)
    d = float(np.median(heights[inliers]))
    inliers = positive & (np.abs(heights - d) < relative_tolerance * d)
    if inliers.sum() < 3:
        return none
    d = float(np.median(heights[inliers]))
    q = p[inliers]
    _, _, vt = np.linalg.svd(q - q.mean(axis=0))
    normal = vt[-1] if vt[-1] @ up > 0 else -vt[-1]
    tilt = math.acos(float(np.clip(normal @ up, -1.0, 1.0)))
    if tilt > max_tilt_rad:
        return math.nan, inliers, tilt
    return d, inliers, tilt


def body_motion(mount: CameraMount, camera_motion: np.ndarray) -> np.ndarray:
    """Camera motion -> base_link motion through the rigid mount: T_base = M T_cam M^-1 (..., 4, 4).

    camera_motion maps points of a later camera frame into the earlier one (camera_to_reference);
    the result maps points of the later base_link frame into the earlier base_link frame."""
    base_from_camera = mount.base_from_camera
    return base_from_camera @ np.asarray(camera_motion, dtype=float) @ invert_transform(base_from_camera)


def camera_motion(mount: CameraMount, body: np.ndarray) -> np.ndarray:
    """Inverse of body_motion: base_link motion (..., 4, 4) -> the camera motion it implies."""
    base_from_camera = mount.base_from_camera
    return invert_transform(base_from_camera) @ np.asarray(body, dtype=float) @ base_from_camera


@dataclass(frozen=True)
class GroundScaleConfig:
    """The metric-scale step both estimators share (docs/pose_head.md).

    min_points: ground inliers needed (estimator-specific units: triangulated points, depth pixels).
    max_tilt_deg: fitted ground normal vs the mount's up. tolerance: relative height band of ground
    inliers. max_disagreement: near vs far ground halves' heights may differ by this fraction.
    """

    min_points: int = 20
    max_tilt_deg: float = 10.0
    tolerance: float = 0.15
    max_disagreement: float = 0.15


def ground_scale(points: np.ndarray, mount: CameraMount, config: GroundScaleConfig,
                 what: str = "points") -> tuple[float, str, dict]:
    """Scale that makes up-to-scale camera-frame points (N, 3) stand on the mount's ground plane.

    Only points below the camera (along the mount's up) are candidates; fit_ground_plane finds the
    plane, then its near and far halves (by depth, z) must agree on the camera height. Returns
    (scale: metres per unit of ``points``, '' ) or (NaN, reason) with the failed check and its numbers
    (ground_not_visible / ground_inconsistent / inconsistent_scale), plus diagnostics.
    """
    p = np.asarray(points, dtype=float).reshape(-1, 3)
    up = mount.up_in_camera
    candidates = p[np.all(np.isfinite(p), axis=1)]
    candidates = candidates[candidates @ up < 0]
    diag: dict = {"ground_candidates": int(len(candidates))}
    if len(candidates) < config.min_points:
        return math.nan, f"ground_not_visible: {len(candidates)} {what} below the camera < {config.min_points}", diag
    distance, ground, tilt = fit_ground_plane(candidates, up, relative_tolerance=config.tolerance,
                                              max_tilt_rad=math.radians(config.max_tilt_deg))
    diag.update(ground_points=int(ground.sum()), ground_tilt_deg=math.degrees(tilt) if math.isfinite(tilt) else tilt)
    if ground.sum() < config.min_points:
        return math.nan, f"ground_not_visible: {int(ground.sum())} ground-plane inliers < {config.min_points}", diag
    if not math.isfinite(distance):
        return (math.nan, f"ground_inconsistent: ground normal {math.degrees(tilt):.1f} deg off the mount's "
                          f"(> {config.max_tilt_deg:g})", diag)
    # Near and far halves of the ground must agree on the camera height (a ramp, a curved "ground" or
    # biased far-range geometry would not).
    g = candidates[ground]
    heights = -(g @ up)
    median_depth = np.median(g[:, 2])
    near, far = heights[g[:, 2] <= median_depth], heights[g[:, 2] > median_depth]
    if len(near) and len(far):
        disagreement = abs(float(np.median(near) - np.median(far))) / distance
        diag["scale_disagreement"] = disagreement
        if disagreement > config.max_disagreement:
            return math.nan, f"inconsistent_scale: near/far ground scales differ by {disagreement:.0%}", diag
    scale = mount.height_m / distance
    diag["scale"] = scale
    return scale, "", diag
