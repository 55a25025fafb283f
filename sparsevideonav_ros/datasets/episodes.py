"""One episode interface for action-head training data, whatever it was recorded with.

An Episode is a 4 FPS navigation recording: RGB frames, per-frame poses and/or actions, the instruction
and the camera model. Adapters (sparsevideonav_ros.datasets.<adapter>) turn a source into episodes: our
bags, a plain folder per episode (a handheld Osmo collection), LeRobotDataset v3. Frames are read lazily
(``Frames``: hours of 4 FPS video do not fit in memory); everything else is small and held in arrays.

Conventions (the same as the policy's plans and tools/train_action_head):
  * time: ``stamps_s`` (N,) seconds, increasing, 0.25 s apart (4 FPS) up to ``STAMP_TOLERANCE_S``;
  * poses: (N, 3) x m, y m, yaw rad of the robot (base_link) in a fixed odometry/world frame, at each frame;
  * actions: (N, 3) dx m, dy m, dtheta rad: the motion from frame i to frame i + 1 in the robot frame at
    frame i (``se2.relative(pose_i, pose_i+1)``); the last row is the motion after the last frame (the
    authors' dataset has #actions == #frames) and is NaN when unknown (poses only);
  * frames: (H, W, 3) uint8 RGB, every frame of an episode the same size.

``Episode.validate()`` finds bad input before any model loads: missing frames, poses or actions that do
not cover the frames, NaN, an empty instruction; its errors name the episode and the frame.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Callable, Optional, Protocol, Sequence

import numpy as np

from sparsevideonav_ros.core import se2

FRAME_RATE_HZ = 4.0
FRAME_DT_S = 1.0 / FRAME_RATE_HZ
# A 4 FPS grid picked from a camera stream (core.frame_sampler.FrameSampler) jitters by up to one camera
# frame period: 1/15 s at camera_node's default rate_hz of 15, so gaps of 0.183..0.317 s are right. A missing
# frame (0.5 s) or a repeated one (~0 s) is still far outside 0.25 +- 0.1 s.
STAMP_TOLERANCE_S = 0.1
TASKS = ("", "ifn", "bvn")  # unknown, instruction-following, beyond-the-view (the paper's two task types)


class EpisodeError(ValueError):
    """Bad episode data; the message names the episode (and the frame where one is at fault)."""


class Frames(Protocol):
    """Lazy frame access: ``len(frames)`` and ``frames[i]`` -> (H, W, 3) uint8 RGB."""

    def __len__(self) -> int: ...

    def __getitem__(self, index: int) -> np.ndarray: ...


@dataclass
class FrameList:
    """Frames held in memory (tests, short recordings)."""

    images: Sequence[np.ndarray]

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, index: int) -> np.ndarray:
        return self.images[index]


@dataclass
class LazyFrames:
    """``count`` frames produced by ``read(i)`` on demand (image files, video decoders)."""

    count: int
    read: Callable[[int], np.ndarray]

    def __len__(self) -> int:
        return self.count

    def __getitem__(self, index: int) -> np.ndarray:
        if not 0 <= index < self.count:
            raise IndexError(f"frame {index} of {self.count}")
        return self.read(index)


@dataclass
class CameraModel:
    """What is known of the camera: image size, intrinsics, and its mount on the robot / the handheld rig.

    camera_matrix: (3, 3) K in pixels of the width x height frames, or None (then horizontal_fov_deg,
    if given, stands for a centred pinhole). mount_height_m / mount_pitch_down_deg: optical centre above
    the ground (m) and tilt below the horizon (deg); None = unknown (the pose head then needs a preset).
    """

    width: int
    height: int
    camera_matrix: Optional[np.ndarray] = None
    horizontal_fov_deg: Optional[float] = None
    mount_height_m: Optional[float] = None
    mount_pitch_down_deg: Optional[float] = None
    name: str = ""  # e.g. "osmo", "d455", a camera serial

    def intrinsics(self) -> Optional[np.ndarray]:
        """(3, 3) K of the frames: the matrix, else a centred pinhole from the FOV, else None."""
        if self.camera_matrix is not None:
            return np.asarray(self.camera_matrix, dtype=float)
        if self.horizontal_fov_deg is not None:
            from sparsevideonav_ros.core.intrinsics import intrinsics_from_fov
            return intrinsics_from_fov(self.width, self.height, math.radians(self.horizontal_fov_deg))
        return None


@dataclass
class Episode:
    episode_id: str
    source: str  # where it came from (bag path, folder, dataset + index), for messages
    instruction: str
    frames: Frames
    stamps_s: np.ndarray  # (N,) s
    camera: CameraModel
    poses: Optional[np.ndarray] = None  # (N, 3) x, y, yaw in a fixed frame
    actions: Optional[np.ndarray] = None  # (N, 3) dx, dy, dtheta from frame i to i + 1 (robot frame at i)
    task: str = ""  # TASKS
    metadata: dict = field(default_factory=dict)  # adapter-specific extras (scene, operator, ...)

    def __len__(self) -> int:
        return len(self.frames)

    def where(self, frame: Optional[int] = None) -> str:
        return f"episode {self.episode_id!r} ({self.source})" + ("" if frame is None else f", frame {frame}")

    def motions(self) -> np.ndarray:
        """(N, 3) per-frame motions: ``actions`` when given, else from consecutive poses (last row NaN)."""
        if self.actions is not None:
            return np.asarray(self.actions, dtype=float)
        poses = np.asarray(self.poses, dtype=float)
        out = np.full((len(poses), 3), np.nan)
        for i in range(len(poses) - 1):
            out[i] = se2.relative(poses[i], poses[i + 1])
        return out

    def validate(self, needs: str = "motions") -> "Episode":
        """Check everything a training run will read, except the frames' pixels (see check_frames).

        needs: "motions" (odometry/dataset labels: poses or actions must cover the frames), or "frames"
        (relabelling: labels come from imagined frames, only the frames and stamps are needed).
        Raises EpisodeError naming the episode and, where one is at fault, the frame.
        """
        n = len(self.frames)
        if n == 0:
            raise EpisodeError(f"{self.where()}: no frames")
        if not isinstance(self.instruction, str) or not self.instruction.strip():
            raise EpisodeError(f"{self.where()}: empty instruction")
        if self.task not in TASKS:
            raise EpisodeError(f"{self.where()}: task {self.task!r} is not one of {TASKS}")
        stamps = np.asarray(self.stamps_s, dtype=float)
        if stamps.shape != (n,):
            raise EpisodeError(f"{self.where()}: {stamps.size} stamps for {n} frames")
        bad = np.flatnonzero(~np.isfinite(stamps))
        if bad.size:
            raise EpisodeError(f"{self.where(int(bad[0]))}: stamp is not finite")
        gaps = np.diff(stamps)
        off = np.flatnonzero(np.abs(gaps - FRAME_DT_S) > STAMP_TOLERANCE_S)
        if off.size:
            i = int(off[0]) + 1
            raise EpisodeError(f"{self.where(i)}: {gaps[i - 1]:.3f} s after the previous frame; episodes are "
                               f"4 FPS ({FRAME_DT_S} s +- {STAMP_TOLERANCE_S} s): a missing or repeated frame")
        if self.camera.width <= 0 or self.camera.height <= 0:
            raise EpisodeError(f"{self.where()}: camera size {self.camera.width}x{self.camera.height}")
        for name in ("poses", "actions"):
            values = getattr(self, name)
            if values is None:
                continue
            values = np.asarray(values, dtype=float)
            if values.ndim != 2 or values.shape[1] != 3:
                raise EpisodeError(f"{self.where()}: {name} must be (N, 3), got {values.shape}")
            if len(values) < n:
                raise EpisodeError(f"{self.where(len(values))}: {name} cover {len(values)} of {n} frames")
            if len(values) > n:
                raise EpisodeError(f"{self.where()}: {len(values)} {name} for {n} frames")
            rows = values if name == "poses" else values[:-1]  # the motion after the last frame may be unknown
            bad = np.flatnonzero(~np.all(np.isfinite(rows), axis=1))
            if bad.size:
                raise EpisodeError(f"{self.where(int(bad[0]))}: {name} row is not finite: {rows[bad[0]].tolist()}")
        if needs == "motions" and self.poses is None and self.actions is None:
            raise EpisodeError(f"{self.where()}: neither poses nor actions: odometry/dataset labels need one")
        if needs not in ("motions", "frames"):
            raise ValueError(f"needs must be 'motions' or 'frames', got {needs!r}")
        return self

    def check_frames(self, progress: Optional[Callable[[int], None]] = None) -> None:
        """Read every frame once: each must be (H, W, 3) uint8 of the camera's size. Raises EpisodeError.
        progress(1) after each frame (a progress bar)."""
        for i in range(len(self.frames)):
            try:
                frame = self.frames[i]
            except Exception as error:  # a missing file, a video shorter than its index says
                raise EpisodeError(f"{self.where(i)}: cannot read the frame: {error}") from error
            if (not isinstance(frame, np.ndarray) or frame.dtype != np.uint8
                    or frame.shape != (self.camera.height, self.camera.width, 3)):
                got = getattr(frame, "shape", type(frame).__name__), getattr(frame, "dtype", "")
                raise EpisodeError(f"{self.where(i)}: frame is {got}, expected ({self.camera.height}, "
                                   f"{self.camera.width}, 3) uint8 RGB")
            if progress is not None:
                progress(1)


def validate_all(episodes: Sequence[Episode], needs: str = "motions", read_frames: bool = False) -> None:
    """validate() each episode (and read its frames when asked); ids must be unique across the set."""
    seen: dict[str, str] = {}
    for episode in episodes:
        if episode.episode_id in seen:
            raise EpisodeError(f"{episode.where()}: episode id also used by {seen[episode.episode_id]}")
        seen[episode.episode_id] = episode.source
        episode.validate(needs)
        if read_frames:
            episode.check_frames()
