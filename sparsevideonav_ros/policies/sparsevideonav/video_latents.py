"""Frames -> normalised Wan2.1 VAE latents, incrementally, the way the SparseVideoNav release encodes them.

Facts this module is built on (the authors' release, OpenDriveLab/SparseVideoNav, and diffusers' Wan2.1 VAE):
  * Frames: 4 FPS, centre-cropped square, 256x256 RGB, scaled to [-1, 1].
  * Wan2.1 causal VAE (diffusers ``AutoencoderKLWan``): spatial stride 8, temporal stride 4, z_dim 16.
    A clip of 1 + 4k frames is encoded chunk by chunk: the first frame alone, then 4-frame chunks,
    each through ``vae.encoder`` with a causal feature cache, then ``quant_conv`` (kernel 1x1x1, so
    it acts on every latent frame independently).
  * The release encodes a clip as ``[first frame repeated once] + frames`` and drops the first latent,
    so each kept latent covers exactly 4 real frames.
  * Latents are the posterior MEAN, normalised per channel: ``z = (mu - latents_mean) * (1 / latents_std)``
    (diffusers' Wan pipelines and the release do exactly this). Decoding undoes it first. Latents and
    decoded frames come back in float32 whatever the VAE's dtype (the release returns ``.float()`` too).

``AutoencoderKLWan.encode`` clears its feature cache at the start of every call, so it cannot encode a
growing history incrementally. ``StreamingVideoEncoder`` owns a cache of its own and runs the same
per-chunk loop over successive calls; feeding k chunks one call at a time gives the same latents as
``encode_clip`` on the 4k frames at once, while every chunk goes through the encoder exactly once.

Checkpoints (``load_vae``): a diffusers folder (``config.json`` + ``diffusion_pytorch_model.*``, e.g. the
``vae/`` folder of Wan2.1-T2V-1.3B-Diffusers) or the original ``Wan2.1_VAE.pth`` of the Wan / SparseVideoNav
releases, converted with diffusers' own ``convert_wan_vae_to_diffusers`` onto the standard Wan2.1 config.
"""
from __future__ import annotations

import json
import re
import types
from pathlib import Path
from typing import Any, Mapping, Optional, Union

import numpy as np
import torch

from sparsevideonav_ros.core.images import center_crop_resize

FRAMES_PER_LATENT = 4  # temporal stride of the Wan2.1 VAE
SPATIAL_STRIDE = 8
LATENT_CHANNELS = 16
ORIGINAL_VAE_FILE = "Wan2.1_VAE.pth"
DIFFUSERS_WEIGHT_FILES = (
    "diffusion_pytorch_model.safetensors",
    "diffusion_pytorch_model.safetensors.index.json",
    "diffusion_pytorch_model.bin",
    "diffusion_pytorch_model.bin.index.json",
)
ORIGINAL_SUFFIXES = (".pth", ".pt", ".ckpt", ".safetensors")

# The Wan2.1 VAE (the one in Wan2.1_VAE.pth and in Wan2.1-T2V-1.3B-Diffusers/vae); diffusers' defaults,
# spelled out so a change of defaults upstream cannot silently change what an original .pth loads into.
WAN21_VAE_CONFIG: dict[str, Any] = dict(
    base_dim=96,
    z_dim=16,
    dim_mult=[1, 2, 4, 4],
    num_res_blocks=2,
    attn_scales=[],
    temperal_downsample=[False, True, True],
    dropout=0.0,
    latents_mean=[-0.7571, -0.7089, -0.9113, 0.1075, -0.1745, 0.9653, -0.1517, 1.5508,
                  0.4134, -0.0715, 0.5517, -0.3632, -0.1922, -0.9497, 0.2503, -0.2921],
    latents_std=[2.8184, 1.4541, 2.3275, 2.6558, 1.2196, 1.7708, 2.6052, 2.0743,
                 3.2687, 2.1526, 2.8652, 1.5579, 1.6382, 1.1253, 2.8251, 1.9160],
)


def tiny_vae_config() -> dict[str, Any]:
    """kwargs for a tiny random ``AutoencoderKLWan`` (about 0.9 M parameters) for tests and the CPU demo.

    Same structure as Wan2.1 (spatial stride 8, temporal stride 4, z_dim 16, the same latents_mean/std),
    only narrower (base_dim 8 instead of 96). It keeps num_res_blocks=2 and four stages because diffusers'
    ``convert_wan_vae_to_diffusers`` hard-codes the decoder block indices of that layout, so a tiny
    original-format ``.pth`` goes through exactly the code path of the real ``Wan2.1_VAE.pth``.
    No attention outside the mid block (attn_scales=[]); the mid-block attention is part of the
    architecture and cannot be switched off.
    """
    config = dict(WAN21_VAE_CONFIG)
    config.update(base_dim=8, dim_mult=[1, 2, 4, 4], num_res_blocks=2, attn_scales=[])
    return config


# -- frames ---------------------------------------------------------------------------------------

def preprocess_frame(rgb: np.ndarray, size: int = 256, interpolation: Optional[int] = None) -> torch.Tensor:
    """(H, W, 3) uint8 RGB -> (3, size, size) float32 in [-1, 1]: largest centred square, resized.

    interpolation None uses ``core.images.center_crop_resize`` (cv2.INTER_AREA when shrinking, linear when
    enlarging). The release resizes with cv2's default (cv2.INTER_LINEAR); pass ``cv2.INTER_LINEAR``
    to match it exactly.
    """
    if interpolation is None:
        square = center_crop_resize(rgb, size)
    else:
        import cv2

        if not isinstance(rgb, np.ndarray) or rgb.ndim != 3:
            raise ValueError(f"frame must be an (H, W, 3) uint8 RGB array, got {getattr(rgb, 'shape', type(rgb))}")
        square = center_crop_resize(rgb, min(rgb.shape[:2]))  # validates, crops, no resize
        if square.shape[0] != int(size):
            square = cv2.resize(square, (int(size), int(size)), interpolation=interpolation)
    tensor = torch.from_numpy(np.ascontiguousarray(square)).permute(2, 0, 1).float()
    return tensor / 127.5 - 1.0


# -- normalisation --------------------------------------------------------------------------------

def _latent_stats(vae, like: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    z_dim = int(vae.config.z_dim)
    mean = torch.tensor(vae.config.latents_mean, dtype=like.dtype, device=like.device).view(1, z_dim, 1, 1, 1)
    inv_std = 1.0 / torch.tensor(vae.config.latents_std, dtype=like.dtype, device=like.device).view(1, z_dim, 1, 1, 1)
    return mean, inv_std


def normalize_latents(vae, mu: torch.Tensor) -> torch.Tensor:
    """Posterior mean (B, z, T, h, w) -> float32 model latents: (mu - latents_mean) * (1 / latents_std)."""
    mu = mu.float()
    mean, inv_std = _latent_stats(vae, mu)
    return (mu - mean) * inv_std


def denormalize_latents(vae, latents: torch.Tensor) -> torch.Tensor:
    """Inverse of ``normalize_latents`` (float32): latents / (1 / latents_std) + latents_mean."""
    latents = latents.float()
    mean, inv_std = _latent_stats(vae, latents)
    return latents / inv_std + mean


def _check_video(x: torch.Tensor, what: str, frames: Optional[int] = None) -> None:
    if not isinstance(x, torch.Tensor) or x.ndim != 5 or x.shape[1] != 3:
        shape = tuple(x.shape) if isinstance(x, torch.Tensor) else type(x).__name__
        raise ValueError(f"{what} must be a (B, 3, T, H, W) tensor, got {shape}")
    if frames is not None and x.shape[2] != frames:
        raise ValueError(f"{what} must hold exactly {frames} frames (dim 2), got shape {tuple(x.shape)}")
    if x.shape[3] % SPATIAL_STRIDE or x.shape[4] % SPATIAL_STRIDE or x.shape[3] == 0 or x.shape[4] == 0:
        raise ValueError(f"{what}: height and width must be positive multiples of {SPATIAL_STRIDE}, "
                         f"got {x.shape[3]}x{x.shape[4]}")
    if not torch.is_floating_point(x):
        raise ValueError(f"{what} must be a float tensor in [-1, 1], got {x.dtype}")


def _check_wan21(vae) -> None:
    if getattr(vae.config, "patch_size", None) is not None or getattr(vae.config, "is_residual", False):
        raise ValueError("only the Wan2.1 VAE (no patchify, non-residual) is supported; this one looks like "
                         "the Wan2.2 VAE (patch_size / is_residual set)")


# -- CPU kernels ----------------------------------------------------------------------------------
#
# Two spots where diffusers' Wan VAE, as written, meets a slow PyTorch CPU kernel (profiled at the CPU-sized
# config, 128x128 frames: the VAE decode took 1.9x (bf16) and 2.8x (fp32) the whole 4-step backbone although
# it does 0.27x its FLOPs):
#   * WanRMS_norm calls F.normalize over dim 1 of a (B, C, T, H, W) tensor: linalg_vector_norm reduces
#     across the strided channel axis, 62% of a bf16 decode. A sum of squares over dim 1 followed by rsqrt
#     computes the same x / max(||x||, 1e-12) at about a third of the cost.
#   * PyTorch's convolution heuristic (ConvParams::use_mkldnn) sends a batch-1 float32 conv3d with a 3x3
#     kernel and N*C*D*H <= 20480 to the native slow_conv3d, which is ~12x slower than oneDNN on the same
#     problem (68% of an fp32 decode). bfloat16 already goes to oneDNN. The causal convolutions pad by hand
#     (their ``padding`` is 0), so calling aten::mkldnn_convolution with the module's own stride/padding is
#     the same convolution.
# Neither is configurable in torch or diffusers, so each module gets an instance-level override that takes
# the fast path only for what it was measured on (CPU tensors, no autograd) and falls back to the library's
# own forward otherwise. The state dict is untouched; results equal the library's to float rounding
# (test_svn_latents checks encode and decode).

_FAST_CPU_MARK = "_svn_fast_cpu_kernels"


def _fast_channel_rms_norm(self, x: torch.Tensor) -> torch.Tensor:
    if not self.channel_first or x.device.type != "cpu":
        return type(self).forward(self, x)
    xf = x.float()
    inv_norm = torch.rsqrt((xf * xf).sum(1, keepdim=True).clamp_min(1e-24))  # 1 / max(||x||, 1e-12)
    return (xf * inv_norm).to(x.dtype) * self.scale * self.gamma + self.bias


def _fast_cpu_conv(self, x: torch.Tensor, weight: torch.Tensor, bias: Optional[torch.Tensor]) -> torch.Tensor:
    if (x.device.type != "cpu" or x.dtype != torch.float32 or self.padding_mode != "zeros"
            or (torch.is_grad_enabled() and (x.requires_grad or weight.requires_grad))):
        return type(self)._conv_forward(self, x, weight, bias)
    return torch.ops.aten.mkldnn_convolution(x, weight, bias, self.padding, self.stride, self.dilation, self.groups)


def use_fast_cpu_kernels(vae):
    """Route the Wan VAE's channel RMS norms and float32 causal convolutions to fast CPU kernels (see above).

    Idempotent, in place, returns ``vae``. A no-op where oneDNN is missing (the convolutions keep torch's
    choice; the norm override needs nothing).
    """
    if getattr(vae, _FAST_CPU_MARK, False):
        return vae
    from diffusers.models.autoencoders.autoencoder_kl_wan import WanCausalConv3d, WanRMS_norm

    onednn = torch.backends.mkldnn.is_available()
    # Bound methods (not closures): copy.deepcopy rebinds them to the copy, so a copied VAE uses its own weights.
    for module in vae.modules():
        if isinstance(module, WanRMS_norm):
            module.forward = types.MethodType(_fast_channel_rms_norm, module)
        elif isinstance(module, WanCausalConv3d) and onednn:
            module._conv_forward = types.MethodType(_fast_cpu_conv, module)
    setattr(vae, _FAST_CPU_MARK, True)
    return vae


def _causal_conv_count(module: torch.nn.Module) -> int:
    from diffusers.models.autoencoders.autoencoder_kl_wan import WanCausalConv3d

    return sum(isinstance(m, WanCausalConv3d) for m in module.modules())


# -- incremental encoding -------------------------------------------------------------------------

class StreamingVideoEncoder:
    """Chunk-by-chunk Wan VAE encoding with a causal feature cache kept across calls.

    Usage per episode::

        enc = StreamingVideoEncoder(vae)
        enc.start(first_frame)                 # (B, 3, H, W): the release's repeated context frame
        z0 = enc.encode_chunk(frames[:, :, 0:4])   # (B, 16, 1, H/8, W/8), covers frames 0..3
        z1 = enc.encode_chunk(frames[:, :, 4:8])   # covers frames 4..7
        ...
        enc.reset()                            # new episode

    ``torch.cat([z0, z1, ...], dim=2)`` equals ``encode_clip(vae, frames)`` (same operations in the same
    order; differences are float rounding only). The encoder must not be used by ``vae.encode`` between
    calls in a way that matters: it never touches the VAE's own cache attributes.
    """

    def __init__(self, vae) -> None:
        _check_wan21(vae)
        self.vae = vae
        self._conv_count = _causal_conv_count(vae.encoder)
        self.reset()

    def reset(self) -> None:
        """Forget the episode: empty cache, no first frame, zero chunks."""
        self._feat_cache: list = [None] * self._conv_count
        self._started = False
        self._chunks = 0
        self._frame_shape: Optional[tuple[int, int, int]] = None  # (B, H, W)

    @property
    def started(self) -> bool:
        """True once ``start`` has fed the first frame."""
        return self._started

    @property
    def chunks_encoded(self) -> int:
        """4-frame chunks encoded since the last reset (the start frame does not count)."""
        return self._chunks

    def _run_encoder(self, x: torch.Tensor) -> torch.Tensor:
        param = next(self.vae.parameters())
        x = x.to(device=param.device, dtype=param.dtype)
        return self.vae.encoder(x, feat_cache=self._feat_cache, feat_idx=[0])

    @torch.no_grad()
    def start(self, first_frame: torch.Tensor) -> None:
        """Feed the episode's first frame alone (B, 3, H, W); its latent is discarded, as in the release.

        Resets first, so it may also begin a new episode.
        """
        if not isinstance(first_frame, torch.Tensor) or first_frame.ndim != 4:
            shape = tuple(first_frame.shape) if isinstance(first_frame, torch.Tensor) else type(first_frame).__name__
            raise ValueError(f"first_frame must be a (B, 3, H, W) tensor, got {shape}")
        clip = first_frame.unsqueeze(2)
        _check_video(clip, "first_frame (as a 1-frame clip)", frames=1)
        self.reset()
        self._run_encoder(clip)
        self._started = True
        self._frame_shape = (clip.shape[0], clip.shape[3], clip.shape[4])

    @torch.no_grad()
    def encode_chunk(self, frames: torch.Tensor) -> torch.Tensor:
        """Encode the next 4 frames (B, 3, 4, H, W) -> normalised float32 latent (B, 16, 1, H/8, W/8)."""
        if not self._started:
            raise RuntimeError("StreamingVideoEncoder.encode_chunk before start(first_frame): feed the "
                               "episode's first frame first (the release's repeated context frame)")
        _check_video(frames, "frames", frames=FRAMES_PER_LATENT)
        shape = (frames.shape[0], frames.shape[3], frames.shape[4])
        if shape != self._frame_shape:
            raise ValueError(f"frames have (B, H, W) = {shape} but this episode started with {self._frame_shape}; "
                             f"reset() and start() again to change size")
        out = self.vae.quant_conv(self._run_encoder(frames))
        mu = out[:, : int(self.vae.config.z_dim)]
        self._chunks += 1
        return normalize_latents(self.vae, mu)


# -- whole clips ----------------------------------------------------------------------------------

@torch.no_grad()
def encode_clip(vae, frames: torch.Tensor) -> torch.Tensor:
    """(B, 3, T, H, W) in [-1, 1], T a positive multiple of 4 -> normalised float32 latents (B, 16, T/4, H/8, W/8).

    The release's way, in one diffusers ``vae.encode`` call: encode ``[first frame] + frames`` (1 + T
    frames), take the posterior mean, drop the first latent, normalise.
    """
    _check_wan21(vae)
    _check_video(frames, "frames")
    if frames.shape[2] == 0 or frames.shape[2] % FRAMES_PER_LATENT:
        raise ValueError(f"frames must hold a positive multiple of {FRAMES_PER_LATENT} frames, "
                         f"got {frames.shape[2]} (shape {tuple(frames.shape)})")
    param = next(vae.parameters())
    frames = frames.to(device=param.device, dtype=param.dtype)
    clip = torch.cat([frames[:, :, :1], frames], dim=2)
    mu = vae.encode(clip).latent_dist.mode()
    return normalize_latents(vae, mu[:, :, 1:])


@torch.no_grad()
def decode_latents(vae, latents: torch.Tensor) -> torch.Tensor:
    """Normalised latents (B, 16, n, h, w) -> float32 frames (B, 3, 1 + 4 (n - 1), 8h, 8w) in [-1, 1]."""
    _check_wan21(vae)
    z_dim = int(vae.config.z_dim)
    if not isinstance(latents, torch.Tensor) or latents.ndim != 5 or latents.shape[1] != z_dim or latents.shape[2] < 1:
        shape = tuple(latents.shape) if isinstance(latents, torch.Tensor) else type(latents).__name__
        raise ValueError(f"latents must be a (B, {z_dim}, n >= 1, h, w) tensor, got {shape}")
    param = next(vae.parameters())
    z = denormalize_latents(vae, latents.to(device=param.device)).to(param.dtype)
    return vae.decode(z).sample.float()


@torch.no_grad()
def decode_instants(vae, latents: torch.Tensor, latent_indices) -> torch.Tensor:
    """Decode only as far as the newest latent asked for, keeping one frame per asked latent.

    latents: normalised (B, 16, n, h, w). latent_indices: increasing indices < n. Returns float32 frames
    (B, 3, len(latent_indices), 8h, 8w) in [-1, 1]: for latent 0 its single frame, for latent i >= 1 the
    last of its 4 frames (decoded frame 4i, the one that stands for its instant), equal to
    ``decode_latents(vae, latents)[:, :, [4i for i in latent_indices]]`` up to float rounding.

    Why not cheaper: the Wan decoder is causal with 3-frame temporal kernels at every stage, so a latent's
    frames need every earlier latent through the decoder (its feature cache); what can be saved is the
    latents after the newest one asked for (the decoder runs latent by latent, as diffusers' own decode
    does) and the memory of the frames not kept.
    """
    _check_wan21(vae)
    indices = [int(i) for i in latent_indices]
    z_dim = int(vae.config.z_dim)
    if not isinstance(latents, torch.Tensor) or latents.ndim != 5 or latents.shape[1] != z_dim:
        shape = tuple(latents.shape) if isinstance(latents, torch.Tensor) else type(latents).__name__
        raise ValueError(f"latents must be a (B, {z_dim}, n, h, w) tensor, got {shape}")
    if not indices or sorted(set(indices)) != indices or indices[0] < 0 or indices[-1] >= latents.shape[2]:
        raise ValueError(f"latent_indices must increase within 0..{latents.shape[2] - 1}, got {indices}")
    param = next(vae.parameters())
    last = indices[-1]
    z = denormalize_latents(vae, latents[:, :, : last + 1].to(device=param.device)).to(param.dtype)
    x = vae.post_quant_conv(z)  # 1x1x1: acts on each latent alone, so slicing before it changes nothing
    cache: list = [None] * _causal_conv_count(vae.decoder)
    wanted = set(indices)
    kept = []
    for i in range(last + 1):
        out = vae.decoder(x[:, :, i: i + 1], feat_cache=cache, feat_idx=[0], first_chunk=(i == 0))
        if i in wanted:
            kept.append(out[:, :, -1:].float())
    return torch.clamp(torch.cat(kept, dim=2), -1.0, 1.0)


# -- loading --------------------------------------------------------------------------------------

def _config_from(config: Union[None, str, Path, Mapping[str, Any]]) -> dict[str, Any]:
    if config is None:
        return dict(WAN21_VAE_CONFIG)
    if isinstance(config, Mapping):
        return {k: v for k, v in dict(config).items() if not k.startswith("_")}
    path = Path(config)
    if path.is_dir():
        path = path / "config.json"
    if not path.is_file():
        raise FileNotFoundError(f"VAE config not found: expected {path}")
    return {k: v for k, v in json.loads(path.read_text()).items() if not k.startswith("_")}


def _load_original_state_dict(path: Path) -> dict[str, torch.Tensor]:
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        state = load_file(str(path))
    else:
        state = torch.load(str(path), map_location="cpu", weights_only=True, mmap=True)
    if isinstance(state, Mapping) and "state_dict" in state and isinstance(state["state_dict"], Mapping):
        state = state["state_dict"]
    if not isinstance(state, Mapping) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise ValueError(f"{path} does not hold a state dict of tensors (original Wan VAE checkpoint expected)")
    return dict(state)


def _load_original(path: Path, config: dict[str, Any], device, dtype):
    from diffusers import AutoencoderKLWan
    from diffusers.loaders.single_file_utils import convert_wan_vae_to_diffusers

    state = _load_original_state_dict(path)
    if any(k.startswith(("encoder.down_blocks.", "decoder.up_blocks.", "quant_conv.")) for k in state):
        converted = state  # already diffusers naming (e.g. a single-file diffusers export)
    else:
        converted = convert_wan_vae_to_diffusers(state)
    with torch.device("meta"):
        vae = AutoencoderKLWan(**config)
    expected = set(vae.state_dict())
    missing = sorted(expected - set(converted))
    unexpected = sorted(set(converted) - expected)
    if missing or unexpected:
        raise ValueError(
            f"{path} does not match the Wan VAE config (base_dim={config.get('base_dim')}, "
            f"num_res_blocks={config.get('num_res_blocks')}): "
            f"{len(missing)} missing key(s) {missing[:8]}, {len(unexpected)} unexpected key(s) {unexpected[:8]}")
    for key, param in vae.state_dict().items():
        if tuple(converted[key].shape) != tuple(param.shape):
            raise ValueError(f"{path}: {key} has shape {tuple(converted[key].shape)}, the config expects "
                             f"{tuple(param.shape)}")
    vae.load_state_dict({k: v.to(dtype) for k, v in converted.items()}, strict=True, assign=True)
    leftover = [n for n, t in list(vae.named_parameters()) + list(vae.named_buffers()) if t.is_meta]
    if leftover:
        raise ValueError(f"{path}: no value for {leftover[:8]}")
    return vae.to(device)


def load_vae(path: Union[str, Path], device: Union[str, torch.device] = "cpu",
             dtype: torch.dtype = torch.float32,
             config: Union[None, str, Path, Mapping[str, Any]] = None):
    """Load an ``AutoencoderKLWan`` (eval mode, no grad) from local files only.

    path may be:
      * a diffusers folder: ``config.json`` + ``diffusion_pytorch_model.safetensors`` (or .bin / sharded);
      * a folder whose ``vae/`` subfolder is one (the Wan2.1-T2V-1.3B-Diffusers root);
      * an original-format file (``Wan2.1_VAE.pth``), or a folder holding ``Wan2.1_VAE.pth`` (the release's
        checkpoint folder). It is converted with diffusers' ``convert_wan_vae_to_diffusers`` and loaded with
        every key checked; ``config`` (dict, config.json or a folder with one) defaults to the standard
        Wan2.1 VAE config ``WAN21_VAE_CONFIG``.
    Missing files raise FileNotFoundError naming what was expected.
    """
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"VAE checkpoint not found: {path} (expected a diffusers VAE folder with config.json "
                                f"+ diffusion_pytorch_model.safetensors, or an original {ORIGINAL_VAE_FILE})")
    if path.is_dir():
        if (path / "config.json").is_file():
            folder = path
        elif (path / "vae" / "config.json").is_file():
            folder = path / "vae"
        elif (path / ORIGINAL_VAE_FILE).is_file():
            return load_vae(path / ORIGINAL_VAE_FILE, device, dtype, config)
        else:
            raise FileNotFoundError(
                f"no VAE in {path}: expected {path / 'config.json'} (diffusers folder), "
                f"{path / 'vae' / 'config.json'} (diffusers pipeline folder) or {path / ORIGINAL_VAE_FILE}")
        if not any((folder / name).is_file() for name in DIFFUSERS_WEIGHT_FILES):
            raise FileNotFoundError(f"VAE weights missing in {folder}: expected {folder / DIFFUSERS_WEIGHT_FILES[0]} "
                                    f"(or {', '.join(DIFFUSERS_WEIGHT_FILES[1:])})")
        from diffusers import AutoencoderKLWan

        vae = AutoencoderKLWan.from_pretrained(str(folder), torch_dtype=dtype, local_files_only=True)
        vae = vae.to(device)
    else:
        if path.suffix not in ORIGINAL_SUFFIXES:
            raise ValueError(f"unsupported VAE checkpoint file {path}: expected {ORIGINAL_VAE_FILE} "
                             f"(one of {', '.join(ORIGINAL_SUFFIXES)}) or a diffusers folder")
        vae = _load_original(path, _config_from(config), device, dtype)
    _check_wan21(vae)
    vae.eval().requires_grad_(False)
    return use_fast_cpu_kernels(vae)


# -- original-format export (tests, demo fixtures) -------------------------------------------------

_RESNET_TO_ORIGINAL = (("norm1.gamma", "residual.0.gamma"), ("conv1.", "residual.2."),
                       ("norm2.gamma", "residual.3.gamma"), ("conv2.", "residual.6."), ("conv_shortcut.", "shortcut."))
_SIMPLE_TO_ORIGINAL = (("quant_conv.", "conv1."), ("post_quant_conv.", "conv2."),
                       ("encoder.conv_in.", "encoder.conv1."), ("decoder.conv_in.", "decoder.conv1."),
                       ("encoder.norm_out.gamma", "encoder.head.0.gamma"), ("encoder.conv_out.", "encoder.head.2."),
                       ("decoder.norm_out.gamma", "decoder.head.0.gamma"), ("decoder.conv_out.", "decoder.head.2."))


def _resnet_key_to_original(rest: str) -> str:
    for ours, theirs in _RESNET_TO_ORIGINAL:
        if rest.startswith(ours):
            return theirs + rest[len(ours):]
    raise KeyError(rest)


def _key_to_original(key: str, num_res_blocks: int) -> str:
    for ours, theirs in _SIMPLE_TO_ORIGINAL:
        if key.startswith(ours):
            return theirs + key[len(ours):]
    match = re.fullmatch(r"(encoder|decoder)\.mid_block\.(resnets|attentions)\.(\d+)\.(.+)", key)
    if match:
        part, kind, index, rest = match.groups()
        if kind == "attentions":
            return f"{part}.middle.1.{rest}"
        return f"{part}.middle.{2 * int(index)}.{_resnet_key_to_original(rest)}"
    match = re.fullmatch(r"encoder\.down_blocks\.(\d+)\.(.+)", key)
    if match:  # the Wan2.1 encoder is a flat list in both namings
        index, rest = match.groups()
        if rest.startswith(("resample.", "time_conv.")):
            return f"encoder.downsamples.{index}.{rest}"
        return f"encoder.downsamples.{index}.{_resnet_key_to_original(rest)}"
    match = re.fullmatch(r"decoder\.up_blocks\.(\d+)\.(resnets|upsamplers)\.(\d+)\.(.+)", key)
    if match:  # flat original list: per stage (num_res_blocks + 1) resnets then one resample
        stage, kind, index, rest = match.groups()
        base = int(stage) * (num_res_blocks + 2)
        if kind == "upsamplers":
            return f"decoder.upsamples.{base + num_res_blocks + 1}.{rest}"
        return f"decoder.upsamples.{base + int(index)}.{_resnet_key_to_original(rest)}"
    raise KeyError(f"no original Wan VAE name for {key!r}")


def vae_state_dict_to_original(vae) -> dict[str, torch.Tensor]:
    """diffusers ``AutoencoderKLWan`` state dict -> original Wan naming (the layout of Wan2.1_VAE.pth).

    The inverse of diffusers' ``convert_wan_vae_to_diffusers``, which it is checked against: the result
    converts back to exactly the model's keys. Only the layout that converter supports (Wan2.1: four
    stages, num_res_blocks=2) can be exported.
    """
    from diffusers.loaders.single_file_utils import convert_wan_vae_to_diffusers

    _check_wan21(vae)
    if list(vae.config.dim_mult) != [1, 2, 4, 4] or int(vae.config.num_res_blocks) != 2:
        raise ValueError("diffusers' Wan VAE converter only handles dim_mult [1, 2, 4, 4] with num_res_blocks=2; "
                         f"got {list(vae.config.dim_mult)} / {vae.config.num_res_blocks}")
    state = vae.state_dict()
    original = {_key_to_original(k, int(vae.config.num_res_blocks)): v for k, v in state.items()}
    back = convert_wan_vae_to_diffusers(dict(original))
    # Identity, not equality: many tensors (norm gammas) are equal, each must come back to its own key.
    if (set(back) != set(state) or len(original) != len(state)
            or any(back[k] is not state[k] for k in state)):
        wrong = sorted(set(back) ^ set(state)) or [k for k in state if back.get(k) is not state[k]]
        raise AssertionError(f"original-naming export does not round-trip through diffusers' converter: {wrong[:8]}")
    return {k: v.detach().clone() for k, v in original.items()}


def save_vae_original_format(vae, path: Union[str, Path]) -> Path:
    """Write ``vae`` as an original-format checkpoint (e.g. ``<dir>/Wan2.1_VAE.pth``) and return the path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(vae_state_dict_to_original(vae), str(path))
    return path
