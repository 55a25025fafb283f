"""RealSense D455 through the real pyrealsense2 pipeline, without a camera.

Recordings are made with the library's own software device and recorder (sources.realsense.
write_recording, a .db3 file) and played back with config.enable_device_from_file: the pipeline,
stream resolution/format negotiation, depth-to-colour alignment and the grab/reconnect thread are
the same code that runs against a camera on USB.
"""
from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pytest
from diagnostic_msgs.msg import DiagnosticArray
from sensor_msgs.msg import CameraInfo, Image

from graph_helpers import start_graph, wait_until
from sparsevideonav_ros import configs
from sparsevideonav_ros.core import images
from sparsevideonav_ros.nodes import camera_node, common
from sparsevideonav_ros.sources.base import SourceError
from sparsevideonav_ros.sources.realsense import RealSenseSource, connected_serials, write_recording
from sparsevideonav_ros.tools.monitor import GraphMonitor

W, H, FPS, N = 424, 240, 30, 24  # a D455 colour mode; 0.8 s
FX = 300.0


def colour(i: int) -> np.ndarray:
    rgb = np.zeros((H, W, 3), np.uint8)
    rgb[..., 0], rgb[..., 1] = (i * 10) % 256, np.arange(W, dtype=np.uint16)[None, :] % 256
    rgb[..., 2] = 200
    return rgb


def depth(i: int) -> np.ndarray:
    return np.full((H, W), 1000 + 10 * i, np.uint16)  # millimetres


def frame_index(rgb: np.ndarray) -> int:
    return int(rgb[0, 0, 0]) // 10


@pytest.fixture(scope="module")
def recording(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("realsense") / "d455.db3"
    assert write_recording(path, [colour(i) for i in range(N)], fps=FPS, depths=[depth(i) for i in range(N)],
                           serial="215122254321", fx=FX) == N
    return path


def test_playback_gives_colour_and_aligned_depth_at_the_configured_profile(recording):
    source = RealSenseSource(str(recording), W, H, FPS, depth=True, loop=True, timeout_s=1.0)
    source.open()
    try:
        assert (source.width, source.height, source.nominal_fps) == (W, H, 30.0)
        assert source.serial == "215122254321"
        assert source.intrinsics == pytest.approx((FX, FX, (W - 1) / 2, (H - 1) / 2))
        seen = []
        for _ in range(6):
            frame = source.read()
            i = frame_index(frame.rgb)
            np.testing.assert_array_equal(frame.rgb, colour(i))  # rgb8 arrives unchanged
            assert frame.depth is not None and frame.depth.dtype == np.uint16 and frame.depth.shape == (H, W)
            assert abs(int(np.median(frame.depth)) - (1000 + 10 * i)) <= 10  # aligned to its colour frame
            seen.append(i)
        assert seen == sorted(seen)
        time.sleep(0.3)
        fresh = source.poll()
        assert fresh is not None and source.poll() is None and source.frames_skipped > 0  # freshest only
    finally:
        source.close()
    assert source.status()["state"] == "closed" and source._pipeline is None
    with pytest.raises(SourceError, match="closed"):
        source.read()
    source.close()


def test_unavailable_profile_and_missing_camera_are_clear_errors(recording, tmp_path):
    with pytest.raises(SourceError, match=r"does not offer rgb8 640x480 @ 30 fps"):
        RealSenseSource(str(recording), 640, 480, 30).open()
    assert connected_serials() == []  # no camera on this machine
    with pytest.raises(SourceError, match=r"no RealSense camera with serial 215122250000; connected: none"):
        RealSenseSource("215122250000", W, H, FPS).open()
    with pytest.raises(SourceError, match=r"no RealSense camera connected"):
        RealSenseSource("", W, H, FPS).open()
    with pytest.raises(SourceError, match="file not found"):
        RealSenseSource(str(tmp_path / "missing.db3"), W, H, FPS).open()


def test_reconnects_after_the_camera_goes_away(recording, tmp_path):
    device = tmp_path / "unplugged_later.db3"
    device.write_bytes(recording.read_bytes())
    source = RealSenseSource(str(device), W, H, FPS, loop=False, timeout_s=0.3)  # frames stop at the end
    source.open()
    try:
        source.read()
        device.rename(tmp_path / "away.db3")
        deadline = time.monotonic() + 5
        while source.state != "reconnecting" and time.monotonic() < deadline:
            time.sleep(0.05)
        assert source.state == "reconnecting" and "didn't arrive" in source.last_error
        time.sleep(0.7)
        assert "file not found" in source.last_error
        (tmp_path / "away.db3").rename(device)
        frame = source.read(timeout_s=3.0)
        assert source.state == "streaming" and source.reconnects >= 1 and frame.rgb.shape == (H, W, 3)
    finally:
        source.close()


def test_d455_preset():
    config = configs.CameraNodeConfig(source="d455", width=W, height=H, depth=True)
    source = camera_node.open_source(config)
    assert isinstance(source, RealSenseSource) and source.requested == (W, H, FPS) and source.depth
    with pytest.raises(configs.ConfigError, match="d455"):
        configs.CameraNodeConfig(source="d455", width=320, height=240)


@pytest.fixture
def monitor(ros_context):
    node = GraphMonitor("test_realsense_monitor")
    yield node
    node.destroy_node()


def test_camera_node_d455_publishes_colour_depth_and_device_intrinsics(tmp_path, monitor, recording):
    raw, depth_msgs, info, status = [], [], [], []
    monitor.create_subscription(Image, "camera/image_raw", raw.append, common.topic_qos("camera/image_raw"))
    monitor.create_subscription(Image, "camera/aligned_depth_to_color/image_raw", depth_msgs.append,
                                common.topic_qos("camera/aligned_depth_to_color/image_raw"))
    monitor.create_subscription(CameraInfo, "camera/camera_info", info.append, common.topic_qos("camera/camera_info"))
    monitor.create_subscription(DiagnosticArray, "camera/status", lambda m: status.append(common.diagnostic_values(m)),
                                common.topic_qos("camera/status"))
    runner = start_graph(tmp_path, nodes=("camera_node",), arguments={"camera": "d455", "camera_path": str(recording)},
                         overrides={"camera_node": {"width": W, "height": H, "depth": True, "rate_hz": 15.0}})
    try:
        assert wait_until(lambda: len(raw) >= 5 and len(depth_msgs) >= 5 and status, 30, monitor)
    finally:
        runner.stop()
    last = raw[-1]
    rgb = images.array_from_image_fields(last.height, last.width, last.encoding, last.is_bigendian, last.step,
                                         bytes(last.data))
    assert rgb.shape == (H, W, 3) and last.encoding == "rgb8"
    np.testing.assert_array_equal(rgb, colour(frame_index(rgb)))
    by_stamp = {common.stamp_to_seconds(m.header.stamp): m for m in depth_msgs}
    paired = [m for m in raw if common.stamp_to_seconds(m.header.stamp) in by_stamp]
    assert paired, "depth and colour of one frame share a stamp"
    d = by_stamp[common.stamp_to_seconds(paired[-1].header.stamp)]
    depth_image = images.array_from_image_fields(d.height, d.width, d.encoding, d.is_bigendian, d.step, bytes(d.data))
    assert d.encoding == "16UC1" and depth_image.shape == (H, W)
    colour_image = images.array_from_image_fields(paired[-1].height, paired[-1].width, "rgb8", 0, paired[-1].step,
                                                  bytes(paired[-1].data))
    assert abs(int(np.median(depth_image)) - (1000 + 10 * frame_index(colour_image))) <= 10
    assert info[-1].k[0] == pytest.approx(FX) and info[-1].k[2] == pytest.approx((W - 1) / 2)
    assert status[-1]["state"] == "streaming" and status[-1]["serial"] == "215122254321"
