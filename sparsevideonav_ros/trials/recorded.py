"""Read what the metrics need from a rosbag2 bag (bags.py: rosbags, no rclpy, no frames decoded).

Topics are found as tools/evaluate finds them (bags.find_connections: by type, preferring the stack's
names in any namespace): odometry, cmd_vel, policy/path, the three status topics and instruction.
"""
from __future__ import annotations

from pathlib import Path
from typing import Optional

import numpy as np

from sparsevideonav_ros import bags
from sparsevideonav_ros.core import se2
from sparsevideonav_ros.trials.metrics import MotionThresholds, RecordedEpisode, late_start_warnings

DIAGNOSTICS = "diagnostic_msgs/msg/DiagnosticArray"


def _status_values(msg) -> dict[str, str]:
    return {kv.key: kv.value for status in msg.status for kv in status.values}


def read_episode(path: str | Path, odom_topic: Optional[str] = None) -> RecordedEpisode:
    """The odometry, commands, plans, states and instructions of a bag; BagError when it is unusable."""
    reader = bags.open_bag(path)
    try:
        def stack_named(msg_type: str, name: str) -> list:  # optional roles: only under the stack's name
            return bags.find_connections(reader, (msg_type,), name, require_suffix=True)

        roles = {"odom": bags.find_connections(reader, ("nav_msgs/msg/Odometry",), "odom", odom_topic,
                                               option="--odom-topic"),
                 "cmd_vel": stack_named("geometry_msgs/msg/Twist", "cmd_vel"),
                 "path": stack_named("nav_msgs/msg/Path", "policy/path"),
                 "instruction": stack_named("std_msgs/msg/String", "instruction"),
                 "controller_status": stack_named(DIAGNOSTICS, "controller/status"),
                 "bridge_status": stack_named(DIAGNOSTICS, "go2/status"),
                 "policy_status": stack_named(DIAGNOSTICS, "policy/status")}
        episode = RecordedEpisode(path=str(path), bag_start_s=reader.start_time * 1e-9,
                                  bag_end_s=reader.end_time * 1e-9,
                                  topics={role: conns[0].topic for role, conns in roles.items() if conns})
        role_of = {c.id: role for role, conns in roles.items() for c in conns}
        odom_times, odom_stamps, poses, velocities, commands = [], [], [], [], []
        for connection, bag_ns, data in bags.messages(reader, [c for conns in roles.values() for c in conns]):
            role, time_s = role_of[connection.id], bag_ns * 1e-9
            msg = bags.decode(data, connection.msgtype, connection.topic)
            if role == "odom":
                p, q, twist = msg.pose.pose.position, msg.pose.pose.orientation, msg.twist.twist
                pose = [p.x, p.y, se2.yaw_from_quaternion(q.x, q.y, q.z, q.w)]
                if not np.all(np.isfinite(pose)):
                    continue  # the nodes reject non-finite odometry too
                odom_times.append(time_s)
                odom_stamps.append(bags.stamp_seconds(msg.header.stamp))
                poses.append(pose)
                velocities.append([twist.linear.x, twist.linear.y, twist.angular.z])
            elif role == "cmd_vel":
                commands.append([time_s, msg.linear.x, msg.linear.y, msg.angular.z])
            elif role == "path":
                episode.plans.append((time_s, bags.stamp_seconds(msg.header.stamp), len(msg.poses)))
            elif role == "instruction":
                if msg.data.strip():
                    episode.instructions.append((time_s, msg.data))
            else:
                values = _status_values(msg)
                state = values.get("state", "")
                if role == "controller_status" and state:
                    episode.controller_states.append((time_s, state))
                elif role == "bridge_status" and state:
                    episode.bridge_states.append((time_s, state))
                    episode.bridge_backend = episode.bridge_backend or values.get("backend", "")
                elif role == "policy_status":
                    episode.policy_name = episode.policy_name or values.get("policy", "")
        episode.odom_times = np.asarray(odom_times, dtype=float)
        episode.odom_stamps = np.asarray(odom_stamps, dtype=float)
        episode.poses = np.asarray(poses, dtype=float).reshape(-1, 3)
        episode.velocities = np.asarray(velocities, dtype=float).reshape(-1, 3)
        episode.commands = np.asarray(commands, dtype=float).reshape(-1, 4)
        episode.first_frame_s = first_frame_time(reader)
        return episode
    finally:
        reader.close()


def bag_start_warnings(path: str | Path, odom_topic: Optional[str] = None,
                       thresholds: MotionThresholds = MotionThresholds()) -> list[str]:
    """Why a bag seems to start after the robot began moving (metrics.late_start_warnings); for any tool
    that reads a bag (evaluation, replay) and should say so."""
    return late_start_warnings(read_episode(path, odom_topic), thresholds)


def first_frame_time(reader) -> Optional[float]:
    """Receive time (s) of the first camera frame (compressed, else raw), None without frames; not decoded."""
    for msg_type, name in (("sensor_msgs/msg/CompressedImage", "camera/image_raw/compressed"),
                           ("sensor_msgs/msg/Image", "camera/image_raw")):
        connections = [c for c in reader.connections if c.msgtype == msg_type and c.topic.endswith("/" + name)]
        for _, bag_ns, _ in bags.messages(reader, connections):
            return bag_ns * 1e-9
    return None


def is_bag(path: Path) -> bool:
    """A rosbag2 bag folder (metadata.yaml) or a storage file."""
    return (path.is_dir() and (path / "metadata.yaml").is_file()) or (
        path.is_file() and path.suffix in (".mcap", ".db3"))


def find_bags(paths: list[Path]) -> list[Path]:
    """Bags among ``paths``: each path a bag, or a folder searched for bag folders (sorted, no duplicates)."""
    found: list[Path] = []
    for path in paths:
        if not path.exists():
            raise bags.BagError(f"no bag or folder at {path}")
        if is_bag(path):
            found.append(path)
            continue
        if not path.is_dir():
            raise bags.BagError(f"{path} is not a rosbag2 bag (expected a bag folder, an .mcap or a .db3 file)")
        inside = sorted(meta.parent for meta in path.rglob("metadata.yaml"))
        if not inside:
            raise bags.BagError(f"no rosbag2 bag (a folder with metadata.yaml) under {path}")
        found.extend(inside)
    unique: dict[Path, None] = {}
    for bag in found:
        unique.setdefault(bag.resolve(), None)
    return list(unique)
