"""Sparse-future sampling: the sampler (diffusers schedulers) and the denoising loop.

The sequence is [2 reference latents, 8 future latents] = 10 latent frames. The future latents
stand for T+1, T+2, T+5, ..., T+20 latent chunks (1 chunk = 4 frames = 1 s at 4 FPS); RoPE frame
positions stay 0..9 as in the release. After every step the reference latents are written back
(image-to-video conditioning by replacement). No classifier-free guidance.

Flow convention (diffusers): x_sigma = (1 - sigma) * data + sigma * noise, the model predicts
noise - data, sigma runs from ~1 to 0. (The paper writes x_t = t x1 + (1-t) x0 with t = 1 - sigma.)
"""
from __future__ import annotations

from typing import Optional

import numpy as np
import torch

# Latent offsets of the 8 sparse future latents after the reference (chunks of 1 s at 4 FPS).
SPARSE_FUTURE_OFFSETS = (0, 1, 4, 7, 10, 13, 16, 19)
REFERENCE_LATENTS = 2
SECONDS_PER_LATENT = 1.0  # 4 frames at 4 FPS
SAMPLERS = ("unipc", "pcm_euler")
TRAIN_TIMESTEPS = 1000


def future_times_s(offsets=SPARSE_FUTURE_OFFSETS) -> tuple[float, ...]:
    """Seconds after the newest reference chunk that each future latent depicts: 1, 2, 5, ..., 20."""
    return tuple((offset + 1) * SECONDS_PER_LATENT for offset in offsets)


def release_sigmas(steps: int) -> np.ndarray:
    """The release's flow-UniPC schedule: linspace(0.999, 0, steps + 1) without the final 0 (shift 1)."""
    sigma_max = 1.0 - 1.0 / TRAIN_TIMESTEPS
    return np.linspace(sigma_max, 0.0, steps + 1)[:-1]


def phase_sigmas(steps: int) -> np.ndarray:
    """PCM phase boundaries: `steps` equal phases of the flow ODE, each solved in one Euler jump."""
    return np.linspace(1.0, 0.0, steps + 1)[:-1]


def make_scheduler(kind: str, steps: int):
    """A diffusers scheduler with its timesteps set.

    unipc:     UniPC multistep in flow mode with the release's sigmas (what the authors run).
    pcm_euler: flow-matching Euler over PCM phase boundaries, for phase-distilled weights.
    """
    if steps < 1:
        raise ValueError(f"sampler steps must be >= 1, got {steps}")
    if kind == "unipc":
        from diffusers import UniPCMultistepScheduler
        scheduler = UniPCMultistepScheduler(num_train_timesteps=TRAIN_TIMESTEPS, prediction_type="flow_prediction",
                                            use_flow_sigmas=True, flow_shift=1.0, solver_order=2,
                                            lower_order_final=True, final_sigmas_type="zero")
        scheduler.set_timesteps(sigmas=release_sigmas(steps))
    elif kind == "pcm_euler":
        from diffusers import FlowMatchEulerDiscreteScheduler
        scheduler = FlowMatchEulerDiscreteScheduler(num_train_timesteps=TRAIN_TIMESTEPS, shift=1.0)
        scheduler.set_timesteps(sigmas=phase_sigmas(steps))
    else:
        raise ValueError(f"unknown sampler {kind!r}; known: {', '.join(SAMPLERS)}")
    return scheduler


def model_timestep(timestep: torch.Tensor, kind: str) -> torch.Tensor:
    """The release feeds integer timesteps (int64 of sigma*1000) to the backbone's time embedding."""
    return torch.floor(timestep) if kind == "unipc" else timestep


@torch.no_grad()
def sample_sparse_future(transformer, reference_latents: torch.Tensor, text_embeds: torch.Tensor,
                         history_tokens: Optional[torch.Tensor], sampler: str = "unipc", steps: int = 4,
                         num_future: int = len(SPARSE_FUTURE_OFFSETS),
                         generator: Optional[torch.Generator] = None) -> torch.Tensor:
    """Denoise the sparse future next to the reference latents.

    reference_latents: (B, 16, 2, h, w); text_embeds (B, 512, text_dim); history_tokens (B, N, d) or None.
    Returns (B, 16, 2 + num_future, h, w): the reference (exactly as given) then the future latents.
    """
    from diffusers.utils.torch_utils import randn_tensor

    batch, channels, ref_frames, height, width = reference_latents.shape
    # diffusers' dtype skips the modules it keeps in float32 (norms, modulation, RoPE): the compute dtype.
    dtype = transformer.dtype
    # randn_tensor draws on the generator's device (a seeded CPU generator works with a CUDA model).
    noise = randn_tensor((batch, channels, num_future, height, width), generator=generator,
                         device=reference_latents.device, dtype=torch.float32)
    latents = torch.cat([reference_latents.float(), noise], dim=2)
    reference = reference_latents.float()
    scheduler = make_scheduler(sampler, steps)
    text_embeds = text_embeds.to(dtype)
    history_tokens = history_tokens.to(dtype) if history_tokens is not None else None
    # Text projection and cross-attention keys/values: the same at every step, computed once per plan.
    context = transformer.plan_context(text_embeds, history_tokens)
    for timestep in scheduler.timesteps:
        t = model_timestep(timestep.expand(batch).to(latents.device), sampler)
        velocity = transformer(latents.to(dtype), t, text_embeds, history_tokens, context=context)
        latents = scheduler.step(velocity.float(), timestep, latents).prev_sample
        latents[:, :, :ref_frames] = reference
    return latents
