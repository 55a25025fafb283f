"""Weight quantisation of JanusVLN's language model (``janusvln.quantization``: none | int8 | nf4).

Backend: torchao (pinned in requirements.txt). Why torchao, of the three maintained candidates:
  * torchao (PyTorch's own quantisation library): weight-only int8 (``Int8WeightOnlyConfig``: symmetric per
    output row, int8 data + a float32 scale and an int8 zero point per row) and NF4 (``NF4WeightOnlyConfig``:
    QLoRA's 4-bit NormalFloat, blocks of 64 weights with double-quantised int8 block scales) are tensor
    subclasses in plain PyTorch: the same code runs on CPU (the tests quantise the tiny model here) and CUDA,
    the wheel has no dependencies (installs beside torch==2.13.0 without pulling another torch), and it is
    released with PyTorch.
  * bitsandbytes (LLM.int8 / NF4 as transformers' BitsAndBytesConfig uses them): the fastest 4-bit decode
    kernels, but CUDA-first (its CPU backend is partial), so the quantised path could not be tested where the
    project's tests run.
  * optimum-quanto (qint8 / qint4): CPU and CUDA, but its last release is from 2025-03 (maintenance mode).
Trade-off: torchao's weight-only matmuls dequantise the weight per call (``Int8Tensor`` casts the int8 matrix
to the activation dtype, ``NF4Tensor`` dequantises to it): memory is the point, speed at batch 1 decode is
not better than bf16. memory_plan.py counts that transient (the largest quantised matrix in compute dtype).

What is quantised: the nn.Linear layers of Qwen's language-model decoder layers (q/k/v/o and the gate/up/down
MLP: 6.5 of the 7.6 B language-model parameters). The token embedding and lm_head (as transformers' bnb path
skips lm_head by default), Qwen's ViT, the VGGT aggregator and the spatial merger stay in ``janusvln.dtype``:
the spatial features feed the fusion unchanged (their quantisation was not measured).

Each decoder layer is moved to the device and quantised there one at a time, so loading never holds more than
one unquantised layer on the device.
"""
from __future__ import annotations

import math
from typing import Iterable

import torch
from torch import nn

QUANTIZATIONS = ("none", "int8", "nf4")
NF4_BLOCK_SIZE = 64  # torchao NF4WeightOnlyConfig defaults (QLoRA's)
NF4_SCALER_BLOCK_SIZE = 256


def quantized_linears(qwen) -> Iterable[tuple[str, nn.Linear]]:
    """(name, module) of every nn.Linear the quantisation replaces: those of the decoder layers."""
    for index, layer in enumerate(qwen.model.language_model.layers):
        for name, module in layer.named_modules():
            if isinstance(module, nn.Linear):
                yield f"qwen.model.language_model.layers.{index}.{name}", module


def nf4_scaler_block_size(numel: int) -> int:
    """torchao needs the number of 64-weight blocks divisible by the scaler block size: 256 (its default; every
    matrix of Qwen2.5-VL-7B) or, for small matrices (the tiny model), the largest power of two dividing it."""
    blocks = numel // NF4_BLOCK_SIZE
    return math.gcd(blocks, NF4_SCALER_BLOCK_SIZE)


def nf4_supported(weight_shape: tuple[int, ...]) -> bool:
    return len(weight_shape) == 2 and math.prod(weight_shape) % NF4_BLOCK_SIZE == 0


def quantized_weight_bytes(out_features: int, in_features: int, quantization: str, dtype: torch.dtype) -> int:
    """Bytes of one quantised Linear weight as torchao stores it (its inner tensors; tests measure them):

    int8: out*in int8 + per row a float32 scale and an int8 zero point -> out*in + 5*out.
    nf4:  out*in / 2 bytes of 4-bit codes + one int8 scaler per 64-weight block + per scaler block
          (256 blocks) one factor in `dtype` + a mean and the 16-entry NF4 table in `dtype`.
    A matrix NF4 cannot take (not a multiple of 64 weights) stays in `dtype`.
    """
    element = torch.empty((), dtype=dtype).element_size()
    numel = out_features * in_features
    if quantization == "none":
        return numel * element
    if quantization == "int8":
        return numel + out_features * (4 + 1)
    if quantization == "nf4":
        if not nf4_supported((out_features, in_features)):
            return numel * element
        blocks = numel // NF4_BLOCK_SIZE
        return numel // 2 + blocks + (blocks // nf4_scaler_block_size(numel)) * element + element + 16 * element
    raise ValueError(f"quantization must be one of {QUANTIZATIONS}, got {quantization!r}")


def _config(quantization: str, numel: int):
    if quantization == "int8":
        from torchao.quantization import Int8WeightOnlyConfig
        # set_inductor_config False: torchao would otherwise change torch._inductor's process-wide settings.
        return Int8WeightOnlyConfig(set_inductor_config=False)
    # torchao 0.18 keeps its NF4 module transform under prototype/ (the NF4Tensor itself is in
    # torchao.quantization): one reason the version is pinned exactly.
    from torchao.prototype._nf4tensor_api import NF4WeightOnlyConfig
    config = NF4WeightOnlyConfig()
    config.block_size = NF4_BLOCK_SIZE
    config.scaler_block_size = nf4_scaler_block_size(numel)
    return config


def quantize_language_model(qwen, quantization: str, device: str) -> int:
    """Move Qwen's decoder layers to `device` one by one, quantising their Linear weights there (in place).
    Returns the number of matrices quantised. `none` only moves them."""
    if quantization not in QUANTIZATIONS:
        raise ValueError(f"quantization must be one of {QUANTIZATIONS}, got {quantization!r}")
    count = 0
    for layer in qwen.model.language_model.layers:
        layer.to(device)
        if quantization == "none":
            continue
        from torchao.quantization import quantize_

        for module in [m for m in layer.modules() if isinstance(m, nn.Linear)]:
            if quantization == "nf4" and not nf4_supported(tuple(module.weight.shape)):
                continue
            # quantize_ walks the module it is given: each Linear gets the config of its own size.
            quantize_(module, _config(quantization, module.weight.numel()), filter_fn=lambda m, _: m is module)
            count += 1
    return count


def tensor_bytes(tensor: torch.Tensor) -> int:
    """Real bytes of a tensor: a torchao tensor subclass counts its inner tensors (codes, scales, tables)."""
    data = tensor.data if isinstance(tensor, nn.Parameter) else tensor
    flatten = getattr(type(data), "__tensor_flatten__", None)
    if flatten is not None and type(data) is not torch.Tensor:
        names, _ = data.__tensor_flatten__()
        return sum(tensor_bytes(getattr(data, name)) for name in names)
    return data.numel() * data.element_size()


def module_bytes(module: nn.Module) -> int:
    """Bytes of every parameter and buffer of `module` (shared tensors once)."""
    seen: set[int] = set()
    total = 0
    for tensor in list(module.parameters()) + list(module.buffers()):
        if id(tensor) in seen:
            continue
        seen.add(id(tensor))
        total += tensor_bytes(tensor)
    return total
