"""Which samples an action-head run trains on: the planning frames of the episodes, their cached futures
and their labels."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Mapping, Optional, Sequence

import numpy as np

from sparsevideonav_ros.datasets.episodes import Episode
from sparsevideonav_ros.training.future_cache import FutureCache, ShardReader, episode_fingerprints
from sparsevideonav_ros.training.labels import ACTIONS, episode_labels, planning_frames
from sparsevideonav_ros.training.trainer import TrainingSample, split_by_episode


@dataclass
class SampleSummary:
    planning_frames: int = 0
    samples: int = 0
    not_cached: int = 0  # planning frames whose future is missing from the cache
    no_label: int = 0  # odometry/dataset: the episode ends before 8 motions after the frame
    refused: list = field(default_factory=list)  # relabel: (episode_id, frame, reason)

    def to_dict(self) -> dict:
        reasons: dict[str, int] = {}
        for _, _, reason in self.refused:
            reasons[reason.split(":")[0]] = reasons.get(reason.split(":")[0], 0) + 1
        return {"planning_frames": self.planning_frames, "samples": self.samples, "not_cached": self.not_cached,
                "no_label": self.no_label, "refused_by_pose_head": len(self.refused), "refusals": reasons}


def frames_needing_futures(episode: Episode, labels: str, min_frames: int = 12, every: int = 4) -> list[int]:
    """Planning frames worth imagining: every one for relabel (labels come from the imagined frames), those
    with 8 known motions after them for odometry/dataset (no backbone time spent on frames without a label)."""
    frames = planning_frames(len(episode), min_frames, every)
    if labels == "relabel":
        return frames
    return [t for t in frames if episode_labels(episode, t, labels) is not None]


def missing_futures(index: Mapping, episodes: Sequence[Episode], needed: Mapping[str, Sequence[int]],
                    fingerprints: Mapping[str, str]) -> dict[str, list[int]]:
    """{episode_id: planning frames of ``needed`` without a cached future of the episode as it is now}
    (FutureCache.index keys: an edited episode's old futures do not count)."""
    out = {}
    for episode in episodes:
        fingerprint = fingerprints[episode.episode_id]
        missing = [t for t in needed[episode.episode_id] if (episode.episode_id, t, fingerprint) not in index]
        if missing:
            out[episode.episode_id] = missing
    return out


def training_samples(cache: FutureCache, episodes: Sequence[Episode], labels: str, min_frames: int = 12,
                     every: int = 4, fingerprints: Optional[Mapping[str, str]] = None
                     ) -> tuple[dict[str, list[TrainingSample]], SampleSummary]:
    """{episode_id: [TrainingSample]} over the planning frames with a cached future and a label.
    fingerprints: {episode_id: episode_fingerprint} when already computed (else computed here)."""
    index = cache.index()
    fingerprints = episode_fingerprints(episodes) if fingerprints is None else fingerprints
    reader = ShardReader()
    summary = SampleSummary()
    out: dict[str, list[TrainingSample]] = {}
    for episode in episodes:
        fingerprint = fingerprints[episode.episode_id]
        samples = out.setdefault(episode.episode_id, [])
        for frame in planning_frames(len(episode), min_frames, every):
            summary.planning_frames += 1
            entry = index.get((episode.episode_id, frame, fingerprint))
            if entry is None:
                summary.not_cached += 1
                continue
            if labels == "relabel":
                if entry.refusal:
                    summary.refused.append((episode.episode_id, frame, entry.refusal))
                    continue
                actions = reader.row(entry, "relabel_actions").numpy().astype(float)
            else:
                actions = episode_labels(episode, frame, labels)
                if actions is None:
                    summary.no_label += 1
                    continue
            assert actions.shape == (ACTIONS, 3) and np.all(np.isfinite(actions)), (episode.where(frame), actions)
            samples.append(TrainingSample(entry, actions))
            summary.samples += 1
    return out, summary


def split_samples(by_episode: Mapping[str, Sequence[TrainingSample]], val_fraction: float, seed: int = 0
                  ) -> tuple[set, set, list[TrainingSample], list[TrainingSample]]:
    """(train ids, validation ids, train samples, validation samples), split by episode over the episodes
    that have samples only (an episode too short to label, or not cached, would take a validation place and
    validate nothing)."""
    train_ids, val_ids = split_by_episode([i for i, samples in by_episode.items() if samples], val_fraction, seed)
    train = [s for i in sorted(train_ids) for s in by_episode[i]]
    val = [s for i in sorted(val_ids) for s in by_episode[i]]
    return train_ids, val_ids, train, val
