"""RViz / Foxglove: transforms, plan markers, the Foxglove live view and the shipped viewer files.

* base_link -> camera_link is the camera mount of the pose head's presets (MOUNT_PRESETS), in the
  optical convention of the images stamped camera_link; odom -> base_link is the odometry pose;
* policy/markers hold the plan's waypoints, their time-ahead labels and the plan state;
* foxglove:=true starts a foxglove-sdk WebSocket server on loopback: a client connecting on 127.0.0.1
  gets the channel list and the messages (ROS CDR), /tf and /tf_static included on pip-only installs;
  record:=true writes /tf and /tf_static too;
* rviz/*.rviz and foxglove/*.json parse, show camera, plan, odometry, imagined future and status, and
  name only topics that exist.
"""
from __future__ import annotations

import json
import math
import os
import socket
import subprocess
import time
from pathlib import Path

import numpy as np
import pytest
import yaml

from foxglove_client import FoxgloveClient
from graph_helpers import logs, write_params
from sparsevideonav_ros import bags, configs, stack
from sparsevideonav_ros.configs import ConfigError
from sparsevideonav_ros.nodes import common, markers, transforms
from sparsevideonav_ros.policies.pose_estimators.mount import MOUNT_PRESETS
from sparsevideonav_ros.tools.launch import GraphRunner, node_command

REPO = Path(__file__).resolve().parent.parent
RVIZ_CONFIG = REPO / "rviz" / "sparsevideonav.rviz"
FOXGLOVE_LAYOUT = REPO / "foxglove" / "sparsevideonav.json"
TF2_MSGS = transforms.TFMessage is not None


def env() -> dict[str, str]:
    return stack.loopback_environment(int(os.environ["ROS_DOMAIN_ID"]))


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def stamp(seconds: float = 12.5):
    return common.seconds_to_stamp(seconds)


# -- transforms -----------------------------------------------------------------------------------

@pytest.mark.parametrize("preset", sorted(MOUNT_PRESETS))
def test_camera_transform_is_the_mount_preset(preset):
    mount = MOUNT_PRESETS[preset]
    msg = transforms.camera_transform_msg(mount, "base_link", "camera_link", stamp())
    assert (msg.header.frame_id, msg.child_frame_id) == ("base_link", "camera_link")
    t = msg.transform.translation
    assert (t.x, t.y, t.z) == pytest.approx((mount.forward_m, mount.lateral_m, mount.height_m))
    matrix = transforms.transform_matrix(msg)
    np.testing.assert_allclose(matrix, mount.base_from_camera, atol=1e-9)
    # the optical axis (camera z) looks ahead, pitched down by the preset's angle; image right (camera x) is -y
    forward = matrix[:3, :3] @ np.array([0.0, 0.0, 1.0])
    np.testing.assert_allclose(forward, [math.cos(mount.pitch_down_rad), 0.0, -math.sin(mount.pitch_down_rad)],
                               atol=1e-9)
    np.testing.assert_allclose(matrix[:3, :3] @ np.array([1.0, 0.0, 0.0]), [0.0, -1.0, 0.0], atol=1e-9)


def test_camera_node_mount_parameters_pick_a_preset_or_the_custom_values():
    assert transforms.camera_mount(configs.CameraNodeConfig()) == MOUNT_PRESETS["osmo"]  # the policy's default too
    assert transforms.camera_mount(configs.CameraNodeConfig(camera_mount="d455")) == MOUNT_PRESETS["d455"]
    custom = transforms.camera_mount(configs.CameraNodeConfig(camera_mount="custom", mount_height_m=0.6,
                                                              mount_pitch_down_deg=10.0, mount_forward_m=0.2))
    assert (custom.height_m, custom.forward_m) == (0.6, 0.2)
    assert custom.pitch_down_rad == pytest.approx(math.radians(10.0))
    for bad in ({"camera_mount": "gopro"}, {"mount_height_m": 0.0}, {"mount_pitch_down_deg": 85.0},
                {"base_frame": "camera_link"}):
        with pytest.raises(ConfigError):
            configs.CameraNodeConfig(**bad)
    # the presets the camera node offers are the pose head's, and so are the policy's
    from sparsevideonav_ros.policies.sparsevideonav.configuration_sparsevideonav import CAMERA_MOUNTS
    choices = {f.name: f.metadata["choices"] for f in configs.dataclasses.fields(configs.CameraNodeConfig)}
    assert choices["camera_mount"] == CAMERA_MOUNTS


def test_camera_mount_launch_argument_sets_the_camera_node_and_the_policy():
    (camera,) = [p for p in stack.plan_processes("bringup", {"camera_mount": "d455"}) if p.node == "camera_node"]
    (policy,) = [p for p in stack.plan_processes("bringup", {"camera_mount": "d455"}) if p.node == "policy_node"]
    assert camera.parameters["camera_mount"] == "d455"
    assert policy.parameters["sparsevideonav.camera_mount"] == "d455"
    untouched = stack.plan_processes("bringup", {})
    assert all("camera_mount" not in p.parameters and "sparsevideonav.camera_mount" not in p.parameters
               for p in untouched)


def test_quaternions_round_trip():
    rng = np.random.default_rng(3)
    for _ in range(50):
        q = rng.normal(size=4)
        q /= np.linalg.norm(q)
        matrix = transforms.matrix_from_quaternion(*q)
        back = transforms.quaternion_from_matrix(matrix)
        np.testing.assert_allclose(transforms.matrix_from_quaternion(*back), matrix, atol=1e-9)
        assert back[3] >= 0


# -- markers --------------------------------------------------------------------------------------

def test_plan_markers_hold_the_waypoints_their_times_and_the_state():
    from std_msgs.msg import Header
    from visualization_msgs.msg import Marker
    waypoints = np.column_stack([0.1 * np.arange(1, 9), 0.02 * np.arange(1, 9), np.zeros(8)])  # 8 x 0.25 s = 2 s
    header = Header(stamp=stamp(), frame_id="base_link")
    array = markers.plan_markers(waypoints, header, "ok", "sparsevideonav", dt_s=0.25)
    assert array.markers[0].action == Marker.DELETEALL  # the previous plan's labels go first
    assert all(m.header.frame_id == "base_link" and m.header.stamp == header.stamp for m in array.markers)
    summary = markers.marker_summary(array)
    np.testing.assert_allclose(summary["plan"][0], [(0.0, 0.0)] + [tuple(w[:2]) for w in waypoints])
    np.testing.assert_allclose(summary["waypoints"][0], [tuple(w[:2]) for w in waypoints])
    assert summary["times"] == ["T+1 s", "T+2 s"]  # waypoints 4 and 8: 1 s and 2 s ahead
    labels = [m for m in array.markers if m.ns == "times"]
    np.testing.assert_allclose([(m.pose.position.x, m.pose.position.y) for m in labels],
                               [waypoints[3, :2], waypoints[7, :2]])
    assert summary["state"] == ["sparsevideonav: ok"]
    # a plan that ends between whole seconds labels its last waypoint; no timing, no labels
    assert markers.marker_summary(markers.plan_markers(waypoints[:6], header, "ok", dt_s=0.25))["times"] == [
        "T+1 s", "T+1.50 s"]
    assert "times" not in markers.marker_summary(markers.plan_markers(waypoints, header, "ok"))
    stop = markers.marker_summary(markers.plan_markers(np.zeros((0, 3)), header, "pose_invalid", "svn"))
    assert stop == {"deleteall": [True], "state": ["svn: pose_invalid"]}


# -- the live graph: camera, policy, sim Go2, recorder and Foxglove live view ------------------------

def decode(data: bytes, msg_type: str):
    return bags.decode(data, msg_type)


def transform_tuple(transform) -> tuple:
    t, r = transform.transform.translation, transform.transform.rotation
    return (transform.header.frame_id, transform.child_frame_id, (t.x, t.y, t.z), (r.x, r.y, r.z, r.w))


RECORDER_MUST_HAVE = {"/tf", "/tf_static", "/odom/transform", "/camera/transform"}


@pytest.fixture(scope="module")
def live_run(ros_context, tmp_path_factory):
    """bringup (synthetic camera on the d455 mount, scripted policy, sim Go2) with foxglove:=true and
    record:=true; a Foxglove client on loopback reads it while it runs."""
    tmp = tmp_path_factory.mktemp("live_view")
    port = free_port()
    params = write_params(tmp / "route.yaml", {"policy_node": {"scripted": {"waypoints": [10.0, 0.0, 0.0]}},
                                               "camera_node": {"rate_hz": 8.0}})
    arguments = {"foxglove": "true", "foxglove_port": str(port), "camera_mount": "d455", "params_file": params,
                 "record": "true", "record_dir": str(tmp / "bags")}
    graph = stack.plan_graph("bringup", arguments)
    (live_view,) = [p for p in graph if isinstance(p, stack.LiveViewSpec)]
    runner = GraphRunner(graph, env=env(), log_dir=tmp / "logs")
    received, channels, server_info = {}, {}, None
    try:
        runner.start()
        deadline = time.monotonic() + 30
        client = None
        while client is None:
            try:
                client = FoxgloveClient("127.0.0.1", port)
            except (ConnectionError, OSError):
                assert time.monotonic() < deadline and not runner.exited(), (runner.exited(), logs(tmp))
                time.sleep(0.2)
        try:
            wanted = ["/tf", "/tf_static", "/camera/transform", "/odom/transform", "/policy/path", "/policy/markers",
                      "/camera/image_raw/compressed", "/policy/status", "/odom"]
            client.wait_channels(set(wanted), timeout_s=20)
            client.subscribe(wanted)
            received = client.messages(set(wanted), timeout_s=40)
            channels, server_info = dict(client.channels), client.server_info
            # keep reading a little: markers and paths of the same plans
            more = client.messages({"/policy/markers", "/policy/path"}, timeout_s=20)
            for topic, payloads in more.items():
                received.setdefault(topic, []).extend(payloads)
        finally:
            client.close()
        assert not runner.exited(), (runner.exited(), logs(tmp))
        # the recorder is discovered by the other processes in its own time: stop once it has the transforms
        from diagnostic_msgs.msg import DiagnosticArray
        from rclpy.node import Node

        from sparsevideonav_ros.tools.monitor import spin_for
        probe = Node("recorder_probe")
        recorded: set = set()
        probe.create_subscription(DiagnosticArray, "/recorder/status", lambda m: recorded.update(
            common.diagnostic_values(m).get("received_topics", "").split()), common.topic_qos("recorder/status"))
        try:
            assert spin_for(probe, 30, until=lambda: RECORDER_MUST_HAVE <= recorded), (recorded, logs(tmp))
        finally:
            probe.destroy_node()
    finally:
        codes = runner.stop()
    bag_folders = list((tmp / "bags").iterdir())
    return dict(received=received, channels=channels, server_info=server_info, codes=codes, live_view=live_view,
                bags=bag_folders, logs=logs(tmp), port=port)


def test_foxglove_live_view_serves_the_stack_on_loopback(live_run):
    spec = live_run["live_view"]
    assert spec.host == "127.0.0.1" and spec.port == live_run["port"]  # loopback unless foxglove_address says
    assert live_run["server_info"] is not None and live_run["server_info"]["name"] == "sparsevideonav_ros"
    channels = live_run["channels"]
    for topic in [t for t in stack.LIVE_VIEW_TOPICS] + ["/tf", "/tf_static"]:
        topic = topic if topic.startswith("/") else "/" + topic
        assert topic in channels, (topic, sorted(channels))
    # the ROS types and definitions foxglove_bridge serves: one layout for both
    assert channels["/policy/path"]["schemaName"] == "nav_msgs/msg/Path"
    assert channels["/policy/path"]["encoding"] == "cdr" and channels["/policy/path"]["schemaEncoding"] == "ros2msg"
    assert channels["/tf"]["schemaName"] == "tf2_msgs/msg/TFMessage"
    assert "geometry_msgs/TransformStamped[] transforms" in channels["/tf"]["schema"]
    assert all(code == 0 for code in live_run["codes"].values()), (live_run["codes"], live_run["logs"])
    assert f"Foxglove live view on ws://127.0.0.1:{live_run['port']}" in live_run["logs"]


def test_live_view_transforms_are_odometry_and_the_camera_mount(live_run):
    received = live_run["received"]
    d455 = transforms.camera_transform_msg(MOUNT_PRESETS["d455"], "base_link", "camera_link", stamp())
    (static,) = decode(received["/tf_static"][0], "tf2_msgs/msg/TFMessage").transforms
    assert transform_tuple(static)[:2] == ("base_link", "camera_link")
    np.testing.assert_allclose(transform_tuple(static)[2], transform_tuple(d455)[2], atol=1e-9)
    np.testing.assert_allclose(transform_tuple(static)[3], transform_tuple(d455)[3], atol=1e-9)
    camera = decode(received["/camera/transform"][0], "geometry_msgs/msg/TransformStamped")
    np.testing.assert_allclose(transform_tuple(camera)[2] + transform_tuple(camera)[3],
                               transform_tuple(static)[2] + transform_tuple(static)[3])
    (odom_tf,) = decode(received["/tf"][-1], "tf2_msgs/msg/TFMessage").transforms
    assert (odom_tf.header.frame_id, odom_tf.child_frame_id) == ("odom", "base_link")
    odometry = [decode(d, "nav_msgs/msg/Odometry") for d in received["/odom"]]
    by_stamp = {(m.header.stamp.sec, m.header.stamp.nanosec): m.pose.pose for m in odometry}
    tfs = [decode(d, "tf2_msgs/msg/TFMessage").transforms[0] for d in received["/tf"]]
    matched = [(t, by_stamp[(t.header.stamp.sec, t.header.stamp.nanosec)]) for t in tfs
               if (t.header.stamp.sec, t.header.stamp.nanosec) in by_stamp]
    assert matched, "no /tf message with the stamp of an odometry message"
    for t, pose in matched:
        assert (t.transform.translation.x, t.transform.translation.y) == pytest.approx((pose.position.x,
                                                                                        pose.position.y))
        assert t.transform.rotation.z == pytest.approx(pose.orientation.z)


def test_live_view_markers_are_the_published_plans(live_run):
    received = live_run["received"]
    paths = {}
    for data in received["/policy/path"]:
        msg = decode(data, "nav_msgs/msg/Path")
        paths[(msg.header.stamp.sec, msg.header.stamp.nanosec)] = [(p.pose.position.x, p.pose.position.y)
                                                                   for p in msg.poses]
    compared = 0
    for data in received["/policy/markers"]:
        array = decode(data, "visualization_msgs/msg/MarkerArray")
        by_ns = {m.ns: m for m in array.markers if m.action != 3}
        assert array.markers[0].action == 3  # DELETEALL
        assert by_ns["state"].text.startswith("scripted: ")
        key = (array.markers[0].header.stamp.sec, array.markers[0].header.stamp.nanosec)
        if key in paths and paths[key]:
            np.testing.assert_allclose([(p.x, p.y) for p in by_ns["waypoints"].points], paths[key])
            np.testing.assert_allclose([(p.x, p.y) for p in by_ns["plan"].points], [(0.0, 0.0)] + paths[key])
            assert by_ns["plan"].header.frame_id == "base_link"
            compared += 1
    assert compared, "no markers of a received path"


def test_recorded_bag_holds_tf_and_tf_static(live_run):
    (bag,) = live_run["bags"]
    reader = bags.open_bag(bag)
    try:
        found: dict[str, list] = {}
        for connection, _, data in bags.messages(reader, reader.connections):
            if connection.topic in ("/tf", "/tf_static", "/odom/transform", "/camera/transform"):
                found.setdefault(connection.topic, []).append(bags.decode(data, connection.msgtype))
    finally:
        reader.close()
    assert set(found) == RECORDER_MUST_HAVE, set(found)
    (static,) = found["/tf_static"][0].transforms
    assert (static.header.frame_id, static.child_frame_id) == ("base_link", "camera_link")
    assert static.transform.translation.z == pytest.approx(MOUNT_PRESETS["d455"].height_m)
    assert static.transform.translation.x == pytest.approx(MOUNT_PRESETS["d455"].forward_m)
    assert [t.transforms[0].child_frame_id for t in found["/tf"]] == ["base_link"] * len(found["/tf"])
    assert len(found["/tf"]) == len(found["/odom/transform"])


def test_live_view_refuses_a_busy_port_and_bad_arguments(tmp_path):
    for bad in ({"foxglove_port": "http"}, {"foxglove_port": "70000"}, {"foxglove_address": "a b"}):
        with pytest.raises(ValueError, match="foxglove_"):
            stack.plan_live_view("bringup", {"foxglove": "true", **bad})
    assert stack.plan_live_view("bringup", {}) is None  # off by default
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen(1)
        spec = stack.plan_live_view("policy", {"foxglove": "true", "foxglove_port": str(busy.getsockname()[1])})
        result = subprocess.run(node_command(spec), env=dict(env(), PYTHONPATH=str(REPO)), capture_output=True,
                                text=True, timeout=60)
    assert result.returncode == 2, result.stdout + result.stderr
    assert "cannot serve on 127.0.0.1" in result.stdout + result.stderr


@pytest.mark.parametrize("launch_name", sorted(stack.LAUNCH_FILES))
def test_launch_files_start_the_same_live_view_as_the_runner(monkeypatch, launch_name, tmp_path):
    from fake_launch import install_fake_launch, load_launch_file, run_launch
    fake = install_fake_launch(monkeypatch)
    base = {}
    if launch_name == "replay":  # a replay plans from its bag; the live view does not depend on it
        monkeypatch.setattr(stack, "plan_playback", lambda *args, **kwargs: None)
        monkeypatch.setattr("sparsevideonav_ros.launch_plan.plan_playback", lambda *args, **kwargs: None)
        monkeypatch.setattr("sparsevideonav_ros.launch_plan._alignment_if_replay",
                            lambda *args: stack.ReplayAlignment(0.0, None, ""))
        bag = tmp_path / "run.mcap"
        bag.write_bytes(b"")
        base = {"bag": str(bag)}
    processes: list = []
    run_launch(fake, load_launch_file(launch_name), dict(base), processes)
    assert [p for p in processes if p.kwargs.get("name") == stack.LIVE_VIEW_NAME] == []
    arguments = dict(base, foxglove="true", foxglove_port="9123", namespace="robot1")
    processes = []
    run_launch(fake, load_launch_file(launch_name), arguments, processes)
    (launched,) = [p for p in processes if p.kwargs.get("name") == stack.LIVE_VIEW_NAME]
    spec = stack.plan_live_view(launch_name, arguments)
    assert launched.cmd == node_command(spec)  # the very command line the pip-only runner starts
    assert launched.cmd[launched.cmd.index("--host") + 1] == "127.0.0.1"
    assert launched.cmd[launched.cmd.index("--port") + 1] == "9123"
    assert "/robot1/tf" in launched.cmd and "/robot1/policy/markers" in launched.cmd
    assert launched.kwargs.get("on_exit") is not None  # its exit brings the launch down, like every process


@pytest.mark.skipif(not TF2_MSGS, reason="tf2_msgs is not installed (pip-only): /tf is tested through the live view")
def test_nodes_publish_tf_where_tf2_msgs_exists(ros_context, tmp_path):  # pragma: no cover - ROS installs only
    from rclpy.node import Node
    from tf2_msgs.msg import TFMessage

    from sparsevideonav_ros.tools.monitor import spin_for
    graph = [p for p in stack.plan_processes("bringup", {"camera_mount": "d455"})
             if p.node in ("camera_node", "go2_bridge_node")]
    node = Node("tf_probe")
    seen: dict[str, list] = {"tf": [], "tf_static": []}
    node.create_subscription(TFMessage, "/tf", lambda m: seen["tf"].append(m), common.qos("reliable"))
    node.create_subscription(TFMessage, "/tf_static", lambda m: seen["tf_static"].append(m), common.qos("latched"))
    runner = GraphRunner(graph, env=env(), log_dir=tmp_path / "logs").start()
    try:
        assert spin_for(node, 30, until=lambda: seen["tf"] and seen["tf_static"]), logs(tmp_path)
    finally:
        runner.stop()
        node.destroy_node()
    static = seen["tf_static"][0].transforms[0]
    assert (static.header.frame_id, static.child_frame_id) == ("base_link", "camera_link")
    assert static.transform.translation.z == pytest.approx(MOUNT_PRESETS["d455"].height_m)
    assert seen["tf"][-1].transforms[0].child_frame_id == "base_link"


# -- the shipped viewer files -----------------------------------------------------------------------

def known_topic(name: str) -> bool:
    relative = name.lstrip("/")
    return relative in stack.TOPICS or relative in stack.TF_TOPICS


def rviz_topics(node) -> list[str]:
    found = []
    if isinstance(node, dict):
        topic = node.get("Topic")
        if isinstance(topic, dict) and "Value" in topic:
            found.append(topic["Value"])
        for value in node.values():
            found += rviz_topics(value)
    elif isinstance(node, list):
        for value in node:
            found += rviz_topics(value)
    return found


def test_rviz_config_shows_camera_plan_odometry_future_and_status():
    config = yaml.safe_load(RVIZ_CONFIG.read_text(encoding="utf-8"))
    manager = config["Visualization Manager"]
    assert manager["Global Options"]["Fixed Frame"] == "odom"
    displays = {d["Topic"]["Value"] if "Topic" in d else d["Name"]: d["Class"] for d in manager["Displays"]}
    assert displays["/camera/image_raw"] == "rviz_default_plugins/Image"
    assert displays["/policy/future"] == "rviz_default_plugins/Image"
    assert displays["/policy/path"] == "rviz_default_plugins/Path"
    assert displays["/policy/markers"] == "rviz_default_plugins/MarkerArray"  # waypoints, T+ times, plan state
    assert displays["/odom"] == "rviz_default_plugins/Odometry"
    assert displays["TF"] == "rviz_default_plugins/TF"
    for topic in rviz_topics(config):
        assert known_topic(topic), topic
    # each display subscribes with a QoS that matches our publisher (a RELIABLE reader misses a BEST_EFFORT one)
    for display in manager["Displays"]:
        if "Topic" in display:
            topic = stack.TOPICS[display["Topic"]["Value"].lstrip("/")]
            if topic.qos == "sensor_data":
                assert display["Topic"]["Reliability Policy"] == "Best Effort", topic.name
    namespaces = [d for d in manager["Displays"] if d["Class"].endswith("MarkerArray")][0]["Namespaces"]
    assert set(namespaces) == {"plan", "waypoints", "times", "state"}


def layout_topics(node, key: str = "") -> list[str]:
    found = []
    if isinstance(node, dict):
        for k, value in node.items():
            if k == "topics" and isinstance(value, dict):
                found += list(value)
            found += layout_topics(value, k)
    elif isinstance(node, list):
        for value in node:
            found += layout_topics(value, key)
    elif isinstance(node, str) and key in ("imageTopic", "calibrationTopic", "topicToRender", "topicPath",
                                            "cameraInfoTopic"):
        found.append(node.split(".")[0])
    return found


def test_foxglove_layout_shows_camera_plan_odometry_future_and_status():
    layout = json.loads(FOXGLOVE_LAYOUT.read_text(encoding="utf-8"))
    panels = layout["configById"]
    referenced = layout_topics(panels)
    for topic in referenced:
        assert known_topic(topic), topic
    assert {"/camera/image_raw/compressed", "/policy/path", "/policy/markers", "/odom", "/policy/future/compressed",
            "/policy/status", "/controller/status", "/go2/status"} <= set(referenced)
    # every panel in the mosaic has a config, and every config is in the mosaic
    def leaves(node):
        return [node] if isinstance(node, str) else leaves(node["first"]) + leaves(node["second"])
    assert sorted(leaves(layout["layout"])) == sorted(panels)
    assert {panel.split("!")[0] for panel in panels} >= {"3D", "Image", "DiagnosticSummary"}
    assert panels["3D!plan"]["followTf"] == "base_link"
    # every topic the layout shows, the live view serves
    served = {"/" + t for t in stack.LIVE_VIEW_TOPICS} | {"/" + t for t in stack.TF_TOPICS}
    assert set(referenced) <= served, set(referenced) - served


def test_viewer_files_are_installed(monkeypatch):
    import runpy

    import setuptools
    captured: dict = {}
    monkeypatch.setattr(setuptools, "setup", lambda **kwargs: captured.update(kwargs))
    monkeypatch.chdir(REPO)
    runpy.run_path(str(REPO / "setup.py"), run_name="__main__")
    data_files = {destination: set(files) for destination, files in captured["data_files"]}
    share = f"share/{stack.PACKAGE}"
    assert data_files[f"{share}/rviz"] == {"rviz/sparsevideonav.rviz"}
    assert data_files[f"{share}/foxglove"] == {"foxglove/sparsevideonav.json"}
    requirements = (REPO / "requirements.txt").read_text(encoding="utf-8")
    assert "\nfoxglove-sdk==" in requirements and "\nros-jazzy-visualization-msgs==" in requirements
