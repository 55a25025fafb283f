"""Training labels of the action head: 8 motions (dx m, dy m, dtheta rad per 0.25 s) after a planning frame.

Three sources (``--labels``):
  odometry: what the robot did next: the relative motions between the poses of frames T .. T+8;
  dataset:  the episode's own actions (Episode.actions: the motion from frame i to i + 1);
  relabel:  the camera poses of the imagined future frames through the pose head, projected to the
            ground (the paper's stage-4 recipe: the generated future differs from what the robot did,
            so the label comes from the frames the head will see); computed at generation time
            (generation.py) and kept in the future cache.
"""
from __future__ import annotations

from typing import Optional, Sequence

import numpy as np

from sparsevideonav_ros.core import se2
from sparsevideonav_ros.datasets.episodes import Episode, EpisodeError

ACTIONS = 8  # actions per sample: 2 s at 4 FPS
LABELS = ("odometry", "relabel", "dataset")


def action_labels(poses: np.ndarray, index: int) -> np.ndarray:
    """(8, 3): motion between poses index+k and index+k+1 in the frame of index+k (k = 0..7).
    poses: (N, 3) x m, y m, yaw rad with N >= index + 9."""
    return np.stack([se2.relative(poses[index + k], poses[index + k + 1]) for k in range(ACTIONS)])


def planning_frames(frame_count: int, min_frames: int = 12, every: int = 4) -> list[int]:
    """Frame indices T (0-based) the policy plans at in an episode of ``frame_count`` frames: after
    ``min_frames`` frames, every ``every``-th frame (SparseVideoNavPolicy.plans_at counts frames seen = T + 1)."""
    return [seen - 1 for seen in range(min_frames, frame_count + 1) if seen % every == 0]


def check_label_source(episode: Episode, labels: str) -> None:
    """EpisodeError naming the episode when it lacks what ``labels`` reads (before any model loads)."""
    if labels not in LABELS:
        raise ValueError(f"labels must be one of {LABELS}, got {labels!r}")
    if labels == "odometry" and episode.poses is None:
        raise EpisodeError(f"{episode.where()}: --labels odometry needs poses (this episode has only actions: "
                           f"use --labels dataset)")
    if labels == "dataset" and episode.actions is None:
        raise EpisodeError(f"{episode.where()}: --labels dataset needs the episode's own actions (this episode "
                           f"has only poses: use --labels odometry)")


def episode_labels(episode: Episode, frame: int, labels: str) -> Optional[np.ndarray]:
    """(8, 3) odometry or dataset labels after planning frame ``frame``, or None when the episode ends
    before the 8 motions are known (the last planning frames of an episode)."""
    if labels == "odometry":
        poses = np.asarray(episode.poses, dtype=float)
        return action_labels(poses, frame) if frame + ACTIONS < len(poses) else None
    if labels == "dataset":
        actions = np.asarray(episode.actions, dtype=float)[frame:frame + ACTIONS]
        return actions if len(actions) == ACTIONS and np.all(np.isfinite(actions)) else None
    raise ValueError(f"episode_labels reads odometry or dataset labels, not {labels!r}")


def relabelled_actions(plan_state: str, waypoints: Sequence, reason: str) -> tuple[Optional[np.ndarray], str]:
    """A pose-head plan -> ((8, 3) motions between its waypoints 0.25 s apart, "") or (None, why refused).
    waypoints: (M, 3) poses in the body frame at T (M >= 8)."""
    if plan_state != "ok":
        return None, reason or plan_state
    if len(waypoints) < ACTIONS:
        return None, f"only {len(waypoints)} waypoints of 0.25 s, {ACTIONS} needed"
    return action_labels(np.vstack([np.zeros(3), np.asarray(waypoints)[:ACTIONS]]), 0), ""  # the body at T, then the plan
