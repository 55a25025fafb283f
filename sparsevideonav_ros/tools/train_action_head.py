"""Train the SparseVideoNav action head on your own episodes (the authors have not released theirs).

    python -m sparsevideonav_ros.tools.train_action_head SOURCE [SOURCE ...] --checkpoint MODEL --out HEAD
    accelerate launch --num_processes N -m sparsevideonav_ros.tools.train_action_head SOURCE ... (same options)

SOURCE: bags recorded with `record:=true`, plain episode folders (frames or a video + poses/actions +
instruction, a handheld Osmo collection), LeRobot v3 datasets, or folders of them (sparsevideonav_ros.datasets).
Every episode is validated first (missing frames, poses not covering the frames, NaN, empty instruction,
and every frame decoded once unless --no-check-frames: an error naming the episode and the frame, before
any model loads).

1. Futures: at each planning frame (every 4 frames after 12, 4 FPS) the frozen video model imagines the
   sparse future exactly as the policy does at run time; each one is generated once into a cache
   (``--cache``, sharded safetensors keyed by the model/sampler/seed; a killed run continues where it
   stopped), split over the processes. ``--generate-only`` stops here.
2. Labels (``--labels``): odometry = the 8 motions (dx, dy, dtheta per 0.25 s) the robot then made; dataset =
   the episode's own actions; relabel = the camera poses of the imagined frames through the pose head
   (``--pose-estimator``, ``--camera-mount``, ``--horizontal-fov-deg``), the paper's stage-4 recipe.
3. Training (accelerate: 1 CPU, 1 GPU, N GPUs; bf16 autocast on GPUs): a fresh head (paper size, or the
   checkpoint's own head architecture) with AdamW, cosine schedule with warm-up; checkpoints every
   ``--checkpoint-every`` steps and on Ctrl-C / SIGTERM; ``--resume`` continues the run bit-for-bit.
   Validation by episode against predicting the mean; TensorBoard logs under HEAD/logs.

HEAD is then an action head: point `sparsevideonav.action_head_dir` at it (with action_head dit or auto).
Exit codes: 0 done, 2 bad input (one line on stderr), 130 interrupted (checkpoint saved: --resume).
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import shlex
import shutil
import sys
from pathlib import Path
from typing import Optional

HEAD_CONFIGS = ("auto", "paper", "checkpoint")


class UsageError(Exception):
    """Expected bad input: reported as one line on stderr with exit code 2, no traceback."""


def parse_args(argv: Optional[list[str]] = None) -> argparse.Namespace:
    from sparsevideonav_ros.training.labels import LABELS
    from sparsevideonav_ros.training.trainer import TrainingOptions
    defaults = TrainingOptions()
    parser = argparse.ArgumentParser(prog="train_action_head", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("sources", nargs="+", type=Path, help="bags, episode folders, LeRobot v3 datasets")
    parser.add_argument("--checkpoint", required=True, help="video model: our layout, the release layout or 'tiny'")
    parser.add_argument("--wan-diffusers-dir", default="", help="release layout: diffusers Wan2.1 folder")
    parser.add_argument("--out", type=Path, default=None, help="folder for the trained action head (not needed with "
                                                                "--generate-only)")
    parser.add_argument("--overwrite", action="store_true",
                        help="replace the head or run in --out (only a folder holding one: training_report.json, "
                             "checkpoints/, backbone.json or a head's weights); it is moved aside when training "
                             "starts and deleted once the new run finished")
    parser.add_argument("--resume", action="store_true", help="continue the run in --out from its last checkpoint")
    data = parser.add_argument_group("data")
    data.add_argument("--adapter", default="auto", help="dataset adapter for every source (default: detect)")
    data.add_argument("--instruction", default="", help="instruction for episodes that recorded none")
    data.add_argument("--labels", default="odometry", choices=LABELS,
                      help="odometry = what the robot did next; relabel = camera poses of the imagined frames "
                           "through the pose head (the paper's relabelling); dataset = the episodes' own actions")
    data.add_argument("--val-fraction", type=float, default=0.1, help="share of episodes held out for validation")
    data.add_argument("--check-frames", action=argparse.BooleanOptionalAction, default=True,
                      help="decode every frame once before any model loads, so that an unreadable frame is an "
                           "error naming its episode and frame now, not hours into generation (default: on; "
                           "--no-check-frames skips it on data checked before)")
    gen = parser.add_argument_group("future generation")
    gen.add_argument("--cache", type=Path, default=None,
                     help="future cache folder (default: $SPARSEVIDEONAV_CACHE or ~/.cache/sparsevideonav_ros, /futures)")
    gen.add_argument("--generate-only", action="store_true", help="fill the cache, do not train")
    gen.add_argument("--shard-size", type=int, default=64, help="samples per cache shard (lost at most on a kill)")
    gen.add_argument("--device", default="auto", help="video model device (auto: this process's accelerator device)")
    gen.add_argument("--dtype", default="auto", choices=("auto", "float32", "bfloat16"),
                     help="video model precision (auto: bfloat16 on CUDA, else float32)")
    gen.add_argument("--text-encoder-device", default="cpu",
                     help="umT5 device (cpu: as the policy node; each process loads its own copy, ~19 GB of RAM in "
                          "float32 for umT5-xxl: with many processes per node consider cuda)")
    gen.add_argument("--sampler", default="unipc")
    gen.add_argument("--sampler-steps", type=int, default=4)
    gen.add_argument("--seed", type=int, default=0, help="sampling noise seed of the futures (per sample: with its "
                                                         "episode and frame) and training seed; >= 0")
    pose = parser.add_argument_group("relabel (pose head)")
    pose.add_argument("--pose-estimator", default="opencv", help="opencv | da3")
    pose.add_argument("--da3-dir", default="", help="da3: local Depth Anything 3 folder")
    pose.add_argument("--camera-mount", default="osmo", help="osmo | d455 (mount presets of the recording camera)")
    pose.add_argument("--horizontal-fov-deg", type=float, default=90.0,
                      help="horizontal field of view of the recorded camera (deg), where an episode has no K")
    train = parser.add_argument_group("training (defaults: the paper's batch 256, lr 5e-5 cosine)")
    train.add_argument("--head-config", default="auto",
                       help="architecture: auto (the checkpoint's own head, else paper), paper, checkpoint, or "
                            "a config.json of a head")
    train.add_argument("--batch-size", type=int, default=defaults.batch_size, help="global batch")
    train.add_argument("--gradient-accumulation-steps", type=int, default=defaults.gradient_accumulation_steps)
    train.add_argument("--epochs", type=int, default=defaults.epochs)
    train.add_argument("--max-steps", type=int, default=0, help="> 0: stop after this many optimizer steps")
    train.add_argument("--lr", type=float, default=defaults.lr)
    train.add_argument("--weight-decay", type=float, default=defaults.weight_decay)
    train.add_argument("--warmup-steps", type=int, default=-1, help="-1: 5 %% of the steps")
    train.add_argument("--mixed-precision", default="auto", choices=("auto", "no", "bf16", "fp16"),
                       help="auto: bf16 on CUDA, none on CPU")
    train.add_argument("--checkpoint-every", type=int, default=defaults.checkpoint_every, help="steps")
    train.add_argument("--validate-every", type=int, default=0, help="> 0: validate every this many steps too")
    train.add_argument("--log-with", default="tensorboard", help="accelerate tracker (tensorboard, wandb, ...) or none")
    train.add_argument("--num-workers", type=int, default=0, help="DataLoader workers reading the cache")
    return parser.parse_args(argv)


def main(argv: Optional[list[str]] = None) -> int:
    try:
        return run(parse_args(argv), argv)
    except UsageError as error:
        print(f"train_action_head: error: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:  # Ctrl-C while generating (training saves a checkpoint itself and returns)
        print("train_action_head: interrupted; the futures cached so far are kept: run the same command again to "
              "continue", file=sys.stderr)
        return 130


def run(options: argparse.Namespace, argv: Optional[list[str]]) -> int:
    import torch
    from accelerate import Accelerator

    from sparsevideonav_ros.configs import ConfigError
    from sparsevideonav_ros.datasets import open_episodes
    from sparsevideonav_ros.datasets.episodes import EpisodeError, validate_all
    from sparsevideonav_ros.policies.sparsevideonav.checkpoints import CheckpointError
    from sparsevideonav_ros.training.future_cache import CacheError, FutureCache, episode_fingerprints
    from sparsevideonav_ros.training.labels import check_label_source
    from sparsevideonav_ros.training.samples import (frames_needing_futures, missing_futures, split_samples,
                                                     training_samples)
    from sparsevideonav_ros.training.trainer import TrainingError, TrainingOptions, train_action_head

    try:
        training = TrainingOptions(
            batch_size=options.batch_size, gradient_accumulation_steps=options.gradient_accumulation_steps,
            epochs=options.epochs, max_steps=options.max_steps, lr=options.lr, weight_decay=options.weight_decay,
            warmup_steps=options.warmup_steps, seed=options.seed, mixed_precision=options.mixed_precision,
            checkpoint_every=options.checkpoint_every, log_with=options.log_with, num_workers=options.num_workers,
            validate_every=options.validate_every)
    except ValueError as error:
        raise UsageError(str(error)) from None
    if options.seed < 0:
        raise UsageError(f"--seed {options.seed}: cached futures are reproducible (each sample's noise is seeded by "
                         f"the seed, its episode and frame), the seed must be >= 0")
    if options.shard_size < 1:
        raise UsageError(f"--shard-size must be >= 1, got {options.shard_size}")
    if not 0.0 <= options.val_fraction < 1.0:
        raise UsageError(f"--val-fraction must be in [0, 1), got {options.val_fraction}")
    if options.resume and options.overwrite:
        raise UsageError("--resume continues the run in --out, --overwrite empties it: pick one")
    if options.out is None and not options.generate_only:
        raise UsageError("--out is required (the folder for the trained head), except with --generate-only")
    out = (options.out or Path("train_action_head-out")).expanduser()
    if not options.generate_only:
        _check_out(out, options)
    if options.log_with == "tensorboard":
        _require_tensorboard()

    # 1. every episode checked before any model loads
    try:
        episodes = open_episodes(options.sources, adapter=options.adapter, instruction=options.instruction)
        if not episodes:
            raise EpisodeError(f"no episodes in {', '.join(map(str, options.sources))}")
        validate_all(episodes, needs="frames" if options.labels == "relabel" else "motions")
        for episode in episodes:
            check_label_source(episode, options.labels)
        if options.check_frames:
            _check_frames(episodes)
        fingerprints = episode_fingerprints(episodes)  # what the cache knows each episode by (3 frames read)
    except (EpisodeError, ValueError) as error:
        raise UsageError(str(error)) from None

    cuda = torch.cuda.is_available()
    mixed = training.mixed_precision if training.mixed_precision != "auto" else ("bf16" if cuda else "no")
    accelerator = Accelerator(cpu=not cuda, mixed_precision=mixed,
                              log_with=None if options.log_with == "none" else options.log_with,
                              project_dir=str(out / "logs"))
    say = print if accelerator.is_main_process else (lambda message: None)
    per_update = accelerator.num_processes * training.gradient_accumulation_steps
    if not options.generate_only and training.batch_size % per_update:
        raise UsageError(f"--batch-size {training.batch_size} must be a multiple of processes x accumulation steps "
                         f"({accelerator.num_processes} x {training.gradient_accumulation_steps})")

    config = _video_config(options, accelerator)
    try:
        spec, backbone = _cache_spec(config, options.labels)
    except (CheckpointError, ConfigError, OSError) as error:
        raise UsageError(str(error)) from None
    cache = FutureCache(options.cache.expanduser() if options.cache else _default_cache(), spec)
    total_frames = sum(len(e) for e in episodes)
    say(f"{len(episodes)} episodes, {total_frames} frames ({total_frames / 4 / 3600:.2f} h at 4 FPS); "
        f"future cache {cache.folder}")

    # 2. futures: generated where missing, each process its own episodes
    needed = {e.episode_id: frames_needing_futures(e, options.labels, config.min_frames, config.plan_every_frames)
              for e in episodes}
    try:
        index = cache.index()
    except CacheError as error:
        raise UsageError(str(error)) from None
    missing = sum(map(len, missing_futures(index, episodes, needed, fingerprints).values()))
    if missing:
        say(f"{missing} of {sum(map(len, needed.values()))} futures to generate on {accelerator.num_processes} "
            f"process(es)")
        _generate(config, episodes, cache, needed, backbone, options, accelerator, fingerprints)
    accelerator.wait_for_everyone()
    backbone = cache.backbone() or backbone
    if options.generate_only:
        say(f"futures cached in {cache.folder}")
        return 0

    # 3. samples, split by episode, training
    by_episode, summary = training_samples(cache, episodes, options.labels, config.min_frames,
                                           config.plan_every_frames, fingerprints=fingerprints)
    if summary.refused:
        say(f"{len(summary.refused)} samples left out: the pose head refused their imagined frames, e.g. "
            f"{summary.refused[0][2]}")
    train_ids, val_ids, train, val = split_samples(by_episode, options.val_fraction, options.seed)
    if not train:
        raise UsageError(f"no training samples ({summary.to_dict()}): episodes need >= 20 frames at 4 FPS "
                         f"(12 before the first plan + 8 labelled motions)")
    head_config = _head_config(options.head_config, config, backbone)
    if (head_config.language_dim, head_config.latent_channels) != (backbone["text_dim"], backbone["latent_channels"]):
        raise UsageError(f"--head-config {options.head_config}: a head for {head_config.language_dim}-wide text and "
                         f"{head_config.latent_channels} latent channels, the backbone gives {backbone['text_dim']} "
                         f"and {backbone['latent_channels']}")
    report_extra = {
        "command": " ".join(shlex.quote(a) for a in [sys.executable, "-m", "sparsevideonav_ros.tools.train_action_head",
                                                      *(sys.argv[1:] if argv is None else argv)]),
        "sources": [str(s) for s in options.sources], "labels": options.labels, "checkpoint": options.checkpoint,
        "cache": str(cache.folder), "cache_spec": spec,
        "data": {"episodes": len(episodes), "train_episodes": len(train_ids), "validation_episodes": len(val_ids),
                 "frames": total_frames, "hours_at_4fps": round(total_frames / 4 / 3600, 4), **summary.to_dict()},
        "head_config": head_config.to_dict()}
    # --overwrite: the old run goes aside only now (futures generated, data checked) and away once this one finished
    replaced = _aside(out)
    if accelerator.is_main_process and options.overwrite and _has_entries(out):
        shutil.rmtree(replaced, ignore_errors=True)  # a leftover of an earlier --overwrite (checked: a run)
        out.rename(replaced)
    accelerator.wait_for_everyone()
    try:
        result = train_action_head(train, val, head_config, out, training, resume=options.resume, backbone=backbone,
                                   report_extra=report_extra, accelerator=accelerator, log=say)
    except (FileNotFoundError, TrainingError) as error:  # --resume without a checkpoint / of another run, ...
        if accelerator.is_main_process and replaced.exists() and not _has_entries(out):
            shutil.rmtree(out, ignore_errors=True)  # nothing of the new run: the old one goes back
            replaced.rename(out)
        raise UsageError(str(error)) from None
    if result.status == "interrupted":
        if replaced.exists():
            say(f"the run --overwrite replaces is kept in {replaced} (delete it once this one is done)")
        return 130
    if accelerator.is_main_process and replaced.exists():
        shutil.rmtree(replaced, ignore_errors=True)
    say(f"action head saved to {out.resolve()} (set sparsevideonav.action_head_dir to it)")
    return 0


def _check_frames(episodes) -> None:
    """Every frame decoded once (a tqdm bar when stderr is a terminal); EpisodeError naming the episode and
    frame of a bad one."""
    from tqdm.auto import tqdm
    with tqdm(total=sum(len(e) for e in episodes), desc="checking frames", unit="frame", file=sys.stderr,
              dynamic_ncols=True, leave=False, disable=None) as bar:
        for episode in episodes:
            episode.check_frames(progress=bar.update)


def _check_out(out: Path, options: argparse.Namespace) -> None:
    from sparsevideonav_ros.training.trainer import latest_checkpoint
    if options.resume:
        if latest_checkpoint(out) is None:
            raise UsageError(f"--resume: no checkpoint in {out / 'checkpoints'}")
        return
    if out.exists() and not out.is_dir():
        raise UsageError(f"--out {out} is a file")
    if _has_entries(out) and not options.overwrite:
        raise UsageError(f"--out {out} is not empty: pass --overwrite to replace it, or --resume to continue its run")
    if _has_entries(out) and not _looks_like_run(out):
        raise UsageError(f"--out {out} holds no action head or training run (no {', '.join(RUN_MARKERS)}): "
                         f"--overwrite replaces only those; pick another --out")
    aside = _aside(out)
    if aside.exists() and not _looks_like_run(aside):
        raise UsageError(f"{aside} exists and is not a run replaced by --overwrite: move it away")


# what a folder this tool wrote holds (a trained head, a run's report/checkpoints): --overwrite replaces only those
RUN_MARKERS = ("training_report.json", "checkpoints/", "backbone.json", "diffusion_pytorch_model.safetensors")


def _has_entries(folder: Path) -> bool:
    return folder.is_dir() and any(folder.iterdir())


def _looks_like_run(folder: Path) -> bool:
    return any((folder / name.rstrip("/")).is_dir() if name.endswith("/") else (folder / name).is_file()
               for name in RUN_MARKERS)


def _aside(out: Path) -> Path:
    """Where --overwrite keeps the old run while the new one trains."""
    return out.with_name(out.name + ".overwritten")


def _require_tensorboard() -> None:
    import importlib.util
    if not (importlib.util.find_spec("tensorboard") or importlib.util.find_spec("tensorboardX")):
        raise UsageError("--log-with tensorboard needs tensorboard or tensorboardX (pip install tensorboardX), "
                         "or pass --log-with none")


def _default_cache() -> Path:
    from sparsevideonav_ros.policies.model_cache import cache_root
    return cache_root() / "futures"


def _video_config(options: argparse.Namespace, accelerator):
    import torch

    from sparsevideonav_ros.configs import ConfigError
    from sparsevideonav_ros.policies.sparsevideonav.configuration_sparsevideonav import SparseVideoNavConfig
    device = str(accelerator.device) if options.device == "auto" else options.device
    dtype = options.dtype if options.dtype != "auto" else ("bfloat16" if torch.device(device).type == "cuda"
                                                           else "float32")
    try:
        # action_head pose: generation needs the backbone only (and the pose head when relabelling)
        return SparseVideoNavConfig(checkpoint=options.checkpoint, wan_diffusers_dir=options.wan_diffusers_dir,
                                    device=device, dtype=dtype, seed=options.seed, sampler=options.sampler,
                                    sampler_steps=options.sampler_steps, action_head="pose",
                                    text_encoder_device=options.text_encoder_device,
                                    pose_estimator=options.pose_estimator, da3_dir=options.da3_dir,
                                    camera_mount=options.camera_mount,
                                    horizontal_fov_deg=options.horizontal_fov_deg)
    except ConfigError as error:
        raise UsageError(str(error)) from None


def _checkpoint_folders(config) -> list[Path]:
    """The weight files the futures depend on (the checkpoint's own action head excluded: not used here); the
    same list the head loader digests to check a head against its backbone (models.backbone_weight_parts)."""
    from sparsevideonav_ros.policies.sparsevideonav.models import backbone_weight_parts
    return backbone_weight_parts(config)


def _cache_spec(config, labels: str) -> tuple[dict, dict]:
    """(spec the cache key digests, backbone facts known before loading).

    Besides the weights, sampler, seed and model dtype: where umT5 encodes and in which precision (float32
    here; the instruction embeddings differ by device and dtype in their last bits), and for relabelling the
    pose head's settings and weights. Each episode's camera intrinsics are in its fingerprint (per sample)."""
    import torch

    from sparsevideonav_ros.configs import ConfigError
    from sparsevideonav_ros.training.future_cache import CACHE_VERSION, weights_digest
    folders = _checkpoint_folders(config)
    spec = {"version": CACHE_VERSION, "weights": weights_digest(folders), "dtype": config.dtype,
            "sampler": config.sampler, "sampler_steps": config.sampler_steps, "seed": config.seed,
            "min_frames": config.min_frames, "plan_every_frames": config.plan_every_frames,
            "text_encoder": {"device": torch.device(config.text_encoder_device).type, "dtype": "float32",
                             "offload": bool(config.text_encoder_offload)},
            "relabel": None}
    if labels == "relabel":
        da3 = ""
        if config.pose_estimator == "da3":
            folder = Path(config.da3_dir).expanduser() if config.da3_dir else None
            if folder is None or not folder.exists():
                raise ConfigError(f"--pose-estimator da3 needs --da3-dir, a local Depth Anything 3 folder "
                                  f"({'not set' if folder is None else f'{folder} does not exist'})")
            da3 = weights_digest([folder])
        spec["relabel"] = {"pose_estimator": config.pose_estimator, "camera_mount": config.camera_mount,
                           "horizontal_fov_deg": config.horizontal_fov_deg,
                           "pose_future_instants": config.pose_future_instants, "da3": da3}
    return spec, {"checkpoint": config.checkpoint, "weights": spec["weights"]}


def _generate(config, episodes, cache, needed, backbone: dict, options, accelerator, fingerprints) -> None:
    """Expected failures (a model that does not load or fit, an episode whose frame cannot be read while
    imagining, a cache shard of other settings) become UsageError: one line, exit 2."""
    from sparsevideonav_ros.configs import ConfigError
    from sparsevideonav_ros.datasets.episodes import EpisodeError
    from sparsevideonav_ros.policies.base import PolicyError
    from sparsevideonav_ros.policies.sparsevideonav.checkpoints import CheckpointError
    from sparsevideonav_ros.training.future_cache import CacheError
    try:
        _generate_futures(config, episodes, cache, needed, backbone, options, accelerator, fingerprints)
    except (CheckpointError, PolicyError, EpisodeError, CacheError, ConfigError, ValueError) as error:
        raise UsageError(str(error)) from None


def _generate_futures(config, episodes, cache, needed, backbone: dict, options, accelerator, fingerprints) -> None:
    import torch

    from sparsevideonav_ros.policies.sparsevideonav.models import load_models
    from sparsevideonav_ros.policies.sparsevideonav.policy import SparseVideoNavPolicy
    from sparsevideonav_ros.policies.sparsevideonav.sampling import SPARSE_FUTURE_OFFSETS
    from sparsevideonav_ros.training.generation import generate_futures
    models = load_models(config)
    grid = models.image_size // 8
    backbone.update({"text_dim": int(models.transformer.config.text_dim),
                     "latent_channels": int(models.transformer.config.out_channels),
                     "num_future_latents": len(SPARSE_FUTURE_OFFSETS), "latent_grid": [grid, grid],
                     "image_size": models.image_size})
    cache.prepare(backbone)
    policy = SparseVideoNavPolicy(config, models=models)
    summary = generate_futures(policy, episodes, cache, lambda e: needed[e.episode_id],
                               rank=accelerator.process_index, world=accelerator.num_processes,
                               shard_size=options.shard_size, pose_head=policy.pose_head if cache.relabel else None,
                               progress=accelerator.is_local_main_process, fingerprints=fingerprints)
    if summary.refused:
        print(f"rank {accelerator.process_index}: the pose head refused {len(summary.refused)} imagined futures "
              f"(left out of training), e.g. {summary.refused[0][2]}")
    del policy, models
    if torch.cuda.is_available():
        torch.cuda.empty_cache()


def _head_config(choice: str, config, backbone: dict):
    """The architecture to train: the checkpoint's own head's, the paper's, or a config.json."""
    from sparsevideonav_ros.policies.sparsevideonav.action_head import ActionHeadConfig
    from sparsevideonav_ros.policies.sparsevideonav.configuration_sparsevideonav import TINY
    from sparsevideonav_ros.policies.sparsevideonav.models import tiny_checkpoint_dir
    names = {f.name for f in dataclasses.fields(ActionHeadConfig)}
    if choice not in HEAD_CONFIGS:
        source = Path(choice).expanduser()
    else:
        folder = tiny_checkpoint_dir() if config.checkpoint == TINY else Path(config.checkpoint).expanduser()
        source = folder / "action_head" / "config.json"
        if choice == "checkpoint" and not source.is_file():
            raise UsageError(f"--head-config checkpoint: {source} does not exist (the authors' release has no head)")
        if choice == "paper" or not source.is_file():
            return ActionHeadConfig(language_dim=int(backbone["text_dim"]),
                                    latent_channels=int(backbone["latent_channels"]))
    try:
        values = json.loads(source.read_text())
        return ActionHeadConfig(**{k: v for k, v in values.items() if k in names})
    except (OSError, ValueError, TypeError) as error:
        raise UsageError(f"--head-config {source}: {error}") from None


if __name__ == "__main__":
    sys.exit(main())
