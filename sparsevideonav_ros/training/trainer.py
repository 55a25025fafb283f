"""Training the action head on cached futures with Hugging Face accelerate.

One code path for one CPU, one GPU, ``accelerate launch --num_processes N`` and several nodes: the
accelerate ``Accelerator`` owns the process group (gloo on CPUs, NCCL on GPUs), DDP gradient averaging,
bf16 autocast (``mixed_precision``), the trackers and ``save_state`` / ``load_state``.

Determinism (what makes ``--resume`` bit-for-bit and N processes equal to one):
  * the data order is a permutation drawn from ``seed + epoch`` (the same on every rank); global step s of
    an epoch takes permutation[s * B : (s + 1) * B] (B = global batch; an incomplete last batch is
    dropped), and micro-batch m of rank r its slice [(m * world + r) * b : ... + b] (b = B / world / accum);
  * the diffusion noise and timesteps of global step s are drawn for the whole global batch from a
    generator seeded by (seed, s) and sliced the same way, so a sample's noise does not depend on the rank;
  * gradients: each micro-batch loss is a mean over b samples, divided by accum; DDP averages over ranks:
    the update is the mean over the global batch whatever world and accum are;
  * a checkpoint (``accelerator.save_state``) holds the weights, AdamW moments, the scheduler, the step,
    the per-step losses and every process's RNG states (dropout draws from the torch RNG).
  Differences left between N processes and one: float summation order in the gradient all-reduce, and
  dropout masks (each rank draws its own); a head without dropout matches to float round-off.

Checkpoints: ``<out>/checkpoints/step-<N>`` every ``checkpoint_every`` steps and when SIGINT/SIGTERM
arrives (the stop is agreed across ranks at the next step boundary, then saved, then the run returns
"interrupted"); the newest ``keep_checkpoints`` are kept. Validation: by episode (split_by_episode),
action errors in metres and radians next to predicting the training mean.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import shutil
import signal
import sys
import time
from contextlib import nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Optional, Sequence

import numpy as np
import torch

from sparsevideonav_ros.core import se2
from sparsevideonav_ros.policies.sparsevideonav.action_head import ActionHeadConfig, SparseVideoNavActionHead
from sparsevideonav_ros.policies.sparsevideonav.models import HEAD_BACKBONE_FILE as BACKBONE_FILE
from sparsevideonav_ros.training.future_cache import Entry, ShardReader

CHECKPOINTS = "checkpoints"
REPORT = "training_report.json"


class TrainingError(ValueError):
    """Expected refusals of a run (no samples, a batch that does not split, --resume of another run): the
    command line reports them in one line (exit 2)."""


@dataclass
class TrainingOptions:
    """Hyper-parameters. Defaults: the paper's (batch 256, lr 5e-5, cosine), AdamW as usual for a DiT."""

    batch_size: int = 256  # global: over processes and gradient accumulation steps
    gradient_accumulation_steps: int = 1
    epochs: int = 20
    max_steps: int = 0  # > 0: stop after this many optimizer steps (the schedule spans them)
    lr: float = 5e-5
    weight_decay: float = 0.01
    warmup_steps: int = -1  # -1: 5 % of the steps
    max_grad_norm: float = 1.0
    seed: int = 0
    mixed_precision: str = "auto"  # auto (bf16 on CUDA, none on CPU) | no | bf16 | fp16
    checkpoint_every: int = 500
    keep_checkpoints: int = 2
    log_every: int = 10
    log_with: str = "tensorboard"  # an accelerate tracker name, or "none"
    num_workers: int = 0  # DataLoader workers reading shards
    validation_steps: int = 10  # DDIM steps when validating (the policy's action_steps default)
    validate_every: int = 0  # > 0: also validate (and log it) every this many steps; always at the end

    def __post_init__(self) -> None:
        for name in ("batch_size", "gradient_accumulation_steps", "epochs", "checkpoint_every", "keep_checkpoints",
                     "log_every", "validation_steps"):
            if int(getattr(self, name)) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.lr <= 0:
            raise ValueError(f"lr must be > 0, got {self.lr}")
        if self.mixed_precision not in ("auto", "no", "bf16", "fp16"):
            raise ValueError(f"mixed_precision must be auto, no, bf16 or fp16, got {self.mixed_precision!r}")


@dataclass
class TrainingSample:
    """One sample: where its future lies in the cache, and its label (8, 3) dx m, dy m, dtheta rad."""

    entry: Entry
    actions: np.ndarray


@dataclass
class TrainingResult:
    status: str  # "finished" | "interrupted"
    step: int
    checkpoint: Optional[Path]
    report: dict = field(default_factory=dict)


class FutureDataset(torch.utils.data.Dataset):
    """Cached samples as tensors: future_latents (16, 8, h, w) float32, text_embeds (L, D) zero-padded to
    ``text_tokens``, text_mask (L,) bool, actions (8, 3) float32."""

    def __init__(self, samples: Sequence[TrainingSample], text_tokens: int) -> None:
        self.samples, self.text_tokens = list(samples), int(text_tokens)
        self.reader = ShardReader()

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, index: int) -> dict:
        sample = self.samples[index]
        text = self.reader.text(sample.entry).float()
        padded = torch.zeros(self.text_tokens, text.shape[1])
        padded[: len(text)] = text
        mask = torch.zeros(self.text_tokens, dtype=torch.bool)
        mask[: len(text)] = True
        return {"future_latents": self.reader.row(sample.entry, "future_latents").float(),
                "text_embeds": padded, "text_mask": mask,
                "actions": torch.as_tensor(sample.actions, dtype=torch.float32)}


def collate(items: list[dict]) -> dict:
    return {name: torch.stack([item[name] for item in items]) for name in items[0]}


class DenoisingLoss(torch.nn.Module):
    """The head's training loss as a module forward, so DDP (which hooks forward) averages its gradients."""

    def __init__(self, head: SparseVideoNavActionHead) -> None:
        super().__init__()
        self.head = head

    def forward(self, future_latents, text_embeds, text_mask, actions, noise, timesteps) -> torch.Tensor:
        return self.head.training_loss(actions, future_latents, text_embeds, text_mask, noise=noise,
                                       timesteps=timesteps)


class Progress:
    """Trainer state saved with every checkpoint (accelerate's register_for_checkpointing)."""

    def __init__(self, fingerprint: str) -> None:
        self.fingerprint = fingerprint  # the data and options a checkpoint belongs to
        self.step = 0
        self.losses: list[float] = []  # mean loss of every optimizer step

    def state_dict(self) -> dict:
        return {"fingerprint": self.fingerprint, "step": self.step, "losses": list(self.losses)}

    def load_state_dict(self, state: dict) -> None:
        if state["fingerprint"] != self.fingerprint:
            raise TrainingError("--resume: the checkpoint was written for other data or options (batch size, seed, "
                                "lr, samples, head architecture): --resume continues the same run only; start a "
                                "new one in another --out (or --overwrite)")
        self.step, self.losses = int(state["step"]), list(state["losses"])


class StopRequest:
    """SIGINT/SIGTERM set a flag the training loop reads at the next step boundary (then saves and returns)."""

    def __init__(self) -> None:
        self.signal = 0
        self._previous: dict = {}

    def __enter__(self) -> "StopRequest":
        for sig in (signal.SIGINT, signal.SIGTERM):
            try:
                self._previous[sig] = signal.signal(sig, self._handle)
            except ValueError:  # not the main thread: no handler possible
                pass
        return self

    def _handle(self, signum, frame) -> None:
        self.signal = signum

    def __exit__(self, *exc) -> None:
        for sig, previous in self._previous.items():
            signal.signal(sig, previous)


# -- data ------------------------------------------------------------------------------------------

def split_by_episode(episode_ids: Sequence[str], val_fraction: float, seed: int = 0) -> tuple[set, set]:
    """(train ids, validation ids): a seeded hash order of the ids, the first ceil(fraction * n) validate
    (at least one when there are two or more episodes and fraction > 0). Adding episodes keeps old ones
    mostly where they were."""
    ids = sorted(set(episode_ids))
    if val_fraction <= 0 or len(ids) < 2:
        return set(ids), set()
    order = sorted(ids, key=lambda i: hashlib.sha1(f"{seed}\0{i}".encode()).hexdigest())
    count = min(len(ids) - 1, max(1, math.ceil(val_fraction * len(ids))))
    return set(order[count:]), set(order[:count])


def action_statistics(actions: np.ndarray) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """Per-dimension mean and std of (N, 8, 3) labels; a constant dimension gets std 1e-3, not 0."""
    flat = np.asarray(actions, dtype=float).reshape(-1, 3)
    return tuple(flat.mean(0).tolist()), tuple(np.maximum(flat.std(0), 1e-3).tolist())


def action_errors(predicted: np.ndarray, true: np.ndarray) -> dict:
    """predicted, true (N, 8, 3) dx m, dy m, dtheta rad -> mean per-step translation error (m), mean per-step
    heading error (rad), and the error of the 2 s endpoint of the integrated path (m)."""
    step_translation = np.linalg.norm(predicted[..., :2] - true[..., :2], axis=-1)
    step_rotation = np.abs(np.angle(np.exp(1j * (predicted[..., 2] - true[..., 2]))))  # wrapped to +-pi
    ends = [np.linalg.norm(se2.poses_from_deltas(p)[-1, :2] - se2.poses_from_deltas(t)[-1, :2])
            for p, t in zip(predicted, true)]
    return {"translation_m": float(step_translation.mean()), "rotation_rad": float(step_rotation.mean()),
            "endpoint_m": float(np.mean(ends)), "samples": int(len(true))}


def _fingerprint(samples: Sequence[TrainingSample], options: TrainingOptions, head_config: ActionHeadConfig) -> str:
    digest = hashlib.sha256()
    for sample in samples:
        digest.update(f"{sample.entry.episode_id}\0{sample.entry.frame}\0{sample.entry.fingerprint}\0".encode())
        digest.update(np.ascontiguousarray(sample.actions, dtype=np.float64).tobytes())
    resumable = {k: v for k, v in dataclasses.asdict(options).items()
                 if k not in ("checkpoint_every", "keep_checkpoints", "log_every", "log_with", "num_workers",
                              "validate_every")}  # how often to report, not what is trained
    digest.update(json.dumps([resumable, head_config.to_dict()], sort_keys=True).encode())
    return digest.hexdigest()[:16]


def latest_checkpoint(out: Path) -> Optional[Path]:
    folder = Path(out) / CHECKPOINTS
    found = sorted(p for p in folder.glob("step-*") if p.is_dir() and not p.name.endswith(".tmp")) \
        if folder.is_dir() else []
    return found[-1] if found else None


# -- the loop --------------------------------------------------------------------------------------

def ignore_sigint(_worker_id: int) -> None:
    """DataLoader worker_init_fn: Ctrl-C reaches the whole process group; the workers leave it to the main
    process, which saves a checkpoint (StopRequest), instead of dying with "worker exited unexpectedly"."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)


def train_action_head(train_samples: Sequence[TrainingSample], val_samples: Sequence[TrainingSample],
                      head_config: ActionHeadConfig, out: Path, options: TrainingOptions, resume: bool = False,
                      backbone: Optional[dict] = None, report_extra: Optional[dict] = None,
                      accelerator=None, log: Callable[[str], None] = print,
                      after_step: Optional[Callable[[int], None]] = None) -> TrainingResult:
    """Train a fresh head of ``head_config``'s architecture (normalised by the training labels) and save it
    to ``out`` (save_pretrained + backbone.json + training_report.json), checkpoints under out/checkpoints.

    backbone: what the futures came from (latent grid, text width, cache key; written to backbone.json).
    accelerator: an accelerate.Accelerator (one is made from ``options`` when None; there is one per process).
    after_step: (step) -> None after every optimizer step (tests).
    """
    from accelerate import Accelerator
    from accelerate.utils import set_seed
    from diffusers.optimization import get_cosine_schedule_with_warmup

    out = Path(out)
    if not train_samples:
        raise TrainingError("no training samples: episodes need >= 20 frames at 4 FPS (12 to plan + 8 labels)")
    if accelerator is None:
        mixed = options.mixed_precision
        if mixed == "auto":
            mixed = "bf16" if torch.cuda.is_available() else "no"
        # cpu=True without CUDA: several processes (accelerate launch / torchrun) then form a gloo group
        accelerator = Accelerator(cpu=not torch.cuda.is_available(), mixed_precision=mixed,
                                  log_with=None if options.log_with == "none" else options.log_with,
                                  project_dir=str(out / "logs"))
    world, rank = accelerator.num_processes, accelerator.process_index
    main = accelerator.is_main_process
    say = log if main else (lambda message: None)

    per_update = world * options.gradient_accumulation_steps
    batch = options.batch_size
    if batch > len(train_samples):  # a small dataset: the largest global batch it fills
        batch = max(per_update, len(train_samples) // per_update * per_update)
        say(f"batch size {options.batch_size} > {len(train_samples)} training samples: using {batch}")
    if batch % per_update or batch > len(train_samples):
        raise TrainingError(f"global batch {batch} must be a multiple of processes x accumulation steps "
                         f"({world} x {options.gradient_accumulation_steps}) and at most the {len(train_samples)} "
                         f"training samples")
    micro = batch // per_update
    steps_per_epoch = len(train_samples) // batch
    total_steps = options.epochs * steps_per_epoch
    if options.max_steps > 0:
        total_steps = min(total_steps, options.max_steps)
    warmup = options.warmup_steps if options.warmup_steps >= 0 else int(0.05 * total_steps)

    train_actions = np.stack([s.actions for s in train_samples])
    mean, std = action_statistics(train_actions)
    head_config = dataclasses.replace(head_config, action_mean=mean, action_std=std)
    text_tokens = max(s.entry.tokens for s in [*train_samples, *val_samples])
    set_seed(options.seed)  # the same initial weights on every rank
    head = SparseVideoNavActionHead.from_head_config(head_config)
    loss_module = DenoisingLoss(head)
    optimizer = torch.optim.AdamW(head.parameters(), lr=options.lr, weight_decay=options.weight_decay)
    # not prepared: accelerate would step a prepared scheduler once per process; it steps once per update here
    scheduler = get_cosine_schedule_with_warmup(optimizer, warmup, max(total_steps, 1))
    progress = Progress(_fingerprint(train_samples, dataclasses.replace(options, batch_size=batch), head_config))
    loss_module, optimizer = accelerator.prepare(loss_module, optimizer)
    accelerator.register_for_checkpointing(scheduler, progress)

    start_time = time.time()
    if resume:
        checkpoint = latest_checkpoint(out)
        if checkpoint is None:
            raise FileNotFoundError(f"--resume: no checkpoint under {out / CHECKPOINTS}")
        accelerator.load_state(str(checkpoint))
        say(f"resumed from {checkpoint} at step {progress.step} of {total_steps}")
    if options.log_with != "none":
        accelerator.init_trackers("action_head", config={
            **{k: v for k, v in dataclasses.asdict(options).items() if isinstance(v, (int, float, str, bool))},
            "global_batch": batch, "processes": world, "train_samples": len(train_samples)})
    say(f"training: {len(train_samples)} samples ({len(val_samples)} validation), global batch {batch} = "
        f"{world} process(es) x {options.gradient_accumulation_steps} accumulation x {micro}, {steps_per_epoch} "
        f"steps/epoch, {total_steps} steps, warm-up {warmup}, lr {options.lr:g} cosine, mixed precision "
        f"{accelerator.mixed_precision}, {sum(p.numel() for p in head.parameters()) / 1e6:.2f}M parameters, "
        f"{accelerator.distributed_type.value} (backend {accelerator.state.backend or 'none'})")

    dataset = FutureDataset(train_samples, text_tokens)
    device = accelerator.device
    checkpoint_path: Optional[Path] = None
    status = "finished"
    from tqdm import tqdm

    # The main process shows steps, loss and the ETA; the log lines below stay for logs and trackers.
    bar = tqdm(total=total_steps, initial=progress.step, desc="training", unit="step", disable=not main,
               mininterval=1.0 if sys.stderr.isatty() else 10.0)
    with StopRequest() as stop, bar:
        while progress.step < total_steps:
            epoch, first = divmod(progress.step, steps_per_epoch)
            order = torch.randperm(len(train_samples), generator=torch.Generator().manual_seed(options.seed + epoch))
            steps_left = min(steps_per_epoch, first + total_steps - progress.step)
            batches = [order[s * batch:(s + 1) * batch] for s in range(first, steps_left)]
            mine = [global_batch[(m * world + rank) * micro:(m * world + rank + 1) * micro].tolist()
                    for global_batch in batches for m in range(options.gradient_accumulation_steps)]
            # its own generator (worker seeds): an iterator drawn from the global RNG would shift the dropout
            # draws of a run resumed mid-epoch against an uninterrupted one
            loader = torch.utils.data.DataLoader(dataset, batch_sampler=mine, collate_fn=collate,
                                                 num_workers=options.num_workers, worker_init_fn=ignore_sigint,
                                                 generator=torch.Generator().manual_seed(options.seed + epoch))
            micro_batches = iter(loader)
            for _ in batches:
                noise_generator = torch.Generator().manual_seed(options.seed * 1_000_003 + progress.step)
                noise = torch.randn(batch, head_config.num_actions, head_config.action_dim, generator=noise_generator)
                timesteps = torch.randint(0, head_config.num_train_timesteps, (batch,), generator=noise_generator)
                step_loss = torch.zeros((), device=device)
                for m in range(options.gradient_accumulation_steps):
                    part = slice((m * world + rank) * micro, (m * world + rank + 1) * micro)
                    inputs = {k: v.to(device) for k, v in next(micro_batches).items()}
                    last = m == options.gradient_accumulation_steps - 1
                    with nullcontext() if last else accelerator.no_sync(loss_module):
                        loss = loss_module(**inputs, noise=noise[part].to(device), timesteps=timesteps[part].to(device))
                        accelerator.backward(loss / options.gradient_accumulation_steps)
                    step_loss += loss.detach() / options.gradient_accumulation_steps
                if options.max_grad_norm > 0:
                    accelerator.clip_grad_norm_(loss_module.parameters(), options.max_grad_norm)
                optimizer.step()
                scheduler.step()
                optimizer.zero_grad(set_to_none=True)
                progress.step += 1
                progress.losses.append(float(accelerator.reduce(step_loss, reduction="mean").item()))
                bar.update(1)
                bar.set_postfix(loss=f"{progress.losses[-1]:.4f}", refresh=False)
                if progress.step % options.log_every == 0 or progress.step == total_steps:
                    if options.log_with != "none":
                        accelerator.log({"train/loss": progress.losses[-1], "train/lr": scheduler.get_last_lr()[0],
                                         "train/epoch": epoch}, step=progress.step)
                    say(f"step {progress.step}/{total_steps} (epoch {epoch + 1}): loss {progress.losses[-1]:.4f}, "
                        f"lr {scheduler.get_last_lr()[0]:.2e}")
                if options.validate_every and progress.step % options.validate_every == 0 and val_samples:
                    # eval mode and its own seeded generator: the training RNG stream is untouched
                    errors = validate(accelerator.unwrap_model(loss_module).head, val_samples, train_actions,
                                      text_tokens, options, accelerator)
                    if options.log_with != "none":
                        accelerator.log(_validation_scalars(errors), step=progress.step)
                    say(f"step {progress.step}: " + _validation_line(errors))
                if after_step is not None:
                    after_step(progress.step)
                # every rank stops at the same step: the flag is reduced (max) across processes
                stopping = accelerator.reduce(torch.tensor(float(stop.signal), device=device), reduction="max").item()
                if stopping or progress.step % options.checkpoint_every == 0:
                    checkpoint_path = save_checkpoint(accelerator, out, progress.step, options.keep_checkpoints)
                if stopping:
                    status = "interrupted"
                    say(f"stopped by signal {int(stopping)} at step {progress.step}: checkpoint {checkpoint_path}; "
                        f"continue with --resume")
                    break
            if status == "interrupted":
                break
    if status == "interrupted":
        accelerator.end_training()  # last: it also ends the process group
        return TrainingResult(status, progress.step, checkpoint_path)

    head = accelerator.unwrap_model(loss_module).head
    validation = validate(head, val_samples, train_actions, text_tokens, options, accelerator)
    if options.log_with != "none" and validation:
        accelerator.log(_validation_scalars(validation), step=progress.step)
    report = {}
    if main:
        head.save_pretrained(out)
        if backbone is not None:
            (out / BACKBONE_FILE).write_text(json.dumps(backbone, indent=2))
        steps_per_epoch_losses = [float(np.mean(progress.losses[e * steps_per_epoch:(e + 1) * steps_per_epoch]))
                                  for e in range(math.ceil(len(progress.losses) / steps_per_epoch))]
        report = {**(report_extra or {}),
                  "options": dataclasses.asdict(options), "global_batch": batch, "processes": world,
                  "distributed": accelerator.distributed_type.value, "backend": accelerator.state.backend,
                  "mixed_precision": accelerator.mixed_precision, "steps": progress.step,
                  "trainable_parameters": sum(p.numel() for p in head.parameters() if p.requires_grad),
                  "train_samples": len(train_samples), "validation_samples": len(val_samples),
                  "action_mean": list(mean), "action_std": list(std),
                  "losses_per_epoch": steps_per_epoch_losses, "losses_per_step": progress.losses,
                  "validation": validation, "wall_s_this_run": round(time.time() - start_time, 2)}
        (out / REPORT).write_text(json.dumps(report, indent=2))
        say(_validation_line(validation))
    accelerator.wait_for_everyone()
    accelerator.end_training()  # last: it also ends the process group
    return TrainingResult(status, progress.step, latest_checkpoint(out), report)


def save_checkpoint(accelerator, out: Path, step: int, keep: int) -> Path:
    """save_state into step-<N>.tmp, renamed when every rank has written (a kill never leaves a torn one)."""
    folder = Path(out) / CHECKPOINTS
    final = folder / f"step-{step:08d}"
    temporary = final.with_name(final.name + ".tmp")
    if accelerator.is_main_process:
        shutil.rmtree(temporary, ignore_errors=True)
        folder.mkdir(parents=True, exist_ok=True)
    accelerator.wait_for_everyone()
    accelerator.save_state(str(temporary))
    accelerator.wait_for_everyone()
    if accelerator.is_main_process:
        shutil.rmtree(final, ignore_errors=True)
        temporary.rename(final)
        for old in sorted(p for p in folder.glob("step-*") if not p.name.endswith(".tmp"))[:-keep]:
            shutil.rmtree(old, ignore_errors=True)
    accelerator.wait_for_everyone()
    return final


@torch.no_grad()
def validate(head: SparseVideoNavActionHead, samples: Sequence[TrainingSample], train_actions: np.ndarray,
             text_tokens: int, options: TrainingOptions, accelerator) -> dict:
    """Errors of the head's sampled actions (DDIM ``validation_steps``, seeded) and of predicting the training
    labels' mean sequence (8, 3) on the validation samples; each rank samples a slice, the errors are gathered."""
    if not samples:
        return {}
    world, rank, device = accelerator.num_processes, accelerator.process_index, accelerator.device
    dataset = FutureDataset(samples, text_tokens)
    indices = list(range(rank, len(samples), world))
    share = math.ceil(len(samples) / world)
    predicted = torch.full((share, head.head_config.num_actions, head.head_config.action_dim), float("nan"),
                           device=device)
    if indices:
        predicted[:len(indices)] = sample_validation_actions(head, dataset, indices, options, device)
    gathered = accelerator.gather(predicted[None]).cpu().numpy()  # (world, share, 8, 3), rank-major
    order = [(r, k) for r in range(world) for k in range(len(range(r, len(samples), world)))]
    by_index = {r + k * world: gathered[r, k] for r, k in order}
    prediction = np.stack([by_index[i] for i in range(len(samples))]).astype(float)
    true = np.stack([s.actions for s in samples]).astype(float)
    baseline = np.broadcast_to(train_actions.mean(axis=0), true.shape)
    return {"head": action_errors(prediction, true), "mean_baseline": action_errors(baseline, true),
            "ddim_steps": options.validation_steps}


def validation_seed(seed: int, index: int) -> int:
    """Seed of validation sample ``index``'s sampling noise: per sample, so the validation errors do not
    depend on the number of processes (which rank samples it, in which chunk)."""
    return int(hashlib.sha256(f"validation\0{seed}\0{index}".encode()).hexdigest()[:15], 16)


@torch.no_grad()
def sample_validation_actions(head: SparseVideoNavActionHead, dataset: "FutureDataset", indices: Sequence[int],
                              options: TrainingOptions, device, chunk_size: int = 64) -> torch.Tensor:
    """(len(indices), 8, 3) sampled actions of the dataset's samples ``indices`` (eval mode, DDIM
    ``validation_steps``, noise seeded per sample: validation_seed)."""
    was_training = head.training
    head.eval()
    out = []
    try:
        for start in range(0, len(indices), chunk_size):
            chunk = list(indices[start:start + chunk_size])
            inputs = collate([dataset[i] for i in chunk])
            generators = [torch.Generator().manual_seed(validation_seed(options.seed, i)) for i in chunk]
            # float32 (no autocast): 24 numbers per sample through the DDIM steps, the head's own precision
            actions = head.sample(inputs["future_latents"].to(device), inputs["text_embeds"].to(device),
                                  inputs["text_mask"].to(device), num_inference_steps=options.validation_steps,
                                  generator=generators)
            out.append(actions.float())
    finally:
        head.train(was_training)
    return torch.cat(out)


def _validation_scalars(validation: dict) -> dict:
    return {f"val/{name}_{k}": v for name in ("head", "mean_baseline") for k, v in validation[name].items()
            if k != "samples"}


def _validation_line(validation: dict) -> str:
    if not validation:
        return "no validation split (one episode, or --val-fraction 0)"
    h, b = validation["head"], validation["mean_baseline"]
    return (f"validation ({h['samples']} samples): head {h['translation_m']:.4f} m, {h['rotation_rad']:.4f} rad per "
            f"step, 2 s endpoint {h['endpoint_m']:.3f} m; predicting the mean {b['translation_m']:.4f} m, "
            f"{b['rotation_rad']:.4f} rad, endpoint {b['endpoint_m']:.3f} m")
