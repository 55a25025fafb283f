"""Adapter: our rosbag2 recordings (``record:=true``: camera/image_raw/compressed, camera/camera_info, odom,
instruction, policy/status, policy/path) -> one Episode per bag.

Read without ROS through tools/evaluate.bag_events (the rosbags library, the same topic roles and decoding
as the offline evaluation):
  * frames: resampled to 4 FPS by core.frame_sampler.FrameSampler, the policy node's own sampler; when the
    bag holds the recorded policy's plans, on the very grid it used (bags.recorded_grid), so the episode's
    frames are those the recorded policy planned from. JPEG bytes are held, decoded on access.
  * poses: odometry (x m, y m, yaw rad) interpolated at each frame's stamp (core.pose_history.PoseHistory,
    as the policy receives it); frames before the first / after the last odometry are left out, a frame
    inside an odometry silence longer than MAX_ODOMETRY_GAP_S gets a NaN pose (Episode.validate names it).
  * camera: size of the frames, K from camera/camera_info when it is for that size.
  * instruction: the last one recorded on the instruction topic, else the one policy/status reported.
"""
from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from sparsevideonav_ros.datasets.episodes import FRAME_DT_S, FRAME_RATE_HZ, CameraModel, Episode, EpisodeError, LazyFrames

NAME = "bag"
# Odometry interpolated across a longer silence is a guess (the robot may have turned): such frames get a
# NaN pose, which Episode.validate reports with the frame. The stack's odometry runs at 50 Hz.
MAX_ODOMETRY_GAP_S = 0.5


def detect(path: Path) -> bool:
    path = Path(path)
    if path.is_file():
        return path.suffix in (".mcap", ".db3")
    return path.is_dir() and ((path / "metadata.yaml").is_file()
                              or any(path.glob("*.mcap")) or any(path.glob("*.db3")))


def read(path: Path, instruction: str = "") -> list[Episode]:
    return [read_bag(path)]


def _recorded_grid_start(anchor: float, first_stamp: float, tolerance_fraction: float) -> tuple[float, float]:
    """(where to anchor a FrameSampler, first stamp to offer it) so that it picks the frames of the recorded
    policy's grid (ticks at ``anchor`` + k periods) from the bag's first frame on, also before its first plan.

    The first tick taken is the first whose window (opening tolerance_fraction of a period early) opens at
    or after the first frame: a window the recording entered half way would hand its first frame in late.
    """
    first_tick = math.ceil((first_stamp - anchor) / FRAME_DT_S + tolerance_fraction)
    return anchor + (first_tick - 1) * FRAME_DT_S, anchor + (first_tick - tolerance_fraction) * FRAME_DT_S


def read_bag(path: str | Path, rate_hz: float = FRAME_RATE_HZ) -> Episode:
    """One Episode of the whole bag (see the module docstring); EpisodeError for an unusable bag."""
    from sparsevideonav_ros.bags import BagError
    from sparsevideonav_ros.core.frame_sampler import FrameSampler
    from sparsevideonav_ros.core.pose_history import PoseHistory
    from sparsevideonav_ros.tools import evaluate

    path = Path(path)
    episode_id = path.stem if path.is_file() else path.name
    recorded = evaluate.Episode(kind="bag", path=str(path))
    sampler = FrameSampler(rate_hz)
    odometry = PoseHistory(horizon_s=float("inf"))
    odometry_stamps: list[float] = []
    sampled = []  # (stamp s, decode () -> RGB)
    instructions: list[tuple[float, str]] = []
    status_instruction = ""
    camera_info = None
    grid_anchored = False
    grid_opens = -math.inf  # frames before it are not offered (recorded grid only)
    try:
        # start="aligned": bag_events finds the recorded policy's grid (recorded.grid_anchor) before the first
        # event; every frame still comes through (before_start only marks those before its first plan)
        for kind, payload in evaluate.bag_events(path, recorded, None, None, start="aligned", rate_hz=rate_hz):
            if kind == "frame":
                if not grid_anchored:
                    grid_anchored = True
                    if recorded.grid_anchor is not None:
                        anchor, grid_opens = _recorded_grid_start(recorded.grid_anchor, payload.stamp,
                                                                  sampler.tolerance_fraction)
                        sampler.anchor_at(anchor)
                if payload.stamp >= grid_opens - 1e-9 and sampler.offer(payload.stamp):
                    sampled.append((payload.stamp, payload.decode))
            elif kind == "odom":
                try:
                    odometry.add(*payload)
                    odometry_stamps.append(payload[0])
                except ValueError:  # a NaN odometry message: the frames around it get no pose from it
                    pass
            elif kind == "instruction":
                instructions.append(payload)
            elif kind == "status" and not status_instruction and payload.get("instruction", "").strip():
                status_instruction = payload["instruction"].strip()
            elif kind == "camera_info" and camera_info is None:
                camera_info = payload
    except BagError as error:
        raise EpisodeError(f"episode {episode_id!r} ({path}): {error}") from error
    if not sampled:
        raise EpisodeError(f"episode {episode_id!r} ({path}): no camera frames")
    if sampler.resets:
        raise EpisodeError(f"episode {episode_id!r} ({path}): frame stamps go backwards {sampler.resets} times "
                           f"(a looped replay or a clock switch recorded into one bag); split the bag")

    stamps = np.array([s for s, _ in sampled], dtype=float)
    poses = None
    if recorded.topics.get("odom") and len(odometry):
        poses = np.full((len(stamps), 3), np.nan)
        for i, stamp in enumerate(stamps):
            try:
                poses[i] = odometry.pose_at(stamp)
            except LookupError:
                pass
        known = np.asarray(odometry_stamps)
        if len(known) >= 2:
            after = np.clip(np.searchsorted(known, stamps), 1, len(known) - 1)
            silence = known[after] - known[after - 1]
            inside = (stamps > known[0]) & (stamps < known[-1])
            poses[inside & (silence > MAX_ODOMETRY_GAP_S)] = np.nan
        covered = np.flatnonzero(np.all(np.isfinite(poses), axis=1))
        if covered.size == 0:
            raise EpisodeError(f"episode {episode_id!r} ({path}): odometry ({recorded.topics['odom']}) does not "
                               f"overlap the frames in time")
        keep = slice(int(covered[0]), int(covered[-1]) + 1)  # drop frames before/after odometry, keep holes
        sampled, stamps, poses = sampled[keep], stamps[keep], poses[keep]

    try:
        first = sampled[0][1]()
    except Exception as error:
        raise EpisodeError(f"episode {episode_id!r} ({path}), frame 0: cannot decode: {error}") from error
    height, width = first.shape[:2]
    matrix = camera_info.matrix_for(width, height) if camera_info is not None else None
    camera = CameraModel(width=width, height=height, camera_matrix=matrix, name="")
    decoders = [decode for _, decode in sampled]

    text = instructions[-1][1].strip() if instructions else status_instruction
    metadata = {
        "topics": dict(recorded.topics),
        "instructions": [(round(t, 6), s) for t, s in instructions],  # (bag time s, text) as recorded
        "instruction_source": ("instruction topic" if instructions else "policy/status" if status_instruction
                               else "none"),
        "recorded_grid": recorded.grid_anchor is not None,
        "start_stamp_s": float(stamps[0]),
    }
    return Episode(episode_id=episode_id, source=str(path), instruction=text,
                   frames=LazyFrames(len(decoders), lambda i: decoders[i]()),
                   stamps_s=stamps, camera=camera, poses=poses, metadata=metadata)
