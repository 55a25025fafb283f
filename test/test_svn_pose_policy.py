"""SparseVideoNav with the pose head (issue 11), through the policy's own plan() path on the tiny models.

- The decode: only latents up to the newest instant used go through the VAE decoder, one frame kept each.
- Random tiny weights imagine noise: the opencv estimator refuses it, and the plan is a stop that says why.
- The success path: rendered frames of a known walk (test/pose_renderer.py) go in through the policy's
  ImaginedFrames hook in place of the decoded future; the plan that comes out of plan() must follow the walk.
- `action_head auto` picks the trained head where there is one and the pose head otherwise (the authors'
  release layout has none), and the start-up line says which and why.
"""
import math

import numpy as np
import pytest
import torch

from pose_renderer import TRAJECTORIES, Room, camera_pose, constant_twist, render
from svn_helpers import write_release_layout
from sparsevideonav_ros.configs import ConfigError
from sparsevideonav_ros.core import se2
from sparsevideonav_ros.policies import pose_estimators
from sparsevideonav_ros.policies.base import PLAN_STATES, Observation, PolicyError
from sparsevideonav_ros.policies.pose_estimators.base import REASONS, intrinsics_from_fov
from sparsevideonav_ros.policies.pose_estimators.mount import MOUNT_PRESETS
from sparsevideonav_ros.policies.runner import PolicyRunner
from sparsevideonav_ros.policies.sparsevideonav import checkpoints, models
from sparsevideonav_ros.policies.sparsevideonav.configuration_sparsevideonav import (POSE_ESTIMATORS,
                                                                                     SparseVideoNavConfig)
from sparsevideonav_ros.policies.sparsevideonav.policy import SparseVideoNavPolicy
from sparsevideonav_ros.policies.sparsevideonav.pose_head import POSE_INVALID_STATE
from sparsevideonav_ros.policies.sparsevideonav.video_latents import (decode_instants, decode_latents)

INSTRUCTION = "walk forward and stop by the wooden door"
SIZE = 256  # rendered frames: the size the renderer accuracy test measures at
FOV_DEG = 70.0


@pytest.fixture(scope="module")
def tiny_models():
    return models.load_models(SparseVideoNavConfig())


@pytest.fixture(scope="module")
def pose_models():
    return models.load_models(SparseVideoNavConfig(action_head="pose"))


def noise(count, seed=0, shape=(96, 128, 3)):
    rng = np.random.default_rng(seed)
    return [rng.integers(0, 255, shape, dtype=np.uint8) for _ in range(count)]


def run(policy, images):
    return [policy.step(Observation(stamp=i * 0.25, rgb=rgb)) for i, rgb in enumerate(images)]


def test_decode_instants_equals_the_full_decode_and_stops_at_the_newest_latent(tiny_models):
    vae = tiny_models.vae
    latents = torch.randn(1, 16, 10, 8, 8, generator=torch.Generator().manual_seed(0))
    full = decode_latents(vae, latents)  # (1, 3, 37, 64, 64)
    calls = []
    handle = vae.decoder.register_forward_hook(lambda *_: calls.append(1))
    try:
        part = decode_instants(vae, latents, [1, 2, 3])
    finally:
        handle.remove()
    assert part.shape == (1, 3, 3, 64, 64)
    # latent i stands for decoded frame 4i (the last of its chunk), not 4i-3 .. 4i-1
    torch.testing.assert_close(part, full[:, :, [4, 8, 12]], rtol=0, atol=1e-5)
    assert not torch.allclose(part[:, :, 1], full[:, :, 7], atol=1e-3)
    assert len(calls) == 4  # latents 0..3 through the decoder, never the 6 after the newest one asked for
    with pytest.raises(ValueError, match="increase"):
        decode_instants(vae, latents, [3, 2])


def test_pose_head_refuses_imagined_noise_with_a_stop_that_says_why(pose_models):
    policy = SparseVideoNavPolicy(SparseVideoNavConfig(action_head="pose"), models=pose_models)
    assert policy.models.action_head is None and policy.pose_head is not None
    seen = []
    decode = policy.imagined_frames
    policy.imagined_frames = lambda latents: (seen.append(tuple(latents.shape)), decode(latents))[1]
    policy.set_instruction(INSTRUCTION)
    plans = run(policy, noise(12))
    assert [p.state for p in plans[:11]] == ["warming_up"] * 11
    plan = plans[-1]
    assert seen == [(1, 16, 10, 8, 8)]  # the hook got the sampled 2 reference + 8 future latents
    assert POSE_INVALID_STATE in PLAN_STATES
    assert plan.state == POSE_INVALID_STATE and len(plan.waypoints) == 0 and plan.stamp == 11 * 0.25
    # "T+1 s: too_few_features: 5 ratio-test matches < 30": the instant, the failed check, its numbers
    assert plan.reason.startswith("T+1 s: ") and plan.reason.split(": ")[1] in REASONS, plan.reason
    assert {"backbone_s", "pose_decode_s", "pose_estimate_s", "pose_project_s"} <= set(plan.timings_s)
    assert "action_head_s" not in plan.timings_s


def _walk(mount, trajectory="straight", times=(1.0, 2.0)):
    """Rendered frames at T and T + times along a trajectory, and the true base_link waypoints."""
    start, vx, vy, wz = TRAJECTORIES[trajectory]
    k = intrinsics_from_fov(SIZE, SIZE, math.radians(FOV_DEG))
    poses = [constant_twist(start, vx, vy, wz, t) for t in (0.0, *times)]
    frames = [render(Room(seed=0), k, SIZE, SIZE, *camera_pose(p, mount.height_m, mount.pitch_down_rad,
                                                               mount.forward_m, mount.lateral_m)) for p in poses]
    return frames, se2.relative(poses[0], np.asarray(poses[1:]))


@pytest.mark.parametrize("mount_name,trajectory", [("osmo", "straight"), ("d455", "turn_left")])
def test_rendered_imagination_through_the_hook_gives_the_walked_plan(pose_models, mount_name, trajectory):
    """The policy's plan() with rendered frames in place of the decoded future: its intrinsics (from
    horizontal_fov_deg and the camera image size, through the crop/resize to the model and back to the
    frames' size), its mount and its plan assembly must all be right for the walk to come out."""
    mount = MOUNT_PRESETS[mount_name]
    frames, truth = _walk(mount, trajectory)
    config = SparseVideoNavConfig(action_head="pose", camera_mount=mount_name, horizontal_fov_deg=FOV_DEG)
    policy = SparseVideoNavPolicy(config, models=pose_models)
    policy.imagined_frames = lambda latents: (frames[0], frames[1:])
    policy.set_instruction(INSTRUCTION)
    # Camera images of the rendered size (square: the crop keeps all of it, so the rendered K is the camera's)
    plan = run(policy, noise(12, shape=(SIZE, SIZE, 3)))[-1]
    assert plan.state == "ok", plan.reason
    assert plan.stamp == 11 * 0.25 and plan.waypoint_dt_s == 0.25 and plan.reason == ""
    assert plan.waypoints.shape == (8, 3)  # T+0.25 .. T+2 s
    for index, expected in ((3, truth[0]), (7, truth[1])):  # the 4th waypoint is T+1 s, the 8th T+2 s
        distance = np.hypot(*expected[:2])
        error = np.hypot(*(plan.waypoints[index, :2] - expected[:2]))
        assert error < max(0.1 * distance, 0.05), (index, plan.waypoints[index], expected)
        assert abs(math.degrees(se2.wrap_angle(plan.waypoints[index, 2] - expected[2]))) < 3.0


def _walk_with_a_wrong_fov_parameter(pose_models):
    """(policy imagining the rendered osmo walk with horizontal_fov_deg 100 instead of the render's 70, frames,
    true waypoints)."""
    frames, truth = _walk(MOUNT_PRESETS["osmo"])
    policy = SparseVideoNavPolicy(SparseVideoNavConfig(action_head="pose", horizontal_fov_deg=100.0),
                                  models=pose_models)
    policy.imagined_frames = lambda latents: (frames[0], frames[1:])
    policy.set_instruction(INSTRUCTION)
    return policy, frames, truth


def test_wrong_intrinsics_do_not_give_the_walk(pose_models):
    # The same rendered walk with a camera FOV that does not match: the plan must not be the walk (it is
    # refused or off), so the test above depends on the intrinsics the policy computes.
    policy, frames, truth = _walk_with_a_wrong_fov_parameter(pose_models)
    plan = run(policy, noise(12, shape=(SIZE, SIZE, 3)))[-1]
    assert plan.state == POSE_INVALID_STATE or np.hypot(*(plan.waypoints[7, :2] - truth[1, :2])) > 0.05


def test_the_camera_info_matrix_wins_over_the_fov_parameter(pose_models):
    # The same walk and the same wrong horizontal_fov_deg as above, but the observations carry the camera's K
    # (policy_node: its CameraInfo for frames of that size): the plan is the walk again, and status says why.
    policy, frames, truth = _walk_with_a_wrong_fov_parameter(pose_models)
    k = intrinsics_from_fov(SIZE, SIZE, math.radians(FOV_DEG))
    plans = [policy.step(Observation(stamp=i * 0.25, rgb=rgb, camera_matrix=k))
             for i, rgb in enumerate(noise(12, shape=(SIZE, SIZE, 3)))]
    assert plans[-1].state == "ok", plans[-1].reason
    assert np.hypot(*(plans[-1].waypoints[7, :2] - truth[1, :2])) < 0.1 * np.hypot(*truth[1, :2])
    assert policy.status_values()["pose_intrinsics"] == "camera_info"
    policy.step(Observation(stamp=3.0, rgb=noise(1, shape=(SIZE, SIZE, 3))[0]))  # no K: the parameter, said so
    assert policy.status_values()["pose_intrinsics"] == (
        f"horizontal_fov_deg 100 (no camera_info for {SIZE}x{SIZE} frames)")
    for bad in (np.eye(2), np.full((3, 3), np.nan), np.diag([0.0, 1.0, 1.0]), np.diag([100.0, 100.0, 2.0])):
        with pytest.raises(PolicyError, match="camera_matrix"):
            Observation(stamp=0.0, rgb=frames[0], camera_matrix=bad)


def test_preview_and_pose_head_share_one_decode(pose_models):
    # With preview on, the pose head's frames come out of the preview's full decode: the causal decoder
    # runs over the 10 latents once per plan (not 10 for the preview + 4 for the pose head), and the frames
    # it hands the estimator are the ones decode_instants gives.
    policy = SparseVideoNavPolicy(SparseVideoNavConfig(action_head="pose", preview=True), models=pose_models)
    policy.set_instruction(INSTRUCTION)
    calls = []
    decoder = pose_models.vae.decoder
    handle = decoder.register_forward_hook(lambda module, args, output: calls.append(1))
    seen = {}
    decode = policy.decode_imagined_instants

    def spy(latents):
        seen["latents"], seen["frames"] = latents, decode(latents)
        return seen["frames"]

    policy.imagined_frames = spy
    try:
        plans = run(policy, noise(12))
    finally:
        handle.remove()
    assert plans[-1].preview is not None and plans[-1].preview.shape == (128, 256, 3)
    assert len(calls) == 10, len(calls)  # 10 latents, decoded once
    current, futures = seen["frames"]
    exact = decode_instants(pose_models.vae, seen["latents"], [1, 2, 3])[0]
    exact = ((exact.clamp(-1, 1) + 1) * 127.5).round().byte().permute(1, 2, 3, 0).numpy()
    assert np.abs(current.astype(int) - exact[0]).max() <= 1 and np.abs(futures[1].astype(int) - exact[2]).max() <= 1


def test_a_hook_with_the_wrong_number_of_instants_is_an_error(pose_models):
    frames, _ = _walk(MOUNT_PRESETS["osmo"], times=(1.0,))
    policy = SparseVideoNavPolicy(SparseVideoNavConfig(action_head="pose"), models=pose_models)
    policy.imagined_frames = lambda latents: (frames[0], frames[1:])
    policy.set_instruction(INSTRUCTION)
    with pytest.raises(PolicyError, match="1 future frames"):
        run(policy, noise(12))


@pytest.fixture(scope="module")
def release(tiny_models, tmp_path_factory):
    """The tiny set in the authors' release layout, no action head (+ a Wan folder for umT5 and the VAE config)."""
    release, wan, ours = write_release_layout(tiny_models, tmp_path_factory.mktemp("release"))
    return dict(checkpoint=str(release), wan_diffusers_dir=str(wan)), ours / "action_head"


def _loaded_line(config: SparseVideoNavConfig) -> tuple[SparseVideoNavPolicy, str]:
    messages = []
    runner = PolicyRunner(SparseVideoNavPolicy, lambda: SparseVideoNavPolicy(config), log_info=messages.append)
    assert runner.load(), runner.load_error
    lines = [m for m in messages if "loaded" in m]
    assert len(lines) == 1
    return runner.policy, lines[0]


def test_auto_runs_the_pose_head_with_the_release_and_no_head(release):
    layout, _ = release
    policy, line = _loaded_line(SparseVideoNavConfig(**layout))
    assert policy.models.head == "pose" and policy.models.action_head is None
    assert line.startswith("policy 'sparsevideonav' loaded: head pose (auto: the authors' release has no action "
                           "head and sparsevideonav.action_head_dir is empty): estimator opencv (two-view "
                           "geometry, no weights); camera mount osmo (1.00 m high, -5.0 deg down, 0.10 m ahead)"), line
    assert "horizontal FOV 90 deg; 2 imagined instants T+1, 2 s" in line
    policy.set_instruction(INSTRUCTION)
    plan = run(policy, noise(12))[-1]
    assert plan.state == POSE_INVALID_STATE and plan.reason  # random weights imagine noise: refused, stopped


def test_auto_runs_the_trained_head_where_there_is_one(release):
    layout, head = release
    policy, line = _loaded_line(SparseVideoNavConfig(**layout, action_head_dir=str(head)))
    assert policy.models.head == "dit" and policy.pose_head is None
    assert line.startswith(f"policy 'sparsevideonav' loaded: head dit (auto: a trained action head is present): "
                           f"action head {head}"), line
    policy, line = _loaded_line(SparseVideoNavConfig())  # tiny: its own head
    assert policy.models.head == "dit" and "head dit (auto: a trained action head is present)" in line
    # pose wins over a head that is present when asked for
    policy, line = _loaded_line(SparseVideoNavConfig(**layout, action_head_dir=str(head), action_head="pose"))
    assert policy.models.head == "pose" and "head pose (sparsevideonav.action_head is pose)" in line
    with pytest.raises(checkpoints.CheckpointError, match="action_head is dit but no trained action head"):
        models.load_models(SparseVideoNavConfig(**layout, action_head="dit"))


def test_da3_needs_its_folder_and_the_line_names_its_licence(pose_models, tmp_path):
    from sparsevideonav_ros.policies.pose_estimators.da3_estimator import TINY, build_network, save_folder
    missing = tmp_path / "no-da3-here"
    with pytest.raises(PolicyError, match=f"da3_dir '{missing}' is not a folder"):
        SparseVideoNavPolicy(SparseVideoNavConfig(action_head="pose", pose_estimator="da3", da3_dir=str(missing)),
                             models=pose_models)
    with pytest.raises(PolicyError, match="da3_dir"):
        SparseVideoNavPolicy(SparseVideoNavConfig(action_head="pose", pose_estimator="da3"), models=pose_models)
    torch.manual_seed(0)
    folder = save_folder(build_network("da3-small", TINY), tmp_path / "da3", "da3-small", TINY)
    policy = SparseVideoNavPolicy(SparseVideoNavConfig(action_head="pose", pose_estimator="da3", da3_dir=str(folder),
                                                       camera_mount="d455"), models=pose_models)
    line = policy.load_summary()
    assert f"estimator da3 da3-small from {folder} (weights licence: random weights (tests))" in line, line
    assert "camera mount d455 (0.45 m high, 15.0 deg down, 0.28 m ahead)" in line
    on_device = SparseVideoNavPolicy(SparseVideoNavConfig(action_head="pose", pose_estimator="da3", da3_dir=str(folder),
                                                           device="cpu:0"), models=pose_models)
    assert on_device.pose_head.estimator.config.device == "cpu:0"  # DA3 runs where the video model runs


def test_mount_and_estimator_parameters():
    assert POSE_ESTIMATORS == pose_estimators.ESTIMATORS
    config = SparseVideoNavConfig(camera_mount="custom", mount_height_m=0.6, mount_pitch_down_deg=10.0,
                                  mount_forward_m=0.2)
    from sparsevideonav_ros.policies.sparsevideonav.policy import camera_mount
    mount = camera_mount(config)
    assert (mount.height_m, mount.forward_m) == (0.6, 0.2)
    assert math.isclose(mount.pitch_down_rad, math.radians(10.0))
    assert camera_mount(SparseVideoNavConfig(camera_mount="d455")) == MOUNT_PRESETS["d455"]
    for bad in (dict(action_head="trained"), dict(pose_estimator="vggt"), dict(camera_mount="go2"),
                dict(pose_future_instants=0), dict(pose_future_instants=9), dict(horizontal_fov_deg=0.0),
                dict(mount_height_m=0.0), dict(mount_pitch_down_deg=85.0)):
        with pytest.raises(ConfigError):
            SparseVideoNavConfig(**bad)


def test_evaluate_runs_the_pose_head_on_a_video_and_reports_why_it_stopped(tmp_path):
    import json

    from sparsevideonav_ros.tools import evaluate
    from sparsevideonav_ros.tools.demo import generate_clip
    video = generate_clip(tmp_path / "walk.mp4", seconds=3.5)
    out = tmp_path / "report"
    assert evaluate.main([str(video), "--policy", "sparsevideonav", "-p", "action_head=pose", "--instruction", "go",
                          "--out", str(out), "--no-video"]) == 0
    steps = json.loads((out / "steps.json").read_text())
    planned = [s for s in steps if s["state"] not in ("warming_up",)]
    assert planned and all(s["state"] == POSE_INVALID_STATE and s["waypoints"] == [] for s in planned)
    assert all(s["reason"].startswith("T+1 s: ") for s in planned)
    assert all(s["reason"] == "" for s in steps if s["state"] == "warming_up")


def test_train_action_head_relabels_imagined_futures_through_the_pose_head(tiny_models, tmp_path):
    """--labels relabel: the labels are the motions the pose head reads from the imagined frames (here a
    rendered straight walk at 0.3 m/s through the hook), not the recorded odometry (here: standing still);
    they and the decoded frames are kept in the future cache."""
    from sparsevideonav_ros.datasets.episodes import CameraModel, Episode, FrameList
    from sparsevideonav_ros.training.future_cache import FutureCache
    from sparsevideonav_ros.training.generation import generate_futures
    from sparsevideonav_ros.training.labels import planning_frames
    from sparsevideonav_ros.training.samples import training_samples
    mount = MOUNT_PRESETS["osmo"]
    walk, _ = _walk(mount)
    config = SparseVideoNavConfig(sampler_steps=2, horizontal_fov_deg=FOV_DEG, camera_mount="osmo")
    policy = SparseVideoNavPolicy(config, models=tiny_models)
    assert policy.models.head == "dit"  # relabelling trains a DiT head: the pose head only labels
    episode = Episode("still", "test", INSTRUCTION, FrameList(noise(16, shape=(SIZE, SIZE, 3))),
                      np.arange(16) * 0.25, CameraModel(SIZE, SIZE), poses=np.zeros((16, 3)))
    policy.imagined_frames = lambda latents: (walk[0], walk[1:])
    cache = FutureCache(tmp_path / "walk", {"relabel": {"test": 1}})
    every = lambda e: planning_frames(len(e))  # noqa: E731
    summary = generate_futures(policy, [episode], cache, every, pose_head=policy.build_pose_head(), progress=False,
                               log=lambda m: None)
    assert summary.generated == 2 and not summary.refused  # planning at 12 and 16 frames; no odometry after them
    by_episode, _ = training_samples(cache, [episode], "relabel")
    assert len(by_episode["still"]) == 2
    for sample in by_episode["still"]:
        assert sample.actions.shape == (8, 3)
        np.testing.assert_allclose(sample.actions[:, 0], 0.075, atol=0.0075)  # 0.3 m/s x 0.25 s, within 10 %
        np.testing.assert_allclose(sample.actions[:, 1:], 0.0, atol=0.01)
    odometry, _ = training_samples(cache, [Episode("still", "test", INSTRUCTION, episode.frames, episode.stamps_s,
                                                   episode.camera, poses=np.zeros((16, 3)))], "odometry")
    assert odometry["still"] == []  # 16 frames leave no 8 recorded motions after a planning frame
    # The real decode of the tiny model's noise: refused, so no sample, and the reasons are kept.
    policy.imagined_frames = policy.decode_imagined_instants
    cache = FutureCache(tmp_path / "noise", {"relabel": {"test": 1}})
    summary = generate_futures(policy, [episode], cache, every, pose_head=policy.build_pose_head(), progress=False,
                               log=lambda m: None)
    by_episode, counts = training_samples(cache, [episode], "relabel")
    assert by_episode["still"] == [] and len(counts.refused) == 2 == len(summary.refused)
    assert all(reason.startswith("T+1 s: ") for _, _, reason in counts.refused)
    with pytest.raises(ValueError, match="pose head"):
        generate_futures(policy, [episode], FutureCache(tmp_path / "x", {"relabel": None}), every,
                         pose_head=policy.build_pose_head(), progress=False)

def test_relabelling_goes_through_each_episodes_recorded_mount(tiny_models, tmp_path):
    """An episode that records its camera mount (CameraModel height/pitch) is relabelled through it, whatever
    --camera-mount says: the walk rendered from the D455 mount gives the walk's labels although the policy is
    configured for the Osmo, and the same frames without a recorded mount (Osmo assumed) do not."""
    from sparsevideonav_ros.datasets.episodes import CameraModel, Episode, FrameList
    from sparsevideonav_ros.training.future_cache import FutureCache
    from sparsevideonav_ros.training.generation import episode_pose_head, generate_futures
    from sparsevideonav_ros.training.labels import planning_frames
    from sparsevideonav_ros.training.samples import training_samples
    d455 = MOUNT_PRESETS["d455"]
    walk, _ = _walk(d455)
    policy = SparseVideoNavPolicy(SparseVideoNavConfig(sampler_steps=2, horizontal_fov_deg=FOV_DEG,
                                                       camera_mount="osmo"), models=tiny_models)
    policy.imagined_frames = lambda latents: (walk[0], walk[1:])
    default = policy.build_pose_head()
    recorded = CameraModel(SIZE, SIZE, mount_height_m=d455.height_m,
                           mount_pitch_down_deg=math.degrees(d455.pitch_down_rad))
    built: dict = {}
    frames = FrameList(noise(16, shape=(SIZE, SIZE, 3)))

    def episode(camera):
        return Episode("walk", "test", INSTRUCTION, frames, np.arange(16) * 0.25, camera)

    head = episode_pose_head(policy, default, episode(recorded), built)
    assert head is not default and episode_pose_head(policy, default, episode(recorded), built) is head
    assert math.isclose(head.mount.height_m, 0.45) and math.isclose(head.mount.pitch_down_rad, d455.pitch_down_rad)
    assert episode_pose_head(policy, default, episode(CameraModel(SIZE, SIZE)), built) is default

    def labels(camera, name):
        cache = FutureCache(tmp_path / name, {"relabel": {"test": 1}})
        generate_futures(policy, [episode(camera)], cache, lambda e: planning_frames(len(e)), pose_head=default,
                         progress=False, log=lambda m: None)
        return training_samples(cache, [episode(camera)], "relabel")[0]["walk"]

    through_d455 = labels(recorded, "d455")
    assert len(through_d455) == 2
    for sample in through_d455:
        np.testing.assert_allclose(sample.actions[:, 0], 0.075, atol=0.0075)  # 0.3 m/s x 0.25 s
    through_osmo = labels(CameraModel(SIZE, SIZE), "osmo")
    assert not through_osmo or any(abs(float(s.actions[0, 0]) - 0.075) > 0.0075 for s in through_osmo)
