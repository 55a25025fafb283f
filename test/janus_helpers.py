"""Shared pieces of the JanusVLN tests: the tiny model (loaded once per module through the real loader), a
policy on it with the instruction set, random frames, stepping a policy over frames at 4 FPS.

Test modules import the fixtures by name (pytest finds fixtures in a module's namespace)."""
import numpy as np
import pytest
import torch

from sparsevideonav_ros.policies.base import Observation
from sparsevideonav_ros.policies.janusvln import models
from sparsevideonav_ros.policies.janusvln.configuration_janusvln import JanusVLNConfig
from sparsevideonav_ros.policies.janusvln.policy import JanusVLNPolicy

INSTRUCTION = "walk forward and stop by the wooden door"


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    """One torch thread: the tiny model is faster so on 2 cores, and results do not depend on the thread count."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def tiny():
    return models.load_janusvln(models.tiny_checkpoint_dir())


def make(tiny, **values) -> JanusVLNPolicy:
    policy = JanusVLNPolicy(JanusVLNConfig(**values), model=tiny)
    policy.set_instruction(INSTRUCTION)
    return policy


def frames(count: int, seed: int = 0, shape=(120, 160, 3)) -> list:
    rng = np.random.default_rng(seed)
    return [rng.integers(0, 255, shape, dtype=np.uint8) for _ in range(count)]


def run(policy, images, start: int = 0) -> list:
    """Step ``policy`` over ``images`` at 4 FPS (stamps start * 0.25 s on)."""
    return [policy.step(Observation(stamp=i * 0.25, rgb=rgb)) for i, rgb in enumerate(images, start)]


def count_vit_images(policy):
    """(counts, hook): ``counts`` gets the number of images the ViT encodes at each call; remove the hook after."""
    counts = []
    visual = policy.model.model.qwen.model.visual
    hook = visual.register_forward_hook(lambda module, args, kwargs, out: counts.append(len(kwargs["grid_thw"])),
                                        with_kwargs=True)
    return counts, hook
