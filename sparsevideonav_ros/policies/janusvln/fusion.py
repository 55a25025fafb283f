"""Spatial -> semantic fusion: the `merger` projector and the token alignment with Qwen's merged visual tokens.

Facts (docs/janusvln.md; the authors' VGGTMerger): features are the aggregator's layer output
(frame || global, 2 x 1024) of the current frame's patch tokens; the patch grid is cropped to even rows and
columns and grouped 2 x 2 in Qwen's merged-token raster order (row-major over 2x2 groups, each group
row-major); the projector is RMSNorm(2048, eps 1e-6) on each token -> the 4 tokens of a group concatenated
(8192) -> Linear 8192->4096 -> GELU -> Linear 4096->hidden (3584). The result is added to Qwen's merged
visual tokens with weight lambda (0.2) before they are placed in the text sequence.
"""
from __future__ import annotations

import torch
from torch import nn


class RMSNorm(nn.Module):
    """Qwen2-style RMSNorm (statistics in float32), keys `weight`."""

    def __init__(self, dim: int, eps: float = 1e-6) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.ones(dim))
        self.eps = eps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        dtype = x.dtype
        x = x.float()
        x = x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + self.eps)
        return self.weight * x.to(dtype)


class SpatialMerger(nn.Module):
    """The `merger.*` projector: (groups, 4, context_dim) grouped patch features -> (groups, output_dim)."""

    def __init__(self, output_dim: int, hidden_dim: int = 4096, context_dim: int = 2048, merge_size: int = 2) -> None:
        super().__init__()
        self.input_dim = context_dim * merge_size * merge_size
        self.ln_q = RMSNorm(context_dim)
        self.mlp = nn.Sequential(nn.Linear(self.input_dim, hidden_dim), nn.GELU(), nn.Linear(hidden_dim, output_dim))

    def forward(self, grouped: torch.Tensor) -> torch.Tensor:
        return self.mlp(self.ln_q(grouped).reshape(-1, self.input_dim))


def aligned_grid(rows: int, cols: int, merge_size: int = 2) -> tuple[int, int]:
    """Patch grid kept for fusion and for Qwen: rows and columns cut down to multiples of `merge_size`."""
    return rows // merge_size * merge_size, cols // merge_size * merge_size


def group_patch_features(features: torch.Tensor, rows: int, cols: int, patch_start: int,
                         merge_size: int = 2) -> torch.Tensor:
    """One frame's aggregator output (patch_start + rows*cols, D) -> (groups, merge^2, D) in Qwen's merged order.

    The grid is cropped at the bottom/right to even rows/columns (35 x 46 -> 34 x 46 -> 17 x 23 groups).
    """
    patches = features[patch_start:]
    if patches.shape[0] != rows * cols:
        raise ValueError(f"expected {rows}x{cols} patch features after {patch_start} special tokens, "
                         f"got {patches.shape[0]}")
    keep_rows, keep_cols = aligned_grid(rows, cols, merge_size)
    grid = patches.reshape(rows, cols, -1)[:keep_rows, :keep_cols]
    m = merge_size
    grid = grid.reshape(keep_rows // m, m, keep_cols // m, m, -1).permute(0, 2, 1, 3, 4)
    return grid.reshape(-1, m * m, grid.shape[-1])


def fuse(visual_tokens: torch.Tensor, spatial_tokens: torch.Tensor, lam: float) -> torch.Tensor:
    """Qwen merged visual tokens (N*k, hidden) + lam * spatial tokens (N, hidden), the spatial tokens repeated
    for each of the k images (the release adds the current frame's spatial tokens to every image)."""
    if visual_tokens.shape[0] % spatial_tokens.shape[0] or visual_tokens.shape[1] != spatial_tokens.shape[1]:
        raise ValueError(f"cannot align {tuple(spatial_tokens.shape)} spatial tokens with "
                         f"{tuple(visual_tokens.shape)} visual tokens")
    repeats = visual_tokens.shape[0] // spatial_tokens.shape[0]
    return visual_tokens + lam * spatial_tokens.to(visual_tokens.dtype).repeat(repeats, 1)
