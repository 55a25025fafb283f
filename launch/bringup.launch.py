"""Whole graph on one machine: camera, policy, controller, Go2 bridge.

Arguments (list them with `ros2 launch sparsevideonav_ros bringup.launch.py --show-args`) and the
nodes they start come from sparsevideonav_ros/stack.py, shared with the pip-only runner
`python -m sparsevideonav_ros.tools.launch bringup`.
"""
from sparsevideonav_ros.launch_support import launch_description


def generate_launch_description():
    return launch_description("bringup")
