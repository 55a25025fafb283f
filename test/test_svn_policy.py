"""The `sparsevideonav` policy end to end on the tiny model: streaming history, planning cadence,
both checkpoint layouts through the real loaders, bad inputs.

The tiny model set has every weight drawn at random (models.build_tiny_models): its plans depend on the
frames, the history, the instruction, the seed and every part's weights, so each comparison below can fail.
"""
import copy
import dataclasses
import shutil

import numpy as np
import pytest
import torch

from sparsevideonav_ros.configs import ConfigError
from svn_helpers import write_release_layout
from sparsevideonav_ros.policies import registry
from sparsevideonav_ros.policies.base import Observation, PolicyError
from sparsevideonav_ros.policies.sparsevideonav import checkpoints, models
from sparsevideonav_ros.policies.sparsevideonav.configuration_sparsevideonav import SparseVideoNavConfig
from sparsevideonav_ros.policies.sparsevideonav.policy import SparseVideoNavPolicy

INSTRUCTION = "walk forward and stop by the wooden door"
# A plan differs from another when some waypoint coordinate differs by more than this (m or rad): 10x the
# tolerance of the layout round trips, and far below what a changed input or weight does to a tiny plan
# (1e-3 .. 1 at the time of writing).
DIFFERENT = 1e-4
# One tensor per loaded part, each on the path from the frames / instruction to the plan; the transformer's is
# its history attention output (zero-initialised in the real class, so a fresh model would ignore it).
PERTURBED = [("transformer", "blocks.1.attn_history.to_out.0.weight"), ("transformer", "blocks.0.attn1.to_q.weight"),
             ("vae", "encoder.conv_in.weight"), ("text_encoder", "encoder.block.1.layer.1.DenseReluDense.wo.weight"),
             ("action_head", "action_out.weight")]


def frames(count, seed=0, shape=(96, 128, 3)):
    rng = np.random.default_rng(seed)
    return [rng.integers(0, 255, shape, dtype=np.uint8) for _ in range(count)]


def run(policy, images, start=0):
    plans = []
    for i, rgb in enumerate(images, start):
        plans.append(policy.step(Observation(stamp=i * 0.25, rgb=rgb)))
    return plans


def part_modules(model_set) -> dict:
    """The loaded parts as torch modules (the text encoder's is the umT5 inside InstructionEncoder)."""
    return {"transformer": model_set.transformer, "vae": model_set.vae, "action_head": model_set.action_head,
            "text_encoder": model_set.text_encoder.text_encoder}


def perturbed(model_set, part, name, seed=99):
    """A copy of `model_set` whose tensor `name` of `part` is redrawn (same std): what a mis-mapped or stale
    weight looks like. The other parts are shared, not copied; a copied text encoder starts with no cache."""
    module = copy.deepcopy(part_modules(model_set)[part])
    tensor = dict(module.named_parameters())[name]
    with torch.no_grad():
        tensor.copy_(torch.randn(tensor.shape, generator=torch.Generator().manual_seed(seed)) * tensor.std())
    if part != "text_encoder":
        return dataclasses.replace(model_set, **{part: module})
    encoder = copy.copy(model_set.text_encoder)
    encoder.text_encoder, encoder._cache = module, type(model_set.text_encoder._cache)()
    return dataclasses.replace(model_set, text_encoder=encoder)


def assert_same_weights(loaded, original):
    """Every tensor of every part equal after a save/load round trip (names and values)."""
    for part, module in part_modules(original).items():
        expected, got = module.state_dict(), part_modules(loaded)[part].state_dict()
        assert sorted(got) == sorted(expected), part
        for key, value in expected.items():
            torch.testing.assert_close(got[key].float(), value.float(), rtol=0, atol=0, msg=f"{part}.{key}")


def plan_of(model_set, images, seed=1, instruction=INSTRUCTION):
    policy = SparseVideoNavPolicy(SparseVideoNavConfig(seed=seed), models=model_set)
    policy.set_instruction(instruction)
    return run(policy, images)[-1].waypoints


def max_difference(a, b):
    return float(np.abs(np.asarray(a) - np.asarray(b)).max())


@pytest.fixture(scope="module")
def tiny_models():
    return models.load_models(SparseVideoNavConfig())


@pytest.fixture
def policy(tiny_models):
    policy = SparseVideoNavPolicy(SparseVideoNavConfig(preview=True), models=tiny_models)
    policy.set_instruction(INSTRUCTION)
    return policy


def test_registry_builds_the_policy_from_the_tiny_checkpoint():
    policy = registry.make_policy("sparsevideonav", {"sampler_steps": 2})
    assert policy.name == "sparsevideonav" and policy.models.image_size == models.TINY_IMAGE_SIZE


def test_waits_for_an_instruction_and_warms_up_until_12_frames(tiny_models):
    policy = SparseVideoNavPolicy(SparseVideoNavConfig(), models=tiny_models)
    assert run(policy, frames(1))[0].state == "waiting_instruction"
    policy.set_instruction(INSTRUCTION)
    plans = run(policy, frames(11)[1:], start=1)
    assert {p.state for p in plans} == {"warming_up"} and all(len(p.waypoints) == 0 for p in plans)
    plan = run(policy, frames(1, seed=3), start=11)[0]
    assert plan.state == "ok"


def test_plan_has_8_finite_cumulative_waypoints_a_quarter_second_apart(policy):
    plan = run(policy, frames(12))[-1].validate()
    assert plan.waypoints.shape == (8, 3) and np.all(np.isfinite(plan.waypoints))
    assert plan.waypoint_dt_s == 0.25 and plan.stamp == 11 * 0.25
    assert set(plan.timings_s) >= {"vae_encode_reference_s", "history_compression_s", "backbone_s", "action_head_s"}
    assert plan.preview is not None and plan.preview.dtype == np.uint8 and plan.preview.shape == (128, 256, 3)


def test_history_is_encoded_once_per_chunk_and_plans_every_4_frames(policy):
    encoder_inputs = []
    hook = policy.models.vae.encoder.register_forward_hook(lambda m, args, out: encoder_inputs.append(args[0].shape[2]))
    try:
        plans = run(policy, frames(24))
    finally:
        hook.remove()
    # 24 frames: history = frames[0:16] = 4 chunks, each encoded exactly once, plus the 1-frame start
    assert policy.history_chunks == 4
    # reference clips: planned at 12, 16, 20, 24 frames -> 4 clips of (1 + 8) frames through diffusers' encode
    history_passes = [n for n in encoder_inputs]
    assert history_passes.count(4) == 4 + 4 * 2 and history_passes.count(1) == 1 + 4
    assert plans[10].state == "warming_up" and plans[11].state == "ok"
    fresh = [i for i in range(12, 24) if plans[i] is not plans[i - 1]]
    assert fresh == [15, 19, 23]  # a new plan every 4 frames, the last one repeated in between
    assert plans[13].stamp == plans[11].stamp  # a repeated plan keeps the stamp of the frame it came from


def test_reset_forgets_the_episode(policy):
    run(policy, frames(16))
    policy.reset()
    assert policy.history_chunks == 0 and policy.history_length == 0
    assert run(policy, frames(1))[0].state == "warming_up"


def test_same_seed_same_plan_and_instruction_matters(tiny_models):
    images = frames(12)
    first, again = plan_of(tiny_models, images, seed=7), plan_of(tiny_models, images, seed=7)
    np.testing.assert_array_equal(first, again)
    other_instruction = plan_of(tiny_models, images, seed=7, instruction="turn left at the door then walk forward")
    assert max_difference(other_instruction, first) > DIFFERENT
    assert max_difference(plan_of(tiny_models, images, seed=8), first) > DIFFERENT  # the seed drives the sampling


def test_plan_depends_on_the_reference_frames_and_the_history(tiny_models):
    images = frames(16)
    base = plan_of(tiny_models, images)
    # The test frames are noise that resizing to 64x64 averages towards grey, and the reference reaches the
    # action head only through the generated future: black reference frames (8-15) make a change that survives.
    black = images[:8] + [np.zeros_like(images[0])] * 8
    assert max_difference(plan_of(tiny_models, black), base) > DIFFERENT
    # At 16 frames, frames 0-7 are history only (2 chunks, the reference is frames 8-15): a grey first chunk
    # reaches the plan only through the history tokens.
    grey = [np.full_like(images[0], 128)] * 4 + images[4:]
    assert max_difference(plan_of(tiny_models, grey), base) > DIFFERENT


@pytest.mark.parametrize("part, name", PERTURBED)
def test_a_weight_change_in_any_loaded_part_changes_the_plan(tiny_models, part, name):
    images = frames(16)  # 16 frames: 2 history chunks, so the history path is exercised too
    assert max_difference(plan_of(perturbed(tiny_models, part, name), images), plan_of(tiny_models, images)) \
        > DIFFERENT


def test_our_layout_round_trips(tiny_models, tmp_path):
    tiny_models.save_pretrained(tmp_path / "ours")
    loaded = models.load_models(SparseVideoNavConfig(checkpoint=str(tmp_path / "ours")))
    a = SparseVideoNavPolicy(SparseVideoNavConfig(seed=1), models=tiny_models)
    b = SparseVideoNavPolicy(SparseVideoNavConfig(seed=1), models=loaded)
    for p in (a, b):
        p.set_instruction(INSTRUCTION)
    reference = run(a, frames(16))[-1].waypoints
    np.testing.assert_allclose(run(b, frames(16))[-1].waypoints, reference, atol=1e-5)
    assert_same_weights(loaded, tiny_models)
    # The waypoint comparison can fail: one redrawn history-attention weight moves the plan far beyond atol.
    wrong = perturbed(loaded, "transformer", "blocks.1.attn_history.to_out.0.weight")
    assert max_difference(plan_of(wrong, frames(16)), reference) > DIFFERENT


def test_release_layout_loads_through_the_original_files(tiny_models, tmp_path):
    release, wan, ours = write_release_layout(tiny_models, tmp_path)
    config = dict(checkpoint=str(release), wan_diffusers_dir=str(wan), action_head_dir=str(ours / "action_head"))
    with pytest.raises(Exception, match="action head"):  # dit asks for a trained head; the release has none
        models.load_models(SparseVideoNavConfig(checkpoint=str(release), wan_diffusers_dir=str(wan), action_head="dit"))
    loaded = models.load_models(SparseVideoNavConfig(**config))
    assert loaded.image_size == tiny_models.image_size
    a = SparseVideoNavPolicy(SparseVideoNavConfig(seed=2), models=tiny_models)
    b = SparseVideoNavPolicy(SparseVideoNavConfig(seed=2, **config), models=loaded)
    for p in (a, b):
        p.set_instruction(INSTRUCTION)
    reference = run(a, frames(12))[-1].waypoints
    np.testing.assert_allclose(run(b, frames(12))[-1].waypoints, reference, atol=1e-5)
    # Through the authors' naming and back (Wan keys, history modules, original VAE and umT5 files): every tensor.
    assert_same_weights(loaded, tiny_models)
    wrong = perturbed(loaded, "transformer", "blocks.1.attn_history.to_out.0.weight")
    assert max_difference(plan_of(wrong, frames(12), seed=2), reference) > DIFFERENT


def test_missing_checkpoint_files_are_named(tmp_path, tiny_models):
    with pytest.raises(checkpoints.CheckpointError, match="not a folder"):
        models.load_models(SparseVideoNavConfig(checkpoint=str(tmp_path / "nope")))
    with pytest.raises(checkpoints.CheckpointError, match="sparsevideonav.json"):
        models.load_models(SparseVideoNavConfig(checkpoint=str(tmp_path)))
    ours = tiny_models.save_pretrained(tmp_path / "ours")
    (ours / "action_head" / "diffusion_pytorch_model.safetensors").unlink()
    with pytest.raises(checkpoints.CheckpointError, match="action head weights"):  # a broken head never falls back
        models.load_models(SparseVideoNavConfig(checkpoint=str(ours)))
    shutil.rmtree(ours / "action_head")
    with pytest.raises(checkpoints.CheckpointError, match="action_head"):
        models.load_models(SparseVideoNavConfig(checkpoint=str(ours), action_head="dit"))
    assert models.load_models(SparseVideoNavConfig(checkpoint=str(ours))).head == "pose"  # auto, no head


def test_non_finite_actions_are_refused(policy, monkeypatch):
    monkeypatch.setattr(policy.models.action_head, "sample",
                        lambda *a, **k: torch.full((1, 8, 3), float("nan")))
    run(policy, frames(11))
    with pytest.raises(PolicyError, match="non-finite"):
        run(policy, frames(1), start=11)


@pytest.mark.parametrize("values", [{"sampler": "ddim"}, {"plan_every_frames": 3}, {"min_frames": 8},
                                    {"dtype": "float64"}, {"checkpoint": " "}])
def test_bad_config(values):
    with pytest.raises(ConfigError):
        SparseVideoNavConfig(**values)


def test_bad_frames_and_instruction(policy):
    with pytest.raises(PolicyError):
        policy.set_instruction("  ")
    with pytest.raises(PolicyError):
        Observation(stamp=0.0, rgb=np.zeros((4, 4), np.uint8))
