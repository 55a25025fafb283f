"""`scripted`: drive a fixed route of waypoints, for bring-up and controller tuning.

The route is given relative to where the robot stands at the first observation with odometry
after a reset (e.g. a 1 m square), so it needs odometry (``Observation.odom_pose``; without it the
plan stands still in state ``waiting_odometry``). Every plan holds the
remaining route in the robot body frame at the frame's stamp, so it is used exactly like a
learned policy's output and exercises the same delay compensation in the controller.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from sparsevideonav_ros.configs import ConfigError, _positive, param
from sparsevideonav_ros.core import se2
from sparsevideonav_ros.policies.base import Observation, Plan, Policy, PolicyError

# 1 m square, counter-clockwise, turning in place at each corner; (x m, y m, yaw rad) flattened.
SQUARE_1M = [1.0, 0.0, 0.0, 1.0, 0.0, 1.5708, 1.0, 1.0, 1.5708, 1.0, 1.0, 3.1416,
             0.0, 1.0, 3.1416, 0.0, 1.0, -1.5708, 0.0, 0.0, -1.5708, 0.0, 0.0, 0.0]


@dataclass
class ScriptedConfig:
    waypoints: list = param(SQUARE_1M, "Route as flat [x, y, yaw, ...] (m, m, rad) relative to the start pose.")
    # Looser than the controller's arrival tolerances (0.1 m, 0.1 rad) so the route advances once
    # the controller reports arrival at the plan's last waypoint.
    position_tolerance_m: float = param(0.15, "A route waypoint counts as passed within this distance (m).")
    yaw_tolerance_rad: float = param(0.2, "...and within this yaw error (rad).")
    horizon: int = param(1, "Upcoming route waypoints per plan. 1 = arrive at every waypoint with its yaw "
                            "(exact corners, for controller tuning); more = the tracker may round corners.")
    require_instruction: bool = param(False, "Wait for an instruction before driving.")

    def __post_init__(self) -> None:
        _positive(self, "position_tolerance_m", "yaw_tolerance_rad", "horizon")
        if len(self.waypoints) == 0 or len(self.waypoints) % 3:
            raise ConfigError(f"scripted.waypoints needs a non-empty flat list of x, y, yaw triples, "
                              f"got {len(self.waypoints)} numbers")
        if not np.all(np.isfinite(np.asarray(self.waypoints, dtype=float))):
            raise ConfigError("scripted.waypoints contains a non-finite number")

    @property
    def route(self) -> np.ndarray:
        """(N, 3) route waypoints relative to the start pose."""
        return np.asarray(self.waypoints, dtype=float).reshape(-1, 3)


class ScriptedPolicy(Policy):
    name = "scripted"
    config_class = ScriptedConfig

    def __init__(self, config: ScriptedConfig) -> None:
        super().__init__(config)
        self._route = config.route
        self.reset()

    def reset(self) -> None:
        self._start_pose: np.ndarray | None = None
        self._next_index = 0
        self._latest: Observation | None = None
        self._frames = 0

    def observe(self, observation: Observation) -> None:
        self._latest = observation
        self._frames += 1
        if observation.odom_pose is None:
            # Frames before the first odometry (or with none at their stamp) are normal at start-up:
            # plan() stands still in state waiting_odometry; the route starts at the first known pose.
            return
        if self._start_pose is None:
            self._start_pose = np.asarray(observation.odom_pose, dtype=float)
        route_odom = se2.compose(self._start_pose, self._route)
        # Progress only moves forward, so a route that crosses itself (a square) is followed in order.
        while self._next_index < len(route_odom) and self._reached(observation.odom_pose, route_odom[self._next_index]):
            self._next_index += 1

    def _reached(self, pose: np.ndarray, waypoint: np.ndarray) -> bool:
        delta = se2.relative(np.asarray(pose, dtype=float), waypoint)
        return (np.hypot(delta[0], delta[1]) <= self.config.position_tolerance_m
                and abs(delta[2]) <= self.config.yaw_tolerance_rad)

    def plan(self) -> Plan:
        if self._latest is None:
            raise PolicyError("plan() before any observation")
        stamp = self._latest.stamp
        if self._latest.odom_pose is None:
            return Plan.stand_still(stamp, "waiting_odometry")
        if self.config.require_instruction and not self.instruction:
            return Plan.stand_still(stamp, "waiting_instruction")
        if self._next_index >= len(self._route):
            return Plan.stand_still(stamp, "done")
        upcoming = se2.compose(self._start_pose, self._route[self._next_index:self._next_index + self.config.horizon])
        body = se2.relative(np.asarray(self._latest.odom_pose, dtype=float), upcoming)
        return Plan(stamp=stamp, waypoints=body, state="ok")

    @property
    def history_length(self) -> int:
        return self._frames

    @property
    def route_progress(self) -> tuple[int, int]:
        return self._next_index, len(self._route)
