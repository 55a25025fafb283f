"""SparseVideoNav history formers (Q-Former, Video-Former) and the DiT action head (CPU, tiny configs)."""
from __future__ import annotations

import pytest
import torch

from sparsevideonav_ros.policies.sparsevideonav.action_head import ActionHeadConfig, SparseVideoNavActionHead
from sparsevideonav_ros.policies.sparsevideonav.history_formers import (
    FiLM, PerceiverAttention, QFormer, QFormerConfig, VideoFormer, VideoFormerConfig,
    convert_to_original_former_keys, convert_original_former_keys, frame_position_table)

LANG = 24          # tiny language width (4096 at full size)
TOKENS = 4         # spatial tokens per latent frame (2x2 grid; 1024 at full size)
SLOTS = 10


def n_params(module: torch.nn.Module) -> int:
    return sum(p.numel() for p in module.parameters() if p.requires_grad)


def tiny_qformer(**kw) -> QFormer:
    cfg = dict(dim=32, depth=2, heads=4, num_latents=SLOTS * TOKENS, language_dim=LANG, max_frames=64, dropout=0.0)
    cfg.update(kw)
    return QFormer(QFormerConfig(**cfg)).eval()


def tiny_video_former(**kw) -> VideoFormer:
    cfg = dict(dim=32, depth=2, heads=4, dim_head=8, num_latents=SLOTS * 2, num_slots=SLOTS, input_dim=32,
               language_dim=LANG, dropout=0.0)
    cfg.update(kw)
    return VideoFormer(VideoFormerConfig(**cfg)).eval()


def strong_film(module) -> None:
    """Fresh FiLM is near zero by design; make it matter for the language tests."""
    torch.nn.init.normal_(module.film.mlp.to_gamma_beta.weight, std=0.5)
    torch.nn.init.normal_(module.film.mlp.hidden.weight, std=0.5)


def language(batch=2, valid=5, pad=0):
    """(B, valid+pad, LANG) embeddings with `pad` zero tokens at the end, and the validity mask."""
    emb = torch.randn(batch, valid + pad, LANG)
    emb[:, valid:] = 0
    mask = torch.zeros(batch, valid + pad, dtype=torch.bool)
    mask[:, :valid] = True
    return emb, mask


def compress(q, v, features, frame_mask=None, lang=None, lang_mask=None):
    queries = q(features, frame_mask, lang, lang_mask)
    return v(queries.reshape(features.shape[0], SLOTS, TOKENS, -1), lang, lang_mask)


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)


# -- sizes -------------------------------------------------------------------------------------
def test_full_size_modules_on_meta_device():
    with torch.device("meta"):
        q, v, head = QFormer(), VideoFormer(), SparseVideoNavActionHead()
    counts = f"QFormer {n_params(q):,}, VideoFormer {n_params(v):,}, action head {n_params(head):,}"
    assert q.latents.shape == (10240, 512), counts
    assert q.frame_position_table.shape == (512, 512) and "frame_position_table" in q.state_dict(), counts
    assert len(q.layers) == 4 and len(v.layers) == 6, counts
    assert v.latents.shape == (10, 256, 512), counts
    assert head.action_former.latents.shape == (8, 80, 256) and len(head.action_former.layers) == 8, counts
    assert len(head.blocks) == 12 and head.action_out.out_features == 3, counts
    assert abs(n_params(head) - 23.4e6) / 23.4e6 < 0.10, f"action head not near the paper's 23.4M: {counts}"
    assert 20e6 < n_params(q) < 22e6 and 29e6 < n_params(v) < 31e6, counts


def test_config_validation():
    with pytest.raises(ValueError, match="divisible by num_slots"):
        VideoFormerConfig(num_latents=2561)
    with pytest.raises(ValueError, match="heads"):
        QFormerConfig(dim=500, heads=8)
    with pytest.raises(ValueError, match="positive"):
        QFormerConfig(depth=0)
    with pytest.raises(ValueError, match="action_std"):
        ActionHeadConfig(action_std=(0.1, 0.0, 0.1))
    with pytest.raises(ValueError, match="divisible by num_slots"):
        ActionHeadConfig(former_num_latents=641)
    with pytest.raises(ValueError, match="1..64"):
        tiny_qformer()(torch.randn(1, 65, TOKENS, 32))


# -- history compression -------------------------------------------------------------------------
def test_history_token_count_constant_in_history_length():
    q, v = tiny_qformer(), tiny_video_former()
    lang, mask = language()
    shapes = {frames: tuple(compress(q, v, torch.randn(2, frames, TOKENS, 32), None, lang, mask).shape)
              for frames in (1, 3, 20)}
    assert set(shapes.values()) == {(2, SLOTS * 2, 32)}, shapes


def test_invalid_frames_do_not_change_the_output():
    q, v = tiny_qformer(), tiny_video_former()
    lang, lmask = language()
    history = torch.randn(2, 3, TOKENS, 32)
    reference = compress(q, v, history, None, lang, lmask)
    # older padding frames (oldest side) with junk content, masked out
    padded = torch.cat([100 * torch.randn(2, 4, TOKENS, 32), history], dim=1)
    mask = torch.tensor([[False] * 4 + [True] * 3] * 2)
    torch.testing.assert_close(compress(q, v, padded, mask, lang, lmask), reference, rtol=1e-5, atol=1e-5)
    # the junk content itself is irrelevant
    padded[:, :4] = torch.randn(2, 4, TOKENS, 32)
    torch.testing.assert_close(compress(q, v, padded, mask, lang, lmask), reference, rtol=1e-5, atol=1e-5)
    # a masked frame in the middle is ignored too: same as the history without it, aligned at the newest
    holed = history.clone()
    holed[:, 1] = 7.0
    hole_mask = torch.tensor([[True, False, True]] * 2)
    alt = history.clone()
    alt[:, 1] = -3.0
    torch.testing.assert_close(compress(q, v, holed, hole_mask, lang, lmask),
                               compress(q, v, alt, hole_mask, lang, lmask), rtol=1e-5, atol=1e-5)
    with pytest.raises(ValueError, match="at least one valid frame"):
        q(history, torch.tensor([[True, True, True], [False, False, False]]))


def test_newest_frame_has_position_zero():
    q = tiny_qformer()
    torch.nn.init.normal_(q.frame_position_proj.weight, std=1.0)
    # the embedding added to the last (newest) frame is proj(table[0]) whatever the history length
    for frames in (1, 5, 64):
        emb = q.frame_position_embedding(frames)
        torch.testing.assert_close(emb[-1], q.frame_position_proj(q.frame_position_table[0]))
        torch.testing.assert_close(emb[0], q.frame_position_proj(q.frame_position_table[frames - 1]))
    newest = torch.randn(1, 1, TOKENS, 32)
    alone = q(newest)
    # appending an OLDER (masked) frame keeps the newest frame at position 0: output unchanged
    older = torch.cat([torch.randn(1, 1, TOKENS, 32), newest], dim=1)
    torch.testing.assert_close(q(older, torch.tensor([[False, True]])), alone, rtol=1e-5, atol=1e-5)
    # ... while a masked frame on the NEWEST side moves it to position 1 (so pad on the oldest side)
    newer = torch.cat([newest, torch.randn(1, 1, TOKENS, 32)], dim=1)
    assert not torch.allclose(q(newer, torch.tensor([[True, False]])), alone, atol=1e-4)
    # and order matters: the same two frames swapped in time give a different summary
    pair = torch.randn(1, 2, TOKENS, 32)
    assert not torch.allclose(q(pair), q(pair.flip(1)), atol=1e-4)
    # the table: sin on even channels, cos on odd ones
    table = frame_position_table(8, 6)
    torch.testing.assert_close(table[3, 0::2], torch.sin(3 * torch.exp(torch.arange(0, 6, 2) * -torch.log(
        torch.tensor(10000.0)) / 6)))
    torch.testing.assert_close(table[0, 1::2], torch.ones(3))


def test_film_pools_over_valid_language_tokens_only():
    film = FiLM(LANG, 16)
    torch.nn.init.normal_(film.mlp.to_gamma_beta.weight, std=0.5)
    lang, mask = language(valid=5, pad=0)
    padded = torch.cat([lang, 50 * torch.randn(2, 7, LANG)], dim=1)        # junk, not zeros
    padded_mask = torch.cat([mask, torch.zeros(2, 7, dtype=torch.bool)], dim=1)
    for got, want in zip(film(padded, padded_mask), film(lang, mask)):
        torch.testing.assert_close(got, want)
        assert got.shape == (2, 1, 16)
    gamma, beta = film(lang, mask)
    assert gamma.abs().max() <= 1.0                                         # tanh-bounded
    # no mask: all-zero padding tokens are not counted
    zero_padded = torch.cat([lang, torch.zeros(2, 7, LANG)], dim=1)
    torch.testing.assert_close(film(zero_padded)[1], beta)
    # a fresh FiLM is near zero (weights N(0, 0.01), last N(0, 0.001), zero biases)
    fresh_gamma, fresh_beta = FiLM(LANG, 16)(lang, mask)
    assert fresh_gamma.abs().max() < 0.01 and fresh_beta.abs().max() < 0.01

    # through both formers: padding tokens change nothing, the instruction does
    q, v = tiny_qformer(), tiny_video_former()
    strong_film(q)
    strong_film(v)
    history = torch.randn(2, 3, TOKENS, 32)
    out = compress(q, v, history, None, lang, mask)
    torch.testing.assert_close(compress(q, v, history, None, padded, padded_mask), out, rtol=1e-5, atol=1e-5)
    assert not torch.allclose(compress(q, v, history, None, torch.randn_like(lang), mask), out, atol=1e-4)
    assert not torch.allclose(compress(q, v, history), out, atol=1e-4)


def test_perceiver_logits_scaled_by_one_over_dim_head():
    """The release scales q by dim_head**-0.5 and SDPA scales again: logits / dim_head."""
    attn = PerceiverAttention(dim=16, heads=2, dim_head=8)
    media, latents = torch.randn(3, 5, 16), torch.randn(3, 4, 16)
    x, lat = attn.norm_media(media), attn.norm_latents(latents)
    kv = torch.cat([x, lat], dim=1)
    q = attn.to_q(lat).view(3, 4, 2, 8).transpose(1, 2)
    k = attn.to_k(kv).view(3, 9, 2, 8).transpose(1, 2)
    v = attn.to_v(kv).view(3, 9, 2, 8).transpose(1, 2)
    weights = torch.softmax(q @ k.transpose(-1, -2) / 8, dim=-1)
    expected = attn.to_out((weights @ v).transpose(1, 2).reshape(3, 4, 16))
    torch.testing.assert_close(attn(media, latents), expected, rtol=1e-5, atol=1e-5)


# -- the authors' checkpoint names ---------------------------------------------------------------
# Written from the structure of the release's Q_Former_3D / Video_Former_3D (one layer shown).
RELEASE_QFORMER_KEYS = {
    "latents", "internal_pos_embedding", "pos_embed_proj.weight", "pos_embed_proj.bias",
    "film_layer.mlp.0.weight", "film_layer.mlp.0.bias", "film_layer.mlp.2.weight", "film_layer.mlp.2.bias",
    *(f"layers.0.0.{n}.{p}" for n in ("key", "query", "value", "c_proj") for p in ("weight", "bias")),
    "layers.0.1.weight", "layers.0.1.bias", "layers.0.2.0.weight", "layers.0.2.2.weight",
    "norm.weight", "norm.bias",
}
RELEASE_VIDEO_FORMER_KEYS = {
    "pre_proj.0.weight", "pre_proj.0.bias", "pre_proj.2.weight", "pre_proj.2.bias", "latents",
    "film_layer.mlp.0.weight", "film_layer.mlp.0.bias", "film_layer.mlp.2.weight", "film_layer.mlp.2.bias",
    "layers.0.0.norm_media.weight", "layers.0.0.norm_media.bias",
    "layers.0.0.norm_latents.weight", "layers.0.0.norm_latents.bias",
    *(f"layers.0.0.{n}.weight" for n in ("to_q", "to_k", "to_v", "to_out")),
    *(f"layers.0.1.{n}.{p}" for n in ("key", "query", "value", "c_proj") for p in ("weight", "bias")),
    "layers.0.2.weight", "layers.0.2.bias", "layers.0.3.0.weight", "layers.0.3.2.weight",
    "norm.weight", "norm.bias",
}


@pytest.mark.parametrize("former", ["qformer", "video_former"])
def test_original_key_names_round_trip(former):
    build = tiny_qformer if former == "qformer" else tiny_video_former
    expected = RELEASE_QFORMER_KEYS if former == "qformer" else RELEASE_VIDEO_FORMER_KEYS
    src = build(depth=1)
    for p in src.parameters():
        torch.nn.init.normal_(p)
    original = convert_to_original_former_keys(src.state_dict(), former)
    assert set(original) == expected, (sorted(set(original) - expected), sorted(expected - set(original)))

    # as in the release checkpoint: under vgm.<former>. beside the other modules
    two_layers = build(depth=2)
    release = convert_to_original_former_keys(two_layers.state_dict(), former, f"vgm.{former}.")
    assert all(key.startswith(f"vgm.{former}.") for key in release)
    with pytest.raises(KeyError, match=f"vgm.{former}.latents"):      # prefix "" reads every key
        convert_original_former_keys(release, "", former=former)
    release["vgm.blocks.0.norm3.weight"] = torch.zeros(1)          # another module's key: not read
    dst = build(depth=2)
    dst.load_state_dict(convert_original_former_keys(release, f"vgm.{former}"), strict=True)
    for key, value in two_layers.state_dict().items():
        assert torch.equal(dst.state_dict()[key], value), key

    dst = build(depth=1)
    dst.load_state_dict(convert_original_former_keys(original, "", former=former), strict=True)
    if former == "qformer":
        x = torch.randn(1, 2, TOKENS, 32)
        torch.testing.assert_close(dst(x), src(x), rtol=0, atol=0)
    else:
        x = torch.randn(1, SLOTS, TOKENS, 32)
        torch.testing.assert_close(dst(x), src(x), rtol=0, atol=0)

    bad = dict(original)
    bad["layers.0.9.weight"] = torch.zeros(1)
    with pytest.raises(KeyError, match=r"layers\.0\.9\.weight"):
        convert_original_former_keys(bad, "", former=former)
    with pytest.raises(KeyError, match="surprise"):
        convert_to_original_former_keys({"surprise": torch.zeros(1)}, former)


def test_original_keys_are_not_mixed_up_between_formers():
    video_keys = convert_to_original_former_keys(tiny_video_former(depth=1).state_dict(), "video_former")
    with pytest.raises(KeyError):
        convert_original_former_keys(video_keys, "", former="qformer")
    with pytest.raises(ValueError, match="former must be one of"):
        convert_original_former_keys({}, "vgm.history")


# -- action head ---------------------------------------------------------------------------------
TINY_HEAD = dict(language_dim=LANG, former_dim=32, former_depth=1, former_heads=4, former_dim_head=8,
                 former_num_latents=16, former_dropout=0.0, dit_dim=32, dit_depth=2, dit_heads=4,
                 action_mean=(0.1, -0.02, 0.03), action_std=(0.15, 0.05, 0.1), inference_steps=5)


def head_inputs(batch=2, pad=3):
    latents = torch.randn(batch, 16, 8, 2, 2)
    text, mask = language(batch, valid=4, pad=pad)
    return latents, text, mask


def test_action_head_fresh_sample_is_the_mean_action():
    head = SparseVideoNavActionHead(**TINY_HEAD)
    latents, text, mask = head_inputs()
    actions = head.sample(latents, text, mask, generator=torch.Generator().manual_seed(1))
    assert actions.shape == (2, 8, 3) and torch.isfinite(actions).all()
    # zero-initialised output layer predicts normalised 0 -> denormalised to the configured mean
    torch.testing.assert_close(actions, torch.tensor(TINY_HEAD["action_mean"]).expand(2, 8, 3))
    actions_m = torch.tensor([[0.2, 0.01, -0.05]]).expand(8, 3)
    torch.testing.assert_close(head.denormalize_actions(head.normalize_actions(actions_m)), actions_m)


def test_action_head_overfits_and_round_trips(tmp_path):
    head = SparseVideoNavActionHead(**TINY_HEAD)
    latents, text, mask = head_inputs(batch=4)
    target = torch.stack([torch.linspace(0.0, 0.3, 8), torch.linspace(-0.05, 0.05, 8),
                          torch.linspace(0.1, -0.1, 8)], dim=-1).expand(4, 8, 3) * torch.tensor([1.0, -1.0, 0.5, 2.0])[:, None, None]

    def eval_loss():
        with torch.no_grad():
            return sum(head.training_loss(target, latents, text, mask, generator=torch.Generator().manual_seed(s))
                       for s in range(4)).item() / 4

    before = eval_loss()
    optimizer = torch.optim.Adam(head.parameters(), lr=2e-3)
    generator = torch.Generator().manual_seed(0)
    for _ in range(50):
        loss = head.training_loss(target, latents, text, mask, generator=generator)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    after = eval_loss()
    assert after < 0.5 * before, (before, after)

    head.eval()
    sampled = head.sample(latents, text, mask, num_inference_steps=4, generator=torch.Generator().manual_seed(3))
    assert sampled.shape == (4, 8, 3) and torch.isfinite(sampled).all()
    assert head.training is False
    # padded text positions (masked) do not matter
    junk = text.clone()
    junk[:, 4:] = torch.randn(4, 3, LANG)
    torch.testing.assert_close(head.sample(latents, junk, mask, num_inference_steps=4,
                                           generator=torch.Generator().manual_seed(3)), sampled)

    head.save_pretrained(tmp_path / "head")
    loaded = SparseVideoNavActionHead.from_pretrained(tmp_path / "head")
    assert loaded.config.action_std == list(TINY_HEAD["action_std"])
    assert loaded.head_config == head.head_config
    again = loaded.sample(latents, text, mask, num_inference_steps=4, generator=torch.Generator().manual_seed(3))
    torch.testing.assert_close(again, sampled, rtol=0, atol=0)


def test_action_head_rejects_bad_inputs():
    head = SparseVideoNavActionHead(**TINY_HEAD)
    latents, text, mask = head_inputs()
    with pytest.raises(ValueError, match="future latents"):
        head.sample(latents[:, :, :7], text, mask)
    with pytest.raises(ValueError, match="text embeddings"):
        head.sample(latents, text[..., :8], mask)
    with pytest.raises(ValueError, match="num_inference_steps"):
        head.sample(latents, text, mask, num_inference_steps=0)
    noisy = torch.randn(2, 8, 3)
    assert head(noisy, torch.tensor([5, 50]), latents, text, mask).shape == (2, 8, 3)


def test_action_head_cached_context_matches_the_plain_forward():
    head = SparseVideoNavActionHead(**TINY_HEAD).eval()
    for p in head.parameters():                       # leave the zero-init state: every path matters
        torch.nn.init.normal_(p, std=0.2)
    latents, text, mask = head_inputs()
    noisy, t = torch.randn(2, 8, 3), torch.tensor([3, 77])
    with torch.no_grad():
        context, context_mask = head.encode_condition(latents, text, mask)
        cached = head.denoise(noisy, t, context, context_mask, head.context_cache(context))
        torch.testing.assert_close(cached, head(noisy, t, latents, text, mask), rtol=1e-5, atol=1e-5)
