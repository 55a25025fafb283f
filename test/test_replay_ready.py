"""The replay's bag player (tools/play.py --wait-for-ready) waits for the policy, counts what it played before the
policy was ready, and writes a replay summary (loopback DDS: the player as a process, a fake policy status here)."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from sparsevideonav_ros import bags, stack
from test_evaluate import write_episode_bag

REPO = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def short_bag(tmp_path_factory) -> Path:
    return write_episode_bag(tmp_path_factory.mktemp("replay_ready") / "episode", seconds=1.0)


class FakePolicy:
    """Publishes policy/status (state 'loading' until ``ready()``), records the frames and /clock it receives."""

    def __init__(self) -> None:
        from diagnostic_msgs.msg import DiagnosticArray
        from rclpy.node import Node
        from rosgraph_msgs.msg import Clock
        from sensor_msgs.msg import CompressedImage

        from sparsevideonav_ros.nodes import common

        self.node = Node("fake_policy_status")
        self.common = common
        self.status_pub = self.node.create_publisher(DiagnosticArray, "/policy/status", common.topic_qos("policy/status"))
        self.state = "loading"
        self.events: list = []  # ("ready" | "frame" | "clock", value) in arrival order
        self.lock = threading.Lock()
        self.node.create_subscription(CompressedImage, "/camera/image_raw/compressed",
                                      lambda msg: self.note("frame", common.stamp_to_seconds(msg.header.stamp)),
                                      common.topic_qos("camera/image_raw/compressed"))
        self.node.create_subscription(Clock, "/clock", lambda msg: self.note("clock", common.stamp_to_seconds(msg.clock)),
                                      10)
        self.node.create_timer(0.1, self.publish_status)

    def note(self, kind: str, value) -> None:
        with self.lock:
            self.events.append((kind, value))

    def publish_status(self) -> None:
        self.status_pub.publish(self.common.diagnostics(self.node, "policy_node: fake", 0, self.state,
                                                        {"policy": "fake", "state": self.state}))

    def ready(self) -> None:
        self.note("ready", None)
        self.state = "waiting_frames"


def run_player(bag: Path, report_dir: Path, fake: FakePolicy, ready_after_s: float, timeout_s: float):
    import rclpy

    env = stack.loopback_environment(int(os.environ["ROS_DOMAIN_ID"]))
    env["PYTHONPATH"] = str(REPO)
    command = [sys.executable, "-m", "sparsevideonav_ros.tools.play", str(bag), "--delay", "0.2",
               "--wait-for-ready", "/policy/status", "--ready-timeout", str(timeout_s), "--report-dir", str(report_dir),
               "--policy", "fake", "--topics", "/camera/image_raw/compressed",
               "--ros-args", "-r", f"__node:={stack.PLAYER_NAME}"]
    process = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    started = time.monotonic()
    try:
        while process.poll() is None and time.monotonic() - started < 120:
            rclpy.spin_once(fake.node, timeout_sec=0.02)
            if ready_after_s >= 0 and fake.state == "loading" and time.monotonic() - started > ready_after_s:
                fake.ready()
        output = process.communicate(timeout=30)[0]
    finally:
        if process.poll() is None:
            process.kill()
    return process.returncode, output


def summary_of(output: str) -> dict:
    (line,) = [l for l in output.splitlines() if l.startswith("replay summary: ")]
    return json.loads(Path(line.split(": ", 1)[1]).read_text())


def test_the_player_waits_for_the_policy_then_plays_everything(short_bag, tmp_path, ros_context):
    fake = FakePolicy()
    try:
        # 'loading' for a while (the player must not play meanwhile), then ready
        code, output = run_player(short_bag, tmp_path, fake, ready_after_s=4.0, timeout_s=60.0)
    finally:
        fake.node.destroy_node()
    assert code == 0, output
    kinds = [kind for kind, _ in fake.events]
    assert "ready" in kinds and "frame" in kinds, output
    assert kinds.index("ready") < kinds.index("frame")  # no frame before the policy was ready
    # /clock was held while it waited (on the bag's timeline, before its start), never went backwards
    reader = bags.open_bag(short_bag)
    bag_start = reader.start_time / 1e9
    reader.close()
    clock = [value for kind, value in fake.events if kind == "clock"]
    waiting_clock = [value for kind, value in fake.events[:kinds.index("ready")] if kind == "clock"]
    assert len(waiting_clock) > 10 and all(value < bag_start for value in waiting_clock)
    assert all(b >= a for a, b in zip(clock, clock[1:]))
    summary = summary_of(output)
    assert summary["policy_ready"] is True and summary["frames_played_before_policy_ready"] == 0
    assert summary["frames_played"] == 15 and summary["frames_in"] == 15
    assert summary["waited_for_policy_s"] > 0 and summary["bag"] == str(short_bag.resolve())
    assert summary["policy_status"]["state"] == "waiting_frames"
    for key in ("plans_out", "cmd_vel_nonzero", "robot_path_length_m", "plan_latency_ms"):  # the demo's summary
        assert key in summary
    (run,) = tmp_path.glob("*-replay-fake")
    assert (run / "trajectory.png").is_file() and (run / "summary.json").is_file()


def test_a_policy_that_never_gets_ready_is_waited_for_until_the_timeout(short_bag, tmp_path, ros_context):
    fake = FakePolicy()
    try:
        code, output = run_player(short_bag, tmp_path, fake, ready_after_s=-1, timeout_s=3.0)
    finally:
        fake.node.destroy_node()
    assert code == 0, output
    # (on a loaded machine discovery may take longer than the wait: then no status was received at all)
    assert "did not report ready within 3 s" in output, output
    assert "policy/status state 'loading'" in output or "no policy/status received" in output, output
    summary = summary_of(output)
    assert summary["policy_ready"] is False
    assert summary["frames_played_before_policy_ready"] == summary["frames_played"] == 15


def test_the_player_refuses_a_status_topic_that_is_none(short_bag):
    env = stack.loopback_environment(int(os.environ["ROS_DOMAIN_ID"]))
    env["PYTHONPATH"] = str(REPO)
    result = subprocess.run([sys.executable, "-m", "sparsevideonav_ros.tools.play", str(short_bag),
                             "--wait-for-ready", "/odom"], env=env, capture_output=True, text=True, timeout=60)
    assert result.returncode == 2 and "takes a policy/status topic" in result.stderr
    assert "Traceback" not in result.stderr


def launch_runner(*arguments: str) -> subprocess.CompletedProcess:
    env = stack.loopback_environment(int(os.environ["ROS_DOMAIN_ID"]))
    env["PYTHONPATH"] = str(REPO)
    return subprocess.run([sys.executable, "-m", "sparsevideonav_ros.tools.launch", "replay", *arguments,
                           "--duration", "5"], env=env, capture_output=True, text=True, timeout=60)


def test_replay_refuses_unusable_bags_and_params_files_in_one_line(short_bag, tmp_path):
    foreign = tmp_path / "notes.mcap"
    foreign.write_text("not a bag")
    bad_yaml = tmp_path / "site.yaml"
    bad_yaml.write_text("/**/policy_node:\n  ros__parameters: [\n")
    listed = tmp_path / "list.yaml"
    listed.write_text("- a\n- b\n")
    cases = [((f"bag:={tmp_path / 'missing'}",), "does not exist"),
             ((f"bag:={foreign}",), "not an MCAP file"),
             ((f"bag:={short_bag}", f"params_file:={bad_yaml}"), "is not valid YAML"),
             ((f"bag:={short_bag}", f"params_file:={tmp_path / 'nope.yaml'}"), "No such file"),
             ((f"bag:={short_bag}", f"params_file:={listed}"), "must hold '<node>: ros__parameters"),
             ((f"bag:={short_bag}", "replay_ready_timeout:=-1"), "replay_ready_timeout")]
    for arguments, message in cases:
        result = launch_runner(*arguments)
        assert result.returncode == 2, (arguments, result.stderr[-2000:])
        assert "Traceback" not in result.stderr and message in result.stderr, (arguments, result.stderr[-2000:])
        (line,) = [l for l in result.stderr.splitlines() if l.startswith("error: ")]


def test_a_node_that_refuses_its_configuration_ends_the_replay_with_exit_2(short_bag, tmp_path):
    site = tmp_path / "site.yaml"
    site.write_text("/**/policy_node:\n  ros__parameters:\n    scripted:\n      no_such_parameter: 1\n")
    result = launch_runner(f"bag:={short_bag}", f"params_file:={site}", f"replay_report_dir:={tmp_path / 'runs'}")
    assert result.returncode == 2, result.stderr[-3000:]
    assert "[FATAL]" in result.stderr and "no_such_parameter" in result.stderr, result.stderr[-3000:]
    assert "policy_node refused its configuration (exit 2" in result.stderr


def test_under_ros2_launch_ros2_bag_play_starts_once_the_policy_is_ready(short_bag, tmp_path, ros_context):
    """replay.launch.py runs `ros2 bag play` behind tools/play.py --then-run: here a stand-in command that
    notes when it started and with which arguments."""
    import rclpy

    started_file = tmp_path / "started.json"
    stand_in = tmp_path / "ros2"
    stand_in.write_text("#!" + sys.executable + "\nimport json, sys, time\n"
                        f"open({str(started_file)!r}, 'w').write(json.dumps([time.time(), sys.argv[1:]]))\n")
    stand_in.chmod(0o755)
    fake = FakePolicy()
    env = stack.loopback_environment(int(os.environ["ROS_DOMAIN_ID"]))
    env["PYTHONPATH"] = str(REPO)
    command = [sys.executable, "-m", "sparsevideonav_ros.tools.play", str(short_bag), "--delay", "0.5",
               "--wait-for-ready", "/policy/status", "--ready-timeout", "60", "--report-dir", str(tmp_path),
               "--policy", "fake", "--then-run", str(stand_in), "bag", "play", str(short_bag), "--clock", "100"]
    process = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    ready_at = None
    try:
        started = time.monotonic()
        while process.poll() is None and time.monotonic() - started < 120:
            rclpy.spin_once(fake.node, timeout_sec=0.02)
            if ready_at is None and time.monotonic() - started > 3.0:
                ready_at = time.time()
                fake.ready()
        output = process.communicate(timeout=30)[0]
    finally:
        if process.poll() is None:
            process.kill()
        fake.node.destroy_node()
    assert process.returncode == 0, output
    ran_at, arguments = json.loads(started_file.read_text())
    assert ready_at is not None and ran_at > ready_at, output
    assert arguments == ["bag", "play", str(short_bag), "--clock", "100"]
    # nothing was played before ready: no frame reached the graph at all (the stand-in plays nothing)
    assert [kind for kind, _ in fake.events].count("frame") == 0
    summary = summary_of(output)
    assert summary["policy_ready"] is True and summary["frames_played_before_policy_ready"] == 0
    assert summary["messages_played"] == {}


def test_then_run_needs_wait_for_ready(short_bag):
    result = subprocess.run([sys.executable, "-m", "sparsevideonav_ros.tools.play", str(short_bag), "--then-run",
                             "true"], env=dict(os.environ, PYTHONPATH=str(REPO)), capture_output=True, text=True,
                            timeout=60)
    assert result.returncode == 2 and "--then-run needs --wait-for-ready" in result.stderr
