"""JanusVLN defaults follow the authors' released inference (docs/janusvln.md): re-encoding up to 9 frames with
the current frame's spatial tokens on every image, tall frames centre-cropped, exact action strings, bfloat16
on CUDA; the dual semantic memory and the lenient parser stay available as options."""
import numpy as np
import pytest
import torch
from PIL import Image

from sparsevideonav_ros.configs import ConfigError
from sparsevideonav_ros.policies import registry
from sparsevideonav_ros.policies.janusvln import models
from sparsevideonav_ros.policies.janusvln.actions import ACTIONS, parse_action, parse_exact
from sparsevideonav_ros.policies.janusvln.configuration_janusvln import JanusVLNConfig, resolve_dtype
from sparsevideonav_ros.policies.janusvln.spatial import SpatialMemory
from sparsevideonav_ros.policies.janusvln.vision_inputs import resize_frame

from janus_helpers import (INSTRUCTION, count_vit_images, frames, make, one_thread,  # noqa: F401 - fixtures
                           run, tiny)


def answer_with(policy, text):
    policy._decide = lambda: (text, {"decode_s": 0.0})


def keep_walking(policy):
    """Run the real decision (ViT, language model, decoding) but answer MOVE_FORWARD: a random model's answer
    would stop the episode, after which nothing is computed."""
    decide = policy._decide
    policy._decide = lambda: ("MOVE_FORWARD", decide()[1])
    return policy


def test_defaults_are_the_release():
    config = JanusVLNConfig()
    assert config.semantic_memory is False
    assert config.action_parsing == "exact"
    assert config.dtype == "auto"
    assert config.history_frames == 8  # + the current frame = the release's 9
    with pytest.raises(ConfigError):
        JanusVLNConfig(action_parsing="fuzzy")


# -- dtype ----------------------------------------------------------------------------------------

def test_dtype_auto_is_bfloat16_on_cuda_and_float32_on_cpu():
    assert resolve_dtype("auto", "cpu") == "float32"
    assert resolve_dtype("auto", "cuda") == resolve_dtype("auto", "cuda:1") == "bfloat16"
    assert resolve_dtype("float16", "cuda") == "float16" and resolve_dtype("bfloat16", "cpu") == "bfloat16"
    policy = registry.make_policy("janusvln", {"max_new_tokens": 2})  # tiny, dtype auto, device cpu
    assert policy.describe()["resolved_dtype"] == "float32"
    assert "float32 on cpu" in policy.load_summary() and "release" in policy.load_summary()
    assert {p.dtype for p in policy.model.model.parameters()} == {torch.float32}


def test_explicit_dtype_is_kept_on_cpu():
    loaded = models.load_janusvln(models.tiny_checkpoint_dir(), "cpu", "bfloat16")
    assert {p.dtype for p in loaded.model.parameters()} == {torch.bfloat16}


# -- frames ---------------------------------------------------------------------------------------

def pil_resize(rgb, width, height):
    return np.array(Image.fromarray(rgb).resize((width, height), Image.Resampling.BICUBIC))


def test_tall_frame_is_centre_cropped_to_the_model_width():
    tall = frames(1, shape=(640, 480, 3))[0]  # portrait: 480 wide, 640 high
    out = resize_frame(tall, 644)
    assert tuple(out.shape) == (3, 644, 644)
    full = pil_resize(tall, 644, 854)  # 640 * 644 / 480 = 858.7 -> 61 patches of 14 = 854 rows
    np.testing.assert_array_equal(out.permute(1, 2, 0).numpy(), full[105:749])  # (854 - 644) // 2 = 105


def test_landscape_frame_is_not_cropped():
    wide = frames(1, shape=(480, 640, 3))[0]
    out = resize_frame(wide, 644)
    assert tuple(out.shape) == (3, 490, 644)
    np.testing.assert_array_equal(out.permute(1, 2, 0).numpy(), pil_resize(wide, 644, 490))


def test_tiny_policy_runs_on_portrait_frames(tiny):
    assert tuple(tiny.frame_inputs(frames(1, shape=(160, 120, 3))[0]).image.shape) == (3, 112, 112)
    plans = run(keep_walking(make(tiny, plan_every_frames=1)), frames(3, shape=(160, 120, 3)))
    assert [p.state for p in plans] == ["ok"] * 3


# -- action parsing -------------------------------------------------------------------------------

@pytest.mark.parametrize("text", ACTIONS)
def test_exact_parser_takes_the_exact_action_string(text):
    parsed = parse_exact(text)
    assert (parsed.action, parsed.understood) == (text, True)


@pytest.mark.parametrize("text", ["MOVE_FORWARD.", " TURN_LEFT", "TURN_RIGHT\n", "move_forward", "turn left",
                                  "I will MOVE_FORWARD", "", "STOPPED"])
def test_exact_parser_stops_on_anything_else(text):
    parsed = parse_exact(text)
    assert (parsed.action, parsed.understood) == ("STOP", False)
    assert parse_action(text, "exact") == parsed


@pytest.mark.parametrize("text, action", [("MOVE_FORWARD.", "MOVE_FORWARD"), (" TURN_LEFT", "TURN_LEFT"),
                                          ("turn right", "TURN_RIGHT"), ("I will MOVE_FORWARD now", "MOVE_FORWARD")])
def test_lenient_parser_reads_the_variants(text, action):
    assert parse_action(text, "lenient").action == action


def test_policy_parses_exactly_by_default_and_leniently_as_an_option(tiny):
    exact = make(tiny, plan_every_frames=1, turn_angle_deg=15.0)
    answer_with(exact, "TURN_LEFT")
    assert run(exact, frames(1))[0].waypoints[0, 2] == pytest.approx(np.radians(15.0))
    answer_with(exact, "TURN_LEFT.")
    assert run(exact, frames(1), start=1)[0].state == "done"  # not the exact string: STOP

    lenient = make(tiny, plan_every_frames=1, action_parsing="lenient")
    answer_with(lenient, "TURN_LEFT.")
    plan = run(lenient, frames(1))[0]
    assert plan.state == "ok" and plan.waypoints[0, 2] == pytest.approx(np.radians(15.0))


# -- memories -------------------------------------------------------------------------------------

def test_default_re_encodes_up_to_9_frames_with_the_current_spatial_tokens_on_each(tiny):
    policy = keep_walking(make(tiny, plan_every_frames=1))
    counts, hook = count_vit_images(policy)
    fused = []
    fuse = policy.model.model.fuse
    policy.model.model.fuse = lambda visual, spatial: fused.append((visual.shape[0], spatial)) or fuse(visual, spatial)
    images = frames(11)
    try:
        plans = run(policy, images)
    finally:
        hook.remove()
        del policy.model.model.fuse
    assert counts == [1, 2, 3, 4, 5, 6, 7, 8, 9, 9, 9]
    assert {"spatial_s", "vision_s", "llm_prompt_s", "decode_s"} <= set(plans[-1].timings_s)
    assert policy.semantic_memory.frame_indices == [] and [p.state for p in plans] == ["ok"] * 11
    # the spatial tokens added at the last step are the CURRENT frame's, one image's worth, for all 9 images
    memory = SpatialMemory(policy.config.initial_window, policy.config.sliding_window)
    with torch.no_grad():
        current = [tiny.spatial_step(tiny.frame_inputs(rgb), memory) for rgb in images][-1]
    visual_tokens, spatial = fused[-1]
    rows, cols = tiny.merged_grid(tiny.frame_inputs(images[-1]))
    assert spatial.shape[0] == rows * cols and visual_tokens == 9 * rows * cols
    torch.testing.assert_close(spatial, current)


def test_semantic_memory_true_still_encodes_each_frame_once(tiny):
    policy = keep_walking(make(tiny, plan_every_frames=1, semantic_memory=True))
    counts, hook = count_vit_images(policy)
    try:
        plans = run(policy, frames(11))
    finally:
        hook.remove()
    assert counts == [1] * 11
    assert policy.semantic_memory.frame_indices == list(range(11))
    assert [p.state for p in plans] == ["ok"] * 11
