"""The robot backend interface the Go2 bridge drives (sim, or a Go2 over unitree_sdk2py).

All velocities are body-frame (vx m/s forward, vy m/s left, wz rad/s counter-clockwise).
"""
from __future__ import annotations

import abc
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Optional

import numpy as np


class RobotError(RuntimeError):
    """A backend call failed; the message names the call and the SDK's code when there is one."""


# Posture/motion actions the bridge offers as services (go2/<action>), Go2 sport API names in brackets.
ACTIONS: dict[str, str] = {
    "stand_up": "Stand up with locked joints (StandUp, api 1004).",
    "stand_down": "Lie down (StandDown, api 1005); velocity commands do nothing until stand_up/balance_stand.",
    "balance_stand": "Balanced stand, ready to walk (BalanceStand, api 1002).",
    "damp": "Damp all joints: the robot sinks to the ground (Damp, api 1001). Emergency use.",
    "stop_move": "Stop walking now (StopMove, api 1003).",
}


@dataclass(frozen=True)
class MotionBlocker:
    """Why the robot does not take velocity commands now.

    reason: for people ("Standing Lock (error_code 1002): joints locked after StandUp; call go2/balance_stand").
    remedy: the action that makes it walkable again when the bridge may run it by itself (Go2 Standing Lock:
    'balance_stand', see go2_auto_balance_stand), else None.
    """

    reason: str
    remedy: Optional[str] = None


@dataclass(frozen=True)
class RobotState:
    """stamp s; pose (3,) x m, y m, yaw rad in odom; velocity (3,) vx, vy m/s, wz rad/s in the body frame."""

    stamp: float
    pose: np.ndarray
    velocity: np.ndarray
    healthy: bool = True
    info: dict = field(default_factory=dict)
    # Counts the robot's state messages; equal on two reads = no new state. None: every read is new (sim).
    seq: Optional[int] = None


class RobotBackend(abc.ABC):
    name: str

    def start(self) -> None:
        """Connect to the robot (called once by the bridge before the loop)."""

    @abc.abstractmethod
    def send_velocity(self, vx: float, vy: float, wz: float, now: float, hold_until: Optional[float] = None) -> None:
        """Command a body velocity; the bridge calls it every loop while moving.

        hold_until: time.monotonic() instant after which the velocity must not stand (the watchdog's
        deadline). A backend that commands the robot from a thread of its own stops by itself at that
        instant unless a newer velocity came, one thread hand-off closer to the robot than the bridge's
        own stop at the same deadline (which then finds it done). None: no deadline.
        """

    @abc.abstractmethod
    def stop(self, now: float) -> None:
        """Stop walking now (Go2: StopMove); called on every stop edge, e-stop and shutdown."""

    @abc.abstractmethod
    def read_state(self, now: float) -> Optional[RobotState]:
        """The newest robot state (stamped on the caller's clock); None while none has arrived yet."""

    def health(self, now: float) -> str:
        """'' while the robot is reachable; else what is wrong (the bridge then stops and reports it)."""
        return ""

    def motion_blocker(self, now: float) -> Optional["MotionBlocker"]:
        """None while the robot would execute a velocity command; else why it would not (the bridge then
        sends no velocity and says why in go2/status)."""
        return None

    @abc.abstractmethod
    def run_action(self, action: str, now: float) -> "Future[str]":
        """Start one of ACTIONS; the future resolves to a message or raises RobotError (naming the SDK code)."""

    def stats(self) -> dict:
        """Counters for the status message (e.g. SDK calls made)."""
        return {}

    def take_errors(self) -> list[str]:
        """Errors of calls made in the background since the last call (each reported exactly once)."""
        return []

    def close(self) -> None:
        """Stop background work and release the connection (after sending anything still queued)."""
