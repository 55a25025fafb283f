"""UVC capture (DJI Osmo Action 4 / any webcam) through the real OpenCV capture code.

There is no /dev/video* here, so the same UvcSource opens video files and image sequences, which
OpenCV delivers through the same VideoCapture API; the source plays them at their frame rate like
a camera. Frames carry their number as a bit pattern so tests can tell which frame they got.
"""
from __future__ import annotations

import time
from pathlib import Path

import cv2
import numpy as np
import pytest
from diagnostic_msgs.msg import DiagnosticArray
from sensor_msgs.msg import CameraInfo, CompressedImage

from graph_helpers import start_graph, wait_until
from sparsevideonav_ros import configs
from sparsevideonav_ros.core import images
from sparsevideonav_ros.nodes import camera_node, common
from sparsevideonav_ros.sources.base import SourceError
from sparsevideonav_ros.sources.file import write_video
from sparsevideonav_ros.sources.uvc import UvcSource, parse_device
from sparsevideonav_ros.tools.monitor import GraphMonitor

BITS, BLOCK = 10, 24  # frame number as 10 black/white blocks along the top


def coded_frame(number: int, width: int = 320, height: int = 240) -> np.ndarray:
    rgb = np.full((height, width, 3), (40, 90, 160), np.uint8)
    for bit in range(BITS):
        value = 255 if (number >> bit) & 1 else 0
        rgb[4:4 + BLOCK, 4 + bit * BLOCK:4 + (bit + 1) * BLOCK - 2] = value
    return rgb


def frame_number(rgb: np.ndarray) -> int:
    centre = 4 + BLOCK // 2
    bits = [rgb[centre, 4 + bit * BLOCK + BLOCK // 2 - 1].mean() > 128 for bit in range(BITS)]
    return sum(1 << bit for bit, on in enumerate(bits) if on)


@pytest.fixture(scope="module")
def clip(tmp_path_factory) -> Path:
    """3 s at 30 fps, 320x240, frame numbers coded."""
    path = tmp_path_factory.mktemp("uvc") / "clip.mp4"
    write_video(path, (coded_frame(i) for i in range(90)), fps=30.0)
    return path


def test_device_argument_parsing():
    assert parse_device("") == (0, True) and parse_device(None) == (0, True)
    assert parse_device("2") == (2, True) and parse_device(3) == (3, True)
    assert parse_device("/dev/v4l/by-id/usb-DJI_Osmo_Action_4-video-index0") == (
        "/dev/v4l/by-id/usb-DJI_Osmo_Action_4-video-index0", True)
    assert parse_device("walk.mp4") == ("walk.mp4", False)


def test_missing_camera_is_a_clear_error():
    with pytest.raises(SourceError, match=r"/dev/video9 does not exist .*v4l2-ctl --list-devices"):
        UvcSource("9").open()
    with pytest.raises(SourceError, match="/dev/video-osmo does not exist"):
        UvcSource("/dev/video-osmo").open()
    with pytest.raises(ValueError, match="fourcc"):
        UvcSource("0", fourcc="MJPEG")


def test_plays_like_a_camera_and_hands_out_only_the_freshest_frame(clip):
    source = UvcSource(str(clip), width=1280, height=720, fps=30.0, timeout_s=1.0)
    source.open()
    try:
        assert (source.width, source.height, source.nominal_fps) == (320, 240, 30.0)  # a file keeps its size
        first = source.read()
        started = time.monotonic()
        time.sleep(0.5)
        fresh = source.poll()
        elapsed = time.monotonic() - started
        assert fresh is not None and source.poll() is None  # each frame is handed out once
        gap = frame_number(fresh.rgb) - frame_number(first.rgb)
        assert abs(gap - 30 * elapsed) <= 4, (gap, elapsed)  # the newest frame, not the next buffered one
        assert source.frames_skipped >= 10
        assert abs(time.time() - fresh.stamp) < 0.1  # stamped at capture
        grabbed, t0 = source.frames_grabbed, time.monotonic()
        time.sleep(1.0)
        rate = (source.frames_grabbed - grabbed) / (time.monotonic() - t0)
        assert 24 <= rate <= 36, rate  # delivered at the file's 30 fps, like a camera
        assert source.status()["state"] == "streaming"
    finally:
        source.close()
    assert source.status()["state"] == "closed"
    with pytest.raises(SourceError, match="closed"):
        source.read()
    source.close()  # twice is fine


def test_reconnects_when_the_device_disappears(tmp_path):
    device = tmp_path / "osmo.mp4"
    write_video(device, (coded_frame(i) for i in range(12)), fps=30.0)  # 0.4 s, then the "camera" is gone
    source = UvcSource(str(device), timeout_s=0.3)
    source.open()
    try:
        source.read()
        device.rename(tmp_path / "unplugged.mp4")
        deadline = time.monotonic() + 5
        while source.state != "reconnecting" and time.monotonic() < deadline:
            time.sleep(0.05)
        assert source.state == "reconnecting"
        time.sleep(0.7)  # two failed reopen attempts
        assert "does not exist" in source.last_error, source.last_error
        (tmp_path / "unplugged.mp4").rename(device)
        frame = source.read(timeout_s=3.0)  # back, and frames flow again
        assert source.state == "streaming" and source.reconnects >= 1
        assert frame_number(frame.rgb) < 12
    finally:
        source.close()


def test_image_sequence_through_the_same_capture(tmp_path):
    for i in range(10):
        cv2.imwrite(str(tmp_path / f"frame_{i:03d}.png"), cv2.cvtColor(coded_frame(i, 256, 144), cv2.COLOR_RGB2BGR))
    source = UvcSource(str(tmp_path / "frame_%03d.png"), timeout_s=1.0)
    source.open()
    try:
        numbers = []
        for _ in range(4):
            frame = source.read()
            assert frame.rgb.shape == (144, 256, 3)
            numbers.append(frame_number(frame.rgb))
        assert numbers == sorted(numbers) and numbers[-1] < 10
    finally:
        source.close()


def test_osmo_preset_config():
    config = configs.CameraNodeConfig(source="osmo")
    assert config.kind == "uvc" and config.frame_size() == (1280, 720) and config.camera_fps() == 30.0
    assert configs.CameraNodeConfig(source="osmo", width=1920, height=1080).frame_size() == (1920, 1080)
    source = camera_node.open_source(configs.CameraNodeConfig(source="osmo", path="/dev/video4"))
    assert isinstance(source, UvcSource) and source.requested == (1280, 720, 30.0) and source.fourcc == "MJPG"
    assert source.target == "/dev/video4"


@pytest.fixture
def monitor(ros_context):
    node = GraphMonitor("test_uvc_monitor")
    yield node
    node.destroy_node()


def test_camera_node_osmo_publishes_native_720p_frames(tmp_path, monitor):
    video = tmp_path / "osmo_720p.mp4"
    write_video(video, (coded_frame(i, 1280, 720) for i in range(45)), fps=30.0)
    jpeg, info, status = [], [], []
    monitor.create_subscription(CompressedImage, "camera/image_raw/compressed", jpeg.append,
                                common.topic_qos("camera/image_raw/compressed"))
    monitor.create_subscription(CameraInfo, "camera/camera_info", info.append, common.topic_qos("camera/camera_info"))
    monitor.create_subscription(DiagnosticArray, "camera/status", lambda m: status.append(common.diagnostic_values(m)),
                                common.topic_qos("camera/status"))
    runner = start_graph(tmp_path, nodes=("camera_node",), arguments={"camera": "osmo", "camera_path": str(video)},
                         overrides={"camera_node": {"rate_hz": 10.0, "publish_raw": False}})
    try:
        assert wait_until(lambda: len(jpeg) >= 8 and status, 30, monitor), (tmp_path / "logs").iterdir()
    finally:
        runner.stop()
    frames = [images.decode_compressed(m.format, bytes(m.data)) for m in jpeg]
    assert all(f.shape == (720, 1280, 3) for f in frames)  # native size: crop/resize is the policy's job
    numbers = [frame_number(f) for f in frames[:8]]
    # The 45-frame clip loops; when discovery is slow the first frames seen may straddle the wrap.
    steps = np.diff(numbers) % 45
    assert (steps > 0).all(), numbers  # in order, each frame once
    assert np.median(steps) >= 2, numbers  # 10 Hz publishing of a 30 fps camera skips frames, never queues them
    assert (info[-1].width, info[-1].height) == (1280, 720)
    assert status[-1]["state"] == "streaming" and status[-1]["source"] == "osmo"
