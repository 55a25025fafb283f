"""Generating the future cache: the frozen video model imagines each sample's sparse future once.

Each episode runs through the policy as at run time (observe every 4 FPS frame: history VAE-encoded
chunk by chunk; at each planning frame T, SparseVideoNavPolicy.imagine: reference encode, history
compression, 4 sampler steps); only planning frames missing from the cache are imagined, the others
are observed (their history is needed) but not generated again. With ``--labels relabel`` the imagined
instants are decoded (policy.imagined_frames) and labelled by the pose head, and both are cached.

Processes (accelerate ranks) split the episodes into disjoint sets by frame count (assign_episodes, the
same on every rank without communication). Each sample's sampling noise is seeded by (config.seed, episode
id, frame) (future_seed; at run time the policy seeds every plan with config.seed alone), so a sample's
future does not depend on which process generated it or on a restart, and two samples do not share one
noise draw. A negative seed (random noise at run time) is refused: cached futures are reproducible.
"""
from __future__ import annotations

import hashlib
import sys
from dataclasses import dataclass, field
from typing import Callable, Mapping, Optional, Sequence

import numpy as np
import torch
from tqdm.auto import tqdm

from sparsevideonav_ros.datasets.episodes import Episode
from sparsevideonav_ros.policies.base import Observation
from sparsevideonav_ros.policies.sparsevideonav.sampling import REFERENCE_LATENTS
from sparsevideonav_ros.training.future_cache import CachedSample, FutureCache, episode_fingerprints
from sparsevideonav_ros.training.labels import relabelled_actions


@dataclass
class GenerationSummary:
    wanted: int = 0  # samples this process is responsible for
    cached: int = 0  # of those, already in the cache
    generated: int = 0
    refused: list = field(default_factory=list)  # (episode_id, frame, reason) the pose head refused (relabel)


def assign_episodes(frame_counts: Sequence[int], world: int) -> list[list[int]]:
    """Episode indices per rank: longest first to the least-loaded rank (ties: lowest rank). Deterministic,
    so every rank computes the same disjoint split from the frame counts alone."""
    loads, out = [0] * world, [[] for _ in range(world)]
    for index in sorted(range(len(frame_counts)), key=lambda i: (-frame_counts[i], i)):
        rank = min(range(world), key=lambda r: (loads[r], r))
        out[rank].append(index)
        loads[rank] += frame_counts[index]
    return [sorted(indices) for indices in out]


def future_seed(seed: int, episode_id: str, frame: int) -> int:
    """Sampling seed of the future of (episode, planning frame) under ``seed`` (>= 0)."""
    return int(hashlib.sha256(f"future\0{seed}\0{episode_id}\0{frame}".encode()).hexdigest()[:15], 16)


def _imagine_seeded(policy, seed: int) -> torch.Tensor:
    """policy.imagine() with its sampling generator seeded by ``seed`` for this one call (the policy's own
    per-plan seeding, config.seed, is left as it is for run time)."""
    policy._generator = lambda: torch.Generator(device="cpu").manual_seed(seed)
    try:
        return policy.imagine()
    finally:
        del policy._generator  # the class's method again


def generate_futures(policy, episodes: Sequence[Episode], cache: FutureCache,
                     frames_to_generate: Callable[[Episode], list[int]], rank: int = 0, world: int = 1,
                     shard_size: int = 64, pose_head=None, progress: bool = True,
                     log: Callable[[str], None] = print,
                     fingerprints: Optional[Mapping[str, str]] = None) -> GenerationSummary:
    """Imagine and cache the futures of this rank's episodes at ``frames_to_generate(episode)`` (planning
    frame indices T). pose_head: given for relabel caches (labels and decoded frames are cached too).
    fingerprints: {episode_id: episode_fingerprint} when already computed (else computed here)."""
    if cache.relabel != (pose_head is not None):
        raise ValueError("a relabel cache needs the pose head, and only a relabel cache takes one")
    if policy.config.seed < 0:
        raise ValueError(f"seed {policy.config.seed}: cached futures are reproducible samples, the seed must be >= 0")
    index = cache.index()
    writer = cache.writer(rank, shard_size)
    mine = [episodes[i] for i in assign_episodes([len(e) for e in episodes], world)[rank]]
    fingerprints = episode_fingerprints(mine) if fingerprints is None else fingerprints
    summary = GenerationSummary()
    todo: list[tuple[Episode, str, list[int]]] = []
    for episode in mine:
        fingerprint = fingerprints[episode.episode_id]
        frames = frames_to_generate(episode)
        missing = [t for t in frames if (episode.episode_id, t, fingerprint) not in index]
        summary.wanted += len(frames)
        summary.cached += len(frames) - len(missing)
        if missing:
            todo.append((episode, fingerprint, missing))
    bar = tqdm(total=sum(len(m) for _, _, m in todo), desc=f"imagining futures (rank {rank})", unit="sample",
               disable=not progress, file=sys.stderr, dynamic_ncols=True, smoothing=0.1)
    try:
        heads: dict = {}
        for episode, fingerprint, missing in todo:
            _generate_episode(policy, episode, fingerprint, set(missing), writer,
                              episode_pose_head(policy, pose_head, episode, heads), summary, bar)
        writer.flush()
    finally:
        bar.close()
    log(f"rank {rank}: {summary.generated} futures generated, {summary.cached} of {summary.wanted} already cached")
    return summary


def episode_pose_head(policy, pose_head, episode: Episode, built: dict):
    """The pose head that relabels ``episode``: through its recorded mount (CameraModel mount_height_m and
    mount_pitch_down_deg; the forward/lateral offsets stay the configured mount's) when it has one, else
    ``pose_head`` (the configured --camera-mount). ``built`` caches one head per distinct mount (a da3 head
    loads its network)."""
    camera = episode.camera
    if pose_head is None or camera is None or camera.mount_height_m is None or camera.mount_pitch_down_deg is None:
        return pose_head
    key = (float(camera.mount_height_m), float(camera.mount_pitch_down_deg))
    if key not in built:
        import dataclasses

        from sparsevideonav_ros.policies.sparsevideonav.policy import camera_mount
        configured = camera_mount(policy.config)
        built[key] = policy.build_pose_head(dataclasses.replace(
            policy.config, camera_mount="custom", mount_height_m=key[0], mount_pitch_down_deg=key[1],
            mount_forward_m=configured.forward_m))
    return built[key]


def _generate_episode(policy, episode: Episode, fingerprint: str, wanted: set[int], writer, pose_head,
                      summary: GenerationSummary, bar) -> None:
    camera_matrix = episode.camera.intrinsics()
    if camera_matrix is not None and (episode.camera.width, episode.camera.height) != _frame_size(episode):
        camera_matrix = None  # K of another image size would be wrong; the policy falls back to its FOV
    policy.reset()
    policy.set_instruction(episode.instruction)
    embeds, mask = policy.instruction_embedding
    text = embeds[0, mask[0].bool()].cpu()  # real tokens only: padding is rebuilt at training time
    for frame in range(max(wanted) + 1):
        stamp = float(episode.stamps_s[frame])
        policy.observe(Observation(stamp=stamp, rgb=episode.frames[frame], camera_matrix=camera_matrix))
        if frame not in wanted:
            continue
        if policy.history_length < policy.config.min_frames or not policy.plans_at(policy.history_length):
            raise ValueError(f"{episode.where(frame)}: not a planning frame of the policy (plans after "
                             f"{policy.config.min_frames} frames, every {policy.config.plan_every_frames})")
        latents = _imagine_seeded(policy, future_seed(policy.config.seed, episode.episode_id, frame))
        # kept in the model's dtype: what the head sees at run time (it casts the sampled latents to its own),
        # and half the disk of float32 in bf16
        future = latents[0, :, REFERENCE_LATENTS:].to(policy.models.transformer.dtype).cpu().contiguous()
        sample = CachedSample(episode.episode_id, frame, fingerprint, episode.instruction, future, text)
        if pose_head is not None:
            current, futures = policy.imagined_frames(latents)
            result = pose_head.plan(stamp, current, futures, policy.pose_intrinsics(current.shape[1]),
                                    policy.pose_times_s)
            actions, reason = relabelled_actions(result.plan.state, result.plan.waypoints, result.reason)
            sample.relabel_actions = torch.full((8, 3), float("nan")) if actions is None else \
                torch.from_numpy(actions).float()
            sample.decoded_frames = torch.from_numpy(np.stack([current, *futures]))
            sample.refusal = reason
            if actions is None:
                summary.refused.append((episode.episode_id, frame, reason))
        writer.add(sample)
        summary.generated += 1
        bar.update(1)


def _frame_size(episode: Episode) -> tuple[int, int]:
    height, width = episode.frames[0].shape[:2]
    return width, height
