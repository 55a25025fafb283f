"""Random weights for the small generated test models (`checkpoint: tiny` of any policy).

The real model classes keep their own initialisation: zero-initialised output layers, adaLN-zero gates, a
history attention that starts as the identity, a FiLM that starts near zero. That is right for training from
scratch (and irrelevant for a trained checkpoint, whose weights replace it), but an *untrained* model built
that way ignores most of its inputs: a zero output layer predicts the same action whatever the frames, the
instruction, the seed or the other weights. A test run on such a model cannot fail when a frame, an
instruction or a weight is lost on the way. Test models therefore go through :func:`randomize_` after
construction; nothing else calls it.
"""
from __future__ import annotations

import hashlib
import inspect
from typing import Any

import torch
from torch import nn

NORM_GAIN_STD = 0.1  # norm gains 1 + N(0, 0.1^2): random, and still a normalisation
BIAS_STD = 0.1  # 1-D parameters (biases, per-channel tables): large enough to shift activations
TABLE_STD = 0.3  # adaLN shift/scale/gate tables: gates of this size let every gated path matter
TABLE_NAMES = ("modulation", "scale_shift_table", "out_modulation")


def _is_norm(module: nn.Module) -> bool:
    # LayerNorm, RMSNorm, GroupNorm, FP32LayerNorm, WanRMS_norm, UMT5LayerNorm, Qwen2RMSNorm, ...
    return "norm" in type(module).__name__.lower()


def randomize_(module: nn.Module, seed: int) -> nn.Module:
    """Draw every parameter of `module` (in place, in named order, from its own generator seeded `seed`).

    Weights with >= 2 dims (linear, conv, embedding, latent queries, positional tables): N(0, 1/fan_in), fan_in =
    the product of all but the first dim, so activations stay O(1) through the layers. Norm gains:
    1 + N(0, 0.1^2); norm biases and other 1-D parameters: N(0, 0.1^2); adaLN tables (`modulation`,
    `scale_shift_table`): N(0, 0.3^2). No parameter is left at zero or at a constant. Buffers (RoPE tables,
    norm statistics) are not touched. Returns `module`.
    """
    generator = torch.Generator().manual_seed(int(seed))
    with torch.no_grad():
        for owner in module.modules():
            norm = _is_norm(owner)
            for name, parameter in owner.named_parameters(recurse=False):
                if parameter.is_meta:
                    raise ValueError(f"cannot draw {name} of {type(owner).__name__}: it is on the meta device")
                noise = torch.randn(parameter.shape, generator=generator, dtype=torch.float32)
                if norm:
                    value = noise * NORM_GAIN_STD + (0.0 if name == "bias" else 1.0)
                elif name in TABLE_NAMES:
                    value = noise * TABLE_STD
                elif parameter.ndim >= 2:
                    value = noise * parameter[0].numel() ** -0.5
                else:
                    value = noise * BIAS_STD
                parameter.copy_(value.to(parameter.dtype))
    return module


def source_digest(*parts: Any) -> str:
    """12 hex digits naming what a generated model is built from: the source of each function/class/module given
    (others by repr) and the torch/diffusers/transformers versions, whose constructors the build also runs.
    A cache folder named with it is rebuilt whenever any of them changes, so a stale model is never reused."""
    import diffusers
    import transformers

    digest = hashlib.sha256()
    for part in (*parts, torch.__version__, diffusers.__version__, transformers.__version__):
        text = inspect.getsource(part) if inspect.isfunction(part) or inspect.isclass(part) or inspect.ismodule(part) \
            else repr(part)
        digest.update(text.encode("utf-8"))
        digest.update(b"\0")
    return digest.hexdigest()[:12]
