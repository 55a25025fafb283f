"""controller_node: Path -> cmd_vel at a fixed rate.

A path is stamped with its camera frame and expressed in the robot body at that instant; it is
anchored to the odometry pose at that stamp, so the robot's motion during inference and transport
is compensated. Stops on: empty path, stale path, stale odometry, reached end, bad numbers.

With wait_for_recorder (record:=true), no motion until the bag recorder subscribes to every recorded topic
that has a publisher: a bag then holds the run from before the first motion, under the pip-only runner's
recorder and under `ros2 bag record` alike (rosbag2 subscribes to a topic only once it sees a publisher,
so "every topic with a publisher" is what it can be waited for). Checked on the ROS graph, not by timing.
"""
from __future__ import annotations

import math
import time

import numpy as np
from diagnostic_msgs.msg import DiagnosticArray
from geometry_msgs.msg import Twist
from nav_msgs.msg import Odometry, Path

from sparsevideonav_ros import stack
from sparsevideonav_ros.configs import ControllerNodeConfig
from sparsevideonav_ros.core import se2
from sparsevideonav_ros.core.pose_history import PoseHistory
from sparsevideonav_ros.core.status import ErrorLog
from sparsevideonav_ros.core.tracking import PathTracker, TrackerGains, TrackerLimits
from sparsevideonav_ros.nodes import common, convert

NAME = "controller_node"


def tracker_from_config(config: ControllerNodeConfig) -> PathTracker:
    limits = TrackerLimits(max_vx=config.max_vx, min_vx=config.min_vx, max_vy=config.max_vy, max_wz=config.max_wz,
                           max_ax=config.max_ax, max_ay=config.max_ay, max_awz=config.max_awz)
    gains = TrackerGains(k_linear=config.k_linear, k_lateral=config.k_lateral, k_angular=config.k_angular,
                         lookahead_m=config.lookahead_m, waypoint_tolerance_m=config.waypoint_tolerance_m,
                         yaw_tolerance_rad=config.yaw_tolerance_rad, allow_lateral=config.allow_lateral)
    return PathTracker(limits, gains, plan_timeout_s=config.plan_timeout_s)


class ControllerNode(common.StackNode):
    def __init__(self) -> None:
        super().__init__(NAME)
        self.config: ControllerNodeConfig = common.declare_config(self, ControllerNodeConfig)
        self.tracker = tracker_from_config(self.config)
        self.odometry = PoseHistory(horizon_s=self.config.odom_history_s)
        self.state = "no_plan"
        # latest error, its age, ERROR only while recent (core/status.py), on the monotonic clock
        self.errors = ErrorLog()
        self.plans = 0
        self.plan_stamp = math.nan
        self.cmd_pub = self.create_publisher(Twist, "cmd_vel", common.topic_qos("cmd_vel"))
        self.status_pub = self.create_publisher(DiagnosticArray, "controller/status",
                                                common.topic_qos("controller/status"))
        self.create_subscription(Path, "policy/path", self.on_path, common.topic_qos("policy/path"))
        # a user-facing input: one subscription per QoS profile, so every odometry publisher matches
        common.subscribe(self, Odometry, "odom", self.on_odom)
        self.period_s = 1.0 / self.config.rate_hz
        self.last_control_s: float | None = None
        # None = not waiting; else the recorded topics (absolute) the recorder does not subscribe to yet.
        self.unrecorded: list[str] | None = None
        if self.config.wait_for_recorder:
            namespace = self.get_namespace()
            self.recorded_topics = [stack.resolve_topic(namespace, t) for t in stack.RECORDED_TOPICS]
            self.must_receive = [stack.resolve_topic(namespace, t) for t in stack.RECORDER_MUST_RECEIVE]
            self.unrecorded = list(self.recorded_topics)
            self.recorder_received: set[str] = set()
            self.create_subscription(DiagnosticArray, "recorder/status", self.on_recorder_status,
                                     common.topic_qos("recorder/status"))
            self.recorder_timer = self.create_timer(0.2, self.check_recorder)
        self.create_timer(self.period_s, self.control)
        self.create_timer(0.5, self.publish_status)

    def on_recorder_status(self, msg: DiagnosticArray) -> None:
        self.recorder_received = set(common.diagnostic_values(msg).get("received_topics", "").split())

    def check_recorder(self) -> None:
        """Until the recorder subscribes to every recorded topic that has a publisher (ROS graph), and, for
        our recorder (it reports what it received), has received odom and cmd_vel."""
        recorders = set()
        missing = []
        for topic in self.recorded_topics:
            names = {info.node_name for info in self.get_subscriptions_info_by_topic(topic)}
            names &= set(stack.RECORDER_NODE_NAMES)
            recorders |= names
            if not names and self.get_publishers_info_by_topic(topic):
                missing.append(topic)
        if not recorders:
            missing = missing or list(self.recorded_topics)
        elif stack.RECORDER_NAME in recorders:
            missing += [t for t in self.must_receive if t not in self.recorder_received and t not in missing]
        self.unrecorded = missing
        if not missing:
            self.unrecorded = None
            self.recorder_timer.cancel()
            self.get_logger().info("bag recorder subscribed to every recorded topic with a publisher: motion allowed")
    def on_odom(self, msg: Odometry) -> None:
        try:
            self.odometry.add(common.stamp_to_seconds(msg.header.stamp), convert.pose_from_odometry_msg(msg))
        except ValueError as error:  # non-finite odometry: keep the last good poses, say why
            self.fail(f"odometry rejected: {error}")

    def on_path(self, msg: Path) -> None:
        stamp = common.stamp_to_seconds(msg.header.stamp)
        self.plans += 1
        self.plan_stamp = stamp
        waypoints = convert.waypoints_from_path_msg(msg)
        if len(waypoints) == 0:
            self.tracker.set_plan(waypoints, stamp)
            self.control()
            return
        if msg.header.frame_id == self.config.odom_frame:
            anchored = waypoints
        else:
            try:
                anchored = se2.compose(self.odometry.pose_at(stamp), waypoints)
            except LookupError as error:
                self.fail(f"cannot anchor path stamped {stamp:.3f} in {msg.header.frame_id!r}: {error}")
                self.tracker.set_plan(np.zeros((0, 3)), stamp)
                return
        self.tracker.set_plan(anchored, stamp)
        # Act on a new plan now instead of up to one control period later (delay budget).
        self.control()

    def fail(self, message: str) -> None:
        self.errors.report(message, time.monotonic())
        self.get_logger().error(message, throttle_duration_sec=1.0)

    def control(self) -> None:
        now = common.now_seconds(self)
        # Acceleration limits use the real time since the last command (timer ticks and plan arrivals).
        dt = self.period_s if self.last_control_s is None else min(max(now - self.last_control_s, 0.0), self.period_s)
        self.last_control_s = now
        if self.unrecorded is not None:  # record:=true and the bag would miss the motion: stand
            self.state = "waiting_recorder"
            self.cmd_pub.publish(convert.twist_msg(0.0, 0.0, 0.0))
            return
        latest = self.odometry.latest()
        if latest is None or now - latest[0] > self.config.odom_timeout_s:
            self.state = "no_odom"
            self.cmd_pub.publish(convert.twist_msg(0.0, 0.0, 0.0))
            return
        try:
            output = self.tracker.compute(latest[1], now, dt)
        except ValueError as error:  # non-finite pose or plan: stop, say why
            self.fail(f"tracking failed, stopping: {error}")
            self.tracker.set_plan(np.zeros((0, 3)), now)
            self.state = "error"
            self.cmd_pub.publish(convert.twist_msg(0.0, 0.0, 0.0))
            return
        self.state = output.state
        self.cmd_pub.publish(convert.twist_msg(output.vx, output.vy, output.wz))

    def publish_status(self) -> None:
        now = common.now_seconds(self)
        monotonic_now = time.monotonic()
        level = max(common.OK if self.state in ("tracking", "arrived") else common.WARN,
                    self.errors.level(monotonic_now))
        values = {"state": self.state, "plans": self.plans, "plan_age_s": f"{now - self.plan_stamp:.3f}",
                  "odometry_samples": len(self.odometry), **self.errors.values(monotonic_now),
                  "unrecorded_topics": " ".join(self.unrecorded or ())}
        self.status_pub.publish(common.diagnostics(self, NAME, level, self.state, values))

    def on_shutdown(self) -> None:
        # A last zero so the bridge stops now rather than after its cmd timeout.
        self.cmd_pub.publish(convert.twist_msg(0.0, 0.0, 0.0))


def main(args=None) -> int:
    return common.run_node(ControllerNode, args)


if __name__ == "__main__":
    raise SystemExit(main())
