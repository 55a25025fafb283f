"""janusvln.quantization (torchao int8 / nf4 of Qwen's decoder layers) and janusvln.kv_cache_dtype on the tiny
model, on the CPU (both torchao paths are plain PyTorch); the on-device path needs CUDA."""
import numpy as np
import pytest
import torch
from torch import nn

from janus_helpers import INSTRUCTION, one_thread, run  # noqa: F401 - fixture
from sparsevideonav_ros.policies.janusvln import models
from sparsevideonav_ros.policies.janusvln.configuration_janusvln import JanusVLNConfig
from sparsevideonav_ros.policies.janusvln.policy import JanusVLNPolicy
from sparsevideonav_ros.policies.janusvln.quantization import (module_bytes, quantize_language_model,
                                                               quantized_linears, quantized_weight_bytes,
                                                               tensor_bytes)

# Measured on the tiny model (8 frames, both prompt modes): int8 moves the answer logits by at most 0.12 % of
# their largest magnitude, nf4 by at most 3.0 %; the smallest top-1 / top-2 margin is 7 % of it. (On these
# frames the tiny model answers MOVE_FORWARD every time, as it mostly does: the logit bound is the finer check.)
TOLERANCE = {"int8": 0.005, "nf4": 0.06}  # max |logit difference| / max |logit|


@pytest.fixture(scope="module")
def loaded():
    folder = models.tiny_checkpoint_dir()
    return {q: models.load_janusvln(folder, quantization=q) for q in ("none", "int8", "nf4")}


@pytest.fixture(scope="module")
def images():
    rng = np.random.default_rng(3)
    return [rng.integers(0, 255, (120, 160, 3), dtype=np.uint8) for _ in range(8)]


def decide(model, images, **values):
    """Answers and the first-token logits of every decision over `images` (one action per frame)."""
    policy = JanusVLNPolicy(JanusVLNConfig(plan_every_frames=1, **values), model=model)
    policy.set_instruction(INSTRUCTION)
    language, logits, answers = policy.model.language, [], []
    original, decide_ = language.logits, policy._decide

    def spied():
        calls = []
        language.logits = lambda hidden: calls.append(original(hidden)) or calls[-1]
        try:
            answer, timings = decide_()
        finally:
            del language.logits
        logits.append(calls[0])
        answers.append(answer)
        return answer, timings
    policy._decide = spied
    plans = run(policy, images)
    return answers, torch.stack(logits), [p.waypoints.tolist() for p in plans]


@pytest.mark.parametrize("semantic_memory", [False, True])
@pytest.mark.parametrize("quantization", ["int8", "nf4"])
def test_quantised_logits_stay_close_and_choose_the_same_actions(loaded, images, quantization, semantic_memory):
    answers, logits, plans = decide(loaded["none"], images, semantic_memory=semantic_memory)
    q_answers, q_logits, q_plans = decide(loaded[quantization], images, semantic_memory=semantic_memory)
    difference = (q_logits - logits).abs().max() / logits.abs().max()
    assert 0 < difference <= TOLERANCE[quantization], float(difference)  # > 0: the quantised weights ran
    assert q_answers == answers and q_plans == plans
    assert len(answers) == len(images) and set(answers) <= set(models.TINY_ANSWERS)


@pytest.mark.parametrize("quantization,subclass", [("int8", "Int8Tensor"), ("nf4", "NF4Tensor")])
def test_only_the_decoder_linears_are_quantised_and_shrink_as_expected(loaded, quantization, subclass):
    plain, model = loaded["none"].model, loaded[quantization].model
    linears = dict(quantized_linears(model.qwen))
    assert linears and all(type(m.weight.data).__name__ == subclass for m in linears.values())
    quantised_names = {f"{name}.weight" for name in linears}
    for name, parameter in model.named_parameters():
        if name not in quantised_names:
            assert type(parameter.data) is torch.Tensor and parameter.dtype == torch.float32, name
    before = sum(module_bytes(m) for _, m in quantized_linears(plain.qwen))
    after = sum(module_bytes(m) for m in linears.values())
    # Expected: torchao's bytes per matrix (quantization.quantized_weight_bytes) + the float32 biases.
    expected = sum(quantized_weight_bytes(*m.weight.shape, quantization, torch.float32)
                   + (m.bias.numel() * 4 if m.bias is not None else 0) for m in linears.values())
    assert after == expected
    # float32 weights: int8 = 1/4 + 5 bytes a row; nf4 about 1/8 + 1/64 of the codes (scalers, small matrices)
    low, high = {"int8": (0.25, 0.30), "nf4": (0.125, 0.17)}[quantization]
    assert low < after / before < high, after / before


@pytest.mark.parametrize("quantization,factor", [("int8", 0.5 * (1 + 5 / 3584)),
                                                 ("nf4", 0.5 * (0.5 + 1 / 64 + 2 / (64 * 256)) + 34 / (2 * 512 * 3584))])
def test_bytes_of_a_full_size_matrix_are_the_libraries(quantization, factor):
    """Qwen2.5-VL-7B's k_proj (3584 -> 512) in bf16, quantised by torchao: the real bytes of its inner tensors =
    quantized_weight_bytes = factor x the bf16 bytes (int8: 1 byte + 5 bytes a row of 3584; nf4: 4 bits + an int8
    scaler per 64 + a bf16 factor per 256 scalers + mean and the 16-entry table)."""
    layer = nn.Linear(3584, 512, bias=False).to(torch.bfloat16)

    class Holder(nn.Module):  # quantize_language_model's layout: qwen.model.language_model.layers
        def __init__(self):
            super().__init__()
            self.model = nn.Module()
            self.model.language_model = nn.Module()
            self.model.language_model.layers = nn.ModuleList([nn.Sequential(layer)])
    holder = Holder()
    assert quantize_language_model(holder, quantization, "cpu") == 1
    measured = tensor_bytes(holder.model.language_model.layers[0][0].weight)
    assert measured == quantized_weight_bytes(512, 3584, quantization, torch.bfloat16)
    assert measured / (512 * 3584 * 2) == pytest.approx(factor, rel=1e-9)


def test_kv_memories_in_bfloat16_halve_and_keep_the_decisions(loaded, images):
    model = loaded["none"]
    answers, logits, plans = decide(model, images, semantic_memory=True)
    policy = JanusVLNPolicy(JanusVLNConfig(plan_every_frames=1, semantic_memory=True, kv_cache_dtype="bfloat16"),
                            model=model)
    reference = JanusVLNPolicy(JanusVLNConfig(plan_every_frames=1, semantic_memory=True), model=model)
    for p in (policy, reference):
        p.set_instruction(INSTRUCTION)
        run(p, images[:3])
    assert policy.spatial_memory.nbytes * 2 == reference.spatial_memory.nbytes > 0
    assert policy.semantic_memory.nbytes * 2 == reference.semantic_memory.nbytes > 0
    kv_answers, kv_logits, kv_plans = decide(model, images, semantic_memory=True, kv_cache_dtype="bfloat16")
    difference = (kv_logits - logits).abs().max() / logits.abs().max()
    assert 0 < difference <= 1e-3, float(difference)  # bf16 rounding of keys/values (measured 0.005 %)
    assert kv_answers == answers and kv_plans == plans


def test_quantisation_on_the_cuda_device(loaded, images):
    """The deployment path: decoder layers moved to the GPU one by one and quantised there."""
    if not torch.cuda.is_available():
        pytest.skip("CUDA not available: quantize_language_model on a cuda device (layer by layer on the GPU) "
                    "runs only with one; the same torchao code is tested on the CPU above")
    for quantization in ("int8", "nf4"):
        gpu = models.load_janusvln(models.tiny_checkpoint_dir(), device="cuda", dtype="float32",
                                   quantization=quantization)
        assert all(m.weight.device.type == "cuda" for _, m in quantized_linears(gpu.model.qwen))
        answers, logits, _ = decide(gpu, images[:4])
        cpu_answers, cpu_logits, _ = decide(loaded[quantization], images[:4])
        assert answers == cpu_answers
        torch.testing.assert_close(logits.cpu(), cpu_logits, rtol=0, atol=1e-2 * float(cpu_logits.abs().max()))
