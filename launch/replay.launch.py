"""Replay a recorded bag into policy + controller + sim robot, on the bag's clock (use_sim_time).

    ros2 launch sparsevideonav_ros replay.launch.py bag:=bags/<run> [policy:=<name>]

`ros2 bag play --clock` plays camera frames, camera_info and the instruction at their recorded times
(stack.REPLAYED_TOPICS), started by tools/play.py --then-run once the policy reports ready (policy/status
past 'loading', replay_ready_timeout) and replay_delay later; the sim robot drives and makes its own
odometry. The replay summary goes to replay_report_dir/<date>-replay-<policy>/. Arguments (`--show-args`)
and the processes come from sparsevideonav_ros/stack.py, shared with the pip-only runner
`python -m sparsevideonav_ros.tools.launch replay bag:=...` (rosbags-based player).
"""
from sparsevideonav_ros.launch_support import launch_description


def generate_launch_description():
    return launch_description("replay")
