"""Validated configuration dataclasses of the four nodes.

Every field is a ROS parameter of its node (same name, same default); the YAML files under
``params/`` hold exactly these keys (a test checks both directions). Nodes only read parameters
and build these objects, so validation lives here, importable and testable without ROS.
"""
from __future__ import annotations

import dataclasses
import math
import re
from dataclasses import dataclass, field
from typing import Any

# The camera mount presets are the pose head's (numbers in one place): camera_node's base_link -> camera_link
# transform and the sparsevideonav policy's camera_mount read the same presets (numpy only, no torch).
from sparsevideonav_ros.policies.pose_estimators.mount import MOUNT_PRESETS


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


CAMERA_SOURCES = ("synthetic", "video", "image_folder", "uvc", "osmo", "realsense", "d455")
# What a source name means: the source kind, default width, height, device fps, and the sizes a preset
# allows (osmo: DJI Osmo Action 4 in UVC webcam mode; d455: Intel RealSense D455 colour sensor).
CAMERA_PRESETS: dict[str, dict[str, Any]] = {
    "synthetic": {"kind": "synthetic", "width": 640, "height": 480, "fps": 0.0, "sizes": ()},
    "video": {"kind": "video", "width": 0, "height": 0, "fps": 0.0, "sizes": ()},
    "image_folder": {"kind": "image_folder", "width": 0, "height": 0, "fps": 0.0, "sizes": ()},
    "uvc": {"kind": "uvc", "width": 1280, "height": 720, "fps": 30.0, "sizes": ()},
    "osmo": {"kind": "uvc", "width": 1280, "height": 720, "fps": 30.0, "sizes": ((1280, 720), (1920, 1080))},
    "realsense": {"kind": "realsense", "width": 640, "height": 480, "fps": 30.0, "sizes": ()},
    "d455": {"kind": "realsense", "width": 640, "height": 480, "fps": 30.0,
             "sizes": ((1280, 800), (1280, 720), (848, 480), (640, 480), (640, 360), (480, 270), (424, 240))},
}


@dataclass
class CameraNodeConfig:
    source: str = param("synthetic", "Frame source: synthetic | video | image_folder | uvc | osmo (uvc preset, DJI Osmo "
                        "Action 4) | realsense | d455 (realsense preset).", choices=CAMERA_SOURCES)
    path: str = param("", "video/image_folder: the file or folder; uvc/osmo: device index or path (empty = 0, "
                      "/dev/video0); realsense/d455: serial number or a .db3/.bag recording (empty = first camera).")
    loop: bool = param(True, "Restart a finite source (video, image folder) at its end.")
    rate_hz: float = param(15.0, "Publish rate in frames per second (0 = the source's own rate).")
    width: int = param(0, "Frame width in pixels: the synthetic image, or the resolution asked of a uvc/realsense "
                       "camera (0 = the source's default: 640 synthetic/realsense/d455, 1280 uvc/osmo).")
    height: int = param(0, "Frame height in pixels (0 = the source's default: 480 synthetic/realsense/d455, "
                        "720 uvc/osmo).")
    device_fps: float = param(0.0, "Frame rate asked of a uvc/realsense camera (0 = 30).")
    fourcc: str = param("MJPG", "FOURCC asked of a uvc camera (MJPG: 1280x720 and 1920x1080 at 30 fps).")
    depth: bool = param(False, "realsense/d455: also publish depth aligned to colour (16UC1, mm) on "
                        "camera/aligned_depth_to_color/image_raw.")
    timeout_s: float = param(2.0, "uvc/realsense: no frame for this long = camera lost; reopen every timeout_s "
                             "until it is back (seconds).")
    frame_id: str = param("camera_link", "frame_id of published images and camera info.")
    horizontal_fov_deg: float = param(90.0, "Horizontal field of view used for the pinhole CameraInfo.")
    jpeg_quality: int = param(85, "JPEG quality (1-100) of camera/image_raw/compressed.")
    publish_raw: bool = param(True, "Publish the rgb8 sensor_msgs/Image (keep local; large over Wi-Fi).")
    publish_compressed: bool = param(True, "Publish the JPEG sensor_msgs/CompressedImage (crosses the network).")
    camera_mount: str = param("osmo", "Where the camera sits (base_link -> frame_id on camera/transform and "
                              "/tf_static): a mount preset of the pose head (osmo: 1.0 m high, 5 deg up, 0.10 m "
                              "ahead; d455: 0.45 m, 15 deg down, 0.28 m ahead; assumed values: measure yours) or "
                              "custom = the mount_* parameters; keep it equal to the policy's "
                              "sparsevideonav.camera_mount (launch argument camera_mount sets both).",
                              choices=(*MOUNT_PRESETS, "custom"))
    mount_height_m: float = param(1.0, "camera_mount custom: optical centre above the ground (m).")
    mount_pitch_down_deg: float = param(-5.0, "camera_mount custom: downward tilt of the optical axis (deg; "
                                              "negative = tilted up).")
    mount_forward_m: float = param(0.1, "camera_mount custom: optical centre ahead of base_link (m).")
    base_frame: str = param("base_link", "Robot body frame the camera transform hangs from (go2_bridge_node's "
                            "base_frame).")

    def __post_init__(self) -> None:
        check_choices(self)
        _positive(self, "mount_height_m")
        if not (math.isfinite(self.mount_pitch_down_deg) and abs(self.mount_pitch_down_deg) < 80.0):
            raise ConfigError(f"mount_pitch_down_deg must be within +-80, got {self.mount_pitch_down_deg}")
        if not math.isfinite(self.mount_forward_m):
            raise ConfigError(f"mount_forward_m must be finite, got {self.mount_forward_m}")
        if not self.base_frame.strip() or self.base_frame.strip() == self.frame_id.strip():
            raise ConfigError(f"base_frame {self.base_frame!r} must be a frame id other than frame_id {self.frame_id!r}")
        _non_negative(self, "rate_hz", "width", "height", "device_fps")
        _positive(self, "horizontal_fov_deg", "timeout_s")
        if self.source in ("video", "image_folder") and not self.path:
            raise ConfigError(f"camera source {self.source!r} needs the parameter 'path'")
        if (self.width == 0) != (self.height == 0):
            raise ConfigError(f"set both width and height, or neither (0 = the source's default), got "
                              f"{self.width}x{self.height}")
        preset = CAMERA_PRESETS[self.source]
        if preset["sizes"] and self.frame_size() not in preset["sizes"]:
            sizes = ", ".join(f"{w}x{h}" for w, h in preset["sizes"])
            raise ConfigError(f"camera {self.source!r} offers width x height {sizes}; got "
                              f"{self.frame_size()[0]}x{self.frame_size()[1]}")
        if len(self.fourcc) != 4:
            raise ConfigError(f"fourcc must be 4 characters (e.g. MJPG, YUYV), got {self.fourcc!r}")
        if self.depth and preset["kind"] != "realsense":
            raise ConfigError(f"depth:=true needs a realsense/d455 source, not {self.source!r}")
        if not 1 <= self.jpeg_quality <= 100:
            raise ConfigError(f"jpeg_quality must be in 1..100, got {self.jpeg_quality}")
        if not (self.publish_raw or self.publish_compressed):
            raise ConfigError("camera publishes nothing: enable publish_raw or publish_compressed")

    @property
    def kind(self) -> str:
        """The frame source kind behind ``source`` (osmo -> uvc, d455 -> realsense)."""
        return CAMERA_PRESETS[self.source]["kind"]

    def frame_size(self) -> tuple[int, int]:
        """(width, height) with 0 replaced by the source's default (0, 0 for files: their own size)."""
        preset = CAMERA_PRESETS[self.source]
        return (self.width or preset["width"], self.height or preset["height"])

    def camera_fps(self) -> float:
        return self.device_fps or CAMERA_PRESETS[self.source]["fps"]


@dataclass
class PolicyNodeConfig:
    policy: str = param("scripted", "Policy name from the registry (scripted, ...).")
    image_input: str = param("compressed", "Subscribe the JPEG (compressed) or rgb8 (raw) camera topic.",
                             choices=("compressed", "raw"))
    history_rate_hz: float = param(4.0, "Rate the camera stream is resampled to for the policy history; must be "
                                        "the policy's own rate (sparsevideonav, janusvln: 4 FPS), else the node "
                                        "refuses to start; scripted takes any.")
    expected_width: int = param(0, "Reject frames of another width (0 = any).")
    expected_height: int = param(0, "Reject frames of another height (0 = any).")
    instruction: str = param("", "Navigation instruction; setting this parameter sets the policy instruction.")
    plan_frame: str = param("base_link", "frame_id of published paths (robot body at the frame's stamp).")
    max_pending_frames: int = param(64, "4 FPS frames queued for a busy policy before the oldest are dropped.")
    status_rate_hz: float = param(2.0, "Rate of policy/status diagnostics.")
    history_grid_anchor_s: float = param(0.0, "Stamp (s) the 4 FPS sampling grid starts from; 0 = the first frame "
                                              "received. Replays set it to the recorded grid, so the replayed policy "
                                              "samples the frames the recorded one did.")

    def __post_init__(self) -> None:
        check_choices(self)
        _positive(self, "history_rate_hz", "max_pending_frames", "status_rate_hz")
        _non_negative(self, "expected_width", "expected_height", "history_grid_anchor_s")
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
    wait_for_recorder: bool = param(False, "No motion until the bag recorder (bag_recorder or ros2 bag's "
                                           "rosbag2_recorder) subscribes to every recorded topic that has a "
                                           "publisher (record:=true sets it).")

    def __post_init__(self) -> None:
        _positive(self, "rate_hz", "plan_timeout_s", "odom_timeout_s", "odom_history_s", "max_vx", "max_vy",
                  "max_wz", "max_ax", "max_ay", "max_awz", "lookahead_m", "waypoint_tolerance_m",
                  "yaw_tolerance_rad")
        _non_negative(self, "k_linear", "k_lateral", "k_angular")
        if not (math.isfinite(self.min_vx) and self.min_vx <= 0):
            raise ConfigError(f"min_vx must be <= 0 (a backward limit), got {self.min_vx}")


ROBOT_BACKENDS = ("sim", "unitree", "go2")


@dataclass
class BridgeNodeConfig:
    backend: str = param("sim", "Robot backend: sim (kinematic Go2 stand-in) | unitree (a real Go2 over "
                         "unitree_sdk2py; go2 is the same).", choices=ROBOT_BACKENDS)
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
    go2_network_interface: str = param("eth0", "unitree/go2: network interface on the robot's network "
                                       "(192.168.123.0/24); lo for the fake Go2.")
    go2_domain_id: int = param(0, "unitree/go2: DDS domain of the robot's unitree_sdk2 channels (a Go2 uses 0; "
                               "independent of ROS_DOMAIN_ID).")
    go2_timeout_s: float = param(1.0, "unitree/go2: SportClient timeout (s): no subscriber -> 3102, no answer -> 3104.")
    go2_state_timeout_s: float = param(0.5, "unitree/go2: error status and zero command when no rt/sportmodestate "
                                       "arrived for this long (s).")
    go2_link_timeout_s: float = param(0.8, "unitree/go2: error status and zero command when the sport service "
                                      "answered no request-reply probe for this long (s); Move itself gets no reply.")
    go2_move_states: list = param([100, 1013, 1015, 1016, 1017, 2010],
                                  "unitree/go2: SportModeState_.error_code values (the sport state machine on "
                                  "firmware >= V1.1.6) in which Move is sent: Agile, Balance Standing, Regular "
                                  "Walk/Run, Endurance, Classic. In any other state (Standing Lock 1002 after "
                                  "StandUp, Damping, Crouch, Sit, ...) the bridge sends no Move and says why.")
    go2_auto_balance_stand: bool = param(False, "unitree/go2: when a velocity command arrives while the robot is in "
                                         "Standing Lock (after StandUp), call BalanceStand once by itself.")
    odom_position_stddev_m: float = param(0.05, "Standard deviation of the odometry x/y position (m); z, roll and "
                                          "pitch are not measured (variance 1e6).")
    odom_yaw_stddev_rad: float = param(0.05, "Standard deviation of the odometry yaw (rad).")
    odom_velocity_stddev_mps: float = param(0.05, "Standard deviation of the odometry body vx/vy (m/s).")
    odom_yaw_rate_stddev_radps: float = param(0.05, "Standard deviation of the odometry yaw rate (rad/s).")

    def __post_init__(self) -> None:
        check_choices(self)
        _positive(self, "rate_hz", "cmd_timeout_s", "max_vx", "max_vy", "max_wz", "go2_timeout_s",
                  "go2_state_timeout_s", "go2_link_timeout_s", "odom_position_stddev_m", "odom_yaw_stddev_rad",
                  "odom_velocity_stddev_mps", "odom_yaw_rate_stddev_radps")
        if not self.go2_move_states or not all(isinstance(code, int) and not isinstance(code, bool)
                                               for code in self.go2_move_states):
            raise ConfigError(f"go2_move_states must be a non-empty list of integer error_code values, got "
                              f"{self.go2_move_states!r}")
        if not 0 <= self.go2_domain_id <= 232:
            raise ConfigError(f"go2_domain_id must be a DDS domain id in 0..232, got {self.go2_domain_id}")
        if not re.fullmatch(r"[A-Za-z0-9_.:@-]{1,64}", self.go2_network_interface):
            raise ConfigError(f"go2_network_interface {self.go2_network_interface!r} is not an interface name "
                              f"(see `ip -br link`)")
        _non_negative(self, "sim_response_time_s")
        if not (math.isfinite(self.min_vx) and self.min_vx <= 0):
            raise ConfigError(f"min_vx must be <= 0 (a backward limit), got {self.min_vx}")
