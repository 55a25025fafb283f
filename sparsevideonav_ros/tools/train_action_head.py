"""Train the SparseVideoNav action head on your own recordings (the authors have not released theirs).

    python -m sparsevideonav_ros.tools.train_action_head BAG [BAG ...] --checkpoint MODEL --out HEAD

Each bag (recorded with `record:=true`: camera/image_raw/compressed, odom, instruction) becomes an
episode: frames resampled to 4 FPS, the odometry pose at each frame's stamp. Every 4 frames (the
policy's planning grid) the frozen video model imagines the sparse future exactly as the policy does
at run time (`SparseVideoNavPolicy.imagine`), and the label is what the robot then did: the 8
relative motions (dx, dy, dtheta) between the next 8 frames (2 s), from odometry (``--labels odometry``,
the default). ``--labels relabel`` labels each sample as the paper does (its stage-4 relabelling): the
camera poses of the imagined frames themselves, through the same pose head the policy runs
(``--pose-estimator opencv | da3``, ``--camera-mount``, ``--horizontal-fov-deg``): decoded T, T+1 s and
T+2 s, projected onto the ground, resampled every 0.25 s, the 8 motions between those waypoints. A
sample whose estimate is refused is left out (the count and the reasons are printed). A fresh
action head, normalised by the labels' statistics, is trained with the DDIM denoising loss (AdamW,
cosine schedule) and saved with save_pretrained; point `sparsevideonav.action_head_dir` at it.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import math
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Optional

import numpy as np
import torch

from sparsevideonav_ros.core import se2
from sparsevideonav_ros.core.frame_sampler import FrameSampler
from sparsevideonav_ros.core.pose_history import PoseHistory
from sparsevideonav_ros.policies.base import Observation, Plan
from sparsevideonav_ros.policies.runner import PolicyRunner

ACTIONS = 8


@dataclass
class Episode:
    """A recording at 4 FPS: frames (H, W, 3) uint8, stamps (s), poses (N, 3) in odom, instruction."""

    frames: list
    stamps: list
    poses: np.ndarray
    instruction: str
    source: str = ""


@dataclass
class Sample:
    future_latents: torch.Tensor  # (16, 8, h, w) generated sparse future
    actions: torch.Tensor  # (8, 3) dx m, dy m, dtheta rad per 0.25 s
    text_embeds: torch.Tensor  # (512, text_dim)
    text_mask: torch.Tensor  # (512,)


def read_bag_episode(path: Path, instruction: str = "", rate_hz: float = 4.0) -> Episode:
    """Frames at 4 FPS with odometry poses interpolated at their stamps; frames outside odometry are dropped."""
    from sparsevideonav_ros.tools import evaluate

    episode = evaluate.Episode(kind="bag", path=str(path))
    sampler, odometry = FrameSampler(rate_hz), PoseHistory(horizon_s=float("inf"))
    sampled, recorded_instructions = [], []
    for kind, payload in evaluate.bag_events(Path(path), episode, None, None, start="0"):
        if kind == "odom":
            odometry.add(*payload)
        elif kind == "instruction":
            recorded_instructions.append(payload[1])
        elif kind == "frame" and sampler.offer(payload.stamp):
            sampled.append((payload.stamp, payload.decode()))
    if not episode.topics.get("odom"):
        raise ValueError(f"{path}: no odometry topic; action labels come from odometry")
    text = instruction or (recorded_instructions[-1] if recorded_instructions else "")
    if not text.strip():
        raise ValueError(f"{path}: no instruction recorded; pass --instruction")
    frames, stamps, poses = [], [], []
    for stamp, rgb in sampled:
        try:
            poses.append(odometry.pose_at(stamp))
        except LookupError:
            continue
        frames.append(rgb)
        stamps.append(stamp)
    return Episode(frames, stamps, np.asarray(poses, dtype=float).reshape(-1, 3), text, str(path))


def action_labels(poses: np.ndarray, index: int) -> np.ndarray:
    """(8, 3): motion between frames index+k and index+k+1 in the frame of index+k (k = 0..7)."""
    return np.stack([se2.relative(poses[index + k], poses[index + k + 1]) for k in range(ACTIONS)])


LABELS = ("odometry", "relabel")


def relabelled_actions(policy, latents: torch.Tensor, stamp: float, pose_head) -> tuple[Optional[np.ndarray], str]:
    """(8, 3) motions (dx m, dy m, dtheta rad per 0.25 s) from the camera poses of the imagined frames, or
    (None, reason) when the pose head refuses them. latents: (1, 16, 10, h, w) from policy.imagine()."""
    plan = policy.pose_plan(stamp, latents, pose_head=pose_head)
    if plan.state != "ok":
        return None, plan.reason
    if len(plan.waypoints) < ACTIONS:
        return None, f"only {len(plan.waypoints)} waypoints of 0.25 s, {ACTIONS} needed"
    return action_labels(np.vstack([np.zeros(3), plan.waypoints[:ACTIONS]]), 0), ""  # the body at T, then the plan


def build_samples(policy, episodes: Iterable[Episode], labels: str = "odometry",
                  refused: Optional[list] = None) -> list[Sample]:
    """Run the frozen video model over each episode as the policy does, one sample per planning frame.

    Frames go through the PolicyRunner like policy_node's (instruction, reset per episode, the policy's
    planning frames, plans_at); at each planning frame with 8 frames of labels after it, the policy
    imagines the sparse future (SparseVideoNavPolicy.imagine) instead of running its action head.
    labels: odometry (what the robot did next) or relabel (relabelled_actions: the poses of the imagined
    frames through the policy's pose head, built from its config). refused: gets (stamp, reason) of each
    sample the pose head refused (relabel only).
    """
    if labels not in LABELS:
        raise ValueError(f"labels must be one of {LABELS}, got {labels!r}")
    pose_head = policy.build_pose_head() if labels == "relabel" else None
    refused = [] if refused is None else refused
    samples: list[Sample] = []
    index_of: dict[float, int] = {}
    current: list[Episode] = []

    def imagine_at_planning_frames(policy, observation: Observation) -> Plan:
        policy.observe(observation)
        seen, index = policy.history_length, index_of[observation.stamp]
        # relabel needs no odometry after the frame: the labels come from the imagined frames
        if (seen >= policy.config.min_frames and policy.plans_at(seen)
                and (pose_head is not None or index + ACTIONS < len(current[0].frames))):
            text_embeds, text_mask = (t[0].cpu() for t in policy.instruction_embedding)
            latents = policy.imagine()
            future = latents[0, :, -ACTIONS:].float().cpu()
            if pose_head is None:
                actions = action_labels(current[0].poses, index)
            else:
                actions, reason = relabelled_actions(policy, latents, observation.stamp, pose_head)
                if actions is None:
                    refused.append((observation.stamp, reason))
                    return Plan.stand_still(observation.stamp, "warming_up")
            samples.append(Sample(future, torch.from_numpy(actions).float(), text_embeds, text_mask))
        return Plan.stand_still(observation.stamp, "warming_up")  # nothing to drive: a training pass

    def fail(message: str) -> None:  # a refused instruction or a failed step ends the training run
        raise RuntimeError(message)

    runner = PolicyRunner(type(policy), lambda: policy, step=imagine_at_planning_frames, report_error=fail,
                          log_info=lambda message: None)
    runner.load()
    for episode in episodes:
        current[:] = [episode]
        index_of = {float(stamp): i for i, stamp in enumerate(episode.stamps)}
        runner.reset()
        runner.set_instruction(episode.instruction)
        for stamp, rgb in zip(episode.stamps, episode.frames):
            if runner.add_frame(stamp, rgb):
                runner.process()
    return samples


def action_statistics(samples: list[Sample]) -> tuple[tuple[float, ...], tuple[float, ...]]:
    actions = torch.cat([s.actions for s in samples]).double()
    std = actions.std(dim=0, unbiased=False).clamp(min=1e-3)  # a constant dimension would divide by zero
    return tuple(actions.mean(dim=0).tolist()), tuple(std.tolist())


def train(head, samples: list[Sample], epochs: int = 50, batch_size: int = 8, lr: float = 5e-5,
          weight_decay: float = 0.01, seed: int = 0, device: str = "cpu", log=print) -> list[float]:
    """DDIM denoising loss over the samples; returns the mean loss per epoch."""
    if not samples:
        raise ValueError("no training samples: episodes need >= 20 frames at 4 FPS (12 to plan + 8 labels)")
    generator = torch.Generator().manual_seed(seed)
    head.to(device).train()
    optimizer = torch.optim.AdamW(head.parameters(), lr=lr, weight_decay=weight_decay)
    steps = epochs * math.ceil(len(samples) / batch_size)
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=max(steps, 1))
    losses = []
    for epoch in range(epochs):
        order = torch.randperm(len(samples), generator=generator).tolist()
        total = 0.0
        for start in range(0, len(order), batch_size):
            batch = [samples[i] for i in order[start:start + batch_size]]
            stack = lambda name: torch.stack([getattr(s, name) for s in batch]).to(device)  # noqa: E731
            loss = head.training_loss(stack("actions"), stack("future_latents"), stack("text_embeds"),
                                      stack("text_mask"), generator=generator)
            optimizer.zero_grad()
            loss.backward()
            torch.nn.utils.clip_grad_norm_(head.parameters(), 1.0)
            optimizer.step()
            schedule.step()
            total += loss.item() * len(batch)
        losses.append(total / len(samples))
        log(f"epoch {epoch + 1}/{epochs}: loss {losses[-1]:.4f}")
    head.eval()
    return losses


def fresh_head_like(head, samples: list[Sample]):
    """A new head with the architecture of ``head`` and the labels' normalisation."""
    from sparsevideonav_ros.policies.sparsevideonav.action_head import SparseVideoNavActionHead
    mean, std = action_statistics(samples)
    return SparseVideoNavActionHead.from_head_config(dataclasses.replace(head.head_config, action_mean=mean,
                                                                          action_std=std))


def main(argv: Optional[list[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("bags", nargs="+", type=Path, help="rosbag2 folders (mcap or sqlite3)")
    parser.add_argument("--checkpoint", required=True, help="video model: our layout, the release layout or 'tiny'")
    parser.add_argument("--wan-diffusers-dir", default="", help="release layout: diffusers Wan2.1 folder")
    parser.add_argument("--out", type=Path, required=True, help="folder for the trained action head")
    parser.add_argument("--instruction", default="", help="instruction for bags that recorded none")
    parser.add_argument("--epochs", type=int, default=50)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--lr", type=float, default=5e-5)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--dtype", default="float32", choices=("float32", "bfloat16"))
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--labels", default="odometry", choices=LABELS,
                        help="odometry = what the robot did next; relabel = camera poses of the imagined frames "
                             "through the pose head (the paper's relabelling)")
    parser.add_argument("--pose-estimator", default="opencv", help="relabel: opencv | da3")
    parser.add_argument("--da3-dir", default="", help="relabel with da3: local Depth Anything 3 folder")
    parser.add_argument("--camera-mount", default="osmo", help="relabel: osmo | d455 (mount presets)")
    parser.add_argument("--horizontal-fov-deg", type=float, default=90.0,
                        help="relabel: horizontal field of view of the recorded camera (deg)")
    options = parser.parse_args(argv)

    from sparsevideonav_ros.policies.sparsevideonav.configuration_sparsevideonav import SparseVideoNavConfig
    from sparsevideonav_ros.policies.sparsevideonav.models import load_models
    from sparsevideonav_ros.policies.sparsevideonav.policy import SparseVideoNavPolicy

    config = SparseVideoNavConfig(checkpoint=options.checkpoint, wan_diffusers_dir=options.wan_diffusers_dir,
                                  device=options.device, dtype=options.dtype, seed=options.seed,
                                  # dit: a DiT head is what is trained, so the release's missing head must
                                  # raise (below: train the paper-size one), never fall back to the pose head
                                  action_head="dit", pose_estimator=options.pose_estimator,
                                  da3_dir=options.da3_dir, camera_mount=options.camera_mount,
                                  horizontal_fov_deg=options.horizontal_fov_deg,
                                  # the head is what is being trained: any head architecture loads here
                                  action_head_dir=str(options.out) if (options.out / "config.json").is_file() else "")
    try:
        models = load_models(config)
    except Exception as error:  # the release has no head yet: train the paper-size one
        if "action head" not in str(error):
            raise
        config = dataclasses.replace(config, action_head_dir=_paper_head(Path(tempfile.mkdtemp(prefix="head-"))))
        models = load_models(config)
    policy = SparseVideoNavPolicy(config, models=models)
    episodes = [read_bag_episode(path, options.instruction) for path in options.bags]
    for episode in episodes:
        print(f"{episode.source}: {len(episode.frames)} frames at 4 FPS, instruction {episode.instruction!r}")
    refused: list = []
    samples = build_samples(policy, episodes, labels=options.labels, refused=refused)
    print(f"{len(samples)} samples ({options.labels} labels)")
    if refused:
        print(f"{len(refused)} samples left out, the pose head refused their imagined frames, e.g. {refused[0][1]}")
    head = fresh_head_like(models.action_head, samples)
    losses = train(head, samples, epochs=options.epochs, batch_size=options.batch_size, lr=options.lr,
                   seed=options.seed, device=options.device)
    head.save_pretrained(options.out)
    report = {"bags": [str(p) for p in options.bags], "samples": len(samples), "labels": options.labels,
              "refused": len(refused), "losses": losses,
              "action_mean": list(head.head_config.action_mean), "action_std": list(head.head_config.action_std)}
    (options.out / "training_report.json").write_text(json.dumps(report, indent=2))
    print(f"action head saved to {options.out.resolve()} (set sparsevideonav.action_head_dir to it)")
    return 0


def _paper_head(folder: Path) -> str:
    """A paper-size untrained head saved once, so the release layout loads for training."""
    from sparsevideonav_ros.policies.sparsevideonav.action_head import ActionHeadConfig, SparseVideoNavActionHead
    if not (folder / "config.json").is_file():
        SparseVideoNavActionHead.from_head_config(ActionHeadConfig()).save_pretrained(folder)
    return str(folder)


if __name__ == "__main__":
    sys.exit(main())
