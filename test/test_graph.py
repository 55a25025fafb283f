"""Multi-process tests of the real graph over loopback DDS (rclpy from the Jazzy wheels).

Each test starts the node processes it needs with the pip-only runner (each node with the arguments
the launch files give it, test_launch_files.py), watches them from an in-process monitor node, and stops them.
"""
from __future__ import annotations

import signal
import subprocess

import numpy as np
import pytest
from sensor_msgs.msg import CompressedImage, Image
from std_msgs.msg import Header

from graph_helpers import STRAIGHT_ROUTE, logs, moving, now, start_graph, stopped_since, wait_until
from sparsevideonav_ros import stack
from sparsevideonav_ros.core import images
from sparsevideonav_ros.nodes import common
from sparsevideonav_ros.tools.monitor import GraphMonitor, spin_for

STRAIGHT = {"policy_node": {"scripted": {"waypoints": STRAIGHT_ROUTE}}}


@pytest.fixture
def monitor(ros_context):
    node = GraphMonitor("test_monitor")
    yield node
    node.destroy_node()


def wait_moving(monitor, timeout_s=20.0):
    assert wait_until(lambda: monitor.record.odom and moving(monitor.record.odom[-1]), timeout_s, monitor), \
        "robot never started moving"


def wait_flowing(monitor, topics=("frames", "plans", "cmds", "odom"), timeout_s=30.0):
    """Wait until the monitor receives every listed stream and the robot moves.

    DDS discovery between freshly started processes takes a few seconds on a loaded 2-core machine,
    so the tests act only once the monitor sees the whole graph.
    """
    def flowing():
        record = monitor.record
        return all(getattr(record, t) for t in topics) and moving(record.odom[-1])
    assert wait_until(flowing, timeout_s, monitor), f"not flowing: { {t: len(getattr(monitor.record, t)) for t in topics} }"


def test_demo_graph_drives_the_sim_robot_along_the_plan(tmp_path, monitor):
    runner = start_graph(tmp_path, arguments={"camera": "synthetic"}, overrides=STRAIGHT)
    try:
        wait_flowing(monitor)
        counts_before = len(monitor.record.frames), len(monitor.record.plans)
        spin_for(monitor, 2.0)
        assert wait_until(lambda: monitor.latest_pose()[0] > 1.0, 15, monitor), logs(tmp_path)
        assert not runner.exited(), runner.exited()
    finally:
        codes = runner.stop()
    record = monitor.record
    # 15 FPS camera, 4 FPS plans: over 2 s at least 20 frames and 6 plans
    assert len(record.frames) - counts_before[0] >= 20 and len(record.plans) - counts_before[1] >= 6
    assert sum(1 for c in record.cmds if abs(c[1]) > 0.05) > 10
    poses = np.array([o[2] for o in record.odom])
    # along the straight plan: x grows, y and yaw stay near zero
    assert poses[-1, 0] > 1.0 and np.abs(poses[:, 1]).max() < 0.05 and np.abs(poses[:, 2]).max() < 0.05
    # paths are stamped with a camera frame's stamp and expressed in the body frame at that stamp
    frame_stamps = {round(f[1], 6) for f in record.frames}
    assert all(round(p[1], 6) in frame_stamps for p in record.plans[-5:])
    assert {p[2] for p in record.plans} == {"base_link"}
    assert all(code == 0 for code in codes.values()), codes


def test_estop_stops_within_two_control_periods_and_stays_latched(tmp_path, monitor):
    runner = start_graph(tmp_path, arguments={"camera": "synthetic"}, overrides=STRAIGHT)
    try:
        wait_flowing(monitor)
        sent = now()
        monitor.send_estop(True)
        spin_for(monitor, 3.0)
        # By the bridge's stamp, not by receipt: a busy monitor may still be draining older odometry.
        after = [o for o in monitor.record.odom if o[1] >= sent]
        moving_after = [o for o in after if moving(o, threshold=1e-6)]
        # The bridge publishes odometry every control period: at most two moving ones after the e-stop.
        assert len(moving_after) <= 2, f"{len(moving_after)} moving odometry messages after e-stop"
        assert len(after) > 50
        # estop False does not release it; the controller keeps commanding, the robot stays still
        monitor.send_estop(False)
        spin_for(monitor, 1.0)
        assert not any(moving(o, 1e-6) for o in monitor.record.odom[-40:])
        assert monitor.record.status["go2/status"]["estopped"] == "True"
        # release through the service: motion resumes
        client = monitor.create_client(__import__("std_srvs.srv", fromlist=["Trigger"]).Trigger, "estop/release")
        assert client.wait_for_service(timeout_sec=5.0)
        future = client.call_async(__import__("std_srvs.srv", fromlist=["Trigger"]).Trigger.Request())
        assert wait_until(future.done, 5.0, monitor) and future.result().success
        wait_moving(monitor, 10.0)
    finally:
        runner.stop()


def test_killing_the_policy_stops_the_robot_within_the_plan_timeout(tmp_path, monitor):
    runner = start_graph(tmp_path, arguments={"camera": "synthetic"}, overrides=STRAIGHT)
    plan_timeout = stack.NODES["controller_node"].config_class().plan_timeout_s
    try:
        wait_flowing(monitor)
        killed_at = now()
        runner.kill_node("policy_node", signal.SIGKILL)
        spin_for(monitor, plan_timeout + 2.0)
        since = stopped_since(monitor.record, killed_at)
        assert since is not None, "robot still moving after the policy died"
        last_plan_stamp = monitor.record.plans[-1][1]
        # stale = newest plan's frame older than plan_timeout; one control period + odometry period of slack
        assert since - last_plan_stamp <= plan_timeout + 0.05 + 0.02 + 0.05
        assert monitor.record.status["controller/status"]["state"] == "stale"
    finally:
        runner.stop()


def test_killing_the_controller_stops_the_robot_within_cmd_timeout(tmp_path, monitor):
    runner = start_graph(tmp_path, arguments={"camera": "synthetic"}, overrides=STRAIGHT)
    cmd_timeout = stack.NODES["go2_bridge_node"].config_class().cmd_timeout_s
    try:
        wait_flowing(monitor)
        runner.kill_node("controller_node", signal.SIGKILL)
        killed_at = now()
        spin_for(monitor, cmd_timeout + 1.5)
        last_cmd = monitor.record.cmds[-1][0]
        since = stopped_since(monitor.record, killed_at)
        assert since is not None, "robot still moving after the controller died"
        assert since - last_cmd <= cmd_timeout + 2 * 0.02 + 0.05  # bridge period 20 ms + transport slack
        assert monitor.record.status["go2/status"]["state"] == "timeout"
    finally:
        runner.stop()


def _publish_frames(monitor, publisher, make_msg, count=12, period=0.1):
    for _ in range(count):
        publisher.publish(make_msg())
        spin_for(monitor, period)


def publish_until(monitor, publisher, make_msg, predicate, timeout_s=20.0, period=0.1) -> bool:
    """Keep publishing frames until ``predicate()`` holds (status discovery can lag the frames)."""
    deadline = now() + timeout_s
    while now() < deadline:
        publisher.publish(make_msg())
        if spin_for(monitor, period, until=predicate):
            return True
    return False


def test_bad_images_are_rejected_with_an_error_and_no_motion(tmp_path, monitor):
    overrides = {"policy_node": {"image_input": "raw", "expected_width": 64, "expected_height": 48,
                                 "status_rate_hz": 10.0, "scripted": {"waypoints": STRAIGHT_ROUTE}}}
    runner = start_graph(tmp_path, nodes=("policy_node", "controller_node", "go2_bridge_node"), overrides=overrides)
    publisher = monitor.create_publisher(Image, "camera/image_raw", common.topic_qos("camera/image_raw"))

    def frame(width, height, encoding="rgb8"):
        def make():
            header = Header(frame_id="camera_link", stamp=monitor.get_clock().now().to_msg())
            msg = Image(header=header, **images.image_fields_from_array(np.zeros((height, width, 3), np.uint8), "rgb8"))
            msg.encoding = encoding
            return msg
        return make

    def status():
        return monitor.record.status.get("policy/status", {})

    try:
        assert wait_until(lambda: monitor.record.odom and publisher.get_subscription_count() > 0, 15, monitor)
        # wrong size, then wrong encoding
        assert publish_until(monitor, publisher, frame(32, 24), lambda: "32x24" in status().get("last_error", "")), \
            status()
        assert publish_until(monitor, publisher, frame(64, 48, "yuv422"),
                             lambda: "yuv422" in status().get("last_error", "")), status()
        _publish_frames(monitor, publisher, frame(64, 48, "yuv422"), count=10)
        assert not monitor.record.plans
        assert not any(moving(o, 1e-6) for o in monitor.record.odom)
        assert int(status()["frames_rejected"]) >= 10 and status()["frames_sampled"] == "0"
        # The same graph does move on good frames: the checks above could have failed.
        _publish_frames(monitor, publisher, frame(64, 48), count=30)
        wait_moving(monitor, 10.0)
    finally:
        runner.stop()
    text = logs(tmp_path)
    assert "32x24" in text and "yuv422" in text


def test_compressed_garbage_is_rejected(tmp_path, monitor):
    overrides = {"policy_node": {"status_rate_hz": 10.0}}
    runner = start_graph(tmp_path, nodes=("policy_node",), overrides=overrides)
    publisher = monitor.create_publisher(CompressedImage, "camera/image_raw/compressed",
                                         common.topic_qos("camera/image_raw/compressed"))
    try:
        assert wait_until(lambda: publisher.get_subscription_count() > 0, 15, monitor)
        assert publish_until(monitor, publisher, lambda: CompressedImage(format="jpeg", data=b"not a jpeg"),
                             lambda: monitor.record.status.get("policy/status", {}).get("frames_rejected", "0") != "0")
        assert not monitor.record.plans
    finally:
        runner.stop()


def test_unknown_policy_fails_at_start_with_known_names(tmp_path):
    process = stack.plan_processes("policy", {"policy": "no_such_policy"})[0]
    from sparsevideonav_ros.tools.launch import node_command
    env = stack.loopback_environment(int(__import__("os").environ["ROS_DOMAIN_ID"]))
    env["PYTHONPATH"] = str(stack.share_dir())
    result = subprocess.run(node_command(process), env=env, capture_output=True, text=True, timeout=60)
    assert result.returncode == 2
    assert "unknown policy 'no_such_policy'" in result.stderr and "scripted" in result.stderr


def test_invalid_parameter_fails_at_start(tmp_path):
    process = stack.plan_processes("robot", {})[2]
    assert process.node == "go2_bridge_node"
    process.parameters["cmd_timeout_s"] = -1.0
    from sparsevideonav_ros.tools.launch import node_command
    env = stack.loopback_environment(int(__import__("os").environ["ROS_DOMAIN_ID"]))
    env["PYTHONPATH"] = str(stack.share_dir())
    result = subprocess.run(node_command(process), env=env, capture_output=True, text=True, timeout=60)
    assert result.returncode == 2 and "cmd_timeout_s" in result.stderr
