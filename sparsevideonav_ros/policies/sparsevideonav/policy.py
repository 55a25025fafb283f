"""`sparsevideonav`: the SparseVideoNav policy behind the common Policy contract.

Per 4 FPS frame (observe): centre-crop/resize to the model's size; frames that leave the reference
window become history and are VAE-encoded once, chunk by chunk, with a cache kept across steps.
Every `plan_every_frames` frames (plan): reference = newest 8 frames (2 latent chunks, encoded on
their own as in the release), history compressed to a fixed token count, 4-step sparse-future
sampling, then one of two heads (``sparsevideonav.action_head``, resolved at load by models.resolve_action_head):

- dit: the trained action head -> 8 (dx, dy, dtheta) -> 8 cumulative waypoints 0.25 s apart.
- pose: the VAE decodes the imagined latents only as far as the newest instant the plan uses
  (video_latents.decode_instants: latents 0 .. 1 + pose_future_instants, one frame kept per instant),
  the pose estimator finds each imagined camera relative to the decoded current frame, and the pose
  head (pose_head.py) projects them through the camera mount into waypoints every 0.25 s. A refused
  estimate is a stop in state ``pose_invalid`` whose ``Plan.reason`` says why.
"""
from __future__ import annotations

import math
import time
from pathlib import Path
from typing import Optional

import numpy as np
import torch

from sparsevideonav_ros.core import se2
from sparsevideonav_ros.policies.base import Observation, Plan, Policy, PolicyError
from sparsevideonav_ros.policies.pose_estimators import CameraMount, make_estimator, mount_preset
from sparsevideonav_ros.policies.pose_estimators.base import crop_resize_intrinsics, intrinsics_from_fov
from sparsevideonav_ros.policies.sparsevideonav.configuration_sparsevideonav import SparseVideoNavConfig
from sparsevideonav_ros.policies.sparsevideonav.models import SparseVideoNavModels, load_models
from sparsevideonav_ros.policies.sparsevideonav.pose_head import (FUTURE_TIMES_S, ImaginedFrames, PoseHead,
                                                                  PoseHeadConfig, instant_frame_indices)
from sparsevideonav_ros.policies.sparsevideonav.sampling import REFERENCE_LATENTS, sample_sparse_future
from sparsevideonav_ros.policies.sparsevideonav.video_latents import (StreamingVideoEncoder, decode_instants,
                                                                       decode_latents,
                                                                       encode_clip, preprocess_frame)

FRAMES_PER_CHUNK = 4
REFERENCE_FRAMES = REFERENCE_LATENTS * FRAMES_PER_CHUNK  # 8
ACTION_DT_S = 0.25  # one action per 4 FPS frame


class SparseVideoNavPolicy(Policy):
    name = "sparsevideonav"
    config_class = SparseVideoNavConfig
    frame_rate_hz = 4.0  # trained on 4 FPS clips
    chunk_frames = FRAMES_PER_CHUNK  # the VAE encodes 4 frames per latent; plans keep that grid
    action_dt_s = ACTION_DT_S

    def __init__(self, config: SparseVideoNavConfig, models: Optional[SparseVideoNavModels] = None) -> None:
        super().__init__(config)
        # Weights load here, once, at node configure time (missing files fail the node's start).
        self.models = models or load_models(config)
        self.device = torch.device(config.device)
        if config.compile:
            self.compile_models()
        self.history_encoder = StreamingVideoEncoder(self.models.vae)
        self._text: Optional[tuple[torch.Tensor, torch.Tensor]] = None
        self.pose_head: Optional[PoseHead] = None
        # The decode step of the pose head; tests swap it for rendered frames (pose_head.ImaginedFrames).
        self.imagined_frames: ImaginedFrames = self.decode_imagined_instants
        if self.models.head == "pose":
            self.pose_head = self.build_pose_head()
        self.reset()

    def compile_models(self) -> None:
        """sparsevideonav.compile: diffusers' regional compilation of the backbone's (and the DiT head's)
        repeated blocks with static shapes (every plan has the same shapes), lazily at the first plan."""
        options = dict(fullgraph=True, dynamic=False, mode=None if self.config.compile_mode == "default"
                       else self.config.compile_mode)
        self.models.transformer.compile_repeated_blocks(**options)
        if self.models.action_head is not None:
            self.models.action_head.compile_repeated_blocks(**options)

    def build_pose_head(self, config: Optional[SparseVideoNavConfig] = None) -> PoseHead:
        """The pose head of this config (estimator, mount), or of ``config`` (training relabels each episode
        through its own recorded mount)."""
        config = config or self.config
        mount = camera_mount(config)
        return PoseHead(make_estimator(config.pose_estimator, mount, **_estimator_options(config)), mount,
                        PoseHeadConfig(min_valid_frames=min(2, config.pose_future_instants)))

    # -- episode state --------------------------------------------------------------------------
    def reset(self) -> None:
        self.history_encoder.reset()
        self._pending: list[torch.Tensor] = []  # (3, S, S) frames not yet encoded as history, oldest first
        self._history_latents: list[torch.Tensor] = []  # (1, 16, 1, h, w) per history chunk
        self._frames_seen = 0
        self._latest: Optional[Observation] = None
        self._last_plan: Optional[Plan] = None
        self._decoded_for_preview: Optional[tuple[torch.Tensor, torch.Tensor]] = None  # (latents, all frames)

    def set_instruction(self, text: str) -> None:
        super().set_instruction(text)
        # Once per instruction, never per step.
        self._text = self.models.encode_instruction(self.instruction)
        self._last_plan = None

    @property
    def history_length(self) -> int:
        return self._frames_seen

    @property
    def history_chunks(self) -> int:
        return len(self._history_latents)

    def plans_at(self, frames_seen: int) -> bool:
        """Every plan_every_frames-th frame (a multiple of 4): history chunks and the 8 reference frames
        then tile the episode without a gap (plan() repeats its last plan in between)."""
        return frames_seen % self.config.plan_every_frames == 0

    def observe(self, observation: Observation) -> None:
        frame = preprocess_frame(observation.rgb, self.models.image_size)
        self._pending.append(frame)
        self._frames_seen += 1
        self._latest = observation
        self._encode_finished_history()

    def _encode_finished_history(self) -> None:
        """Encode every 4-frame chunk that is older than the 8 reference frames of the next plan.

        The grid is anchored at the episode's first frame, as in the release when planning every
        4 frames; the first frame is also fed alone first (the release's repeated context frame).
        """
        if self.history_encoder.chunks_encoded == 0 and not self.history_encoder.started and self._pending:
            self.history_encoder.start(self._batch(self._pending[:1])[:, :, 0])
        while len(self._pending) >= FRAMES_PER_CHUNK + REFERENCE_FRAMES:
            chunk = self._pending[:FRAMES_PER_CHUNK]
            del self._pending[:FRAMES_PER_CHUNK]
            self._history_latents.append(self.history_encoder.encode_chunk(self._batch(chunk)))
            limit = self.models.max_history_chunks
            if len(self._history_latents) > limit:  # Q-Former frame positions end at `limit`
                del self._history_latents[0]

    def _batch(self, frames: list[torch.Tensor]) -> torch.Tensor:
        """[(3, S, S)] -> (1, 3, T, S, S) on the model's device and dtype."""
        return torch.stack(frames, dim=1).unsqueeze(0).to(self.device, self.models.vae.dtype)

    # -- planning -------------------------------------------------------------------------------
    def plan(self) -> Plan:
        if self._latest is None:
            raise PolicyError("plan() before any observation")
        stamp = self._latest.stamp
        if self._text is None:
            return Plan.stand_still(stamp, "waiting_instruction")
        if self._frames_seen < self.config.min_frames:
            return Plan.stand_still(stamp, "warming_up")
        if not self.plans_at(self._frames_seen) and self._last_plan is not None:
            return self._last_plan  # planned from an older frame; its stamp anchors it correctly
        self._last_plan = self._plan_now(stamp)
        return self._last_plan

    def _generator(self) -> Optional[torch.Generator]:
        if self.config.seed < 0:
            return None
        return torch.Generator(device="cpu").manual_seed(self.config.seed)

    def imagine(self, timings: Optional[dict[str, float]] = None) -> torch.Tensor:
        """Generate the sparse future from the current history and reference frames.

        Returns (1, 16, 10, h, w): the 2 reference latents then the 8 future latents. Needs >= 8 frames
        and an instruction. Also used to build action-head training data (tools/train_action_head).
        """
        if self._text is None:
            raise PolicyError("imagine() needs an instruction")
        if len(self._pending) < REFERENCE_FRAMES:
            raise PolicyError(f"imagine() needs {REFERENCE_FRAMES} reference frames, has {len(self._pending)}")
        timings = {} if timings is None else timings
        clock = time.perf_counter
        text_embeds, text_mask = self._text
        with torch.no_grad():
            start = clock()
            reference = encode_clip(self.models.vae, self._batch(self._pending[-REFERENCE_FRAMES:]))
            timings["vae_encode_reference_s"] = clock() - start

            start = clock()
            history_tokens = None
            if self._history_latents:
                history = torch.cat(self._history_latents, dim=2)
                history_tokens = self.models.transformer.compress_history(history, None, text_embeds, text_mask)
            timings["history_compression_s"] = clock() - start

            start = clock()
            latents = sample_sparse_future(self.models.transformer, reference, text_embeds, history_tokens,
                                           sampler=self.config.sampler, steps=self.config.sampler_steps,
                                           generator=self._generator())
            timings["backbone_s"] = clock() - start
        return latents

    @property
    def instruction_embedding(self) -> tuple[torch.Tensor, torch.Tensor]:
        """(embeds (1, 512, text_dim), mask (1, 512)) of the current instruction."""
        if self._text is None:
            raise PolicyError("no instruction set")
        return self._text

    @property
    def pose_times_s(self) -> tuple[float, ...]:
        """Seconds after T of the imagined instants the pose head uses (the first pose_future_instants)."""
        return FUTURE_TIMES_S[: self.config.pose_future_instants]

    def decode_imagined_instants(self, latents: torch.Tensor) -> tuple[np.ndarray, list[np.ndarray]]:
        """ImaginedFrames hook: latents (1, 16, 10, h, w) -> (current (S, S, 3) uint8 RGB, futures [(S, S, 3)]).

        Decoded frame 4 (latent 1, the newest reference chunk) stands for T, decoded frame 4i (latent i)
        for latent i's instant (pose_head.instant_frame_indices); decode_instants runs the causal decoder
        up to the newest latent needed and keeps just those frames.
        """
        current, futures = instant_frame_indices()
        wanted = [current, *futures[: self.config.pose_future_instants]]
        if self.config.preview:
            # The preview mosaic needs every instant: decode all latents once, for both (_plan_now reuses it).
            full = decode_latents(self.models.vae, latents)[0]  # (3, 37, S, S)
            self._decoded_for_preview = (latents, full)
            frames = full[:, wanted]
        else:
            frames = decode_instants(self.models.vae, latents, [index // 4 for index in wanted])[0]  # (3, n, S, S)
        rgb = ((frames.clamp(-1, 1) + 1) * 127.5).round().byte().permute(1, 2, 3, 0).cpu().numpy()
        return np.ascontiguousarray(rgb[0]), [np.ascontiguousarray(f) for f in rgb[1:]]

    def camera_intrinsics(self) -> tuple[np.ndarray, str]:
        """(K (3, 3) px of the newest observation's image, where it came from): the camera's CameraInfo when the
        observation carries one (Observation.camera_matrix), else a pinhole from horizontal_fov_deg."""
        latest = self._latest
        if latest.camera_matrix is not None:
            return latest.camera_matrix, "camera_info"
        height, width = latest.rgb.shape[:2]
        return (intrinsics_from_fov(width, height, math.radians(self.config.horizontal_fov_deg)),
                f"horizontal_fov_deg {self.config.horizontal_fov_deg:g} (no camera_info for {width}x{height} frames)")

    def status_values(self) -> dict[str, object]:
        from sparsevideonav_ros.policies import memory_plan

        values: dict[str, object] = {"memory_plan": memory_plan.policy_plan_line(self, "sparsevideonav")}
        if self.pose_head is None or self._latest is None:
            return values
        return {**values, "pose_intrinsics": self.camera_intrinsics()[1]}

    def pose_intrinsics(self, frame_size: int) -> np.ndarray:
        """(3, 3) pinhole matrix (px) of frame_size x frame_size imagined frames: the camera image's
        (camera_intrinsics: its CameraInfo, else horizontal_fov_deg) centre-cropped and resized as
        preprocess_frame does to the model's image_size, then to frame_size (a decode hook may return
        another size)."""
        height, width = self._latest.rgb.shape[:2]
        camera, _ = self.camera_intrinsics()
        model = crop_resize_intrinsics(camera, width, height, self.models.image_size)
        size = self.models.image_size
        return model if frame_size == size else crop_resize_intrinsics(model, size, size, frame_size)

    def pose_plan(self, stamp: float, latents: torch.Tensor, timings: Optional[dict[str, float]] = None,
                  pose_head: Optional[PoseHead] = None) -> Plan:
        """Imagined latents (1, 16, 10, h, w) -> a plan through the pose head (``pose_head`` or the policy's own):
        'ok' with waypoints every 0.25 s up to the last pose instant, or a 'pose_invalid' stop with its reason.
        Needs an observation (the intrinsics come from its image size)."""
        pose_head = pose_head or self.pose_head
        if pose_head is None:
            raise PolicyError("pose_plan() without a pose head (action_head is dit): pass one (build_pose_head())")
        timings = {} if timings is None else timings
        clock = time.perf_counter
        start = clock()
        current, futures = self.imagined_frames(latents)
        timings["pose_decode_s"] = clock() - start
        times = self.pose_times_s
        if len(futures) != len(times):
            raise PolicyError(f"the imagined-frames hook returned {len(futures)} future frames, the pose head "
                              f"uses {len(times)} ({times} s)")
        result = pose_head.plan(stamp, current, futures, self.pose_intrinsics(current.shape[1]), times)
        timings.update({f"pose_{name}": seconds for name, seconds in result.timings_s.items()})
        plan = result.plan
        plan.timings_s = timings
        plan.reason = result.reason
        return plan

    def _plan_now(self, stamp: float) -> Plan:
        timings: dict[str, float] = {}
        clock = time.perf_counter
        text_embeds, text_mask = self._text
        latents = self.imagine(timings)
        if self.pose_head is not None:
            plan = self.pose_plan(stamp, latents, timings)
            if self.config.preview:
                start = clock()
                decoded, self._decoded_for_preview = self._decoded_for_preview, None
                with torch.no_grad():
                    plan.preview = self.models.preview_mosaic(
                        latents, frames=decoded[1] if decoded is not None and decoded[0] is latents else None)
                timings["preview_decode_s"] = clock() - start
            return plan
        with torch.no_grad():
            start = clock()
            future = latents[:, :, REFERENCE_LATENTS:]
            actions = self.models.action_head.sample(future, text_embeds, text_mask,
                                                     num_inference_steps=self.config.action_steps,
                                                     generator=self._generator())
            timings["action_head_s"] = clock() - start

            preview = None
            if self.config.preview:
                start = clock()
                preview = self.models.preview_mosaic(latents)
                timings["preview_decode_s"] = clock() - start
        deltas = actions[0].float().cpu().numpy().astype(float)
        if not np.all(np.isfinite(deltas)):
            raise PolicyError(f"action head returned non-finite actions: {deltas.tolist()}")
        waypoints = se2.poses_from_deltas(deltas)
        return Plan(stamp=stamp, waypoints=waypoints, state="ok", waypoint_dt_s=ACTION_DT_S, preview=preview,
                    timings_s=timings)

    def describe(self) -> dict:
        out = {**super().describe(), "head": self.models.head, "head_reason": self.models.head_reason,
               "action_head": self.models.action_head_source}
        if self.pose_head is not None:
            out["pose_head"] = self.pose_head.describe()
        return out

    def load_summary(self) -> str:
        """One start-up line: which head runs and why; for pose the estimator (weights, licence) and the mount;
        then the memory plan (policies/memory_plan.py)."""
        from sparsevideonav_ros.policies import memory_plan

        plan = "; " + memory_plan.policy_plan_line(self, "sparsevideonav")
        if self.pose_head is None:
            return f"head dit ({self.models.head_reason}): action head {self.models.action_head_source}{plan}"
        cfg = self.config
        est = self.pose_head.estimator.describe()
        if est["estimator"] == "da3":
            estimator = f"estimator da3 {est.get('model')} from {est.get('weights')} (weights licence: {est.get('licence')})"
        else:
            estimator = "estimator opencv (two-view geometry, no weights)"
        m = self.pose_head.mount
        times = self.pose_times_s
        return (f"head pose ({self.models.head_reason}): {estimator}; camera mount {cfg.camera_mount} "
                f"({m.height_m:.2f} m high, {math.degrees(m.pitch_down_rad):.1f} deg down, {m.forward_m:.2f} m ahead); "
                f"horizontal FOV {cfg.horizontal_fov_deg:g} deg; {len(times)} imagined instants T+"
                f"{', '.join(f'{t:g}' for t in times)} s{plan}")


def camera_mount(config: SparseVideoNavConfig) -> CameraMount:
    """The mount of config.camera_mount: a preset, or custom from the mount_* parameters."""
    if config.camera_mount == "custom":
        return CameraMount(height_m=config.mount_height_m, pitch_down_rad=math.radians(config.mount_pitch_down_deg),
                           forward_m=config.mount_forward_m)
    return mount_preset(config.camera_mount)


def _estimator_options(config: SparseVideoNavConfig) -> dict:
    if config.pose_estimator != "da3":
        return {}
    folder = Path(config.da3_dir).expanduser() if config.da3_dir else None
    if folder is None or not folder.is_dir():
        raise PolicyError(f"sparsevideonav.pose_estimator is da3 but sparsevideonav.da3_dir "
                          f"{str(folder) if folder else '(empty)'!r} is not a folder: give a local Depth Anything 3 "
                          f"folder (config.json + model.safetensors, e.g. DA3-Small) or use pose_estimator opencv")
    return {"weights": str(folder), "device": config.device}  # DA3 runs where the video model runs
