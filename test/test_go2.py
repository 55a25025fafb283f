"""Go2 backend through the real unitree_sdk2py over real DDS, against a fake Go2 on the loopback.

The fake (sparsevideonav_ros/robot/fake_go2.py) is a separate process built with the SDK itself:
it serves the sport API, records every request to a JSON-lines file, integrates the commanded
velocity and publishes SportModeState. The bridge runs as its real node process (robot:=go2).
Unitree channels use interface 'lo' and a DDS domain of this test run's own (derived from the
run's ROS_DOMAIN_ID, outside the ROS range so the two DDS stacks never share a domain).
"""
from __future__ import annotations

import json
import math
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest
from geometry_msgs.msg import Twist
from std_srvs.srv import Trigger

from graph_helpers import start_graph, wait_until
from sparsevideonav_ros import configs, stack
from sparsevideonav_ros.nodes import common
from sparsevideonav_ros.robot import go2, unitree_sdk
from sparsevideonav_ros.robot.base import RobotError
from sparsevideonav_ros.tools.monitor import GraphMonitor, spin_for

# ROS uses 1..100 in tests (conftest); the unitree channels get 111..210: one of this run's own.
UNITREE_DOMAIN = 111 + int(os.environ["ROS_DOMAIN_ID"]) % 100
MAX_VX, MAX_WZ = 0.6, 1.2  # params/go2_bridge.yaml clamps


# -- no DDS: return codes, state conversion, configuration ------------------------------------------

def test_sdk_imports_through_the_workaround_and_codes_have_names():
    sdk = unitree_sdk.load()
    assert sdk.sport_api.SPORT_API_ID_MOVE == 1008 and sdk.sport_api.SPORT_API_ID_STOPMOVE == 1003
    assert unitree_sdk.code_name(3102) == "3102 RPC_ERR_CLIENT_SEND"
    assert unitree_sdk.code_name(3104) == "3104 RPC_ERR_CLIENT_API_TIMEOUT"
    assert unitree_sdk.code_name(4202) == "4202 SPORT_ERR_SERVER_NOT_INIT"
    assert unitree_sdk.code_name(1234) == "1234 UNKNOWN_CODE"
    internal = __import__("unitree_sdk2py.rpc.internal", fromlist=["x"])
    for name in dir(internal):  # every SDK error constant is named, with the SDK's own name
        if name.startswith("RPC_ERR_"):
            assert unitree_sdk.RETURN_CODES[getattr(internal, name)] == name


def test_state_conversion_uses_imu_yaw_and_rotates_velocity_into_the_body():
    sdk = unitree_sdk.load()
    msg = sdk.default_sport_mode_state()
    msg.position[0], msg.position[1] = 1.5, -2.0
    msg.imu_state.rpy[2] = math.pi / 2  # facing +y in odom
    msg.velocity[0], msg.velocity[1] = 0.0, 0.4  # moving +y in odom = forward in the body
    msg.yaw_speed, msg.mode, msg.error_code = 0.3, 3, 0
    pose, velocity, info = go2.state_from_message(msg)
    np.testing.assert_allclose(pose, [1.5, -2.0, math.pi / 2], atol=1e-6)
    np.testing.assert_allclose(velocity, [0.4, 0.0, 0.3], atol=1e-6)
    assert info["robot_mode"] == 3 and info["robot_error_code"] == 0


def test_missing_interface_is_a_clear_error():
    with pytest.raises(RobotError, match=r"'nosuch9' does not exist on this machine; available: .*lo"):
        go2.check_interface("nosuch9")
    with pytest.raises(RobotError, match="not a valid interface name"):
        go2.check_interface('eth0"/><x')
    robot = go2.Go2Robot("lo")
    with pytest.raises(RobotError, match="not started"):
        robot.send_velocity(0.1, 0.0, 0.0, 0.0)
    with pytest.raises(RobotError, match="not started"):
        robot.run_action("stand_up", 0.0).result(timeout=1)
    assert configs.BridgeNodeConfig(backend="go2").go2_network_interface == "eth0"


# -- the fake Go2 process ----------------------------------------------------------------------

class FakeGo2Process:
    def __init__(self, tmp_path: Path, codes: tuple[str, ...] = ()) -> None:
        self.record = tmp_path / "fake_go2.jsonl"
        command = [sys.executable, "-m", "sparsevideonav_ros.robot.fake_go2", "--interface", "lo",
                   "--domain", str(UNITREE_DOMAIN), "--rate", "50", "--record", str(self.record)]
        for code in codes:
            command += ["--code", code]
        self.log = tmp_path / "fake_go2.log"
        self.ready = threading.Event()
        self.process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                                        env=stack.loopback_environment(int(os.environ["ROS_DOMAIN_ID"])))
        threading.Thread(target=self._pump, daemon=True).start()

    def _pump(self) -> None:
        with open(self.log, "w", encoding="utf-8") as log:
            for line in self.process.stdout:
                log.write(line)
                log.flush()
                if "fake Go2 ready" in line:
                    self.ready.set()

    def entries(self) -> list[dict]:
        if not self.record.exists():
            return []
        lines = self.record.read_text(encoding="utf-8").splitlines()
        return [json.loads(line) for line in lines if line.strip().endswith("}")]

    def requests(self, since: float = 0.0) -> list[dict]:
        return [e for e in self.entries() if e["kind"] == "request" and e["t"] >= since]

    def states(self) -> list[dict]:
        return [e for e in self.entries() if e["kind"] == "state"]

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGCONT)
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


@pytest.fixture
def monitor(ros_context):
    node = GraphMonitor("test_go2_monitor")
    yield node
    node.destroy_node()


BRIDGE_OVERRIDES = {"go2_network_interface": "lo", "go2_domain_id": UNITREE_DOMAIN, "go2_timeout_s": 0.5,
                    "go2_state_timeout_s": 0.4, "rate_hz": 50.0}


def start_bridge(tmp_path: Path):
    return start_graph(tmp_path, nodes=("go2_bridge_node",), arguments={"robot": "go2"},
                       overrides={"go2_bridge_node": BRIDGE_OVERRIDES})


def go2_status(monitor) -> dict:
    return monitor.record.status.get("go2/status", {})


def call_async(monitor, name: str):
    client = monitor.create_client(Trigger, name)
    assert client.wait_for_service(timeout_sec=10), f"service {name} not available"
    return client.call_async(Trigger.Request())


def call(monitor, name: str, timeout_s: float = 5.0):
    future = call_async(monitor, name)
    assert wait_until(future.done, timeout_s, monitor), f"service {name} did not answer in {timeout_s} s"
    return future.result()


class CmdVel:
    def __init__(self, monitor) -> None:
        self.monitor = monitor
        self.pub = monitor.create_publisher(Twist, "cmd_vel", common.topic_qos("cmd_vel"))

    def send(self, vx: float, vy: float = 0.0, wz: float = 0.0, seconds: float = 0.5, until=None) -> None:
        end = time.monotonic() + seconds
        while time.monotonic() < end and not (until and until()):
            msg = Twist()
            msg.linear.x, msg.linear.y, msg.angular.z = vx, vy, wz
            self.pub.publish(msg)
            spin_for(self.monitor, 0.05)


def moves(requests):
    return [r for r in requests if r["api_id"] == 1008]


def test_bridge_drives_the_fake_go2_over_dds(tmp_path, monitor):
    fake = FakeGo2Process(tmp_path, codes=("1001=4202",))  # Damp answers SPORT_ERR_SERVER_NOT_INIT
    runner = start_bridge(tmp_path)
    cmd = CmdVel(monitor)
    try:
        assert fake.ready.wait(20), fake.log.read_text()
        assert wait_until(lambda: go2_status(monitor).get("backend") == "unitree" and len(monitor.record.odom) > 5
                          and cmd.pub.get_subscription_count() > 0, 30, monitor), runner_logs(tmp_path)

        # cmd_vel -> Move(vx, vy, vyaw) at the bridge rate, then StopMove on the watchdog timeout
        t0 = time.time()
        cmd.send(0.3, 0.1, 0.2, seconds=1.5)
        t_last_cmd = time.time()
        spin_for(monitor, 1.0)  # > cmd_timeout_s: the watchdog stops the robot
        sent = fake.requests(since=t0)
        walk = moves(sent)
        assert walk and all(m["parameter"] == {"x": 0.3, "y": 0.1, "z": 0.2} for m in walk), walk[:3]
        times = [m["t"] for m in walk]
        rate = (len(times) - 1) / (times[-1] - times[0])
        assert 30.0 <= rate <= 60.0, f"Move rate {rate:.1f} Hz, bridge rate_hz is 50"  # loaded 2-core CI
        after = [r for r in sent if r["t"] > times[-1]]
        assert [r["name"] for r in after] == ["StopMove"], after
        assert after[0]["t"] - t_last_cmd < 0.5 + 0.3, after  # cmd_timeout_s 0.5 + a control period + transport

        # odometry follows the fake's state: pose, heading from the IMU, body velocity
        states = fake.states()
        final = states[-1]
        assert math.hypot(final["x"], final["y"]) > 0.3  # it did walk
        pose = monitor.latest_pose()
        assert np.allclose(pose, [final["x"], final["y"], final["yaw"]], atol=0.03), (pose, final)
        walking = [o for o in monitor.record.odom if t0 + 0.5 < o[0] < t_last_cmd - 0.1]
        body = np.median(np.array([o[3] for o in walking]), axis=0)
        np.testing.assert_allclose(body, [0.3, 0.1, 0.2], atol=0.03)
        status = go2_status(monitor)
        assert status["robot"] == "ok" and status["robot_mode"] in ("1", "3") and "Move=" in status["sdk_calls"]

        # clamps: what reaches the robot is within the bridge limits
        t1 = time.time()
        cmd.send(5.0, 0.0, 9.0, seconds=0.5)
        clamped = moves(fake.requests(since=t1))
        assert clamped and all(m["parameter"] == {"x": MAX_VX, "y": 0.0, "z": MAX_WZ} for m in clamped)

        # e-stop while commands keep coming: one StopMove, no Move after it
        monitor.send_estop(True)
        t_estop = time.time()
        cmd.send(0.3, seconds=1.0)
        after_estop = [r["name"] for r in fake.requests(since=t_estop)]
        # (one Move of the control step running when the e-stop was published may still arrive first)
        assert after_estop in (["StopMove"], ["Move", "StopMove"]), after_estop
        stop_move = [r for r in fake.requests(since=t_estop) if r["name"] == "StopMove"][0]
        assert stop_move["t"] - t_estop < 0.3
        assert call(monitor, "estop/release").success

        # posture services reach the robot; a robot error code comes back by name
        for service, api_id in (("go2/stand_down", 1005), ("go2/stand_up", 1004), ("go2/balance_stand", 1002),
                                ("go2/stop_move", 1003)):
            t_call = time.time()
            response = call(monitor, service)
            assert response.success, (service, response.message)
            assert [r["api_id"] for r in fake.requests(since=t_call)] == [api_id], service
        response = call(monitor, "go2/damp")
        assert not response.success and "4202 SPORT_ERR_SERVER_NOT_INIT" in response.message
        assert wait_until(lambda: "4202 SPORT_ERR_SERVER_NOT_INIT" in go2_status(monitor).get("last_error", ""),
                          3, monitor)

        # robot state lost (fake frozen): error status, zero command (no Move), StopMove times out by name
        cmd.send(0.3, seconds=0.6)
        fake.process.send_signal(signal.SIGSTOP)
        t_lost = time.time()
        cmd.send(0.3, seconds=3.0, until=lambda: go2_status(monitor).get("state") == "robot_error")
        assert go2_status(monitor).get("state") == "robot_error", go2_status(monitor)
        assert "robot state lost" in go2_status(monitor)["robot"]
        moves_at_error = int(go2_status(monitor)["moves_sent"])
        cmd.send(0.3, seconds=1.5)  # commands keep coming while the robot is silent
        status = go2_status(monitor)
        assert status["state"] == "robot_error" and int(status["moves_sent"]) <= moves_at_error + 1
        assert "StopMove() failed: 3104 RPC_ERR_CLIENT_API_TIMEOUT" in status["last_error"], status
        assert time.time() - t_lost < 8
        odom_count = len(monitor.record.odom)
        spin_for(monitor, 0.3)
        assert len(monitor.record.odom) == odom_count  # no stale odometry while the state is lost
        fake.process.send_signal(signal.SIGCONT)
        cmd.send(0.3, seconds=5.0, until=lambda: go2_status(monitor).get("state") == "moving")
        assert go2_status(monitor)["state"] == "moving" and len(monitor.record.odom) > odom_count, go2_status(monitor)

        # SIGTERM while walking: the last request the robot gets is StopMove
        cmd.send(0.3, seconds=0.3)
        bridge = runner.children["go2_bridge_node"]
        bridge.send_signal(signal.SIGTERM)
        assert bridge.wait(timeout=10) == 0
        time.sleep(0.2)
        assert fake.requests()[-1]["name"] == "StopMove"
    finally:
        runner.stop()
        fake.stop()


def test_no_robot_gives_a_clear_error_without_hanging(tmp_path, monitor):
    runner = start_bridge(tmp_path)  # nothing answers on this domain
    try:
        assert wait_until(lambda: go2_status(monitor).get("state") == "robot_error", 30, monitor), runner_logs(tmp_path)
        assert "no robot state" in go2_status(monitor)["robot"]
        assert go2_status(monitor)["robot"].count("lo") >= 1  # names the interface it listens on
        # the StopMove sent on the error edge fails with the SDK's "nobody listening" code, by name
        assert wait_until(lambda: "3102 RPC_ERR_CLIENT_SEND" in go2_status(monitor).get("last_error", ""), 5, monitor)
        # a posture call fails after the SDK timeout, and the node keeps serving meanwhile
        t0 = time.monotonic()
        pending = call_async(monitor, "go2/stand_up")
        engage = call_async(monitor, "estop/engage")
        assert wait_until(engage.done, 5, monitor)
        t_engage = time.monotonic() - t0
        assert wait_until(pending.done, 5, monitor)
        t_stand = time.monotonic() - t0
        assert engage.result().success and t_engage < t_stand
        assert not pending.result().success and "3102 RPC_ERR_CLIENT_SEND" in pending.result().message
        assert not monitor.record.odom  # nothing invented
        assert runner.children["go2_bridge_node"].poll() is None  # still up
        runner.children["go2_bridge_node"].send_signal(signal.SIGTERM)
        assert runner.children["go2_bridge_node"].wait(timeout=10) == 0
    finally:
        runner.stop()
    log = runner_logs(tmp_path)
    assert "no robot state" in log and "3102 RPC_ERR_CLIENT_SEND" in log


def test_bad_interface_refuses_to_start(tmp_path):
    overrides = dict(BRIDGE_OVERRIDES, go2_network_interface="nosuch9")
    runner = start_graph(tmp_path, nodes=("go2_bridge_node",), arguments={"robot": "go2"},
                         overrides={"go2_bridge_node": overrides})
    try:
        assert runner.children["go2_bridge_node"].wait(timeout=30) == 2
    finally:
        runner.stop()
    assert "'nosuch9' does not exist on this machine" in runner_logs(tmp_path)


def runner_logs(tmp_path: Path) -> str:
    return "\n".join(p.read_text() for p in sorted((tmp_path / "logs").glob("*.log")) if p.exists())


@pytest.mark.parametrize("camera,robot", [("d455", "go2"), ("osmo", "sim")])
def test_robot_launch_with_real_camera_and_robot_presets(tmp_path, monitor, camera, robot):
    """robot.launch.py camera:=osmo|d455 robot:=go2|sim: the camera, controller and bridge processes
    of the launch file, on recordings/videos and the fake Go2 instead of hardware."""
    from sensor_msgs.msg import CompressedImage
    from diagnostic_msgs.msg import DiagnosticArray
    from sparsevideonav_ros.sources.file import write_video
    from sparsevideonav_ros.sources.realsense import write_recording
    from sparsevideonav_ros.tools.launch import GraphRunner
    from graph_helpers import write_params

    frames = [np.full((240, 424, 3), 10 * i, np.uint8) for i in range(15)]
    if camera == "d455":
        camera_path = tmp_path / "d455.db3"
        write_recording(camera_path, frames, fps=30)
        camera_params = {"width": 424, "height": 240}
    else:
        camera_path = tmp_path / "osmo.mp4"
        write_video(camera_path, [np.full((720, 1280, 3), 10 * i, np.uint8) for i in range(15)], fps=30.0)
        camera_params = {}
    fake = FakeGo2Process(tmp_path) if robot == "go2" else None
    params = write_params(tmp_path / "site.yaml", {"camera_node": dict(camera_params, rate_hz=10.0),
                                                   "go2_bridge_node": BRIDGE_OVERRIDES})
    processes = stack.plan_processes("robot", {"camera": camera, "camera_path": str(camera_path), "robot": robot,
                                               "params_file": params})
    assert [p.node for p in processes] == ["camera_node", "controller_node", "go2_bridge_node"]
    jpeg, camera_status = [], []
    monitor.create_subscription(CompressedImage, "camera/image_raw/compressed", jpeg.append,
                                common.topic_qos("camera/image_raw/compressed"))
    monitor.create_subscription(DiagnosticArray, "camera/status",
                                lambda m: camera_status.append(common.diagnostic_values(m)),
                                common.topic_qos("camera/status"))
    runner = GraphRunner(processes, env=stack.loopback_environment(int(os.environ["ROS_DOMAIN_ID"])),
                         log_dir=tmp_path / "logs").start()
    try:
        if fake is not None:
            assert fake.ready.wait(20), fake.log.read_text()
        assert wait_until(lambda: len(jpeg) >= 5 and camera_status and len(monitor.record.odom) >= 5
                          and "controller/status" in monitor.record.status
                          and go2_status(monitor).get("robot") == "ok", 40, monitor), runner_logs(tmp_path)
        assert not runner.exited(), runner_logs(tmp_path)
    finally:
        runner.stop()
        if fake is not None:
            fake.stop()
    assert camera_status[-1]["source"] == camera
    assert camera_status[-1]["state"] in ("streaming", "reconnecting")  # a 0.5 s clip restarts like a replugged camera
    assert go2_status(monitor)["backend"] == ("unitree" if robot == "go2" else "sim")
    if fake is not None:
        assert fake.states() and monitor.record.odom  # odometry came from the fake's SportModeState
