"""sparsevideonav.compile: regional torch.compile of the backbone's and the DiT head's repeated blocks changes
nothing beyond float rounding (CPU; Inductor needs a C++ compiler, which a machine without one skips with the
reason). One compiled forward each: compiling is the slow part (tens of seconds on 2 cores)."""
import shutil

import pytest
import torch

from sparsevideonav_ros.policies.sparsevideonav.configuration_sparsevideonav import SparseVideoNavConfig
from sparsevideonav_ros.policies.sparsevideonav.models import (load_models, tiny_random_action_head,
                                                               tiny_random_transformer)
from sparsevideonav_ros.policies.sparsevideonav.policy import SparseVideoNavPolicy

needs_compiler = pytest.mark.skipif(not (shutil.which("g++") or shutil.which("c++") or shutil.which("clang++")),
                                    reason="torch.compile (Inductor) on the CPU needs a C++ compiler; none on PATH")


@needs_compiler
def test_compiled_blocks_equal_eager_backbone_and_head():
    torch._dynamo.reset()
    g = torch.Generator().manual_seed(3)
    transformer = tiny_random_transformer(32).eval()
    latents = torch.randn(1, 16, 10, 8, 8, generator=g)
    text = torch.randn(1, 512, 32, generator=g)
    history = torch.randn(1, transformer.video_former.config.num_latents, transformer.video_former.config.dim,
                          generator=g)
    t = torch.tensor([999.0])
    head = tiny_random_action_head(32).eval()
    future = latents[:, :, 2:]
    with torch.no_grad():
        context = transformer.plan_context(text, history)
        eager = transformer(latents, t, text, history, context=context)
        eager_actions = head.sample(future, text, None, num_inference_steps=2, generator=torch.Generator().manual_seed(0))
        transformer.compile_repeated_blocks(fullgraph=True, dynamic=False)
        head.compile_repeated_blocks(fullgraph=True, dynamic=False)
        assert all(getattr(b, "_compiled_call_impl", None) is not None for b in transformer.blocks)
        compiled = transformer(latents, t, text, history, context=context)
        compiled_actions = head.sample(future, text, None, num_inference_steps=2,
                                       generator=torch.Generator().manual_seed(0))
    torch.testing.assert_close(compiled, eager, atol=1e-4, rtol=1e-4)
    torch.testing.assert_close(compiled_actions, eager_actions, atol=1e-4, rtol=1e-4)
    torch._dynamo.reset()


def test_compile_parameter_compiles_both_models_lazily():
    # No forward here: compile_repeated_blocks only wraps the blocks; they compile at the first plan.
    policy = SparseVideoNavPolicy(SparseVideoNavConfig(compile=True, compile_mode="max-autotune-no-cudagraphs"),
                                  models=load_models(SparseVideoNavConfig()))
    assert all(getattr(b, "_compiled_call_impl", None) is not None for b in policy.models.transformer.blocks)
    assert all(getattr(b, "_compiled_call_impl", None) is not None for b in policy.models.action_head.blocks)
    plain = SparseVideoNavPolicy(SparseVideoNavConfig(), models=load_models(SparseVideoNavConfig(seed=1)))
    assert all(getattr(b, "_compiled_call_impl", None) is None for b in plain.models.transformer.blocks)
    from sparsevideonav_ros.configs import ConfigError
    with pytest.raises(ConfigError):
        SparseVideoNavConfig(compile_mode="fast")
