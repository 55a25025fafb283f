"""Build ROS 2 launch descriptions from the stack description (used by launch/*.launch.py).

`launch` / `launch_ros` are imported inside the functions: they exist on ROS installs only, and
the rest of the package must import without them.
"""
from __future__ import annotations

from sparsevideonav_ros import stack


def node_actions(launch_name: str, values: dict[str, str]) -> list:
    """launch_ros Node actions for resolved launch-argument values (same plan as the runner)."""
    from launch_ros.actions import Node
    from launch_ros.parameter_descriptions import ParameterValue

    actions = []
    for process in stack.plan_processes(launch_name, values):
        # launch_ros parses plain strings as YAML; typed values keep 'yes' or '42' strings.
        overrides = {key: ParameterValue(value, value_type=str) if isinstance(value, str) else value
                     for key, value in process.parameters.items()}
        parameters = list(process.params_files) + ([overrides] if overrides else [])
        actions.append(Node(package=stack.PACKAGE, executable=process.executable, name=process.node,
                            namespace=process.namespace or "", parameters=parameters,
                            arguments=["--ros-args", "--log-level", process.log_level],
                            output="screen", emulate_tty=True))
    return actions


def recorder_actions(launch_name: str, values: dict[str, str]) -> list:
    """`ros2 bag record` for record:=true, from the same stack.plan_recording as the runner's rosbags recorder."""
    import os

    from launch.actions import ExecuteProcess

    recording = stack.plan_recording(launch_name, values)
    if recording is None:
        return []
    return [ExecuteProcess(cmd=recording.ros2_command(os.environ.get("ROS_DISTRO", "")), name=recording.node,
                           output="screen")]


def player_actions(launch_name: str, values: dict[str, str]) -> list:
    """`ros2 bag play --clock` of a replay, from the same stack.plan_playback as the runner's rosbags player."""
    import os

    from launch.actions import ExecuteProcess

    playback = stack.plan_playback(launch_name, values)
    if playback is None:
        return []
    return [ExecuteProcess(cmd=playback.ros2_command(os.environ.get("ROS_DISTRO", "")), name=playback.node,
                           output="screen")]


def launch_description(launch_name: str):
    from launch import LaunchDescription
    from launch.actions import DeclareLaunchArgument, OpaqueFunction
    from launch.substitutions import LaunchConfiguration

    arguments = stack.launch_arguments_for(launch_name)

    def resolve(context, *args, **kwargs):
        values = {a.name: LaunchConfiguration(a.name).perform(context) for a in arguments}
        # recorder first (it should miss nothing), player last (the nodes subscribe before frames come)
        return (recorder_actions(launch_name, values) + node_actions(launch_name, values)
                + player_actions(launch_name, values))

    declared = [DeclareLaunchArgument(a.name, default_value=a.default, description=a.description)
                for a in arguments]
    return LaunchDescription(declared + [OpaqueFunction(function=resolve)])
