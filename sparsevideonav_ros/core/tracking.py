"""Waypoint path tracking for a holonomic legged robot (Unitree Go2: vx, vy, wz).

The tracker receives plans already anchored in the odom frame and turns the
current odom pose into body-frame velocity commands. It is deliberately simple
(proportional control towards a look-ahead waypoint) because plans are replaced
at the policy rate (about 4 Hz) and only the first metre or so is ever driven.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from .se2 import relative, wrap_angle

# Adjacent waypoints closer than this fraction of waypoint_tolerance_m are "the
# same position": the pair encodes a turn in place, so their yaws must be met.
# Kept well below the tolerance so densely sampled paths (a few cm apart) are
# not mistaken for turns, which would make the robot stop at every waypoint.
SAME_POSITION_FRACTION = 0.25


@dataclass(frozen=True)
class TrackerLimits:
    """Velocity limits (m/s, m/s, rad/s) and acceleration limits (m/s², m/s², rad/s²).

    min_vx is the (negative) fastest allowed backwards speed.
    """
    max_vx: float = 0.5
    min_vx: float = -0.2
    max_vy: float = 0.3
    max_wz: float = 1.0
    max_ax: float = 1.0
    max_ay: float = 1.0
    max_awz: float = 2.0


@dataclass(frozen=True)
class TrackerGains:
    """Proportional gains (1/s) and geometric tolerances (m, rad)."""
    k_linear: float = 1.0
    k_lateral: float = 1.0
    k_angular: float = 1.5
    lookahead_m: float = 0.3
    waypoint_tolerance_m: float = 0.1
    yaw_tolerance_rad: float = 0.1
    allow_lateral: bool = True


@dataclass
class TrackerOutput:
    """Body-frame command vx, vy (m/s), wz (rad/s) plus tracker state.

    state: 'no_plan' | 'tracking' | 'arrived' | 'stale' | 'empty_plan'.
    target_index: waypoint being steered to; the last index when 'arrived';
    -1 when there is no target (no_plan, empty_plan, stale).
    """
    vx: float
    vy: float
    wz: float
    state: str
    target_index: int


def _finite_array(a, shape_desc: str, ndim: int) -> np.ndarray:
    a = np.asarray(a, dtype=float)
    if a.ndim != ndim or a.shape[-1] != 3:
        raise ValueError(f"expected {shape_desc}, got shape {a.shape}")
    if not np.all(np.isfinite(a)):
        raise ValueError(f"non-finite values in {shape_desc}")
    return a


class PathTracker:
    """Follows a list of odom-frame waypoints (x m, y m, yaw rad) in order.

    Call set_plan() whenever a new plan arrives and compute() at the control
    rate. A plan older than plan_timeout_s (s, measured with the same clock as
    compute's `now`) is treated as stale and the robot is stopped.
    """

    def __init__(self, limits: TrackerLimits = TrackerLimits(),
                 gains: TrackerGains = TrackerGains(), plan_timeout_s: float = 2.0):
        if not (limits.min_vx <= 0.0 <= limits.max_vx and limits.max_vy >= 0.0
                and limits.max_wz >= 0.0):
            raise ValueError(f"velocity limits must contain zero: {limits}")
        self.limits = limits
        self.gains = gains
        self.plan_timeout_s = float(plan_timeout_s)
        self._waypoints: np.ndarray | None = None
        self._plan_stamp = 0.0
        self._needs_yaw = np.zeros(0, dtype=bool)
        self._index = 0  # first waypoint not yet reached (or skipped past)
        self._prev = np.zeros(3)  # last commanded (vx, vy, wz) for rate limiting

    def reset(self) -> None:
        """Forget the plan and the previous command."""
        self._waypoints = None
        self._needs_yaw = np.zeros(0, dtype=bool)
        self._index = 0
        self._prev = np.zeros(3)

    def set_plan(self, waypoints_odom, plan_stamp: float) -> None:
        """Replace the plan. waypoints_odom: (N, 3) in odom; N == 0 means stop now.

        plan_stamp (s) is the time the plan refers to, used for staleness.
        Raises ValueError on non-finite input (the caller should then stop).
        """
        wps = np.asarray(waypoints_odom, dtype=float)
        if wps.size == 0:
            wps = np.zeros((0, 3))
        wps = _finite_array(wps, "waypoints of shape (N, 3)", 2)
        if not math.isfinite(plan_stamp):
            raise ValueError(f"non-finite plan stamp {plan_stamp}")
        self._waypoints = wps.copy()
        self._plan_stamp = float(plan_stamp)
        self._index = 0
        # A waypoint whose neighbour sits at the same position is half of a
        # turn in place; without enforcing its yaw the turn would be skipped,
        # since its position is already reached. The final yaw always counts.
        gap = np.linalg.norm(np.diff(wps[:, :2], axis=0), axis=1)
        same = gap < SAME_POSITION_FRACTION * self.gains.waypoint_tolerance_m
        needs = np.zeros(len(wps), dtype=bool)
        needs[:-1] |= same
        needs[1:] |= same
        if len(wps):
            needs[-1] = True
        self._needs_yaw = needs

    def _stop(self, state: str, target_index: int = -1) -> TrackerOutput:
        # Safety stops bypass the acceleration limits: a stale or missing plan
        # means we no longer know where it is safe to go, and the Go2's own
        # gait controller decelerates smoothly from a zero command anyway.
        self._prev = np.zeros(3)
        return TrackerOutput(0.0, 0.0, 0.0, state, target_index)

    def _reached(self, i: int, pose: np.ndarray) -> bool:
        wp = self._waypoints[i]
        if math.hypot(wp[0] - pose[0], wp[1] - pose[1]) > self.gains.waypoint_tolerance_m:
            return False
        return (not self._needs_yaw[i]
                or abs(float(wrap_angle(wp[2] - pose[2]))) <= self.gains.yaw_tolerance_rad)

    def compute(self, pose, now: float, dt: float) -> TrackerOutput:
        """Command for the current odom pose (3,) at time now (s).

        dt (s, >= 0) is the time since the previous command and bounds how much
        the command may change under the acceleration limits.
        Raises ValueError on a non-finite pose, now or dt, or a negative dt.
        """
        pose = _finite_array(pose, "pose of shape (3,)", 1)
        if not (math.isfinite(now) and math.isfinite(dt)) or dt < 0.0:
            raise ValueError(f"invalid time: now={now}, dt={dt}")
        if self._waypoints is None:
            return self._stop("no_plan")
        n = len(self._waypoints)
        if n == 0:
            return self._stop("empty_plan")
        if now - self._plan_stamp > self.plan_timeout_s:
            return self._stop("stale")

        while self._index < n and self._reached(self._index, pose):
            self._index += 1
        if self._index >= n:
            return self._stop("arrived", n - 1)

        # Carrot: move past waypoints already within the look-ahead so the
        # robot does not crawl between densely sampled points, and past ones
        # it has already overtaken along the path (a plan anchored at a past
        # camera frame can start behind the robot; going back for it would be
        # wrong). Turn-in-place and final waypoints are never skipped because
        # their yaw matters.
        g = self.gains
        t = self._index
        while t < n - 1 and not self._needs_yaw[t]:
            to_robot = pose[:2] - self._waypoints[t, :2]
            segment = self._waypoints[t + 1, :2] - self._waypoints[t, :2]
            if math.hypot(*to_robot) >= g.lookahead_m and float(to_robot @ segment) <= 0.0:
                break
            t += 1
        self._index = t  # progress is monotonic: skipped waypoints count as passed

        ex, ey, eyaw = relative(pose, self._waypoints[t])
        if math.hypot(ex, ey) <= g.waypoint_tolerance_m:
            # At the waypoint's position: align to its yaw, holding position.
            cmd = np.array([g.k_linear * ex, g.k_lateral * ey if g.allow_lateral else 0.0,
                            g.k_angular * eyaw])
        else:
            bearing = math.atan2(ey, ex)
            # cos² of the bearing: slow down while the heading is far off so
            # the robot turns before it drives; never reverse towards a target.
            cmd = np.array([g.k_linear * ex * max(0.0, math.cos(bearing)),
                            g.k_lateral * ey if g.allow_lateral else 0.0,
                            g.k_angular * bearing])
        return TrackerOutput(*self._limit(cmd, dt), "tracking", t)

    def _limit(self, cmd: np.ndarray, dt: float) -> tuple[float, float, float]:
        lim = self.limits
        lo = np.array([lim.min_vx, -lim.max_vy, -lim.max_wz])
        hi = np.array([lim.max_vx, lim.max_vy, lim.max_wz])
        step = np.array([lim.max_ax, lim.max_ay, lim.max_awz]) * dt
        cmd = np.clip(cmd, lo, hi)
        # _prev is always within [lo, hi], so rate limiting keeps the clamp.
        cmd = np.clip(cmd, self._prev - step, self._prev + step)
        self._prev = cmd
        return float(cmd[0]), float(cmd[1]), float(cmd[2])
