"""SparseVideoNav action head: generated sparse future latents + instruction -> 8 (dx, dy, dtheta).

The authors have not released their action head; this follows the paper (stage 4): the video
backbone is frozen, an **Action Video-Former** (hidden 256, 8 layers, 8 heads, 640 latents =
8 future latent frames x 80) encodes the generated sparse future latents, and a **DiT** (hidden
256, 12 layers, 8 heads) over the 8 action tokens self-attends, cross-attends to
[Action Video-Former tokens ; projected instruction tokens] and is conditioned on the diffusion
timestep. Actions are denoised with DDIM (diffusers ``DDIMScheduler``, 100 training steps,
``prediction_type='sample'``: the network regresses the clean actions a_0, as the paper's loss
does).

Design choices where the paper is silent (documented so a retrained head can match them):

* Timestep conditioning as in the Wan backbone / PixArt-alpha "adaLN-single": one shared
  ``time_modulation`` MLP maps the timestep embedding to 6 x dim (shift, scale, gate for the
  self-attention and the feed-forward), and every block adds its own learned ``modulation``
  table (6, dim), zero-initialised, so every block starts as the identity on its gated paths.
  Cross-attention is ungated (pre-LayerNorm with affine), like Wan's text cross-attention.
  This lands the whole head at ~24.1M trainable parameters at full size (paper: 23.4M).
* The Action Video-Former is the same module as the history Video-Former (with language FiLM),
  with heads x dim_head = 8 x 32 = its hidden size (as 8 x 64 = 512 in the history one).
* DDIM with the ``squaredcos_cap_v2`` schedule (with 100 linear-beta steps the last step keeps
  37% of the signal, so sampling from pure noise would start off the training distribution) and
  ``trailing`` timestep spacing (sampling starts at t = 99).
* Actions are normalised per dimension with ``action_mean`` / ``action_std`` from the config
  (saved with the model); inputs and outputs of the public methods are in metres / radians.
"""
from __future__ import annotations

from collections import OrderedDict
from dataclasses import asdict, dataclass, fields
from typing import Optional, Sequence

import torch
import torch.nn.functional as F
from diffusers import DDIMScheduler
from diffusers.configuration_utils import ConfigMixin, register_to_config
from diffusers.models.embeddings import TimestepEmbedding, Timesteps
from diffusers.models.modeling_utils import ModelMixin
from diffusers.utils.torch_utils import randn_tensor
from torch import nn

from sparsevideonav_ros.policies.sparsevideonav.history_formers import (MultiHeadAttention, VideoFormer,
                                                                        VideoFormerConfig)

__all__ = ["ActionHeadConfig", "DiTBlock", "SparseVideoNavActionHead"]


@dataclass(frozen=True)
class ActionHeadConfig:
    """Every constructor argument of :class:`SparseVideoNavActionHead` (paper sizes by default).

    num_actions x action_dim: 8 steps of (dx m, dy m, dtheta rad), one per 0.25 s.
    latent_channels / num_future_latents: the generated future latents (B, 16, 8, h, w).
    former_*: Action Video-Former (num_latents split evenly over the future latent frames).
    dit_*: the denoising transformer over the action tokens.
    num_train_timesteps / beta_schedule: DDIM training schedule; inference_steps: default
      number of DDIM steps for :meth:`SparseVideoNavActionHead.sample`.
    action_mean / action_std: per-dimension normalisation (metres, metres, radians).
    """

    num_actions: int = 8
    action_dim: int = 3
    latent_channels: int = 16
    num_future_latents: int = 8
    language_dim: int = 4096
    former_dim: int = 256
    former_depth: int = 8
    former_heads: int = 8
    former_dim_head: int = 32
    former_num_latents: int = 640
    former_ff_mult: int = 4
    former_dropout: float = 0.1
    dit_dim: int = 256
    dit_depth: int = 12
    dit_heads: int = 8
    dit_ff_mult: int = 4
    num_train_timesteps: int = 100
    beta_schedule: str = "squaredcos_cap_v2"
    inference_steps: int = 10
    action_mean: Sequence[float] = (0.0, 0.0, 0.0)
    action_std: Sequence[float] = (0.15, 0.05, 0.1)

    def __post_init__(self) -> None:
        object.__setattr__(self, "action_mean", tuple(float(v) for v in self.action_mean))
        object.__setattr__(self, "action_std", tuple(float(v) for v in self.action_std))
        for f in fields(self):
            value = getattr(self, f.name)
            if f.type == "int" and (isinstance(value, bool) or not isinstance(value, int) or value <= 0):
                raise ValueError(f"{f.name} must be a positive int, got {value!r}")
        if len(self.action_mean) != self.action_dim or len(self.action_std) != self.action_dim:
            raise ValueError(f"action_mean and action_std need {self.action_dim} values, got "
                             f"{list(self.action_mean)} and {list(self.action_std)}")
        if not all(s > 0 for s in self.action_std):
            raise ValueError(f"action_std must be positive, got {list(self.action_std)}")
        if self.dit_dim % self.dit_heads:
            raise ValueError(f"dit_dim {self.dit_dim} is not divisible by dit_heads {self.dit_heads}")
        if self.dit_dim % 2:
            raise ValueError(f"dit_dim must be even (sinusoidal timestep embedding), got {self.dit_dim}")
        if not 1 <= self.inference_steps <= self.num_train_timesteps:
            raise ValueError(f"inference_steps must be in 1..{self.num_train_timesteps}, got {self.inference_steps}")
        if not 0.0 <= self.former_dropout < 1.0:
            raise ValueError(f"former_dropout must be in [0, 1), got {self.former_dropout}")
        self.former_config()  # validates the Video-Former sizes (num_latents divisible by frames, heads)

    def former_config(self) -> VideoFormerConfig:
        return VideoFormerConfig(dim=self.former_dim, depth=self.former_depth, heads=self.former_heads,
                                 dim_head=self.former_dim_head, num_latents=self.former_num_latents,
                                 num_slots=self.num_future_latents, input_dim=self.latent_channels,
                                 language_dim=self.language_dim, ff_mult=self.former_ff_mult,
                                 dropout=self.former_dropout)

    def to_dict(self) -> dict:
        return {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(self).items()}


class DiTBlock(nn.Module):
    """One denoiser block over the action tokens (B, A, dim).

    x = x + gate_sa * self_attn(norm_self(x) * (1 + scale_sa) + shift_sa)
    x = x + cross_attn(norm_cross(x), context, context_mask)
    x = x + gate_ff * feed_forward(norm_ff(x) * (1 + scale_ff) + shift_ff)
    with (shift_sa, scale_sa, gate_sa, shift_ff, scale_ff, gate_ff) = modulation + time_mod.
    """

    def __init__(self, dim: int, heads: int, ff_mult: int = 4) -> None:
        super().__init__()
        self.norm_self = nn.LayerNorm(dim, elementwise_affine=False, eps=1e-6)
        self.self_attn = MultiHeadAttention(dim, heads)
        self.norm_cross = nn.LayerNorm(dim, eps=1e-6)
        self.cross_attn = MultiHeadAttention(dim, heads)
        self.norm_ff = nn.LayerNorm(dim, elementwise_affine=False, eps=1e-6)
        self.feed_forward = nn.Sequential(OrderedDict(
            proj_in=nn.Linear(dim, ff_mult * dim),
            act=nn.GELU(approximate="tanh"),
            proj_out=nn.Linear(ff_mult * dim, dim),
        ))
        self.modulation = nn.Parameter(torch.zeros(1, 6, dim))

    def forward(self, x: torch.Tensor, time_mod: torch.Tensor, context: torch.Tensor,
                context_mask: torch.Tensor, context_kv: Optional[tuple[torch.Tensor, torch.Tensor]] = None
                ) -> torch.Tensor:
        """x (B, A, dim); time_mod (B, 6, dim); context (B, Nc, dim); context_mask (B, Nc) bool;
        context_kv: ``cross_attn.project_context(context)`` cached across denoising steps."""
        shift_sa, scale_sa, gate_sa, shift_ff, scale_ff, gate_ff = (self.modulation + time_mod).chunk(6, dim=1)
        x = x + gate_sa * self.self_attn(self.norm_self(x) * (1 + scale_sa) + shift_sa)
        x = x + self.cross_attn(self.norm_cross(x), context, context_mask, context_kv)
        return x + gate_ff * self.feed_forward(self.norm_ff(x) * (1 + scale_ff) + shift_ff)


class SparseVideoNavActionHead(ModelMixin, ConfigMixin):
    _repeated_blocks = ["DiTBlock"]  # diffusers' compile_repeated_blocks (sparsevideonav.compile)

    """Action Video-Former + DiT denoiser of 8 (dx, dy, dtheta) actions (see the module docstring).

    Shapes: future_latents (B, latent_channels=16, num_future_latents=8, h, w) (the generated
    sparse future, reference latents excluded); text_embeds (B, L, 4096) umT5 embeddings
    zero-padded (to 512 in the policy); text_mask (B, L) bool, True = real token (None: the
    tokens that are not all zero). Actions (B, 8, 3) in metres / radians unless named
    "normalised".

    Built with diffusers' ModelMixin/ConfigMixin: ``save_pretrained`` / ``from_pretrained``
    round-trip the weights and every constructor argument (the normalisation included).
    """

    config_name = "config.json"

    @register_to_config
    def __init__(
        self,
        num_actions: int = 8,
        action_dim: int = 3,
        latent_channels: int = 16,
        num_future_latents: int = 8,
        language_dim: int = 4096,
        former_dim: int = 256,
        former_depth: int = 8,
        former_heads: int = 8,
        former_dim_head: int = 32,
        former_num_latents: int = 640,
        former_ff_mult: int = 4,
        former_dropout: float = 0.1,
        dit_dim: int = 256,
        dit_depth: int = 12,
        dit_heads: int = 8,
        dit_ff_mult: int = 4,
        num_train_timesteps: int = 100,
        beta_schedule: str = "squaredcos_cap_v2",
        inference_steps: int = 10,
        action_mean: Sequence[float] = (0.0, 0.0, 0.0),
        action_std: Sequence[float] = (0.15, 0.05, 0.1),
    ) -> None:
        super().__init__()
        cfg = ActionHeadConfig(
            num_actions=num_actions, action_dim=action_dim, latent_channels=latent_channels,
            num_future_latents=num_future_latents, language_dim=language_dim, former_dim=former_dim,
            former_depth=former_depth, former_heads=former_heads, former_dim_head=former_dim_head,
            former_num_latents=former_num_latents, former_ff_mult=former_ff_mult, former_dropout=former_dropout,
            dit_dim=dit_dim, dit_depth=dit_depth, dit_heads=dit_heads, dit_ff_mult=dit_ff_mult,
            num_train_timesteps=num_train_timesteps, beta_schedule=beta_schedule, inference_steps=inference_steps,
            action_mean=action_mean, action_std=action_std)
        self.head_config = cfg

        # Conditioning: generated future -> Action Video-Former tokens; instruction -> text tokens.
        self.action_former = VideoFormer(cfg.former_config())
        self.former_to_dit = nn.Identity() if former_dim == dit_dim else nn.Linear(former_dim, dit_dim)
        self.text_proj = nn.Linear(language_dim, dit_dim)
        self.text_norm = nn.LayerNorm(dit_dim)

        # Denoiser over the action tokens.
        self.action_in = nn.Linear(action_dim, dit_dim)
        self.action_pos = nn.Parameter(torch.randn(num_actions, dit_dim) * 0.02)
        self.time_proj = Timesteps(dit_dim, flip_sin_to_cos=True, downscale_freq_shift=0)
        self.time_embedding = TimestepEmbedding(dit_dim, dit_dim)
        self.time_modulation = nn.Sequential(nn.SiLU(), nn.Linear(dit_dim, 6 * dit_dim))
        self.blocks = nn.ModuleList(DiTBlock(dit_dim, dit_heads, dit_ff_mult) for _ in range(dit_depth))
        self.norm_out = nn.LayerNorm(dit_dim, elementwise_affine=False, eps=1e-6)
        self.out_modulation = nn.Parameter(torch.zeros(1, 2, dit_dim))
        self.action_out = nn.Linear(dit_dim, action_dim)
        self._init_denoiser()

        self.noise_scheduler = DDIMScheduler(
            num_train_timesteps=num_train_timesteps, beta_schedule=beta_schedule, prediction_type="sample",
            clip_sample=False, set_alpha_to_one=True, timestep_spacing="trailing")

    @classmethod
    def from_head_config(cls, config: ActionHeadConfig) -> "SparseVideoNavActionHead":
        return cls(**config.to_dict())

    def _init_denoiser(self) -> None:
        for block in self.blocks:
            for module in block.modules():
                if isinstance(module, nn.Linear):
                    nn.init.xavier_uniform_(module.weight)
                    nn.init.zeros_(module.bias)
        nn.init.normal_(self.text_proj.weight, std=0.02)
        nn.init.zeros_(self.text_proj.bias)
        # adaLN-zero: gates, shifts and scales start at zero, so does the output projection.
        nn.init.zeros_(self.time_modulation[1].weight)
        nn.init.zeros_(self.time_modulation[1].bias)
        nn.init.zeros_(self.action_out.weight)
        nn.init.zeros_(self.action_out.bias)

    # -- normalisation -------------------------------------------------------------------------
    def _stats(self, like: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        mean = torch.tensor(self.head_config.action_mean, dtype=like.dtype, device=like.device)
        std = torch.tensor(self.head_config.action_std, dtype=like.dtype, device=like.device)
        return mean, std

    def normalize_actions(self, actions: torch.Tensor) -> torch.Tensor:
        """(..., 3) metres/radians -> normalised."""
        mean, std = self._stats(actions)
        return (actions - mean) / std

    def denormalize_actions(self, actions: torch.Tensor) -> torch.Tensor:
        """(..., 3) normalised -> metres/radians."""
        mean, std = self._stats(actions)
        return actions * std + mean

    # -- network -------------------------------------------------------------------------------
    @property
    def _param_dtype(self) -> torch.dtype:
        return self.action_in.weight.dtype

    def encode_condition(self, future_latents: torch.Tensor, text_embeds: torch.Tensor,
                         text_mask: Optional[torch.Tensor] = None) -> tuple[torch.Tensor, torch.Tensor]:
        """Cross-attention context of the denoiser (independent of the diffusion step).

        Returns context (B, former_num_latents + L, dit_dim) = [Action Video-Former tokens ;
        projected text tokens] and its mask (B, former_num_latents + L) bool.
        """
        cfg = self.head_config
        if future_latents.ndim != 5 or future_latents.shape[1:3] != (cfg.latent_channels, cfg.num_future_latents):
            raise ValueError(f"future latents must be (B, {cfg.latent_channels}, {cfg.num_future_latents}, h, w), "
                             f"got {tuple(future_latents.shape)}")
        batch = future_latents.shape[0]
        if text_embeds.ndim != 3 or text_embeds.shape[0] != batch or text_embeds.shape[2] != cfg.language_dim:
            raise ValueError(f"text embeddings must be ({batch}, L, {cfg.language_dim}), got {tuple(text_embeds.shape)}")
        dtype = self._param_dtype
        text_embeds = text_embeds.to(dtype)
        if text_mask is None:
            text_mask = (text_embeds != 0).any(dim=-1)
        elif text_mask.shape != text_embeds.shape[:2]:
            raise ValueError(f"text mask {tuple(text_mask.shape)} does not match text embeddings "
                             f"{tuple(text_embeds.shape[:2])}")
        text_mask = text_mask.to(device=text_embeds.device, dtype=torch.bool)

        features = future_latents.to(dtype).permute(0, 2, 3, 4, 1).flatten(2, 3)       # (B, T, h*w, C)
        video = self.former_to_dit(self.action_former(features, text_embeds, text_mask))
        text = self.text_norm(self.text_proj(text_embeds))
        context = torch.cat([video, text], dim=1)
        mask = torch.cat([text_mask.new_ones(video.shape[:2]), text_mask], dim=1)
        return context, mask

    def context_cache(self, context: torch.Tensor) -> list[tuple[torch.Tensor, torch.Tensor]]:
        """Per block cross-attention keys/values of ``context``: the context does not change
        across denoising steps, so :meth:`sample` projects it once."""
        return [block.cross_attn.project_context(context) for block in self.blocks]

    def denoise(self, noisy_actions: torch.Tensor, timesteps: torch.Tensor, context: torch.Tensor,
                context_mask: torch.Tensor,
                context_kv: Optional[list[tuple[torch.Tensor, torch.Tensor]]] = None) -> torch.Tensor:
        """noisy normalised actions (B, 8, 3), timesteps (B,) or scalar in [0, num_train_timesteps),
        context / context_mask from :meth:`encode_condition` (context_kv: :meth:`context_cache`)
        -> predicted clean normalised actions (B, 8, 3)."""
        cfg = self.head_config
        if noisy_actions.shape[1:] != (cfg.num_actions, cfg.action_dim):
            raise ValueError(f"actions must be (B, {cfg.num_actions}, {cfg.action_dim}), got {tuple(noisy_actions.shape)}")
        batch = noisy_actions.shape[0]
        dtype = self._param_dtype
        timesteps = torch.as_tensor(timesteps, device=noisy_actions.device).reshape(-1).expand(batch)
        x = self.action_in(noisy_actions.to(dtype)) + self.action_pos
        t_emb = self.time_embedding(self.time_proj(timesteps).to(dtype))                 # (B, D)
        time_mod = self.time_modulation(t_emb).unflatten(1, (6, cfg.dit_dim))            # (B, 6, D)
        for i, block in enumerate(self.blocks):
            x = block(x, time_mod, context, context_mask, None if context_kv is None else context_kv[i])
        shift, scale = (self.out_modulation + t_emb[:, None]).chunk(2, dim=1)
        return self.action_out(self.norm_out(x) * (1 + scale) + shift)

    def forward(self, noisy_actions: torch.Tensor, timesteps: torch.Tensor, future_latents: torch.Tensor,
                text_embeds: torch.Tensor, text_mask: Optional[torch.Tensor] = None) -> torch.Tensor:
        """noisy normalised actions (B, 8, 3), timesteps (B,), future_latents (B, 16, 8, h, w),
        text_embeds (B, L, 4096), text_mask (B, L) -> predicted clean normalised actions (B, 8, 3)."""
        context, mask = self.encode_condition(future_latents, text_embeds, text_mask)
        return self.denoise(noisy_actions, timesteps, context, mask)

    # -- training and sampling -----------------------------------------------------------------
    def training_loss(self, actions: torch.Tensor, future_latents: torch.Tensor, text_embeds: torch.Tensor,
                      text_mask: Optional[torch.Tensor] = None,
                      generator: Optional[torch.Generator] = None, noise: Optional[torch.Tensor] = None,
                      timesteps: Optional[torch.Tensor] = None) -> torch.Tensor:
        """DDIM x0-regression loss: MSE between the predicted and the true clean normalised actions.

        actions (B, 8, 3) metres/radians. One random timestep and noise per sample (drawn from
        ``generator`` when given), or given: noise (B, 8, 3) standard normal, timesteps (B,) int in
        [0, num_train_timesteps) (the trainer draws them per global batch, so a sample's noise does not
        depend on the process it lands on). Returns a scalar (float32).
        """
        clean = self.normalize_actions(actions.to(self._param_dtype))
        batch, device = clean.shape[0], clean.device
        if noise is None:
            noise = randn_tensor(clean.shape, generator=generator, device=device, dtype=clean.dtype)
        noise = noise.to(device=device, dtype=clean.dtype)
        if timesteps is None:
            draw_device = generator.device if generator is not None else device
            timesteps = torch.randint(0, self.head_config.num_train_timesteps, (batch,), generator=generator,
                                      device=draw_device)
        timesteps = timesteps.to(device)
        noisy = self.noise_scheduler.add_noise(clean, noise, timesteps)
        predicted = self(noisy, timesteps, future_latents, text_embeds, text_mask)
        return F.mse_loss(predicted.float(), clean.float())

    @torch.no_grad()
    def sample(self, future_latents: torch.Tensor, text_embeds: torch.Tensor,
               text_mask: Optional[torch.Tensor] = None, num_inference_steps: Optional[int] = None,
               generator: Optional[torch.Generator] = None) -> torch.Tensor:
        """DDIM sampling (eta 0) from Gaussian noise -> actions (B, 8, 3) in metres/radians.

        num_inference_steps: default ``config.inference_steps``. Dropout is off while sampling
        (the module's train/eval mode is restored afterwards).
        """
        cfg = self.head_config
        steps = cfg.inference_steps if num_inference_steps is None else int(num_inference_steps)
        if not 1 <= steps <= cfg.num_train_timesteps:
            raise ValueError(f"num_inference_steps must be in 1..{cfg.num_train_timesteps}, got {steps}")
        was_training = self.training
        self.eval()
        try:
            context, mask = self.encode_condition(future_latents, text_embeds, text_mask)
            context_kv = self.context_cache(context)
            scheduler = DDIMScheduler.from_config(self.noise_scheduler.config)
            scheduler.set_timesteps(steps, device=context.device)
            actions = randn_tensor((future_latents.shape[0], cfg.num_actions, cfg.action_dim), generator=generator,
                                   device=context.device, dtype=context.dtype)
            for t in scheduler.timesteps:
                predicted = self.denoise(actions, t, context, mask, context_kv)
                actions = scheduler.step(predicted, t, actions, eta=0.0, generator=generator).prev_sample
        finally:
            self.train(was_training)
        return self.denormalize_actions(actions)
