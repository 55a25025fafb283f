"""policy_node with the tiny SparseVideoNav model: camera frames in -> Path and imagined future out over ROS."""
from sensor_msgs.msg import CompressedImage

import math

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


def test_the_pose_head_drives_the_sim_robot_with_the_release_layout_and_no_head(tmp_path, ros_context):
    """policy:=sparsevideonav with the authors' release layout and no action head folder: action_head auto picks
    the pose head, and the whole graph (camera, policy, controller, sim Go2) drives the robot along what the pose
    head estimates. The policy node is the real one with one swap (test/rendered_imagination_node.py): its
    imagined future is a rendered 0.3 m/s straight walk instead of the tiny random model's noise, which the
    estimator would refuse (the test above). So the robot moving forward at about 0.3 m/s, straight, is the pose
    head's opencv estimate of that walk through the plan, the controller and the bridge."""
    import numpy as np

    import rendered_imagination_node as rendered
    from graph_helpers import moving
    from svn_helpers import write_release_layout
    from sparsevideonav_ros.policies.sparsevideonav import models
    from sparsevideonav_ros.policies.sparsevideonav.configuration_sparsevideonav import SparseVideoNavConfig

    release, wan, _ = write_release_layout(models.load_models(SparseVideoNavConfig()), tmp_path / "models")
    size = rendered.SIZE  # square camera frames: the centre crop keeps all, the rendered K is the camera's
    overrides = {"camera_node": {"rate_hz": 8.0, "width": size, "height": size, "horizontal_fov_deg": rendered.FOV_DEG},
                 "policy_node": {"status_rate_hz": 5.0,
                                 # A wrong FOV on purpose: the walk comes out only with camera_node's CameraInfo
                                 "sparsevideonav": {"checkpoint": str(release), "wan_diffusers_dir": str(wan),
                                                    "sampler_steps": 2, "camera_mount": rendered.MOUNT,
                                                    "horizontal_fov_deg": 100.0}}}
    monitor = GraphMonitor("svn_pose_drive_monitor")
    runner = start_graph(tmp_path, arguments={"policy": "sparsevideonav", "camera": "synthetic", "robot": "sim",
                                              "instruction": "walk forward and stop by the wooden door"},
                         overrides=overrides, modules={"policy_node": "rendered_imagination_node"})

    def walked():
        odom = monitor.record.odom
        return bool(odom) and float(np.hypot(*(odom[-1][2][:2] - odom[0][2][:2]))) > 0.6

    try:
        assert wait_until(walked, 180, monitor), logs(tmp_path)
        assert not runner.exited(), logs(tmp_path)
    finally:
        runner.stop()
        monitor.destroy_node()
    text = logs(tmp_path)
    assert "head pose (auto: the authors' release has no action head" in text, text
    status = monitor.record.status["policy/status"]
    assert status["state"] == "ok" and status["plan_reason"] == "" and status["last_error"] == "", status
    assert status["pose_intrinsics"] == "camera_info", status
    # Plans: 8 waypoints every 0.25 s to T+2 s, the walk's 0.6 m at T+2 s within the accuracy test's 10 %
    driving = [p for p in monitor.record.plans if len(p[3])]
    assert driving and all(len(p[3]) == 8 for p in driving)
    final = np.array([p[3][-1] for p in driving])
    assert np.all(np.abs(final[:, 0] - 0.6) < 0.06) and np.all(np.abs(final[:, 1]) < 0.06), final
    # The robot: forward in its start heading, no turn, at about the walk's speed once moving
    odom = monitor.record.odom
    start, end = np.asarray(odom[0][2]), np.asarray(odom[-1][2])
    heading = start[2]
    forward = np.array([math.cos(heading), math.sin(heading)])
    travelled = end[:2] - start[:2]
    assert float(travelled @ forward) > 0.6 and abs(float(forward[0] * travelled[1] - forward[1] * travelled[0])) < 0.1, (start, end)
    assert abs(math.degrees(math.atan2(math.sin(end[2] - heading), math.cos(end[2] - heading)))) < 5.0
    speeds = [float(np.linalg.norm(e[3][:2])) for e in odom if moving(e)]
    assert speeds and 0.2 < float(np.median(speeds)) < 0.4, speeds
