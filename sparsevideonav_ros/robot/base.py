"""The robot backend interface the Go2 bridge drives (sim now, unitree_sdk2py next).

All velocities are body-frame (vx m/s forward, vy m/s left, wz rad/s counter-clockwise).
"""
from __future__ import annotations

import abc
from dataclasses import dataclass, field

import numpy as np


class RobotError(RuntimeError):
    """A backend call failed; the message names the call and the SDK's code when there is one."""


@dataclass(frozen=True)
class RobotState:
    """stamp s; pose (3,) x m, y m, yaw rad in odom; velocity (3,) vx, vy m/s, wz rad/s in the body frame."""

    stamp: float
    pose: np.ndarray
    velocity: np.ndarray
    healthy: bool = True
    info: dict = field(default_factory=dict)


class RobotBackend(abc.ABC):
    name: str

    def start(self) -> None:
        """Connect to the robot (called once by the bridge before the loop)."""

    @abc.abstractmethod
    def send_velocity(self, vx: float, vy: float, wz: float, now: float) -> None:
        """Command a body velocity; the bridge calls it every loop while moving."""

    @abc.abstractmethod
    def stop(self, now: float) -> None:
        """Stop walking now (Go2: StopMove); called on every stop edge, e-stop and shutdown."""

    @abc.abstractmethod
    def read_state(self, now: float) -> RobotState:
        """The newest robot state."""

    def close(self) -> None:
        """Release the connection."""
