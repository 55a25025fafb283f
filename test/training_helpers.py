"""Synthetic action-head training data: episodes whose motion is learnable from their cached futures.

Each episode drives one of three constant motions (straight, arc left, arc right); every cached future
latent of that episode carries the motion's class in its channel means (plus noise), so a head that
reads the latents can predict the labels, while predicting the mean action cannot.
Also a command-line entry point, so tests can run (and kill) real training processes:

    python test/training_helpers.py generate|train <workdir> [--episodes N] [--steps S] ...
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import torch

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from sparsevideonav_ros.core import se2  # noqa: E402
from sparsevideonav_ros.datasets.episodes import CameraModel, Episode, FrameList  # noqa: E402

MOTIONS = np.array([[0.10, 0.0, 0.0], [0.06, 0.0, 0.15], [0.06, 0.0, -0.15]])  # per 0.25 s: m, m, rad
TEXT_DIM = 32  # the tiny text encoder's width
GRID = 8  # tiny latents: 8 x 8
INSTRUCTION = "go to the kitchen and stop by the fridge"


def synthetic_episode(index: int, frames: int = 32, size: int = 16, with_poses: bool = True,
                      with_actions: bool = False) -> Episode:
    motion = MOTIONS[index % len(MOTIONS)]
    deltas = np.tile(motion, (frames - 1, 1))
    poses = np.vstack([np.zeros(3), se2.poses_from_deltas(deltas)])
    actions = np.vstack([deltas, np.full((1, 3), np.nan)])
    image = np.zeros((size, size, 3), dtype=np.uint8)
    return Episode(f"ep{index:03d}", f"synthetic {index}", INSTRUCTION, FrameList([image] * frames),
                   np.arange(frames) * 0.25, CameraModel(size, size), poses=poses if with_poses else None,
                   actions=actions if with_actions else None)


def class_latents(cls: int, generator: torch.Generator, noise: float = 0.5) -> torch.Tensor:
    """(16, 8, 8, 8) latents whose channel means encode the class."""
    pattern = torch.zeros(16, 1, 1, 1)
    pattern[cls * 4:(cls + 1) * 4] = 1.5
    return pattern + noise * torch.randn(16, 8, GRID, GRID, generator=generator)


def write_synthetic_cache(cache, episodes, rank: int = 0, shard_size: int = 8, seed: int = 0) -> None:
    """Cache a class-coded future for every planning frame of the episodes (what generation would write)."""
    from sparsevideonav_ros.training.future_cache import CachedSample, episode_fingerprint
    from sparsevideonav_ros.training.labels import planning_frames
    writer = cache.writer(rank, shard_size)
    text = torch.randn(7, TEXT_DIM, generator=torch.Generator().manual_seed(seed))
    for episode in episodes:
        cls = int(episode.episode_id[2:]) % len(MOTIONS)
        generator = torch.Generator().manual_seed(seed * 7919 + int(episode.episode_id[2:]))
        for frame in planning_frames(len(episode)):
            writer.add(CachedSample(episode.episode_id, frame, episode_fingerprint(episode),
                                    episode.instruction, class_latents(cls, generator), text))
    writer.flush()


def tiny_head_config(dropout: float = 0.1):
    from sparsevideonav_ros.policies.sparsevideonav.models import tiny_action_head_config
    import dataclasses
    return dataclasses.replace(tiny_action_head_config(TEXT_DIM), former_dropout=dropout)


def synthetic_run(workdir: Path, episodes: int = 9, val_fraction: float = 0.34):
    """(train samples, val samples) over a synthetic cache in workdir/cache."""
    from sparsevideonav_ros.training.future_cache import FutureCache
    from sparsevideonav_ros.training.samples import training_samples
    from sparsevideonav_ros.training.trainer import split_by_episode
    eps = [synthetic_episode(i) for i in range(episodes)]
    cache = FutureCache(Path(workdir) / "cache", {"synthetic": 1})
    if not cache.shards():
        write_synthetic_cache(cache, eps)
    by_episode, _ = training_samples(cache, eps, "odometry")
    train_ids, val_ids = split_by_episode(list(by_episode), val_fraction)
    train = [s for i in sorted(train_ids) for s in by_episode[i]]
    val = [s for i in sorted(val_ids) for s in by_episode[i]]
    return train, val


def main(argv=None) -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("mode", choices=("train",))
    parser.add_argument("workdir", type=Path)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--steps", type=int, default=40)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--accumulation", type=int, default=1)
    parser.add_argument("--lr", type=float, default=2e-3)
    parser.add_argument("--dropout", type=float, default=0.1)
    parser.add_argument("--checkpoint-every", type=int, default=5)
    parser.add_argument("--resume", action="store_true")
    parser.add_argument("--validate-every", type=int, default=0)
    parser.add_argument("--step-delay", type=float, default=0.0, help="seconds slept after each step (kill tests)")
    args = parser.parse_args(argv)
    import time

    from sparsevideonav_ros.training.trainer import TrainingOptions, train_action_head
    torch.set_num_threads(1)
    train, val = synthetic_run(args.workdir)
    options = TrainingOptions(batch_size=args.batch_size, gradient_accumulation_steps=args.accumulation,
                              epochs=1000, max_steps=args.steps, lr=args.lr, warmup_steps=2,
                              checkpoint_every=args.checkpoint_every, log_with="none", log_every=1000,
                              validation_steps=5, validate_every=args.validate_every)

    def after_step(step):
        print(f"STEP {step}", flush=True)
        time.sleep(args.step_delay)

    result = train_action_head(train, val, tiny_head_config(args.dropout), args.out, options, resume=args.resume,
                               after_step=after_step, log=lambda m: print(m, flush=True))
    print("RESULT " + json.dumps({"status": result.status, "step": result.step}), flush=True)
    return 0 if result.status == "finished" else 3


if __name__ == "__main__":
    sys.exit(main())
