"""Pose-from-imagination action head: imagined future frames -> camera poses -> ground-plane plan.

No torch here (numpy + the estimator interface); the estimators that need torch (``da3``) import it
themselves. The paper labels generated futures with camera poses (its stage-4 relabelling); this
head does the same at inference, so the authors' released video model drives without the
unreleased DiT action head.

Which decoded frame stands for which instant (causal Wan VAE, temporal stride 4): the sequence is
[2 reference latents, 8 future latents]; decoding latents 0..9 as one clip gives 1 + 4 * 9 = 37
frames, latent 0 -> frame 0 and latent i >= 1 -> frames 4i-3 .. 4i, the LAST of which (4i) stands
for that latent's instant (the preview mosaic picks the same frames). Hence:

    decoded frame 4  (latent 1, the newest reference chunk) = T, the current frame
    decoded frame 8  (latent 2)  = T + 1 s      decoded frame 24 (latent 6) = T + 11 s
    decoded frame 12 (latent 3)  = T + 2 s      decoded frame 28 (latent 7) = T + 14 s
    decoded frame 16 (latent 4)  = T + 5 s      decoded frame 32 (latent 8) = T + 17 s
    decoded frame 20 (latent 5)  = T + 8 s      decoded frame 36 (latent 9) = T + 20 s

T is the stamp of the newest observed frame, the one the plan is made from (the newest reference
chunk ends with it). The estimator is given the decoded current frame (not the camera frame) so
both sides of every pair carry the same VAE artefacts.

Plan format (choice, see docs/pose_head.md): the sparse waypoints (true times 1, 2, 5, ..., 20 s)
are resampled in time to ``dt_s`` (0.25 s, the policy's action spacing) along SE(2) interpolation
from the identity at T. The controller tracks waypoints geometrically and anchors a plan at the
odometry pose at its stamp, so a plan stamped T with base_link-at-T waypoints keeps the latency
compensation as it is; dense waypoints keep its look-ahead and turn-in-place logic working the
same way as for the DiT head (which predicts one action per 0.25 s).
"""
from __future__ import annotations

import dataclasses
import math
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Optional, Protocol, Sequence

import numpy as np

from sparsevideonav_ros.core import se2
from sparsevideonav_ros.policies.base import Plan
from sparsevideonav_ros.policies.pose_estimators.base import PoseEstimate, PoseEstimator
from sparsevideonav_ros.policies.pose_estimators.mount import CameraMount, body_motion

# Seconds after T that the 8 sparse future latents stand for (latent offsets 0, 1, 4, ..., 19 after the
# reference, 1 s per latent chunk at 4 FPS). Kept equal to sampling.future_times_s() by a test; not
# imported from there because sampling imports torch.
FUTURE_TIMES_S = (1.0, 2.0, 5.0, 8.0, 11.0, 14.0, 17.0, 20.0)
REFERENCE_LATENTS = 2
VAE_TEMPORAL_STRIDE = 4
PLAN_DT_S = 0.25  # one waypoint per 4 FPS frame, as the DiT head's actions

# Plan state of a refused estimate. The policy contract's PLAN_STATES must list it before the policy
# returns such a plan (wiring, issue 11): a stop whose state and reason say why, never a guess.
POSE_INVALID_STATE = "pose_invalid"


def decoded_frame_index(latent_index: int) -> int:
    """Index, in a clip decoded from latents 0..n-1, of the frame that stands for latent
    ``latent_index``'s instant: 0 for latent 0, else 4 * latent_index (last frame of its chunk)."""
    if latent_index < 0:
        raise ValueError(f"latent_index must be >= 0, got {latent_index}")
    return VAE_TEMPORAL_STRIDE * latent_index


def instant_frame_indices(num_future: int = len(FUTURE_TIMES_S)) -> tuple[int, tuple[int, ...]]:
    """(decoded index of the current frame T, decoded indices of the future frames) for a clip of
    REFERENCE_LATENTS + num_future latents: (4, (8, 12, ..., 36)) at the paper's 8 future latents."""
    current = decoded_frame_index(REFERENCE_LATENTS - 1)
    return current, tuple(decoded_frame_index(REFERENCE_LATENTS + j) for j in range(num_future))


class ImaginedFrames(Protocol):
    """Hook for the decoding step (wired by the policy: it owns the VAE).

    Called with the sampled latents (1, 16, 2 + K, h, w); returns (current (H, W, 3) uint8 RGB,
    K future frames (H, W, 3) uint8 RGB) for the instants ``instant_frame_indices`` names. The
    decoder may decode fewer latents or at a lower resolution, as long as it returns these instants
    and the intrinsics given to the head match the returned pixel grid.
    """

    def __call__(self, latents: Any) -> tuple[np.ndarray, Sequence[np.ndarray]]: ...


def camera_poses_to_waypoints(camera_to_reference: np.ndarray, mount: CameraMount) -> tuple[np.ndarray, np.ndarray]:
    """Project relative camera poses onto the ground plane in base_link at T.

    camera_to_reference: (K, 4, 4) future camera -> current camera (OpenCV axes, metres).
    Returns (waypoints (K, 3) = x m forward, y m left, yaw rad of base_link at each future instant,
    expressed in base_link at T; tilt (K,) rad = how far the implied body motion rolls/pitches, which a
    ground robot's should not).
    """
    body = body_motion(mount, np.asarray(camera_to_reference, dtype=float).reshape(-1, 4, 4))  # base_k -> base_T
    yaw = np.arctan2(body[:, 1, 0], body[:, 0, 0])
    waypoints = np.stack([body[:, 0, 3], body[:, 1, 3], yaw], axis=1)
    tilt = np.arccos(np.clip(body[:, 2, 2], -1.0, 1.0))
    return waypoints, tilt


def resample_waypoints(waypoints: np.ndarray, times_s: Sequence[float], dt_s: float = PLAN_DT_S,
                       horizon_s: Optional[float] = None) -> tuple[np.ndarray, np.ndarray]:
    """Waypoints at times (K,) s after T -> waypoints every dt_s from dt_s to the last time.

    waypoints: (K, 3) (x m, y m, yaw rad) in base_link at T; the pose at T is the identity. Between
    two known instants, poses follow se2.interpolate (linear in x, y; shorter arc in yaw). Yaw is
    unwrapped along the known waypoints first, so a turn of more than 180 deg over 20 s stays one turn.
    horizon_s: cut the plan there (None: the last time). Returns (resampled (M, 3), times (M,) s).
    """
    wp = np.asarray(waypoints, dtype=float).reshape(-1, 3)
    times = np.asarray(times_s, dtype=float).reshape(-1)
    if len(wp) != len(times) or len(wp) == 0:
        raise ValueError(f"need as many times as waypoints (>= 1), got {len(times)} and {len(wp)}")
    if np.any(np.diff(times) <= 0) or times[0] <= 0:
        raise ValueError(f"times must increase from > 0, got {times.tolist()}")
    if not dt_s > 0:
        raise ValueError(f"dt_s must be > 0, got {dt_s}")
    known_t = np.r_[0.0, times]
    known = np.vstack([np.zeros(3), wp])
    end = known_t[-1] if horizon_s is None else min(known_t[-1], float(horizon_s))
    count = int(math.floor(end / dt_s + 1e-9))
    out_t = dt_s * np.arange(1, count + 1)
    if count == 0:
        return np.zeros((0, 3)), out_t
    seg = np.clip(np.searchsorted(known_t, out_t, side="left") - 1, 0, len(known_t) - 2)
    alpha = (out_t - known_t[seg]) / (known_t[seg + 1] - known_t[seg])
    out = se2.interpolate(known[seg], known[seg + 1], alpha)
    return out, out_t


@dataclass
class PoseHeadResult:
    """One plan's worth of pose-head output.

    plan: what the policy returns (state 'ok' with waypoints every dt_s, or a stop in
      POSE_INVALID_STATE). reason: '' when ok, else why the plan stops (the first refused frame's
      reason, or the projection check that failed). sparse_waypoints: (K, 3) at sparse_times_s (NaN
      where invalid). valid: (K,) bool after the estimator and the projection checks.
    estimate: the estimator's raw output. timings_s: estimate_s, project_s.
    """

    plan: Plan
    reason: str
    sparse_waypoints: np.ndarray
    sparse_times_s: tuple[float, ...]
    valid: np.ndarray
    estimate: PoseEstimate
    timings_s: dict[str, float] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return self.plan.state == "ok"


@dataclass(frozen=True)
class PoseHeadConfig:
    """dt_s: waypoint spacing of the plan (s). horizon_s: plan length (s; None = up to T + 20 s).
    min_valid_frames: the plan keeps the longest valid prefix of the sparse future and stops unless
    it holds at least this many frames (2 = T+1 s and T+2 s: more than the 1 s re-plan period plus
    the controller's 2 s stale-plan timeout would use). max_tilt_deg: refuse a frame whose implied
    body motion rolls/pitches more than this (a ground robot does not). max_step_m_per_s: refuse a
    frame implying faster motion than a Go2 walks under this stack's limits (a scale failure)."""

    dt_s: float = PLAN_DT_S
    horizon_s: Optional[float] = None
    min_valid_frames: int = 2
    max_tilt_deg: float = 10.0
    max_speed_m_per_s: float = 1.5


class PoseHead:
    """Estimator + mount -> Plan, for the 8 imagined instants (or any K with their times)."""

    def __init__(self, estimator: PoseEstimator, mount: CameraMount, config: PoseHeadConfig = PoseHeadConfig(),
                 clock: Callable[[], float] = time.perf_counter) -> None:
        if config.min_valid_frames < 1:
            raise ValueError(f"min_valid_frames must be >= 1, got {config.min_valid_frames}")
        self.estimator = estimator
        self.mount = mount
        self.config = config
        self._clock = clock

    def describe(self) -> dict[str, Any]:
        return {**self.estimator.describe(), "mount": dataclasses.asdict(self.mount)}

    def plan(self, stamp: float, current: np.ndarray, futures: Sequence[np.ndarray], intrinsics: np.ndarray,
             times_s: Sequence[float] = FUTURE_TIMES_S) -> PoseHeadResult:
        """stamp: T (s, the current frame's capture time). current / futures: (H, W, 3) uint8 RGB, the
        decoded instants (futures in time order at times_s seconds after T). intrinsics: (3, 3) px of
        those frames. Returns a PoseHeadResult whose plan is anchored at ``stamp``."""
        times = tuple(float(t) for t in times_s)
        if len(times) != len(futures):
            raise ValueError(f"{len(futures)} future frames but {len(times)} times")
        cfg = self.config
        clock = self._clock
        start = clock()
        estimate = self.estimator.estimate(current, futures, intrinsics)
        timings = {"estimate_s": clock() - start}
        start = clock()
        waypoints, tilt = camera_poses_to_waypoints(estimate.camera_to_reference, self.mount)
        valid = estimate.valid.copy()
        reasons = list(estimate.reasons)
        previous = np.zeros(3)
        previous_t = 0.0
        for i in range(len(times)):
            if not valid[i]:
                continue
            if not np.all(np.isfinite(waypoints[i])):
                valid[i], reasons[i] = False, "non_finite: projected waypoint"
            elif tilt[i] > math.radians(cfg.max_tilt_deg):
                valid[i], reasons[i] = False, f"non_planar_motion: body tilts {math.degrees(tilt[i]):.1f} deg"
            else:
                speed = np.hypot(*(waypoints[i, :2] - previous[:2])) / (times[i] - previous_t)
                if speed > cfg.max_speed_m_per_s:
                    valid[i], reasons[i] = False, (f"inconsistent_scale: {speed:.2f} m/s between T+{previous_t:g} s "
                                                   f"and T+{times[i]:g} s > {cfg.max_speed_m_per_s}")
            if valid[i]:
                previous, previous_t = waypoints[i], times[i]
        waypoints[~valid] = np.nan
        prefix = int(np.argmin(valid)) if not valid.all() else len(valid)
        timings["project_s"] = clock() - start
        if prefix < cfg.min_valid_frames:
            first_bad = next(i for i in range(len(valid)) if not valid[i])
            reason = f"T+{times[first_bad]:g} s: {reasons[first_bad]}"
            plan = Plan(stamp=stamp, waypoints=np.zeros((0, 3)), state=POSE_INVALID_STATE, timings_s=timings)
            return PoseHeadResult(plan, reason, waypoints, times, valid, estimate, timings)
        horizon = times[prefix - 1] if cfg.horizon_s is None else min(cfg.horizon_s, times[prefix - 1])
        dense, _ = resample_waypoints(waypoints[:prefix], times[:prefix], cfg.dt_s, horizon)
        plan = Plan(stamp=stamp, waypoints=dense, state="ok", waypoint_dt_s=cfg.dt_s, timings_s=timings)
        return PoseHeadResult(plan.validate(), "", waypoints, times, valid, estimate, timings)
