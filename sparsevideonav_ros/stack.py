"""The graph in one place: nodes, topics, services, QoS, parameter files and launch arguments.

Launch files (launch/*.launch.py), the pip-only process runner (tools/launch.py), the README's
tables and the tests all read this module; nothing else spells a topic name. Plain Python, no
rclpy or launch imports, so it works on a machine without a ROS install.
"""
from __future__ import annotations

import json
import os
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

from sparsevideonav_ros import configs

PACKAGE = "sparsevideonav_ros"

# QoS profiles by name; nodes map them to rclpy QoSProfile (nodes/common.py).
#   sensor_data: best effort, keep last 5 (frames: a late frame is worthless, never block Wi-Fi)
#   reliable:    reliable, keep last 10
#   latched:     reliable + transient local, keep last 1 (late joiners get the last value)
QOS_PROFILES = ("sensor_data", "reliable", "latched")


@dataclass(frozen=True)
class Topic:
    name: str  # relative: resolved inside the launch namespace
    msg_type: str
    qos: str
    publishers: tuple[str, ...]
    subscribers: tuple[str, ...]
    description: str


@dataclass(frozen=True)
class Service:
    name: str
    srv_type: str
    server: str
    description: str


TOPICS: dict[str, Topic] = {t.name: t for t in (
    Topic("camera/image_raw", "sensor_msgs/msg/Image", "sensor_data", ("camera_node",), ("policy_node",),
          "rgb8 frames (policy subscribes it when image_input:=raw; keep on the robot)."),
    Topic("camera/image_raw/compressed", "sensor_msgs/msg/CompressedImage", "sensor_data", ("camera_node",),
          ("policy_node",), "JPEG frames; the only image topic that should cross Wi-Fi."),
    Topic("camera/camera_info", "sensor_msgs/msg/CameraInfo", "sensor_data", ("camera_node",), (),
          "Pinhole intrinsics matching the published frames."),
    Topic("camera/aligned_depth_to_color/image_raw", "sensor_msgs/msg/Image", "sensor_data", ("camera_node",), (),
          "16UC1 depth in millimetres aligned to the colour frame, same stamp (realsense/d455 with depth:=true)."),
    Topic("camera/status", "diagnostic_msgs/msg/DiagnosticArray", "reliable", ("camera_node",), (),
          "Camera state (streaming, reconnecting), frames, skipped stale frames, reconnects, last error."),
    Topic("instruction", "std_msgs/msg/String", "latched", (), ("policy_node",),
          "Navigation instruction in natural language, e.g. 'walk forward and stop by the wooden door'."),
    Topic("odom", "nav_msgs/msg/Odometry", "reliable", ("go2_bridge_node",), ("policy_node", "controller_node"),
          "Robot pose in odom and body velocity."),
    Topic("odom/transform", "geometry_msgs/msg/TransformStamped", "reliable", ("go2_bridge_node",), (),
          "odom -> base_link transform as a message (also on /tf when tf2_msgs is installed)."),
    Topic("policy/path", "nav_msgs/msg/Path", "reliable", ("policy_node",), ("controller_node",),
          "Planned waypoints in plan_frame (robot body at the frame's stamp), stamped with that frame's "
          "capture stamp; an empty path means stop."),
    Topic("policy/status", "diagnostic_msgs/msg/DiagnosticArray", "reliable", ("policy_node",), (),
          "Policy name, state, latency, history length, last error."),
    Topic("cmd_vel", "geometry_msgs/msg/Twist", "reliable", ("controller_node",), ("go2_bridge_node",),
          "Body velocity command (m/s, rad/s)."),
    Topic("controller/status", "diagnostic_msgs/msg/DiagnosticArray", "reliable", ("controller_node",), (),
          "Tracking state (tracking, arrived, stale, no_odom...), target index, plan age."),
    Topic("estop", "std_msgs/msg/Bool", "latched", (), ("go2_bridge_node",),
          "True engages the latched e-stop; release only through the estop/release service."),
    Topic("go2/status", "diagnostic_msgs/msg/DiagnosticArray", "reliable", ("go2_bridge_node",), (),
          "Bridge state (moving, idle, timeout, estop, rejected, robot_error), backend health, robot state "
          "(mode, gait, body height, error code), SDK errors by name."),
)}

SERVICES: dict[str, Service] = {s.name: s for s in (
    Service("policy/reset", "std_srvs/srv/Trigger", "policy_node", "Forget history and route progress."),
    Service("estop/release", "std_srvs/srv/Trigger", "go2_bridge_node", "Release the latched e-stop."),
    Service("estop/engage", "std_srvs/srv/Trigger", "go2_bridge_node", "Engage the e-stop (same as estop:=true)."),
    Service("go2/stand_up", "std_srvs/srv/Trigger", "go2_bridge_node", "Stand up with locked joints (Go2 StandUp)."),
    Service("go2/stand_down", "std_srvs/srv/Trigger", "go2_bridge_node",
            "Lie down (Go2 StandDown); velocity commands do nothing until stand_up or balance_stand."),
    Service("go2/balance_stand", "std_srvs/srv/Trigger", "go2_bridge_node",
            "Balanced stand, ready to walk (Go2 BalanceStand)."),
    Service("go2/damp", "std_srvs/srv/Trigger", "go2_bridge_node",
            "Damp all joints: the robot sinks to the ground (Go2 Damp); emergency use."),
    Service("go2/stop_move", "std_srvs/srv/Trigger", "go2_bridge_node", "Stop walking now (Go2 StopMove)."),
)}


@dataclass(frozen=True)
class NodeSpec:
    name: str
    module: str  # python -m target; also the console script `name` -> module:main
    params_file: str  # under params/
    config_class: type
    side: str  # 'robot' or 'gpu'
    description: str

    @property
    def executable(self) -> str:
        return self.name


NODES: dict[str, NodeSpec] = {n.name: n for n in (
    NodeSpec("camera_node", f"{PACKAGE}.nodes.camera_node", "camera.yaml", configs.CameraNodeConfig, "robot",
             "Frames from a source -> rgb8 Image, JPEG CompressedImage, CameraInfo."),
    NodeSpec("policy_node", f"{PACKAGE}.nodes.policy_node", "policy.yaml", configs.PolicyNodeConfig, "gpu",
             "4 FPS history + selected policy -> Path."),
    NodeSpec("controller_node", f"{PACKAGE}.nodes.controller_node", "controller.yaml",
             configs.ControllerNodeConfig, "robot", "Path -> cmd_vel with delay compensation and limits."),
    NodeSpec("go2_bridge_node", f"{PACKAGE}.nodes.go2_bridge_node", "go2_bridge.yaml", configs.BridgeNodeConfig,
             "robot", "cmd_vel -> robot (sim | unitree) with watchdog and e-stop; odometry out."),
)}


@dataclass(frozen=True)
class LaunchArgument:
    name: str
    default: str
    description: str
    # node -> parameter the argument sets ('' values are not applied, so the YAML default stays)
    sets: tuple[tuple[str, str], ...] = ()


LAUNCH_ARGUMENTS: dict[str, LaunchArgument] = {a.name: a for a in (
    LaunchArgument("namespace", "", "Namespace for every node and topic (one per robot)."),
    LaunchArgument("params_file", "", "Extra YAML applied after the package params (override any parameter)."),
    LaunchArgument("use_sim_time", "false", "Use /clock (bag replay, simulation)."),
    LaunchArgument("log_level", "info", "Logging level of every node."),
    LaunchArgument("policy", "", "Policy name (scripted, ...); empty keeps params/policy.yaml.",
                   (("policy_node", "policy"),)),
    LaunchArgument("instruction", "", "Initial navigation instruction.", (("policy_node", "instruction"),)),
    LaunchArgument("camera", "", "Camera source: synthetic | video | image_folder | uvc | osmo (DJI Osmo Action 4, "
                   "uvc preset) | realsense | d455 (realsense preset); empty keeps params/camera.yaml.",
                   (("camera_node", "source"),)),
    LaunchArgument("camera_path", "", "Video file or image folder (camera:=video|image_folder), device index or "
                   "/dev path (uvc|osmo), serial number or recording (realsense|d455).",
                   (("camera_node", "path"),)),
    LaunchArgument("robot", "", "Robot backend: sim | go2 (a real Go2 over unitree_sdk2py, same as unitree); empty "
                   "keeps params/go2_bridge.yaml.", (("go2_bridge_node", "backend"),)),
)}

# Which nodes each launch file starts.
LAUNCH_FILES: dict[str, tuple[str, ...]] = {
    "bringup": ("camera_node", "policy_node", "controller_node", "go2_bridge_node"),
    "robot": ("camera_node", "controller_node", "go2_bridge_node"),
    "policy": ("policy_node",),
}


def launch_arguments_for(launch_name: str) -> list[LaunchArgument]:
    nodes = set(LAUNCH_FILES[launch_name])
    return [a for a in LAUNCH_ARGUMENTS.values() if not a.sets or any(n in nodes for n, _ in a.sets)]


def share_dir() -> Path:
    """Folder holding params/ and launch/: the source checkout, else the installed share folder."""
    checkout = Path(__file__).resolve().parent.parent
    if (checkout / "params").is_dir() and (checkout / "launch").is_dir():
        return checkout
    pip_share = Path(sys.prefix) / "share" / PACKAGE  # where pip installs setup.py data_files
    if (pip_share / "params").is_dir():
        return pip_share
    from ament_index_python.packages import get_package_share_directory  # only on installed packages
    return Path(get_package_share_directory(PACKAGE))


@dataclass
class ProcessSpec:
    """One node process, as both the launch files and the runner start it."""

    node: str
    module: str
    executable: str
    namespace: str
    params_files: list[str]
    parameters: dict[str, object] = field(default_factory=dict)
    log_level: str = "info"

    def ros_arguments(self) -> list[str]:
        """The --ros-args part of the command line (identical to what launch_ros generates)."""
        args = ["--ros-args", "-r", f"__node:={self.node}"]
        if self.namespace:
            args += ["-r", f"__ns:={self.namespace}"]
        for path in self.params_files:
            args += ["--params-file", path]
        for key, value in self.parameters.items():
            args += ["-p", f"{key}:={_ros_arg_value(value)}"]
        args += ["--log-level", self.log_level]
        return args


def _ros_arg_value(value: object) -> str:
    """`-p name:=value` values are parsed as YAML: quote strings so 'yes' or '42' stay strings."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return json.dumps(value)
    return str(value)


def _parse_bool(text: str, name: str) -> bool:
    lowered = text.strip().lower()
    if lowered in ("true", "1", "yes"):
        return True
    if lowered in ("false", "0", "no", ""):
        return False
    raise ValueError(f"launch argument {name}:={text!r} is not a boolean (true/false)")


def normalise_namespace(namespace: str) -> str:
    namespace = namespace.strip().strip("/")
    return f"/{namespace}" if namespace else ""


def plan_processes(launch_name: str, arguments: Optional[dict[str, str]] = None,
                   share: Optional[Path] = None) -> list[ProcessSpec]:
    """The processes a launch file starts for the given launch arguments (strings, as typed)."""
    if launch_name not in LAUNCH_FILES:
        raise ValueError(f"unknown launch file {launch_name!r}; known: {sorted(LAUNCH_FILES)}")
    values = {a.name: a.default for a in launch_arguments_for(launch_name)}
    for key, value in (arguments or {}).items():
        if key not in values:
            raise ValueError(f"unknown launch argument {key!r} for {launch_name}; known: {sorted(values)}")
        values[key] = value
    share = share or share_dir()
    use_sim_time = _parse_bool(values["use_sim_time"], "use_sim_time")
    extra = values["params_file"]
    if extra and not Path(extra).is_file():
        raise FileNotFoundError(f"params_file:={extra} does not exist")
    processes = []
    for node_name in LAUNCH_FILES[launch_name]:
        spec = NODES[node_name]
        params_files = [str(share / "params" / spec.params_file)] + ([str(Path(extra).resolve())] if extra else [])
        parameters: dict[str, object] = {}
        if use_sim_time:
            parameters["use_sim_time"] = True
        for argument in LAUNCH_ARGUMENTS.values():
            for target_node, parameter in argument.sets:
                if target_node == node_name and argument.name in values and values[argument.name] != "":
                    parameters[parameter] = values[argument.name]
        processes.append(ProcessSpec(node=node_name, module=spec.module, executable=spec.executable,
                                     namespace=normalise_namespace(values["namespace"]),
                                     params_files=params_files, parameters=parameters,
                                     log_level=values["log_level"]))
    return processes


def loopback_environment(domain_id: int, base: Optional[dict[str, str]] = None) -> dict[str, str]:
    """Environment that keeps ROS traffic on this machine (tests, CI, demo)."""
    env = dict(os.environ if base is None else base)
    env.update(ROS_DOMAIN_ID=str(domain_id), ROS_AUTOMATIC_DISCOVERY_RANGE="LOCALHOST", ROS_LOCALHOST_ONLY="1")
    return env
