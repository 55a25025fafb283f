"""Adapter: a plain folder per episode, what a handheld collection (the paper's Osmo pipeline) produces.

Layout (docs/datasets.md has the full description)::

    walk_0001/                       episode id = the folder's name
      frames/000000.jpg ...          4 FPS frames (.jpg .jpeg .png), numbered from 0 without holes; frame i
                                     is at t = i * 0.25 s (or episode.json "stamps_s")
      video.mp4                      instead of frames/: any rate, any of VIDEO_SUFFIXES; resampled to 4 FPS
                                     by time on the policy's grid (core.frame_sampler.FrameSampler); t = the
                                     video's presentation time
      poses.csv | poses.json         columns t (s) or frame, x (m), y (m), yaw (rad): interpolated at each
                                     frame's t (or one row per frame index)
      actions.csv | actions.json     columns t (s) or frame, dx (m), dy (m), dtheta (rad): the motion from
                                     that frame to the next in the body frame at it
      instruction.txt                the instruction (when episode.json has none)
      episode.json                   optional: instruction, task ("ifn" | "bvn"), camera {name,
                                     horizontal_fov_deg | camera_matrix, mount_height_m,
                                     mount_pitch_down_deg}, stamps_s, metadata

A folder holding several such folders is a collection: read_collection / open_episodes reads each.
write_episode writes this layout (tests; turning any Episode into files a person can look at).
"""
from __future__ import annotations

import csv
import json
import math
import re
from pathlib import Path
from typing import Any, Optional

import cv2
import numpy as np

from sparsevideonav_ros.datasets.episodes import (FRAME_DT_S, STAMP_TOLERANCE_S, CameraModel, Episode, EpisodeError,
                                                  LazyFrames)
from sparsevideonav_ros.datasets.video import VIDEO_SUFFIXES, VideoError, VideoReader, resample_indices

NAME = "folder"
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png")
POSE_COLUMNS = ("x", "y", "yaw")
ACTION_COLUMNS = ("dx", "dy", "dtheta")


def _video_file(path: Path) -> Optional[Path]:
    videos = [p for p in sorted(path.glob("video.*")) if p.suffix.lower() in VIDEO_SUFFIXES]
    return videos[0] if videos else None


def is_episode_folder(path: Path) -> bool:
    path = Path(path)
    return path.is_dir() and ((path / "frames").is_dir() or _video_file(path) is not None)


def detect(path: Path) -> bool:
    """An episode folder, or a folder whose sub-folders are all episode folders (hidden ones aside)."""
    path = Path(path)
    if is_episode_folder(path):
        return True
    if not path.is_dir() or (path / "meta" / "info.json").is_file():
        return False
    children = [p for p in path.iterdir() if p.is_dir() and not p.name.startswith(".")]
    return bool(children) and all(is_episode_folder(p) for p in children)


def read(path: Path, instruction: str = "") -> list[Episode]:
    path = Path(path)
    if is_episode_folder(path):
        return [read_episode(path)]
    return read_collection(path)


def read_collection(path: str | Path) -> list[Episode]:
    path = Path(path)
    folders = sorted(p for p in path.iterdir() if p.is_dir() and not p.name.startswith("."))
    episodes = [read_episode(p) for p in folders if is_episode_folder(p)]
    if not episodes:
        raise EpisodeError(f"{path}: no episode folders (each needs frames/ or video.*; see docs/datasets.md)")
    return episodes


# -- reading -----------------------------------------------------------------------------------

def _where(episode_id: str, path: Path, frame: Optional[int] = None) -> str:
    return f"episode {episode_id!r} ({path})" + ("" if frame is None else f", frame {frame}")


def _table(path: Path, where: str) -> dict[str, np.ndarray]:
    """Columns of a CSV (header row) or JSON (list of row objects, or an object of column lists) file."""
    try:
        if path.suffix == ".json":
            data = json.loads(path.read_text(encoding="utf-8"))
            if isinstance(data, list):
                names = list(data[0]) if data else []
                rows = [[row.get(n, math.nan) for n in names] for row in data]
                return {n: np.array([r[i] for r in rows], dtype=float) for i, n in enumerate(names)}
            if isinstance(data, dict):
                return {n: np.asarray(v, dtype=float) for n, v in data.items()}
            raise ValueError("expected a list of rows or an object of columns")
        with path.open(newline="", encoding="utf-8") as handle:
            rows = list(csv.DictReader(handle))
        names = [n.strip() for n in (rows[0].keys() if rows else [])]
        return {n: np.array([float(r[k]) if r[k] not in (None, "") else math.nan for r in rows], dtype=float)
                for n, k in zip(names, rows[0].keys() if rows else [])}
    except (ValueError, KeyError, TypeError, IndexError, json.JSONDecodeError) as error:
        raise EpisodeError(f"{where}: cannot read {path.name}: {error}") from error


def _one_of(folder: Path, stem: str) -> Optional[Path]:
    found = [folder / f"{stem}{suffix}" for suffix in (".csv", ".json") if (folder / f"{stem}{suffix}").is_file()]
    return found[0] if found else None


def _rows_by_frame(table: dict, columns: tuple[str, ...], stamps: np.ndarray, name: str, where: str,
                   interpolate: bool) -> np.ndarray:
    """(N, 3) per frame from a table keyed by 'frame' (one row per frame index) or 't' (seconds)."""
    missing = [c for c in columns if c not in table]
    if missing or ("frame" not in table and "t" not in table):
        raise EpisodeError(f"{where}: {name} needs columns (t or frame), {', '.join(columns)}; it has "
                           f"{', '.join(table) or 'none'}")
    values = np.stack([table[c] for c in columns], axis=1)
    out = np.full((len(stamps), 3), np.nan)
    if "frame" in table:
        frames = table["frame"]
        for row, frame in zip(values, frames):
            if not (math.isfinite(frame) and frame == int(frame) and 0 <= frame < len(stamps)):
                raise EpisodeError(f"{where}: {name} row for frame {frame:g}: there are {len(stamps)} frames")
            out[int(frame)] = row
        return out
    t = table["t"]
    if np.any(~np.isfinite(t)) or np.any(np.diff(t) <= 0):
        raise EpisodeError(f"{where}: {name} t must be finite and increasing")
    if interpolate:  # poses: as the policy's PoseHistory does (linear x, y; yaw along the shorter arc)
        from sparsevideonav_ros.core import se2
        for i, stamp in enumerate(stamps):
            if stamp < t[0] - 1e-6 or stamp > t[-1] + 1e-6:
                raise EpisodeError(f"{where}, frame {i}: at t = {stamp:.3f} s, outside {name} "
                                   f"(t = {t[0]:.3f} .. {t[-1]:.3f} s): the poses do not cover the frames")
            j = int(np.clip(np.searchsorted(t, stamp, side="right") - 1, 0, len(t) - 1))
            k = min(j + 1, len(t) - 1)
            alpha = 0.0 if k == j else (stamp - t[j]) / (t[k] - t[j])
            # a NaN row stays NaN in the frames it brackets: Episode.validate names the first of them
            out[i] = se2.interpolate(values[j], values[k], alpha) if alpha > 0 else values[j]
        return out
    for row, stamp in zip(values, t):  # actions: each row belongs to the frame at its t
        i = int(np.argmin(np.abs(stamps - stamp)))
        if abs(stamps[i] - stamp) > STAMP_TOLERANCE_S:
            raise EpisodeError(f"{where}: {name} row at t = {stamp:.3f} s is at no frame (nearest: frame {i} at "
                               f"{stamps[i]:.3f} s)")
        out[i] = row
    return out


def _image_reader(path: Path, episode_id: str, folder: Path, index: int):
    def read_image(_: int) -> np.ndarray:
        bgr = cv2.imread(str(path), cv2.IMREAD_COLOR)
        if bgr is None:
            raise EpisodeError(f"{_where(episode_id, folder, index)}: {path.name} is missing or not an image")
        return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)
    return read_image


def _frame_files(folder: Path, episode_id: str) -> list[Path]:
    files = sorted(p for p in (folder / "frames").iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
    if not files:
        raise EpisodeError(f"{_where(episode_id, folder)}: frames/ holds no .jpg/.jpeg/.png")
    numbers = [int(m.group(1)) if (m := re.fullmatch(r"\D*(\d+)", p.stem)) else None for p in files]
    if all(n is not None for n in numbers):
        for position, number in enumerate(numbers):
            if number != position:
                raise EpisodeError(f"{_where(episode_id, folder, position)}: missing (frames/ numbers "
                                   f"{numbers[position - 1] if position else 'nothing'} then {number}; frames "
                                   f"are numbered from 0 without holes)")
    return files


def read_episode(folder: str | Path) -> Episode:
    """The episode in ``folder`` (layout above): frames lazy, poses/actions per frame. Raises EpisodeError."""
    folder = Path(folder)
    episode_id = folder.name
    where = _where(episode_id, folder)
    meta: dict[str, Any] = {}
    if (folder / "episode.json").is_file():
        try:
            meta = json.loads((folder / "episode.json").read_text(encoding="utf-8"))
        except json.JSONDecodeError as error:
            raise EpisodeError(f"{where}: episode.json is not JSON: {error}") from error
        if not isinstance(meta, dict):
            raise EpisodeError(f"{where}: episode.json must hold an object")
    instruction = str(meta.get("instruction") or "")
    if not instruction.strip() and (folder / "instruction.txt").is_file():
        instruction = (folder / "instruction.txt").read_text(encoding="utf-8").strip()

    video = None if (folder / "frames").is_dir() else _video_file(folder)
    if video is None:
        files = _frame_files(folder, episode_id)
        first = _image_reader(files[0], episode_id, folder, 0)(0)
        height, width = first.shape[:2]
        readers = [_image_reader(p, episode_id, folder, i) for i, p in enumerate(files)]
        frames = LazyFrames(len(files), lambda i: readers[i](i))
        stamps = (np.asarray(meta["stamps_s"], dtype=float) if "stamps_s" in meta
                  else np.arange(len(files)) * FRAME_DT_S)
        if stamps.shape != (len(files),):
            raise EpisodeError(f"{where}: episode.json stamps_s has {stamps.size} values for {len(files)} frames")
        source_frames = None
    else:
        reader = VideoReader(video)
        try:
            all_stamps = reader.timestamps()
            first = reader.read(0)
        except VideoError as error:
            raise EpisodeError(f"{where}: {error}") from error
        height, width = first.shape[:2]
        source_frames = resample_indices(all_stamps)
        stamps = all_stamps[source_frames]

        def read_video_frame(i: int) -> np.ndarray:
            try:
                return reader.read(source_frames[i])
            except VideoError as error:
                raise EpisodeError(f"{_where(episode_id, folder, i)}: {error}") from error
        frames = LazyFrames(len(source_frames), read_video_frame)

    poses = actions = None
    poses_file, actions_file = _one_of(folder, "poses"), _one_of(folder, "actions")
    if poses_file is not None:
        poses = _rows_by_frame(_table(poses_file, where), POSE_COLUMNS, stamps, poses_file.name, where, True)
    if actions_file is not None:
        actions = _rows_by_frame(_table(actions_file, where), ACTION_COLUMNS, stamps, actions_file.name, where,
                                 False)

    camera_meta = meta.get("camera") or {}
    matrix = camera_meta.get("camera_matrix")
    camera = CameraModel(width=int(width), height=int(height),
                         camera_matrix=None if matrix is None else np.asarray(matrix, dtype=float).reshape(3, 3),
                         horizontal_fov_deg=_optional_float(camera_meta.get("horizontal_fov_deg")),
                         mount_height_m=_optional_float(camera_meta.get("mount_height_m")),
                         mount_pitch_down_deg=_optional_float(camera_meta.get("mount_pitch_down_deg")),
                         name=str(camera_meta.get("name") or ""))
    metadata = dict(meta.get("metadata") or {})
    metadata["layout"] = "video" if video is not None else "frames"
    if video is not None:
        metadata["video"] = video.name
        metadata["video_frames"] = [int(i) for i in source_frames]  # source frame of each 4 FPS frame
    return Episode(episode_id=episode_id, source=str(folder), instruction=instruction, frames=frames,
                   stamps_s=np.asarray(stamps, dtype=float), camera=camera, poses=poses, actions=actions,
                   task=str(meta.get("task") or ""), metadata=metadata)


def _optional_float(value) -> Optional[float]:
    return None if value is None else float(value)


# -- writing -----------------------------------------------------------------------------------

def _json_safe(value):
    if isinstance(value, dict):
        return {str(k): _json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_safe(v) for v in value]
    if isinstance(value, np.ndarray):
        return _json_safe(value.tolist())
    if isinstance(value, (np.floating, float)):
        return float(value) if math.isfinite(value) else None
    if isinstance(value, (np.integer, int, bool, str)) or value is None:
        return value.item() if isinstance(value, np.generic) else value
    return str(value)


def _write_rows(path: Path, columns: tuple[str, ...], rows: np.ndarray, stamps: np.ndarray) -> None:
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(("frame", "t", *columns))
        for i, row in enumerate(rows):
            writer.writerow((i, f"{stamps[i]:.6f}", *(repr(float(v)) if math.isfinite(v) else "" for v in row)))


def write_episode(episode: Episode, folder: str | Path, image_format: str = "jpg", jpeg_quality: int = 95) -> Path:
    """Write ``episode`` as an episode folder (frames/NNNNNN.<image_format>, poses.csv / actions.csv with a
    frame column, episode.json with the instruction, task, camera and the exact stamps). Refuses an existing
    non-empty folder. Returns the folder."""
    folder = Path(folder)
    if folder.exists() and any(folder.iterdir()):
        raise EpisodeError(f"{folder} exists and is not empty; not overwriting an episode")
    if image_format not in ("jpg", "png"):
        raise ValueError(f"image_format must be 'jpg' or 'png', got {image_format!r}")
    (folder / "frames").mkdir(parents=True, exist_ok=True)
    params = [cv2.IMWRITE_JPEG_QUALITY, int(jpeg_quality)] if image_format == "jpg" else []
    for i in range(len(episode.frames)):
        rgb = np.asarray(episode.frames[i])
        path = folder / "frames" / f"{i:06d}.{image_format}"
        if not cv2.imwrite(str(path), cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR), params):
            raise EpisodeError(f"{episode.where(i)}: cannot write {path}")
    stamps = np.asarray(episode.stamps_s, dtype=float)
    relative = stamps - stamps[0]
    if episode.poses is not None:
        _write_rows(folder / "poses.csv", POSE_COLUMNS, np.asarray(episode.poses, dtype=float), relative)
    if episode.actions is not None:
        _write_rows(folder / "actions.csv", ACTION_COLUMNS, np.asarray(episode.actions, dtype=float), relative)
    camera = episode.camera
    meta = {
        "instruction": episode.instruction,
        "task": episode.task,
        "stamps_s": relative.tolist(),
        "camera": {"name": camera.name, "width": camera.width, "height": camera.height,
                   "camera_matrix": None if camera.camera_matrix is None else np.asarray(camera.camera_matrix).tolist(),
                   "horizontal_fov_deg": camera.horizontal_fov_deg, "mount_height_m": camera.mount_height_m,
                   "mount_pitch_down_deg": camera.mount_pitch_down_deg},
        "metadata": _json_safe({**episode.metadata, "written_from": episode.source,
                                "start_stamp_s": float(stamps[0])}),
    }
    (folder / "episode.json").write_text(json.dumps(_json_safe(meta), indent=2), encoding="utf-8")
    return folder
