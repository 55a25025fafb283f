"""Build ROS 2 launch descriptions from the stack description (used by launch/*.launch.py).

`launch` / `launch_ros` are imported inside the functions: they exist on ROS installs only, and
the rest of the package must import without them.

Fail-safe rules, from how upstream ros2/launch behaves (launch/launch/launch_service.py,
launch/launch/actions/execute_local.py, ros2launch/ros2launch/api/api.py):

* A process that exits does not stop a launch unless its action says so: every process we start
  carries an ``on_exit`` callable (ExecuteLocal registers it as an OnProcessExit handler, called
  with the ProcessExited event and the context).
* `ros2 launch` exits with what LaunchService.run() returns: 1 when an exception escaped an action
  or event handler ("Caught exception in launch", which also shuts the launch down), else 0. A
  Shutdown action or event, Ctrl-C included (ros2/launch issue 780), ends it with 0. There is no
  public way for a launch file to pick the exit code, so a process that fails makes our on_exit
  raise: the one documented path to a non-zero `ros2 launch` exit.
* Unknown `name:=value` arguments are not refused by `ros2 launch`: IncludeLaunchDescription turns
  each one into a launch configuration (SetLaunchConfiguration) and only checks that arguments
  without a default were given. The user's items are in ``context.argv`` (LaunchService(argv=the
  launch file arguments)); we check them ourselves.
"""
from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path
from typing import Callable, Optional, Sequence

from sparsevideonav_ros import launch_plan, stack

# Launch configurations upstream `launch` reads itself (ExecuteLocal: sigterm_timeout, sigkill_timeout,
# emulate_tty): valid on any `ros2 launch` command line, so never "unknown".
LAUNCH_OWN_ARGUMENTS = ("sigterm_timeout", "sigkill_timeout", "emulate_tty")

# ament packages `ros2 bag` needs: the verb, and a storage plugin per format (sqlite3 moved from the
# default plugins package to its own in Iron; either one provides it).
ROS2_BAG_VERB_PACKAGE = "ros2bag"
STORAGE_PLUGIN_PACKAGES = {"mcap": ("rosbag2_storage_mcap",),
                           "sqlite3": ("rosbag2_storage_sqlite3", "rosbag2_storage_default_plugins")}
ROS2_BAG_INSTALL = "sudo apt install ros-{distro}-rosbag2 ros-{distro}-rosbag2-storage-mcap"


class ProcessExitedError(RuntimeError):
    """A process of the launch exited with a non-zero code; raised so that `ros2 launch` exits non-zero."""


class Ros2BagMissingError(RuntimeError):
    """record:=true / a replay needs `ros2 bag` (rosbag2 with the bag's storage plugin), which is not installed."""


# -- the command line ---------------------------------------------------------------------------

def launched_directly(launch_name: str, argv: Optional[Sequence[str]] = None) -> bool:
    """True when ``launch_name`` is the launch file `ros2 launch` was started with (argv: sys.argv).

    `ros2 launch sparsevideonav_ros bringup.launch.py ...` names the package before the file;
    `ros2 launch path/to/bringup.launch.py ...` names an existing file. When another launch file
    includes ours, context.argv holds that file's arguments, which we must not judge; its name is
    on the command line instead of ours. (A parent launch file given by path that happens to share
    our file name would be mistaken for ours.)
    """
    argv = list(sys.argv if argv is None else argv)
    file_name = f"{launch_name}.launch.py"
    for index, item in enumerate(argv):
        if os.path.basename(item) != file_name:
            continue
        if (index > 0 and argv[index - 1] == stack.PACKAGE) or Path(item).is_file():
            return True
    return False


def check_command_line(launch_name: str, argv: Sequence[str]) -> None:
    """ValueError (with the known names) for a `name:=value` item that is not an argument of ``launch_name``."""
    given = {}
    for item in argv:
        # ros2launch passes the items as typed ('name:=value'); a caller of LaunchService may pass pairs
        if isinstance(item, tuple) and len(item) == 2:
            name, value = item
        else:
            name, separator, value = str(item).partition(":=")
            if not separator:
                continue
        if name not in LAUNCH_OWN_ARGUMENTS:
            given[str(name)] = str(value)
    stack.resolve_arguments(launch_name, given)


# -- process exits -----------------------------------------------------------------------------

def exit_handler(process: str, reason_when_done: str = "") -> Callable:
    """The ``on_exit`` of every process a launch file starts: its exit brings the whole launch down.

    Non-zero code (exit 2: the node refused its configuration, after one FATAL line): raise, so
    the launch shuts down and `ros2 launch` exits 1. Exit 0 while the launch runs (the process was
    stopped on its own, or the bag has been played): Shutdown, as the graph is incomplete
    without it. Exit 0 while the launch shuts down: the normal end, nothing to do.
    """
    from launch.actions import Shutdown

    def on_exit(event, context):
        code = event.returncode
        if code != 0:
            why = " (it refused its configuration: see its FATAL line)" if code == 2 else ""
            raise ProcessExitedError(f"{process} exited with code {code}{why}; shutting the launch down")
        if context.is_shutdown:
            return None
        return [Shutdown(reason=reason_when_done or f"{process} exited; the graph is incomplete without it")]

    return on_exit


# -- ros2 bag ----------------------------------------------------------------------------------

def ament_package_installed(package: str) -> bool:
    """Whether ``package`` is in the ament resource index of AMENT_PREFIX_PATH (what ament_index_python reads)."""
    for prefix in os.environ.get("AMENT_PREFIX_PATH", "").split(os.pathsep):
        if prefix and (Path(prefix) / "share" / "ament_index" / "resource_index" / "packages" / package).is_file():
            return True
    return False


def missing_for_ros2_bag(storage: str) -> list[str]:
    """What `ros2 bag` with ``storage`` ('mcap' | 'sqlite3') lacks here; empty when it can run."""
    missing = []
    if shutil.which("ros2") is None:
        missing.append("the ros2 command (ros2cli)")
    if not ament_package_installed(ROS2_BAG_VERB_PACKAGE):
        missing.append(f"{ROS2_BAG_VERB_PACKAGE} (the `ros2 bag` verb)")
    plugins = STORAGE_PLUGIN_PACKAGES[storage]
    if not any(ament_package_installed(p) for p in plugins):
        missing.append(f"{' or '.join(plugins)} (the {storage} storage plugin)")
    return missing


def require_ros2_bag(storage: str, purpose: str) -> None:
    """Ros2BagMissingError with the install command unless `ros2 bag` can run with ``storage``."""
    missing = missing_for_ros2_bag(storage)
    if not missing:
        return
    install = ROS2_BAG_INSTALL.format(distro=os.environ.get("ROS_DISTRO") or "$ROS_DISTRO")
    raise Ros2BagMissingError(
        f"{purpose} needs `ros2 bag` with the {storage} storage plugin, and this ROS install lacks "
        f"{', '.join(missing)}; nothing was started. Install it: {install} (or use the pip-only runner "
        f"`python -m sparsevideonav_ros.tools.launch`, which records and plays with rosbags)")


def bag_storage(bag: str) -> str:
    """Storage format of a bag (an .mcap / .db3 file or a rosbag2 folder); mcap when it cannot tell."""
    path = Path(bag)
    if path.is_file():
        return "sqlite3" if path.suffix == ".db3" else "mcap"
    if path.is_dir() and not any(path.glob("*.mcap")) and any(path.glob("*.db3")):
        return "sqlite3"
    return "mcap"


# -- actions -----------------------------------------------------------------------------------

def node_actions(launch_name: str, values: dict[str, str]) -> list:
    """launch_ros Node actions for resolved launch-argument values (same plan as the runner)."""
    from launch_ros.actions import Node
    from launch_ros.parameter_descriptions import ParameterValue

    actions = []
    for process in launch_plan.plan_processes(launch_name, values):
        # launch_ros parses plain strings as YAML; typed values keep 'yes' or '42' strings.
        overrides = {key: ParameterValue(value, value_type=str) if isinstance(value, str) else value
                     for key, value in process.parameters.items()}
        parameters = list(process.params_files) + ([overrides] if overrides else [])
        actions.append(Node(package=stack.PACKAGE, executable=process.executable, name=process.node,
                            namespace=process.namespace or "", parameters=parameters,
                            arguments=["--ros-args", "--log-level", process.log_level],
                            output="screen", emulate_tty=True, on_exit=exit_handler(process.node)))
    return actions


def recorder_actions(launch_name: str, values: dict[str, str]) -> list:
    """`ros2 bag record` for record:=true, from the same stack.plan_recording as the runner's rosbags recorder.

    Refuses (before any node action exists) when `ros2 bag` cannot record here: never a robot that
    drives on unrecorded.
    """
    from launch.actions import ExecuteProcess

    recording = stack.plan_recording(launch_name, values)
    if recording is None:
        return []
    require_ros2_bag(recording.storage, "record:=true")
    return [ExecuteProcess(cmd=recording.ros2_command(os.environ.get("ROS_DISTRO", "")), name=recording.node,
                           output="screen", on_exit=exit_handler(recording.node))]


def gated_player_command(playback: stack.PlaybackSpec, ros_distro: str = "") -> list[str]:
    """`ros2 bag play` behind tools/play.py --then-run: the player waits for the policy to report ready
    (holding /clock, as the runner's rosbags player does), then runs `ros2 bag play`, and writes the
    replay summary when it ends."""
    gate = [sys.executable, "-m", playback.module, playback.bag, "--clock", f"{playback.clock_hz:g}",
            "--rate", f"{playback.rate:g}", "--delay", f"{playback.delay_s:g}",
            "--start-offset", f"{playback.start_offset_s:.6f}"]
    if playback.ready_topic:
        gate += ["--wait-for-ready", playback.ready_topic, "--ready-timeout", f"{playback.ready_timeout_s:g}"]
    if playback.report_dir:
        gate += ["--report-dir", playback.report_dir, "--policy", playback.policy]
    if not playback.ready_topic:
        return playback.ros2_command(ros_distro)
    return gate + ["--then-run", *playback.ros2_command(ros_distro)]


def player_actions(launch_name: str, values: dict[str, str]) -> list:
    """`ros2 bag play --clock` of a replay, from the same launch_plan.plan_playback as the runner's rosbags player,
    started once the policy reports ready (gated_player_command).

    The replay ends when the bag has been played (as in the runner).
    """
    from launch.actions import ExecuteProcess

    playback = launch_plan.plan_playback(launch_name, values)
    if playback is None:
        return []
    require_ros2_bag(bag_storage(playback.bag), "a replay")
    return [ExecuteProcess(cmd=gated_player_command(playback, os.environ.get("ROS_DISTRO", "")), name=playback.node,
                           output="screen",
                           on_exit=exit_handler(playback.node, "replay finished: the bag has been played"))]


def live_view_actions(launch_name: str, values: dict[str, str]) -> list:
    """The Foxglove live view of foxglove:=true (tools/live_view.py, the same process the runner starts): this
    Python's foxglove-sdk, on every install (foxglove_bridge, where installed, serves the same topics)."""
    from launch.actions import ExecuteProcess

    live_view = stack.plan_live_view(launch_name, values)
    if live_view is None:
        return []
    return [ExecuteProcess(cmd=[sys.executable, "-m", live_view.module, *live_view.runner_arguments()],
                           name=live_view.node, output="screen", on_exit=exit_handler(live_view.node))]


def launch_description(launch_name: str):
    from launch import LaunchDescription
    from launch.actions import DeclareLaunchArgument, OpaqueFunction
    from launch.substitutions import LaunchConfiguration

    arguments = stack.launch_arguments_for(launch_name)

    def resolve(context, *args, **kwargs):
        # An exception here ends `ros2 launch` with exit 1 before any process starts.
        if launched_directly(launch_name):
            check_command_line(launch_name, context.argv)
        values = {a.name: LaunchConfiguration(a.name).perform(context) for a in arguments}
        # The recorder's and player's checks (`ros2 bag` installed) run before any node action exists.
        # Start order: recorder first (it should miss nothing), player last (the nodes subscribe
        # before frames come).
        recorder = recorder_actions(launch_name, values)
        player = player_actions(launch_name, values)
        return recorder + node_actions(launch_name, values) + live_view_actions(launch_name, values) + player

    declared = [DeclareLaunchArgument(a.name, default_value=a.default, description=a.description)
                for a in arguments]
    return LaunchDescription(declared + [OpaqueFunction(function=resolve)])
