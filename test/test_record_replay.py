"""Recording, replay and offline evaluation of a real run (multi-process, loopback DDS).

One demo-like run is recorded with record:=true (the runner's rosbags recorder); the bag is then
read back, replayed through policy + controller + sim robot on the bag's clock, and evaluated
offline. The recorder alone is checked for a clean close on SIGINT and a clear error when killed.
"""
from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
from nav_msgs.msg import Odometry
from std_msgs.msg import String

from graph_helpers import logs, wait_until, write_params
from sparsevideonav_ros import bags, launch_plan, stack
from sparsevideonav_ros.core import se2
from sparsevideonav_ros.core.pose_history import PoseHistory
from sparsevideonav_ros.nodes import common
from sparsevideonav_ros.tools import evaluate
from sparsevideonav_ros.tools.launch import GraphRunner
from sparsevideonav_ros.tools.monitor import GraphMonitor, spin_for

REPO = Path(__file__).resolve().parent.parent
INSTRUCTION = "drive to the corner and face left"
ROUTE = [0.5, 0.0, 0.0, 0.5, 0.0, 1.5708]  # 0.5 m ahead, then a quarter turn: a few seconds
ROUTE_PARAMS = {"scripted": {"waypoints": ROUTE, "require_instruction": True}}


def env() -> dict[str, str]:
    return stack.loopback_environment(int(os.environ["ROS_DOMAIN_ID"]))


@dataclass
class Recording:
    bag: Path
    record: object  # the monitor's Record of the live run
    exit_codes: dict
    params_file: str
    log_dir: Path


@pytest.fixture(scope="module")
def recording(ros_context, tmp_path_factory) -> Recording:
    """A demo-like run (camera, scripted policy, controller, sim Go2) with record:=true."""
    tmp = tmp_path_factory.mktemp("recorded_run")
    params = write_params(tmp / "route.yaml", {"policy_node": ROUTE_PARAMS})
    graph = stack.plan_graph("bringup", {"camera": "synthetic", "params_file": params, "record": "true",
                                         "record_dir": str(tmp / "bags")})
    monitor = GraphMonitor("record_monitor")
    runner = GraphRunner(graph, env=env(), log_dir=tmp / "logs")
    try:
        runner.start()
        visible = wait_until(lambda: monitor.record.frames and monitor.record.odom
                             and "policy/status" in monitor.record.status, 30, monitor)
        assert visible, logs(tmp)
        # the drive starts with the instruction: send it once the recorder is subscribed to the camera too
        # (as seen from here; discovery between processes takes seconds on a loaded machine)
        recording_too = wait_until(lambda: monitor.count_subscribers("camera/image_raw/compressed") >= 3
                                   and monitor.instruction_pub.get_subscription_count() >= 2, 30, monitor)
        assert recording_too, logs(tmp)
        spin_for(monitor, 1.0)
        monitor.send_instruction(INSTRUCTION)
        monitor.send_estop(False)  # recorded (no effect: the e-stop is not engaged)

        def done() -> bool:
            return (monitor.record.status.get("policy/status", {}).get("state") == "done"
                    and monitor.latest_speed() < 1e-3) or bool(runner.exited())
        assert wait_until(done, 30, monitor), (monitor.record.status, logs(tmp))
        spin_for(monitor, 0.3)
        assert not runner.exited(), (runner.exited(), logs(tmp))
    finally:
        codes = runner.stop()
        monitor.destroy_node()
    (bag,) = (tmp / "bags").iterdir()
    return Recording(bag=bag, record=monitor.record, exit_codes=codes, params_file=params, log_dir=tmp / "logs")


def read_bag(path: Path) -> dict[str, list]:
    """topic -> [(bag time s, decoded message)]"""
    reader = bags.open_bag(path)
    try:
        result: dict[str, list] = {}
        for connection, bag_ns, data in bags.messages(reader, reader.connections):
            result.setdefault(connection.topic, []).append((bag_ns * 1e-9, bags.decode(data, connection.msgtype)))
        return result
    finally:
        reader.close()


def common_status(msg) -> dict[str, str]:
    return {kv.key: kv.value for status in msg.status for kv in status.values}


def path_waypoints(msg) -> np.ndarray:
    rows = [(p.pose.position.x, p.pose.position.y,
             se2.yaw_from_quaternion(p.pose.orientation.x, p.pose.orientation.y, p.pose.orientation.z,
                                     p.pose.orientation.w)) for p in msg.poses]
    return np.asarray(rows, dtype=float).reshape(-1, 3)


def odom_pose(msg) -> np.ndarray:
    q = msg.pose.pose.orientation
    return np.array([msg.pose.pose.position.x, msg.pose.pose.position.y,
                     se2.yaw_from_quaternion(q.x, q.y, q.z, q.w)])


def anchored_targets(plans: list, odometry: list) -> dict[int, np.ndarray]:
    """stamp key -> the plan's last waypoint in the odom frame (at the pose of the plan's frame)."""
    history = PoseHistory(horizon_s=1e9)
    for stamp, pose in odometry:
        history.add(stamp, pose)
    result = {}
    for stamp, waypoints in plans:
        if len(waypoints):
            try:
                result[evaluate.stamp_key(stamp)] = se2.compose(history.pose_at(stamp), waypoints[-1])
            except LookupError:
                pass
    return result


# =============================================================================================

def test_recording_is_a_readable_bag_with_the_curated_topics(recording):
    assert re.fullmatch(r"\d{8}-\d{6}-scripted", recording.bag.name), recording.bag.name
    assert (recording.bag / "metadata.yaml").is_file() and list(recording.bag.glob("*.mcap"))
    assert all(code == 0 for code in recording.exit_codes.values()), recording.exit_codes
    topics = read_bag(recording.bag)
    expected = ({"/" + t for t in stack.RECORDED_TOPICS + stack.RECORDED_TF_TOPICS}
                - {"/policy/future/compressed"})  # scripted imagines nothing
    assert set(topics) == expected, set(topics) ^ expected
    reader = bags.open_bag(recording.bag)
    assert reader.message_count == sum(len(v) for v in topics.values())
    reader.close()

    live = recording.record
    frames, plans = topics["/camera/image_raw/compressed"], topics["/policy/path"]
    # everything the in-process monitor saw is in the bag (both subscribe with the stack QoS), except
    # what came before the recorder was discovered: a process that starts with the graph is a little late
    bag_frames = {evaluate.stamp_key(common.stamp_to_seconds(m.header.stamp)) for _, m in frames}
    live_frames = {evaluate.stamp_key(stamp) for _, stamp, _ in live.frames}
    assert len({f for f in live_frames if f >= min(bag_frames)} - bag_frames) <= 2
    instructed_at = topics["/instruction"][0][0]
    assert frames[0][0] < instructed_at - 0.5  # the bag holds the robot standing before the drive
    bag_plans = {evaluate.stamp_key(common.stamp_to_seconds(m.header.stamp)) for _, m in plans}
    assert len({evaluate.stamp_key(p[1]) for p in live.plans} - bag_plans) <= 1
    # ... and about everything the policy node got and did (its final status counts)
    status = common_status(topics["/policy/status"][-1][1])
    assert len(frames) >= 0.9 * int(status["frames_in"]), status
    # every plan made after the instruction (the drive) is in the bag; a few stand-still plans made while
    # the recorder was still being discovered may not be
    instructed = topics["/instruction"][0][0]
    driving = [p for p in live.plans if p[0] > instructed + 0.5]
    assert len(driving) > 5 and all(evaluate.stamp_key(p[1]) in bag_plans for p in driving)
    assert len(frames) > 40 and len(topics["/camera/camera_info"]) == pytest.approx(len(frames), abs=3)
    assert len(plans) > 10
    assert len(topics["/odom"]) >= len(live.odom) - 10 and len(topics["/odom"]) > 100
    assert len(topics["/cmd_vel"]) >= len(live.cmds) - 5 and len(topics["/cmd_vel"]) > 20
    assert [m.data for _, m in topics["/instruction"]] == [INSTRUCTION]
    assert [m.data for _, m in topics["/estop"]] == [False]
    for topic in ("/policy/status", "/controller/status", "/go2/status"):
        assert len(topics[topic]) >= 3, topic
    # messages are the ones that crossed the graph: same stamps and waypoints as the monitor received
    live_plans = {evaluate.stamp_key(stamp): waypoints for _, stamp, _, waypoints in live.plans}
    compared = 0
    for _, msg in plans:
        key = evaluate.stamp_key(common.stamp_to_seconds(msg.header.stamp))
        if key in live_plans:
            assert np.allclose(path_waypoints(msg), live_plans[key])
            compared += 1
    assert compared >= len(live_plans) - 1 and compared > 10
    # bag times are receive times, in order, a little after each frame's capture stamp
    times = [t for _, messages in topics.items() for t, _ in messages]
    assert min(times) >= min(t for t, _ in frames) - 5.0
    lag = [t - common.stamp_to_seconds(m.header.stamp) for t, m in frames]
    assert 0 <= min(lag) and max(lag) < 0.5
    # the recorder stops last: the bridge's final stopped odometry is in the bag
    last = topics["/odom"][-1][1]
    assert abs(last.twist.twist.linear.x) < 1e-6 and abs(last.twist.twist.angular.z) < 1e-6
    final = odom_pose(last)
    assert final[0] == pytest.approx(0.5, abs=0.1) and final[2] == pytest.approx(1.5708, abs=0.2)


def test_replay_through_the_scripted_policy_reproduces_the_recorded_plans(recording, ros_context, tmp_path):
    recorded = read_bag(recording.bag)
    recorded_plans = [(common.stamp_to_seconds(m.header.stamp), path_waypoints(m)) for _, m in recorded["/policy/path"]]
    recorded_odom = [(common.stamp_to_seconds(m.header.stamp), odom_pose(m)) for _, m in recorded["/odom"]]
    graph = launch_plan.plan_graph("replay", {"bag": str(recording.bag), "params_file": recording.params_file,
                                        "replay_delay": "4.0", "record": "true", "record_dir": str(tmp_path / "bags")})
    # aligned: playback starts at the frame of the first recorded plan, and the replayed policy's 4 FPS
    # grid is anchored where the live one was (the recorder may have missed the frame it started on)
    grid = bags.recorded_grid_of(recording.bag, "/policy/path", "/camera/image_raw/compressed")
    assert graph[-1].start_offset_s == grid.offset_s and grid.matched >= grid.plans - 1
    (policy,) = [p for p in graph if getattr(p, "node", "") == "policy_node"]
    assert policy.parameters["history_grid_anchor_s"] == grid.anchor_stamp
    recorded_plans = [(stamp, w) for stamp, w in recorded_plans if stamp >= grid.start_stamp - 1e-6]
    assert graph[0].use_sim_time  # the replay is recorded too, on the bag's clock
    monitor = GraphMonitor("replay_monitor")
    runner = GraphRunner(graph, env=env(), log_dir=tmp_path / "logs")
    try:
        runner.start()
        assert wait_until(lambda: stack.PLAYER_NAME in runner.exited(), 60, monitor), logs(tmp_path)
        spin_for(monitor, 0.3)
        exited = runner.exited()
    finally:
        codes = runner.stop()
        monitor.destroy_node()
    assert exited == {stack.PLAYER_NAME: 0}, (exited, logs(tmp_path))
    assert all(code == 0 for code in codes.values()), (codes, logs(tmp_path))
    replay = monitor.record
    replay_plans = [(stamp, waypoints) for _, stamp, _, waypoints in replay.plans]
    replay_odom = [(stamp, pose) for _, stamp, pose, _ in replay.odom]

    # the replayed policy planned from the very frames the live one did (same 4 FPS grid, same stamps)
    recorded_keys = [evaluate.stamp_key(s) for s, _ in recorded_plans]
    replay_keys = {evaluate.stamp_key(s) for s, _ in replay_plans}
    common_keys = [k for k in recorded_keys if k in replay_keys]
    assert len(common_keys) >= len(recorded_keys) - 1, (len(common_keys), len(recorded_keys))
    # ... with the same decisions: wait for the instruction, drive, done (stop/go agrees)
    recorded_go = {evaluate.stamp_key(s): len(w) > 0 for s, w in recorded_plans}
    replay_go = {evaluate.stamp_key(s): len(w) > 0 for s, w in replay_plans}
    agree = sum(recorded_go[k] == replay_go[k] for k in common_keys)
    # (closed loop: the sim robot may reach the last waypoint a frame earlier or later than the robot did)
    assert agree >= len(common_keys) - 2, (agree, len(common_keys))
    assert sum(recorded_go.values()) > 5
    # ... towards the same route waypoints (in the odom frame); the sim robot drives the route again
    recorded_targets = anchored_targets(recorded_plans, recorded_odom)
    replay_targets = anchored_targets(replay_plans, replay_odom)
    both = [k for k in common_keys if k in recorded_targets and k in replay_targets]
    close = [k for k in both if np.linalg.norm(recorded_targets[k][:2] - replay_targets[k][:2]) < 0.03
             and abs(se2.wrap_angle(recorded_targets[k][2] - replay_targets[k][2])) < 0.05]
    assert len(both) > 5 and len(close) >= 0.85 * len(both), (len(close), len(both))
    # the replay ran on the bag's clock: odometry stamps lie within the recorded time span
    start, end = recorded_odom[0][0], recorded_odom[-1][0]
    assert all(start - 5.0 <= stamp <= end + 1.0 for stamp, _ in replay_odom)
    final = replay_odom[-1][1]
    assert np.linalg.norm(final[:2] - recorded_odom[-1][1][:2]) < 0.1
    assert abs(se2.wrap_angle(final[2] - recorded_odom[-1][1][2])) < 0.2
    # the replay's own recording: bag times on the replayed clock, the replayed plans in it
    (rerecorded,) = (tmp_path / "bags").iterdir()
    again = read_bag(rerecorded)
    times = [t for messages in again.values() for t, _ in messages]
    assert start - 5.0 <= min(times) and max(times) <= end + 1.0  # replay_delay 4 s + 1 s
    assert len(again["/policy/path"]) >= 0.9 * len(replay_plans)
    assert [m.data for _, m in again["/instruction"]] == [INSTRUCTION]


def test_offline_evaluation_of_the_recording_reproduces_its_plans(recording, tmp_path):
    out = tmp_path / "report"
    code = evaluate.main([str(recording.bag), "--policy", "scripted", "-p", f"waypoints={ROUTE}",
                          "-p", "require_instruction=true", "--out", str(out)])
    assert code == 0
    summary = json.loads((out / "summary.json").read_text())
    versus = summary["versus_recorded"]
    # open loop on the recorded odometry: the same frames, the same plans (to odometry timing, mm)
    assert versus["matched_frames"] >= versus["recorded_plans_in_span"] - 1, versus
    assert versus["recorded_plans_in_span"] >= versus["recorded_plans"] - 3, versus
    assert versus["same_stop_or_go"] == versus["matched_frames"], versus
    assert versus["within_5cm"] == versus["compared_waypoints"] > 5, versus
    assert summary["instruction"] == INSTRUCTION
    assert summary["states"].get("done", 0) > 0 and summary["states"].get("waiting_instruction", 0) > 0
    for name in ("plans.png", "latency.png", "overlay.mp4", "latency.json", "steps.json"):
        assert (out / name).stat().st_size > 1000, name


def test_recorder_closes_the_bag_on_sigint_and_a_killed_one_is_reported(ros_context, tmp_path):
    from rclpy.node import Node
    node = Node("recorder_feeder")  # publishes only: the recorders are the only subscribers
    odom_pub = node.create_publisher(Odometry, "odom", common.topic_qos("odom"))
    instruction_pub = node.create_publisher(String, "instruction", common.topic_qos("instruction"))
    instruction_pub.publish(String(data="latched before the recorder starts"))
    command = [sys.executable, "-m", "sparsevideonav_ros.tools.record", "--output"]
    child_env = dict(env(), PYTHONPATH=str(REPO))
    closed = subprocess.Popen(command + [str(tmp_path / "closed"), "/odom", "/instruction"], env=child_env,
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    killed = subprocess.Popen(command + [str(tmp_path / "killed"), "/odom"], env=child_env,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        assert wait_until(lambda: (tmp_path / "closed").exists() and (tmp_path / "killed").exists()
                          and odom_pub.get_subscription_count() >= 2, 30, node)
        spin_for(node, 0.5)  # matched on our side; give the recorders' side of the discovery a moment too
        for i in range(40):
            odom = Odometry()
            odom.header.stamp = common.seconds_to_stamp(1000.0 + i * 0.02)
            odom.pose.pose.position.x = i * 0.01
            odom.pose.pose.orientation.w = 1.0
            odom_pub.publish(odom)
            spin_for(node, 0.02)
        spin_for(node, 0.5)
        closed.send_signal(signal.SIGINT)
        killed.send_signal(signal.SIGKILL)
        output, _ = closed.communicate(timeout=20)
        killed.wait(timeout=20)
    finally:
        for child in (closed, killed):
            if child.poll() is None:
                child.kill()
                child.wait()
        node.destroy_node()
    assert closed.returncode == 0, output
    assert "closed" in output and "/odom: 40" in output, output
    topics = read_bag(tmp_path / "closed")
    assert [m.pose.pose.position.x for _, m in topics["/odom"]] == pytest.approx([i * 0.01 for i in range(40)])
    assert [m.data for _, m in topics["/instruction"]] == ["latched before the recorder starts"]
    # killed: no metadata.yaml and an MCAP without its footer (empty, when nothing reached the disk yet)
    assert not (tmp_path / "killed" / "metadata.yaml").exists()
    with pytest.raises(bags.BagError, match="truncated|empty"):
        bags.open_bag(tmp_path / "killed")


def test_player_keeps_the_recorded_timing_and_publishes_the_clock(ros_context, tmp_path):
    from rosgraph_msgs.msg import Clock
    from sensor_msgs.msg import CompressedImage

    from test_evaluate import INSTRUCTION as BAG_INSTRUCTION, write_episode_bag

    bag = write_episode_bag(tmp_path / "episode", seconds=2.0)
    reader = bags.open_bag(bag)
    bag_start = reader.start_time * 1e-9
    frame_times = [t * 1e-9 for c, t, _ in bags.messages(reader, reader.connections)
                   if c.topic == "/camera/image_raw/compressed"]
    reader.close()
    node = GraphMonitor("player_listener")
    frames, clock, instructions = [], [], []
    node.create_subscription(CompressedImage, "camera/image_raw/compressed",
                             lambda m: frames.append((time.monotonic(), common.stamp_to_seconds(m.header.stamp))),
                             common.topic_qos("camera/image_raw/compressed"))
    node.create_subscription(Clock, "/clock", lambda m: clock.append((time.monotonic(), common.stamp_to_seconds(m.clock))),
                             10)
    node.create_subscription(String, "instruction", lambda m: instructions.append(m.data), common.topic_qos("instruction"))
    node.create_subscription(Odometry, "odom", lambda m: pytest.fail("odom was not asked for"), common.topic_qos("odom"))
    player = subprocess.Popen([sys.executable, "-m", "sparsevideonav_ros.tools.play", str(bag), "--rate", "2",
                               "--delay", "4.0", "--topics", "/camera/image_raw/compressed", "/instruction"],
                              env=dict(env(), PYTHONPATH=str(REPO)), stdout=subprocess.PIPE,
                              stderr=subprocess.STDOUT, text=True)
    try:
        assert wait_until(lambda: player.poll() is not None, 30, node)
        spin_for(node, 0.2)
    finally:
        if player.poll() is None:
            player.kill()
        output = player.communicate()[0]
        node.destroy_node()
    assert player.returncode == 0, output
    assert instructions == [BAG_INSTRUCTION]
    # (a long-lived listener can take seconds to be discovered by a new process; 4 s delay covers it)
    assert len(frames) >= 20 and len(frame_times) == 30, len(frames)
    # frames come with their recorded stamps, spaced as recorded / rate
    stamps = [stamp for _, stamp in frames]
    assert stamps == sorted(stamps)
    assert all(min(abs(stamp - (t - 0.004)) for t in frame_times) < 1e-6 for stamp in stamps)  # header untouched
    first_wall, first_stamp = frames[0]
    errors = [(wall - first_wall) - (stamp - first_stamp) / 2.0 for wall, stamp in frames]
    assert float(np.median(np.abs(errors))) < 0.01 and max(np.abs(errors)) < 0.06, errors
    # /clock: counts up to the bag start during the delay, then runs at 2x, ahead of no message
    values = [value for _, value in clock]
    assert values == sorted(values)
    before = [(wall, value) for wall, value in clock if value < bag_start]
    assert before and bag_start - 4.0 * 2 - 0.05 <= before[0][1]
    during = [(wall, value) for wall, value in clock if bag_start <= value <= frame_times[-1]]
    rate = (during[-1][1] - during[0][1]) / (during[-1][0] - during[0][0])
    assert rate == pytest.approx(2.0, rel=0.1)
    for wall, stamp in frames:  # the newest clock when a frame arrives is just before its bag time
        latest = max(value for w, value in clock if w <= wall)
        bag_time = min(frame_times, key=lambda t: abs(t - (stamp + 0.004)))
        assert bag_time - 0.05 <= latest <= bag_time + 0.005
