"""Parameters of the `sparsevideonav` policy (ROS parameters `sparsevideonav.*` of policy_node)."""
from __future__ import annotations

from dataclasses import dataclass

from sparsevideonav_ros.configs import ConfigError, _positive, check_choices, param
from sparsevideonav_ros.policies.sparsevideonav.sampling import SAMPLERS

TINY = "tiny"


@dataclass
class SparseVideoNavConfig:
    checkpoint: str = param(TINY, "Model folder: ours (save_pretrained layout), the authors' release folder "
                                  "(with svn_ckpt/), or 'tiny' = a small random model for wiring tests (its "
                                  "plans depend on the frames, instruction and seed, but mean nothing).")
    wan_diffusers_dir: str = param("", "Release layout only: diffusers-format Wan2.1-T2V-1.3B folder giving "
                                       "text_encoder/ and tokenizer/ (and vae/ if Wan2.1_VAE.pth is absent).")
    action_head_dir: str = param("", "A trained action head folder (save_pretrained, e.g. from tools/"
                                     "train_action_head); replaces the checkpoint's own head in every layout, "
                                     "tiny included. Required with the authors' release (they have not released "
                                     "their head).")
    device: str = param("cpu", "Torch device of the video model and action head (cpu, cuda, cuda:1, ...).")
    dtype: str = param("float32", "Weights and compute precision.", choices=("float32", "bfloat16", "float16"))
    text_encoder_device: str = param("cpu", "Device of umT5 (used once per instruction; cpu keeps GPU memory free).")
    sampler: str = param("unipc", "Video sampler: unipc (the release) or pcm_euler (phase-distilled weights).",
                         choices=SAMPLERS)
    sampler_steps: int = param(4, "Video denoising steps (4 after distillation).")
    action_steps: int = param(10, "DDIM steps of the action head (trained with 100).")
    seed: int = param(0, "Seed of the sampling noise (-1 = random every step).")
    preview: bool = param(False, "Decode the imagined sparse future into policy/future (costs a VAE decode).")
    plan_every_frames: int = param(4, "Plan every N frames at 4 FPS; 4 keeps the VAE chunk grid aligned (1 s).")
    min_frames: int = param(12, "Frames needed before the first plan (1 history chunk + 2 reference chunks).")

    def __post_init__(self) -> None:
        check_choices(self)
        _positive(self, "sampler_steps", "action_steps", "plan_every_frames")
        if self.min_frames < 12:
            raise ConfigError(f"sparsevideonav.min_frames must be >= 12 (1 history + 2 reference chunks of 4 "
                              f"frames), got {self.min_frames}")
        if self.plan_every_frames % 4:
            raise ConfigError("sparsevideonav.plan_every_frames must be a multiple of 4 (the VAE chunk size)")
        if not self.checkpoint.strip():
            raise ConfigError("sparsevideonav.checkpoint is empty: give a model folder or 'tiny'")
