"""Parameters of the `janusvln` policy (ROS parameters `janusvln.*` of policy_node)."""
from __future__ import annotations

import math
from dataclasses import dataclass

from sparsevideonav_ros.configs import ConfigError, _positive, check_choices, param

TINY = "tiny"


@dataclass
class JanusVLNConfig:
    checkpoint: str = param(TINY, "Model folder in the authors' layout (Qwen2.5-VL config.json + lam, safetensors "
                                  "with vggt.aggregator.* and merger.*, tokenizer with chat template), or 'tiny' = "
                                  "a small untrained model for wiring tests (it always answers MOVE_FORWARD).")
    device: str = param("cpu", "Torch device of the model (cpu, cuda, cuda:1, ...).")
    dtype: str = param("float32", "Weights and compute precision (the release runs bfloat16).",
                       choices=("float32", "bfloat16", "float16"))
    semantic_memory: bool = param(True, "Cache Qwen's visual-token keys/values per frame so past frames are never "
                                        "re-encoded; false = the release (re-encode up to 9 uniformly chosen "
                                        "frames every step).")
    spatial_memory: bool = param(True, "Cache the VGGT global-attention keys/values per frame; false = recompute "
                                       "the aggregator over every frame of the episode each step (the paper's "
                                       "no-memory baseline; cost grows with the episode).")
    initial_window: int = param(8, "Frames from the start of the episode both memories always keep.")
    sliding_window: int = param(48, "Most recent frames both memories keep besides the initial window.")
    history_frames: int = param(8, "semantic_memory false only: past frames re-encoded with the current one "
                                   "(uniformly spread over the episode once there are more).")
    max_new_tokens: int = param(24, "Greedy decoding stops after this many tokens.")
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
