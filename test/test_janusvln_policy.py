"""The `janusvln` policy on the tiny model (loaded through the real loader): action parsing into waypoints,
stop and unparsable answers, planning cadence, both memories on and off (the release's behaviour), bounds."""
import copy
import dataclasses
import logging
import math

import numpy as np
import pytest
import torch

from sparsevideonav_ros.configs import ConfigError
from sparsevideonav_ros.policies import registry
from sparsevideonav_ros.policies.base import Observation, PolicyError
from sparsevideonav_ros.policies.janusvln import models
from sparsevideonav_ros.policies.janusvln.actions import action_waypoints, parse_action
from sparsevideonav_ros.policies.janusvln.configuration_janusvln import JanusVLNConfig
from sparsevideonav_ros.policies.janusvln.policy import JanusVLNPolicy, released_history

from janus_helpers import (INSTRUCTION, count_vit_images, frames, make, one_thread,  # noqa: F401 - fixtures
                           run, tiny)


def scripted(policy, answers):
    """Make the policy's decisions return these answers in turn (the tiny model picks its own by its weights)."""
    answers = iter(answers)
    policy._decide = lambda: (next(answers), {"decode_s": 0.0})


@pytest.mark.parametrize("text, action, understood", [
    ("MOVE_FORWARD", "MOVE_FORWARD", True), ("TURN_LEFT", "TURN_LEFT", True), ("TURN_RIGHT", "TURN_RIGHT", True),
    ("STOP", "STOP", True), ("MOVE_FORWARD.", "MOVE_FORWARD", True), (" turn left", "TURN_LEFT", True),
    ("I will TURN_RIGHT, then MOVE_FORWARD", "TURN_RIGHT", True), ("move forward", "MOVE_FORWARD", True),
    ("", "STOP", False), ("MOVE_BACKWARD", "STOP", False), ("STOPPED", "STOP", False), ("forward", "STOP", False)])
def test_parse_action(text, action, understood):
    parsed = parse_action(text)
    assert (parsed.action, parsed.understood) == (action, understood)


def test_action_waypoints_use_the_configured_sizes():
    np.testing.assert_allclose(action_waypoints("MOVE_FORWARD", 0.3, 15), [[0.3, 0, 0]])
    np.testing.assert_allclose(action_waypoints("TURN_LEFT", 0.25, 30), [[0, 0, math.radians(30)]])
    np.testing.assert_allclose(action_waypoints("TURN_RIGHT", 0.25, 15), [[0, 0, -math.radians(15)]])
    assert action_waypoints("STOP", 0.25, 15).shape == (0, 3)


def test_registry_builds_the_policy_from_the_tiny_checkpoint():
    policy = registry.make_policy("janusvln", {"max_new_tokens": 4, "semantic_memory": False})
    assert policy.name == "janusvln" and not policy.config.semantic_memory
    with pytest.raises(ConfigError):
        registry.make_policy("janusvln", {"turn_angle_deg": 0.0})


def first_logits(policy):
    """Record the logits of the first answer token of every decision (a spy on the shared LanguageModel);
    returns (list of (vocab,) tensors, restore callable)."""
    language, recorded, original = policy.model.language, [], policy.model.language.logits
    decide = policy._decide

    def spied_decide():
        calls = []
        language.logits = lambda hidden: calls.append(original(hidden)) or calls[-1]
        try:
            return decide()
        finally:
            del language.logits
            recorded.append(calls[0])
    policy._decide = spied_decide
    return recorded


def decision_logits(model, images, instruction=INSTRUCTION, **values):
    policy = JanusVLNPolicy(JanusVLNConfig(plan_every_frames=1, **values), model=model)
    policy.set_instruction(instruction)
    recorded = first_logits(policy)
    run(policy, images)
    return recorded[-1]


def redrawn(model, name, seed=99):
    """A copy of the loaded JanusVLN whose tensor `name` (our naming) is redrawn with the same std: what a
    mis-mapped or stale weight looks like."""
    module = copy.deepcopy(model.model)
    tensor = dict(module.named_parameters())[name]
    with torch.no_grad():
        tensor.copy_(torch.randn(tensor.shape, generator=torch.Generator().manual_seed(seed)) * tensor.std())
    return dataclasses.replace(model, model=module)


@pytest.mark.parametrize("semantic_memory", [True, False])
def test_answer_logits_depend_on_the_frames_and_the_instruction(tiny, semantic_memory):
    images = frames(3)
    base = decision_logits(tiny, images, semantic_memory=semantic_memory)
    torch.testing.assert_close(decision_logits(tiny, images, semantic_memory=semantic_memory), base, rtol=0, atol=0)
    other_text = decision_logits(tiny, images, "turn left at the sofa and go to the kitchen",
                                 semantic_memory=semantic_memory)
    assert (other_text - base).abs().max() > 1e-3
    black = decision_logits(tiny, images[:-1] + [np.zeros_like(images[0])], semantic_memory=semantic_memory)
    assert (black - base).abs().max() > 1e-3
    oldest = decision_logits(tiny, [np.zeros_like(images[0])] + images[1:], semantic_memory=semantic_memory)
    assert (oldest - base).abs().max() > 1e-3  # a past frame, through the memories / the re-encoded history


@pytest.mark.parametrize("name", ["qwen.model.language_model.layers.1.self_attn.v_proj.weight",
                                  "qwen.model.visual.blocks.0.mlp.up_proj.weight",
                                  # block 0: the release reads the second-to-last aggregator layer (of 2 here)
                                  "vggt.aggregator.global_blocks.0.attn.qkv.weight", "merger.mlp.0.weight"])
def test_a_weight_change_in_any_loaded_part_changes_the_answer_logits(tiny, name):
    images = frames(3)
    assert (decision_logits(redrawn(tiny, name), images) - decision_logits(tiny, images)).abs().max() > 1e-3


def test_tiny_model_answers_one_action_per_step_as_configured_waypoints(tiny):
    policy = make(tiny, forward_step_m=0.4, turn_angle_deg=20.0, plan_every_frames=1, semantic_memory=True)
    for i, rgb in enumerate(frames(3)):
        plan = policy.step(Observation(stamp=i * 0.25, rgb=rgb))
        assert policy.last_answer in models.TINY_ANSWERS  # wired: an action, never STOP
        assert plan.state == "ok" and plan.stamp == i * 0.25
        np.testing.assert_allclose(plan.waypoints, action_waypoints(policy.last_answer, 0.4, 20.0))
    assert {"spatial_s", "vision_s", "llm_frame_s", "llm_prompt_s", "decode_s"} <= set(plan.timings_s)


def test_waits_for_an_instruction(tiny):
    policy = JanusVLNPolicy(JanusVLNConfig(), model=tiny)
    assert run(policy, frames(1))[0].state == "waiting_instruction"
    with pytest.raises(PolicyError):
        JanusVLNPolicy(JanusVLNConfig(), model=tiny).plan()


def test_turns_stop_and_resume(tiny):
    policy = make(tiny, turn_angle_deg=20.0, plan_every_frames=1)
    scripted(policy, ["TURN_LEFT", "TURN_RIGHT", "STOP"])
    left, right, stop, after = run(policy, frames(4))
    np.testing.assert_allclose(left.waypoints, [[0, 0, math.radians(20)]])
    np.testing.assert_allclose(right.waypoints, [[0, 0, -math.radians(20)]])
    assert stop.state == "done" and len(stop.waypoints) == 0
    assert after.state == "done" and policy.steps == 3  # nothing is computed once stopped
    policy.set_instruction("now turn around")
    scripted(policy, ["MOVE_FORWARD"])
    assert run(policy, frames(1), start=4)[0].state == "ok" and policy.steps == 4  # memories kept


def test_unparsable_answer_stops_with_a_warning(tiny, caplog):
    policy = make(tiny, plan_every_frames=1)
    scripted(policy, ["I am not sure where the door is"])
    with caplog.at_level(logging.WARNING, logger="sparsevideonav_ros.policies.janusvln"):
        plan = run(policy, frames(1))[0]
    assert plan.state == "done" and len(plan.waypoints) == 0
    assert "names no action" in caplog.text and "I am not sure" in caplog.text


def test_one_action_every_plan_every_frames(tiny):
    policy = make(tiny, plan_every_frames=2, semantic_memory=True)
    plans = run(policy, frames(6))
    assert policy.steps == 3 and policy.history_length == 6
    assert policy.spatial_memory.frame_indices == [0, 1, 2] == policy.semantic_memory.frame_indices
    assert [p.stamp for p in plans] == [0.0, 0.0, 0.5, 0.5, 1.0, 1.0]
    assert plans[1] is plans[0] and plans[3] is plans[2]  # frames between action steps keep the last plan


def test_semantic_memory_encodes_each_frame_once_and_off_reproduces_the_release(tiny):
    assert released_history(5, 8) == [0, 1, 2, 3, 4]
    assert released_history(9, 8) == list(range(9))
    assert released_history(20, 8) == list(np.linspace(0, 19, 9).astype(int)) == [0, 2, 4, 7, 9, 11, 14, 16, 19]

    cached = make(tiny, plan_every_frames=1, semantic_memory=True)
    cached_logits = first_logits(cached)
    counts, hook = count_vit_images(cached)
    try:
        run(cached, frames(12))
    finally:
        hook.remove()
    assert counts == [1] * 12  # every frame through the ViT once, when it arrives

    released = make(tiny, plan_every_frames=1, semantic_memory=False)
    released_logits = first_logits(released)
    counts, hook = count_vit_images(released)
    try:
        plans = run(released, frames(12))
    finally:
        hook.remove()
    assert counts == [1, 2, 3, 4, 5, 6, 7, 8, 9, 9, 9, 9]  # up to 8 past frames + the current one, every step
    assert released.semantic_memory.frame_indices == [] and all(p.state == "ok" for p in plans)
    # One frame: both see the same prompt (the frame with its own spatial tokens). Later the release adds the
    # current frame's spatial tokens to every image while the memory keeps each frame's own: they part.
    torch.testing.assert_close(released_logits[0], cached_logits[0], rtol=1e-4, atol=1e-4)
    assert (released_logits[-1] - cached_logits[-1]).abs().max() > 1e-3


def test_spatial_memory_off_recomputes_the_aggregator_over_the_episode(tiny):
    policy = make(tiny, plan_every_frames=1, spatial_memory=False)
    calls = []
    aggregator = policy.model.model.aggregator
    original = aggregator.forward_frames
    aggregator.forward_frames = lambda images, *a, **k: calls.append(len(images)) or original(images, *a, **k)
    try:
        plans = run(policy, frames(4))
    finally:
        del aggregator.forward_frames
    assert calls == [1, 2, 3, 4] and policy.spatial_memory.frame_indices == []
    assert plans[-1].state == "ok"


def test_memories_stop_growing_once_the_windows_are_full(tiny):
    policy = make(tiny, plan_every_frames=1, initial_window=2, sliding_window=3, semantic_memory=True)
    sizes = []
    for i, rgb in enumerate(frames(12)):
        policy.observe(Observation(stamp=i * 0.25, rgb=rgb))
        sizes.append((policy.spatial_memory.nbytes, policy.semantic_memory.nbytes))
    assert len(set(sizes[5:])) == 1
    assert policy.spatial_memory.frame_indices == policy.semantic_memory.frame_indices == [0, 1, 9, 10, 11]
    assert run(policy, frames(1), start=12)[0].state == "ok"
    policy.reset()
    assert policy.steps == 0 and policy.semantic_memory.nbytes == 0 and policy.spatial_memory.nbytes == 0


def test_an_episode_longer_than_the_language_models_positions_fails_clearly(tiny):
    text_config = tiny.model.arch.qwen.text_config
    limit = text_config.max_position_embeddings
    text_config.max_position_embeddings = len(tiny.layout.prefix_ids) + 3 * 6 + 1024  # room for 3 frames
    try:
        policy = make(tiny, plan_every_frames=1, semantic_memory=True)
        run(policy, frames(3))
        with pytest.raises(PolicyError, match="reset the policy"):
            run(policy, frames(1), start=3)
        assert policy.spatial_memory.frame_indices == [0, 1, 2]  # nothing half-added
        policy.reset()
        assert run(policy, frames(1))[0].state == "ok"
    finally:
        text_config.max_position_embeddings = limit
