"""`janusvln`: JanusVLN (Qwen2.5-VL-7B + VGGT-1B with dual implicit memory) behind the common Policy contract.

Every `plan_every_frames`-th 4 FPS frame is an action step (observe): it is resized (and centre-cropped
when tall) once, and run through the VGGT aggregator against the spatial memory (only the new frame is
computed) and projected by the merger. plan() then asks Qwen and decodes greedily (at most 24 tokens); the
answer (parsed exactly as the release does by default) becomes one waypoint: a step ahead, a turn in
place, or a stop (state 'done', held until reset or a new instruction).

Default (semantic_memory false) = the release, which the published weights were trained and evaluated
with: every step re-encodes up to history_frames + 1 = 9 frames (all while there are at most 8 past ones,
else 9 spread by linspace over the episode) through Qwen's ViT and language model, with the CURRENT frame's
spatial tokens added (lambda) to every image. semantic_memory true = our design of the paper's semantic
memory (the authors did not release theirs, and it is not evaluated with the published weights): each
frame is encoded once by the ViT, fused with its own spatial tokens (those computed when it was the current
frame; never re-fused) and appended to the language model's KV cache (initial + sliding windows); a step
then runs only the task text over the cache. Facts: docs/janusvln.md.
"""
from __future__ import annotations

import logging
import time
from typing import Optional

import numpy as np
import torch

from sparsevideonav_ros.policies.base import Observation, Plan, Policy, PolicyError
from sparsevideonav_ros.policies.janusvln.actions import action_waypoints, parse_and_warn
from sparsevideonav_ros.policies import memory_plan
from sparsevideonav_ros.policies.janusvln.configuration_janusvln import (JanusVLNConfig, resolve_dtype,
                                                                         resolve_kv_dtype)
from sparsevideonav_ros.policies.janusvln.models import DTYPES, JanusVLN, load_janusvln, resolve_checkpoint
from sparsevideonav_ros.policies.janusvln.semantic import (SemanticMemory, empty_cache, prompt_positions,
                                                           text_positions)
from sparsevideonav_ros.policies.janusvln.spatial import SpatialMemory
from sparsevideonav_ros.policies.janusvln.vision_inputs import FrameInputs

log = logging.getLogger("sparsevideonav_ros.policies.janusvln")
POSITION_MARGIN = 1024  # positions left for the task text and the answer


def released_history(steps: int, history_frames: int) -> list[int]:
    """Indices of the frames the release shows at step `steps - 1` (0-based): every frame while there are at
    most `history_frames` past ones, else history_frames + 1 spread by linspace over 0..current."""
    current = steps - 1
    if current <= history_frames:
        return list(range(steps))
    return [int(i) for i in np.linspace(0, current, history_frames + 1).astype(int)]


class JanusVLNPolicy(Policy):
    name = "janusvln"
    config_class = JanusVLNConfig
    frame_rate_hz = 4.0  # its action steps are frames of the 4 FPS stream (plan_every_frames 2 = 0.5 s per action)

    def __init__(self, config: JanusVLNConfig, model: Optional[JanusVLN] = None) -> None:
        super().__init__(config)
        # Weights load here, once, at node configure time (missing files fail the node's start).
        self.dtype = resolve_dtype(config.dtype, config.device)
        self.kv_dtype = resolve_kv_dtype(config.kv_cache_dtype, config.dtype, config.device)
        # On CUDA the memory plan runs before any weight loads: a configuration that cannot fit is refused in
        # one line naming the settings that would (policies/memory_plan.py). Elsewhere it is planned on first use.
        self._memory_plan: Optional[memory_plan.MemoryPlan] = None
        if model is None:
            self._memory_plan = memory_plan.check_before_loading("janusvln", config, PolicyError)
        self.model = model or load_janusvln(resolve_checkpoint(config.checkpoint), config.device, self.dtype,
                                            config.quantization)
        kv_dtype = DTYPES[self.kv_dtype]
        self.spatial_memory = SpatialMemory(config.initial_window, config.sliding_window, dtype=kv_dtype)
        self.semantic_memory = SemanticMemory(config.initial_window, config.sliding_window, dtype=kv_dtype)
        self.last_answer = ""
        self.reset()

    # -- episode state --------------------------------------------------------------------------
    def reset(self) -> None:
        self.spatial_memory.reset()
        self.semantic_memory.reset()
        self._frames_seen = 0
        self._steps = 0  # action steps = frames in the memories
        self._frames: list[FrameInputs] = []  # memory off only: every step's frame (the release keeps them all)
        self._current_spatial: Optional[torch.Tensor] = None
        self._latest: Optional[Observation] = None
        self._step_stamp: Optional[float] = None  # stamp of the newest action step not planned yet
        self._last_plan: Optional[Plan] = None
        self._done = False
        self._timings: dict[str, float] = {}

    def set_instruction(self, text: str) -> None:
        super().set_instruction(text)
        self._done = False  # a new instruction continues from where the robot stopped, memories kept
        self._last_plan = None

    @property
    def history_length(self) -> int:
        return self._frames_seen

    @property
    def steps(self) -> int:
        return self._steps

    def plans_at(self, frames_seen: int) -> bool:
        """Its action-step frames: the 1st, then every plan_every_frames-th (only these enter the memories)."""
        return (frames_seen - 1) % self.config.plan_every_frames == 0

    def observe(self, observation: Observation) -> None:
        self._latest = observation
        self._frames_seen += 1
        if self._done or not self.plans_at(self._frames_seen):
            return
        with torch.no_grad():
            self._add_step(observation)

    def _add_step(self, observation: Observation) -> None:
        clock = time.perf_counter
        timings: dict[str, float] = {}
        start = clock()
        frame = self.model.frame_inputs(observation.rgb)
        timings["preprocess_s"] = clock() - start
        if self.config.semantic_memory:
            self._check_positions(frame)
        start = clock()
        if self.config.spatial_memory:
            spatial = self.model.spatial_step(frame, self.spatial_memory)
        else:
            self._frames.append(frame)
            spatial = self.model.spatial_recompute(self._frames)
        timings["spatial_s"] = clock() - start
        if self.config.semantic_memory:
            self._encode_semantic(frame, spatial, timings)
        else:
            if self.config.spatial_memory:
                self._frames.append(frame)
            self._current_spatial = spatial
        self._steps += 1
        self._step_stamp = observation.stamp
        self._timings = timings

    def _check_positions(self, frame: FrameInputs) -> None:
        """Fail before touching either memory when the new frame would leave too few language-model positions
        (cached frames keep their positions, so they grow with the episode: about 25 per frame)."""
        rows, cols = self.model.merged_grid(frame)
        used = self.semantic_memory.next_position or len(self.model.layout.prefix_ids)
        limit = int(self.model.model.arch.qwen.text_config.max_position_embeddings)
        if used + max(rows, cols) + 2 + POSITION_MARGIN > limit:
            raise PolicyError(f"the episode has used {used} of the language model's {limit} positions "
                              f"({self._steps} action steps): reset the policy to start a new episode")

    def _encode_semantic(self, frame: FrameInputs, spatial: torch.Tensor, timings: dict[str, float]) -> None:
        clock = time.perf_counter
        memory = self.semantic_memory
        if not memory.keys:
            memory.start(self.model.language, self.model.layout.prefix_ids)
        start = clock()
        fused = self.model.model.fuse(self.model.visual_tokens([frame]), spatial)
        timings["vision_s"] = clock() - start
        start = clock()
        rows, cols = self.model.merged_grid(frame)
        memory.add_frame(self.model.language, self._steps, self.model.layout.block_ids(rows * cols),
                         self.model.layout.image_token_id, fused, rows, cols)
        timings["llm_frame_s"] = clock() - start

    # -- planning -------------------------------------------------------------------------------
    def plan(self) -> Plan:
        if self._latest is None:
            raise PolicyError("plan() before any observation")
        stamp = self._latest.stamp
        if not self.instruction:
            return Plan.stand_still(stamp, "waiting_instruction")
        if self._done:
            return Plan.stand_still(stamp, "done")
        if self._step_stamp is None:
            if self._last_plan is not None:
                return self._last_plan  # planned from an older frame; its stamp anchors it correctly
            return Plan.stand_still(stamp, "warming_up")  # first frame of the episode skipped by the cadence
        step_stamp, self._step_stamp = self._step_stamp, None
        with torch.no_grad():
            answer, timings = self._decide()
        self.last_answer = answer
        parsed = parse_and_warn(answer, log, self.config.action_parsing)
        timings = {**self._timings, **timings}
        if parsed.action == "STOP":
            self._done = True
            self._last_plan = Plan(stamp=step_stamp, waypoints=np.zeros((0, 3)), state="done", timings_s=timings)
            return self._last_plan
        waypoints = action_waypoints(parsed.action, self.config.forward_step_m, self.config.turn_angle_deg)
        self._last_plan = Plan(stamp=step_stamp, waypoints=waypoints, state="ok", timings_s=timings)
        return self._last_plan

    def _decide(self) -> tuple[str, dict[str, float]]:
        clock = time.perf_counter
        timings: dict[str, float] = {}
        language, layout = self.model.language, self.model.layout
        start = clock()
        if self.config.semantic_memory:
            memory = self.semantic_memory
            suffix = layout.suffix_ids(self.instruction)
            cache = memory.cache()
            hidden = language.forward(language.embed(suffix), text_positions(memory.next_position, len(suffix)), cache)
            next_position = memory.next_position + len(suffix)
        else:
            frames = [self._frames[i] for i in released_history(self._steps, self.config.history_frames)]
            visual = self.model.visual_tokens(frames)
            fused = self.model.model.fuse(visual, self._current_spatial)
            # The ViT over up to 9 frames is the release's per-step cost the semantic memory removes: timed apart.
            timings["vision_s"] = clock() - start
            start = clock()
            grids = [self.model.merged_grid(f) for f in frames]
            ids = layout.ids(self.instruction, [r * c for r, c in grids])
            suffix_length = len(ids) - len(layout.prefix_ids) - sum(r * c + 2 for r, c in grids)
            positions, next_position = prompt_positions(len(layout.prefix_ids), grids, suffix_length)
            cache = empty_cache()
            hidden = language.forward(language.embed_with_images(ids, layout.image_token_id, fused), positions, cache)
        timings["llm_prompt_s"] = clock() - start
        start = clock()
        generated = language.greedy(cache, language.logits(hidden[0, -1]), next_position,
                                    self.config.max_new_tokens, layout.eos_ids)
        timings["decode_s"] = clock() - start
        return layout.decode(generated), timings

    def load_summary(self) -> str:
        memory = ("semantic memory on (ours, not evaluated with the published weights)" if self.config.semantic_memory
                  else "the release's re-encoding of up to 9 frames")
        quantization = (f", language model {self.config.quantization} (torchao)"
                        if self.config.quantization != "none" else "")
        return (f"checkpoint {self.model.folder}, {self.dtype} on {self.config.device}{quantization}, "
                f"KV {self.kv_dtype}, {memory}, {self.config.action_parsing} action parsing; {self.memory_plan_line()}")

    @property
    def memory_plan(self) -> Optional[memory_plan.MemoryPlan]:
        """The plan of this configuration (computed before loading on CUDA, else on first use; None when the
        checkpoint has no config to plan from)."""
        if self._memory_plan is None:
            try:
                self._memory_plan = memory_plan.plan_for("janusvln", self.config)
            except (memory_plan.MemoryPlanError, OSError, ValueError):
                return None
        return self._memory_plan

    def memory_plan_line(self) -> str:
        plan = self.memory_plan
        return plan.summary() if plan is not None else "memory plan: not available (no checkpoint config)"

    def status_values(self) -> dict[str, object]:
        return {"memory_plan": self.memory_plan_line()}

    def describe(self) -> dict:
        return {**super().describe(), "resolved_dtype": self.dtype, "steps": self._steps, "spatial_frames": self.spatial_memory.frame_indices,
                "semantic_frames": self.semantic_memory.frame_indices}
