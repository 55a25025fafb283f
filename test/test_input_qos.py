"""User-facing inputs reach the real nodes from publishers of every QoS a user has (multi-process, DDS on lo).

The publishers users have: RELIABLE + VOLATILE (a default rclpy publisher, `ros2 topic pub` on Jazzy and
Kilted), RELIABLE + TRANSIENT_LOCAL (Humble's `ros2 topic pub`, latched publishers), and the best-effort
ones. Each test starts one graph and goes through the four profiles in it. Also here: status levels that
tell the truth (an error is ERROR while recent, then OK again with its age) and the bag recorder, which
records every input once whatever its publisher. The e-stop's QoS tests are in test_go2.py.
"""
from __future__ import annotations

import math
import os
import time

import numpy as np
import pytest
from diagnostic_msgs.msg import DiagnosticArray
from geometry_msgs.msg import Twist
from nav_msgs.msg import Odometry
from rclpy.node import Node
from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy
from sensor_msgs.msg import Image
from std_msgs.msg import Bool, Header, String

from graph_helpers import logs, start_graph, wait_until
from sparsevideonav_ros import bags, stack
from sparsevideonav_ros.core import images
from sparsevideonav_ros.core.copies import COPY_WINDOW_S
from sparsevideonav_ros.core.status import ERROR, ERROR_HOLD_S, OK
from sparsevideonav_ros.nodes import common
from sparsevideonav_ros.tools.launch import GraphRunner
from sparsevideonav_ros.tools.monitor import spin_for

RELIABLE, BEST_EFFORT = ReliabilityPolicy.RELIABLE, ReliabilityPolicy.BEST_EFFORT
VOLATILE, TRANSIENT_LOCAL = DurabilityPolicy.VOLATILE, DurabilityPolicy.TRANSIENT_LOCAL

# Every publisher QoS a user may have (the depth does not take part in matching).
PUBLISHER_QOS = {
    "reliable_volatile": QoSProfile(depth=10, reliability=RELIABLE, durability=VOLATILE),
    "reliable_transient_local": QoSProfile(depth=1, reliability=RELIABLE, durability=TRANSIENT_LOCAL),
    "best_effort_volatile": QoSProfile(depth=10, reliability=BEST_EFFORT, durability=VOLATILE),
    "best_effort_transient_local": QoSProfile(depth=1, reliability=BEST_EFFORT, durability=TRANSIENT_LOCAL),
}
INPUTS = ("instruction", "estop", "cmd_vel", "odom")
DISCOVERY_S = 30.0  # freshly started processes on a loaded 2-core machine


def reader_matches(reader: QoSProfile, writer: QoSProfile) -> bool:
    """The DDS request-vs-offered rule: a reader never asks for more than the writer offers."""
    if reader.reliability == RELIABLE and writer.reliability == BEST_EFFORT:
        return False
    return not (reader.durability == TRANSIENT_LOCAL and writer.durability == VOLATILE)


def subscriptions_matching(topic: str, writer: QoSProfile) -> int:
    """How many of one node's subscriptions of ``topic`` match ``writer``: the copies it receives."""
    return sum(reader_matches(common.qos(profile), writer) for profile in stack.TOPICS[topic].subscription_profiles)


@pytest.mark.parametrize("topic", INPUTS)
@pytest.mark.parametrize("publisher", sorted(PUBLISHER_QOS))
def test_every_publisher_qos_matches_a_subscription_of_every_input(topic, publisher):
    assert subscriptions_matching(topic, PUBLISHER_QOS[publisher]) >= 1


class StatusWatch:
    """Newest (level, key/values) of status topics, level included (GraphMonitor keeps values only)."""

    def __init__(self, node: Node, topics: tuple[str, ...]) -> None:
        self.latest: dict[str, tuple[int, dict[str, str]]] = {}
        for topic in topics:
            node.create_subscription(DiagnosticArray, topic, lambda msg, topic=topic: self.on_status(topic, msg),
                                     common.topic_qos(topic))

    def on_status(self, topic: str, msg: DiagnosticArray) -> None:
        level = msg.status[0].level
        self.latest[topic] = (level[0] if isinstance(level, bytes) else int(level), common.diagnostic_values(msg))

    def level(self, topic: str):
        return self.latest[topic][0] if topic in self.latest else None

    def values(self, topic: str) -> dict[str, str]:
        return self.latest.get(topic, (None, {}))[1]


@pytest.fixture
def node(ros_context):
    test_node = Node("input_qos_test")
    yield test_node
    test_node.destroy_node()


def matched_publishers(node: Node, types: dict, profile: str) -> dict:
    """{topic: publisher} with a user's QoS, once every subscription of the graph that should match does."""
    publishers = {topic: node.create_publisher(msg_type, topic, PUBLISHER_QOS[profile])
                  for topic, msg_type in types.items()}
    expected = {topic: subscriptions_matching(topic, PUBLISHER_QOS[profile]) for topic in types}

    def counts() -> dict:
        return {topic: publisher.get_subscription_count() for topic, publisher in publishers.items()}
    assert wait_until(lambda: counts() == expected, DISCOVERY_S, node), \
        f"{profile}: matching subscriptions {counts()}, expected {expected}"
    # Matched on our side; the readers' side of discovery can lag a little. A reliable writer repeats a
    # message until each matched reader has it; a best-effort one sent to a reader that does not know it
    # yet is lost (DDS, not the stack): give those readers a longer moment.
    spin_for(node, 1.0 if PUBLISHER_QOS[profile].reliability == BEST_EFFORT else 0.3)
    return publishers


def matched_publisher(node: Node, msg_type, topic: str, profile: str):
    return matched_publishers(node, {topic: msg_type}, profile)[topic]


def odometry_now(node: Node, x: float = 0.0) -> Odometry:
    msg = Odometry()
    msg.header.stamp = node.get_clock().now().to_msg()
    msg.header.frame_id = "odom"
    msg.pose.pose.position.x = x
    msg.pose.pose.orientation.w = 1.0
    return msg


def publish_until(node: Node, publisher, make_msg, predicate, timeout_s: float, period_s: float = 0.05) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        publisher.publish(make_msg())
        if spin_for(node, period_s, until=predicate):
            return True
    return False


def test_an_instruction_reaches_the_policy_from_every_publisher_qos_reliable_ones_sent_once(tmp_path, node):
    runner = start_graph(tmp_path, nodes=("policy_node",), overrides={"policy_node": {"status_rate_hz": 10.0}})
    watch = StatusWatch(node, ("policy/status",))

    def status():
        return watch.values("policy/status")

    try:
        assert wait_until(lambda: "instructions" in status(), DISCOVERY_S, node), logs(tmp_path)
        # reliable + transient local last: it matches all three subscriptions, and is used for the re-send
        profiles = ("best_effort_volatile", "best_effort_transient_local", "reliable_volatile",
                    "reliable_transient_local")
        for profile in profiles:
            publisher = matched_publisher(node, String, "instruction", profile)
            taken = int(status()["instructions"])
            text = f"walk to the wooden door ({profile})"
            if PUBLISHER_QOS[profile].reliability == BEST_EFFORT:
                # best effort may lose a sample sent while the reader's side of discovery still lags (DDS,
                # not the stack): repeat it, as a best-effort publisher would; repeats count once
                assert publish_until(node, publisher, lambda: String(data=text),
                                     lambda: status()["instruction"] == text, 10.0, period_s=0.3), (profile, status())
            else:
                publisher.publish(String(data=text))  # once: reliable delivery must get it there
                assert wait_until(lambda: status()["instruction"] == text, 10.0, node), (profile, status())
            # the copies through the other subscriptions arrive within milliseconds: give them a second
            spin_for(node, 1.0)
            assert int(status()["instructions"]) == taken + 1, (profile, status())
            if profile != profiles[-1]:
                node.destroy_publisher(publisher)
        # the same instruction sent again later is a new instruction (JanusVLN goes on after it stopped)
        spin_for(node, COPY_WINDOW_S)
        taken = int(status()["instructions"])
        publisher.publish(String(data=text))
        assert wait_until(lambda: int(status()["instructions"]) == taken + 1, 10.0, node), status()
        spin_for(node, 1.0)
        assert int(status()["instructions"]) == taken + 1, status()
        assert int(status()["instruction_copies"]) >= 2  # the three-way publisher's copies were seen, and dropped
        assert not runner.exited(), runner.exited()
    finally:
        runner.stop()


def test_odometry_reaches_the_controller_from_every_publisher_qos_and_bad_odometry_is_an_error_while_recent(
        tmp_path, node):
    runner = start_graph(tmp_path, nodes=("controller_node",))
    watch = StatusWatch(node, ("controller/status",))

    def state():
        return watch.values("controller/status").get("state")

    try:
        assert wait_until(lambda: state() == "no_odom", DISCOVERY_S, node), logs(tmp_path)
        for profile in sorted(PUBLISHER_QOS):
            publisher = matched_publisher(node, Odometry, "odom", profile)
            assert publish_until(node, publisher, lambda: odometry_now(node), lambda: state() != "no_odom", 15.0), \
                (profile, watch.values("controller/status"))
            node.destroy_publisher(publisher)
            # no odometry for odom_timeout_s: back to no_odom, so the next profile has to get through on its own
            assert wait_until(lambda: state() == "no_odom", 10.0, node), (profile, watch.values("controller/status"))

        # Non-finite odometry: ERROR with the message while recent, then no longer ERROR (good odometry goes
        # on) once ERROR_HOLD_S has passed, the message and its age still readable. Without a plan the
        # controller's own level is WARN, so "no longer ERROR" is the return to normal here.
        publisher = matched_publisher(node, Odometry, "odom", "reliable_volatile")
        assert publish_until(node, publisher, lambda: odometry_now(node), lambda: state() != "no_odom", 15.0)
        assert watch.level("controller/status") < ERROR, watch.values("controller/status")
        reported = time.monotonic()
        publisher.publish(odometry_now(node, x=math.nan))
        assert publish_until(node, publisher, lambda: odometry_now(node),
                             lambda: watch.level("controller/status") == ERROR, 10.0), watch.values("controller/status")
        assert "odometry rejected" in watch.values("controller/status")["last_error"]
        assert publish_until(node, publisher, lambda: odometry_now(node),
                             lambda: watch.level("controller/status") < ERROR, ERROR_HOLD_S + 10.0), \
            watch.values("controller/status")
        assert time.monotonic() - reported >= ERROR_HOLD_S
        values = watch.values("controller/status")
        assert "odometry rejected" in values["last_error"] and float(values["last_error_age_s"]) >= ERROR_HOLD_S - 0.1
        assert values["state"] != "no_odom"  # the good odometry was taken throughout
        assert not runner.exited(), runner.exited()
    finally:
        runner.stop()


def test_cmd_vel_reaches_the_bridge_from_every_publisher_qos_and_stops_after_cmd_timeout(tmp_path, node):
    runner = start_graph(tmp_path, nodes=("go2_bridge_node",), arguments={"robot": "sim"})
    watch = StatusWatch(node, ("go2/status",))

    def state():
        return watch.values("go2/status").get("state")

    forward = Twist()
    forward.linear.x = 0.2

    try:
        assert wait_until(lambda: state() is not None, DISCOVERY_S, node), logs(tmp_path)
        for profile in sorted(PUBLISHER_QOS):
            assert state() != "moving", (profile, watch.values("go2/status"))
            publisher = matched_publisher(node, Twist, "cmd_vel", profile)
            assert publish_until(node, publisher, lambda: forward, lambda: state() == "moving", 15.0), \
                (profile, watch.values("go2/status"))
            node.destroy_publisher(publisher)
            # the bridge's own timeout stops it (its bound, cmd_timeout_s, is measured in test_go2.py)
            assert wait_until(lambda: state() == "timeout", 10.0, node), (profile, watch.values("go2/status"))
        assert not runner.exited(), runner.exited()
    finally:
        runner.stop()


def test_a_rejected_frame_makes_policy_status_error_and_it_returns_to_ok_after_the_hold_time(tmp_path, node):
    overrides = {"policy_node": {"image_input": "raw", "status_rate_hz": 10.0}}
    runner = start_graph(tmp_path, nodes=("policy_node",), overrides=overrides)
    watch = StatusWatch(node, ("policy/status",))
    camera = node.create_publisher(Image, "camera/image_raw", common.topic_qos("camera/image_raw"))

    def yuv_frame() -> Image:
        header = Header(frame_id="camera_link", stamp=node.get_clock().now().to_msg())
        msg = Image(header=header, **images.image_fields_from_array(np.zeros((48, 64, 3), np.uint8), "rgb8"))
        msg.encoding = "yuv422"  # what a misconfigured camera driver sends
        return msg

    try:
        assert wait_until(lambda: camera.get_subscription_count() > 0 and watch.level("policy/status") is not None,
                          DISCOVERY_S, node), logs(tmp_path)
        assert watch.level("policy/status") == OK, watch.values("policy/status")
        assert watch.values("policy/status")["last_error"] == ""
        assert publish_until(node, camera, yuv_frame, lambda: watch.level("policy/status") == ERROR, 15.0, 0.1), \
            watch.values("policy/status")
        last_rejected = time.monotonic()
        values = watch.values("policy/status")
        assert "yuv422" in values["last_error"] and float(values["last_error_age_s"]) < ERROR_HOLD_S, values
        # no more frames: ERROR while the error is recent, then OK, the error and its age still shown
        assert wait_until(lambda: watch.level("policy/status") == OK, ERROR_HOLD_S + 10.0, node), \
            watch.values("policy/status")
        assert time.monotonic() - last_rejected >= ERROR_HOLD_S - 0.2  # not before the hold time
        values = watch.values("policy/status")
        assert "yuv422" in values["last_error"] and float(values["last_error_age_s"]) >= ERROR_HOLD_S - 0.2, values
        assert int(values["frames_rejected"]) >= 1
        assert not runner.exited(), runner.exited()
    finally:
        runner.stop()


def read_bag(path) -> dict[str, list]:
    """topic -> decoded messages, in bag order."""
    reader = bags.open_bag(path)
    try:
        result: dict[str, list] = {}
        for connection, _, data in bags.messages(reader, reader.connections):
            result.setdefault(connection.topic, []).append(bags.decode(data, connection.msgtype))
        return result
    finally:
        reader.close()


def test_the_recorder_records_every_input_once_from_every_publisher_qos(tmp_path, node):
    # Published before the recorder starts, by a latched publisher (Humble's `ros2 topic pub`): recorded too.
    early = node.create_publisher(String, "instruction", PUBLISHER_QOS["reliable_transient_local"])
    early.publish(String(data="latched before the recorder started"))
    bag = tmp_path / "bag"
    recording = stack.RecordingSpec(output=str(bag), topics=tuple(f"/{topic}" for topic in INPUTS),
                                    use_sim_time=False)
    runner = GraphRunner([recording], env=stack.loopback_environment(int(os.environ["ROS_DOMAIN_ID"])),
                         log_dir=tmp_path / "logs").start()
    profiles = sorted(PUBLISHER_QOS)
    try:
        assert wait_until(lambda: early.get_subscription_count() == subscriptions_matching(
            "instruction", PUBLISHER_QOS["reliable_transient_local"]), DISCOVERY_S, node), logs(tmp_path)
        for index, profile in enumerate(profiles):
            publishers = matched_publishers(node, {"instruction": String, "estop": Bool, "cmd_vel": Twist,
                                                   "odom": Odometry}, profile)
            publishers["instruction"].publish(String(data=f"instruction {index} ({profile})"))
            publishers["estop"].publish(Bool(data=index % 2 == 0))  # alternating: each differs from the one before
            twist = Twist()
            twist.linear.x = float(index)
            publishers["cmd_vel"].publish(twist)
            publishers["odom"].publish(odometry_now(node, x=float(index)))
            spin_for(node, 1.0)  # the copies arrive meanwhile
            for publisher in publishers.values():
                node.destroy_publisher(publisher)
        assert not runner.exited(), (runner.exited(), logs(tmp_path))
    finally:
        codes = runner.stop()
    assert codes == {stack.RECORDER_NAME: 0}, (codes, logs(tmp_path))
    topics = read_bag(bag)
    assert [m.data for m in topics["/instruction"]] == (
        ["latched before the recorder started"] + [f"instruction {i} ({p})" for i, p in enumerate(profiles)])
    assert [m.data for m in topics["/estop"]] == [i % 2 == 0 for i in range(len(profiles))]
    assert [m.linear.x for m in topics["/cmd_vel"]] == [float(i) for i in range(len(profiles))]
    assert [m.pose.pose.position.x for m in topics["/odom"]] == [float(i) for i in range(len(profiles))]
