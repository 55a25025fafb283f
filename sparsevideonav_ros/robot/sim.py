"""Kinematic Go2 stand-in: integrates commanded body velocities with a first-order response."""
from __future__ import annotations

import math
from concurrent.futures import Future
from typing import Optional

import numpy as np

from sparsevideonav_ros.core import se2
from sparsevideonav_ros.robot.base import ACTIONS, MotionBlocker, RobotBackend, RobotError, RobotState


class SimRobot(RobotBackend):
    """A holonomic body that tracks the commanded velocity with time constant ``response_time_s``.

    Time is whatever the caller passes as ``now`` (wall or sim clock), so it is deterministic in tests.
    Like a Go2 it only walks while standing: after stand_down or damp, velocity commands are ignored
    until stand_up or balance_stand.
    """

    name = "sim"

    def __init__(self, initial_pose=(0.0, 0.0, 0.0), response_time_s: float = 0.1) -> None:
        self.pose = np.asarray(initial_pose, dtype=float).copy()
        self.velocity = np.zeros(3)
        self.command = np.zeros(3)
        self.response_time_s = response_time_s
        self._last_time: Optional[float] = None
        self.stop_count = 0
        self.posture = "balance_stand"

    def _advance(self, now: float) -> None:
        if self._last_time is None or now <= self._last_time:
            self._last_time = now if self._last_time is None else self._last_time
            return
        dt = now - self._last_time
        self._last_time = now
        # Exact first-order step so large dt (a stalled loop) cannot overshoot.
        blend = 1.0 if self.response_time_s == 0 else 1.0 - math.exp(-dt / self.response_time_s)
        previous = self.velocity.copy()
        self.velocity = self.velocity + blend * (self.command - self.velocity)
        mean_velocity = 0.5 * (previous + self.velocity)
        # Integrate the body twist over dt as a constant-twist SE(2) motion at the mean velocity.
        self.pose = se2.compose(self.pose, se2.exp(mean_velocity * dt))

    def send_velocity(self, vx: float, vy: float, wz: float, now: float, hold_until: Optional[float] = None) -> None:
        self._advance(now)
        if self.posture in ("stand_down", "damp"):
            return
        self.command = np.array([vx, vy, wz], dtype=float)

    def stop(self, now: float) -> None:
        self._advance(now)
        self.command = np.zeros(3)
        # A Go2's StopMove halts within its gait cycle; the sim halts at once so tests bound the stop tightly.
        self.velocity = np.zeros(3)
        self.stop_count += 1

    def motion_blocker(self, now: float) -> Optional[MotionBlocker]:
        if self.posture in ("stand_down", "damp"):
            return MotionBlocker(f"sim robot is lying down ({self.posture}): velocity commands do nothing; "
                                 f"call go2/balance_stand")
        return None

    def read_state(self, now: float) -> RobotState:
        self._advance(now)
        return RobotState(stamp=now, pose=self.pose.copy(), velocity=self.velocity.copy(),
                          info={"posture": self.posture})

    def run_action(self, action: str, now: float) -> "Future[str]":
        future: Future = Future()
        if action not in ACTIONS:
            future.set_exception(RobotError(f"unknown action {action!r}; known: {sorted(ACTIONS)}"))
            return future
        self.stop(now)
        if action != "stop_move":
            self.posture = action
        future.set_result(f"sim: {action} done")
        return future
