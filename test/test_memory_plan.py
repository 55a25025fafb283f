"""The memory plan (policies/memory_plan.py) against the measured sizes of the tiny models loaded through the real
loaders and run for a few steps, against hand-computed full-size figures, and its refusal, wiring and tool."""
import dataclasses

import numpy as np
import pytest
import torch

from janus_helpers import INSTRUCTION, one_thread, run  # noqa: F401 - fixture
from sparsevideonav_ros.policies import memory_plan as mp
from sparsevideonav_ros.policies.base import PolicyError
from sparsevideonav_ros.policies.janusvln import models as janus_models
from sparsevideonav_ros.policies.janusvln.configuration_janusvln import JanusVLNConfig
from sparsevideonav_ros.policies.janusvln.policy import JanusVLNPolicy
from sparsevideonav_ros.policies.janusvln.quantization import module_bytes
from sparsevideonav_ros.policies.sparsevideonav.configuration_sparsevideonav import SparseVideoNavConfig
from sparsevideonav_ros.tools import memory_plan as tool

CAMERA = (480, 640)  # the plan's camera size: the frames the KV tests feed


def part(plan, name):
    (found,) = [p for p in plan.parts if p.name == name]
    return found.nbytes


@pytest.fixture(scope="module")
def tiny_shapes():
    return mp.JanusShapes.from_checkpoint("tiny")


@pytest.fixture(scope="module")
def released():
    return mp.JanusShapes.released()


# -- the tiny models, measured ------------------------------------------------------------------------------

@pytest.mark.parametrize("dtype,quantization", [("float32", "none"), ("bfloat16", "none"), ("float32", "int8"),
                                                ("bfloat16", "nf4")])
def test_janusvln_weights_equal_the_loaded_tiny_model(tiny_shapes, dtype, quantization):
    loaded = janus_models.load_janusvln(janus_models.tiny_checkpoint_dir(), dtype=dtype, quantization=quantization)
    plan = mp.janusvln_plan(JanusVLNConfig(dtype=dtype, quantization=quantization), tiny_shapes)
    model = loaded.model
    qwen = model.qwen
    language = module_bytes(qwen.model.language_model) + module_bytes(qwen.lm_head)
    assert part(plan, "weights: Qwen language model") == language
    assert part(plan, "weights: Qwen ViT") == module_bytes(qwen.model.visual)
    assert part(plan, "weights: VGGT aggregator") == module_bytes(model.vggt)
    assert part(plan, "weights: spatial merger") == module_bytes(model.merger)
    assert plan.kind_bytes("weights") == module_bytes(model)


@pytest.mark.parametrize("kv_cache_dtype", ["auto", "bfloat16"])
def test_janusvln_kv_memories_equal_the_measured_ones_once_the_windows_are_full(tiny_shapes, kv_cache_dtype):
    """Windows 1 + 2: after 5 action steps both memories are full (the ring of the spatial memory has its
    1 + 2 + 1 slots from the first frame on; the semantic memory holds the prefix + 3 frame blocks)."""
    config = JanusVLNConfig(semantic_memory=True, initial_window=1, sliding_window=2, plan_every_frames=1,
                            kv_cache_dtype=kv_cache_dtype)
    policy = JanusVLNPolicy(config, model=janus_models.load_janusvln(janus_models.tiny_checkpoint_dir()))
    policy.set_instruction(INSTRUCTION)
    rng = np.random.default_rng(0)
    run(policy, [rng.integers(0, 255, (*CAMERA, 3), dtype=np.uint8) for _ in range(5)])
    plan = mp.janusvln_plan(config, tiny_shapes, camera_size=CAMERA)
    assert policy.semantic_memory.frame_indices == [0, 3, 4] and len(policy.spatial_memory.frame_indices) == 3
    assert part(plan, "KV: spatial memory") == policy.spatial_memory.nbytes
    assert part(plan, "KV: semantic memory") == policy.semantic_memory.nbytes
    element = 2 if kv_cache_dtype == "bfloat16" else 4
    assert policy.spatial_memory.keys[0].element_size() == element == policy.semantic_memory.keys[0].element_size()


@pytest.mark.parametrize("dtype", ["float32", "bfloat16"])
def test_sparsevideonav_weights_equal_the_loaded_tiny_set(dtype):
    from sparsevideonav_ros.policies.sparsevideonav.models import load_models

    config = SparseVideoNavConfig(dtype=dtype)
    loaded = load_models(config)
    plan = mp.sparsevideonav_plan(config, mp.SvnShapes.from_checkpoint(config))
    # bfloat16: diffusers keeps the backbone's norms / time embedding / RoPE tables in float32 (counted so).
    assert part(plan, "weights: backbone (Wan2.1 + formers)") == module_bytes(loaded.transformer)
    assert part(plan, "weights: VAE") == module_bytes(loaded.vae)
    assert part(plan, "weights: action head") == module_bytes(loaded.action_head)
    assert part(plan, "weights: text encoder (umT5)") == module_bytes(loaded.text_encoder.text_encoder)


# -- full size, by hand -------------------------------------------------------------------------------------

def test_qwen25_vl_7b_bf16_weights_by_hand(released):
    """Qwen2.5-VL-7B from its config (hidden 3584, 28 layers, 28 heads / 4 kv heads of 128, MLP 18944, vocab
    152064, untied lm_head; ViT 32 blocks of 1280, MLP 3420, patch 14 x 14 x 2 frames, merger 5120 -> 3584):
      per decoder layer: q 3584*3584 + 3584, k and v 3584*512 + 512 each, o 3584*3584, gate/up/down
        3 * 3584*18944, 2 RMSNorms 2*3584                       = 233,057,792
      language model: 28 layers + embed + lm_head 2 * 152064*3584 + final norm 3584 = 7,615,616,512
      ViT: patch conv 1280*3*2*14*14; per block 2 norms 2*1280, qkv 1280*3840 + 3840, proj 1280*1280 + 1280,
        gate/up 2 * (1280*3420 + 3420), down 3420*1280 + 1280 (= 19,686,940); merger ln 1280 + 5120*5120 + 5120
        + 5120*3584 + 3584                                       = 676,550,144
      total 8,292,166,656 parameters, bf16 2 bytes each = 16.58 GB = 15.45 GiB."""
    layer = 3584 * 3584 + 3584 + 2 * (3584 * 512 + 512) + 3584 * 3584 + 3 * 3584 * 18944 + 2 * 3584
    assert layer == 233_057_792
    language = 28 * layer + 2 * 152064 * 3584 + 3584
    block = 2 * 1280 + 1280 * 3840 + 3840 + 1280 * 1280 + 1280 + 2 * (1280 * 3420 + 3420) + 3420 * 1280 + 1280
    vit = 1280 * 3 * 2 * 14 * 14 + 32 * block + 1280 + 5120 * 5120 + 5120 + 5120 * 3584 + 3584
    assert (language, vit) == (7_615_616_512, 676_550_144)
    plan = mp.janusvln_plan(JanusVLNConfig(device="cuda", dtype="bfloat16"), released)
    buffers = 2 * 64 * 2 + 2 * 20 * 2  # RoPE inv_freq + original_inv_freq (language 64, ViT 20 entries), bf16
    assert part(plan, "weights: Qwen language model") + part(plan, "weights: Qwen ViT") == \
        2 * (language + vit) + buffers
    assert 2 * (language + vit) / 1e9 == pytest.approx(16.58, abs=0.01)


def test_released_memories_by_hand(released):
    """Spatial: 23 cached global layers (the release reads layer 23 of 24) x k+v x 1024 channels x 57 slots
    (8 + 48 + 1) x 1615 tokens (1 camera + 4 register + 35 x 46 patches of a 490 x 644 frame) x 2 bytes
    = 8,672,317,440 B (8.08 GiB; 152.1 MB a frame: the reference's 159 MB is 24 layers).
    Semantic: 28 layers x k+v x 4 kv heads x 128 x 2 bytes = 57,344 B a token; a frame block is 391 merged
    tokens + 2 = 393 tokens = 22.5 MB; 56 frames + a 96-token prefix (the estimate without a tokenizer)
    = 22,104 tokens = 1,267,531,776 B."""
    config = JanusVLNConfig(device="cuda", semantic_memory=True)
    plan = mp.janusvln_plan(config, released)
    assert part(plan, "KV: spatial memory") == 23 * 2 * 1024 * 57 * 1615 * 2 == 8_672_317_440
    assert part(plan, "KV: semantic memory") == 57_344 * (96 + 56 * 393) == 1_267_531_776
    half = mp.janusvln_plan(dataclasses.replace(config, sliding_window=24), released)
    assert part(half, "KV: spatial memory") == 23 * 2 * 1024 * 33 * 1615 * 2


def test_quantised_language_model_by_hand(released):
    """int8: the 28 x 7 decoder matrices (6,525,288,448 weights; 28 x (3584+512+512+3584+18944+18944+3584) =
    1,917,440 output rows) at 1 byte + 5 bytes a row (float32 scale + int8 zero point); the rest of the language
    model (embed + lm_head 1,089,994,752, biases and norms 28 x (3584 + 1024 + 7168) + 3584) stays bf16."""
    weights = 28 * (2 * 3584 * 3584 + 2 * 3584 * 512 + 3 * 3584 * 18944)
    rows = 28 * (3584 + 512 + 512 + 3584 + 18944 + 18944 + 3584)
    rest = 2 * 152064 * 3584 + 28 * (3584 + 1024 + 7168) + 3584
    buffers = 2 * 64 * 2  # the language model's inv_freq + original_inv_freq (64 entries each), bf16
    plan = mp.janusvln_plan(JanusVLNConfig(device="cuda", quantization="int8"), released)
    assert part(plan, "weights: Qwen language model") == weights + 5 * rows + 2 * rest + buffers
    nf4 = mp.janusvln_plan(JanusVLNConfig(device="cuda", quantization="nf4"), released)
    blocks = weights // 64  # 4-bit codes + an int8 scaler per 64 + a bf16 factor per 256 blocks + mean + table
    assert part(nf4, "weights: Qwen language model") == (weights // 2 + blocks + 2 * (blocks // 256)
                                                         + 28 * 7 * 17 * 2 + 2 * rest + buffers)


# -- fitting ------------------------------------------------------------------------------------------------

def test_a_plan_that_does_not_fit_names_settings_that_do(released):
    config = JanusVLNConfig(device="cuda", semantic_memory=True)
    plan = mp.janusvln_plan(config, released, free_bytes=24 * mp.GiB)
    assert plan.fits is False
    line = plan.refusal()
    assert "\n" not in line and "does NOT fit" in line
    for suggestion in plan.alternatives:  # each one planned again fits
        key, value = suggestion.split(" (")[0].split(" + ")[-1].split(" ")[:2]
        changes = {key.split(".")[1]: int(value) if value.isdigit() else value}
        if " + " in suggestion:
            changes["quantization"] = "nf4"
        assert mp.janusvln_plan(dataclasses.replace(config, **changes), released, 24 * mp.GiB).fits, suggestion
        assert suggestion in line
    assert any("quantization int8" in s for s in plan.alternatives)
    assert any("sliding_window" in s for s in plan.alternatives)
    # computed, not fixed: with 20 GiB int8 no longer fits, nf4 does, and the window that fits is smaller
    tighter = mp.janusvln_plan(config, released, free_bytes=20 * mp.GiB)
    assert not any("int8" in s for s in tighter.alternatives) and any("nf4" in s for s in tighter.alternatives)
    window = [s for s in plan.alternatives if "sliding_window" in s][0]
    tight_window = [s for s in tighter.alternatives if "sliding_window" in s][0]
    assert int(tight_window.split("sliding_window ")[1].split()[0]) < int(window.split("sliding_window ")[1].split()[0])


def test_the_documented_4090_configuration_fits_with_both_memories(released):
    config = JanusVLNConfig(device="cuda", semantic_memory=True, spatial_memory=True, quantization="int8")
    plan = mp.janusvln_plan(config, released, free_bytes=24 * mp.GiB)
    assert plan.fits and plan.settings["windows"] == "8 + 48"
    assert part(plan, "weights: VGGT aggregator") == 2 * sum(t.numel for t in released.parts["VGGT aggregator"])


def test_the_policy_refuses_before_loading_on_a_device_without_room(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(mp, "free_device_memory", lambda device, gb=None: (2 ** 20, "test: 1 MiB"))
    monkeypatch.setattr("sparsevideonav_ros.policies.janusvln.policy.load_janusvln",
                        lambda *a, **k: pytest.fail("weights loaded before the memory plan refused"))
    with pytest.raises(PolicyError) as refused:
        JanusVLNPolicy(JanusVLNConfig(device="cuda"))
    assert "does NOT fit" in str(refused.value) and "\n" not in str(refused.value)


def test_sparsevideonav_refuses_before_loading_on_a_device_without_room(monkeypatch):
    from sparsevideonav_ros.policies.sparsevideonav import models as svn_models

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(mp, "free_device_memory", lambda device, gb=None: (2 ** 20, "test: 1 MiB"))
    monkeypatch.setattr(svn_models, "_load_ours", lambda *a: pytest.fail("weights loaded before the plan refused"))
    with pytest.raises(PolicyError) as refused:
        svn_models.load_models(SparseVideoNavConfig(device="cuda"))
    message = str(refused.value)
    assert "\n" not in message and message.startswith("sparsevideonav does not fit: memory plan ")
    # 1 MiB holds nothing: the CUDA context alone is more, so no setting is offered
    assert "no single setting found that fits" in message


def test_status_and_start_up_line_carry_the_plan():
    policy = JanusVLNPolicy(JanusVLNConfig(), model=janus_models.load_janusvln(janus_models.tiny_checkpoint_dir()))
    assert policy.status_values()["memory_plan"].startswith("memory plan ")
    assert "memory plan " in policy.load_summary() and "on cpu" in policy.load_summary()
    from sparsevideonav_ros.policies.sparsevideonav.models import load_models
    from sparsevideonav_ros.policies.sparsevideonav.policy import SparseVideoNavPolicy

    svn = SparseVideoNavPolicy(SparseVideoNavConfig(), models=load_models(SparseVideoNavConfig()))
    assert svn.status_values()["memory_plan"].startswith("memory plan ") and "memory plan " in svn.load_summary()


# -- the tool -------------------------------------------------------------------------------------------------

def test_tool_prints_the_plan_and_what_would_fit(capsys):
    args = ["--policy", "janusvln", "--device", "cuda", "--device-memory-gb", "24", "--released-sizes",
            "--set", "janusvln.semantic_memory=true"]
    assert tool.main(args) == 1
    out = capsys.readouterr().out
    assert "does NOT fit" in out and "would fit: janusvln.quantization int8" in out
    assert tool.main(args + ["--set", "janusvln.quantization=int8"]) == 0
    out = capsys.readouterr().out
    assert "(fits)" in out and "KV: spatial memory" in out and "KV: semantic memory" in out


@pytest.mark.parametrize("args,message", [
    (["--params-file", "/no/such.yaml"], "--params-file /no/such.yaml: No such file"),
    (["--policy", "scripted"], "has no memory plan"),
    (["--policy", "janusvln", "--set", "janusvln.quantization=int4"], "quantization"),
    (["--policy", "janusvln", "--set", "janusvln.checkpoint=/no/such/folder"], "no config.json"),
])
def test_tool_expected_failures_are_one_line_exit_2(capsys, args, message):
    assert tool.main(args) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and err.startswith("error: ") and message in err
