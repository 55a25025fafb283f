"""record:=true: no motion before the bag recorder subscribes, so a bag holds the whole run (issue 13).

controller_node's wait_for_recorder (set by record:=true) keeps cmd_vel at zero until a recorder node
(ours, bag_recorder, or `ros2 bag record`'s rosbag2_recorder) subscribes to every recorded topic that has a
publisher. The graph test starts the nodes without their recorder: the robot must stand with the controller
in state waiting_recorder naming what is unrecorded; a recorder started late (named as rosbag2's is) then
lets it drive, and its bag starts before the first motion.
"""
from __future__ import annotations

import dataclasses
import os

import numpy as np

from graph_helpers import logs, moving, wait_until, write_params
from sparsevideonav_ros import bags, stack
from sparsevideonav_ros.tools.launch import GraphRunner
from sparsevideonav_ros.tools.monitor import GraphMonitor, spin_for

ROUTE = {"scripted": {"waypoints": [0.6, 0.0, 0.0], "require_instruction": True}}


def test_record_true_sets_the_gate_on_the_controller_only(tmp_path):
    arguments = {"camera": "synthetic", "record": "true", "record_dir": str(tmp_path)}
    processes = stack.plan_processes("bringup", arguments)
    gated = {p.node for p in processes if p.parameters.get("wait_for_recorder")}
    assert gated == {"controller_node"}
    assert not any(p.parameters.get("wait_for_recorder") for p in stack.plan_processes("bringup", {}))
    graph = stack.plan_graph("bringup", arguments)
    assert isinstance(graph[0], stack.RecordingSpec)  # the recorder starts first


def test_no_motion_until_a_late_recorder_subscribes(tmp_path, ros_context):
    params = write_params(tmp_path / "route.yaml", {"policy_node": ROUTE})
    graph = stack.plan_graph("bringup", {"camera": "synthetic", "robot": "sim", "params_file": params,
                                         "record": "true", "record_dir": str(tmp_path / "bags")})
    recording = next(p for p in graph if isinstance(p, stack.RecordingSpec))
    nodes = [p for p in graph if not isinstance(p, stack.RecordingSpec)]
    env = stack.loopback_environment(int(os.environ["ROS_DOMAIN_ID"]))
    monitor = GraphMonitor("record_gate_monitor")
    runner = GraphRunner(nodes, env=env, log_dir=tmp_path / "logs").start()
    late = None
    try:
        def waiting() -> bool:
            status = monitor.record.status.get("controller/status", {})
            return bool(monitor.record.odom) and status.get("state") == "waiting_recorder"
        assert wait_until(waiting, 40, monitor), logs(tmp_path)
        monitor.send_instruction("drive forward 0.6 m")
        spin_for(monitor, 4.0)  # the scripted route would be well under way by now
        status = monitor.record.status["controller/status"]
        assert status["state"] == "waiting_recorder" and "/odom" in status["unrecorded_topics"].split(), status
        assert not any(moving(entry) for entry in monitor.record.odom)
        assert all(abs(c[1]) + abs(c[2]) + abs(c[3]) == 0 for c in monitor.record.cmds)
        # ros2 bag record's node name: the gate knows both recorders
        late = GraphRunner([dataclasses.replace(recording, node="rosbag2_recorder")], env=env,
                           log_dir=tmp_path / "logs-recorder").start()
        assert wait_until(lambda: any(moving(e) for e in monitor.record.odom), 30, monitor), logs(tmp_path)
        assert wait_until(lambda: monitor.record.status.get("policy/status", {}).get("state") == "done"
                          and monitor.latest_speed() < 1e-3, 30, monitor), logs(tmp_path)
        spin_for(monitor, 0.5)
    finally:
        if late is not None:
            late.stop()
        runner.stop()
        monitor.destroy_node()
    assert "motion allowed" in (tmp_path / "logs" / "controller_node.log").read_text()
    (bag,) = (tmp_path / "bags").iterdir()
    reader = bags.open_bag(bag)
    try:
        odom = [bags.decode(data, c.msgtype) for c, _, data in bags.messages(
            reader, [c for c in reader.connections if c.topic == "/odom"])]
    finally:
        reader.close()
    first = odom[0]
    speeds = [np.hypot(m.twist.twist.linear.x, m.twist.twist.linear.y) for m in odom]
    # the bag starts before the motion: at rest where the robot stood, then the 0.6 m drive in full
    assert speeds[0] < 0.05 and max(speeds) > 0.1, speeds[:5]
    start = np.array([first.pose.pose.position.x, first.pose.pose.position.y])
    end = np.array([odom[-1].pose.pose.position.x, odom[-1].pose.pose.position.y])
    stood, arrived = monitor.record.odom[0][2][:2], monitor.record.odom[-1][2][:2]
    assert np.allclose(start, stood, atol=0.01) and np.allclose(end, arrived, atol=0.02), (start, end, stood, arrived)
    assert np.linalg.norm(end - start) > 0.4  # the route (0.6 m, arrival tolerance 0.1 m), all of it in the bag
