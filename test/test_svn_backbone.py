"""SparseVideoNav backbone, checkpoint layouts and sparse sampling (CPU, tiny configs; full size on meta)."""
import json

import numpy as np
import pytest
import torch

from sparsevideonav_ros.policies.sparsevideonav import checkpoints, sampling
from sparsevideonav_ros.policies.sparsevideonav.models import tiny_random_transformer, tiny_transformer_config
from sparsevideonav_ros.policies.sparsevideonav.transformer import SparseVideoNavTransformer

TEXT_DIM = 32


@pytest.fixture(scope="module")
def tiny():
    """Every parameter random (no zero history attention / output projection): round trips and layout
    conversions that lose or swap any weight change its output."""
    return tiny_random_transformer(TEXT_DIM).eval()


@pytest.fixture(scope="module")
def fresh():
    """The real initialisation (as training starts): history attention outputs zero."""
    torch.manual_seed(0)
    return SparseVideoNavTransformer(**tiny_transformer_config(TEXT_DIM)).eval()


def inputs(frames=10, seed=1):
    g = torch.Generator().manual_seed(seed)
    text = torch.randn(1, 512, TEXT_DIM, generator=g)
    text[:, 7:] = 0  # zero padding after 7 tokens, as the release pads umT5 output
    mask = torch.zeros(1, 512, dtype=torch.bool)
    mask[:, :7] = True
    return (torch.randn(1, 16, frames, 8, 8, generator=g), torch.tensor([999.0]), text, mask)


def test_full_size_backbone_has_the_papers_parameter_counts():
    from accelerate import init_empty_weights
    with init_empty_weights():
        model = SparseVideoNavTransformer()
    total = sum(p.numel() for p in model.parameters())
    history = sum(p.numel() for n, p in model.named_parameters()
                  if "history" in n or n.startswith(("qformer.", "video_former.")))
    wan = total - history
    assert abs(wan - 1_419e6) / 1_419e6 < 0.002, f"Wan2.1-1.3B part has {wan / 1e6:.1f}M parameters"
    # paper, stage 2 trainable: 1.8B (backbone + history injection)
    assert 1.7e9 < total < 1.85e9, f"{total / 1e6:.1f}M"
    assert model.config.num_layers == 30 and len(model.blocks) == 30
    assert (model.config.num_attention_heads, model.config.attention_head_dim, model.config.ffn_dim) == (12, 128, 8960)
    assert model.qformer.config.num_latents == 10240 and model.video_former.config.num_latents == 2560


def test_fresh_history_attention_is_the_identity_until_trained(fresh):
    latents, t, text, mask = inputs()
    history = fresh.compress_history(torch.randn(1, 16, 3, 8, 8), None, text, mask)
    with torch.no_grad():
        plain = fresh(latents, t, text, None)
        with_history = fresh(latents, t, text, history)
        assert torch.equal(plain, with_history)
        perturbed = SparseVideoNavTransformer(**tiny_transformer_config(TEXT_DIM)).eval()
        perturbed.load_state_dict(fresh.state_dict())
        torch.nn.init.normal_(perturbed.blocks[0].attn_history.to_out[0].weight, std=0.1)
        assert torch.equal(perturbed(latents, t, text, None), plain)
        changed = perturbed(latents, t, text, history)
    assert (changed - plain).abs().max() > 1e-4


def test_history_tokens_do_not_depend_on_history_length(tiny):
    _, _, text, mask = inputs()
    shapes = {tuple(tiny.compress_history(torch.randn(1, 16, n, 8, 8), None, text, mask).shape) for n in (1, 3, 9)}
    assert shapes == {(1, tiny.video_former.config.num_latents, tiny.video_former.config.dim)}


def test_history_compression_needs_the_models_latent_grid(tiny):
    _, _, text, mask = inputs()
    with pytest.raises(ValueError, match="image size"):
        tiny.compress_history(torch.randn(1, 16, 2, 16, 16), None, text, mask)


def test_save_pretrained_round_trip_keeps_config_and_outputs(tiny, tmp_path):
    tiny.save_pretrained(tmp_path)
    config = json.loads((tmp_path / "config.json").read_text())
    assert config["num_layers"] == 2 and config["qformer_config"]["num_latents"] == 640
    loaded = SparseVideoNavTransformer.from_pretrained(tmp_path).eval()
    latents, t, text, mask = inputs()
    with torch.no_grad():
        history = tiny.compress_history(torch.randn(1, 16, 2, 8, 8), None, text, mask)
        torch.testing.assert_close(loaded(latents, t, text, history), tiny(latents, t, text, history),
                                   atol=1e-5, rtol=1e-5)


def test_release_layout_export_and_load_give_identical_outputs(tiny, tmp_path):
    svn_ckpt = checkpoints.export_release_transformer(tiny, tmp_path / "svn_ckpt")
    from safetensors.torch import load_file
    keys = set(load_file(str(svn_ckpt / checkpoints.RELEASE_WEIGHTS)))
    assert all(k.startswith("vgm.") for k in keys)
    # the original Wan naming of the reference, block 0
    for name in ("norm3.weight", "self_attn.q.weight", "self_attn.o.bias", "self_attn.norm_q.weight",
                 "cross_attn.k.weight", "cross_attn.norm_k.weight", "ffn.0.weight", "ffn.2.bias", "modulation",
                 "history_proj.0.weight", "history_proj.2.bias", "norm_history.weight",
                 "history_cross_attn.q.weight", "history_cross_attn.o.bias", "history_cross_attn.norm_k.weight"):
        assert f"vgm.blocks.0.{name}" in keys, name
    for name in ("patch_embedding.weight", "text_embedding.0.weight", "text_embedding.2.bias",
                 "time_embedding.0.weight", "time_projection.1.weight", "head.head.weight", "head.modulation",
                 "history_pre_proj.weight", "history_post_proj.bias"):
        assert f"vgm.{name}" in keys, name
    assert any(k.startswith("vgm.qformer.") for k in keys) and any(k.startswith("vgm.video_former.") for k in keys)
    config = json.loads((svn_ckpt / "config.json").read_text())
    assert config["vgm_num_layers"] == 2 and config["vgm_video_former_config"]["num_frame"] == 10

    loaded = checkpoints.load_release_transformer(svn_ckpt)
    latents, t, text, mask = inputs()
    with torch.no_grad():
        history_latents = torch.randn(1, 16, 3, 8, 8)
        ours = tiny(latents, t, text, tiny.compress_history(history_latents, None, text, mask))
        theirs = loaded(latents, t, text, loaded.compress_history(history_latents, None, text, mask))
    torch.testing.assert_close(theirs, ours, atol=1e-5, rtol=1e-5)


def test_release_loading_names_bad_keys(tiny, tmp_path):
    from safetensors.torch import load_file, save_file
    svn_ckpt = checkpoints.export_release_transformer(tiny, tmp_path / "svn_ckpt")
    state = load_file(str(svn_ckpt / checkpoints.RELEASE_WEIGHTS))
    state["vgm.blocks.0.mystery.weight"] = torch.zeros(1)
    save_file(state, str(svn_ckpt / checkpoints.RELEASE_WEIGHTS))
    with pytest.raises(checkpoints.CheckpointError, match="mystery"):
        checkpoints.load_release_transformer(svn_ckpt)
    del state["vgm.blocks.0.mystery.weight"]
    del state["vgm.blocks.1.history_cross_attn.q.weight"]
    save_file(state, str(svn_ckpt / checkpoints.RELEASE_WEIGHTS))
    with pytest.raises(checkpoints.CheckpointError, match=r"blocks\.1\.attn_history\.to_q\.weight"):
        checkpoints.load_release_transformer(svn_ckpt)
    with pytest.raises(checkpoints.CheckpointError, match="config.json"):
        checkpoints.load_release_transformer(tmp_path / "nowhere")


def test_sparse_future_times_and_schedules():
    assert sampling.future_times_s() == (1, 2, 5, 8, 11, 14, 17, 20)
    unipc = sampling.make_scheduler("unipc", 4)
    assert sampling.model_timestep(unipc.timesteps, "unipc").tolist() == [999, 749, 499, 249]  # the release's
    np.testing.assert_allclose(unipc.sigmas.numpy(), [0.999, 0.74925, 0.4995, 0.24975, 0.0], atol=1e-6)
    pcm = sampling.make_scheduler("pcm_euler", 4)
    np.testing.assert_allclose(pcm.sigmas.numpy(), [1.0, 0.75, 0.5, 0.25, 0.0], atol=1e-6)
    with pytest.raises(ValueError, match="unipc"):
        sampling.make_scheduler("ddim", 4)


@pytest.mark.parametrize("sampler", sampling.SAMPLERS)
def test_sampling_preserves_the_reference_and_fills_the_sparse_future(tiny, sampler):
    _, _, text, mask = inputs()
    reference = torch.randn(1, 16, 2, 8, 8)
    history = tiny.compress_history(torch.randn(1, 16, 2, 8, 8), None, text, mask)
    calls = []
    hook = tiny.register_forward_hook(lambda module, args, output: calls.append(args[0].shape))
    try:
        out = sampling.sample_sparse_future(tiny, reference, text, history, sampler=sampler, steps=4,
                                            generator=torch.Generator().manual_seed(0))
    finally:
        hook.remove()
    assert out.shape == (1, 16, 10, 8, 8)
    assert torch.equal(out[:, :, :2], reference)  # written back after every step
    assert torch.isfinite(out).all() and out[:, :, 2:].std() > 0
    assert len(calls) == 4 and all(shape[2] == 10 for shape in calls)  # 4 steps over 2 + 8 latent frames
    again = sampling.sample_sparse_future(tiny, reference, text, history, sampler=sampler, steps=4,
                                          generator=torch.Generator().manual_seed(0))
    assert torch.equal(out, again)


def test_sampling_runs_a_bf16_model_loaded_with_from_pretrained(tiny, tmp_path):
    """diffusers keeps norms/modulation in float32: the compute dtype must come from the model, not its first parameter."""
    tiny.save_pretrained(tmp_path)
    bf16 = SparseVideoNavTransformer.from_pretrained(tmp_path, torch_dtype=torch.bfloat16).eval()
    assert next(bf16.parameters()).dtype == torch.float32 and bf16.dtype == torch.bfloat16
    _, _, text, _ = inputs()
    out = sampling.sample_sparse_future(bf16, torch.randn(1, 16, 2, 8, 8), text, None, steps=2,
                                        generator=torch.Generator().manual_seed(0))
    assert out.shape == (1, 16, 10, 8, 8) and torch.isfinite(out).all()


def _per_step_reference(model, latents, t, text, history):
    """The step as diffusers' Wan computes it, with nothing shared across steps: the text projection and every
    cross-attention's keys/values from their raw context, through diffusers' own WanAttnProcessor."""
    import copy

    from diffusers.models.transformers.transformer_wan import WanAttnProcessor

    stock = copy.deepcopy(model)
    for block in stock.blocks:
        block.attn2.set_processor(WanAttnProcessor())
        block.attn_history.set_processor(WanAttnProcessor())
    batch, _, frames, height, width = latents.shape
    rotary = stock.rope(latents)
    tokens = stock.patch_embedding(latents).flatten(2).transpose(1, 2).contiguous()
    temb, timestep_proj, text_projected, _ = stock.condition_embedder(t, text, None)
    timestep_proj = timestep_proj.unflatten(1, (6, -1))
    for block in stock.blocks:
        tokens = block(tokens, text_projected, timestep_proj, rotary, history)
    shift, scale = (stock.scale_shift_table + temb.unsqueeze(1)).chunk(2, dim=1)
    tokens = stock.proj_out((stock.norm_out(tokens.float()) * (1 + scale) + shift).type_as(tokens))
    tokens = tokens.reshape(batch, frames, height // 2, width // 2, 1, 2, 2, -1)
    return tokens.permute(0, 7, 1, 4, 2, 5, 3, 6).flatten(6, 7).flatten(4, 5).flatten(2, 3)


@pytest.mark.parametrize("text_dim", [TEXT_DIM, 48])  # 48: umT5 width != model width, as at full size
def test_the_per_plan_context_gives_the_per_step_result(text_dim):
    """Text projection and cross-attention K/V computed once per plan (plan_context) and reused by each step:
    the step's output equals diffusers' per-step computation exactly, with and without history, and one
    context serves steps at different noise levels and timesteps."""
    tiny = tiny_random_transformer(text_dim).eval()
    latents, t, text, mask = inputs()
    text = torch.nn.functional.pad(text, (0, text_dim - TEXT_DIM)) if text_dim > TEXT_DIM else text
    history = tiny.compress_history(torch.randn(1, 16, 3, 8, 8), None, text, mask)
    with torch.no_grad():
        for tokens in (history, None):
            context = tiny.plan_context(text, tokens)
            assert len(context.text_kv) == len(tiny.blocks) and (context.history_kv is None) == (tokens is None)
            for step, timestep in enumerate((999.0, 500.0, 250.0)):
                noisy = latents + 0.1 * step
                t_step = torch.tensor([timestep])
                reused = tiny(noisy, t_step, text, tokens, context=context)
                torch.testing.assert_close(reused, _per_step_reference(tiny, noisy, t_step, text, tokens),
                                           atol=1e-6, rtol=0)
                assert torch.equal(reused, tiny(noisy, t_step, text, tokens))  # context=None: built there
        # a context from another instruction is really used: the output changes with it
        other = tiny.plan_context(torch.roll(text, 1, dims=1), history)
        assert not torch.allclose(tiny(latents, t, text, history, context=other), tiny(latents, t, text, history))


def test_sampling_builds_the_context_once_per_plan(tiny, monkeypatch):
    calls = []
    original = SparseVideoNavTransformer.plan_context
    monkeypatch.setattr(SparseVideoNavTransformer, "plan_context",
                        lambda self, *a, **k: (calls.append(1), original(self, *a, **k))[1])
    latents, _, text, mask = inputs()
    history = tiny.compress_history(torch.randn(1, 16, 3, 8, 8), None, text, mask)
    sampling.sample_sparse_future(tiny, latents[:, :, :2], text, history, steps=4,
                                  generator=torch.Generator().manual_seed(0))
    assert calls == [1]


def test_attention_runs_through_pytorch_fused_sdpa(tiny, monkeypatch):
    """Every attention of a step (self, text, history) goes to torch's scaled_dot_product_attention (diffusers'
    native backend), which picks the flash / memory-efficient kernels on CUDA in bf16: no hand-written
    attention, no flash-attn build."""
    import torch.nn.functional as F
    calls = []
    original = F.scaled_dot_product_attention

    def spy(*args, **kwargs):
        calls.append(tuple((args[0] if args else kwargs["query"]).shape))
        return original(*args, **kwargs)

    monkeypatch.setattr(F, "scaled_dot_product_attention", spy)
    latents, t, text, mask = inputs()
    history = tiny.compress_history(torch.randn(1, 16, 3, 8, 8), None, text, mask)
    context = tiny.plan_context(text, history)
    calls.clear()
    with torch.no_grad():
        tiny(latents, t, text, history, context=context)
    assert len(calls) == 3 * len(tiny.blocks), calls
