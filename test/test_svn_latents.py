"""SparseVideoNav inputs: frames -> Wan VAE latents (incremental == one-shot), loaders, umT5 instruction encoder.

CPU only, tiny random models saved and loaded through the same code as the real checkpoints.
Tolerances: incremental vs one-shot VAE encoding runs the same ops on the same inputs, so it is held
to atol 1e-5 (it is bit-identical on CPU today); the unpadded vs padded+masked umT5 comparison and the
independent Wan-T5 reference differ by float summation order only (atol 1e-5 on O(1) values).
"""
from __future__ import annotations

import math

import numpy as np
import pytest

# torch, diffusers and transformers are required (requirements.txt): a missing one fails, never skips.
import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402
from diffusers import AutoencoderKLWan  # noqa: E402

from sparsevideonav_ros.policies.sparsevideonav import text_encoding as te  # noqa: E402
from sparsevideonav_ros.policies.sparsevideonav import video_latents as vl  # noqa: E402

ATOL = 1e-5
SIZE = 32  # frames 32x32 -> latents 4x4


# -- fixtures -------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def vae():
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        model = AutoencoderKLWan(**vl.tiny_vae_config()).eval().requires_grad_(False)
    return vl.use_fast_cpu_kernels(model)  # as load_vae returns it, so loaded copies compare bit for bit


@pytest.fixture(scope="module")
def frames():
    generator = torch.Generator().manual_seed(1)
    return torch.rand(2, 3, 16, SIZE, SIZE, generator=generator) * 2 - 1  # B=2, 16 frames = 4 chunks


@pytest.fixture(scope="module")
def text_folders(tmp_path_factory):
    return te.make_tiny_text_encoder(tmp_path_factory.mktemp("umt5"))


@pytest.fixture(scope="module")
def instruction_encoder(text_folders):
    return te.InstructionEncoder.from_pretrained(*text_folders)


def _stream(vae, frames, chunks):
    encoder = vl.StreamingVideoEncoder(vae)
    encoder.start(frames[:, :, 0])
    return encoder, [encoder.encode_chunk(frames[:, :, 4 * i:4 * i + 4]) for i in range(chunks)]


# -- frames ---------------------------------------------------------------------------------------

def test_preprocess_frame_centre_crops_and_scales():
    rgb = np.zeros((100, 200, 3), np.uint8)
    rgb[:, :50] = (255, 0, 0)  # left band, cropped away
    rgb[:, 150:] = (0, 0, 255)  # right band, cropped away
    rgb[:, 50:150] = (0, 255, 0)
    out = vl.preprocess_frame(rgb, 64)
    assert out.shape == (3, 64, 64) and out.dtype == torch.float32
    assert torch.equal(out[0], torch.full((64, 64), -1.0))
    assert torch.equal(out[1], torch.full((64, 64), 1.0))
    assert torch.equal(out[2], torch.full((64, 64), -1.0))
    default = vl.preprocess_frame(np.full((300, 400, 3), 128, np.uint8))
    assert default.shape == (3, 256, 256)
    assert torch.allclose(default, torch.full_like(default, 128 / 127.5 - 1), atol=1e-6)
    with pytest.raises(ValueError):
        vl.preprocess_frame(np.zeros((10, 10), np.uint8))
    # the release's resize (cv2 default, INTER_LINEAR) on request
    import cv2
    noise = np.random.default_rng(0).integers(0, 256, (120, 160, 3), dtype=np.uint8)
    linear = vl.preprocess_frame(noise, 64, interpolation=cv2.INTER_LINEAR)
    expected = cv2.resize(noise[:, 20:140], (64, 64), interpolation=cv2.INTER_LINEAR)
    assert torch.equal(linear, torch.from_numpy(expected).permute(2, 0, 1).float() / 127.5 - 1)


# -- incremental encoding -------------------------------------------------------------------------

@pytest.mark.parametrize("chunks", [1, 2, 3, 4])
def test_streaming_equals_encode_clip(vae, frames, chunks):
    reference = vl.encode_clip(vae, frames[:, :, :4 * chunks])
    assert reference.shape == (2, 16, chunks, SIZE // 8, SIZE // 8)
    encoder, latents = _stream(vae, frames, chunks)
    assert encoder.chunks_encoded == chunks and encoder.started
    assert all(z.shape == (2, 16, 1, SIZE // 8, SIZE // 8) for z in latents)
    torch.testing.assert_close(torch.cat(latents, dim=2), reference, atol=ATOL, rtol=0)


def test_each_chunk_goes_through_the_encoder_once(vae, frames):
    calls = []
    handle = vae.encoder.register_forward_hook(lambda module, args, out: calls.append(args[0].shape[2]))
    try:
        encoder = vl.StreamingVideoEncoder(vae)
        encoder.start(frames[:, :, 0])
        assert calls == [1]  # the repeated first frame, alone
        for i in range(4):
            encoder.encode_chunk(frames[:, :, 4 * i:4 * i + 4])
            assert calls == [1] + [4] * (i + 1)  # one new 4-frame encoder pass per chunk, nothing re-encoded
        calls.clear()
        vl.encode_clip(vae, frames)  # the one-shot reference does the same passes
        assert calls == [1] + [4] * 4
    finally:
        handle.remove()


def test_latents_are_normalised_posterior_means(vae, frames):
    clip = torch.cat([frames[:, :, :1], frames[:, :, :8]], dim=2)
    with torch.no_grad():
        mu = vae.encode(clip).latent_dist.mean[:, :, 1:]
    mean = torch.tensor(vae.config.latents_mean).view(1, 16, 1, 1, 1)
    std = torch.tensor(vae.config.latents_std).view(1, 16, 1, 1, 1)
    manual = (mu - mean) / std
    torch.testing.assert_close(vl.encode_clip(vae, frames[:, :, :8]), manual, atol=ATOL, rtol=1e-5)
    _, latents = _stream(vae, frames, 2)
    torch.testing.assert_close(torch.cat(latents, dim=2), manual, atol=ATOL, rtol=1e-5)
    # the mode, not a sample: deterministic
    assert torch.equal(vl.encode_clip(vae, frames[:, :, :8]), vl.encode_clip(vae, frames[:, :, :8]))
    torch.testing.assert_close(vl.denormalize_latents(vae, manual), mu, atol=ATOL, rtol=1e-5)


def test_decode_latents_shape_and_range(vae, frames):
    for n in (1, 3):
        latents = vl.encode_clip(vae, frames[:, :, :4 * n])
        video = vl.decode_latents(vae, latents)
        assert video.shape == (2, 3, 1 + 4 * (n - 1), SIZE, SIZE)
        assert video.min() >= -1 and video.max() <= 1
    with pytest.raises(ValueError):
        vl.decode_latents(vae, torch.zeros(1, 8, 2, 8, 8))


def test_fast_cpu_kernels_equal_the_library_and_take_the_fast_path(vae, frames):
    """use_fast_cpu_kernels (load_vae and SparseVideoNavModels apply it) changes kernels, never results:
    encode and decode equal diffusers' own forward (fp32 to 1e-5), and the profiler shows the float32 causal
    convolutions on oneDNN instead of the native slow_conv3d the heuristic picks for batch 1."""
    import copy

    from torch.profiler import profile

    from sparsevideonav_ros.policies import random_init

    library = random_init.randomize_(AutoencoderKLWan(**vl.tiny_vae_config()), 7).eval().requires_grad_(False)
    fast = vl.use_fast_cpu_kernels(copy.deepcopy(library))  # gammas away from 1: the norm's scale matters
    assert vl.use_fast_cpu_kernels(fast) is fast  # idempotent
    copied = copy.deepcopy(fast)  # the overrides are bound methods: a copy runs on its own weights
    assert copied.decoder.norm_out.forward.__self__ is copied.decoder.norm_out
    one = frames[:1, :, :8]
    latents = vl.encode_clip(library, one)
    torch.testing.assert_close(vl.encode_clip(fast, one), latents, atol=ATOL, rtol=0)
    torch.testing.assert_close(vl.decode_latents(fast, latents), vl.decode_latents(library, latents), atol=ATOL, rtol=0)
    torch.testing.assert_close(vl.decode_instants(fast, latents, [0, 1]), vl.decode_instants(library, latents, [0, 1]),
                               atol=ATOL, rtol=0)
    ops = {}
    for name, model in (("library", library), ("fast", fast)):
        with profile() as prof:
            vl.decode_latents(model, latents)
        ops[name] = {event.key for event in prof.key_averages()}
    assert "aten::slow_conv3d_forward" in ops["library"]  # the heuristic this works around still exists
    assert "aten::slow_conv3d_forward" not in ops["fast"] and "aten::mkldnn_convolution" in ops["fast"]
    assert "aten::linalg_vector_norm" not in ops["fast"]
    with torch.enable_grad():  # autograd keeps the library path (the override is inference only)
        x = one.clone().requires_grad_(True)
        fast.encoder.conv_in(x).sum().backward()
        assert x.grad is not None and torch.isfinite(x.grad).all()


def test_reset_and_bad_input(vae, frames):
    encoder = vl.StreamingVideoEncoder(vae)
    with pytest.raises(RuntimeError, match="start"):
        encoder.encode_chunk(frames[:, :, :4])
    encoder.start(frames[:, :, 0])
    first = encoder.encode_chunk(frames[:, :, :4])
    with pytest.raises(ValueError, match="4 frames"):
        encoder.encode_chunk(frames[:, :, :3])
    with pytest.raises(ValueError, match="started with"):
        encoder.encode_chunk(frames[:1, :, :4])
    with pytest.raises(ValueError, match="multiples of 8"):
        encoder.start(torch.zeros(1, 3, 60, 64))
    encoder.reset()
    assert encoder.chunks_encoded == 0 and not encoder.started
    encoder.start(frames[:, :, 0])
    assert torch.equal(encoder.encode_chunk(frames[:, :, :4]), first)  # the cache really was cleared
    with pytest.raises(ValueError, match="multiple of 4"):
        vl.encode_clip(vae, frames[:, :, :6])


# -- VAE loading ----------------------------------------------------------------------------------

def test_tiny_config_keeps_the_strides(vae):
    assert vae.config.z_dim == 16 and vae.config.temperal_downsample == [False, True, True]
    assert len(vae.config.dim_mult) == 4  # three downsamples: spatial 8
    assert sum(p.numel() for p in vae.parameters()) < 2_000_000


def test_load_vae_diffusers_folder(vae, frames, tmp_path):
    vae.save_pretrained(tmp_path / "vae")
    reference = vl.encode_clip(vae, frames[:, :, :4])
    for path in (tmp_path / "vae", tmp_path):  # the VAE folder, or a pipeline root holding vae/
        loaded = vl.load_vae(path)
        assert not loaded.training and not any(p.requires_grad for p in loaded.parameters())
        assert torch.equal(vl.encode_clip(loaded, frames[:, :, :4]), reference)


def test_load_vae_original_pth(vae, frames, tmp_path):
    from diffusers.loaders.single_file_utils import convert_wan_vae_to_diffusers

    original = vl.vae_state_dict_to_original(vae)
    for key in ("encoder.conv1.weight", "encoder.downsamples.0.residual.0.gamma", "encoder.middle.1.to_qkv.weight",
                "encoder.head.2.weight", "conv1.weight", "conv2.weight", "decoder.upsamples.3.time_conv.weight",
                "decoder.upsamples.4.shortcut.weight", "decoder.upsamples.14.residual.6.bias"):
        assert key in original, key
    # diffusers' own converter maps every original key back onto the model's key with the same tensor
    back = convert_wan_vae_to_diffusers(dict(original))
    state = vae.state_dict()
    assert set(back) == set(state) and all(torch.equal(back[k], state[k]) for k in state)

    path = vl.save_vae_original_format(vae, tmp_path / vl.ORIGINAL_VAE_FILE)
    reference = vl.encode_clip(vae, frames[:, :, :8])
    for source in (path, tmp_path):  # the file, or the release folder holding it
        loaded = vl.load_vae(source, config=vl.tiny_vae_config())
        assert torch.equal(vl.encode_clip(loaded, frames[:, :, :8]), reference)
        streamed = torch.cat(_stream(loaded, frames, 2)[1], dim=2)
        torch.testing.assert_close(streamed, reference, atol=ATOL, rtol=0)

    # diffusers' from_single_file also works offline with a local config folder; same weights
    vae.save_pretrained(tmp_path / "config_only")
    single = AutoencoderKLWan.from_single_file(str(path), config=str(tmp_path / "config_only"), local_files_only=True)
    vl.use_fast_cpu_kernels(single)
    assert torch.equal(vl.encode_clip(single, frames[:, :, :8]), reference)

    # without a config the standard Wan2.1 config is assumed: the tiny weights do not fit it, loudly
    with pytest.raises(ValueError, match="shape"):
        vl.load_vae(path)


def test_full_size_original_naming_covers_every_key():
    with torch.device("meta"):
        full = AutoencoderKLWan(**vl.WAN21_VAE_CONFIG)
    original = vl.vae_state_dict_to_original(full)
    assert len(original) == len(full.state_dict()) == 194
    assert "decoder.upsamples.11.resample.1.weight" in original and "decoder.middle.2.residual.6.weight" in original


def test_load_vae_missing_files_name_them(tmp_path):
    with pytest.raises(FileNotFoundError, match="nowhere"):
        vl.load_vae(tmp_path / "nowhere")
    with pytest.raises(FileNotFoundError, match=r"config\.json.*Wan2\.1_VAE\.pth"):
        vl.load_vae(tmp_path)
    (tmp_path / "config.json").write_text("{}")
    with pytest.raises(FileNotFoundError, match=r"diffusion_pytorch_model\.safetensors"):
        vl.load_vae(tmp_path)
    with pytest.raises(FileNotFoundError, match=r"x\.pth"):
        vl.load_vae(tmp_path / "x.pth")


# -- instruction encoder --------------------------------------------------------------------------

TEXT = "go to the red chair and stop"


def test_instruction_round_trip(instruction_encoder, text_folders):
    embeds, mask = instruction_encoder.encode(TEXT)
    count = len(instruction_encoder.tokenizer(TEXT)["input_ids"])
    assert instruction_encoder.tokenizer(TEXT)["input_ids"][-1] == instruction_encoder.tokenizer.eos_token_id
    assert embeds.shape == (1, 512, 32) and embeds.dtype == torch.float32
    assert mask.shape == (1, 512) and mask.dtype == torch.bool
    assert int(mask.sum()) == count and bool(mask[0, :count].all())
    assert torch.count_nonzero(embeds[0, count:]) == 0 and torch.count_nonzero(embeds[0, :count].abs().sum(-1)) == count
    # same text -> identical, also from a freshly loaded encoder and after whitespace/HTML cleaning
    again, _ = instruction_encoder.encode(TEXT)
    assert torch.equal(again, embeds)
    fresh = te.InstructionEncoder.from_pretrained(*text_folders)
    assert torch.equal(fresh.encode(TEXT)[0], embeds)
    assert torch.equal(fresh.encode("  go to the&#32;red   chair and stop\n")[0], embeds)
    assert not torch.equal(instruction_encoder.encode("turn left at the door")[0], embeds)
    # callers may modify what they get without touching the cache
    embeds.zero_()
    assert torch.count_nonzero(instruction_encoder.encode(TEXT)[0]) > 0


def test_save_pretrained_round_trip(instruction_encoder, tmp_path):
    assert instruction_encoder.hidden_size == instruction_encoder.text_dim == 32
    instruction_encoder.save_pretrained(tmp_path / "text_encoder", tmp_path / "tokenizer")
    loaded = te.InstructionEncoder.from_pretrained(tmp_path / "text_encoder", tmp_path / "tokenizer")
    assert torch.equal(loaded.encode(TEXT)[0], instruction_encoder.encode(TEXT)[0])


def test_bfloat16_vae_streams_and_returns_float32(vae, frames, tmp_path):
    vae.save_pretrained(tmp_path)
    half = vl.load_vae(tmp_path, dtype=torch.bfloat16)
    assert half.dtype == torch.bfloat16
    reference = vl.encode_clip(half, frames[:, :, :8])
    streamed = torch.cat(_stream(half, frames, 2)[1], dim=2)
    assert reference.dtype == streamed.dtype == torch.float32
    torch.testing.assert_close(streamed, reference, atol=ATOL, rtol=0)
    assert vl.decode_latents(half, reference).dtype == torch.float32


def test_instruction_bad_input(instruction_encoder):
    for empty in ("", "   \n\t"):
        with pytest.raises(ValueError, match="empty"):
            instruction_encoder.encode(empty)
    with pytest.raises(TypeError):
        instruction_encoder.encode(None)
    with pytest.warns(UserWarning, match="512"):
        _, mask = instruction_encoder.encode("go forward " * 400)
    assert bool(mask.all())


def test_unpadded_encoding_equals_the_release_padded_masked_run(instruction_encoder):
    embeds, mask = instruction_encoder.encode(TEXT)
    ids = instruction_encoder.tokenizer(TEXT, padding="max_length", max_length=512, return_tensors="pt")
    with torch.no_grad():
        padded = instruction_encoder.text_encoder(input_ids=ids["input_ids"],
                                                  attention_mask=ids["attention_mask"]).last_hidden_state
    count = int(mask.sum())
    assert int(ids["attention_mask"].sum()) == count
    torch.testing.assert_close(embeds[0, :count], padded[0, :count], atol=ATOL, rtol=1e-5)


def test_offload(text_folders):
    encoder = te.InstructionEncoder.from_pretrained(*text_folders)
    embeds, _ = encoder.encode(TEXT)
    encoder.offload()
    assert torch.equal(encoder.encode(TEXT)[0], embeds)
    assert encoder.encode("find the kitchen")[0].shape == (1, 512, 32)
    encoder.offload(free=True)
    assert encoder.text_encoder is None
    assert torch.equal(encoder.encode(TEXT)[0], embeds)  # cached
    with pytest.raises(RuntimeError, match="freed"):
        encoder.encode("stop in front of the plant")


def test_encode_device_moves_the_encoder_for_one_instruction_only(text_folders):
    # text_encoder_offload: umT5 lives on the CPU and runs a new instruction on encode_device (a GPU on a robot
    # workstation; "cpu:0" here, which records the same moves), then goes back; cached instructions move nothing.
    plain = te.InstructionEncoder.from_pretrained(*text_folders)
    moving = te.InstructionEncoder.from_pretrained(*text_folders, encode_device="cpu:0")
    moves = []
    original = moving.text_encoder.to
    moving.text_encoder.to = lambda device, *a, **k: (moves.append(str(device)), original(device, *a, **k))[1]
    assert torch.equal(moving.encode(TEXT)[0], plain.encode(TEXT)[0])
    assert moves == ["cpu:0", "cpu"] and moving.device == torch.device("cpu")
    moving.encode(TEXT)
    assert moves == ["cpu:0", "cpu"]  # cached: no move


def test_offload_parameter_places_umt5_on_the_cpu():
    from sparsevideonav_ros.policies.sparsevideonav.configuration_sparsevideonav import SparseVideoNavConfig
    from sparsevideonav_ros.policies.sparsevideonav.models import _text_encoder_placement
    assert _text_encoder_placement(SparseVideoNavConfig(text_encoder_device="cuda")) == {"device": "cuda"}
    assert _text_encoder_placement(SparseVideoNavConfig(text_encoder_device="cuda", text_encoder_offload=True)) == {
        "device": "cpu", "encode_device": "cuda"}


def test_text_missing_files_name_them(text_folders, tmp_path):
    text_encoder_dir, tokenizer_dir = text_folders
    with pytest.raises(FileNotFoundError, match="nowhere"):
        te.InstructionEncoder.from_pretrained(tmp_path / "nowhere", tokenizer_dir)
    with pytest.raises(FileNotFoundError, match="tokenizer.json"):
        te.InstructionEncoder.from_pretrained(text_encoder_dir, tmp_path)
    with pytest.raises(FileNotFoundError, match=r"config\.json.*models_t5_umt5-xxl-enc-bf16\.pth"):
        te.InstructionEncoder.from_pretrained(tmp_path, tokenizer_dir)
    (tmp_path / "config.json").write_text("{}")
    with pytest.raises(FileNotFoundError, match=r"model\.safetensors"):
        te.InstructionEncoder.from_pretrained(tmp_path, tokenizer_dir)


def _wan_t5_reference(state, ids, num_heads, num_buckets=32, max_dist=128, eps=1e-6):
    """Wan's T5 encoder written out from its definition (RMS norm, unscaled attention with a per-layer
    bidirectional bucketed relative-position bias, tanh-GELU gated FFN), reading Wan's key names."""
    length = ids.shape[1]
    rel = torch.arange(length)[None, :] - torch.arange(length)[:, None]  # key - query
    half = num_buckets // 2
    exact = half // 2
    dist = rel.abs()
    large = exact + (torch.log(dist.float().clamp(min=1) / exact) / math.log(max_dist / exact) * (half - exact)).long()
    buckets = (rel > 0).long() * half + torch.where(dist < exact, dist, large.clamp(max=half - 1))

    def norm(x, weight):
        return weight * x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + eps)

    def heads(x):
        return x.view(1, length, num_heads, -1)

    x = state["token_embedding.weight"][ids]
    layers = 1 + max(int(k.split(".")[1]) for k in state if k.startswith("blocks."))
    for i in range(layers):
        p = lambda name: state[f"blocks.{i}.{name}"]  # noqa: E731
        h = norm(x, p("norm1.weight"))
        q, k, v = (heads(h @ p(f"attn.{n}.weight").T) for n in "qkv")
        bias = p("pos_embedding.embedding.weight")[buckets].permute(2, 0, 1)
        attn = (torch.einsum("bihc,bjhc->bhij", q, k) + bias).softmax(-1)
        x = x + torch.einsum("bhij,bjhc->bihc", attn, v).reshape(1, length, -1) @ p("attn.o.weight").T
        h = norm(x, p("norm2.weight"))
        gated = (h @ p("ffn.fc1.weight").T) * F.gelu(h @ p("ffn.gate.0.weight").T, approximate="tanh")
        x = x + gated @ p("ffn.fc2.weight").T
    return norm(x, state["norm.weight"])


def test_wan_format_t5_checkpoint(instruction_encoder, text_folders, tmp_path):
    _, tokenizer_dir = text_folders
    wan_state = te.umt5_to_wan_t5(instruction_encoder.text_encoder.state_dict())
    assert "token_embedding.weight" in wan_state and "blocks.1.ffn.gate.0.weight" in wan_state
    assert "blocks.0.pos_embedding.embedding.weight" in wan_state and "norm.weight" in wan_state
    # The mapping means the same network: Wan's T5 computed from its own key names == UMT5EncoderModel.
    ids = instruction_encoder.tokenize(TEXT)
    expected, mask = instruction_encoder.encode(TEXT)
    reference = _wan_t5_reference(wan_state, ids, instruction_encoder.text_encoder.config.num_heads)
    torch.testing.assert_close(reference[0], expected[0, :int(mask.sum())], atol=ATOL, rtol=1e-5)

    torch.save(wan_state, tmp_path / te.WAN_T5_FILE)
    config = instruction_encoder.text_encoder.config.to_dict()
    for source in (tmp_path / te.WAN_T5_FILE, tmp_path):  # the file, or the release folder holding it
        loaded = te.InstructionEncoder.from_pretrained(source, tokenizer_dir, config=config)
        assert torch.equal(loaded.encode(TEXT)[0], expected)
    with pytest.raises(ValueError, match="does not match"):  # default config = umT5-xxl, not the tiny one
        te.load_wan_t5_encoder(tmp_path / te.WAN_T5_FILE)
    torch.save({**wan_state, "blocks.0.extra.weight": torch.zeros(1)}, tmp_path / "bad.pth")
    with pytest.raises(KeyError, match="blocks.0.extra.weight"):
        te.load_wan_t5_encoder(tmp_path / "bad.pth", config=config)
