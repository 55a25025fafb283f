"""policy_node with the tiny JanusVLN model: camera frames in -> one-action Path and status over ROS."""
import math

import numpy as np

from graph_helpers import logs, start_graph, wait_until
from sparsevideonav_ros.tools.monitor import GraphMonitor


def test_policy_node_runs_janusvln_end_to_end(tmp_path, ros_context):
    monitor = GraphMonitor("janusvln_test_monitor")
    overrides = {"camera_node": {"rate_hz": 8.0, "width": 160, "height": 120},
                 "policy_node": {"status_rate_hz": 5.0,
                                 "janusvln": {"forward_step_m": 0.3, "max_new_tokens": 8, "plan_every_frames": 1}}}
    runner = start_graph(tmp_path, nodes=("camera_node", "policy_node"), overrides=overrides,
                         arguments={"policy": "janusvln", "camera": "synthetic",
                                    "instruction": "walk forward and stop by the wooden door"})

    def planned():
        status = monitor.record.status.get("policy/status", {})
        return (sum(len(p[3]) == 1 for p in monitor.record.plans) >= 2 and status.get("state") == "ok"
                and "decode_ms" in status and int(status.get("history_length", 0)) >= 2)

    try:
        assert wait_until(planned, 90, monitor), logs(tmp_path)
        assert not runner.exited(), logs(tmp_path)
    finally:
        runner.stop()
        monitor.destroy_node()
    status = monitor.record.status["policy/status"]
    assert status["policy"] == "janusvln" and status["state"] == "ok" and status["last_error"] == ""
    assert int(status["history_length"]) >= 2
    # the default (the release's path) times no per-frame language-model pass: llm_frame_ms is semantic_memory's
    assert {"spatial_ms", "vision_ms", "llm_prompt_ms", "decode_ms"} <= set(status)
    plans = [p for p in monitor.record.plans if len(p[3]) == 1]
    assert plans[0][2] == "base_link"
    # the tiny model answers MOVE_FORWARD, TURN_LEFT or TURN_RIGHT (its weights pick): one waypoint, the
    # configured step ahead or the default 15 degree turn in place
    turn = math.radians(15.0)
    assert any(np.allclose(plans[-1][3], [waypoint], atol=1e-6)
               for waypoint in ([0.3, 0.0, 0.0], [0.0, 0.0, turn], [0.0, 0.0, -turn])), plans[-1][3]
