"""The graph in one place: nodes, topics, services, QoS, parameter files and launch arguments.

Launch files (launch/*.launch.py), the pip-only process runner (tools/launch.py), the README's
tables and the tests all read this module; nothing else spells a topic name. Plain Python, no
rclpy or launch imports, so it works on a machine without a ROS install. It reads no bag: what
a replay starts depends on the bag's contents, and sparsevideonav_ros/launch_plan.py reads the bag
and hands the result (ReplayAlignment) to the planners here.
"""
from __future__ import annotations

import dataclasses
import datetime
import json
import os
import re
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
#   best_effort: best effort, keep last 10 (a subscription with it matches every publisher)
QOS_PROFILES = ("sensor_data", "reliable", "latched", "best_effort")
# How a subscription matches the publishers users have (ROS 2 QoS compatibility): a RELIABLE reader never
# matches a BEST_EFFORT writer, a TRANSIENT_LOCAL reader never matches a VOLATILE writer (`ros2 topic pub`
# on Jazzy/Kilted and a default rclpy publisher are RELIABLE + VOLATILE; Humble's `ros2 topic pub` is
# TRANSIENT_LOCAL). A user-facing input is therefore subscribed once per profile it needs:
#   latched   - the last value of a TRANSIENT_LOCAL publisher that was there before us (e-stop latch);
#   reliable  - reliable delivery from any RELIABLE publisher, VOLATILE or TRANSIENT_LOCAL;
#   best_effort - anything else (BEST_EFFORT publishers).
# The same message may then arrive more than once; every handler of such a topic is idempotent.
LATCHED_INPUT = ("latched", "reliable", "best_effort")
STREAM_INPUT = ("best_effort",)  # a stream (cmd_vel, odom): any publisher, newest sample wins


@dataclass(frozen=True)
class Topic:
    name: str  # relative: resolved inside the launch namespace
    msg_type: str
    qos: str
    publishers: tuple[str, ...]
    subscribers: tuple[str, ...]
    description: str
    # QoS profiles our subscribers create (one subscription each); empty = the topic's own ``qos``.
    subscriber_qos: tuple[str, ...] = ()

    @property
    def subscription_profiles(self) -> tuple[str, ...]:
        return self.subscriber_qos or (self.qos,)


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
    Topic("camera/camera_info", "sensor_msgs/msg/CameraInfo", "sensor_data", ("camera_node",), ("policy_node",),
          "Pinhole intrinsics matching the published frames (the pose head's K for frames of its size)."),
    Topic("camera/aligned_depth_to_color/image_raw", "sensor_msgs/msg/Image", "sensor_data", ("camera_node",), (),
          "16UC1 depth in millimetres aligned to the colour frame, same stamp (realsense/d455 with depth:=true)."),
    Topic("camera/status", "diagnostic_msgs/msg/DiagnosticArray", "reliable", ("camera_node",), (),
          "Camera state (streaming, reconnecting), frames, skipped stale frames, reconnects, last error."),
    Topic("instruction", "std_msgs/msg/String", "latched", (), ("policy_node",),
          "Navigation instruction in natural language, e.g. 'walk forward and stop by the wooden door'.",
          LATCHED_INPUT),
    Topic("odom", "nav_msgs/msg/Odometry", "reliable", ("go2_bridge_node",), ("policy_node", "controller_node"),
          "Robot pose in odom and body velocity.", STREAM_INPUT),
    Topic("odom/transform", "geometry_msgs/msg/TransformStamped", "reliable", ("go2_bridge_node",), (),
          "odom -> base_link transform as a message (also on /tf when tf2_msgs is installed)."),
    Topic("camera/transform", "geometry_msgs/msg/TransformStamped", "latched", ("camera_node",), (),
          "base_link -> camera frame (the camera mount: camera_mount preset or the mount_* parameters, the "
          "policy's presets), latched; also on /tf_static when tf2_msgs is installed."),
    Topic("policy/path", "nav_msgs/msg/Path", "reliable", ("policy_node",), ("controller_node",),
          "Planned waypoints in plan_frame (robot body at the frame's stamp), stamped with that frame's "
          "capture stamp; an empty path means stop."),
    Topic("policy/status", "diagnostic_msgs/msg/DiagnosticArray", "reliable", ("policy_node",), (),
          "Policy name, state ('loading' while the weights load), latency, history length, instructions taken, "
          "achieved plan rate (plan_rate_hz), frames dropped from the pending queue (frames_dropped), latest error "
          "and its age (level ERROR while errors are recent, see core/status.py)."),
    Topic("policy/future", "sensor_msgs/msg/Image", "sensor_data", ("policy_node",), (),
          "rgb8 mosaic of what the policy imagines (SparseVideoNav: the generated sparse future, T+1..T+20 s), "
          "stamped like its path; built only when someone subscribes (RViz/Foxglove)."),
    Topic("policy/future/compressed", "sensor_msgs/msg/CompressedImage", "sensor_data", ("policy_node",), (),
          "JPEG of policy/future, for viewing and recording across Wi-Fi."),
    Topic("policy/markers", "visualization_msgs/msg/MarkerArray", "reliable", ("policy_node",), (),
          "RViz/Foxglove markers of each plan, in plan_frame at its stamp: the path (line strip), its "
          "waypoints, their time ahead labels (T+1 s, ...; the policy's imagined-future instants) and the plan "
          "state; built only when someone subscribes."),
    Topic("cmd_vel", "geometry_msgs/msg/Twist", "reliable", ("controller_node",), ("go2_bridge_node",),
          "Body velocity command (m/s, rad/s).", STREAM_INPUT),
    Topic("controller/status", "diagnostic_msgs/msg/DiagnosticArray", "reliable", ("controller_node",), (),
          "Tracking state (tracking, arrived, stale, no_odom...), target index, plan age, latest error and its age."),
    Topic("estop", "std_msgs/msg/Bool", "latched", (), ("go2_bridge_node",),
          "True engages the latched e-stop; release only through the estop/release service.", LATCHED_INPUT),
    Topic("go2/status", "diagnostic_msgs/msg/DiagnosticArray", "reliable", ("go2_bridge_node",), (),
          "Bridge state (moving, idle, timeout, estop, rejected, robot_error), backend health, robot state "
          "(mode, gait, body height, error code), SDK errors by name."),
    # Published by tools/record.py (the runner's recorder, not a stack node); ros2 bag record has no such topic.
    Topic("recorder/status", "diagnostic_msgs/msg/DiagnosticArray", "reliable", (), ("controller_node",),
          "The runner's bag recorder (record:=true): the recorded topics it has received messages on "
          "(received_topics); controller_node's wait_for_recorder waits for odom and cmd_vel among them."),
)}
# With wait_for_recorder, our recorder must have *received* these (not only subscribed: DDS matching between
# two other processes may lag the graph) before the controller lets the robot move: the bag then holds the
# robot at rest and the first command.
RECORDER_MUST_RECEIVE: tuple[str, ...] = ("odom", "cmd_vel")

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

# What `record:=true` writes to the bag (ros2 bag record in launch files, tools/record.py in the runner):
# everything needed to replay the policy's inputs and to judge its outputs; raw frames stay out (size).
RECORDED_TOPICS: tuple[str, ...] = (
    "camera/image_raw/compressed", "camera/camera_info", "instruction", "policy/path", "policy/future/compressed",
    "cmd_vel", "odom", "policy/status", "controller/status", "go2/status", "estop",
    "odom/transform", "camera/transform",  # the transforms, also where /tf cannot be recorded (pip-only)
)
# The ROS-wide transform topics (tf2_msgs/msg/TFMessage, relative like every stack topic: /tf, or
# /<robot>/tf in a namespace, the usual multi-robot remap): not in TOPICS because tf2_msgs is no PyPI
# wheel. Nodes publish them where tf2_msgs imports (any ROS 2 install) and say once when it does not;
# the same transforms are always on odom/transform and camera/transform (the pip-only live view and
# recorder turn those into /tf and /tf_static). name -> (type, QoS profile: tf2_ros's own).
TF_TOPICS: dict[str, tuple[str, str]] = {
    "tf": ("tf2_msgs/msg/TFMessage", "reliable"),  # odom -> base_link (go2_bridge_node)
    "tf_static": ("tf2_msgs/msg/TFMessage", "latched"),  # base_link -> camera_link (camera_node)
}
# Which stack topic carries the transforms of each TF topic (what the pip-only tools convert).
TF_SOURCES: dict[str, str] = {"tf": "odom/transform", "tf_static": "camera/transform"}
# What `ros2 bag record` adds to RECORDED_TOPICS (the pip-only recorder writes them from TF_SOURCES).
RECORDED_TF_TOPICS: tuple[str, ...] = tuple(TF_TOPICS)
# What replay plays back from a bag into policy + controller + sim robot: the policy's inputs only. The sim
# robot makes its own odometry (closed loop; the recorded one would fight it); path, cmd_vel and status are
# what the replayed nodes produce; a recorded e-stop would latch the sim robot for good (its release is a
# service call, which is not recorded).
REPLAYED_TOPICS: tuple[str, ...] = ("camera/image_raw/compressed", "camera/camera_info", "instruction")
RECORDER_NAME = "bag_recorder"
# ROS node names of the recorders: ours (tools/record.py) and `ros2 bag record`'s default (all distros).
RECORDER_NODE_NAMES = (RECORDER_NAME, "rosbag2_recorder")
PLAYER_NAME = "bag_player"
RECORD_STORAGE = "mcap"
PLAYER_CLOCK_HZ = 100.0


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
    # launch files that take the argument (empty: every launch file whose nodes it concerns)
    only_in: tuple[str, ...] = ()


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
    LaunchArgument("camera_mount", "", "Where the camera sits on the robot: osmo | d455 (the pose head's mount "
                   "presets) | custom (the mount_* parameters of both nodes); sets camera_node camera_mount (its "
                   "base_link -> camera_link transform) and the sparsevideonav policy's camera_mount together; "
                   "empty keeps the params files.",
                   (("camera_node", "camera_mount"), ("policy_node", "sparsevideonav.camera_mount"))),
    LaunchArgument("foxglove", "false", "Start the live view for Foxglove (tools/live_view.py, a foxglove-sdk "
                   "WebSocket server): camera, plan, markers, odometry, transforms, imagined future and status "
                   "under their ROS names; needs no RViz or ROS install. Open ws://<foxglove_address>:"
                   "<foxglove_port> in Foxglove with foxglove/sparsevideonav.json."),
    LaunchArgument("foxglove_port", "8765", "TCP port of the Foxglove live view (foxglove:=true); 0 = any free one."),
    LaunchArgument("foxglove_address", "127.0.0.1", "Address the Foxglove live view binds (loopback by default: "
                   "only this machine can connect; 0.0.0.0 opens it to the network, unencrypted)."),
    LaunchArgument("record", "false", "Record the curated topics (stack.RECORDED_TOPICS) to an mcap bag in "
                   "record_dir: ros2 bag record under ros2 launch, a rosbags recorder in the pip-only runner."),
    LaunchArgument("record_dir", "bags", "Folder for recordings; each run gets <date>-<policy>[-<instruction>] "
                   "in it."),
    LaunchArgument("bag", "", "Bag to replay (rosbag2 folder or .mcap file): camera frames, camera_info and "
                   "instruction at their recorded times, with /clock.", only_in=("replay",)),
    LaunchArgument("replay_rate", "1.0", "Playback speed factor (1.0 = as recorded).", only_in=("replay",)),
    LaunchArgument("replay_delay", "3.0", "Seconds between the policy reporting ready (replay_ready_timeout) "
                   "and the start of playback.", only_in=("replay",)),
    LaunchArgument("replay_ready_timeout", "300.0", "Seconds the player (tools/play.py; under ros2 launch in front "
                   "of ros2 bag play) waits for policy/status to leave 'loading' before it plays anyway (the replay "
                   "summary counts the frames played before the policy was ready).", only_in=("replay",)),
    LaunchArgument("replay_report_dir", "runs", "Folder for the replay summary: <date>-replay-<policy>/summary.json "
                   "and trajectory.png, like the demo's run folder; empty: none.", only_in=("replay",)),
    LaunchArgument("replay_start", "aligned", "Where playback starts: aligned = at the frame of the first recorded "
                   "plan, with the replayed policy's 4 FPS grid where the recorded one was (it samples the same "
                   "frames); or seconds into the bag.", only_in=("replay",)),
)}

# Which nodes each launch file starts.
LAUNCH_FILES: dict[str, tuple[str, ...]] = {
    "bringup": ("camera_node", "policy_node", "controller_node", "go2_bridge_node"),
    "robot": ("camera_node", "controller_node", "go2_bridge_node"),
    "policy": ("policy_node",),
    "replay": ("policy_node", "controller_node", "go2_bridge_node"),
}
# Launch argument defaults that differ per launch file.
LAUNCH_ARGUMENT_DEFAULTS: dict[str, dict[str, str]] = {"replay": {"use_sim_time": "true"}}
# Parameters a launch file always sets (arguments that would set them are not offered there): a replay
# drives the sim robot, never a real one, from the recorded compressed frames.
FIXED_PARAMETERS: dict[str, dict[str, dict[str, object]]] = {
    "replay": {"go2_bridge_node": {"backend": "sim"}, "policy_node": {"image_input": "compressed"}},
}


def launch_arguments_for(launch_name: str) -> list[LaunchArgument]:
    nodes = set(LAUNCH_FILES[launch_name])
    fixed = FIXED_PARAMETERS.get(launch_name, {})
    defaults = LAUNCH_ARGUMENT_DEFAULTS.get(launch_name, {})
    result = []
    for a in LAUNCH_ARGUMENTS.values():
        if a.only_in and launch_name not in a.only_in:
            continue
        if a.sets and not any(n in nodes and p not in fixed.get(n, {}) for n, p in a.sets):
            continue
        result.append(dataclasses.replace(a, default=defaults[a.name]) if a.name in defaults else a)
    return result


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
        """The --ros-args part of the command line: the node, namespace, parameter files, overrides and log level
        launch_ros sets too (launch_ros passes the overrides through a temporary params file instead of -p
        and adds `-r __ns:=/` without a namespace)."""
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


# Severities `--ros-args --log-level` takes (rcutils parses them case-insensitively).
LOG_LEVELS = ("debug", "info", "warn", "error", "fatal")


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


def resolve_arguments(launch_name: str, arguments: Optional[dict[str, str]] = None) -> dict[str, str]:
    """Every launch argument of ``launch_name``: the given values over the defaults; unknown names raise.

    Values that every node would refuse are refused here, before anything starts: ``log_level``.
    """
    if launch_name not in LAUNCH_FILES:
        raise ValueError(f"unknown launch file {launch_name!r}; known: {sorted(LAUNCH_FILES)}")
    values = {a.name: a.default for a in launch_arguments_for(launch_name)}
    for key, value in (arguments or {}).items():
        if key not in values:
            raise ValueError(f"unknown launch argument {key!r} for {launch_name}; known: {sorted(values)}")
        values[key] = value
    if values["log_level"].lower() not in LOG_LEVELS:
        raise ValueError(f"launch argument log_level:={values['log_level']!r} is not a log level; "
                         f"known: {', '.join(LOG_LEVELS)} (any case)")
    return values


@dataclass(frozen=True)
class ReplayAlignment:
    """Where a replay starts in its bag, as launch_plan.replay_alignment reads it from the bag.

    start_offset_s: seconds into the bag where playback starts; grid_anchor_s: the stamp the replayed
    policy's 4 FPS grid is anchored at (policy_node history_grid_anchor_s; None: its first frame);
    instruction: the last instruction recorded before the start (the player skips it), '' if none.
    """

    start_offset_s: float
    grid_anchor_s: Optional[float]
    instruction: str


def replay_bag(launch_name: str, values: dict[str, str]) -> Path:
    """The bag:= of a replay launch, checked: given and existing."""
    if not values["bag"].strip():
        raise ValueError(f"{launch_name} needs bag:=<rosbag2 folder or .mcap file>")
    bag = Path(values["bag"]).expanduser()
    if not bag.exists():
        raise FileNotFoundError(f"bag:={values['bag']} does not exist")
    return bag


def _require_alignment(launch_name: str, values: dict[str, str], replay: Optional[ReplayAlignment]) -> None:
    replay_bag(launch_name, values)
    if replay is None:
        raise ValueError(f"{launch_name} plays a bag, and what it starts depends on the bag: plan it with "
                         f"sparsevideonav_ros.launch_plan (reads the bag), or pass its ReplayAlignment")


def plan_processes(launch_name: str, arguments: Optional[dict[str, str]] = None,
                   share: Optional[Path] = None, replay: Optional[ReplayAlignment] = None) -> list[ProcessSpec]:
    """The processes a launch file starts for the given launch arguments (strings, as typed).

    A replay launch needs ``replay`` (launch_plan.replay_alignment reads it from the bag).
    """
    values = resolve_arguments(launch_name, arguments)
    share = share or share_dir()
    replay_parameters: dict[str, object] = {}
    if "bag" in values:
        _require_alignment(launch_name, values, replay)
        if replay.grid_anchor_s is not None:  # the replayed policy samples the frames the recorded one sampled
            replay_parameters["history_grid_anchor_s"] = replay.grid_anchor_s
        if not values["instruction"].strip() and replay.instruction:
            values["instruction"] = replay.instruction
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
        parameters.update(FIXED_PARAMETERS.get(launch_name, {}).get(node_name, {}))
        if node_name == "controller_node" and _parse_bool(values.get("record", "false"), "record"):
            parameters["wait_for_recorder"] = True  # no motion before the bag records it
        if node_name == "policy_node":
            parameters.update(replay_parameters)
        processes.append(ProcessSpec(node=node_name, module=spec.module, executable=spec.executable,
                                     namespace=normalise_namespace(values["namespace"]),
                                     params_files=params_files, parameters=parameters,
                                     log_level=values["log_level"]))
    return processes


# -- recording and replay ----------------------------------------------------------------------

def resolve_topic(namespace: str, topic: str) -> str:
    """Absolute name of a stack topic inside a launch namespace ('/robot1/odom', '/odom')."""
    return f"{normalise_namespace(namespace)}/{topic}"


def slugify(text: str, max_length: int = 48) -> str:
    """'Walk forward, stop by the wooden door!' -> 'walk-forward-stop-by-the-wooden-door' (folder-safe)."""
    slug = re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")
    return slug[:max_length].rstrip("-")


def _node_parameter(node: str, parameter: str, launch_name: str, values: dict[str, str], share: Path) -> str:
    """A node parameter as the launch would set it: launch argument, else params_file, else package YAML."""
    import yaml

    for argument in LAUNCH_ARGUMENTS.values():
        if (node, parameter) in argument.sets and values.get(argument.name):
            return str(values[argument.name])
    files = ([values["params_file"]] if values.get("params_file") else []) + [str(share / "params" / NODES[node].params_file)]
    for path in files:
        try:
            data = yaml.safe_load(Path(path).read_text(encoding="utf-8")) or {}
        except (OSError, yaml.YAMLError):
            continue
        for key, block in data.items() if isinstance(data, dict) else ():
            if str(key).rstrip("/").split("/")[-1] == node and isinstance(block, dict):
                found = (block.get("ros__parameters") or {}).get(parameter)
                if found not in (None, ""):
                    return str(found)
    return ""


def recording_name(launch_name: str, values: dict[str, str], share: Path, now: datetime.datetime) -> str:
    """<date>-<policy>[-<instruction slug>]; a launch without the policy node names itself instead."""
    parts = [now.strftime("%Y%m%d-%H%M%S")]
    if "policy_node" in LAUNCH_FILES[launch_name]:
        parts.append(slugify(_node_parameter("policy_node", "policy", launch_name, values, share)) or "policy")
        instruction = slugify(_node_parameter("policy_node", "instruction", launch_name, values, share))
        if instruction:
            parts.append(instruction)
    else:
        parts.append(launch_name)
    return "-".join(parts)


@dataclass(frozen=True)
class RecordingSpec:
    """The bag recorder a launch starts with record:=true (same topics and folder in both forms)."""

    output: str  # bag folder; must not exist yet
    topics: tuple[str, ...]  # absolute names
    use_sim_time: bool
    storage: str = RECORD_STORAGE
    node: str = RECORDER_NAME
    module: str = f"{PACKAGE}.tools.record"

    def ros2_command(self, ros_distro: str = "") -> list[str]:
        """`ros2 bag record` (launch files). Humble only takes positional topics; later distros --topics."""
        command = ["ros2", "bag", "record", "-s", self.storage, "-o", self.output]
        if self.use_sim_time:
            command.append("--use-sim-time")
        return command + (list(self.topics) if ros_distro.lower() == "humble" else ["--topics", *self.topics])

    def runner_arguments(self) -> list[str]:
        """Arguments of tools/record.py (pip-only runner)."""
        arguments = ["--output", self.output, "--storage", self.storage, *self.topics,
                     "--ros-args", "-r", f"__node:={self.node}"]
        return arguments + (["-p", "use_sim_time:=true"] if self.use_sim_time else [])


@dataclass(frozen=True)
class PlaybackSpec:
    """The bag player of replay.launch.py."""

    bag: str
    topics: tuple[str, ...]  # absolute names
    rate: float
    delay_s: float
    start_offset_s: float = 0.0  # seconds after the bag's start
    clock_hz: float = PLAYER_CLOCK_HZ
    node: str = PLAYER_NAME
    module: str = f"{PACKAGE}.tools.play"
    # The rosbags player (runner) waits for the policy on ready_topic (policy/status, absolute; '' = no wait)
    # up to ready_timeout_s, and writes its summary under report_dir ('' = none), named after ``policy``.
    ready_topic: str = ""
    ready_timeout_s: float = 300.0
    report_dir: str = ""
    policy: str = ""

    def ros2_command(self, ros_distro: str = "") -> list[str]:
        """`ros2 bag play` (launch files); older distros refuse --delay 0 and --start-offset 0: left out then."""
        command = ["ros2", "bag", "play", self.bag, "--clock", f"{self.clock_hz:g}", "--rate", f"{self.rate:g}",
                   "--disable-keyboard-controls"]
        if self.delay_s > 0:
            command += ["--delay", f"{self.delay_s:g}"]
        if self.start_offset_s > 0:
            command += ["--start-offset", f"{self.start_offset_s:.6f}"]
        return command + ["--topics", *self.topics]

    def runner_arguments(self) -> list[str]:
        """Arguments of tools/play.py (pip-only runner)."""
        waiting = (["--wait-for-ready", self.ready_topic, "--ready-timeout", f"{self.ready_timeout_s:g}"]
                   if self.ready_topic else [])
        report = ["--report-dir", self.report_dir, "--policy", self.policy] if self.report_dir else []
        return [self.bag, "--clock", f"{self.clock_hz:g}", "--rate", f"{self.rate:g}", "--delay", f"{self.delay_s:g}",
                "--start-offset", f"{self.start_offset_s:.6f}", *waiting, *report, "--topics", *self.topics,
                "--ros-args", "-r", f"__node:={self.node}"]


def plan_recording(launch_name: str, arguments: Optional[dict[str, str]] = None, share: Optional[Path] = None,
                   now: Optional[datetime.datetime] = None) -> Optional[RecordingSpec]:
    """The recorder for record:=true (None otherwise): RECORDED_TOPICS in the launch namespace."""
    values = resolve_arguments(launch_name, arguments)
    if not _parse_bool(values["record"], "record"):
        return None
    share = share or share_dir()
    name = recording_name(launch_name, values, share, now or datetime.datetime.now())
    folder = Path(values["record_dir"] or ".").expanduser().resolve() / name
    topics = RECORDED_TOPICS + RECORDED_TF_TOPICS
    return RecordingSpec(output=str(folder), topics=tuple(resolve_topic(values["namespace"], t) for t in topics),
                         use_sim_time=_parse_bool(values["use_sim_time"], "use_sim_time"))


def parse_float(text: str, name: str, minimum: float, strict: bool) -> float:
    """A numeric launch argument, refused (ValueError naming it) unless finite and above ``minimum``."""
    try:
        value = float(text)
    except ValueError:
        raise ValueError(f"launch argument {name}:={text!r} is not a number") from None
    if not (value > minimum if strict else value >= minimum) or value != value or value == float("inf"):
        raise ValueError(f"launch argument {name}:={text!r} must be {'>' if strict else '>='} {minimum:g}")
    return value


def plan_playback(launch_name: str, arguments: Optional[dict[str, str]] = None,
                  replay: Optional[ReplayAlignment] = None) -> Optional[PlaybackSpec]:
    """The bag player of a replay launch (None for the other launch files); a replay needs ``replay``."""
    values = resolve_arguments(launch_name, arguments)
    if "bag" not in values:
        return None
    _require_alignment(launch_name, values, replay)
    bag = replay_bag(launch_name, values)
    return PlaybackSpec(bag=str(bag.resolve()), topics=tuple(resolve_topic(values["namespace"], t) for t in REPLAYED_TOPICS),
                        rate=parse_float(values["replay_rate"], "replay_rate", 0.0, strict=True),
                        delay_s=parse_float(values["replay_delay"], "replay_delay", 0.0, strict=False),
                        start_offset_s=replay.start_offset_s,
                        ready_topic=resolve_topic(values["namespace"], "policy/status"),
                        ready_timeout_s=parse_float(values["replay_ready_timeout"], "replay_ready_timeout", 0.0,
                                                    strict=False),
                        report_dir=(str(Path(values["replay_report_dir"]).expanduser().resolve())
                                    if values["replay_report_dir"].strip() else ""),
                        policy=_node_parameter("policy_node", "policy", launch_name, values, share_dir()) or "policy")


# -- the Foxglove live view (foxglove:=true) ---------------------------------------------------------

LIVE_VIEW_NAME = "foxglove_live_view"
# What the live view forwards (under the same absolute names as ROS, so one Foxglove layout serves it,
# foxglove_bridge and bags), plus TF_TOPICS: forwarded where tf2_msgs imports, else made from TF_SOURCES.
LIVE_VIEW_TOPICS: tuple[str, ...] = (
    "camera/image_raw/compressed", "camera/camera_info", "policy/path", "policy/markers", "policy/future/compressed",
    "odom", "odom/transform", "camera/transform", "cmd_vel", "instruction", "estop",
    "policy/status", "controller/status", "go2/status", "camera/status",
)


@dataclass(frozen=True)
class LiveViewSpec:
    """The Foxglove live view of foxglove:=true (tools/live_view.py, in launch files and the runner alike)."""

    topics: tuple[str, ...]  # absolute names
    host: str
    port: int
    use_sim_time: bool
    node: str = LIVE_VIEW_NAME
    module: str = f"{PACKAGE}.tools.live_view"

    def runner_arguments(self) -> list[str]:
        arguments = ["--host", self.host, "--port", str(self.port), *self.topics,
                     "--ros-args", "-r", f"__node:={self.node}"]
        return arguments + (["-p", "use_sim_time:=true"] if self.use_sim_time else [])


def plan_live_view(launch_name: str, arguments: Optional[dict[str, str]] = None) -> Optional[LiveViewSpec]:
    """The live view for foxglove:=true (None otherwise); port and address checked here, before anything starts."""
    values = resolve_arguments(launch_name, arguments)
    if not _parse_bool(values["foxglove"], "foxglove"):
        return None
    port_text = values["foxglove_port"].strip()
    if not port_text.isdigit() or not 0 <= int(port_text) <= 65535:
        raise ValueError(f"launch argument foxglove_port:={values['foxglove_port']!r} is not a TCP port (0-65535)")
    host = values["foxglove_address"].strip()
    if not host or not re.fullmatch(r"[A-Za-z0-9_.:-]+", host):
        raise ValueError(f"launch argument foxglove_address:={values['foxglove_address']!r} is not an address "
                         f"(127.0.0.1 = this machine only)")
    topics = LIVE_VIEW_TOPICS + tuple(TF_TOPICS)
    return LiveViewSpec(topics=tuple(resolve_topic(values["namespace"], t) for t in topics), host=host,
                        port=int(port_text), use_sim_time=_parse_bool(values["use_sim_time"], "use_sim_time"))


def plan_graph(launch_name: str, arguments: Optional[dict[str, str]] = None, share: Optional[Path] = None,
               now: Optional[datetime.datetime] = None, replay: Optional[ReplayAlignment] = None) -> list:
    """Everything a launch starts, in start order: recorder (first, so it misses nothing), nodes, the live
    view (foxglove:=true), player.

    A replay needs ``replay``: launch_plan.plan_graph reads it from the bag.
    """
    recording = plan_recording(launch_name, arguments, share, now)
    live_view = plan_live_view(launch_name, arguments)
    playback = plan_playback(launch_name, arguments, replay)
    return (([recording] if recording else []) + list(plan_processes(launch_name, arguments, share, replay))
            + ([live_view] if live_view else []) + ([playback] if playback else []))


# ROS_DOMAIN_ID values that work on Linux with the default DDS port mapping (7400 + 250 * id + ...):
# above 101 the ports of a domain's participants run into the kernel's ephemeral range (32768+), and
# 233 and above leave the 16-bit port space; 215-232 fit again when few participants share a domain.
VALID_DOMAIN_IDS = (range(0, 102), range(215, 233))
# Where the tools that start a private graph pick their domain (pid-dependent, so two runs rarely share
# one): the tests use 1-100 (test/conftest.py), the demo and the latency bench stay out of those.
DEMO_DOMAIN_IDS = range(215, 224)
BENCH_DOMAIN_IDS = range(224, 233)


def domain_id_is_valid(domain_id: int) -> bool:
    return any(int(domain_id) in ids for ids in VALID_DOMAIN_IDS)


def pick_domain_id(ids: range, salt: int) -> int:
    """One of ``ids`` chosen by ``salt`` (a pid)."""
    return ids[salt % len(ids)]


def loopback_environment(domain_id: int, base: Optional[dict[str, str]] = None) -> dict[str, str]:
    """Environment that keeps ROS traffic on this machine (tests, CI, demo); refuses invalid domain ids."""
    if not domain_id_is_valid(domain_id):
        raise ValueError(f"ROS_DOMAIN_ID {domain_id} is outside the valid ranges 0-101 and 215-232")
    env = dict(os.environ if base is None else base)
    env.update(ROS_DOMAIN_ID=str(domain_id), ROS_AUTOMATIC_DISCOVERY_RANGE="LOCALHOST", ROS_LOCALHOST_ONLY="1")
    return env
