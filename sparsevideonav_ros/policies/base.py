"""The policy contract shared by every navigation policy (no rclpy here).

A policy consumes 4 FPS observations and returns a :class:`Plan`: SE(2) waypoints relative to
the robot body at the stamp of the frame it planned from. Discrete-action policies return their
action as waypoints too, so the controller never needs to know which policy runs.
"""
from __future__ import annotations

import abc
import dataclasses
from dataclasses import dataclass, field
from typing import Any, ClassVar, Optional

import numpy as np


class PolicyError(RuntimeError):
    """The policy cannot produce a safe plan (bad input, bad output, missing state)."""


@dataclass(frozen=True)
class Observation:
    """One camera frame sampled at the policy rate (4 FPS).

    rgb: (H, W, 3) uint8 RGB. stamp: capture time in seconds (ROS clock).
    odom_pose: (3,) robot pose (x m, y m, yaw rad) in the odometry frame at ``stamp``, when known.
    depth: optional (H, W) float32 metres aligned to ``rgb``.
    camera_matrix: optional (3, 3) pinhole matrix K (pixels) of ``rgb`` at its own size: the camera's
    sensor_msgs/CameraInfo ``k`` when one matching the image size was received; None = not known.
    """

    stamp: float
    rgb: np.ndarray
    frame_id: str = "camera_link"
    odom_pose: Optional[np.ndarray] = None
    depth: Optional[np.ndarray] = None
    camera_matrix: Optional[np.ndarray] = None

    def __post_init__(self) -> None:
        if self.rgb.ndim != 3 or self.rgb.shape[2] != 3 or self.rgb.dtype != np.uint8:
            raise PolicyError(f"observation rgb must be (H, W, 3) uint8, got {self.rgb.shape} {self.rgb.dtype}")
        if self.camera_matrix is not None:
            k = np.asarray(self.camera_matrix, dtype=float)
            if k.shape != (3, 3) or not np.all(np.isfinite(k)) or k[0, 0] <= 0 or k[1, 1] <= 0 or k[2, 2] != 1.0:
                raise PolicyError(f"observation camera_matrix must be a finite (3, 3) pinhole matrix with fx, fy > 0 "
                                  f"and K[2, 2] = 1, got {self.camera_matrix!r}")
            object.__setattr__(self, "camera_matrix", k)  # frozen: the checked float copy


# waiting_odometry: the policy needs the robot pose at the frame's stamp (Observation.odom_pose) and has
# none yet (frames arrive before the first odometry): it stands still until odometry comes, no error.
# pose_invalid: the pose head could not vouch for the imagined future's camera poses (too few inliers, ground
# not visible, inconsistent scale, ...): the robot stops; Plan.reason says which check failed.
PLAN_STATES = ("ok", "warming_up", "done", "waiting_instruction", "waiting_odometry", "pose_invalid")


@dataclass
class Plan:
    """A short trajectory planned from one observation.

    waypoints: (N, 3) float (x m, y m, yaw rad) relative to the robot body at ``stamp``,
      in order; N == 0 means "stand still".
    waypoint_dt_s: time between waypoints when the policy predicts timing (0.25 s at 4 FPS).
    state: one of PLAN_STATES; anything but 'ok' comes with no waypoints.
    preview: optional (H, W, 3) uint8 image of what the policy imagines (e.g. generated future).
    timings_s: named compute durations in seconds.
    reason: why a plan is not 'ok' beyond its state (free text, e.g. the failed pose check with its
      numbers); '' when there is nothing to add. Goes into policy/status as plan_reason.
    """

    stamp: float
    waypoints: np.ndarray
    state: str = "ok"
    waypoint_dt_s: Optional[float] = None
    preview: Optional[np.ndarray] = None
    timings_s: dict[str, float] = field(default_factory=dict)
    reason: str = ""

    @classmethod
    def stand_still(cls, stamp: float, state: str) -> "Plan":
        return cls(stamp=stamp, waypoints=np.zeros((0, 3)), state=state)

    def validate(self) -> "Plan":
        """Raise PolicyError unless the plan is safe to hand to a controller."""
        wp = np.asarray(self.waypoints, dtype=float)
        if wp.ndim != 2 or wp.shape[1] != 3:
            raise PolicyError(f"plan waypoints must be (N, 3), got {wp.shape}")
        if not np.all(np.isfinite(wp)):
            raise PolicyError(f"plan has non-finite waypoints: {wp.tolist()}")
        if self.state not in PLAN_STATES:
            raise PolicyError(f"plan state {self.state!r} is not one of {PLAN_STATES}")
        if self.state != "ok" and len(wp):
            raise PolicyError(f"a plan in state {self.state!r} must not carry waypoints")
        self.waypoints = wp
        return self


class Policy(abc.ABC):
    """Base class: subclasses set ``name`` and ``config_class`` and implement observe/plan.

    The runner (policies/runner.py) calls ``observe`` for every sampled frame (in order) and ``step``
    on the frame it wants a trajectory from; a slow policy thus never loses history frames.

    Cadence, declared by the policy and taken by the runner:
    frame_rate_hz: the rate its history must be sampled at (frames/s; None = any rate, the node's
      history_rate_hz). chunk_frames: frames per chunk of its history grid (planning frames keep it
      aligned). action_dt_s: seconds between its waypoints (None = no timing). plans_at(n): whether
      the n-th frame since reset is one it plans from.
    """

    name: ClassVar[str]
    config_class: ClassVar[type]
    frame_rate_hz: ClassVar[Optional[float]] = None
    chunk_frames: ClassVar[int] = 1
    action_dt_s: ClassVar[Optional[float]] = None

    def __init__(self, config: Any) -> None:
        if not isinstance(config, self.config_class):
            raise TypeError(f"{type(self).__name__} needs a {self.config_class.__name__}, got {type(config).__name__}")
        self.config = config
        self.instruction = ""

    def set_instruction(self, text: str) -> None:
        """Set the language instruction; an empty one is refused (the robot would not know where to go)."""
        if not isinstance(text, str) or not text.strip():
            raise PolicyError("instruction is empty; send a non-empty std_msgs/String on 'instruction'")
        self.instruction = text.strip()

    def reset(self) -> None:
        """Forget the episode (history and progress); the instruction stays."""

    @abc.abstractmethod
    def observe(self, observation: Observation) -> None:
        """Add one 4 FPS frame to the policy's history."""

    @abc.abstractmethod
    def plan(self) -> Plan:
        """Plan from the newest observed frame."""

    def plans_at(self, frames_seen: int) -> bool:
        """True if the policy plans from the frame that makes its history ``frames_seen`` frames long
        (1 = the first frame after reset). When a busy policy is handed several frames at once, the
        runner plans at the newest of them this names, so no planning frame is lost. Default: all."""
        return True

    def step(self, observation: Observation) -> Plan:
        self.observe(observation)
        return self.plan().validate()

    @property
    def history_length(self) -> int:
        """Frames in the policy's history (for status)."""
        return 0

    def describe(self) -> dict[str, Any]:
        return {"policy": self.name, **dataclasses.asdict(self.config)}

    def status_values(self) -> dict[str, object]:
        """Policy-specific policy/status key/values (e.g. where its camera intrinsics come from); default none."""
        return {}

    def load_summary(self) -> str:
        """One line on what was loaded (e.g. which weights and from where), for the start-up log; "" = nothing."""
        return ""
