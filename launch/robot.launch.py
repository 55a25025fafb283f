"""Robot side (Go2 + laptop/Jetson): camera, controller, Go2 bridge.

Arguments (list them with `ros2 launch sparsevideonav_ros robot.launch.py --show-args`) and the
nodes they start come from sparsevideonav_ros/stack.py, shared with the pip-only runner
`python -m sparsevideonav_ros.tools.launch robot`.
"""
from sparsevideonav_ros.launch_support import launch_description


def generate_launch_description():
    return launch_description("robot")
