"""policy_node with the tiny SparseVideoNav model: camera frames in -> Path and imagined future out over ROS."""
from sensor_msgs.msg import CompressedImage

from graph_helpers import logs, start_graph, wait_until
from sparsevideonav_ros.core import images
from sparsevideonav_ros.nodes import common
from sparsevideonav_ros.tools.monitor import GraphMonitor


def test_policy_node_runs_sparsevideonav_end_to_end(tmp_path, ros_context):
    monitor = GraphMonitor("svn_test_monitor")
    futures = []
    monitor.create_subscription(CompressedImage, "policy/future/compressed", futures.append,
                                common.topic_qos("policy/future/compressed"))
    overrides = {"camera_node": {"rate_hz": 8.0, "width": 160, "height": 120},
                 "policy_node": {"status_rate_hz": 5.0, "sparsevideonav": {"preview": True, "sampler_steps": 2}}}
    runner = start_graph(tmp_path, nodes=("camera_node", "policy_node"), overrides=overrides,
                         arguments={"policy": "sparsevideonav", "camera": "synthetic",
                                    "instruction": "walk forward and stop by the wooden door"})

    def planned():
        status = monitor.record.status.get("policy/status", {})
        return any(len(p[3]) == 8 for p in monitor.record.plans) and futures and status.get("state") == "ok"

    try:
        assert wait_until(planned, 120, monitor), logs(tmp_path)
        assert not runner.exited(), logs(tmp_path)
    finally:
        runner.stop()
        monitor.destroy_node()
    status = monitor.record.status["policy/status"]
    assert status["policy"] == "sparsevideonav" and status["state"] == "ok"
    assert int(status["history_length"]) >= 12 and status["last_error"] == ""
    assert float(status["backbone_ms"]) > 0 and float(status["action_head_ms"]) > 0
    plan = next(p for p in monitor.record.plans if len(p[3]) == 8)
    assert plan[2] == "base_link"
    assert images.decode_compressed(futures[-1].format, bytes(futures[-1].data)).shape == (128, 256, 3)
    # warming up until 12 frames at 4 FPS: no motion planned before
    assert all(len(p[3]) in (0, 8) for p in monitor.record.plans)
