"""Go2 backend through the real unitree_sdk2py over real DDS, against a fake Go2 on the loopback.

The fake (sparsevideonav_ros/robot/fake_go2.py) is built with the SDK itself, as two processes: the
sport service (the SDK's RPC Server, honouring no-reply headers, with fault injection: error codes,
silent api ids) and the robot (posture state machine incl. Standing Lock, SportModeState). Every
request is logged on arrival by a tap reader, so "reached the robot" is measured at the robot. The
bridge runs as its real node process (robot:=go2) with the shipped go2_timeout_s /
go2_state_timeout_s / go2_link_timeout_s. Unitree channels use interface 'lo' and a DDS domain of
this test run's own (derived from the run's ROS_DOMAIN_ID, outside the ROS range).
"""
from __future__ import annotations

import json
import math
import os
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest
from geometry_msgs.msg import Twist
from nav_msgs.msg import Odometry
from rclpy.qos import DurabilityPolicy, HistoryPolicy, QoSProfile, ReliabilityPolicy
from std_msgs.msg import Bool
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


# -- the fake Go2 processes ---------------------------------------------------------------------

class FakeGo2Process:
    """The fake's launcher; ``service_pid`` / ``robot_pid`` are its two parts (freeze or kill either)."""

    def __init__(self, tmp_path: Path, codes: tuple[str, ...] = (), silent: tuple[str, ...] = ()) -> None:
        self.record = tmp_path / "fake_go2.jsonl"
        command = [sys.executable, "-m", "sparsevideonav_ros.robot.fake_go2", "--interface", "lo",
                   "--domain", str(UNITREE_DOMAIN), "--rate", "50", "--record", str(self.record)]
        for code in codes:
            command += ["--code", code]
        for api_id in silent:
            command += ["--silent", api_id]
        self.log = tmp_path / "fake_go2.log"
        self.ready = threading.Event()
        self.service_pid = self.robot_pid = None
        self.process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                                        env=stack.loopback_environment(int(os.environ["ROS_DOMAIN_ID"])))
        threading.Thread(target=self._pump, daemon=True).start()

    def _pump(self) -> None:
        with open(self.log, "w", encoding="utf-8") as log:
            for line in self.process.stdout:
                log.write(line)
                log.flush()
                found = re.search(r"sport service pid (\d+), robot state pid (\d+)", line)
                if found:
                    self.service_pid, self.robot_pid = int(found.group(1)), int(found.group(2))
                    self.ready.set()

    def entries(self, kind: str) -> list[dict]:
        if not self.record.exists():
            return []
        lines = self.record.read_text(encoding="utf-8").splitlines()
        return [entry for entry in (json.loads(line) for line in lines if line.strip().endswith("}"))
                if entry["kind"] == kind]

    def requests(self, since: float = 0.0, probes: bool = False) -> list[dict]:
        """Sport requests as they reached the robot; the bridge's api-version probes only when asked."""
        return [e for e in self.entries("request") if e["t"] >= since and (probes or e["api_id"] != PROBE_API)]

    def responses(self, since: float = 0.0) -> list[dict]:
        return [e for e in self.entries("response") if e["t"] >= since]

    def states(self) -> list[dict]:
        return self.entries("state")

    def stop(self) -> None:
        if self.process.poll() is None:
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


PROBE_API = unitree_sdk.API_ID_API_VERSION
BRIDGE_OVERRIDES = {"go2_network_interface": "lo", "go2_domain_id": UNITREE_DOMAIN}  # shipped timeouts
DEFAULTS = configs.BridgeNodeConfig()
ZERO = {"x": 0.0, "y": 0.0, "z": 0.0}
STOP_PAIR = [("Move", str(ZERO)), ("StopMove", "{}")]  # how the bridge stops a Go2: zero Move + StopMove


def start_bridge(tmp_path: Path, **overrides):
    return start_graph(tmp_path, nodes=("go2_bridge_node",), arguments={"robot": "go2"},
                       overrides={"go2_bridge_node": dict(BRIDGE_OVERRIDES, **overrides)})


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
        self.last_sent = 0.0

    def send(self, vx: float, vy: float = 0.0, wz: float = 0.0, seconds: float = 0.5, until=None) -> None:
        end = time.monotonic() + seconds
        while time.monotonic() < end and not (until and until()):
            msg = Twist()
            msg.linear.x, msg.linear.y, msg.angular.z = vx, vy, wz
            self.last_sent = time.time()
            self.pub.publish(msg)
            spin_for(self.monitor, 0.05)


def moves(requests, nonzero: bool = False):
    return [r for r in requests if r["api_id"] == 1008 and not (nonzero and r["parameter"] == ZERO)]


def first_stop(requests) -> dict:
    """The first zero Move or StopMove: what stops a Go2."""
    return next(r for r in requests if r["api_id"] == 1003 or (r["api_id"] == 1008 and r["parameter"] == ZERO))


def wait_ready(fake, monitor, cmd, tmp_path) -> None:
    assert fake.ready.wait(30), fake.log.read_text()
    assert wait_until(lambda: go2_status(monitor).get("robot") == "ok" and len(monitor.record.odom) > 5
                      and cmd.pub.get_subscription_count() > 0, 30, monitor), runner_logs(tmp_path)


def test_bridge_drives_the_fake_go2_over_dds(tmp_path, monitor):
    fake = FakeGo2Process(tmp_path, codes=("1001=4202",))  # Damp answers SPORT_ERR_SERVER_NOT_INIT
    runner = start_bridge(tmp_path)
    cmd = CmdVel(monitor)
    odometry = []
    monitor.create_subscription(Odometry, "odom", odometry.append, common.topic_qos("odom"))
    try:
        wait_ready(fake, monitor, cmd, tmp_path)
        assert go2_status(monitor)["backend"] == "unitree"

        # cmd_vel -> Move(vx, vy, vyaw) at the bridge rate, no-reply as the SDK sends it, then the stop
        t0 = time.time()
        cmd.send(0.3, 0.1, 0.2, seconds=1.5)
        t_last_cmd = cmd.last_sent
        spin_for(monitor, 1.0)  # > cmd_timeout_s: the watchdog stops the robot
        sent = fake.requests(since=t0)
        walk = moves(sent, nonzero=True)
        assert walk and all(m["parameter"] == {"x": 0.3, "y": 0.1, "z": 0.2} for m in walk), walk[:3]
        assert all(m["noreply"] for m in moves(sent)) and not [r for r in fake.responses(since=t0)
                                                               if r["api_id"] == 1008]
        times = [m["t"] for m in walk]
        rate = (len(times) - 1) / (times[-1] - times[0])
        assert 30.0 <= rate <= 60.0, f"Move rate {rate:.1f} Hz, bridge rate_hz is 50"  # loaded 2-core CI
        after = [r for r in sent if r["t"] > times[-1]]
        assert sorted((r["name"], str(r["parameter"])) for r in after) == STOP_PAIR, after  # threads: either order
        assert after[0]["t"] - t_last_cmd <= DEFAULTS.cmd_timeout_s + 0.05, after  # exact bound: its own test
        assert [r["code"] for r in fake.responses(since=t_last_cmd) if r["api_id"] == 1003] == [0]

        # odometry follows the fake's state: pose, heading from the IMU, body velocity, covariances
        final = fake.states()[-1]
        assert math.hypot(final["x"], final["y"]) > 0.3  # it did walk
        assert np.allclose(monitor.latest_pose(), [final["x"], final["y"], final["yaw"]], atol=0.03)
        walking = [o for o in monitor.record.odom if t0 + 0.5 < o[0] < t_last_cmd - 0.1]
        body = np.median(np.array([o[3] for o in walking]), axis=0)
        np.testing.assert_allclose(body, [0.3, 0.1, 0.2], atol=0.03)
        status = go2_status(monitor)
        assert status["robot"] == "ok" and status["robot_state"] == "Balance Standing" and "Move=" in status["sdk_calls"]
        pose_cov, twist_cov = (np.array(c).reshape(6, 6) for c in (odometry[-1].pose.covariance,
                                                                   odometry[-1].twist.covariance))
        np.testing.assert_allclose(np.diag(pose_cov), [0.05 ** 2, 0.05 ** 2, 1e6, 1e6, 1e6, 0.05 ** 2])
        np.testing.assert_allclose(np.diag(twist_cov), [0.05 ** 2, 0.05 ** 2, 1e6, 1e6, 1e6, 0.05 ** 2])
        assert not (pose_cov - np.diag(np.diag(pose_cov))).any()

        # clamps: what reaches the robot is within the bridge limits
        t1 = time.time()
        cmd.send(5.0, 0.0, 9.0, seconds=0.5)
        clamped = moves(fake.requests(since=t1), nonzero=True)
        assert clamped and all(m["parameter"] == {"x": MAX_VX, "y": 0.0, "z": MAX_WZ} for m in clamped)

        # e-stop while commands keep coming: zero Move + StopMove, no Move after it, motion services refused
        monitor.send_estop(True)
        t_estop = time.time()
        cmd.send(0.3, seconds=1.0)
        after_estop = fake.requests(since=t_estop)
        assert not moves(after_estop[2:], nonzero=True), after_estop[:4]
        assert first_stop(after_estop)["t"] - t_estop < 0.05, after_estop[:3]
        for service in ("go2/stand_up", "go2/balance_stand", "go2/stand_down"):
            t_call = time.time()
            response = call(monitor, service)
            assert not response.success and "e-stop is engaged" in response.message, response.message
            assert not fake.requests(since=t_call)  # refused before it reached the robot
        assert go2_status(monitor)["state"] == "estop" and go2_status(monitor)["_level"] == common.ERROR
        assert call(monitor, "estop/release").success

        # posture services reach the robot; lying down it takes no Move, and the status says so (not moving/OK)
        t_call = time.time()
        assert call(monitor, "go2/stand_down").success
        assert [r["api_id"] for r in fake.requests(since=t_call)] == [1005]
        cmd.send(0.3, seconds=0.6)
        status = go2_status(monitor)
        assert status["state"] == "robot_not_ready" and status["_level"] == common.WARN, status
        assert "Crouch (error_code 1004)" in status["reason"] and status["robot_state"] == "Crouch", status
        assert not moves(fake.requests(since=t_call), nonzero=True)
        spin_for(monitor, DEFAULTS.cmd_timeout_s + 0.1)  # the commands time out before it stands again
        for service, api_id in (("go2/balance_stand", 1002), ("go2/stop_move", 1003)):
            t_call = time.time()
            response = call(monitor, service)
            assert response.success, (service, response.message)
            assert [r["api_id"] for r in fake.requests(since=t_call)] == [api_id], service
        t_call = time.time()
        assert call(monitor, "go2/stand_up").success
        cmd.send(0.3, seconds=1.0)
        assert not moves(fake.requests(since=t_call), nonzero=True)
        status = go2_status(monitor)
        assert status["state"] == "robot_not_ready" and status["_level"] == common.WARN, status
        assert "Standing Lock (error_code 1002)" in status["reason"] and "go2/balance_stand" in status["reason"]
        assert call(monitor, "go2/balance_stand").success
        t_unlocked = time.time()
        cmd.send(0.3, seconds=0.6)
        assert moves(fake.requests(since=t_unlocked), nonzero=True) and go2_status(monitor)["state"] == "moving"

        # an error code comes back by name; the status goes back to OK once it is old (not sticky)
        response = call(monitor, "go2/damp")
        assert not response.success and "4202 SPORT_ERR_SERVER_NOT_INIT" in response.message
        assert wait_until(lambda: "4202 SPORT_ERR_SERVER_NOT_INIT" in go2_status(monitor).get("last_error", "")
                          and go2_status(monitor)["_level"] == common.ERROR, 3, monitor)
        assert wait_until(lambda: go2_status(monitor).get("_level") == common.OK, 10, monitor), go2_status(monitor)
        assert "4202" in go2_status(monitor)["last_error"] and float(go2_status(monitor)["last_error_age_s"]) >= 4

        # SIGTERM while walking: the last requests the robot gets are the stop
        cmd.send(0.3, seconds=0.3)
        bridge = runner.children["go2_bridge_node"]
        bridge.send_signal(signal.SIGTERM)
        assert bridge.wait(timeout=10) == 0
        time.sleep(0.3)
        last = fake.requests()[-2:]
        assert sorted((r["name"], str(r["parameter"])) for r in last) == STOP_PAIR, last
    finally:
        runner.stop()
        fake.stop()


ESTOP_PROFILES = {
    "reliable_volatile": (ReliabilityPolicy.RELIABLE, DurabilityPolicy.VOLATILE),  # rclpy default, Jazzy `ros2 topic pub`
    "reliable_transient_local": (ReliabilityPolicy.RELIABLE, DurabilityPolicy.TRANSIENT_LOCAL),  # Humble `ros2 topic pub`
    "best_effort_volatile": (ReliabilityPolicy.BEST_EFFORT, DurabilityPolicy.VOLATILE),
    "best_effort_transient_local": (ReliabilityPolicy.BEST_EFFORT, DurabilityPolicy.TRANSIENT_LOCAL),
}


def publisher_with(monitor, topic: str, msg_type, profile: str):
    reliability, durability = ESTOP_PROFILES[profile]
    return monitor.create_publisher(msg_type, topic, QoSProfile(depth=1, history=HistoryPolicy.KEEP_LAST,
                                                                reliability=reliability, durability=durability))


def test_estop_from_every_publisher_qos_stops_the_robot(tmp_path, monitor):
    """One e-stop message from a publisher of each QoS a user has; the latch lives in the bridge."""
    fake = FakeGo2Process(tmp_path)
    latched = publisher_with(monitor, "estop", Bool, "reliable_transient_local")
    latched.publish(Bool(data=True))  # exists before the bridge: it must come up engaged
    runner = start_bridge(tmp_path)
    cmd = CmdVel(monitor)
    try:
        assert fake.ready.wait(30), fake.log.read_text()
        assert wait_until(lambda: go2_status(monitor).get("estopped") == "True" and cmd.pub.get_subscription_count(),
                          30, monitor), runner_logs(tmp_path)
        t_up = time.time()
        cmd.send(0.3, seconds=0.8)
        assert not moves(fake.requests(since=t_up), nonzero=True)  # came up engaged: never moved
        monitor.destroy_publisher(latched)
        assert call(monitor, "estop/release").success
        for profile in ESTOP_PROFILES:
            publisher = publisher_with(monitor, "estop", Bool, profile)
            assert wait_until(lambda: publisher.get_subscription_count() > 0, 10, monitor), profile
            # matched on our side; the bridge's side of discovery may lag, and a best-effort sample sent to a
            # reader that does not know the writer yet is lost (DDS): the walk below gives it 1.5 s
            cmd.send(0.3, seconds=1.2 if "best_effort" in profile else 0.6)
            t_walk = time.time()
            cmd.send(0.3, seconds=0.3)
            assert moves(fake.requests(since=t_walk), nonzero=True), f"{profile}: not walking before the e-stop"
            t_estop = time.time()
            publisher.publish(Bool(data=True))  # once, like `ros2 topic pub --once`
            cmd.send(0.3, seconds=0.6)  # the controller keeps commanding
            publisher.publish(Bool(data=False))  # False never releases the latch
            cmd.send(0.3, seconds=0.3)
            after = fake.requests(since=t_estop)
            stop = first_stop(after)
            assert stop["t"] - t_estop < 0.05, (profile, after[:3])
            assert not moves([r for r in after if r["t"] > stop["t"]], nonzero=True), profile
            assert go2_status(monitor)["state"] == "estop", (profile, go2_status(monitor))
            monitor.destroy_publisher(publisher)
            assert call(monitor, "estop/release").success
    finally:
        runner.stop()
        fake.stop()


def test_estop_during_a_posture_call_to_a_silent_robot(tmp_path, monitor):
    """A BalanceStand the robot never answers must not hold back the e-stop, odometry or the control loop."""
    fake = FakeGo2Process(tmp_path, silent=("1002",))  # applied (still balance standing), never answered
    runner = start_bridge(tmp_path)
    cmd = CmdVel(monitor)
    try:
        wait_ready(fake, monitor, cmd, tmp_path)
        cmd.send(0.3, seconds=0.6)
        t_call = time.time()
        pending = call_async(monitor, "go2/balance_stand")
        cmd.send(0.3, seconds=0.1)
        assert moves(fake.requests(since=t_call), nonzero=True)  # still walking when the e-stop comes
        t_estop = time.time()
        monitor.send_estop(True)
        cmd.send(0.3, seconds=0.4)
        assert wait_until(pending.done, 5, monitor)
        t_answer = time.time()
        after = fake.requests(since=t_estop)
        assert first_stop(after)["t"] - t_estop < 0.05, after[:4]
        assert not pending.result().success and "3104 RPC_ERR_CLIENT_API_TIMEOUT" in pending.result().message
        assert t_answer - t_call > 0.9 * DEFAULTS.go2_timeout_s  # it really waited for the silent robot
        during = [o[0] for o in monitor.record.odom if t_call <= o[0] <= t_answer]
        gaps = np.diff(during)
        assert len(during) > 20 and gaps.max() < 0.1, f"odom gap {gaps.max():.3f} s during the posture call"
    finally:
        runner.stop()
        fake.stop()


def test_stop_reaches_the_robot_within_cmd_timeout(tmp_path, monitor):
    """cmd_timeout_s is a hard bound, measured at the robot: 20 times, from the last cmd_vel sent to the
    first zero Move / StopMove that reached the fake. The tolerance (10 ms) is half a control tick."""
    fake = FakeGo2Process(tmp_path)
    runner = start_bridge(tmp_path)
    cmd = CmdVel(monitor)
    lateness = []
    try:
        wait_ready(fake, monitor, cmd, tmp_path)
        for _ in range(20):
            cmd.send(0.2, seconds=0.3)
            t_last = cmd.last_sent
            spin_for(monitor, DEFAULTS.cmd_timeout_s + 0.15)
            after = fake.requests(since=t_last)
            stop = first_stop(after)
            assert not moves([r for r in after if r["t"] > stop["t"]], nonzero=True)
            lateness.append(stop["t"] - t_last - DEFAULTS.cmd_timeout_s)
    finally:
        runner.stop()
        fake.stop()
    print(f"stop lateness ms: {np.round(np.array(lateness) * 1e3, 1)}")
    assert max(lateness) <= 0.010, f"stop late by up to {max(lateness) * 1e3:.1f} ms: {np.round(lateness, 4)}"
    assert min(lateness) >= -0.030, f"stop early by {-min(lateness) * 1e3:.1f} ms (commands cut short)"


def test_robot_link_faults_are_found_and_stop_commanding(tmp_path, monitor):
    """Robot state frozen while the sport service answers; then the sport service killed while state flows."""
    fake = FakeGo2Process(tmp_path)
    runner = start_bridge(tmp_path)
    cmd = CmdVel(monitor)
    try:
        wait_ready(fake, monitor, cmd, tmp_path)
        # state lost, service alive: robot_error, no Move, StopMove still answered
        cmd.send(0.3, seconds=0.5)
        os.kill(fake.robot_pid, signal.SIGSTOP)
        t_lost = time.time()
        cmd.send(0.3, seconds=3.0, until=lambda: go2_status(monitor).get("state") == "robot_error")
        status = go2_status(monitor)
        assert status.get("state") == "robot_error" and "robot state lost" in status["robot"], status
        assert time.time() - t_lost < DEFAULTS.go2_state_timeout_s + 0.5
        t_error = time.time()
        cmd.send(0.3, seconds=1.0)
        assert not moves(fake.requests(since=t_error + 0.05), nonzero=True)
        assert [r["code"] for r in fake.responses(since=t_lost) if r["api_id"] == 1003][:1] == [0]
        odom_count = len(monitor.record.odom)
        spin_for(monitor, 0.3)
        assert len(monitor.record.odom) == odom_count  # no stale odometry while the state is lost
        os.kill(fake.robot_pid, signal.SIGCONT)
        cmd.send(0.3, seconds=5.0, until=lambda: go2_status(monitor).get("state") == "moving")
        assert go2_status(monitor)["state"] == "moving" and len(monitor.record.odom) > odom_count

        # service dead, state alive: found within go2_link_timeout_s (< 1 s), nothing commanded
        os.kill(fake.service_pid, signal.SIGKILL)
        t_dead = time.time()
        cmd.send(0.3, seconds=3.0, until=lambda: go2_status(monitor).get("state") == "robot_error")
        t_found = time.time()
        status = go2_status(monitor)
        assert status.get("state") == "robot_error" and "sport service not answering" in status["robot"], status
        assert t_found - t_dead < 1.0, f"found after {t_found - t_dead:.2f} s"
        assert status["_level"] == common.ERROR and "sport service not answering" in status["last_error"]
        moves_then = int(status["moves_sent"])
        cmd.send(0.3, seconds=1.0)
        assert int(go2_status(monitor)["moves_sent"]) <= moves_then + 1
        assert runner.children["go2_bridge_node"].poll() is None  # still up, still publishing odometry
        odom_count = len(monitor.record.odom)
        spin_for(monitor, 0.3)
        assert len(monitor.record.odom) > odom_count
    finally:
        runner.stop()
        fake.stop()


def test_no_move_before_the_first_robot_state_and_auto_balance_stand(tmp_path, monitor):
    fake = FakeGo2Process(tmp_path)
    assert fake.ready.wait(30), fake.log.read_text()
    os.kill(fake.robot_pid, signal.SIGSTOP)  # the service answers, no state has reached the bridge yet
    time.sleep(0.2)
    runner = start_bridge(tmp_path, go2_auto_balance_stand=True)
    cmd = CmdVel(monitor)
    try:
        assert wait_until(lambda: cmd.pub.get_subscription_count() > 0 and go2_status(monitor), 30, monitor)
        t0 = time.time()
        cmd.send(0.3, seconds=1.0)
        assert not moves(fake.requests(since=t0), nonzero=True)
        assert "waiting for the first rt/sportmodestate" in go2_status(monitor)["reason"] or \
            go2_status(monitor)["state"] == "robot_error", go2_status(monitor)
        os.kill(fake.robot_pid, signal.SIGCONT)
        cmd.send(0.3, seconds=5.0, until=lambda: go2_status(monitor).get("state") == "moving")
        assert go2_status(monitor)["state"] == "moving"
        # Standing Lock after StandUp: the bridge calls BalanceStand by itself, once, then walks
        assert call(monitor, "go2/stand_up").success
        t_lock = time.time()
        cmd.send(0.3, seconds=3.0, until=lambda: moves(fake.requests(since=t_lock + 0.1), nonzero=True))
        sent = fake.requests(since=t_lock)
        assert [r["name"] for r in sent if r["api_id"] == 1002] == ["BalanceStand"], sent[:5]
        balance = next(r for r in sent if r["api_id"] == 1002)
        assert moves([r for r in sent if r["t"] > balance["t"]], nonzero=True)
        assert not moves([r for r in sent if r["t"] < balance["t"]], nonzero=True)
    finally:
        runner.stop()
        fake.stop()


def test_no_robot_gives_a_clear_error_without_hanging(tmp_path, monitor):
    runner = start_bridge(tmp_path)  # nothing answers on this domain
    try:
        assert wait_until(lambda: go2_status(monitor).get("state") == "robot_error", 30, monitor), runner_logs(tmp_path)
        assert "no robot state" in go2_status(monitor)["robot"]
        assert go2_status(monitor)["robot"].count("lo") >= 1  # names the interface it listens on
        # the probe (and the StopMove of the error edge) fail with the SDK's "nobody listening" code, by name
        assert wait_until(lambda: "3102 RPC_ERR_CLIENT_SEND" in go2_status(monitor).get("robot", "")
                          + go2_status(monitor).get("last_error", ""), 5, monitor), go2_status(monitor)
        # a posture call fails after the SDK timeout, and the node keeps serving meanwhile
        t0 = time.monotonic()
        pending = call_async(monitor, "go2/stop_move")  # allowed under the e-stop, waits for an answer
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
