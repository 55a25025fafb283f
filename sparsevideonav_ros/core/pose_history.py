"""Short history of odometry poses, queried by time.

The policy plans from a camera frame captured some hundreds of milliseconds
before the plan reaches the tracker. Its waypoints are relative to where the
robot was at that frame, so they must be anchored with the odometry pose at
the frame's stamp, not the current one.
"""

from __future__ import annotations

import bisect
import math

import numpy as np

from .se2 import interpolate


class PoseHistory:
    """Time-ordered buffer of (stamp s, pose (x m, y m, yaw rad)) samples.

    Stamps must be non-decreasing. A stamp older than the newest one means the
    clock jumped backwards (bag replay looping, sim reset, ROS time switched on);
    the old samples then belong to another timeline, so the buffer is cleared
    before the sample is stored rather than mixing the two.
    """

    def __init__(self, horizon_s: float = 10.0):
        if not horizon_s > 0.0:
            raise ValueError(f"horizon_s must be > 0, got {horizon_s}")
        self.horizon_s = float(horizon_s)
        self._stamps: list[float] = []
        self._poses: list[np.ndarray] = []

    def __len__(self) -> int:
        return len(self._stamps)

    def clear(self) -> None:
        self._stamps.clear()
        self._poses.clear()

    def add(self, stamp: float, pose) -> None:
        """Append a pose (shape (3,)) observed at stamp (s).

        Raises ValueError for a non-finite stamp or pose, so a corrupt odometry
        message cannot poison later lookups.
        """
        stamp = float(stamp)
        pose = np.asarray(pose, dtype=float).reshape(-1)
        if pose.shape != (3,) or not math.isfinite(stamp) or not np.all(np.isfinite(pose)):
            raise ValueError(f"invalid odometry sample: stamp={stamp}, pose={pose}")
        if self._stamps and stamp < self._stamps[-1]:
            self.clear()
        if self._stamps and stamp == self._stamps[-1]:
            # Duplicate stamp: keep the newest reading; two samples at one time
            # would make interpolation divide by zero.
            self._poses[-1] = pose
        else:
            self._stamps.append(stamp)
            self._poses.append(pose)
        cut = bisect.bisect_left(self._stamps, stamp - self.horizon_s)
        if cut:
            del self._stamps[:cut]
            del self._poses[:cut]

    def latest(self):
        """Return (stamp s, pose (3,)) of the newest sample, or None when empty."""
        if not self._stamps:
            return None
        return self._stamps[-1], self._poses[-1].copy()

    def pose_at(self, stamp: float, max_extrapolation_s: float = 0.2) -> np.ndarray:
        """Pose (3,) at stamp (s), interpolated between the bracketing samples.

        A stamp up to max_extrapolation_s newer than the newest sample returns
        the newest pose: odometry arrives at a finite rate, so a fresh camera
        frame is routinely a little ahead of it. Raises LookupError when the
        history is empty, the stamp is older than the oldest sample (evicted or
        never seen) or newer than the tolerance allows.
        """
        stamp = float(stamp)
        if not self._stamps:
            raise LookupError("pose history is empty: no odometry received yet")
        oldest, newest = self._stamps[0], self._stamps[-1]
        if not math.isfinite(stamp):
            raise LookupError(f"cannot look up a pose at non-finite stamp {stamp}")
        if stamp > newest:
            if stamp - newest <= max_extrapolation_s:
                return self._poses[-1].copy()
            raise LookupError(
                f"stamp {stamp:.3f} is {stamp - newest:.3f} s newer than the newest odometry "
                f"({newest:.3f}); allowed {max_extrapolation_s:.3f} s")
        if stamp < oldest:
            raise LookupError(
                f"stamp {stamp:.3f} is {oldest - stamp:.3f} s older than the oldest odometry "
                f"({oldest:.3f}); history spans {newest - oldest:.3f} s")
        i = bisect.bisect_left(self._stamps, stamp)
        if self._stamps[i] == stamp:
            return self._poses[i].copy()
        t0, t1 = self._stamps[i - 1], self._stamps[i]
        return interpolate(self._poses[i - 1], self._poses[i], (stamp - t0) / (t1 - t0))
