"""Training data adapters (sparsevideonav_ros.datasets): bags, plain episode folders, LeRobot v3 read/write,
validation errors that name the episode and the frame, and the rosbag -> LeRobot v3 export.

Bags are written with the project's own writers (bags.open_writer / add_connection, the camera node's
message builders in nodes.convert, rclpy's serializer as the recorder stores them). CPU only, a few seconds.
"""
from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest

from sparsevideonav_ros import bags
from sparsevideonav_ros.core import se2
from sparsevideonav_ros.core.frame_sampler import FrameSampler
from sparsevideonav_ros.datasets import ADAPTERS, adapter_names, detect, open_episodes
from sparsevideonav_ros.datasets import folder as folder_adapter
from sparsevideonav_ros.datasets import lerobot_v3
from sparsevideonav_ros.datasets.episodes import CameraModel, Episode, EpisodeError, FrameList, validate_all

REPO = Path(__file__).resolve().parents[1]
T0 = 1_700_000_000.0  # stamps of the generated recordings (s)
CAMERA_FPS = 15.0  # camera_node's default rate_hz
WIDTH, HEIGHT = 160, 120
INSTRUCTION = "walk to the yellow door"
# Frames after JPEG (quality 85) and/or mp4v (MPEG-4 Part 2, 4:2:0): mean absolute error per pixel and channel
# against the original frame, in grey levels of 255. Measured 2.6..6.0 on these deliberately sharp, saturated
# test frames (chroma subsampling costs most); a neighbouring frame differs by several times more (checked).
FRAME_TOLERANCE = 8.0


def true_pose(t: float) -> np.ndarray:
    """The recorded robot: drives an arc at 0.4 m/s turning 0.3 rad/s, from the origin at T0."""
    s = max(0.0, t - T0)
    v, w = 0.4, 0.3
    return np.array([v / w * math.sin(w * s), v / w * (1 - math.cos(w * s)), se2.wrap_angle(w * s)])


def frame_image(i: int) -> np.ndarray:
    """Camera frame i: a textured image that changes clearly from frame to frame (a sliding gradient + index bars)."""
    y, x = np.mgrid[0:HEIGHT, 0:WIDTH]
    base = ((x * 3 + y + i * 9) % 256).astype(np.uint8)
    rgb = np.stack([base, np.roll(base, i * 4, axis=1), 255 - base], axis=-1)
    rgb[5:25, (i * 7) % (WIDTH - 20):(i * 7) % (WIDTH - 20) + 20] = (255, 255, 0)
    return np.ascontiguousarray(rgb)


def write_recorded_bag(folder: Path, seconds: float = 4.0, instruction: str = INSTRUCTION,
                       status_instruction: str = "", plans_from: int = -1,
                       odometry_silence: tuple[float, float] = (0.0, 0.0)) -> Path:
    """A bag as record:=true writes it: JPEG frames + camera_info at 15 FPS, odometry at 50 Hz, the instruction
    once (latched), policy/status (with the instruction the policy runs) at 1 Hz, and when plans_from >= 0
    the policy's plans (policy/path) stamped with the frames its 4 FPS grid picked from frame plans_from on."""
    from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus, KeyValue
    from nav_msgs.msg import Odometry
    from rclpy.serialization import serialize_message
    from std_msgs.msg import Header, String

    from sparsevideonav_ros.nodes import common, convert

    records = []  # (bag time ns, topic, type, message)
    sampler = FrameSampler(4.0)
    for i in range(int(seconds * CAMERA_FPS)):
        stamp = T0 + i / CAMERA_FPS
        header = Header(stamp=common.seconds_to_stamp(stamp), frame_id="camera_link")
        received = int((stamp + 0.004) * 1e9)
        records.append((received, "/camera/image_raw/compressed", "sensor_msgs/msg/CompressedImage",
                        convert.compressed_msg_from_rgb(frame_image(i), 85, header)))
        records.append((received + 1000, "/camera/camera_info", "sensor_msgs/msg/CameraInfo",
                        convert.camera_info_msg(WIDTH, HEIGHT, math.radians(90.0), header)))
        if plans_from >= 0 and i >= plans_from and sampler.offer(stamp):
            path_header = Header(stamp=header.stamp, frame_id="odom")
            records.append((received + 90_000_000, "/policy/path", "nav_msgs/msg/Path",
                            convert.path_msg_from_waypoints(np.array([[0.5, 0.0, 0.0]]), path_header)))
    for i in range(int(seconds * 50) + 10):
        stamp = T0 - 0.1 + i / 50
        if T0 + odometry_silence[0] <= stamp < T0 + odometry_silence[1]:
            continue
        odom = Odometry(header=Header(stamp=common.seconds_to_stamp(stamp), frame_id="odom"),
                        child_frame_id="base_link")
        x, y, yaw = true_pose(stamp)
        odom.pose.pose.position.x, odom.pose.pose.position.y = float(x), float(y)
        _, _, odom.pose.pose.orientation.z, odom.pose.pose.orientation.w = se2.quaternion_from_yaw(float(yaw))
        records.append((int((stamp + 0.001) * 1e9), "/odom", "nav_msgs/msg/Odometry", odom))
    if instruction:
        records.append((int((T0 - 0.05) * 1e9), "/instruction", "std_msgs/msg/String", String(data=instruction)))
    for second in range(int(seconds)):
        status = DiagnosticStatus(name="policy_node", values=[KeyValue(key="instruction", value=status_instruction),
                                                              KeyValue(key="state", value="ok")])
        records.append((int((T0 + second + 0.5) * 1e9), "/policy/status", "diagnostic_msgs/msg/DiagnosticArray",
                        DiagnosticArray(status=[status])))
    bags.write_bag(folder, [(received, topic, msg_type, serialize_message(message))
                            for received, topic, msg_type, message in records])
    return folder


def source_index(stamp: float) -> int:
    return int(round((stamp - T0) * CAMERA_FPS))


def mean_error(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.abs(a.astype(float) - b.astype(float)).mean())


@pytest.fixture(scope="module")
def recorded_bag(tmp_path_factory) -> Path:
    return write_recorded_bag(tmp_path_factory.mktemp("bags") / "run1")


def memory_episode(episode_id: str, count: int = 10, instruction: str = "go to the kitchen", poses: bool = True,
                   actions: bool = False, offset: int = 0, camera: CameraModel | None = None) -> Episode:
    motions = np.tile([0.1, 0.01, 0.05], (count, 1))
    motions[:, 2] += np.linspace(0, 0.1, count)
    trajectory = se2.poses_from_deltas(np.vstack([[1.0, 2.0, 0.5], motions[:-1]]))
    return Episode(episode_id=episode_id, source="memory", instruction=instruction,
                   frames=FrameList([frame_image(offset + 4 * i) for i in range(count)]),
                   stamps_s=T0 + np.arange(count) * 0.25 + 0.004 * np.sin(np.arange(count)),
                   camera=camera or CameraModel(WIDTH, HEIGHT, horizontal_fov_deg=90.0, name="front"),
                   poses=trajectory if poses else None, actions=motions if actions else None, task="ifn")


# -- registry -----------------------------------------------------------------------------------

def test_registry_names_and_unknown_adapter():
    assert adapter_names() == list(ADAPTERS) and {"bag", "folder", "lerobot"} <= set(ADAPTERS)
    with pytest.raises(ValueError, match=r"unknown dataset adapter 'hf'.*auto, bag, lerobot, folder"):
        open_episodes(["anything"], adapter="hf")


def test_auto_detection_and_an_unknown_source(recorded_bag, tmp_path):
    assert detect(recorded_bag) == "bag"
    assert detect(next(recorded_bag.glob("*.mcap"))) == "bag"
    (tmp_path / "notes").mkdir()
    (tmp_path / "notes" / "readme.txt").write_text("hello")
    with pytest.raises(EpisodeError, match="not a dataset source any adapter reads"):
        open_episodes([tmp_path / "notes"])
    with pytest.raises(EpisodeError, match="no such file"):
        open_episodes([tmp_path / "missing"])


# -- bags ---------------------------------------------------------------------------------------

def test_bag_episode_is_4fps_with_odometry_poses_camera_info_and_the_instruction(recorded_bag):
    episodes = open_episodes([recorded_bag])
    assert len(episodes) == 1
    episode = episodes[0]
    validate_all(episodes, read_frames=True)
    assert episode.episode_id == "run1" and episode.instruction == INSTRUCTION
    assert 15 <= len(episode) <= 16  # 4 s at 4 FPS out of 60 frames at 15 FPS
    assert np.allclose(np.diff(episode.stamps_s), 0.25, atol=1 / CAMERA_FPS + 1e-6)
    expected = np.array([true_pose(t) for t in episode.stamps_s])
    assert np.abs(episode.poses[:, :2] - expected[:, :2]).max() < 2e-3  # 50 Hz odometry interpolated at the stamp
    assert np.abs(se2.wrap_angle(episode.poses[:, 2] - expected[:, 2])).max() < 2e-3
    assert episode.camera.width == WIDTH and episode.camera.height == HEIGHT
    assert np.allclose(episode.camera.intrinsics(), [[WIDTH / 2, 0, (WIDTH - 1) / 2], [0, WIDTH / 2, (HEIGHT - 1) / 2],
                                                     [0, 0, 1]], atol=1.0)
    for i in (0, 7, len(episode) - 1):  # each frame is the JPEG of the camera frame at its stamp
        assert mean_error(episode.frames[i], frame_image(source_index(episode.stamps_s[i]))) < FRAME_TOLERANCE
    assert episode.metadata["instruction_source"] == "instruction topic"


def test_bag_frames_follow_the_recorded_policys_grid(tmp_path):
    # the recorded policy's grid started at frame 6 (it missed the first frames): the episode takes its frames,
    # and before them frames on the same grid, not the grid a sampler starting at the bag's first frame makes
    bag = write_recorded_bag(tmp_path / "planned", plans_from=6)
    episode = open_episodes([bag])[0]
    assert episode.metadata["recorded_grid"]
    picked = [source_index(t) for t in episode.stamps_s]
    sampler = FrameSampler(4.0)
    planned = [i for i in range(6, 60) if sampler.offer(T0 + i / CAMERA_FPS)]  # what the recorded policy took
    assert planned[:3] == [6, 9, 13]
    assert picked == [2] + planned  # frame 2: the tick 0.25 s before frame 6's, whose window the bag covers
    fresh = FrameSampler(4.0)
    assert [i for i in range(60) if fresh.offer(T0 + i / CAMERA_FPS)][:3] == [0, 3, 7]  # what we must not do
    episode.validate()


def test_bag_instruction_from_policy_status_or_the_caller(tmp_path):
    from_status = write_recorded_bag(tmp_path / "status", seconds=2.0, instruction="",
                                     status_instruction="find the stairs")
    episode = open_episodes([from_status], instruction="ignored: one was recorded")[0]
    assert episode.instruction == "find the stairs" and episode.metadata["instruction_source"] == "policy/status"

    silent = write_recorded_bag(tmp_path / "silent", seconds=2.0, instruction="")
    bare = open_episodes([silent])[0]
    with pytest.raises(EpisodeError, match=r"episode 'silent' .*: empty instruction"):
        bare.validate()
    assert open_episodes([silent], instruction="go left")[0].instruction == "go left"


def test_an_odometry_silence_names_the_first_frame_inside_it(tmp_path):
    bag = write_recorded_bag(tmp_path / "dropout", seconds=3.0, odometry_silence=(1.0, 1.8))
    episode = open_episodes([bag])[0]
    first_inside = int(np.flatnonzero((episode.stamps_s > T0 + 0.98) & (episode.stamps_s < T0 + 1.8))[0])
    with pytest.raises(EpisodeError, match=rf"episode 'dropout' .*, frame {first_inside}: poses row is not finite"):
        episode.validate()


def test_a_folder_of_bags_reads_each(recorded_bag, tmp_path):
    write_recorded_bag(tmp_path / "a", seconds=2.0)
    write_recorded_bag(tmp_path / "b", seconds=2.0)
    assert [e.episode_id for e in open_episodes([tmp_path])] == ["a", "b"]


def test_truncated_bag_is_an_episode_error(tmp_path):
    (tmp_path / "broken").mkdir()
    (tmp_path / "broken" / "broken_0.mcap").write_bytes(b"\x89MCAP0\r\n" + b"\0" * 64)
    with pytest.raises(EpisodeError, match=r"episode 'broken' .*truncated"):
        open_episodes([tmp_path / "broken"])


# -- plain folders ------------------------------------------------------------------------------

def write_frames_folder(folder: Path, count: int = 8, poses_until: float | None = None) -> Path:
    (folder / "frames").mkdir(parents=True)
    for i in range(count):
        cv2.imwrite(str(folder / "frames" / f"{i:06d}.png"), cv2.cvtColor(frame_image(i), cv2.COLOR_RGB2BGR))
    end = (count - 1) * 0.25 if poses_until is None else poses_until
    t = np.arange(round(end / 0.05) + 1) * 0.05  # 20 Hz, to the frame at `end`
    rows = ["t,x,y,yaw"] + [f"{s:.3f},{0.5 * s:.6f},{0.1 * s:.6f},{0.2 * s:.6f}" for s in t]
    (folder / "poses.csv").write_text("\n".join(rows) + "\n")
    (folder / "instruction.txt").write_text("walk past the sofa\n")
    return folder


def test_frames_folder_with_poses_csv(tmp_path):
    episode = open_episodes([write_frames_folder(tmp_path / "walk1")])[0]
    validate_all([episode], read_frames=True)
    assert episode.episode_id == "walk1" and episode.instruction == "walk past the sofa" and len(episode) == 8
    assert np.allclose(episode.stamps_s, np.arange(8) * 0.25)
    assert np.allclose(episode.poses, np.stack([0.5, 0.1, 0.2]) * episode.stamps_s[:, None], atol=1e-6)
    assert np.array_equal(episode.frames[3], frame_image(3))  # PNG: exact


def test_video_folder_with_actions_json_and_episode_json(tmp_path):
    folder = tmp_path / "osmo_0001"
    folder.mkdir()
    writer = cv2.VideoWriter(str(folder / "video.mp4"), cv2.VideoWriter_fourcc(*"mp4v"), 30.0, (WIDTH, HEIGHT))
    for i in range(60):  # 2 s at 30 fps
        writer.write(cv2.cvtColor(frame_image(i), cv2.COLOR_RGB2BGR))
    writer.release()
    (folder / "actions.json").write_text(json.dumps([{"frame": i, "dx": 0.1, "dy": 0.0, "dtheta": 0.02}
                                                     for i in range(8)]))
    (folder / "episode.json").write_text(json.dumps({
        "instruction": "find the red chair", "task": "bvn",
        "camera": {"name": "osmo", "horizontal_fov_deg": 100.0, "mount_height_m": 1.0, "mount_pitch_down_deg": -5.0}}))
    episode = open_episodes([folder])[0]
    validate_all([episode], read_frames=True)
    assert len(episode) == 9 and episode.task == "bvn" and episode.instruction == "find the red chair"
    assert np.allclose(np.diff(episode.stamps_s), 0.25, atol=0.25 / 4 + 1e-6)  # FrameSampler takes frames <= 1/4 early
    assert episode.camera.horizontal_fov_deg == 100.0 and episode.camera.mount_height_m == 1.0
    assert np.allclose(episode.actions[:8], [[0.1, 0.0, 0.02]] * 8) and np.isnan(episode.actions[8]).all()
    picked = episode.metadata["video_frames"]
    sampler = FrameSampler(4.0)
    assert picked == [i for i in range(60) if sampler.offer(i / 30)]  # the policy's grid over the video's time
    assert np.allclose(episode.stamps_s, np.array(picked) / 30, atol=1e-3)
    assert mean_error(episode.frames[5], frame_image(picked[5])) < FRAME_TOLERANCE
    assert mean_error(episode.frames[5], frame_image(picked[4])) > 3 * FRAME_TOLERANCE


def test_collection_folder_and_the_writer_round_trip(tmp_path):
    collection = tmp_path / "osmo"
    written = [memory_episode("walk_a", 6), memory_episode("walk_b", 5, instruction="exit the room", actions=True)]
    for episode in written:
        folder_adapter.write_episode(episode, collection / episode.episode_id, image_format="png")
    read = open_episodes([collection])
    assert [e.episode_id for e in read] == ["walk_a", "walk_b"]
    for original, back in zip(written, read):
        validate_all([back], read_frames=True)
        assert back.instruction == original.instruction and back.task == "ifn"
        assert np.allclose(back.stamps_s, original.stamps_s - original.stamps_s[0], atol=1e-6)
        assert np.allclose(back.poses, original.poses, atol=1e-9)
        assert np.array_equal(back.frames[2], original.frames[2])
    assert np.allclose(read[1].actions, written[1].actions)
    with pytest.raises(EpisodeError, match="not empty"):
        folder_adapter.write_episode(written[0], collection / "walk_a")


# -- validation errors name the episode and the frame -------------------------------------------

def test_missing_frame_file_names_the_episode_and_the_frame(tmp_path):
    folder = write_frames_folder(tmp_path / "walk2")
    (folder / "frames" / "000002.png").unlink()
    with pytest.raises(EpisodeError, match=r"episode 'walk2' \(.*walk2\), frame 2: missing"):
        open_episodes([folder])


def test_unreadable_frame_names_the_episode_and_the_frame(tmp_path):
    folder = write_frames_folder(tmp_path / "walk3")
    (folder / "frames" / "000004.png").write_bytes(b"not a png")
    episode = open_episodes([folder])[0]
    episode.validate()  # stamps, poses, instruction are fine: only reading the pixels finds it
    with pytest.raises(EpisodeError, match=r"episode 'walk3' .*, frame 4: .*000004.png is missing or not an image"):
        episode.check_frames()


def test_poses_that_do_not_cover_the_frames_name_the_first_uncovered_frame(tmp_path):
    folder = write_frames_folder(tmp_path / "walk4", count=8, poses_until=1.0)  # frames run to 1.75 s
    with pytest.raises(EpisodeError, match=r"episode 'walk4' .*, frame 5: at t = 1.250 s, outside poses.csv"):
        open_episodes([folder])


def test_nan_pose_and_missing_stamp_name_the_frame():
    episode = memory_episode("nan_walk", 8)
    episode.poses[3, 1] = np.nan
    with pytest.raises(EpisodeError, match=r"episode 'nan_walk' \(memory\), frame 3: poses row is not finite"):
        episode.validate()
    gap = memory_episode("gap_walk", 8)
    gap.stamps_s = np.delete(T0 + np.arange(9) * 0.25, 4)  # frame at 1.0 s never recorded
    with pytest.raises(EpisodeError, match=r"episode 'gap_walk' \(memory\), frame 4: 0.500 s after the previous"):
        gap.validate()


def test_nan_in_a_poses_file_names_the_frames_it_touches(tmp_path):
    folder = write_frames_folder(tmp_path / "walk5")
    lines = (folder / "poses.csv").read_text().splitlines()
    lines[16] = "0.750,nan,0.075,0.15"  # the pose at 0.75 s: frame 3's
    (folder / "poses.csv").write_text("\n".join(lines) + "\n")
    episode = open_episodes([folder])[0]
    with pytest.raises(EpisodeError, match=r"episode 'walk5' .*, frame 3: poses row is not finite"):
        episode.validate()


# -- LeRobot v3 ---------------------------------------------------------------------------------

def test_lerobot_v3_write_read_round_trip(tmp_path, monkeypatch):
    monkeypatch.setattr(lerobot_v3, "FRAMES_PER_FILE", 12)  # episodes of 7 | 6 + 5: two video and data files
    camera = CameraModel(WIDTH, HEIGHT, camera_matrix=np.array([[90.0, 0, 80], [0, 91.0, 60], [0, 0, 1]]),
                         mount_height_m=0.45, mount_pitch_down_deg=15.0, name="d455")
    written = [memory_episode("ep_a", 7, camera=camera),
               memory_episode("ep_b", 6, instruction="turn around", offset=30, camera=camera),
               memory_episode("ep_c", 5, offset=60, poses=False, actions=True, camera=camera)]
    out = lerobot_v3.write_dataset(written, tmp_path / "ds")

    info = json.loads((out / "meta" / "info.json").read_text())
    assert info["codebase_version"] == "v3.0" and info["fps"] == 4 and info["total_episodes"] == 3
    assert info["total_frames"] == 18 and info["total_tasks"] == 2
    video = info["features"]["observation.images.d455"]
    assert video["dtype"] == "video" and video["shape"] == [HEIGHT, WIDTH, 3]
    assert video["info"]["video.codec"] == "mpeg4" and video["info"]["camera.mount_height_m"] == 0.45
    assert info["features"]["observation.state"]["names"] == ["x", "y", "yaw"]
    assert info["features"]["action"]["names"] == ["dx", "dy", "dtheta"]
    assert (out / "videos/observation.images.d455/chunk-000/file-001.mp4").is_file()
    assert (out / "data/chunk-000/file-001.parquet").is_file() and (out / "meta/stats.json").is_file()

    import pyarrow.parquet as pq
    tasks = pq.read_table(out / "meta" / "tasks.parquet")
    assert json.loads(tasks.schema.metadata[b"pandas"])["index_columns"] == ["__index_level_0__"]
    assert tasks.column("__index_level_0__").to_pylist() == ["go to the kitchen", "turn around"]
    rows = pq.read_table(out / "data" / "chunk-000" / "file-000.parquet")
    assert rows.column("timestamp").to_pylist()[:3] == [0.0, 0.25, 0.5]  # frame_index / fps, as LeRobot decodes

    read = open_episodes([out])
    assert [e.episode_id for e in read] == ["ep_a", "ep_b", "ep_c"]
    for original, back in zip(written, read):
        validate_all([back], read_frames=True)
        assert back.instruction == original.instruction and back.task == "ifn"
        assert np.allclose(back.stamps_s, original.stamps_s, rtol=0, atol=1e-6)
        motions = original.motions()
        assert np.allclose(back.actions[:-1], motions[:-1], atol=1e-6)
        assert np.isnan(back.actions[-1]).all() == np.isnan(motions[-1]).all()  # unknown stays unknown
        assert np.allclose(back.camera.intrinsics(), camera.camera_matrix)
        assert back.camera.mount_pitch_down_deg == 15.0 and back.camera.name == "d455"
        for i in range(len(back)):  # ep_c starts 6 frames into file-001.mp4: found by its from_timestamp
            assert mean_error(back.frames[i], original.frames[i]) < FRAME_TOLERANCE, (back.episode_id, i)
    assert mean_error(read[2].frames[0], written[1].frames[0]) > 3 * FRAME_TOLERANCE  # not the file's first frame
    assert np.allclose(read[0].poses, written[0].poses, atol=1e-5)  # float32
    integrated = se2.poses_from_deltas(np.vstack([[0, 0, 0], written[2].actions[:-1]]))
    assert np.allclose(read[2].poses, integrated, atol=1e-5)  # actions only: state = their integral


def write_foreign_lerobot_dataset(root: Path, fps: int = 8, lengths: tuple[int, ...] = (16, 12)) -> list[np.ndarray]:
    """A v3.0 dataset laid out as LeRobot itself writes one (no nav.* extras, per-episode stats/* columns,
    the task texts as the pandas index, episodes concatenated in one mp4) at ``fps``; returns each frame's
    pose (x, y, yaw) per episode. Frame k of episode e is frame_image(100 * e + k)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    key = "observation.images.laptop"
    video = root / "videos" / key / "chunk-000" / "file-000.mp4"
    video.parent.mkdir(parents=True)
    writer = cv2.VideoWriter(str(video), cv2.VideoWriter_fourcc(*"mp4v"), float(fps), (WIDTH, HEIGHT))
    columns = {name: [] for name in ("observation.state", "action", "timestamp", "frame_index", "episode_index",
                                     "index", "task_index")}
    episodes, poses, start = [], [], 0
    for e, n in enumerate(lengths):
        trajectory = np.stack([np.arange(n) * 0.05, np.zeros(n), np.arange(n) * 0.01], axis=1)
        poses.append(trajectory)
        for k in range(n):
            writer.write(cv2.cvtColor(frame_image(100 * e + k), cv2.COLOR_RGB2BGR))
            columns["observation.state"].append(trajectory[k].astype(np.float32).tolist())
            columns["action"].append([0.05, 0.0, 0.01])
            columns["timestamp"].append(k / fps)
            columns["frame_index"].append(k)
            columns["episode_index"].append(e)
            columns["index"].append(start + k)
            columns["task_index"].append(e)
        episodes.append({"episode_index": e, "tasks": [f"task {e}"], "length": n, "data/chunk_index": 0,
                         "data/file_index": 0, "dataset_from_index": start, "dataset_to_index": start + n,
                         f"videos/{key}/chunk_index": 0, f"videos/{key}/file_index": 0,
                         f"videos/{key}/from_timestamp": start / fps, f"videos/{key}/to_timestamp": (start + n) / fps,
                         "meta/episodes/chunk_index": 0, "meta/episodes/file_index": 0,
                         "stats/action/mean": [0.05, 0.0, 0.01]})
        start += n
    writer.release()
    (root / "data" / "chunk-000").mkdir(parents=True)
    table = pa.table({"observation.state": pa.array(columns["observation.state"], pa.list_(pa.float32(), 3)),
                      "action": pa.array(columns["action"], pa.list_(pa.float32(), 3)),
                      "timestamp": pa.array(columns["timestamp"], pa.float32()),
                      **{c: pa.array(columns[c], pa.int64()) for c in ("frame_index", "episode_index", "index",
                                                                        "task_index")}})
    pq.write_table(table, root / "data" / "chunk-000" / "file-000.parquet")
    (root / "meta" / "episodes" / "chunk-000").mkdir(parents=True)
    pq.write_table(pa.Table.from_pylist(episodes), root / "meta" / "episodes" / "chunk-000" / "file-000.parquet")
    tasks = pa.table({"task_index": pa.array(range(len(lengths)), pa.int64()),
                      "task": pa.array([f"task {e}" for e in range(len(lengths))])})
    pq.write_table(tasks, root / "meta" / "tasks.parquet")
    scalar = {"shape": [1], "names": None}
    info = {"codebase_version": "v3.0", "robot_type": "so101", "fps": fps, "total_episodes": len(lengths),
            "data_path": lerobot_v3.DATA_PATH, "video_path": lerobot_v3.VIDEO_PATH,
            "features": {key: {"dtype": "video", "shape": [HEIGHT, WIDTH, 3], "names": ["height", "width", "channels"],
                               "info": {"video.fps": fps, "video.codec": "mpeg4"}},
                         "observation.state": {"dtype": "float32", "shape": [3], "names": ["x", "y", "yaw"]},
                         "action": {"dtype": "float32", "shape": [3], "names": None},
                         "timestamp": {"dtype": "float32", **scalar},
                         **{c: {"dtype": "int64", **scalar} for c in ("frame_index", "episode_index", "index",
                                                                       "task_index")}}}
    (root / "meta" / "info.json").write_text(json.dumps(info))
    return poses


def test_a_lerobot_dataset_at_another_rate_is_resampled_to_4fps(tmp_path):
    poses = write_foreign_lerobot_dataset(tmp_path / "foreign", fps=8, lengths=(16, 12))
    episodes = open_episodes([tmp_path / "foreign"])
    assert [e.episode_id for e in episodes] == ["foreign/000000", "foreign/000001"]
    assert [e.instruction for e in episodes] == ["task 0", "task 1"]
    assert [len(e) for e in episodes] == [8, 6]  # every other frame of 8 FPS
    for e, episode in enumerate(episodes):
        validate_all([episode], read_frames=True)
        assert np.allclose(np.diff(episode.stamps_s), 0.25)
        assert episode.actions is None  # 8 FPS motions are not 4 FPS motions: recomputed from the poses
        assert np.allclose(episode.poses, poses[e][::2], atol=1e-6)
        for i in range(len(episode)):  # episode 1 lies 16 frames into the shared mp4
            assert mean_error(episode.frames[i], frame_image(100 * e + 2 * i)) < FRAME_TOLERANCE, (e, i)
        assert episode.camera.width == WIDTH and episode.metadata["resampled_from_fps"] == 8


def test_lerobot_writer_refuses_bad_sets(tmp_path):
    with pytest.raises(EpisodeError, match=r"episode 'sized' .*frames are 80x60"):
        small = memory_episode("sized", 4)
        small.camera = CameraModel(80, 60)
        lerobot_v3.write_dataset([memory_episode("one", 4), small], tmp_path / "x")
    with pytest.raises(EpisodeError, match=r"episode 'quiet' .*empty instruction"):
        lerobot_v3.write_dataset([memory_episode("quiet", 4, instruction=" ")], tmp_path / "y")
    assert not (tmp_path / "x").exists() and not (tmp_path / "y").exists()
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "thesis.tex").write_text("precious")
    with pytest.raises(EpisodeError, match="not a LeRobot dataset"):
        lerobot_v3.write_dataset([memory_episode("one", 4)], tmp_path / "mine", overwrite=True)
    assert (tmp_path / "mine" / "thesis.tex").read_text() == "precious"


def test_lerobot_av1_video_fails_with_a_clear_message(tmp_path):
    out = lerobot_v3.write_dataset([memory_episode("one", 4)], tmp_path / "ds")
    info_path = out / "meta" / "info.json"
    info = json.loads(info_path.read_text())
    info["features"]["observation.images.front"]["info"]["video.codec"] = "av1"  # as LeRobot's default writes
    info_path.write_text(json.dumps(info))
    (out / "videos/observation.images.front/chunk-000/file-000.mp4").write_bytes(b"\0" * 100)
    episode = open_episodes([out])[0]
    with pytest.raises(EpisodeError, match=r"episode 'one' .*, frame 0: .*AV1 .*cannot decode.*Re-encode"):
        episode.check_frames()


def test_lerobot_v2_dataset_is_refused(tmp_path):
    (tmp_path / "old" / "meta").mkdir(parents=True)
    (tmp_path / "old" / "meta" / "info.json").write_text(json.dumps({"codebase_version": "v2.1", "fps": 30}))
    with pytest.raises(EpisodeError, match="codebase_version v2.1; this reader reads v3.0"):
        open_episodes([tmp_path / "old"])


# -- export -------------------------------------------------------------------------------------

def test_lerobot_export_of_a_recorded_bag_reads_back_the_same_frames_poses_and_instruction(recorded_bag, tmp_path):
    from sparsevideonav_ros.policies.pose_estimators.mount import MOUNT_PRESETS
    from sparsevideonav_ros.tools import export_lerobot

    out = tmp_path / "export"
    assert export_lerobot.main([str(recorded_bag), "--out", str(out), "--camera-mount", "d455",
                                "--repo-id", "me/go2"]) == 0
    bag_episode = open_episodes([recorded_bag])[0]
    exported = open_episodes([out])
    assert len(exported) == 1
    episode = exported[0]
    validate_all(exported, read_frames=True)
    assert episode.episode_id == "run1" and episode.instruction == INSTRUCTION
    assert len(episode) == len(bag_episode)
    assert np.allclose(episode.stamps_s, bag_episode.stamps_s, rtol=0, atol=1e-6)
    assert np.allclose(episode.poses, bag_episode.poses, atol=1e-5)  # float32 state
    assert np.allclose(episode.actions[:-1], bag_episode.motions()[:-1], atol=1e-5)
    for i in range(len(episode)):  # JPEG (the bag) then mp4v: same frame, not a neighbour
        exported_frame, recorded_frame = episode.frames[i], bag_episode.frames[i]
        assert mean_error(exported_frame, recorded_frame) < FRAME_TOLERANCE, i
        if i:
            assert mean_error(exported_frame, bag_episode.frames[i - 1]) > 3 * FRAME_TOLERANCE, i
    d455 = MOUNT_PRESETS["d455"]
    assert episode.camera.mount_height_m == pytest.approx(d455.height_m)
    assert episode.camera.mount_pitch_down_deg == pytest.approx(math.degrees(d455.pitch_down_rad))
    assert np.allclose(episode.camera.intrinsics(), bag_episode.camera.intrinsics())
    info = json.loads((out / "meta" / "info.json").read_text())
    assert "observation.images.d455" in info["features"] and info["navigation"]["repo_id"] == "me/go2"


def run_export(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "sparsevideonav_ros.tools.export_lerobot", *args], cwd=REPO,
                          capture_output=True, text=True, timeout=120)


def test_export_refuses_a_non_empty_out_and_bad_input_in_one_line(recorded_bag, tmp_path):
    out = tmp_path / "busy"
    out.mkdir()
    (out / "keep.txt").write_text("x")
    refused = run_export(str(recorded_bag), "--out", str(out))
    assert refused.returncode == 2 and "Traceback" not in refused.stderr
    assert refused.stderr.strip().splitlines() == [f"error: {out} exists and is not empty; pass --overwrite to "
                                                   f"replace it"]
    missing = run_export(str(tmp_path / "nope"), "--out", str(tmp_path / "new"))
    assert missing.returncode == 2 and "Traceback" not in missing.stderr
    assert missing.stderr.strip().splitlines()[-1].startswith("error: ") and "no such file" in missing.stderr
    assert not (tmp_path / "new").exists()


def test_export_overwrite_replaces_an_earlier_export(recorded_bag, tmp_path):
    from sparsevideonav_ros.tools import export_lerobot

    out = tmp_path / "again"
    assert export_lerobot.main([str(recorded_bag), "--out", str(out)]) == 0
    assert export_lerobot.main([str(recorded_bag), "--out", str(out)]) == 2
    assert export_lerobot.main([str(recorded_bag), "--out", str(out), "--overwrite", "--camera", "Head Cam"]) == 0
    assert "observation.images.head_cam" in json.loads((out / "meta" / "info.json").read_text())["features"]


def test_lerobot_overwrite_keeps_the_old_dataset_until_the_new_one_is_in_place(tmp_path, monkeypatch):
    """A failure while writing the replacement (here: after every frame, writing meta/tasks.parquet) leaves
    the old dataset as it was and no staging folder; a folder at <out>.partial that the writer did not make
    is refused, not deleted; a successful overwrite leaves only the new dataset."""
    out = lerobot_v3.write_dataset([memory_episode("old", 4)], tmp_path / "ds")
    real = lerobot_v3._tasks_table

    def broken(texts):
        raise OSError("disk full")
    monkeypatch.setattr(lerobot_v3, "_tasks_table", broken)
    with pytest.raises(OSError, match="disk full"):
        lerobot_v3.write_dataset([memory_episode("new", 6)], out, overwrite=True)
    assert [e.episode_id for e in lerobot_v3.read_dataset(out)] == ["old"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ds"]
    monkeypatch.setattr(lerobot_v3, "_tasks_table", real)
    (tmp_path / "ds.partial").mkdir()
    (tmp_path / "ds.partial" / "notes.txt").write_text("mine")
    with pytest.raises(EpisodeError, match="ds.partial exists and is not a staging folder"):
        lerobot_v3.write_dataset([memory_episode("new", 6)], out, overwrite=True)
    assert (tmp_path / "ds.partial" / "notes.txt").read_text() == "mine"
    (tmp_path / "ds.partial" / "notes.txt").unlink()
    (tmp_path / "ds.partial").rmdir()
    lerobot_v3.write_dataset([memory_episode("new", 6)], out, overwrite=True)
    assert [len(e) for e in lerobot_v3.read_dataset(out)] == [6]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ds"]


def test_export_interrupted_or_undecodable_is_one_line(recorded_bag, tmp_path, monkeypatch, capsys):
    """Ctrl-C while exporting: exit 130, one line, nothing at --out; a video error: exit 2, one line."""
    from sparsevideonav_ros.datasets.video import VideoError
    from sparsevideonav_ros.tools import export_lerobot

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt
    monkeypatch.setattr(lerobot_v3, "write_dataset", interrupted)
    assert export_lerobot.main([str(recorded_bag), "--out", str(tmp_path / "out")]) == 130
    err = capsys.readouterr().err
    assert err.strip().splitlines()[-1] == f"interrupted: nothing written to {tmp_path / 'out'}"
    assert "Traceback" not in err and not (tmp_path / "out").exists()

    def undecodable(*args, **kwargs):
        raise VideoError("cannot encode mp4v")
    monkeypatch.setattr(lerobot_v3, "write_dataset", undecodable)
    assert export_lerobot.main([str(recorded_bag), "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert err.strip().splitlines()[-1] == "error: cannot encode mp4v" and "Traceback" not in err
