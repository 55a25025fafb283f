"""Parameters of the `janusvln` policy (ROS parameters `janusvln.*` of policy_node).

The defaults are the authors' released inference path (see docs/janusvln.md): re-encoding up to 9 frames
per step with the current frame's spatial tokens added to every image, exact action strings, bfloat16 on
CUDA. The dual semantic memory and the lenient parser are options.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

from sparsevideonav_ros.configs import ConfigError, _positive, check_choices, param

TINY = "tiny"
AUTO = "auto"
ACTION_PARSING = ("exact", "lenient")
QUANTIZATIONS = ("none", "int8", "nf4")  # torchao's names (policies/janusvln/quantization.py)
KV_CACHE_DTYPES = (AUTO, "float32", "bfloat16", "float16")


def resolve_dtype(dtype: str, device: str) -> str:
    """'auto' -> 'bfloat16' on a CUDA device (the release runs bfloat16), else 'float32' (CPUs without native
    bf16 run it slowly); any other name is returned unchanged."""
    if dtype != AUTO:
        return dtype
    return "bfloat16" if str(device).strip().lower().startswith("cuda") else "float32"


def resolve_kv_dtype(kv_cache_dtype: str, dtype: str, device: str) -> str:
    """'auto' -> the resolved compute dtype; any other name unchanged."""
    return resolve_dtype(dtype, device) if kv_cache_dtype == AUTO else kv_cache_dtype


@dataclass
class JanusVLNConfig:
    checkpoint: str = param(TINY, "Model folder in the authors' layout (Qwen2.5-VL config.json + lam, safetensors "
                                  "with vggt.aggregator.* and merger.*, tokenizer with chat template), or 'tiny' = "
                                  "a small random model for wiring tests (answers MOVE_FORWARD, TURN_LEFT or "
                                  "TURN_RIGHT as its random weights pick; never STOP).")
    device: str = param("cpu", "Torch device of the model (cpu, cuda, cuda:1, ...).")
    dtype: str = param(AUTO, "Weights and compute precision; auto = bfloat16 on CUDA (as the release runs), "
                             "float32 on CPU.", choices=(AUTO, "float32", "bfloat16", "float16"))
    quantization: str = param("none", "Weights of Qwen's language-model decoder layers (torchao, CPU and CUDA): none = "
                                      "dtype; int8 = int8 per output row (about 1/2 of bf16); nf4 = QLoRA's 4-bit "
                                      "NormalFloat in blocks of 64 (about 0.27 of bf16). Embeddings, lm_head, Qwen's "
                                      "ViT, the VGGT aggregator and the merger stay in dtype.",
                              choices=QUANTIZATIONS)
    kv_cache_dtype: str = param(AUTO, "Precision of both memories' keys/values (spatial and semantic); auto = the "
                                      "compute dtype. Attention runs in the compute dtype either way.",
                                choices=KV_CACHE_DTYPES)
    semantic_memory: bool = param(False, "false = the release, which the published weights were trained and "
                                         "evaluated with: re-encode up to history_frames + 1 frames every step, the "
                                         "current frame's spatial tokens added to every image. true = our dual "
                                         "memory: Qwen's visual-token keys/values cached per frame (never "
                                         "re-encoded, each frame fused with its own spatial tokens); not yet "
                                         "evaluated with the published weights.")
    spatial_memory: bool = param(True, "Cache the VGGT global-attention keys/values per frame; false = recompute "
                                       "the aggregator over every frame of the episode each step (the paper's "
                                       "no-memory baseline; cost grows with the episode).")
    initial_window: int = param(8, "Frames from the start of the episode both memories always keep.")
    sliding_window: int = param(48, "Most recent frames both memories keep besides the initial window.")
    history_frames: int = param(8, "semantic_memory false only: past frames re-encoded with the current one "
                                   "(uniformly spread over the episode once there are more).")
    max_new_tokens: int = param(24, "Greedy decoding stops after this many tokens.")
    action_parsing: str = param("exact", "exact = the release: the answer must be exactly STOP, MOVE_FORWARD, "
                                         "TURN_LEFT or TURN_RIGHT, anything else is STOP; lenient = the first action "
                                         "named in the answer (any case, '_' or a space), none named is STOP.",
                                choices=ACTION_PARSING)
    forward_step_m: float = param(0.25, "MOVE_FORWARD: waypoint this far ahead (m); the model was trained on 0.25.")
    turn_angle_deg: float = param(15.0, "TURN_LEFT / TURN_RIGHT: turn in place by this angle (deg); trained on 15.")
    plan_every_frames: int = param(2, "Decide one action every N frames at 4 FPS (2 = 0.5 s per action); only "
                                      "these frames enter the memories, one per action as in training.")

    def __post_init__(self) -> None:
        check_choices(self)
        _positive(self, "sliding_window", "max_new_tokens", "forward_step_m", "turn_angle_deg", "plan_every_frames")
        for name in ("initial_window", "history_frames"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 0:
                raise ConfigError(f"janusvln.{name} must be an integer >= 0, got {value!r}")
        if not self.checkpoint.strip():
            raise ConfigError("janusvln.checkpoint is empty: give a model folder or 'tiny'")
        if self.turn_angle_deg >= 180:
            raise ConfigError(f"janusvln.turn_angle_deg must be < 180, got {self.turn_angle_deg}")
        if not math.isfinite(self.forward_step_m) or self.forward_step_m > 2.0:
            raise ConfigError(f"janusvln.forward_step_m must be <= 2.0 m, got {self.forward_step_m}")
