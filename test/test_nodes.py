"""Node-level behaviour over real DDS: camera output, policy services, bridge guards, shutdown stops."""
from __future__ import annotations

import math
import signal

import numpy as np
import pytest
from geometry_msgs.msg import Twist
from rcl_interfaces.msg import Parameter, ParameterType, ParameterValue
from rcl_interfaces.srv import SetParameters
from sensor_msgs.msg import CameraInfo, CompressedImage, Image
from std_srvs.srv import Trigger

from graph_helpers import STRAIGHT_ROUTE, moving, start_graph, wait_until
from sparsevideonav_ros.core import images
from sparsevideonav_ros.nodes import common
from sparsevideonav_ros.tools.monitor import GraphMonitor, spin_for


@pytest.fixture
def monitor(ros_context):
    node = GraphMonitor("test_nodes_monitor")
    yield node
    node.destroy_node()


def call(monitor, srv_type, name, request, timeout_s=10.0):
    client = monitor.create_client(srv_type, name)
    assert client.wait_for_service(timeout_sec=timeout_s), f"service {name} not available"
    future = client.call_async(request)
    assert wait_until(future.done, timeout_s, monitor), f"service {name} did not answer"
    monitor.destroy_client(client)
    return future.result()


def test_camera_publishes_raw_jpeg_and_info_with_matching_stamps(tmp_path, monitor):
    raw, jpeg, info = [], [], []
    monitor.create_subscription(Image, "camera/image_raw", raw.append, common.topic_qos("camera/image_raw"))
    monitor.create_subscription(CompressedImage, "camera/image_raw/compressed", jpeg.append,
                                common.topic_qos("camera/image_raw/compressed"))
    monitor.create_subscription(CameraInfo, "camera/camera_info", info.append, common.topic_qos("camera/camera_info"))
    overrides = {"camera_node": {"width": 320, "height": 240, "rate_hz": 10.0, "frame_id": "osmo_optical"}}
    runner = start_graph(tmp_path, nodes=("camera_node",), overrides=overrides)
    try:
        assert wait_until(lambda: len(raw) >= 10 and len(jpeg) >= 10 and len(info) >= 10, 30, monitor)
    finally:
        runner.stop()
    frame = images.array_from_image_fields(raw[-1].height, raw[-1].width, raw[-1].encoding, raw[-1].is_bigendian,
                                           raw[-1].step, bytes(raw[-1].data))
    assert raw[-1].encoding == "rgb8" and frame.shape == (240, 320, 3)
    assert images.decode_compressed(jpeg[-1].format, bytes(jpeg[-1].data)).shape == (240, 320, 3)
    assert {m.header.frame_id for m in raw + jpeg + info} == {"osmo_optical"}
    stamps = {common.stamp_to_seconds(m.header.stamp) for m in jpeg}
    assert {common.stamp_to_seconds(m.header.stamp) for m in info} & stamps
    assert (info[-1].width, info[-1].height) == (320, 240)
    fx = info[-1].k[0]
    assert math.isclose(fx, 160.0 / math.tan(math.radians(45.0)))  # 90 deg horizontal FOV
    spacing = np.diff(sorted(stamps))
    assert 0.07 < float(np.median(spacing)) < 0.13  # 10 Hz stamps


def test_policy_reset_service_and_instruction_parameter(tmp_path, monitor):
    runner = start_graph(tmp_path, arguments={"camera": "synthetic"},
                         overrides={"policy_node": {"status_rate_hz": 10.0,
                                                    "scripted": {"waypoints": STRAIGHT_ROUTE}}})

    def status():
        return monitor.record.status.get("policy/status", {})

    def set_instruction(text):
        value = ParameterValue(type=ParameterType.PARAMETER_STRING, string_value=text)
        request = SetParameters.Request(parameters=[Parameter(name="instruction", value=value)])
        return call(monitor, SetParameters, "policy_node/set_parameters", request).results[0]

    try:
        assert wait_until(lambda: int(status().get("history_length", 0)) >= 4, 30, monitor)
        result = set_instruction("walk to the wooden door")
        assert result.successful
        assert wait_until(lambda: status().get("instruction") == "walk to the wooden door", 5, monitor)
        refused = set_instruction("   ")
        assert not refused.successful and "empty" in refused.reason
        monitor.send_instruction("go to the kitchen")  # the topic works too
        assert wait_until(lambda: status().get("instruction") == "go to the kitchen", 5, monitor)
        before = int(status()["history_length"])
        response = call(monitor, Trigger, "policy/reset", Trigger.Request())
        assert response.success
        assert wait_until(lambda: int(status().get("history_length", 99)) < before, 5, monitor)
        # speed limits are read-only: a runtime change is refused rather than silently ignored
        value = ParameterValue(type=ParameterType.PARAMETER_DOUBLE, double_value=5.0)
        request = SetParameters.Request(parameters=[Parameter(name="history_rate_hz", value=value)])
        assert not call(monitor, SetParameters, "policy_node/set_parameters", request).results[0].successful
    finally:
        runner.stop()


def test_bridge_rejects_non_finite_commands_and_stops_on_shutdown(tmp_path, monitor):
    runner = start_graph(tmp_path, nodes=("go2_bridge_node",))
    cmd_pub = monitor.create_publisher(Twist, "cmd_vel", common.topic_qos("cmd_vel"))

    def send(vx, vy=0.0, wz=0.0, seconds=0.5):
        end = monitor.get_clock().now().nanoseconds * 1e-9 + seconds
        while monitor.get_clock().now().nanoseconds * 1e-9 < end:
            msg = Twist()
            msg.linear.x, msg.linear.y, msg.angular.z = vx, vy, wz
            cmd_pub.publish(msg)
            spin_for(monitor, 0.05)

    try:
        assert wait_until(lambda: cmd_pub.get_subscription_count() > 0 and monitor.record.odom, 20, monitor)
        send(float("nan"), seconds=1.0)
        assert not any(moving(o, 1e-9) for o in monitor.record.odom)
        assert wait_until(lambda: monitor.record.status.get("go2/status", {}).get("state") == "rejected", 5, monitor)
        assert int(monitor.record.status["go2/status"]["rejected_commands"]) > 5
        send(5.0, 0.0, 9.0, seconds=1.0)  # far beyond the limits: clamped
        velocities = np.array([o[3] for o in monitor.record.odom[-10:]])
        assert velocities[:, 0].max() <= 0.6 + 1e-9 and velocities[:, 2].max() <= 1.2 + 1e-9
        assert velocities[-1, 0] > 0.3  # it does move
        # SIGTERM while moving: the bridge stops the robot and says so in its last odometry
        for _ in range(3):
            send(0.4, seconds=0.1)
        runner.children["go2_bridge_node"].send_signal(signal.SIGTERM)
        send(0.4, seconds=0.3)
        spin_for(monitor, 1.0)
        assert runner.children["go2_bridge_node"].wait(timeout=10) == 0
        assert not moving(monitor.record.odom[-1], 1e-9)
    finally:
        runner.stop()
