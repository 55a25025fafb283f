"""Node processes fail safe (real rclpy over loopback DDS, the runner's command lines).

* a node that refuses its configuration (unknown policy, bad camera source, bad value, unknown key
  in a params file or -p) exits 2 after exactly one FATAL line naming the cause;
* the shipped params files still start every node, also with junk in an inactive policy block;
* a double Ctrl-C (two SIGINTs 30-100 ms apart, terminal and launch both signalling) ends every
  node with exit 0, after the bridge stopped the robot;
* frames before odometry give the policy state waiting_odometry, without an error.
"""
from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import cv2
import numpy as np
import pytest
from sensor_msgs.msg import CompressedImage
from std_msgs.msg import Header

from graph_helpers import STRAIGHT_ROUTE, logs, moving, start_graph, wait_until, write_params
from sparsevideonav_ros import stack
from sparsevideonav_ros.nodes import common
from sparsevideonav_ros.tools.launch import node_command
from sparsevideonav_ros.tools.monitor import GraphMonitor, spin_for

FATAL_LINE = re.compile(r"^\[FATAL\] \[[0-9.]+\] \[[\w/]+\]: refusing to start: (.*)$", re.MULTILINE)


@pytest.fixture
def monitor(ros_context):
    node = GraphMonitor("fail_safe_monitor")
    yield node
    node.destroy_node()


def run_to_exit(process: stack.ProcessSpec, timeout_s: float = 120.0) -> subprocess.CompletedProcess:
    """Run one node process to its end; stdout and stderr together, as a terminal or `ros2 launch` shows them."""
    env = stack.loopback_environment(int(os.environ["ROS_DOMAIN_ID"]))
    env["PYTHONPATH"] = str(stack.share_dir())
    return subprocess.run(node_command(process), env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                          text=True, timeout=timeout_s)


def node_process(launch_name: str, node: str, arguments: dict | None = None,
                 parameters: dict | None = None) -> stack.ProcessSpec:
    (process,) = [p for p in stack.plan_processes(launch_name, arguments or {}) if p.node == node]
    process.parameters.update(parameters or {})
    return process


def assert_refused_once(result: subprocess.CompletedProcess, *expected: str) -> str:
    """Exit 2 and exactly one FATAL line, which holds every ``expected`` text; returns that line."""
    assert result.returncode == 2, result.stdout
    reasons = FATAL_LINE.findall(result.stdout)
    assert len(reasons) == 1, result.stdout
    assert result.stdout.count("refusing to start") == 1, result.stdout  # not repeated in another form
    for text in expected:
        assert text in reasons[0], (text, result.stdout)
    return reasons[0]


@pytest.mark.parametrize("case", ["unknown policy", "bad camera source", "bad parameter value"])
def test_refused_start_prints_one_fatal_line_and_exits_2(case):
    process, expected = {
        "unknown policy": (node_process("policy", "policy_node", {"policy": "nosuch"}),
                           ("unknown policy 'nosuch'", "scripted")),
        "bad camera source": (node_process("robot", "camera_node", {"camera": "webcam"}), ("'webcam'", "synthetic")),
        "bad parameter value": (node_process("robot", "go2_bridge_node", parameters={"cmd_timeout_s": -1.0}),
                                ("cmd_timeout_s",)),
    }[case]
    assert_refused_once(run_to_exit(process), *expected)


def test_unknown_key_in_a_params_file_stops_the_bridge_naming_the_nearest_name(tmp_path):
    # a misspelled speed limit must not fall back to the default limit silently
    params = write_params(tmp_path / "site.yaml", {"go2_bridge_node": {"max_vxx": 0.1}})
    process = node_process("robot", "go2_bridge_node", {"params_file": params, "robot": "sim"})
    reason = assert_refused_once(run_to_exit(process), "'max_vxx'", "did you mean 'max_vx'?")
    assert "max_vy" not in reason  # only the nearest name is suggested
    # the same key as a -p override
    process = node_process("robot", "go2_bridge_node", {"robot": "sim"}, {"max_vxx": 0.1})
    assert_refused_once(run_to_exit(process), "'max_vxx'", "did you mean 'max_vx'?")


def test_unknown_key_in_the_active_policy_block_stops_the_policy_node(tmp_path):
    # sparsevideonav with checkpoint tiny builds a tiny model first (cached for the test run)
    params = write_params(tmp_path / "site.yaml", {"policy_node": {"sparsevideonav": {"sampler_step": 4}}})
    process = node_process("policy", "policy_node", {"params_file": params, "policy": "sparsevideonav"})
    assert_refused_once(run_to_exit(process, 300.0), "'sparsevideonav.sampler_step'",
                        "did you mean 'sparsevideonav.sampler_steps'?")


def test_shipped_params_start_every_node_also_with_junk_in_an_inactive_policy_block(tmp_path, monitor):
    # The block of a policy that does not run is not read; it is checked once that policy is chosen
    # (test above). Every node must be up: each publishes its status.
    overrides = {"policy_node": {"sparsevideonav": {"sampler_step": 4}, "status_rate_hz": 10.0}}
    runner = start_graph(tmp_path, arguments={"policy": "scripted", "camera": "synthetic", "robot": "sim"},
                         overrides=overrides)
    try:
        topics = ("policy/status", "controller/status", "go2/status")
        assert wait_until(lambda: all(t in monitor.record.status for t in topics) and monitor.record.frames,
                          60, monitor), (monitor.record.status.keys(), runner.exited(), logs(tmp_path))
        assert not runner.exited(), logs(tmp_path)
    finally:
        codes = runner.stop()
    assert all(code == 0 for code in codes.values()), (codes, logs(tmp_path))
    assert "refusing to start" not in logs(tmp_path)


def test_double_sigint_ends_every_node_with_exit_0_after_the_robot_stopped(tmp_path, monitor):
    runner = start_graph(tmp_path, arguments={"policy": "scripted", "camera": "synthetic", "robot": "sim"},
                         overrides={"policy_node": {"scripted": {"waypoints": STRAIGHT_ROUTE}}})
    children = runner.children
    try:
        assert wait_until(lambda: monitor.record.odom and moving(monitor.record.odom[-1]), 60, monitor), \
            (runner.exited(), logs(tmp_path))
        # Ctrl-C in a terminal signals every process of the group at once; `ros2 launch` then
        # signals each node again, 30-100 ms later.
        second_after_s = {"camera_node": 0.03, "policy_node": 0.05, "controller_node": 0.075, "go2_bridge_node": 0.1}
        first = time.monotonic()
        for name in second_after_s:
            children[name].send_signal(signal.SIGINT)
        for name, delay in sorted(second_after_s.items(), key=lambda item: item[1]):
            time.sleep(max(0.0, first + delay - time.monotonic()))
            children[name].send_signal(signal.SIGINT)
        codes = {name: child.wait(timeout=60) for name, child in children.items()}
    finally:
        runner.stop()
    text = logs(tmp_path)
    assert codes == {name: 0 for name in second_after_s}, (codes, text)
    bridge_log = (tmp_path / "logs" / "go2_bridge_node.log").read_text()
    assert "shutdown: robot stopped" in bridge_log, bridge_log
    assert "Traceback" not in text and "KeyboardInterrupt" not in text, text


def jpeg_frame(monitor) -> CompressedImage:
    ok, data = cv2.imencode(".jpg", np.full((48, 64, 3), 128, np.uint8))
    assert ok
    header = Header(frame_id="camera_link", stamp=monitor.get_clock().now().to_msg())
    return CompressedImage(header=header, format="jpeg", data=data.tobytes())


def test_frames_before_odometry_give_waiting_odometry_not_an_error(tmp_path, monitor):
    runner = start_graph(tmp_path, nodes=("policy_node",),
                         overrides={"policy_node": {"policy": "scripted", "status_rate_hz": 10.0}})
    publisher = monitor.create_publisher(CompressedImage, "camera/image_raw/compressed",
                                         common.topic_qos("camera/image_raw/compressed"))

    def status() -> dict:
        return monitor.record.status.get("policy/status", {})

    try:
        assert wait_until(lambda: publisher.get_subscription_count() > 0, 60, monitor), logs(tmp_path)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and not (status().get("state") == "waiting_odometry"
                                                   and int(status().get("plans", "0")) >= 3):
            publisher.publish(jpeg_frame(monitor))  # no odometry anywhere: no bridge runs
            spin_for(monitor, 0.1)
        assert status().get("state") == "waiting_odometry", (status(), logs(tmp_path))
        assert status()["_level"] != common.ERROR and status()["last_error"] == "" and status()["errors"] == "0"
        # the plans say "stand still": empty paths
        assert monitor.record.plans and all(len(plan[3]) == 0 for plan in monitor.record.plans), monitor.record.plans[-3:]
        assert not runner.exited()
    finally:
        runner.stop()
    assert "[ERROR]" not in logs(tmp_path), logs(tmp_path)


BUSY_WORKER_NODE = r'''
import sys, threading, torch
from sparsevideonav_ros.nodes import common

class BusyNode(common.StackNode):
    """Stands for policy_node shutting down while its worker is inside a long torch step."""
    def __init__(self):
        super().__init__("busy_worker_node")
        self.started = threading.Event()
        self.worker = threading.Thread(target=self.work, name="policy-worker", daemon=True)
        self.worker.start()
        self.started.wait()
        print("worker busy", flush=True)

    def work(self):
        a = torch.randn(512, 512)
        self.started.set()
        while True:  # never returns, like a 60 s step on a CPU
            a = torch.tanh(a @ a)

    def busy_threads(self):
        return [self.worker.name] if self.worker.is_alive() else []

sys.exit(common.run_node(BusyNode, sys.argv))
'''


def test_a_node_whose_worker_is_in_a_long_step_exits_0_on_sigint(tmp_path):
    """run_node leaves without finalizing the interpreter when a worker thread is still busy (a torch step
    at finalization can abort the process with -6), after the node's shutdown work is done."""
    script = tmp_path / "busy_node.py"
    script.write_text(BUSY_WORKER_NODE)
    env = stack.loopback_environment(int(os.environ["ROS_DOMAIN_ID"]))
    env["PYTHONPATH"] = str(Path(stack.__file__).resolve().parent.parent)
    process = subprocess.Popen([sys.executable, str(script), "--ros-args", "-r", "__node:=busy_worker_node"],
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env)
    try:
        lines = iter(process.stdout.readline, "")
        assert any(line.strip() == "worker busy" for line in lines)
        time.sleep(0.5)
        process.send_signal(signal.SIGINT)
        output, _ = process.communicate(timeout=30)
    finally:
        if process.poll() is None:
            process.kill()
    assert process.returncode == 0, output
