"""JanusVLN's spatial encoder: the VGGT-1B aggregator with a KV-cache spatial memory.

Facts (docs/janusvln.md; the authors' code and facebookresearch/vggt; written from them, not copied):
  * DINOv2-L/14 patch embedding (with 4 registers; its own 24 blocks, LayerScale, final norm; its 37x37
    position table interpolated bicubic + antialias to the frame's patch grid); images in [0, 1] are
    ImageNet-normalised first. The aggregator keeps the normalised patch tokens.
  * Per frame: 1 camera token + 4 register tokens + patch tokens (the first frame of an episode uses slot 0
    of the (1, 2, ...) special-token tables, every later frame slot 1).
  * 24 frame-attention and 24 global-attention blocks, alternating (frame then global); dim 1024, 16 heads
    of 64, LayerNorm on q and k, 2-D RoPE (base 100; first half of each head rotates with the patch row,
    second half with the column; positions are (row + 1, col + 1), special tokens sit at 0), LayerScale.
  * Layer i's output is frame_i || global_i (2048-d); JanusVLN uses layer 23 of 24 (index -2).
  * Spatial memory: the global blocks keep every cached frame's keys/values; each step runs only the new
    frame, which attends to the cached frames and to itself. After the step the cache keeps the first
    `initial_window` frames (8) and the last `sliding_window` (48).

Differences from the release that do not change any output:
  * cached keys are stored after q/k-norm and RoPE (the release caches them before and re-applies both every
    step): both are per-token functions of the frame alone, and RoPE positions are intra-frame, so the
    attention inputs are identical;
  * layers after the one that is read (the 24th for layer index -2) are not run and not cached: nothing
    reads them;
  * the cache is a fixed ring of initial + sliding + 1 frame slots written in place (attention over cached
    frames is order-free: no temporal position exists), instead of concatenating tensors every step.
"""
from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Any, Optional

import torch
import torch.nn.functional as F
from torch import nn

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


@dataclass(frozen=True)
class AggregatorConfig:
    """Sizes of the aggregator; the defaults are VGGT-1B (the checkpoint the authors fine-tuned)."""

    img_size: int = 518  # the DINOv2 position table covers img_size / patch_size patches per side (37)
    patch_size: int = 14
    embed_dim: int = 1024
    depth: int = 24
    num_heads: int = 16
    mlp_ratio: float = 4.0
    num_register_tokens: int = 4
    patch_embed_depth: int = 24  # DINOv2-L
    patch_embed_num_heads: int = 16
    rope_frequency: float = 100.0

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> "AggregatorConfig":
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise ValueError(f"unknown aggregator config fields {unknown}; known: {sorted(known)}")
        return cls(**values)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @property
    def patch_start(self) -> int:
        """Index of the first patch token of a frame (after the camera and register tokens)."""
        return 1 + self.num_register_tokens


class LayerScale(nn.Module):
    def __init__(self, dim: int, init_value: float = 1.0) -> None:
        super().__init__()
        self.gamma = nn.Parameter(torch.full((dim,), float(init_value)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.gamma


class Mlp(nn.Module):
    def __init__(self, dim: int, hidden: int) -> None:
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.act = nn.GELU()
        self.fc2 = nn.Linear(hidden, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(self.act(self.fc1(x)))


# -- DINOv2 patch embedding ------------------------------------------------------------------------

class _DinoAttention(nn.Module):
    def __init__(self, dim: int, num_heads: int) -> None:
        super().__init__()
        self.num_heads = num_heads
        self.qkv = nn.Linear(dim, dim * 3)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, n, c = x.shape
        q, k, v = self.qkv(x).reshape(b, n, 3, self.num_heads, c // self.num_heads).permute(2, 0, 3, 1, 4).unbind(0)
        return self.proj(F.scaled_dot_product_attention(q, k, v).transpose(1, 2).reshape(b, n, c))


class _DinoBlock(nn.Module):
    def __init__(self, dim: int, num_heads: int, mlp_ratio: float) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(dim, eps=1e-6)
        self.attn = _DinoAttention(dim, num_heads)
        self.ls1 = LayerScale(dim)
        self.norm2 = nn.LayerNorm(dim, eps=1e-6)
        self.mlp = Mlp(dim, int(dim * mlp_ratio))
        self.ls2 = LayerScale(dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.ls1(self.attn(self.norm1(x)))
        return x + self.ls2(self.mlp(self.norm2(x)))


class _ConvPatchEmbed(nn.Module):
    def __init__(self, patch_size: int, dim: int) -> None:
        super().__init__()
        self.proj = nn.Conv2d(3, dim, kernel_size=patch_size, stride=patch_size)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.proj(x).flatten(2).transpose(1, 2)


class DinoV2PatchEmbed(nn.Module):
    """DINOv2 ViT with registers, used as VGGT's patch embedding (keys `patch_embed.*` of the aggregator)."""

    def __init__(self, config: AggregatorConfig) -> None:
        super().__init__()
        dim = config.embed_dim
        self.patch_size = config.patch_size
        self.num_register_tokens = config.num_register_tokens
        grid = config.img_size // config.patch_size
        self.patch_embed = _ConvPatchEmbed(config.patch_size, dim)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, dim))
        self.pos_embed = nn.Parameter(torch.zeros(1, 1 + grid * grid, dim))
        self.register_tokens = nn.Parameter(torch.zeros(1, config.num_register_tokens, dim))
        self.mask_token = nn.Parameter(torch.zeros(1, dim))  # training only; kept so checkpoints load strictly
        self.blocks = nn.ModuleList(_DinoBlock(dim, config.patch_embed_num_heads, config.mlp_ratio)
                                    for _ in range(config.patch_embed_depth))
        self.norm = nn.LayerNorm(dim, eps=1e-6)
        self._pos_cache: dict[tuple, torch.Tensor] = {}

    def position_embedding(self, rows: int, cols: int, dtype: torch.dtype) -> torch.Tensor:
        """(1, 1 + rows*cols, dim): the class position plus the patch table resized to rows x cols (cached)."""
        key = (rows, cols, dtype, self.pos_embed.device, self.pos_embed.data_ptr(), self.pos_embed._version)
        cached = self._pos_cache.get(key)
        if cached is not None:
            return cached
        table = self.pos_embed.float()
        count = table.shape[1] - 1
        side = int(math.isqrt(count))
        if rows * cols == count and rows == cols:
            result = self.pos_embed
        else:
            patches = table[:, 1:].reshape(1, side, side, -1).permute(0, 3, 1, 2)
            patches = F.interpolate(patches, size=(rows, cols), mode="bicubic", antialias=True)
            patches = patches.permute(0, 2, 3, 1).reshape(1, rows * cols, -1)
            result = torch.cat([table[:, :1], patches], dim=1).to(dtype)
        self._pos_cache.clear()
        self._pos_cache[key] = result
        return result

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """(N, 3, H, W) normalised -> (N, rows*cols, dim) normalised patch tokens."""
        n, _, height, width = images.shape
        x = self.patch_embed(images)
        x = torch.cat([self.cls_token.expand(n, -1, -1).to(x.dtype), x], dim=1)
        x = x + self.position_embedding(height // self.patch_size, width // self.patch_size, x.dtype)
        x = torch.cat([x[:, :1], self.register_tokens.expand(n, -1, -1).to(x.dtype), x[:, 1:]], dim=1)
        for block in self.blocks:
            x = block(x)
        return self.norm(x)[:, 1 + self.num_register_tokens:]


# -- aggregator blocks -----------------------------------------------------------------------------

class Rope2D:
    """VGGT's 2-D rotary embedding: half of each head per axis, rotate-half convention, base `frequency`."""

    def __init__(self, frequency: float) -> None:
        self.frequency = float(frequency)
        self._cache: dict[tuple, tuple[torch.Tensor, torch.Tensor]] = {}

    def tables(self, positions: torch.Tensor, head_dim: int, dtype: torch.dtype,
               key: Optional[tuple] = None) -> tuple[torch.Tensor, torch.Tensor]:
        """positions (P, 2) -> cos, sin (P, head_dim) laid out as [row half | column half] (cached by `key`)."""
        key = None if key is None else (key, positions.device, head_dim, dtype)
        if key is not None and key in self._cache:
            return self._cache[key]
        half = head_dim // 2
        inv_freq = 1.0 / (self.frequency ** (torch.arange(0, half, 2, device=positions.device).float() / half))
        steps = torch.arange(int(positions.max()) + 1, device=positions.device, dtype=inv_freq.dtype)
        angles = torch.outer(steps, inv_freq).to(dtype)
        angles = torch.cat([angles, angles], dim=-1)
        cos, sin = angles.cos().to(dtype), angles.sin().to(dtype)
        rows, cols = positions[:, 0], positions[:, 1]
        result = (torch.cat([cos[rows], cos[cols]], dim=-1), torch.cat([sin[rows], sin[cols]], dim=-1))
        if key is not None:
            if len(self._cache) > 8:
                self._cache.clear()
            self._cache[key] = result
        return result

    @staticmethod
    def apply(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
        """x (..., P, D) with tables (P, D): each half is rotated on its own (rotate-half within the half)."""
        half = x.shape[-1] // 2

        def rotate(t: torch.Tensor) -> torch.Tensor:
            a, b = t.chunk(2, dim=-1)
            return torch.cat([-b, a], dim=-1)

        rotated = torch.cat([rotate(x[..., :half]), rotate(x[..., half:])], dim=-1)
        return x * cos + rotated * sin


class _QKNormAttention(nn.Module):
    def __init__(self, dim: int, num_heads: int) -> None:
        super().__init__()
        self.num_heads = num_heads
        self.head_dim = dim // num_heads
        self.qkv = nn.Linear(dim, dim * 3)
        self.q_norm = nn.LayerNorm(self.head_dim)
        self.k_norm = nn.LayerNorm(self.head_dim)
        self.proj = nn.Linear(dim, dim)

    def qkv_heads(self, x: torch.Tensor, rope: tuple[torch.Tensor, torch.Tensor]):
        """(B, N, C) -> q, k, v (B, heads, N, head_dim), q/k normalised and rotated."""
        b, n, c = x.shape
        q, k, v = self.qkv(x).reshape(b, n, 3, self.num_heads, self.head_dim).permute(2, 0, 3, 1, 4).unbind(0)
        q, k = self.q_norm(q), self.k_norm(k)
        cos, sin = rope
        return Rope2D.apply(q, cos, sin), Rope2D.apply(k, cos, sin), v

    def output(self, attended: torch.Tensor) -> torch.Tensor:
        b, _, n, _ = attended.shape
        return self.proj(attended.transpose(1, 2).reshape(b, n, self.num_heads * self.head_dim))


class AttentionBlock(nn.Module):
    """One frame- or global-attention block (pre-norm, LayerScale, GELU MLP; keys as in VGGT's Block)."""

    def __init__(self, dim: int, num_heads: int, mlp_ratio: float) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(dim)
        self.attn = _QKNormAttention(dim, num_heads)
        self.ls1 = LayerScale(dim, 0.01)
        self.norm2 = nn.LayerNorm(dim)
        self.mlp = Mlp(dim, int(dim * mlp_ratio))
        self.ls2 = LayerScale(dim, 0.01)

    def forward(self, x: torch.Tensor, rope, mask: Optional[torch.Tensor] = None) -> torch.Tensor:
        q, k, v = self.attn.qkv_heads(self.norm1(x), rope)
        return self.finish(x, F.scaled_dot_product_attention(q, k, v, attn_mask=mask))

    def finish(self, x: torch.Tensor, attended: torch.Tensor) -> torch.Tensor:
        x = x + self.ls1(self.attn.output(attended))
        return x + self.ls2(self.mlp(self.norm2(x)))


# -- spatial memory --------------------------------------------------------------------------------

class SpatialMemory:
    """Per-global-layer KV cache of whole frames: the first `initial_window` frames plus the last `sliding_window`.

    A ring of initial + sliding + 1 frame slots per layer, allocated at the first frame: the new frame is
    written into a free slot, attends to every occupied slot (itself included), and the oldest frame outside
    the initial window is evicted once more than initial + sliding frames are held.
    """

    def __init__(self, initial_window: int = 8, sliding_window: int = 48,
                 dtype: Optional[torch.dtype] = None) -> None:
        if initial_window < 0 or sliding_window < 1:
            raise ValueError(f"need initial_window >= 0 and sliding_window >= 1, got {initial_window}, "
                             f"{sliding_window}")
        self.initial_window = int(initial_window)
        self.sliding_window = int(sliding_window)
        self.dtype = dtype  # storage dtype of the keys/values (None = the compute dtype); attention casts back
        self.slots = self.initial_window + self.sliding_window + 1
        self.reset()

    def reset(self) -> None:
        self.keys: list[torch.Tensor] = []  # per cached layer: (1, heads, slots, tokens, head_dim)
        self.values: list[torch.Tensor] = []
        self.slot_frame: list[Optional[int]] = [None] * self.slots
        self.frames_seen = 0
        self._slot: Optional[int] = None

    @property
    def frame_indices(self) -> list[int]:
        """Episode frame indices held after the last step, oldest first."""
        return sorted(f for f in self.slot_frame if f is not None)

    @property
    def nbytes(self) -> int:
        return sum(t.numel() * t.element_size() for t in self.keys + self.values)

    def begin_frame(self) -> int:
        """Pick the slot of the next frame (the lowest free one) and return the frame's episode index."""
        self._slot = self.slot_frame.index(None)
        return self.frames_seen

    def attend(self, layer: int, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        """Store the new frame's k, v (1, heads, tokens, head_dim) for `layer`, attend q over all held frames."""
        if self._slot is None:
            raise RuntimeError("SpatialMemory.attend outside begin_frame/end_frame")
        if layer == len(self.keys):
            shape = (k.shape[0], k.shape[1], self.slots, k.shape[2], k.shape[3])
            self.keys.append(torch.zeros(shape, dtype=self.dtype or k.dtype, device=k.device))
            self.values.append(torch.zeros(shape, dtype=self.dtype or v.dtype, device=v.device))
        keys, values = self.keys[layer], self.values[layer]
        if keys.shape[3] != k.shape[2]:
            raise ValueError(f"frame has {k.shape[2]} tokens, the spatial memory holds {keys.shape[3]}-token frames "
                             f"(the image size must not change within an episode)")
        keys[:, :, self._slot] = k
        values[:, :, self._slot] = v
        held = max(i for i, f in enumerate(self.slot_frame) if f is not None or i == self._slot) + 1
        b, h, _, n, d = keys.shape
        # A view (slots are contiguous per head); a copy in q's dtype only when stored in another dtype.
        return F.scaled_dot_product_attention(q, keys[:, :, :held].reshape(b, h, held * n, d).to(q.dtype),
                                              values[:, :, :held].reshape(b, h, held * n, d).to(q.dtype))

    def end_frame(self) -> None:
        """Commit the new frame and evict the oldest frame outside the initial window when over capacity."""
        self.slot_frame[self._slot] = self.frames_seen
        self.frames_seen += 1
        self._slot = None
        held = [f for f in self.slot_frame if f is not None]
        if len(held) > self.initial_window + self.sliding_window:
            oldest = min(f for f in held if f >= self.initial_window)
            self.slot_frame[self.slot_frame.index(oldest)] = None


def window_mask(frames: int, tokens: int, initial_window: Optional[int], sliding_window: Optional[int],
                device: torch.device) -> torch.Tensor:
    """(frames*tokens)^2 bool mask of what streaming with the spatial memory lets frame i see: frames j <= i
    with j < initial_window or j >= i - sliding_window (all j <= i when the windows are None)."""
    index = torch.arange(frames, device=device)
    i, j = index[:, None], index[None, :]
    allowed = j <= i
    if initial_window is not None and sliding_window is not None:
        allowed &= (j < initial_window) | (j >= i - sliding_window)
    return allowed.repeat_interleave(tokens, dim=0).repeat_interleave(tokens, dim=1)


# -- the aggregator --------------------------------------------------------------------------------

class Aggregator(nn.Module):
    """VGGT's aggregator (keys as `vggt.aggregator.*` in the JanusVLN checkpoint)."""

    def __init__(self, config: AggregatorConfig) -> None:
        super().__init__()
        self.config = config
        dim = config.embed_dim
        self.patch_embed = DinoV2PatchEmbed(config)
        self.frame_blocks = nn.ModuleList(AttentionBlock(dim, config.num_heads, config.mlp_ratio)
                                          for _ in range(config.depth))
        self.global_blocks = nn.ModuleList(AttentionBlock(dim, config.num_heads, config.mlp_ratio)
                                           for _ in range(config.depth))
        self.camera_token = nn.Parameter(torch.zeros(1, 2, 1, dim))
        self.register_token = nn.Parameter(torch.zeros(1, 2, config.num_register_tokens, dim))
        self.register_buffer("_mean", torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("_std", torch.tensor(IMAGENET_STD).view(1, 3, 1, 1), persistent=False)
        self.rope = Rope2D(config.rope_frequency)

    @property
    def head_dim(self) -> int:
        return self.config.embed_dim // self.config.num_heads

    def _layer_index(self, layer: int) -> int:
        index = layer % self.config.depth
        if not -self.config.depth <= layer < self.config.depth:
            raise ValueError(f"aggregator layer {layer} out of range for depth {self.config.depth}")
        return index

    def _positions(self, rows: int, cols: int, device: torch.device) -> torch.Tensor:
        grid = torch.cartesian_prod(torch.arange(rows, device=device), torch.arange(cols, device=device)) + 1
        special = torch.zeros(self.config.patch_start, 2, dtype=grid.dtype, device=device)
        return torch.cat([special, grid], dim=0)

    def embed(self, images: torch.Tensor, first_frame: torch.Tensor) -> tuple[torch.Tensor, tuple]:
        """images (S, 3, H, W) in [0, 1]; first_frame (S,) bool -> tokens (S, P, C) and the RoPE tables."""
        s, _, height, width = images.shape
        p = self.config.patch_size
        if height % p or width % p:
            raise ValueError(f"aggregator input {height}x{width} is not a multiple of the {p}-pixel patch")
        dtype = self.camera_token.dtype
        patches = self.patch_embed(((images.to(self._mean.dtype) - self._mean) / self._std).to(dtype))
        slot = (~first_frame).long().to(images.device)
        special = torch.cat([self.camera_token[0, slot], self.register_token[0, slot]], dim=1)
        tokens = torch.cat([special.to(patches.dtype), patches], dim=1)
        positions = self._positions(height // p, width // p, images.device)
        return tokens, self.rope.tables(positions, self.head_dim, tokens.dtype, key=(height // p, width // p))

    def forward_step(self, image: torch.Tensor, memory: SpatialMemory, layer: int = -2) -> torch.Tensor:
        """One new frame (3, H, W) in [0, 1] against the spatial memory -> layer `layer` output (P, 2C).

        Only the new frame is computed; its global-block keys/values join the memory.
        """
        last = self._layer_index(layer)
        frame_index = memory.begin_frame()
        try:
            first = torch.tensor([frame_index == 0])
            x, rope = self.embed(image.unsqueeze(0), first)
            for i in range(last + 1):
                x = self.frame_blocks[i](x, rope)
                frame_out = x
                block = self.global_blocks[i]
                q, k, v = block.attn.qkv_heads(block.norm1(x), rope)
                x = block.finish(x, memory.attend(i, q, k, v))
        except BaseException:
            memory._slot = None
            raise
        memory.end_frame()
        return torch.cat([frame_out, x], dim=-1)[0]

    def forward_frames(self, images: torch.Tensor, layer: int = -2, initial_window: Optional[int] = None,
                       sliding_window: Optional[int] = None) -> torch.Tensor:
        """Recompute: all frames (S, 3, H, W) at once, frame i attending to frames j <= i (within the windows
        when given: the same frames the spatial memory keeps) -> (S, P, 2C). Frame 0 is the episode's first.

        Global attention runs frame by frame over the frames each may see (no (S*P)^2 mask is built)."""
        last = self._layer_index(layer)
        s = images.shape[0]
        first = torch.arange(s) == 0
        x, rope = self.embed(images, first)
        visible = [visible_frames(i, initial_window, sliding_window) for i in range(s)]
        for i in range(last + 1):
            x = self.frame_blocks[i](x, rope)
            frame_out = x
            block = self.global_blocks[i]
            q, k, v = block.attn.qkv_heads(block.norm1(x), rope)  # (S, heads, P, D): frames as the batch
            attended = torch.cat([self._attend_frames(q[f:f + 1], k, v, visible[f]) for f in range(s)])
            x = block.finish(x, attended)
        return torch.cat([frame_out, x], dim=-1)

    @staticmethod
    def _attend_frames(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, frames: range | list) -> torch.Tensor:
        """q (1, heads, P, D) over the keys/values of `frames` of k, v (S, heads, P, D)."""
        index = torch.as_tensor(list(frames), device=k.device)
        _, h, p, d = k.shape
        keys = k[index].permute(1, 0, 2, 3).reshape(1, h, len(index) * p, d)
        values = v[index].permute(1, 0, 2, 3).reshape(1, h, len(index) * p, d)
        return F.scaled_dot_product_attention(q, keys, values)


def visible_frames(i: int, initial_window: Optional[int], sliding_window: Optional[int]) -> list[int]:
    """Frames that frame i attends to when streaming with the spatial memory (all j <= i without windows)."""
    if initial_window is None or sliding_window is None:
        return list(range(i + 1))
    return sorted(set(range(min(i + 1, initial_window))) | set(range(max(0, i - sliding_window), i + 1)))


class SpatialEncoder(nn.Module):
    """Holder of the aggregator, so checkpoint keys read `vggt.aggregator.*` as in the release."""

    def __init__(self, config: AggregatorConfig) -> None:
        super().__init__()
        self.aggregator = Aggregator(config)
