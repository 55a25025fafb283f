"""Offline evaluation (tools/evaluate.py) and bag reading (bags.py) on generated bags: no ROS graph.

Bags are written with the rosbags writer from messages serialized by rclpy (the bytes a live recorder
stores); the evaluation itself must not import rclpy (checked in a subprocess).
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest

from sparsevideonav_ros import bags, stack
from sparsevideonav_ros.policies import registry
from sparsevideonav_ros.policies.base import Plan
from sparsevideonav_ros.policies.scripted.policy import ScriptedPolicy
from sparsevideonav_ros.tools import evaluate

REPO = Path(__file__).resolve().parent.parent
T0 = 1_700_000_000.0  # stamps of the generated episode (s)
SPEED = 0.25  # m/s straight ahead
INSTRUCTION = "walk to the yellow door"


def serialize(msg) -> bytes:
    from rclpy.serialization import serialize_message
    return serialize_message(msg)


def write_episode_bag(folder: Path, seconds: float = 4.0, fps: float = 15.0, storage: str = "mcap",
                      with_instruction: bool = True) -> Path:
    """A bag like a recording: JPEG frames + camera_info (15 FPS), odometry (50 Hz) of a robot driving
    straight at SPEED, the instruction once; bag times are receive times a few ms after the stamps."""
    from nav_msgs.msg import Odometry
    from std_msgs.msg import Header, String

    from sparsevideonav_ros.nodes import common, convert
    from sparsevideonav_ros.sources.synthetic import SyntheticSource

    source = SyntheticSource(320, 240, fps)
    source.open()
    records = []  # (bag time ns, topic, type, bytes)
    for i in range(int(seconds * fps)):
        stamp = T0 + i / fps
        header = Header(stamp=common.seconds_to_stamp(stamp), frame_id="camera_link")
        recv = int((stamp + 0.004) * 1e9)
        records.append((recv, "/camera/image_raw/compressed", "sensor_msgs/msg/CompressedImage",
                        serialize(convert.compressed_msg_from_rgb(source.render(i), 85, header))))
        records.append((recv + 1000, "/camera/camera_info", "sensor_msgs/msg/CameraInfo",
                        serialize(convert.camera_info_msg(320, 240, np.radians(90.0), header))))
    for i in range(int(seconds * 50) + 10):
        stamp = T0 - 0.1 + i / 50
        odom = Odometry(header=Header(stamp=common.seconds_to_stamp(stamp), frame_id="odom"), child_frame_id="base_link")
        odom.pose.pose.position.x = SPEED * max(0.0, stamp - T0)
        odom.pose.pose.orientation.w = 1.0
        odom.twist.twist.linear.x = SPEED
        records.append((int((stamp + 0.001) * 1e9), "/odom", "nav_msgs/msg/Odometry", serialize(odom)))
    if with_instruction:
        records.append((int((T0 - 0.05) * 1e9), "/instruction", "std_msgs/msg/String",
                        serialize(String(data=INSTRUCTION))))
    bags.write_bag(folder, records, storage)
    return folder


@pytest.fixture(scope="module")
def episode_bag(tmp_path_factory) -> Path:
    return write_episode_bag(tmp_path_factory.mktemp("bags") / "episode")


class PreviewPolicy(ScriptedPolicy):
    """Test policy: plans 1 m ahead from every frame (no odometry needed) and 'imagines' the frame
    mirrored and shrunk as its preview, so the evaluation has a preview to draw."""

    name = "test_preview"

    def observe(self, observation) -> None:
        self._latest = observation

    def plan(self) -> Plan:
        rgb = self._latest.rgb
        preview = np.ascontiguousarray(cv2.resize(rgb[:, ::-1], (rgb.shape[1] // 4, rgb.shape[0] // 4)))
        return Plan(stamp=self._latest.stamp, waypoints=np.array([[1.0, 0.2, 0.0]]), preview=preview,
                    timings_s={"imagine": 0.001})


@pytest.fixture
def preview_policy(monkeypatch):
    monkeypatch.setitem(registry.POLICIES, "test_preview", f"{__name__}:PreviewPolicy")
    return "test_preview"


def read_video(path: Path) -> list[np.ndarray]:
    capture = cv2.VideoCapture(str(path))
    frames = []
    while True:
        ok, frame = capture.read()
        if not ok:
            break
        frames.append(frame)
    capture.release()
    return frames


# =============================================================================================

def test_evaluation_of_a_generated_bag_writes_the_report_without_rclpy(episode_bag, tmp_path):
    out = tmp_path / "report"
    code = ("import sys; from sparsevideonav_ros.tools import evaluate; "
            f"rc = evaluate.main([{str(episode_bag)!r}, '--policy', 'scripted', '-p', 'waypoints=[2.0, 0.0, 0.0]', "
            f"'--out', {str(out)!r}]); "
            "assert 'rclpy' not in sys.modules, 'evaluation imported rclpy'; sys.exit(rc)")
    env = dict(os.environ, PYTHONPATH=str(REPO))
    result = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "step latency ms: p50" in result.stdout and f"report: {out.resolve()}" in result.stdout

    summary = json.loads((out / "summary.json").read_text())
    assert summary["kind"] == "bag" and summary["policy"] == "scripted"
    assert summary["frames_in_input"] == 60
    assert 15 <= summary["steps"] <= 17  # 4 s at 4 FPS
    assert summary["states"] == {"ok": summary["steps"]} and summary["errors"] == 0
    assert summary["instruction"] == INSTRUCTION and summary["instruction_source"] == "bag instruction topic"
    assert summary["camera_intrinsics"] == "camera_info"
    assert summary["versus_recorded"] == {"recorded_plans": 0}
    assert summary["topics"]["frame"] == "/camera/image_raw/compressed" and summary["topics"]["odom"] == "/odom"

    steps = json.loads((out / "steps.json").read_text())
    stamps = np.array([s["stamp"] for s in steps])
    assert np.allclose(np.diff(stamps), 0.25, atol=1 / 15 + 1e-6)  # the 4 FPS grid over 15 FPS frames
    for step in steps:  # the route's end (2, 0) seen from the robot at the frame: odometry reached the policy
        assert step["waypoints"][0][0] == pytest.approx(2.0 - SPEED * (step["stamp"] - T0), abs=0.01)
        assert step["waypoints"][0][1] == pytest.approx(0.0, abs=1e-9)

    latency = json.loads((out / "latency.json").read_text())
    assert latency["compute_ms"]["count"] == len(steps) == len(latency["per_step"])
    assert 0 < latency["compute_ms"]["p50"] <= latency["compute_ms"]["p95"] <= latency["compute_ms"]["max"]
    for name in ("plans.png", "latency.png"):
        image = cv2.imread(str(out / name))
        assert image is not None and image.shape[0] > 300, name
    frames = read_video(out / "overlay.mp4")
    assert len(frames) == len(steps) == summary["video_frames"]
    band = evaluate.OverlayRenderer(0.35).band_px  # the step's text, above the frame
    assert frames[0].shape == (band + 240, 320, 3)  # no preview: just the frame


def test_overlay_draws_the_plan_and_the_preview_beside_the_frame(episode_bag, tmp_path, preview_policy):
    summary = evaluate.evaluate(episode_bag, preview_policy, tmp_path / "report")
    assert summary["previews"] == summary["steps"] > 10
    assert summary["instruction"] == INSTRUCTION
    latency = json.loads((tmp_path / "report" / "latency.json").read_text())
    # timings are milliseconds under keys that say so (the policy's timings_s name 'imagine' -> 'imagine_ms')
    assert latency["timings_ms"]["imagine_ms"]["p50"] == pytest.approx(1.0)
    assert all(row["imagine_ms"] == pytest.approx(1.0) for row in latency["per_step"])
    steps = json.loads((tmp_path / "report" / "steps.json").read_text())
    assert all(s["timings_ms"] == {"imagine_ms": pytest.approx(1.0)} for s in steps)
    frames = read_video(tmp_path / "report" / "overlay.mp4")
    assert len(frames) == summary["steps"]
    # the preview (80x60, a quarter of the frame) is scaled to the frame height: 320 px wide panel
    band = evaluate.OverlayRenderer(0.35).band_px  # the step's text, above the frame and the preview
    assert frames[0].shape == (band + 240, 640, 3)
    frames = [frame[band:] for frame in frames]  # the camera frames and previews
    # the plan (1 m ahead, 0.2 m left) is drawn in orange on the frame: project it like the renderer
    intrinsics = evaluate.Intrinsics.from_fov(320, 240, 90.0)
    (u, v), = evaluate.project_ground(np.array([[1.0, 0.2, 0.0]]), intrinsics, 0.35)
    assert 0 < u < 160 and 120 < v < 240  # left of the centre, below the horizon
    window = frames[3][v - 8:v + 9, u - 8:u + 9].astype(int)  # BGR around the waypoint's circle
    orange = (window[..., 2] > 170) & (window[..., 1] > 70) & (window[..., 1] < 200) & (window[..., 0] < 100)
    assert orange.sum() >= 15, orange.sum()
    sky = frames[3][5:40, 200:300].astype(int)
    assert not ((sky[..., 2] > 170) & (sky[..., 0] < 100)).any()  # and nowhere it should not be
    # the panel shows the preview, the mirrored frame (away from the drawings: rows 60..140)
    panel, frame = frames[3][60:140, 320:].astype(int), frames[3][60:140, :320].astype(int)
    assert np.abs(panel[:, 200:300] - frame[:, 19:119][:, ::-1]).mean() < 25
    assert np.abs(panel[:, 200:300] - frame[:, 200:300]).mean() > np.abs(panel[:, 200:300] - frame[:, 19:119][:, ::-1]).mean()


def test_video_input_with_an_instruction(tmp_path, preview_policy, capsys):
    from sparsevideonav_ros.sources.file import write_video
    from sparsevideonav_ros.sources.synthetic import SyntheticSource

    source = SyntheticSource(160, 120, 10.0)
    source.open()
    video = write_video(tmp_path / "walk.mp4", (source.render(i) for i in range(30)), 10.0) and tmp_path / "walk.mp4"
    out = tmp_path / "report"
    assert evaluate.main([str(video), "--policy", preview_policy, "--instruction", "go to the door",
                          "--out", str(out)]) == 0
    summary = json.loads((out / "summary.json").read_text())
    assert summary["kind"] == "video" and summary["frames_in_input"] == 30
    assert summary["steps"] == 12 and summary["instruction"] == "go to the door"
    assert summary["odometry_messages"] == 0
    assert len(read_video(out / "overlay.mp4")) == 12
    # scripted needs odometry, which a video does not have: every step says it waits for odometry, no motion,
    # no plan (exit 1), and the message says what is missing
    assert evaluate.main([str(video), "--policy", "scripted", "--out", str(tmp_path / "scripted")]) == 1
    assert "no odometry" in capsys.readouterr().err.splitlines()[-1]
    waiting = json.loads((tmp_path / "scripted" / "summary.json").read_text())
    assert waiting["states"] == {"waiting_odometry": waiting["steps"]} and waiting["plans_with_waypoints"] == 0
    assert waiting["errors"] == 0


def test_sqlite3_bag_and_bag_without_instruction(tmp_path, capsys):
    bag = write_episode_bag(tmp_path / "db3", seconds=2.0, storage="sqlite3", with_instruction=False)
    assert list(bag.glob("*.db3"))
    out = tmp_path / "report"
    # nobody told it where to go: the report is written, the exit status says no plan came, and how to fix it
    assert evaluate.main([str(bag), "-p", "require_instruction=true", "--out", str(out), "--no-video"]) == 1
    hint = capsys.readouterr().err.splitlines()[-1]
    assert hint.startswith("no plan:") and "waiting_instruction" in hint and "--instruction" in hint, hint
    summary = json.loads((out / "summary.json").read_text())
    assert summary["instruction_source"] == "none" and summary["plans"] == 0
    assert summary["states"] == {"waiting_instruction": summary["steps"]}
    assert not (out / "overlay.mp4").exists()
    assert evaluate.main([str(bag), "--instruction", "go", "-p", "require_instruction=true",
                          "--out", str(tmp_path / "r2"), "--no-video"]) == 0
    assert json.loads((tmp_path / "r2" / "summary.json").read_text())["states"] == {"ok": summary["steps"]}
    # the policy configured from a params file (as params_file:= on the robot), -p on top
    site = tmp_path / "site.yaml"
    site.write_text("/**/policy_node:\n  ros__parameters:\n    scripted:\n      require_instruction: true\n"
                    "      waypoints: [3.0, 0.0, 0.0]\n")
    assert evaluate.main([str(bag), "--params-file", str(site), "-p", "require_instruction=false",
                          "--out", str(tmp_path / "r3"), "--no-video"]) == 0
    summary = json.loads((tmp_path / "r3" / "summary.json").read_text())
    assert summary["policy_config"]["waypoints"] == [3.0, 0.0, 0.0]
    assert summary["policy_config"]["require_instruction"] is False and summary["states"] == {"ok": summary["steps"]}
    assert evaluate.main([str(bag), "--params-file", str(tmp_path / "nope.yaml"), "--out", str(tmp_path / "r4")]) == 2


# -- clear errors ------------------------------------------------------------------------------

def run_main(capsys, *args) -> tuple[int, str]:
    code = evaluate.main([str(a) for a in args] + ["--no-video"])
    return code, capsys.readouterr().err


def test_truncated_bag_is_a_clear_error(episode_bag, tmp_path, capsys):
    import shutil
    copy = tmp_path / "copy"
    shutil.copytree(episode_bag, copy)
    (mcap,) = copy.glob("*.mcap")
    data = mcap.read_bytes()
    mcap.write_bytes(data[: len(data) // 2])  # an interrupted copy
    code, err = run_main(capsys, copy, "--out", tmp_path / "r")
    assert code == 2 and "truncated" in err and "no footer" in err and mcap.name in err, err
    # a recorder killed before closing: no metadata.yaml, an MCAP without its footer
    (copy / "metadata.yaml").unlink()
    code, err = run_main(capsys, copy, "--out", tmp_path / "r")
    assert code == 2 and "truncated" in err, err
    with pytest.raises(bags.BagError, match="truncated"):
        bags.open_bag(mcap)
    mcap.write_bytes(b"")
    code, err = run_main(capsys, mcap, "--out", tmp_path / "r")
    assert code == 2 and "empty" in err, err


def test_foreign_bags_and_files_are_clear_errors(tmp_path, capsys):
    from std_msgs.msg import String

    chatter = tmp_path / "chatter"
    writer = bags.open_writer(chatter)
    connection = bags.add_connection(writer, "/chatter", "std_msgs/msg/String")
    for i in range(3):
        writer.write(connection, 1_000 + i, serialize(String(data=f"hello {i}")))
    writer.close()
    code, err = run_main(capsys, chatter, "--out", tmp_path / "r")
    assert code == 2 and "no camera frames" in err and "/chatter (std_msgs/msg/String, 3 messages)" in err, err

    code, err = run_main(capsys, chatter, "--image-topic", "/front/image", "--out", tmp_path / "r")
    assert code == 2 and "/front/image is not in the bag" in err, err

    notes = tmp_path / "notes.txt"
    notes.write_text("not a bag")
    code, err = run_main(capsys, notes, "--out", tmp_path / "r")
    assert code == 2 and "not a rosbag2 bag" in err, err

    empty = tmp_path / "empty_folder"
    empty.mkdir()
    code, err = run_main(capsys, empty, "--out", tmp_path / "r")
    assert code == 2 and "no metadata.yaml and no .mcap or .db3" in err, err

    garbage = tmp_path / "garbage.mcap"
    garbage.write_bytes(os.urandom(4096))
    code, err = run_main(capsys, garbage, "--out", tmp_path / "r")
    assert code == 2 and "not an MCAP file" in err, err

    ros1 = tmp_path / "old.bag"
    ros1.write_bytes(b"#ROSBAG V2.0\n")
    code, err = run_main(capsys, ros1, "--out", tmp_path / "r")
    assert code == 2 and "ROS 1 bag" in err, err

    code, err = run_main(capsys, tmp_path / "missing", "--out", tmp_path / "r")
    assert code == 2 and "no such bag or video" in err, err

    code, err = run_main(capsys, chatter, "--policy", "no_such_policy", "--out", tmp_path / "r")
    assert code == 2 and "scripted" in err, err  # lists the known policies
    assert not (tmp_path / "r").exists()  # no report for unusable input


def test_player_refuses_a_truncated_bag(episode_bag, tmp_path):
    import shutil
    copy = tmp_path / "copy"
    shutil.copytree(episode_bag, copy)
    (mcap,) = copy.glob("*.mcap")
    mcap.write_bytes(mcap.read_bytes()[:5000])
    env = stack.loopback_environment(int(os.environ["ROS_DOMAIN_ID"]))
    env["PYTHONPATH"] = str(REPO)
    result = subprocess.run([sys.executable, "-m", "sparsevideonav_ros.tools.play", str(copy), "--topics", "/odom"],
                            env=env, capture_output=True, text=True, timeout=60)
    assert result.returncode == 2 and "truncated" in result.stderr, result.stdout + result.stderr


# -- the grid alignment and the recorded-plan comparison --------------------------------------

def jittery_camera(seed: int, count: int = 300, jitter_s: float = 0.004) -> list[float]:
    rng = np.random.default_rng(seed)
    return [round(T0 + t, 6) for t in np.cumsum(np.full(count, 1 / 15) + rng.normal(0, jitter_s, count))]


@pytest.mark.parametrize("seed", [3, 7, 13])
def test_infer_grid_anchor_recovers_a_grid_that_started_before_the_recording(seed):
    from sparsevideonav_ros.core.frame_sampler import FrameSampler, infer_grid_anchor

    frames = jittery_camera(seed)
    live = FrameSampler(4.0)
    picked = [f for f in frames if live.offer(f)]
    in_bag = frames[5:]  # the recorder missed the frame the live grid started on
    plans = [p for p in picked if p >= in_bag[0]]
    anchor, matched = infer_grid_anchor(in_bag, plans, 4.0)
    assert matched == len(plans)
    replayed = FrameSampler(4.0)
    replayed.anchor_at(anchor)
    assert [f for f in in_bag if f >= plans[0] and replayed.offer(f)] == plans
    assert replayed.accepted == len(plans)  # the anchor is no frame
    naive = FrameSampler(4.0)  # a grid that starts at the first plan's frame picks other frames
    assert [f for f in in_bag if f >= plans[0] and naive.offer(f)] != plans


def test_recorded_grid_of_a_bag_whose_recorder_missed_the_first_frames(tmp_path):
    """bags.recorded_grid: the frame of the first recorded plan and the grid anchor that replays and
    evaluations use; a sampler anchored there picks every recorded plan frame."""
    from nav_msgs.msg import Path as PathMsg
    from sensor_msgs.msg import CompressedImage

    from sparsevideonav_ros.core.frame_sampler import FrameSampler
    from sparsevideonav_ros.nodes import common

    stamps = jittery_camera(11, count=150, jitter_s=0.003)
    live = FrameSampler(4.0)
    planned = [s for s in stamps if live.offer(s)]
    recorded_frames = stamps[4:]  # the recorder's subscription matched a little later than the policy's
    writer = bags.open_writer(tmp_path / "bag")
    frames = bags.add_connection(writer, "/camera/image_raw/compressed", "sensor_msgs/msg/CompressedImage")
    paths = bags.add_connection(writer, "/policy/path", "nav_msgs/msg/Path")
    records = []
    for stamp in recorded_frames:
        msg = CompressedImage(format="jpeg")
        msg.header.stamp = common.seconds_to_stamp(stamp)
        records.append((int(round((stamp + 0.003) * 1e9)), frames, serialize(msg)))
    in_bag = [p for p in planned if p >= recorded_frames[0]]
    for stamp in in_bag:
        msg = PathMsg()
        msg.header.stamp = common.seconds_to_stamp(stamp)
        records.append((int(round((stamp + 0.01) * 1e9)), paths, serialize(msg)))
    for bag_ns, connection, data in sorted(records, key=lambda r: r[0]):
        writer.write(connection, bag_ns, data)
    writer.close()

    grid = bags.recorded_grid_of(tmp_path / "bag", "/policy/path", "/camera/image_raw/compressed")
    assert grid.start_stamp == pytest.approx(in_bag[0], abs=1e-6)
    assert grid.start_ns == int(round((in_bag[0] + 0.003) * 1e9))
    assert grid.offset_s == (grid.start_ns - int(round((recorded_frames[0] + 0.003) * 1e9))) // 1000 / 1e6
    assert grid.matched == grid.plans == len(in_bag)
    replayed = FrameSampler(4.0)
    replayed.anchor_at(grid.anchor_stamp)
    assert [s for s in recorded_frames if s >= in_bag[0] - 1e-6 and replayed.offer(s)] == in_bag
    assert bags.recorded_grid_of(tmp_path / "bag", "/other/policy/path", "/camera/image_raw/compressed") is None


def test_compare_with_recorded_plans():
    steps = [evaluate.Step(i, T0 + i * 0.25, "ok", np.array([[1.0, 0.0, 0.0]]), 1.0, {}, "", None) for i in range(4)]
    recorded = [(T0, np.array([[1.0, 0.0, 0.0]])), (T0 + 0.25, np.array([[1.0, 0.03, 0.1]])),
                (T0 + 0.5, np.zeros((0, 3))), (T0 + 9.0, np.array([[1.0, 0.0, 0.0]]))]
    result = evaluate.compare_with_recorded(steps, recorded)
    assert result["recorded_plans"] == 4 and result["matched_frames"] == 3 and result["same_stop_or_go"] == 2
    assert result["recorded_plans_in_span"] == 3  # the one at +9 s is after the last step
    assert result["compared_waypoints"] == 2 and result["within_5cm"] == 2
    assert result["max_position_difference_m"] == pytest.approx(0.03)
    assert result["max_yaw_difference_rad"] == pytest.approx(0.1)


def test_a_refused_instruction_is_said_and_the_status_instruction_takes_over(capsys):
    """The runner applies instructions on its worker side: a policy's refusal must reach the user, and the
    instruction the recorded status reports is then tried, not skipped because one was queued."""
    from sparsevideonav_ros.policies.base import PolicyError as Refused
    from sparsevideonav_ros.policies.scripted.policy import ScriptedConfig as Config
    from sparsevideonav_ros.policies.scripted.policy import ScriptedPolicy as Scripted
    from sparsevideonav_ros.tools.evaluate import Episode, FrameEvent, run_policy

    class Picky(Scripted):
        def set_instruction(self, text: str) -> None:
            if "lava" in text:
                raise Refused("cannot walk on lava")
            super().set_instruction(text)

    policy = Picky(Config(require_instruction=True))
    episode = Episode(kind="bag", path="memory", status_instruction="walk to the door")
    rgb = np.zeros((8, 8, 3), np.uint8)
    events = [("odom", (0.0, np.zeros(3))), ("instruction", (0.0, "walk into the lava"))]
    events += [("frame", FrameEvent(stamp=i * 0.25, frame_id="camera_link", decode=lambda: rgb)) for i in range(6)]
    steps = run_policy(iter(events), episode, policy, None, "", None)
    assert "instruction refused: cannot walk on lava" in capsys.readouterr().err
    assert policy.instruction == "walk to the door"
    assert steps[-1].state != "waiting_instruction"
