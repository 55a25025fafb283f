"""Validated configuration dataclasses of the four nodes.

Every field is a ROS parameter of its node (same name, same default); the YAML files under
``params/`` hold exactly these keys (a test checks both directions). Nodes only read parameters
and build these objects, so validation lives here, importable and testable without ROS.
"""
from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from typing import Any


class ConfigError(ValueError):
    """A parameter value that cannot work; the message names the parameter and the fix."""


def param(default: Any, description: str, *, choices: tuple = ()) -> Any:
    """A dataclass field carrying the ROS parameter description (and allowed values)."""
    meta = {"description": description, "choices": choices}
    if isinstance(default, list):
        return field(default_factory=lambda: list(default), metadata=meta)
    return field(default=default, metadata=meta)


def _positive(config: Any, *names: str) -> None:
    for name in names:
        value = getattr(config, name)
        if not (isinstance(value, (int, float)) and math.isfinite(value) and value > 0):
            raise ConfigError(f"{type(config).__name__}.{name} must be a finite number > 0, got {value!r}")


def _non_negative(config: Any, *names: str) -> None:
    for name in names:
        value = getattr(config, name)
        if not (isinstance(value, (int, float)) and math.isfinite(value) and value >= 0):
            raise ConfigError(f"{type(config).__name__}.{name} must be a finite number >= 0, got {value!r}")


def check_choices(config: Any) -> None:
    """Reject values outside a field's declared ``choices``."""
    for f in dataclasses.fields(config):
        choices = f.metadata.get("choices", ())
        if choices and getattr(config, f.name) not in choices:
            raise ConfigError(
                f"{type(config).__name__}.{f.name}={getattr(config, f.name)!r} is not one of {list(choices)}")


def build_config(cls: type, values: dict[str, Any]) -> Any:
    """Build ``cls`` from a name->value mapping, rejecting unknown names with the known ones."""
    known = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(values) - known)
    if unknown:
        raise ConfigError(f"unknown {cls.__name__} parameter(s) {unknown}; known: {sorted(known)}")
    coerced = {}
    for f in dataclasses.fields(cls):
        if f.name not in values:
            continue
        value = values[f.name]
        default = f.default if f.default is not dataclasses.MISSING else f.default_factory()
        # ROS integer parameters arrive for float fields when a YAML says `1` instead of `1.0`.
        if isinstance(default, float) and isinstance(value, int) and not isinstance(value, bool):
            value = float(value)
        if isinstance(default, list):
            value = list(value)
        coerced[f.name] = value
    return cls(**coerced)


CAMERA_SOURCES = ("synthetic", "video", "image_folder")


@dataclass
class CameraNodeConfig:
    source: str = param("synthetic", "Frame source: synthetic | video | image_folder.", choices=CAMERA_SOURCES)
    path: str = param("", "Video file or image folder for source video / image_folder.")
    loop: bool = param(True, "Restart a finite source (video, image folder) at its end.")
    rate_hz: float = param(15.0, "Publish rate in frames per second (0 = the source's own rate).")
    width: int = param(640, "Synthetic frame width in pixels.")
    height: int = param(480, "Synthetic frame height in pixels.")
    frame_id: str = param("camera_link", "frame_id of published images and camera info.")
    horizontal_fov_deg: float = param(90.0, "Horizontal field of view used for the pinhole CameraInfo.")
    jpeg_quality: int = param(85, "JPEG quality (1-100) of camera/image_raw/compressed.")
    publish_raw: bool = param(True, "Publish the rgb8 sensor_msgs/Image (keep local; large over Wi-Fi).")
    publish_compressed: bool = param(True, "Publish the JPEG sensor_msgs/CompressedImage (crosses the network).")

    def __post_init__(self) -> None:
        check_choices(self)
        _non_negative(self, "rate_hz")
        _positive(self, "width", "height", "horizontal_fov_deg")
        if self.source in ("video", "image_folder") and not self.path:
            raise ConfigError(f"camera source {self.source!r} needs the parameter 'path'")
        if not 1 <= self.jpeg_quality <= 100:
            raise ConfigError(f"jpeg_quality must be in 1..100, got {self.jpeg_quality}")
        if not (self.publish_raw or self.publish_compressed):
            raise ConfigError("camera publishes nothing: enable publish_raw or publish_compressed")


@dataclass
class PolicyNodeConfig:
    policy: str = param("scripted", "Policy name from the registry (scripted, ...).")
    image_input: str = param("compressed", "Subscribe the JPEG (compressed) or rgb8 (raw) camera topic.",
                             choices=("compressed", "raw"))
    history_rate_hz: float = param(4.0, "Rate the camera stream is resampled to for the policy history.")
    expected_width: int = param(0, "Reject frames of another width (0 = any).")
    expected_height: int = param(0, "Reject frames of another height (0 = any).")
    instruction: str = param("", "Navigation instruction; setting this parameter sets the policy instruction.")
    plan_frame: str = param("base_link", "frame_id of published paths (robot body at the frame's stamp).")
    max_pending_frames: int = param(64, "4 FPS frames queued for a busy policy before the oldest are dropped.")
    status_rate_hz: float = param(2.0, "Rate of policy/status diagnostics.")

    def __post_init__(self) -> None:
        check_choices(self)
        _positive(self, "history_rate_hz", "max_pending_frames", "status_rate_hz")
        _non_negative(self, "expected_width", "expected_height")
        if not self.policy.strip():
            raise ConfigError("parameter 'policy' is empty; give a registered policy name")


@dataclass
class ControllerNodeConfig:
    rate_hz: float = param(20.0, "Control loop rate (cmd_vel messages per second).")
    plan_timeout_s: float = param(2.0, "Stop when the newest plan's frame is older than this (seconds).")
    odom_timeout_s: float = param(0.5, "Stop when odometry is older than this (seconds).")
    odom_history_s: float = param(10.0, "Odometry kept to anchor plans at their frame's stamp (seconds).")
    odom_frame: str = param("odom", "Fixed frame of odometry; paths in this frame are used as they are.")
    max_vx: float = param(0.5, "Forward speed limit (m/s).")
    min_vx: float = param(-0.2, "Backward speed limit (m/s, <= 0).")
    max_vy: float = param(0.3, "Lateral speed limit (m/s).")
    max_wz: float = param(1.0, "Yaw rate limit (rad/s).")
    max_ax: float = param(1.0, "Forward acceleration limit (m/s^2).")
    max_ay: float = param(1.0, "Lateral acceleration limit (m/s^2).")
    max_awz: float = param(2.0, "Yaw acceleration limit (rad/s^2).")
    k_linear: float = param(1.0, "Forward gain (1/s).")
    k_lateral: float = param(1.0, "Lateral gain (1/s).")
    k_angular: float = param(1.5, "Heading gain (1/s).")
    lookahead_m: float = param(0.3, "Lookahead distance along the plan (m).")
    waypoint_tolerance_m: float = param(0.1, "A waypoint is reached within this distance (m).")
    yaw_tolerance_rad: float = param(0.1, "Turn-in-place and final waypoints are reached within this yaw error (rad).")
    allow_lateral: bool = param(True, "Use lateral velocity (Go2 walks sideways); false = unicycle tracking.")

    def __post_init__(self) -> None:
        _positive(self, "rate_hz", "plan_timeout_s", "odom_timeout_s", "odom_history_s", "max_vx", "max_vy",
                  "max_wz", "max_ax", "max_ay", "max_awz", "lookahead_m", "waypoint_tolerance_m",
                  "yaw_tolerance_rad")
        _non_negative(self, "k_linear", "k_lateral", "k_angular")
        if not (math.isfinite(self.min_vx) and self.min_vx <= 0):
            raise ConfigError(f"min_vx must be <= 0 (a backward limit), got {self.min_vx}")


@dataclass
class BridgeNodeConfig:
    backend: str = param("sim", "Robot backend: sim (kinematic Go2 stand-in).",
                         choices=("sim",))
    rate_hz: float = param(50.0, "Bridge loop rate: velocity commands to the robot and odometry out.")
    cmd_timeout_s: float = param(0.5, "Zero velocity when no cmd_vel arrived for this long (seconds).")
    max_vx: float = param(0.6, "Forward speed clamp (m/s).")
    min_vx: float = param(-0.3, "Backward speed clamp (m/s, <= 0).")
    max_vy: float = param(0.4, "Lateral speed clamp (m/s).")
    max_wz: float = param(1.2, "Yaw rate clamp (rad/s).")
    odom_frame: str = param("odom", "Odometry frame id.")
    base_frame: str = param("base_link", "Robot body frame id.")
    sim_initial_x: float = param(0.0, "Sim robot start x (m).")
    sim_initial_y: float = param(0.0, "Sim robot start y (m).")
    sim_initial_yaw: float = param(0.0, "Sim robot start yaw (rad).")
    sim_response_time_s: float = param(0.1, "Sim first-order velocity response time constant (s); 0 = ideal.")

    def __post_init__(self) -> None:
        check_choices(self)
        _positive(self, "rate_hz", "cmd_timeout_s", "max_vx", "max_vy", "max_wz")
        _non_negative(self, "sim_response_time_s")
        if not (math.isfinite(self.min_vx) and self.min_vx <= 0):
            raise ConfigError(f"min_vx must be <= 0 (a backward limit), got {self.min_vx}")
