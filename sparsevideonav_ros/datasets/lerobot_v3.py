"""Adapter: LeRobotDataset v3.0 read and write, with navigation semantics.

Why not the ``lerobot`` package itself: its newest release on this project's index (0.4.4, checked with
``pip download lerobot --no-deps``, METADATA) requires torch<2.11, opencv-python-headless<4.13,
diffusers<0.36 and huggingface-hub<0.36; we pin torch 2.13.0, opencv-python-headless 5.0.0.93, diffusers
0.42.1 and huggingface_hub 2.x. So this module reads and writes the documented v3.0 layout itself, with
pyarrow (parquet) and OpenCV (mp4). Where each fact of the layout comes from:
  * lerobot 0.4.4's own source (lerobot/datasets/utils.py, lerobot_dataset.py, video_utils.py in the
    wheel): the paths (meta/info.json, meta/stats.json, meta/tasks.parquet,
    meta/episodes/chunk-{chunk_index:03d}/file-{file_index:03d}.parquet, data/chunk-.../file-....parquet,
    videos/{video_key}/chunk-.../file-....mp4), info.json's keys (codebase_version "v3.0", fps, features
    with dtype/shape/names, data_path/video_path templates, chunks_size 1000, data_files_size_in_mb 100,
    video_files_size_in_mb 200, splits, totals), the default per-frame columns (timestamp float32 =
    frame_index / fps, frame_index, episode_index, index, task_index int64), the episodes table's columns
    (episode_index, tasks, length, data/chunk_index, data/file_index, dataset_from_index,
    dataset_to_index, videos/<key>/{chunk_index, file_index, from_timestamp, to_timestamp},
    meta/episodes/{chunk_index, file_index}), tasks.parquet = a pandas frame with the task strings as its
    index and a task_index column, a video feature's "info" (video.height, video.width, video.codec,
    video.pix_fmt, video.is_depth_map, video.fps, video.channels, has_audio), several episodes
    concatenated in one mp4 found by from_timestamp, images stats as per-channel (3, 1, 1) values in [0, 1],
    and its default encoder (libsvtav1, i.e. AV1, yuv420p).
  * the Hub documentation of LeRobotDataset v3 (the folder tree and the 100 MB / 200 MB / 1000-file limits).
  * this project (not LeRobot): the navigation mapping below and the ``nav`` extras.

Navigation mapping (what ``write_dataset`` writes, what ``read_dataset`` expects of a navigation dataset):
  * ``observation.images.<camera>``: video, (H, W, 3), 4 FPS, one frame per episode frame;
  * ``observation.state``: float32 (x m, y m, yaw rad) of base_link in the odometry frame (poses; when an
    episode has only actions, their integral from (0, 0, 0));
  * ``action``: float32 (dx m, dy m, dtheta rad), the motion from the frame to the next one in the body
    frame at the frame (Episode.motions); the unknown motion after an episode's last frame is written as
    zeros (LeRobot trains on every row: no NaN) and ``nav/last_action_known`` says so (read back as NaN);
  * ``nav.stamp_s``: float64, each frame's recorded stamp (s); ``timestamp`` stays frame_index / fps as
    LeRobot's video decoding requires;
  * the instruction is the episode's task (meta/tasks.parquet, task_index);
  * per episode (meta/episodes columns): nav/episode_id, nav/source, nav/task ("", "ifn", "bvn"),
    nav/camera_name, nav/camera_matrix (9 values of K, row-major, pixels; NaN = unknown),
    nav/horizontal_fov_deg, nav/mount_height_m, nav/mount_pitch_down_deg (NaN = unknown),
    nav/last_action_known;
  * info.json: the video feature's "info" also holds camera.* when every episode shares one camera, and a
    top-level "navigation" object describes the mapping (units, frames) for people reading the files.
"""
from __future__ import annotations

import json
import math
import re
import shutil
from pathlib import Path
from typing import Callable, Optional, Sequence

import numpy as np

from sparsevideonav_ros.datasets.episodes import FRAME_RATE_HZ, CameraModel, Episode, EpisodeError, LazyFrames

NAME = "lerobot"
CODEBASE_VERSION = "v3.0"
CHUNKS_SIZE = 1000  # files per chunk folder (LeRobot's default)
DATA_PATH = "data/chunk-{chunk_index:03d}/file-{file_index:03d}.parquet"
VIDEO_PATH = "videos/{video_key}/chunk-{chunk_index:03d}/file-{file_index:03d}.mp4"
EPISODES_PATH = "meta/episodes/chunk-{chunk_index:03d}/file-{file_index:03d}.parquet"
# Episodes are concatenated into one mp4 (and one data parquet) until this many frames: an hour at 4 FPS,
# ~150 MB of 640x480 mpeg4, under LeRobot's 200 MB video file default (the writer cannot know the size
# of an mp4 before it is closed, so it counts frames).
FRAMES_PER_FILE = 14400
STATE_NAMES = ["x", "y", "yaw"]
ACTION_NAMES = ["dx", "dy", "dtheta"]
NAV_COLUMNS = ("nav/episode_id", "nav/source", "nav/task", "nav/camera_name", "nav/camera_matrix",
               "nav/horizontal_fov_deg", "nav/mount_height_m", "nav/mount_pitch_down_deg", "nav/last_action_known")


def detect(path: Path) -> bool:
    return Path(path).is_dir() and (Path(path) / "meta" / "info.json").is_file()


def read(path: Path, instruction: str = "") -> list[Episode]:
    return read_dataset(path)


# -- reading -----------------------------------------------------------------------------------

def _pq():
    try:
        import pyarrow.parquet as pq
    except ImportError as error:  # a runtime install without requirements.txt's pyarrow
        raise EpisodeError("LeRobot datasets need pyarrow (pip install -r requirements.txt)") from error
    return pq


def _read_table(path: Path, where: str, columns: Optional[list[str]] = None):
    if not path.is_file():
        raise EpisodeError(f"{where}: {path} is missing")
    try:
        return _pq().read_table(path, columns=columns)
    except Exception as error:  # ArrowInvalid (not parquet, truncated), OSError
        raise EpisodeError(f"{where}: cannot read {path}: {error}") from error


def _tasks(root: Path, where: str) -> dict[int, str]:
    """task_index -> task text. LeRobot writes the texts as the pandas index (column __index_level_0__ or a
    named index in the pandas metadata); other writers use a 'task' column."""
    table = _read_table(root / "meta" / "tasks.parquet", where)
    names = table.column_names
    text_column = "task" if "task" in names else None
    if text_column is None:
        pandas_meta = json.loads((table.schema.metadata or {}).get(b"pandas", b"{}") or b"{}")
        index_columns = [c for c in pandas_meta.get("index_columns", []) if isinstance(c, str)]
        candidates = index_columns + [n for n in names if n.startswith("__index_level_")]
        text_column = next((c for c in candidates if c in names), None)
    if text_column is None or "task_index" not in names:
        raise EpisodeError(f"{where}: meta/tasks.parquet has columns {names}; expected task_index and the task "
                           f"texts (pandas index or a 'task' column)")
    return {int(i): str(t) for i, t in zip(table.column("task_index").to_pylist(), table.column(text_column).to_pylist())}


def _vectors(table, name: str) -> Optional[np.ndarray]:
    if name not in table.column_names:
        return None
    values = table.column(name).to_pylist()
    return np.asarray([[math.nan] * 3 if v is None else v for v in values], dtype=float)


def _nan_or(value) -> Optional[float]:
    return None if value is None or (isinstance(value, float) and math.isnan(value)) else float(value)


def _video_key(features: dict, camera_key: Optional[str], where: str) -> tuple[str, str]:
    """(feature key, 'video' | 'image') of the camera to read."""
    cameras = {k: f["dtype"] for k, f in features.items() if f.get("dtype") in ("video", "image")}
    if camera_key:
        key = camera_key if camera_key in cameras else f"observation.images.{camera_key}"
        if key not in cameras:
            raise EpisodeError(f"{where}: no camera {camera_key!r}; the dataset has {', '.join(cameras) or 'none'}")
        return key, cameras[key]
    if not cameras:
        raise EpisodeError(f"{where}: no video or image feature: a navigation episode needs camera frames")
    key = sorted(cameras, key=lambda k: (not k.startswith("observation.images."), k))[0]
    return key, cameras[key]


def _frame_size(feature: dict) -> tuple[int, int]:
    shape, names = list(feature["shape"]), feature.get("names") or []
    if names and len(names) == 3 and names[0] in ("channels", "channel", "c"):  # (C, H, W)
        return int(shape[2]), int(shape[1])
    return int(shape[1]), int(shape[0])  # LeRobot's (height, width, channels)


def read_dataset(root: str | Path, camera_key: Optional[str] = None) -> list[Episode]:
    """Every episode of the v3.0 dataset at ``root`` (frames decoded lazily from its mp4s or images).

    camera_key: which camera (``observation.images.<camera>`` or the bare name); default the first.
    Datasets at another fps than 4 are resampled by time (FrameSampler); their actions are then dropped
    (a per-frame motion at another rate is not a 4 FPS one) and recomputed from the poses by the trainer.
    Raises EpisodeError naming the dataset (and the episode) for anything unreadable.
    """
    import pyarrow.compute as pc

    from sparsevideonav_ros.datasets.video import VideoReader, resample_indices

    root = Path(root)
    where = f"LeRobot dataset {root}"
    try:
        info = json.loads((root / "meta" / "info.json").read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as error:
        raise EpisodeError(f"{where}: cannot read meta/info.json: {error}") from error
    version = str(info.get("codebase_version", ""))
    if not version.startswith("v3"):
        raise EpisodeError(f"{where}: codebase_version {version or 'missing'}; this reader reads v3.0 (convert "
                           f"v2.x datasets with lerobot's convert_dataset_v21_to_v30)")
    features = info.get("features") or {}
    fps = float(info.get("fps") or 0)
    if not fps > 0:
        raise EpisodeError(f"{where}: info.json has no fps")
    key, kind = _video_key(features, camera_key, where)
    width, height = _frame_size(features[key])
    video_info = features[key].get("info") or {}
    video_fps = float(video_info.get("video.fps") or fps)
    tasks = _tasks(root, where)

    episode_files = sorted((root / "meta" / "episodes").glob("chunk-*/file-*.parquet"))
    if not episode_files:
        raise EpisodeError(f"{where}: no meta/episodes/chunk-*/file-*.parquet")
    rows = []
    for path in episode_files:  # without LeRobot's per-episode stats/* columns (as its own loader does)
        try:
            names = _pq().read_schema(path).names
        except Exception as error:
            raise EpisodeError(f"{where}: cannot read {path}: {error}") from error
        rows.extend(_read_table(path, where, [n for n in names if not n.startswith("stats/")]).to_pylist())
    rows.sort(key=lambda r: int(r["episode_index"]))

    data_template = info.get("data_path") or DATA_PATH
    video_template = info.get("video_path") or VIDEO_PATH
    data_tables: dict[Path, object] = {}
    readers: dict[Path, VideoReader] = {}
    required = ["episode_index", "frame_index", "timestamp", "task_index"]  # LeRobot's default columns
    optional = ["observation.state", "action", "nav.stamp_s"] + ([key] if kind == "image" else [])
    wanted = required + [c for c in optional if c in features]  # only these columns are read from disk
    episodes: list[Episode] = []
    for row in rows:
        index = int(row["episode_index"])
        episode_id = str(row.get("nav/episode_id") or f"{root.name}/{index:06d}")
        ewhere = f"episode {episode_id!r} ({root}, episode_index {index})"
        data_path = root / data_template.format(chunk_index=int(row["data/chunk_index"]),
                                                file_index=int(row["data/file_index"]))
        if data_path not in data_tables:
            data_tables[data_path] = _read_table(data_path, ewhere, wanted)
        table = data_tables[data_path]
        mine = table.filter(pc.equal(table.column("episode_index"), index))
        mine = mine.sort_by("frame_index")
        n = mine.num_rows
        if n == 0:
            raise EpisodeError(f"{ewhere}: no rows in {data_path.relative_to(root)}")
        if int(row.get("length", n)) != n:
            raise EpisodeError(f"{ewhere}: meta/episodes says {row['length']} frames, the data has {n}")
        timestamps = np.asarray(mine.column("timestamp").to_pylist(), dtype=float)
        frame_numbers = np.asarray(mine.column("frame_index").to_pylist(), dtype=int)
        holes = np.flatnonzero(frame_numbers != np.arange(n))
        if holes.size:
            raise EpisodeError(f"{ewhere}, frame {int(holes[0])}: missing (frame_index jumps to "
                               f"{frame_numbers[holes[0]]})")
        stamps = (np.asarray(mine.column("nav.stamp_s").to_pylist(), dtype=float)
                  if "nav.stamp_s" in mine.column_names else timestamps.copy())
        poses, actions = _vectors(mine, "observation.state"), _vectors(mine, "action")
        if poses is not None and poses.shape[1] != 3:
            poses = None  # not a navigation state: no poses
        if actions is not None and actions.shape[1] != 3:
            actions = None
        if actions is not None and row.get("nav/last_action_known") is False:
            actions[-1] = np.nan
        task_indices = mine.column("task_index").to_pylist()
        instruction = tasks.get(int(task_indices[0]), "") if task_indices else ""
        if not instruction and row.get("tasks"):
            instruction = str(row["tasks"][0])

        if kind == "video":
            video_path = root / video_template.format(video_key=key,
                                                      chunk_index=int(row[f"videos/{key}/chunk_index"]),
                                                      file_index=int(row[f"videos/{key}/file_index"]))
            if video_path not in readers:
                readers[video_path] = VideoReader(video_path, codec_hint=str(video_info.get("video.codec", "")))
            reader = readers[video_path]
            start = float(row.get(f"videos/{key}/from_timestamp") or 0.0)
            in_file = [int(round((start + t) * video_fps)) for t in timestamps]

            def read_frame(i: int, reader=reader, in_file=in_file, ewhere=ewhere) -> np.ndarray:
                from sparsevideonav_ros.datasets.video import VideoError
                try:
                    return reader.read(in_file[i])
                except VideoError as error:
                    raise EpisodeError(f"{ewhere}, frame {i}: {error}") from error
            frames = LazyFrames(n, read_frame)
        else:  # images embedded in the parquet rows: {bytes, path} structs, PNG/JPEG bytes
            frames = _embedded_images(mine.column(key).to_pylist(), root, ewhere)

        picked = None
        if abs(fps - FRAME_RATE_HZ) > 1e-6:
            picked = resample_indices(stamps)
            stamps = stamps[picked]
            poses = None if poses is None else poses[picked]
            actions = None
            source_frames = frames
            frames = LazyFrames(len(picked), lambda i, f=source_frames, p=picked: f[p[i]])
        camera = _camera(row, info, key, width, height)
        metadata = {"dataset": str(root), "episode_index": index, "fps": fps, "camera_key": key,
                    "source": row.get("nav/source") or ""}
        if picked is not None:
            metadata["resampled_from_fps"] = fps
        episodes.append(Episode(episode_id=episode_id, source=f"{root}#{index}", instruction=instruction,
                                frames=frames, stamps_s=stamps, camera=camera, poses=poses, actions=actions,
                                task=str(row.get("nav/task") or ""), metadata=metadata))
    return episodes


def _embedded_images(cells: list, root: Path, where: str) -> LazyFrames:
    import cv2

    def read_image(i: int) -> np.ndarray:
        cell = cells[i] or {}
        data = cell.get("bytes")
        if data is None and cell.get("path"):
            data = (root / cell["path"]).read_bytes()
        image = None if data is None else cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
        if image is None:
            raise EpisodeError(f"{where}, frame {i}: the image cannot be decoded")
        return cv2.cvtColor(image, cv2.COLOR_BGR2RGB)
    return LazyFrames(len(cells), read_image)


def _camera(row: dict, info: dict, key: str, width: int, height: int) -> CameraModel:
    shared = (info.get("features", {}).get(key, {}).get("info") or {})
    matrix = row.get("nav/camera_matrix", shared.get("camera.camera_matrix"))
    if matrix is not None:
        matrix = np.asarray(matrix, dtype=float).reshape(3, 3)
        if not np.all(np.isfinite(matrix)):
            matrix = None

    def pick(name: str) -> Optional[float]:
        return _nan_or(row.get(f"nav/{name}", shared.get(f"camera.{name}")))
    return CameraModel(width=width, height=height, camera_matrix=matrix,
                       horizontal_fov_deg=pick("horizontal_fov_deg"), mount_height_m=pick("mount_height_m"),
                       mount_pitch_down_deg=pick("mount_pitch_down_deg"),
                       name=str(row.get("nav/camera_name", shared.get("camera.name", "")) or ""))


# -- writing -----------------------------------------------------------------------------------

def camera_key_for(name: str) -> str:
    """``observation.images.<name>`` with the name reduced to [a-z0-9_] ('front' when empty)."""
    clean = re.sub(r"[^a-z0-9_]+", "_", (name or "").lower()).strip("_") or "front"
    return f"observation.images.{clean}"


def _poses_and_actions(episode: Episode) -> tuple[np.ndarray, np.ndarray, bool]:
    """(N, 3) state, (N, 3) action with the unknown last motion as zeros, whether the last motion was known."""
    from sparsevideonav_ros.core import se2

    motions = episode.motions()
    if episode.poses is not None:
        poses = np.asarray(episode.poses, dtype=float)
    else:  # actions only: their integral from the origin stands for the odometry
        poses = np.zeros((len(motions), 3))
        for i in range(1, len(motions)):
            poses[i] = se2.compose(poses[i - 1], motions[i - 1])
    known = bool(np.all(np.isfinite(motions[-1])))
    actions = motions.copy()
    if not known:
        actions[-1] = 0.0
    return poses, actions, known


def _fixed3(values: np.ndarray):
    import pyarrow as pa
    flat = pa.array(np.asarray(values, dtype=np.float32).reshape(-1), type=pa.float32())
    return pa.FixedSizeListArray.from_arrays(flat, 3)


def _stats(values: np.ndarray) -> dict:
    values = np.asarray(values, dtype=float)
    values = values.reshape(len(values), -1)
    return {"min": values.min(0).tolist(), "max": values.max(0).tolist(), "mean": values.mean(0).tolist(),
            "std": values.std(0).tolist(), "count": [int(len(values))]}


class _ImageStats:
    """Per-channel min/max/mean/std of frames in [0, 1] (LeRobot's (3, 1, 1) image stats), on every 4th pixel."""

    def __init__(self) -> None:
        self.total = np.zeros(3)
        self.squares = np.zeros(3)
        self.low = np.full(3, np.inf)
        self.high = np.full(3, -np.inf)
        self.pixels = 0
        self.frames = 0

    def add(self, rgb: np.ndarray) -> None:
        sample = rgb[::4, ::4].reshape(-1, 3).astype(float) / 255.0
        self.total += sample.sum(0)
        self.squares += (sample ** 2).sum(0)
        self.low = np.minimum(self.low, sample.min(0))
        self.high = np.maximum(self.high, sample.max(0))
        self.pixels += len(sample)
        self.frames += 1

    def as_dict(self) -> dict:
        mean = self.total / max(self.pixels, 1)
        std = np.sqrt(np.maximum(self.squares / max(self.pixels, 1) - mean ** 2, 0.0))
        shaped = lambda v: [[[float(x)]] for x in v]  # noqa: E731  (3, 1, 1)
        return {"min": shaped(self.low), "max": shaped(self.high), "mean": shaped(mean), "std": shaped(std),
                "count": [self.frames]}


def _tasks_table(texts: list[str]):
    """meta/tasks.parquet as LeRobot writes it: pandas frame, index = task texts, column task_index (the
    pandas metadata is written by hand so that pandas, hence LeRobot, reads the texts back as the index)."""
    import pyarrow as pa
    table = pa.table({"task_index": pa.array(range(len(texts)), type=pa.int64()),
                      "__index_level_0__": pa.array(texts, type=pa.string())})
    pandas_meta = {
        "index_columns": ["__index_level_0__"],
        "column_indexes": [{"name": None, "field_name": None, "pandas_type": "unicode", "numpy_type": "object",
                            "metadata": {"encoding": "UTF-8"}}],
        "columns": [{"name": "task_index", "field_name": "task_index", "pandas_type": "int64",
                     "numpy_type": "int64", "metadata": None},
                    {"name": None, "field_name": "__index_level_0__", "pandas_type": "unicode",
                     "numpy_type": "object", "metadata": None}],
        "creator": {"library": "pyarrow", "version": pa.__version__},
        "pandas_version": "2.2.3",
    }
    return table.replace_schema_metadata({b"pandas": json.dumps(pandas_meta).encode()})


STAGING_MARKER = ".sparsevideonav-lerobot-staging"  # in a staging folder the writer made (and may delete)


def _check_replaceable(out: Path) -> None:
    if not (out / "meta" / "info.json").is_file():
        raise EpisodeError(f"{out} is not empty and not a LeRobot dataset (no meta/info.json); not deleting it")


def _ours_or_absent(path: Path, out: Path) -> None:
    """A leftover staging folder of this writer (a killed write) may be removed; anything else there is refused."""
    if path.exists() and not (path.is_dir() and (path / STAGING_MARKER).is_file()):
        raise EpisodeError(f"{path} exists and is not a staging folder of this writer (no {STAGING_MARKER}); "
                           f"move it away to write {out}")


def _fresh_staging(path: Path, out: Path) -> Path:
    """An empty staging folder at ``path`` holding the marker (a leftover one of ours is removed first)."""
    _ours_or_absent(path, out)
    if path.exists():
        shutil.rmtree(path)
    path.mkdir(parents=True)
    (path / STAGING_MARKER).write_text(f"staging of {out}; removed when the write ends\n")
    return path


def _swap_into_place(staging: Path, out: Path) -> None:
    """staging -> out. An existing dataset at out is moved aside (<out>.old) first and deleted only once the
    new one is in place; a failure in between puts the old one back."""
    (staging / STAGING_MARKER).unlink()
    if out.exists() and not any(out.iterdir()):
        out.rmdir()
    if not out.exists():
        staging.rename(out)
        return
    aside = out.with_name(out.name + ".old")
    _ours_or_absent(aside, out)
    shutil.rmtree(aside, ignore_errors=True)
    out.rename(aside)
    try:
        (aside / STAGING_MARKER).write_text(f"the dataset {out} replaced by a new write; removed after it\n")
        staging.rename(out)
    except BaseException:
        (aside / STAGING_MARKER).unlink(missing_ok=True)
        aside.rename(out)
        raise
    shutil.rmtree(aside, ignore_errors=True)


def write_dataset(episodes: Sequence[Episode], out: str | Path, repo_id: str = "local/sparsevideonav",
                  robot_type: str = "unitree_go2", camera_name: str = "", overwrite: bool = False,
                  progress: Optional[Callable[[int], None]] = None) -> Path:
    """Write ``episodes`` as a LeRobotDataset v3.0 at ``out`` (navigation mapping in the module docstring).

    Every episode is validated first (poses or actions needed) and must have the frame size of the first.
    out must be missing or empty; overwrite=True replaces an existing LeRobot dataset (only one: a folder
    without meta/info.json is never deleted). progress(n) is called after every n frames written.
    Returns out. Raises EpisodeError (nothing is left half-written at out: the dataset is written to
    <out>.partial and swapped into place at the end; a dataset it replaces is deleted only after that, and
    the staging folder is removed on any failure, Ctrl-C included).
    """
    from sparsevideonav_ros.datasets.episodes import validate_all

    out = Path(out)
    if not episodes:
        raise EpisodeError("no episodes to write")
    validate_all(episodes, needs="motions")
    width, height = episodes[0].camera.width, episodes[0].camera.height
    for episode in episodes:
        if (episode.camera.width, episode.camera.height) != (width, height):
            raise EpisodeError(f"{episode.where()}: frames are {episode.camera.width}x{episode.camera.height}, the "
                               f"first episode's {width}x{height}; one LeRobot video feature has one size")
    if out.exists() and not out.is_dir():
        raise EpisodeError(f"{out} is a file; the dataset is a folder")
    if out.exists() and any(out.iterdir()) and not overwrite:
        raise EpisodeError(f"{out} exists and is not empty; pass overwrite (--overwrite) to replace it")
    if out.exists() and any(out.iterdir()):
        _check_replaceable(out)  # only a dataset is replaced (once the new one is written: _swap_into_place)
        _ours_or_absent(out.with_name(out.name + ".old"), out)
    staging = _fresh_staging(out.with_name(out.name + ".partial"), out)
    try:
        _write_staging(episodes, staging, width, height, repo_id, robot_type, camera_name, progress)
        _swap_into_place(staging, out)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)  # any failure: no .partial left, the old dataset untouched
        raise
    return out


def _write_staging(episodes: Sequence[Episode], staging: Path, width: int, height: int, repo_id: str,
                   robot_type: str, camera_name: str, progress: Optional[Callable[[int], None]]) -> None:
    """The whole dataset into ``staging`` (write_dataset checked the episodes)."""
    import pyarrow as pa

    from sparsevideonav_ros.datasets.video import MP4_CODEC_NAME, Mp4Writer

    key = camera_key_for(camera_name or episodes[0].camera.name)
    texts: list[str] = []
    task_of: dict[str, int] = {}
    episode_rows: list[dict] = []
    all_state, all_action, all_stamps = [], [], []
    image_stats = _ImageStats()
    file_index = frames_in_file = global_index = 0
    writer: Optional[Mp4Writer] = None
    file_data: dict[str, list] = {}

    def flush_file() -> None:
        nonlocal writer, file_data
        if writer is not None:
            writer.close()
        if file_data:
            chunk, index = divmod(file_index, CHUNKS_SIZE)
            path = staging / DATA_PATH.format(chunk_index=chunk, file_index=index)
            path.parent.mkdir(parents=True, exist_ok=True)
            table = pa.table({
                "observation.state": _fixed3(np.concatenate(file_data["state"])),
                "action": _fixed3(np.concatenate(file_data["action"])),
                "nav.stamp_s": pa.array(np.concatenate(file_data["stamp"]), type=pa.float64()),
                "timestamp": pa.array(np.concatenate(file_data["timestamp"]), type=pa.float32()),
                "frame_index": pa.array(np.concatenate(file_data["frame_index"]), type=pa.int64()),
                "episode_index": pa.array(np.concatenate(file_data["episode_index"]), type=pa.int64()),
                "index": pa.array(np.concatenate(file_data["index"]), type=pa.int64()),
                "task_index": pa.array(np.concatenate(file_data["task_index"]), type=pa.int64()),
            })
            _pq().write_table(table, path, compression="snappy")
        writer, file_data = None, {}

    try:
        for episode_index, episode in enumerate(episodes):
            n = len(episode.frames)
            if writer is not None and frames_in_file + n > FRAMES_PER_FILE:
                flush_file()
                file_index += 1
                frames_in_file = 0
            chunk, index = divmod(file_index, CHUNKS_SIZE)
            if writer is None:
                writer = Mp4Writer(staging / VIDEO_PATH.format(video_key=key, chunk_index=chunk, file_index=index),
                                   width, height, FRAME_RATE_HZ)
                file_data = {name: [] for name in ("state", "action", "stamp", "timestamp", "frame_index",
                                                   "episode_index", "index", "task_index")}
            from_timestamp = frames_in_file / FRAME_RATE_HZ
            for i in range(n):
                try:
                    rgb = np.asarray(episode.frames[i])
                except EpisodeError:
                    raise
                except Exception as error:
                    raise EpisodeError(f"{episode.where(i)}: cannot read the frame: {error}") from error
                if rgb.shape != (height, width, 3) or rgb.dtype != np.uint8:
                    raise EpisodeError(f"{episode.where(i)}: frame is {rgb.shape} {rgb.dtype}, expected "
                                       f"({height}, {width}, 3) uint8")
                writer.write(rgb)
                if i % 4 == 0:
                    image_stats.add(rgb)
                if progress is not None:
                    progress(1)
            frames_in_file += n
            poses, actions, last_known = _poses_and_actions(episode)
            text = episode.instruction.strip()
            if text not in task_of:
                task_of[text] = len(texts)
                texts.append(text)
            stamps = np.asarray(episode.stamps_s, dtype=float)
            file_data["state"].append(poses)
            file_data["action"].append(actions)
            file_data["stamp"].append(stamps)
            file_data["timestamp"].append(np.arange(n) / FRAME_RATE_HZ)
            file_data["frame_index"].append(np.arange(n))
            file_data["episode_index"].append(np.full(n, episode_index))
            file_data["index"].append(np.arange(global_index, global_index + n))
            file_data["task_index"].append(np.full(n, task_of[text]))
            all_state.append(poses)
            all_action.append(actions)
            all_stamps.append(stamps)
            camera = episode.camera
            matrix = camera.camera_matrix
            episode_rows.append({
                "episode_index": episode_index, "tasks": [text], "length": n,
                "data/chunk_index": chunk, "data/file_index": index,
                "dataset_from_index": global_index, "dataset_to_index": global_index + n,
                f"videos/{key}/chunk_index": chunk, f"videos/{key}/file_index": index,
                f"videos/{key}/from_timestamp": from_timestamp,
                f"videos/{key}/to_timestamp": from_timestamp + n / FRAME_RATE_HZ,
                "meta/episodes/chunk_index": 0, "meta/episodes/file_index": 0,
                "nav/episode_id": episode.episode_id, "nav/source": episode.source, "nav/task": episode.task,
                "nav/camera_name": camera.name or "",
                "nav/camera_matrix": (np.full(9, np.nan) if matrix is None
                                      else np.asarray(matrix, dtype=float).reshape(9)).tolist(),
                "nav/horizontal_fov_deg": _float_or_nan(camera.horizontal_fov_deg),
                "nav/mount_height_m": _float_or_nan(camera.mount_height_m),
                "nav/mount_pitch_down_deg": _float_or_nan(camera.mount_pitch_down_deg),
                "nav/last_action_known": last_known,
            })
            global_index += n
        flush_file()
    except BaseException:
        if writer is not None:
            writer.close()
        raise

    (staging / "meta" / "episodes" / "chunk-000").mkdir(parents=True, exist_ok=True)
    _pq().write_table(pa.Table.from_pylist(episode_rows), staging / EPISODES_PATH.format(chunk_index=0, file_index=0))
    _pq().write_table(_tasks_table(texts), staging / "meta" / "tasks.parquet")

    total = global_index
    stats = {
        "observation.state": _stats(np.concatenate(all_state)),
        "action": _stats(np.concatenate(all_action)),
        "nav.stamp_s": _stats(np.concatenate(all_stamps)),
        "timestamp": _stats(np.concatenate([np.arange(r["length"]) / FRAME_RATE_HZ for r in episode_rows])),
        "frame_index": _stats(np.concatenate([np.arange(r["length"]) for r in episode_rows])),
        "episode_index": _stats(np.concatenate([np.full(r["length"], r["episode_index"]) for r in episode_rows])),
        "index": _stats(np.arange(total)),
        "task_index": _stats(np.concatenate([np.full(r["length"], task_of[r["tasks"][0]]) for r in episode_rows])),
        key: image_stats.as_dict(),
    }
    (staging / "meta" / "stats.json").write_text(json.dumps(stats, indent=2), encoding="utf-8")

    video_info = {"video.height": height, "video.width": width, "video.codec": MP4_CODEC_NAME,
                  "video.pix_fmt": "yuv420p", "video.is_depth_map": False, "video.fps": int(FRAME_RATE_HZ),
                  "video.channels": 3, "has_audio": False}
    cameras = {repr((r["nav/camera_name"], r["nav/camera_matrix"], r["nav/horizontal_fov_deg"], r["nav/mount_height_m"],
                     r["nav/mount_pitch_down_deg"])) for r in episode_rows}  # repr: NaN == NaN here
    if len(cameras) == 1:
        first = episode_rows[0]
        video_info.update({"camera.name": first["nav/camera_name"],
                           "camera.camera_matrix": _json_floats(first["nav/camera_matrix"]),
                           "camera.horizontal_fov_deg": _json_float(first["nav/horizontal_fov_deg"]),
                           "camera.mount_height_m": _json_float(first["nav/mount_height_m"]),
                           "camera.mount_pitch_down_deg": _json_float(first["nav/mount_pitch_down_deg"])})
    vector = {"dtype": "float32", "shape": [3]}
    scalar = {"shape": [1], "names": None}
    info = {
        "codebase_version": CODEBASE_VERSION,
        "robot_type": robot_type,
        "total_episodes": len(episodes),
        "total_frames": total,
        "total_tasks": len(texts),
        "chunks_size": CHUNKS_SIZE,
        "data_files_size_in_mb": 100,
        "video_files_size_in_mb": 200,
        "fps": int(FRAME_RATE_HZ),
        "splits": {"train": f"0:{len(episodes)}"},
        "data_path": DATA_PATH,
        "video_path": VIDEO_PATH,
        "features": {
            key: {"dtype": "video", "shape": [height, width, 3], "names": ["height", "width", "channels"],
                  "info": video_info},
            "observation.state": {**vector, "names": list(STATE_NAMES)},
            "action": {**vector, "names": list(ACTION_NAMES)},
            "nav.stamp_s": {"dtype": "float64", **scalar},
            "timestamp": {"dtype": "float32", **scalar},
            "frame_index": {"dtype": "int64", **scalar},
            "episode_index": {"dtype": "int64", **scalar},
            "index": {"dtype": "int64", **scalar},
            "task_index": {"dtype": "int64", **scalar},
        },
        "navigation": {
            "repo_id": repo_id,
            "writer": "sparsevideonav_ros.datasets.lerobot_v3",
            "observation.state": "x m, y m, yaw rad of base_link in the odometry frame at each frame",
            "action": "dx m, dy m, dtheta rad from the frame to the next one, in the body frame at the frame; "
                      "the unknown motion after the last frame is 0 where nav/last_action_known is false",
            "nav.stamp_s": "recorded stamp of each frame (s); timestamp is frame_index / fps",
            "task": "the episode's language instruction",
            "episode_columns": list(NAV_COLUMNS),
            "camera": "nav/camera_matrix: K (3x3 row-major, pixels of the video frames); nav/mount_height_m: "
                      "optical centre above the ground (m); nav/mount_pitch_down_deg: tilt below the horizon "
                      "(deg); NaN = unknown",
        },
    }
    (staging / "meta" / "info.json").write_text(json.dumps(info, indent=4), encoding="utf-8")


def _float_or_nan(value) -> float:
    return math.nan if value is None else float(value)


def _json_float(value: float) -> Optional[float]:
    return None if value is None or not math.isfinite(value) else float(value)


def _json_floats(values) -> Optional[list]:
    values = [float(v) for v in values]
    return values if all(math.isfinite(v) for v in values) else None
