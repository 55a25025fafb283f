"""History compression of SparseVideoNav: the temporal Q-Former and the spatial Video-Former.

The backbone turns the VAE latents of the whole history into a fixed number of tokens:

    history latents (B, 16, F, 32, 32)
      -> Linear(16 -> 1536) -> Linear(1536 -> 512)             (in the backbone)
      -> QFormer:     (B, F, 1024, 512)  -> (B, 10240, 512)     10 slots x 1024 queries
      -> reshape:     (B, 10, 1024, 512)
      -> VideoFormer: (B, 10, 1024, 512) -> (B, 2560, 512)      10 slots x 256 latents

so the backbone's history cross-attention sees 2560 tokens whatever the history length.
Both formers are conditioned on the instruction through one FiLM layer each (shared by its layers) whose
scale/shift are pooled over the valid (unpadded) umT5 tokens.

The module layout is ours; :func:`convert_original_former_keys` maps the parameter names of
the authors' released checkpoint (``vgm.qformer.*``, ``vgm.video_former.*``) onto it, and
:func:`convert_to_original_former_keys` goes the other way (export, tests).

Behaviour kept on purpose to match the released weights:

* Frame positions count from the END of the frame axis (the newest frame, last index, gets
  position 0). Pad a batch of histories of different lengths on the OLDEST side (index 0);
  padded frames (mask False) then change nothing.
* The Perceiver attention scales its logits by ``1 / dim_head`` (not ``1 / sqrt(dim_head)``):
  the release multiplies the queries by ``dim_head ** -0.5`` and then calls
  ``scaled_dot_product_attention`` with its default scale, which applies it a second time.
"""
from __future__ import annotations

import math
import re
from collections import OrderedDict
from dataclasses import asdict, dataclass
from typing import Mapping, Optional

import torch
import torch.nn.functional as F
from torch import nn

__all__ = [
    "QFormerConfig",
    "VideoFormerConfig",
    "FiLM",
    "FeedForward",
    "MultiHeadAttention",
    "PerceiverAttention",
    "QFormerLayer",
    "VideoFormerLayer",
    "QFormer",
    "VideoFormer",
    "ORIGINAL_KEY_RULES",
    "convert_original_former_keys",
    "convert_to_original_former_keys",
    "frame_position_table",
]


# --------------------------------------------------------------------------------------------
# Configs
# --------------------------------------------------------------------------------------------
def _check_positive(name: str, value: int) -> None:
    if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
        raise ValueError(f"{name} must be a positive int, got {value!r}")


def _check_dropout(value: float) -> None:
    if not 0.0 <= float(value) < 1.0:
        raise ValueError(f"dropout must be in [0, 1), got {value!r}")


@dataclass(frozen=True)
class QFormerConfig:
    """Temporal Q-Former. Paper size: 512 hidden, 4 layers, 8 heads, 10240 queries.

    num_latents: learned queries = output tokens (10 slots x 1024 spatial tokens at 32x32).
    max_frames: rows of the sinusoidal frame-position table (the longest history, in latent
      frames; 512 latent frames = 2048 video frames = 8.5 min at 4 FPS).
    dropout: attention-probability and residual dropout of the cross-attention (training only).
    """

    dim: int = 512
    depth: int = 4
    heads: int = 8
    num_latents: int = 10240
    language_dim: int = 4096
    max_frames: int = 512
    ff_mult: int = 4
    dropout: float = 0.1

    def __post_init__(self) -> None:
        for name in ("dim", "depth", "heads", "num_latents", "language_dim", "max_frames", "ff_mult"):
            _check_positive(name, getattr(self, name))
        if self.dim % self.heads:
            raise ValueError(f"QFormer dim {self.dim} is not divisible by heads {self.heads}")
        if self.dim % 2:
            raise ValueError(f"QFormer dim must be even for the sin/cos frame table, got {self.dim}")
        _check_dropout(self.dropout)

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class VideoFormerConfig:
    """Spatial (Perceiver-style) Video-Former. Paper size: 512 hidden, 6 layers, 8 heads, 2560 latents.

    num_slots: time slots of the input (B, num_slots, N, input_dim); each has
      num_latents // num_slots learned latents (10 x 256 in the paper).
    heads, dim_head: Perceiver attention heads (inner width heads * dim_head); the temporal
      self-attention uses ``heads`` heads over ``dim``.
    input_dim: feature width before ``input_proj`` (Linear in->2dim, GELU, Linear 2dim->dim).
    dropout: dropout of the temporal self-attention (training only).
    """

    dim: int = 512
    depth: int = 6
    heads: int = 8
    dim_head: int = 64
    num_latents: int = 2560
    num_slots: int = 10
    input_dim: int = 512
    language_dim: int = 4096
    ff_mult: int = 4
    dropout: float = 0.1

    def __post_init__(self) -> None:
        for name in ("dim", "depth", "heads", "dim_head", "num_latents", "num_slots", "input_dim",
                     "language_dim", "ff_mult"):
            _check_positive(name, getattr(self, name))
        if self.num_latents % self.num_slots:
            raise ValueError(
                f"VideoFormer num_latents {self.num_latents} is not divisible by num_slots {self.num_slots}")
        if self.dim % self.heads:
            raise ValueError(f"VideoFormer dim {self.dim} is not divisible by heads {self.heads}")
        _check_dropout(self.dropout)

    @property
    def latents_per_slot(self) -> int:
        return self.num_latents // self.num_slots

    def to_dict(self) -> dict:
        return asdict(self)



# --------------------------------------------------------------------------------------------
# Building blocks
# --------------------------------------------------------------------------------------------
def frame_position_table(max_frames: int, dim: int) -> torch.Tensor:
    """(max_frames, dim) float32 sinusoidal table: sin on even channels, cos on odd channels."""
    position = torch.arange(max_frames, dtype=torch.float32)[:, None]
    inv_freq = torch.exp(torch.arange(0, dim, 2, dtype=torch.float32) * (-math.log(10000.0) / dim))
    table = torch.zeros(max_frames, dim)
    table[:, 0::2] = torch.sin(position * inv_freq)
    table[:, 1::2] = torch.cos(position * inv_freq)
    return table


class FiLM(nn.Module):
    """Language FiLM: per-token MLP -> (gamma, beta), mean-pooled over valid tokens.

    mlp: Linear(language_dim -> dim), ReLU, Linear(dim -> 2 dim). gamma = tanh(first half),
    beta = second half. Initialised near zero (weights N(0, 0.01), last N(0, 0.001), zero
    biases) so a fresh FiLM barely modulates.
    """

    def __init__(self, language_dim: int, dim: int) -> None:
        super().__init__()
        self.language_dim = language_dim
        self.dim = dim
        self.mlp = nn.Sequential(OrderedDict(
            hidden=nn.Linear(language_dim, dim),
            act=nn.ReLU(),
            to_gamma_beta=nn.Linear(dim, 2 * dim),
        ))
        self.reset_parameters()

    def reset_parameters(self) -> None:
        nn.init.normal_(self.mlp.hidden.weight, std=0.01)
        nn.init.zeros_(self.mlp.hidden.bias)
        nn.init.normal_(self.mlp.to_gamma_beta.weight, std=0.001)
        nn.init.zeros_(self.mlp.to_gamma_beta.bias)

    def forward(self, language: torch.Tensor, language_mask: Optional[torch.Tensor] = None
                ) -> tuple[torch.Tensor, torch.Tensor]:
        """language (B, L, language_dim), language_mask (B, L) bool (True = valid token).

        Returns gamma, beta, each (B, 1, dim). A missing mask counts the tokens that are not
        all zero as valid (zero padding ignored); a row without valid tokens gives zeros.
        """
        if language.ndim != 3 or language.shape[-1] != self.language_dim:
            raise ValueError(
                f"language features must be (B, L, {self.language_dim}), got {tuple(language.shape)}")
        if language_mask is None:
            language_mask = (language != 0).any(dim=-1)
        elif language_mask.shape != language.shape[:2]:
            raise ValueError(
                f"language mask {tuple(language_mask.shape)} does not match features {tuple(language.shape[:2])}")
        gamma, beta = self.mlp(language).chunk(2, dim=-1)
        gamma = torch.tanh(gamma)
        weight = language_mask.to(gamma.dtype).unsqueeze(-1)                 # (B, L, 1)
        count = weight.sum(dim=1, keepdim=True).clamp(min=1.0)               # (B, 1, 1)
        return (gamma * weight).sum(dim=1, keepdim=True) / count, (beta * weight).sum(dim=1, keepdim=True) / count

    @staticmethod
    def modulate(x: torch.Tensor, gamma: torch.Tensor, beta: torch.Tensor) -> torch.Tensor:
        """x (B, N, dim) * (1 + gamma) + beta, gamma/beta (B, 1, dim)."""
        return x * (1 + gamma) + beta


class FeedForward(nn.Sequential):
    """Linear(dim -> mult dim, no bias), GELU, Linear(mult dim -> dim, no bias)."""

    def __init__(self, dim: int, mult: int = 4) -> None:
        super().__init__(OrderedDict(
            proj_in=nn.Linear(dim, dim * mult, bias=False),
            act=nn.GELU(),
            proj_out=nn.Linear(dim * mult, dim, bias=False),
        ))


class MultiHeadAttention(nn.Module):
    """Multi-head (self- or cross-) attention, all projections with bias.

    to_query / to_key / to_value: Linear(dim, dim); to_out: Linear(dim, dim). Logits scaled by
    1/sqrt(dim/heads). ``dropout`` applies to the attention probabilities and to the output
    (training only).
    """

    def __init__(self, dim: int, heads: int, dropout: float = 0.0) -> None:
        super().__init__()
        if dim % heads:
            raise ValueError(f"attention dim {dim} is not divisible by heads {heads}")
        self.dim = dim
        self.heads = heads
        self.to_query = nn.Linear(dim, dim)
        self.to_key = nn.Linear(dim, dim)
        self.to_value = nn.Linear(dim, dim)
        self.to_out = nn.Linear(dim, dim)
        self.dropout = dropout
        self.out_dropout = nn.Dropout(dropout)

    def _split(self, t: torch.Tensor) -> torch.Tensor:
        return t.unflatten(-1, (self.heads, -1)).transpose(1, 2)           # (B, H, N, d)

    def project_context(self, context: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Keys and values (B, heads, Nk, dim/heads) of a context, to reuse across calls."""
        return self._split(self.to_key(context)), self._split(self.to_value(context))

    def forward(self, x: torch.Tensor, context: Optional[torch.Tensor] = None,
                context_mask: Optional[torch.Tensor] = None,
                context_kv: Optional[tuple[torch.Tensor, torch.Tensor]] = None) -> torch.Tensor:
        """x (B, Nq, dim); context (B, Nk, dim) or None (self-attention); context_mask (B, Nk)
        bool, True = attend (every row needs a True); context_kv: ``project_context(context)``
        computed earlier (then ``context`` is not read). Returns (B, Nq, dim)."""
        q = self._split(self.to_query(x))
        k, v = context_kv if context_kv is not None else self.project_context(x if context is None else context)
        attn_mask = None if context_mask is None else context_mask[:, None, None, :]
        out = F.scaled_dot_product_attention(
            q, k, v, attn_mask=attn_mask, dropout_p=self.dropout if self.training else 0.0)
        return self.out_dropout(self.to_out(out.transpose(1, 2).flatten(2)))


class PerceiverAttention(nn.Module):
    """Perceiver resampler attention: latents attend to [media ; latents].

    norm_media / norm_latents: LayerNorm(dim); to_q / to_k / to_v: Linear(dim -> heads*dim_head,
    no bias); to_out: Linear(heads*dim_head -> dim, no bias). Logits are scaled by
    ``1 / dim_head`` to match the released weights (see the module docstring).
    """

    def __init__(self, dim: int, heads: int = 8, dim_head: int = 64) -> None:
        super().__init__()
        inner = heads * dim_head
        self.heads = heads
        self.dim_head = dim_head
        self.norm_media = nn.LayerNorm(dim)
        self.norm_latents = nn.LayerNorm(dim)
        self.to_q = nn.Linear(dim, inner, bias=False)
        self.to_k = nn.Linear(dim, inner, bias=False)
        self.to_v = nn.Linear(dim, inner, bias=False)
        self.to_out = nn.Linear(inner, dim, bias=False)

    def _split(self, t: torch.Tensor) -> torch.Tensor:
        return t.unflatten(-1, (self.heads, self.dim_head)).transpose(1, 2)

    def forward(self, media: torch.Tensor, latents: torch.Tensor,
                media_mask: Optional[torch.Tensor] = None) -> torch.Tensor:
        """media (B, Nm, dim), latents (B, Nl, dim), media_mask (B, Nm) bool (True = valid).

        Returns the latent update (B, Nl, dim) (the caller adds it to the latents)."""
        if media_mask is not None:
            media = media * media_mask.unsqueeze(-1).to(media.dtype)
        media = self.norm_media(media)
        latents = self.norm_latents(latents)
        q = self._split(self.to_q(latents))
        kv_input = torch.cat((media, latents), dim=1)
        k = self._split(self.to_k(kv_input))
        v = self._split(self.to_v(kv_input))
        attn_mask = None
        if media_mask is not None:
            keep = torch.cat((media_mask.bool(), media_mask.new_ones(latents.shape[:2], dtype=torch.bool)), dim=1)
            attn_mask = keep[:, None, None, :]
        out = F.scaled_dot_product_attention(q, k, v, attn_mask=attn_mask, scale=1.0 / self.dim_head)
        return self.to_out(out.transpose(1, 2).flatten(2))


class QFormerLayer(nn.Module):
    """x = x + cross_attn(x -> context); x = norm(x); x = FiLM(x); x = x + feed_forward(x)."""

    def __init__(self, dim: int, heads: int, ff_mult: int, dropout: float) -> None:
        super().__init__()
        self.cross_attn = MultiHeadAttention(dim, heads, dropout)
        self.norm = nn.LayerNorm(dim)
        self.feed_forward = FeedForward(dim, ff_mult)


class VideoFormerLayer(nn.Module):
    """Per slot Perceiver update, temporal self-attention across slots, norm, FiLM, feed-forward."""

    def __init__(self, dim: int, heads: int, dim_head: int, ff_mult: int, dropout: float) -> None:
        super().__init__()
        self.spatial_attn = PerceiverAttention(dim, heads, dim_head)
        self.temporal_attn = MultiHeadAttention(dim, heads, dropout)
        self.norm = nn.LayerNorm(dim)
        self.feed_forward = FeedForward(dim, ff_mult)


def _language_film(film: FiLM, language: Optional[torch.Tensor], language_mask: Optional[torch.Tensor]):
    if language is None:
        if language_mask is not None:
            raise ValueError("language_mask given without language features")
        return None
    return film(language, language_mask)


# --------------------------------------------------------------------------------------------
# Q-Former (temporal)
# --------------------------------------------------------------------------------------------
class QFormer(nn.Module):
    """Temporal Q-Former: learned queries cross-attend to every token of every history frame.

    Input  features (B, F, N, dim) (already projected to ``dim``), frame_mask (B, F) bool
           (True = valid frame; pad on the oldest side, index 0), language (B, L, language_dim)
           + language_mask (B, L) (optional).
    Output (B, num_latents, dim), whatever F (1 <= F <= max_frames).

    Parameters: ``latents`` (num_latents, dim) queries; ``frame_position_table`` persistent
    buffer (max_frames, dim), read newest-first and projected by ``frame_position_proj``;
    ``layers`` (QFormerLayer x depth); ``film``; ``final_norm``.
    """

    def __init__(self, config: QFormerConfig = QFormerConfig()) -> None:
        super().__init__()
        self.config = config
        self.latents = nn.Parameter(torch.randn(config.num_latents, config.dim))
        self.register_buffer("frame_position_table", frame_position_table(config.max_frames, config.dim),
                             persistent=True)
        self.frame_position_proj = nn.Linear(config.dim, config.dim)
        self.film = FiLM(config.language_dim, config.dim)
        self.layers = nn.ModuleList(
            QFormerLayer(config.dim, config.heads, config.ff_mult, config.dropout) for _ in range(config.depth))
        self.final_norm = nn.LayerNorm(config.dim)

    def frame_position_embedding(self, num_frames: int) -> torch.Tensor:
        """(num_frames, dim) embedding added to frame i: proj(table[num_frames - 1 - i]),
        so the newest frame (last index) gets position 0."""
        if not 1 <= num_frames <= self.config.max_frames:
            raise ValueError(f"history has {num_frames} latent frames; QFormer takes 1..{self.config.max_frames}")
        table = self.frame_position_table[:num_frames].flip(0)
        return self.frame_position_proj(table.to(self.frame_position_proj.weight.dtype))

    def forward(self, features: torch.Tensor, frame_mask: Optional[torch.Tensor] = None,
                language: Optional[torch.Tensor] = None, language_mask: Optional[torch.Tensor] = None
                ) -> torch.Tensor:
        if features.ndim != 4 or features.shape[-1] != self.config.dim:
            raise ValueError(f"QFormer features must be (B, F, N, {self.config.dim}), got {tuple(features.shape)}")
        batch, num_frames, tokens_per_frame, _ = features.shape
        if frame_mask is not None:
            if frame_mask.shape != (batch, num_frames):
                raise ValueError(f"frame mask must be {(batch, num_frames)}, got {tuple(frame_mask.shape)}")
            frame_mask = frame_mask.bool()
            if not bool(frame_mask.any(dim=1).all()):
                raise ValueError("every history in the batch needs at least one valid frame "
                                 "(skip the history for an empty one)")
            if bool(frame_mask.all()):
                frame_mask = None          # same result; lets SDPA use its mask-free (flash) kernels
        film = _language_film(self.film, language, language_mask)

        features = features + self.frame_position_embedding(num_frames)[None, :, None, :]
        context_mask = None
        if frame_mask is not None:
            features = features * frame_mask[:, :, None, None].to(features.dtype)
            context_mask = frame_mask.repeat_interleave(tokens_per_frame, dim=1)   # (B, F*N)
        context = features.flatten(1, 2)                                            # (B, F*N, dim)

        x = self.latents.unsqueeze(0).expand(batch, -1, -1)
        for layer in self.layers:
            x = x + layer.cross_attn(x, context, context_mask)
            x = layer.norm(x)
            if film is not None:
                x = FiLM.modulate(x, *film)
            x = x + layer.feed_forward(x)
        return self.final_norm(x)


# --------------------------------------------------------------------------------------------
# Video-Former (spatial)
# --------------------------------------------------------------------------------------------
class VideoFormer(nn.Module):
    """Perceiver-style Video-Former: per-slot latents resample each slot's tokens, then the
    slots exchange information by temporal self-attention.

    Input  features (B, num_slots, N, input_dim), language (B, L, language_dim) + language_mask
           (B, L) (optional), keyword slot_mask (B, num_slots) bool (optional, True = valid slot;
           the release never passes one: the Q-Former output fills every slot).
    Output (B, num_latents, dim), slot-major (slot 0's latents first).

    Parameters: ``input_proj`` (fc_in: input_dim -> 2 dim, GELU, fc_out: 2 dim -> dim);
    ``latents`` (num_slots, num_latents // num_slots, dim); ``layers`` (VideoFormerLayer x
    depth); ``film``; ``final_norm``.
    """

    def __init__(self, config: VideoFormerConfig = VideoFormerConfig()) -> None:
        super().__init__()
        self.config = config
        self.input_proj = nn.Sequential(OrderedDict(
            fc_in=nn.Linear(config.input_dim, 2 * config.dim),
            act=nn.GELU(),
            fc_out=nn.Linear(2 * config.dim, config.dim),
        ))
        self.latents = nn.Parameter(torch.randn(config.num_slots, config.latents_per_slot, config.dim))
        self.film = FiLM(config.language_dim, config.dim)
        self.layers = nn.ModuleList(
            VideoFormerLayer(config.dim, config.heads, config.dim_head, config.ff_mult, config.dropout)
            for _ in range(config.depth))
        self.final_norm = nn.LayerNorm(config.dim)

    def forward(self, features: torch.Tensor, language: Optional[torch.Tensor] = None,
                language_mask: Optional[torch.Tensor] = None, *, slot_mask: Optional[torch.Tensor] = None
                ) -> torch.Tensor:
        cfg = self.config
        if features.ndim != 4 or features.shape[1] != cfg.num_slots or features.shape[-1] != cfg.input_dim:
            raise ValueError(f"VideoFormer features must be (B, {cfg.num_slots}, N, {cfg.input_dim}), "
                             f"got {tuple(features.shape)}")
        batch, slots, tokens, _ = features.shape
        film = _language_film(self.film, language, language_mask)

        media = self.input_proj(features)
        media_mask = None
        if slot_mask is not None:
            if slot_mask.shape != (batch, slots):
                raise ValueError(f"slot mask must be {(batch, slots)}, got {tuple(slot_mask.shape)}")
            slot_mask = slot_mask.bool()
            media = media * slot_mask[:, :, None, None].to(media.dtype)
            media_mask = slot_mask.reshape(batch * slots, 1).expand(-1, tokens)
        media = media.flatten(0, 1)                                                  # (B*T, N, dim)

        per_slot = cfg.latents_per_slot
        x = self.latents.unsqueeze(0).expand(batch, -1, -1, -1).reshape(batch * slots, per_slot, cfg.dim)
        for layer in self.layers:
            x = x + layer.spatial_attn(media, x, media_mask)                          # (B*T, Q, dim)
            # temporal: for each latent index, the slots attend to each other
            xt = x.reshape(batch, slots, per_slot, cfg.dim).transpose(1, 2).reshape(batch * per_slot, slots, cfg.dim)
            xt = layer.temporal_attn(xt)
            x = x + xt.reshape(batch, per_slot, slots, cfg.dim).transpose(1, 2).reshape(batch * slots, per_slot, cfg.dim)
            x = layer.norm(x)
            if film is not None:
                x = FiLM.modulate(x.reshape(batch, slots * per_slot, cfg.dim), *film).reshape_as(x)
            x = x + layer.feed_forward(x)
        return self.final_norm(x.reshape(batch, slots * per_slot, cfg.dim))


# --------------------------------------------------------------------------------------------
# The authors' checkpoint names
# --------------------------------------------------------------------------------------------
_ATTN = (("query", "to_query"), ("key", "to_key"), ("value", "to_value"), ("c_proj", "to_out"))
_PLACEHOLDERS = {"n": r"\d+", "wb": r"weight|bias"}

# (original name, our name) templates per former, relative to the former's prefix; ``{n}`` is a
# layer index, ``{wb}`` is weight or bias. The original modules are flamingo-style
# ``nn.ModuleList`` rows: Q-Former layer = [Attention, LayerNorm, FeedForward]; Video-Former
# layer = [PerceiverAttentionLayer, Attention, LayerNorm, FeedForward]; feed-forward =
# Sequential(Linear, GELU, Linear) (indices 0 and 2, no biases); attention = key/query/value/
# c_proj Linear with biases; Perceiver = norm_media/norm_latents + to_q/to_k/to_v/to_out without
# biases. ``internal_pos_embedding`` is a persistent buffer, so it is in the checkpoint.
ORIGINAL_KEY_RULES: dict[str, tuple[tuple[str, str], ...]] = {
    "qformer": (
        ("latents", "latents"),
        ("internal_pos_embedding", "frame_position_table"),
        ("pos_embed_proj.{wb}", "frame_position_proj.{wb}"),
        ("film_layer.mlp.0.{wb}", "film.mlp.hidden.{wb}"),
        ("film_layer.mlp.2.{wb}", "film.mlp.to_gamma_beta.{wb}"),
        *((f"layers.{{n}}.0.{name}.{{wb}}", f"layers.{{n}}.cross_attn.{ours}.{{wb}}") for name, ours in _ATTN),
        ("layers.{n}.1.{wb}", "layers.{n}.norm.{wb}"),
        ("layers.{n}.2.0.weight", "layers.{n}.feed_forward.proj_in.weight"),
        ("layers.{n}.2.2.weight", "layers.{n}.feed_forward.proj_out.weight"),
        ("norm.{wb}", "final_norm.{wb}"),
    ),
    "video_former": (
        ("pre_proj.0.{wb}", "input_proj.fc_in.{wb}"),
        ("pre_proj.2.{wb}", "input_proj.fc_out.{wb}"),
        ("latents", "latents"),
        ("film_layer.mlp.0.{wb}", "film.mlp.hidden.{wb}"),
        ("film_layer.mlp.2.{wb}", "film.mlp.to_gamma_beta.{wb}"),
        ("layers.{n}.0.norm_media.{wb}", "layers.{n}.spatial_attn.norm_media.{wb}"),
        ("layers.{n}.0.norm_latents.{wb}", "layers.{n}.spatial_attn.norm_latents.{wb}"),
        *((f"layers.{{n}}.0.{name}.weight", f"layers.{{n}}.spatial_attn.{name}.weight")
          for name in ("to_q", "to_k", "to_v", "to_out")),
        *((f"layers.{{n}}.1.{name}.{{wb}}", f"layers.{{n}}.temporal_attn.{ours}.{{wb}}") for name, ours in _ATTN),
        ("layers.{n}.2.{wb}", "layers.{n}.norm.{wb}"),
        ("layers.{n}.3.0.weight", "layers.{n}.feed_forward.proj_in.weight"),
        ("layers.{n}.3.2.weight", "layers.{n}.feed_forward.proj_out.weight"),
        ("norm.{wb}", "final_norm.{wb}"),
    ),
}


def _template_regex(template: str) -> re.Pattern:
    parts = re.split(r"\{(\w+)\}", template)       # literal, name, literal, name, ...
    regex = "".join(re.escape(part) if i % 2 == 0 else f"(?P<{part}>{_PLACEHOLDERS[part]})"
                    for i, part in enumerate(parts))
    return re.compile(regex)


def _rename(key: str, pairs) -> Optional[str]:
    """Map ``key`` with the first (source regex, target template) pair that matches it fully."""
    for source, target in pairs:
        match = source.fullmatch(key)
        if match:
            return target.format(**match.groupdict())
    return None


def _compiled_rules(former: str, inverse: bool):
    rules = ORIGINAL_KEY_RULES[former]
    return [(_template_regex(ours if inverse else original), original if inverse else ours)
            for original, ours in rules]


def _former_kind(prefix: str, former: Optional[str]) -> str:
    kind = former if former is not None else prefix.rstrip(".").rsplit(".", 1)[-1]
    if kind not in ORIGINAL_KEY_RULES:
        raise ValueError(f"former must be one of {sorted(ORIGINAL_KEY_RULES)} (given, or the last component "
                         f"of the prefix), got prefix={prefix!r} former={former!r}")
    return kind


def convert_original_former_keys(state_dict: Mapping[str, torch.Tensor], prefix: str,
                                 former: Optional[str] = None) -> dict[str, torch.Tensor]:
    """Map the authors' parameter names of ONE former onto our module's names.

    state_dict: e.g. the whole ``svn_ckpt`` state dict; only the keys under ``prefix``
      (``"vgm.qformer."``; the trailing dot is optional) are read, with the prefix stripped.
      ``prefix=""`` reads every key (a state dict of that former alone).
    former: ``"qformer"`` or ``"video_former"``; by default the last component of the prefix.
    Returns {our key: tensor}, ready for ``QFormer/VideoFormer.load_state_dict(strict=True)``.
    Raises KeyError naming the first key under the prefix that no rule maps.
    """
    kind = _former_kind(prefix, former)
    strip = prefix.rstrip(".") + "." if prefix else ""
    pairs = _compiled_rules(kind, inverse=False)
    converted: dict[str, torch.Tensor] = {}
    for key, value in state_dict.items():
        if not key.startswith(strip):
            continue
        ours = _rename(key[len(strip):], pairs)
        if ours is None:
            raise KeyError(f"no rule maps original {kind} key {key!r}")
        converted[ours] = value
    return converted


def convert_to_original_former_keys(state_dict: Mapping[str, torch.Tensor], former: str,
                                    prefix: str = "") -> dict[str, torch.Tensor]:
    """Inverse of :func:`convert_original_former_keys`: our names -> the authors' names.

    state_dict: a QFormer/VideoFormer state dict (our names); former: ``"qformer"`` or
    ``"video_former"``; ``prefix`` is prepended to every output key as given (e.g.
    ``"vgm.qformer."``). Raises KeyError naming a key no rule maps.
    """
    kind = _former_kind("", former)
    pairs = _compiled_rules(kind, inverse=True)
    out: dict[str, torch.Tensor] = {}
    for key, value in state_dict.items():
        original = _rename(key, pairs)
        if original is None:
            raise KeyError(f"no rule maps our {kind} key {key!r} to an original name")
        out[prefix + original] = value
    return out
