"""An in-process observer of the graph: records what crosses the topics (demo, tests, benchmark)."""
from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from typing import Optional

import numpy as np
from diagnostic_msgs.msg import DiagnosticArray
from geometry_msgs.msg import Twist
from nav_msgs.msg import Odometry, Path
from sensor_msgs.msg import CompressedImage
from std_msgs.msg import Bool, String

from sparsevideonav_ros.nodes import common, convert


@dataclass
class Record:
    frames: list = field(default_factory=list)  # (receive wall s, stamp s, bytes)
    plans: list = field(default_factory=list)  # (receive wall s, stamp s, frame_id, (N,3) waypoints)
    cmds: list = field(default_factory=list)  # (receive wall s, vx, vy, wz)
    odom: list = field(default_factory=list)  # (receive wall s, stamp s, (3,) pose, (3,) velocity)
    status: dict = field(default_factory=dict)  # topic -> newest key/values


class GraphMonitor(common.StackNode):
    """Subscribes the graph's topics with the stack's QoS; publishes instruction / estop on demand.

    namespace: the graph's namespace ('/robot1'; '' = the node's own), prefixed to every topic; the record
    keys status by the stack's names ('policy/status') either way. frames: also record camera frames
    (the bag player counts the ones it publishes instead). publishers: create the instruction / estop
    publishers (a bag player already publishes the recorded instruction).
    """

    def __init__(self, name: str = "graph_monitor", namespace: str = "", frames: bool = True,
                 publishers: bool = True) -> None:
        super().__init__(name)
        self.record = Record()
        self.lock = threading.Lock()
        prefix = "/" + namespace.strip("/") + "/" if namespace.strip("/") else ("/" if namespace else "")

        def sub(msg_type, topic, callback):
            self.create_subscription(msg_type, prefix + topic, callback, common.topic_qos(topic))

        if frames:
            sub(CompressedImage, "camera/image_raw/compressed", self.on_frame)
        sub(Path, "policy/path", self.on_path)
        sub(Twist, "cmd_vel", self.on_cmd)
        sub(Odometry, "odom", self.on_odom)
        for topic in ("policy/status", "controller/status", "go2/status"):
            sub(DiagnosticArray, topic, lambda msg, topic=topic: self.on_status(topic, msg))
        if publishers:
            self.instruction_pub = self.create_publisher(String, prefix + "instruction", common.topic_qos("instruction"))
            self.estop_pub = self.create_publisher(Bool, prefix + "estop", common.topic_qos("estop"))

    def on_frame(self, msg: CompressedImage) -> None:
        with self.lock:
            self.record.frames.append((time.time(), common.stamp_to_seconds(msg.header.stamp), len(msg.data)))

    def on_path(self, msg: Path) -> None:
        with self.lock:
            self.record.plans.append((time.time(), common.stamp_to_seconds(msg.header.stamp), msg.header.frame_id,
                                      convert.waypoints_from_path_msg(msg)))

    def on_cmd(self, msg: Twist) -> None:
        with self.lock:
            self.record.cmds.append((time.time(), *convert.twist_values(msg)))

    def on_odom(self, msg: Odometry) -> None:
        twist = msg.twist.twist
        with self.lock:
            self.record.odom.append((time.time(), common.stamp_to_seconds(msg.header.stamp),
                                     convert.pose_from_odometry_msg(msg),
                                     np.array([twist.linear.x, twist.linear.y, twist.angular.z])))

    def on_status(self, topic: str, msg: DiagnosticArray) -> None:
        with self.lock:
            # '_level' / '_message': the DiagnosticStatus level (0 OK, 1 WARN, 2 ERROR) and message
            level = msg.status[0].level if msg.status else b"\x00"
            self.record.status[topic] = {**common.diagnostic_values(msg),
                                         "_level": level[0] if isinstance(level, bytes) else int(level),
                                         "_message": msg.status[0].message if msg.status else ""}

    def send_instruction(self, text: str) -> None:
        self.instruction_pub.publish(String(data=text))

    def send_estop(self, engaged: bool = True) -> None:
        self.estop_pub.publish(Bool(data=engaged))

    # -- helpers for tests and the demo ------------------------------------------------------
    def latest_pose(self) -> Optional[np.ndarray]:
        with self.lock:
            return self.record.odom[-1][2].copy() if self.record.odom else None

    def latest_speed(self) -> float:
        with self.lock:
            return float(np.linalg.norm(self.record.odom[-1][3])) if self.record.odom else 0.0


def spin_for(node, seconds: float, until=None) -> bool:
    """Spin ``node`` for up to ``seconds``; stop early (returning True) once ``until()`` holds."""
    import rclpy
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        rclpy.spin_once(node, timeout_sec=0.02)
        if until is not None and until():
            return True
    return until is None
