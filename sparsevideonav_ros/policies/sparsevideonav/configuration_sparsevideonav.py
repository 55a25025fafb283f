"""Parameters of the `sparsevideonav` policy (ROS parameters `sparsevideonav.*` of policy_node)."""
from __future__ import annotations

from dataclasses import dataclass

from sparsevideonav_ros.configs import ConfigError, _positive, check_choices, param
from sparsevideonav_ros.policies.pose_estimators import ESTIMATORS, MOUNT_PRESETS
from sparsevideonav_ros.policies.sparsevideonav.sampling import SAMPLERS

TINY = "tiny"
ACTION_HEADS = ("auto", "dit", "pose")
POSE_ESTIMATORS = ESTIMATORS
CAMERA_MOUNTS = (*MOUNT_PRESETS, "custom")  # the mount presets, or the mount_* parameters
COMPILE_MODES = ("default", "reduce-overhead", "max-autotune", "max-autotune-no-cudagraphs")  # torch.compile's


@dataclass
class SparseVideoNavConfig:
    checkpoint: str = param(TINY, "Model folder: ours (save_pretrained layout), the authors' release folder "
                                  "(with svn_ckpt/), or 'tiny' = a small random model for wiring tests (its "
                                  "plans depend on the frames, instruction and seed, but mean nothing).")
    wan_diffusers_dir: str = param("", "Release layout only: diffusers-format Wan2.1-T2V-1.3B folder giving "
                                       "text_encoder/ and tokenizer/ (and vae/ if Wan2.1_VAE.pth is absent).")
    action_head_dir: str = param("", "A trained action head folder (save_pretrained, e.g. from tools/"
                                     "train_action_head); replaces the checkpoint's own head in every layout, "
                                     "tiny included. The authors' release has no head (unpublished): without this "
                                     "folder it runs the pose head (action_head auto).")
    action_head: str = param("auto", "Which head turns the imagined future into a plan: dit = the trained action "
                                     "head (the folder's action_head/ or action_head_dir; an error without one), "
                                     "pose = camera poses of the decoded imagined frames projected onto the ground "
                                     "(no trained head needed), auto = dit where a trained head is present, else "
                                     "pose (the authors' release has no head).", choices=ACTION_HEADS)
    pose_estimator: str = param("opencv", "Pose head only: opencv = two-view geometry, no weights; da3 = Depth "
                                          "Anything 3 from da3_dir (the licence of its weights is logged).",
                                choices=POSE_ESTIMATORS)
    da3_dir: str = param("", "Pose head with pose_estimator da3: local DA3 folder (config.json + model.safetensors, "
                             "e.g. DA3-Small/Base, Apache-2.0; Large/Giant are CC BY-NC 4.0).")
    pose_future_instants: int = param(2, "Pose head only: imagined instants decoded and estimated (1-8 of T+1, 2, "
                                         "5, 8, ..., 20 s); 2 = a 2 s plan, as the DiT head's 8 actions. Each "
                                         "more is one more VAE latent decoded per plan.")
    camera_mount: str = param("osmo", "Pose head only: camera mount preset (osmo: 1.0 m high, 5 deg up, 0.10 m "
                                      "ahead; d455: 0.45 m, 15 deg down, 0.28 m ahead; assumed values: measure "
                                      "yours) or custom = the mount_* parameters.", choices=CAMERA_MOUNTS)
    mount_height_m: float = param(1.0, "camera_mount custom: optical centre above the ground (m).")
    mount_pitch_down_deg: float = param(-5.0, "camera_mount custom: downward tilt of the optical axis (deg; "
                                              "negative = tilted up).")
    mount_forward_m: float = param(0.1, "camera_mount custom: optical centre ahead of base_link (m).")
    horizontal_fov_deg: float = param(90.0, "Pose head only, used when no camera/camera_info of the images' size "
                                            "arrives (its K wins): horizontal field of view of the camera images "
                                            "(deg), as camera_node's horizontal_fov_deg.")
    device: str = param("cpu", "Torch device of the video model and action head (cpu, cuda, cuda:1, ...).")
    dtype: str = param("float32", "Weights and compute precision.", choices=("float32", "bfloat16", "float16"))
    text_encoder_device: str = param("cpu", "Device of umT5 (used once per instruction; cpu keeps GPU memory free).")
    text_encoder_offload: bool = param(False, "umT5 lives on the CPU and moves to text_encoder_device only to encode "
                                              "a new instruction, then back (GPU memory free between "
                                              "instructions; a move of ~11 GB per new instruction).")
    compile: bool = param(False, "torch.compile the backbone's and the action head's repeated blocks (diffusers' "
                                 "regional compilation; shapes are static); the first plans are slow while it "
                                 "compiles. Needs a C++ compiler on the CPU, Triton on CUDA.")
    compile_mode: str = param("default", "torch.compile mode when compile is true (reduce-overhead = CUDA graphs).",
                              choices=COMPILE_MODES)
    sampler: str = param("unipc", "Video sampler: unipc (the release) or pcm_euler (phase-distilled weights).",
                         choices=SAMPLERS)
    sampler_steps: int = param(4, "Video denoising steps (4 after distillation).")
    action_steps: int = param(10, "DDIM steps of the action head (trained with 100).")
    seed: int = param(0, "Seed of the sampling noise (-1 = random every step).")
    preview: bool = param(False, "Decode the imagined sparse future into policy/future (costs a VAE decode).")
    plan_every_frames: int = param(4, "Plan every N frames at 4 FPS; 4 keeps the VAE chunk grid aligned (1 s).")
    min_frames: int = param(12, "Frames needed before the first plan (1 history chunk + 2 reference chunks).")

    def __post_init__(self) -> None:
        check_choices(self)
        _positive(self, "sampler_steps", "action_steps", "plan_every_frames", "mount_height_m")
        if not 1 <= self.pose_future_instants <= 8:
            raise ConfigError(f"sparsevideonav.pose_future_instants must be 1..8 (the imagined instants T+1 .. "
                              f"T+20 s), got {self.pose_future_instants}")
        if not 0.0 < self.horizontal_fov_deg < 180.0:
            raise ConfigError(f"sparsevideonav.horizontal_fov_deg must be in (0, 180), got {self.horizontal_fov_deg}")
        if not abs(self.mount_pitch_down_deg) < 80.0:
            raise ConfigError(f"sparsevideonav.mount_pitch_down_deg must be within +-80, got {self.mount_pitch_down_deg}")
        if self.min_frames < 12:
            raise ConfigError(f"sparsevideonav.min_frames must be >= 12 (1 history + 2 reference chunks of 4 "
                              f"frames), got {self.min_frames}")
        if self.plan_every_frames % 4:
            raise ConfigError("sparsevideonav.plan_every_frames must be a multiple of 4 (the VAE chunk size)")
        if not self.checkpoint.strip():
            raise ConfigError("sparsevideonav.checkpoint is empty: give a model folder or 'tiny'")
