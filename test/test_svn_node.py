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


def test_the_pose_head_refusing_imagined_noise_keeps_the_sim_robot_still(tmp_path, ros_context):
    """The whole graph (camera, policy, controller, sim Go2) with action_head pose on the tiny random models: the
    imagined frames are noise, the opencv estimator refuses them, every plan is a stop and the robot stands."""
    import numpy as np

    from graph_helpers import moving
    monitor = GraphMonitor("svn_pose_test_monitor")
    overrides = {"camera_node": {"rate_hz": 8.0, "width": 160, "height": 120},
                 "policy_node": {"status_rate_hz": 5.0, "sparsevideonav": {"action_head": "pose", "sampler_steps": 2}}}
    runner = start_graph(tmp_path, arguments={"policy": "sparsevideonav", "camera": "synthetic", "robot": "sim",
                                              "instruction": "walk forward and stop by the wooden door"},
                         overrides=overrides)

    def refused_twice():
        status = monitor.record.status.get("policy/status", {})
        return status.get("state") == "pose_invalid" and float(status.get("pose_decode_ms", "0")) > 0 and \
            len(monitor.record.plans) >= 2

    try:
        assert wait_until(refused_twice, 150, monitor), logs(tmp_path)
        assert not runner.exited(), logs(tmp_path)
    finally:
        runner.stop()
        monitor.destroy_node()
    status = monitor.record.status["policy/status"]
    assert status["plan_reason"].startswith("T+1 s: "), status
    assert status["last_error"] == ""
    assert all(len(p[3]) == 0 for p in monitor.record.plans)  # stops only, never a guessed path
    assert monitor.record.odom and not any(moving(entry) for entry in monitor.record.odom)
    assert np.allclose([e[2][:2] for e in monitor.record.odom], monitor.record.odom[0][2][:2], atol=0.02)
    assert "head pose (sparsevideonav.action_head is pose): estimator opencv" in logs(tmp_path)
