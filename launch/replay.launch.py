"""Replay a recorded bag into policy + controller + sim robot, on the bag's clock (use_sim_time).

    ros2 launch sparsevideonav_ros replay.launch.py bag:=bags/<run> [policy:=<name>]

`ros2 bag play --clock` plays camera frames, camera_info and the instruction at their recorded times
(stack.REPLAYED_TOPICS); the sim robot drives and makes its own odometry. Arguments (`--show-args`)
and the processes come from sparsevideonav_ros/stack.py, shared with the pip-only runner
`python -m sparsevideonav_ros.tools.launch replay bag:=...` (rosbags-based player).
"""
from sparsevideonav_ros.launch_support import launch_description


def generate_launch_description():
    return launch_description("replay")
