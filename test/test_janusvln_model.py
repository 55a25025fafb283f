"""JanusVLN model side on tiny random configs saved and loaded through the real loader: both checkpoint
layouts, key errors by name, M-RoPE positions and image inputs as transformers makes them, the semantic memory
(== recomputation over the kept frames, bounded), greedy decoding, and the release sizes on the meta device."""
import json
import shutil

import numpy as np
import pytest
import torch
from safetensors.torch import load_file, save_file

from sparsevideonav_ros.policies.janusvln import checkpoints, models
from sparsevideonav_ros.policies.janusvln.checkpoints import CheckpointError
from sparsevideonav_ros.policies.janusvln.prompt import SYSTEM_PROMPT, task_text
from sparsevideonav_ros.policies.janusvln.semantic import (SemanticMemory, empty_cache, prompt_positions,
                                                           text_positions, window_attention_mask)
from sparsevideonav_ros.policies.janusvln.vision_inputs import ImageProcessing, qwen_patches, resized_shape

from janus_helpers import INSTRUCTION, one_thread  # noqa: F401 - fixture by name


@pytest.fixture(scope="module")
def random_folder(tmp_path_factory):
    """A fully random tiny JanusVLN (no MOVE_FORWARD nudge) in the authors' old layout."""
    folder = tmp_path_factory.mktemp("janusvln") / "random"
    return models.build_tiny_checkpoint(folder, seed=1, answer_actions=False,
                                        tokenizer_from=models.tiny_checkpoint_dir())


@pytest.fixture(scope="module")
def janus(random_folder):
    return models.load_janusvln(random_folder)


def block_tokens(janus, count, seed):
    hidden = janus.model.arch.qwen.text_config.hidden_size
    return torch.randn(count, hidden, generator=torch.Generator().manual_seed(seed))


def test_both_qwen_layouts_load_to_the_same_model(janus, random_folder, tmp_path):
    old_keys = load_file(str(random_folder / "model.safetensors")).keys()
    assert checkpoints.detect_layout(old_keys) == "old"
    assert any(k.startswith("visual.blocks.") for k in old_keys) and "model.embed_tokens.weight" in old_keys
    assert {"merger.ln_q.weight", "merger.mlp.0.weight", "merger.mlp.2.weight"} <= set(old_keys)
    assert any(k.startswith("vggt.aggregator.global_blocks.1.attn.k_norm") for k in old_keys)
    new_folder = models.save_janusvln(janus.model, random_folder, tmp_path / "new", layout="new",
                                      max_shard_bytes=200_000)
    index = json.loads((new_folder / checkpoints.WEIGHTS_INDEX).read_text())
    assert len(set(index["weight_map"].values())) > 1  # sharded
    assert checkpoints.detect_layout(index["weight_map"]) == "new"
    assert "model.language_model.embed_tokens.weight" in index["weight_map"]
    reloaded = models.load_janusvln(new_folder)
    ours, theirs = janus.model.state_dict(), reloaded.model.state_dict()
    assert ours.keys() == theirs.keys() and all(torch.equal(ours[k], theirs[k]) for k in ours)


def rewrite(folder, tmp_path, edit):
    copy = tmp_path / "edited"
    shutil.copytree(folder, copy)
    state = load_file(str(copy / "model.safetensors"))
    edit(state)
    save_file(state, str(copy / "model.safetensors"))
    return copy


def test_missing_and_unknown_keys_are_named(random_folder, tmp_path):
    missing = rewrite(random_folder, tmp_path, lambda s: s.pop("merger.mlp.0.bias"))
    with pytest.raises(CheckpointError, match=r"missing keys \['merger\.mlp\.0\.bias'\]"):
        models.load_janusvln(missing)
    shutil.rmtree(missing)
    extra = {"vggt.aggregator.extra_token": torch.zeros(1), "lm_head.bias": torch.zeros(2)}
    unknown = rewrite(random_folder, tmp_path, lambda s: s.update(extra))
    with pytest.raises(CheckpointError, match=r"unexpected keys \['lm_head\.bias', 'vggt\.aggregator\.extra_token'\]"):
        models.load_janusvln(unknown)
    shutil.rmtree(unknown)
    mixed = rewrite(random_folder, tmp_path,
                    lambda s: s.update({"model.language_model.norm.weight": s["model.norm.weight"].clone()}))
    with pytest.raises(CheckpointError, match="mixes the old"):
        models.load_janusvln(mixed)
    shutil.rmtree(mixed)
    # the VGGT depth/point heads of the authors' checkpoint are unused at inference: accepted and dropped
    heads = rewrite(random_folder, tmp_path, lambda s: s.update({"vggt.depth_head.norm.weight": torch.ones(4),
                                                                 "vggt.point_head.proj.weight": torch.ones(2, 2)}))
    models.load_janusvln(heads)


def test_config_extras_and_release_sizes_on_meta():
    arch = models.release_architecture()
    assert arch.lam == 0.2 and arch.image_width == 644 and arch.merger_hidden_dim == 4096
    counts = models.parameter_counts(arch)
    assert 8.2e9 < counts["qwen"] < 8.4e9  # Qwen2.5-VL-7B-Instruct
    assert 0.66e9 < counts["qwen_visual"] < 0.69e9
    assert 0.90e9 < counts["aggregator"] < 0.92e9  # VGGT-1B aggregator
    assert counts["merger"] == 8192 * 4096 + 4096 + 4096 * 3584 + 3584 + 2048
    # both config.json styles (top-level text fields of older transformers, or text_config) give the same model
    nested = models.Architecture.from_config_dict(arch.to_config_dict())
    assert nested.qwen.text_config.num_hidden_layers == 28 and nested.qwen.text_config.hidden_size == 3584
    assert nested.aggregator == arch.aggregator and nested.lam == 0.2
    with pytest.raises(CheckpointError, match="use_vggt_feature"):
        models.Architecture.from_config_dict({**arch.to_config_dict(), "use_vggt_feature": False})


def test_image_inputs_and_mrope_positions_match_transformers(janus):
    from transformers.models.qwen2_vl.image_processing_pil_qwen2_vl import Qwen2VLImageProcessorPil

    assert resized_shape(480, 640, 644) == (490, 644)  # the release's 644 x 490 for a 640 x 480 camera
    frame = models.FrameInputs.from_rgb(np.random.default_rng(0).integers(0, 255, (480, 640, 3), dtype=np.uint8),
                                        ImageProcessing())
    assert tuple(frame.vggt_image.shape) == (3, 490, 644) and frame.grid_thw.tolist() == [[1, 34, 46]]
    assert int(frame.grid_thw.prod()) // 4 == 391
    reference = Qwen2VLImageProcessorPil()(images=[frame.vggt_image[:, :476].numpy()], do_resize=False,
                                           do_rescale=False, return_tensors="pt", input_data_format="channels_first")
    torch.testing.assert_close(qwen_patches(frame.vggt_image, ImageProcessing())[0], reference["pixel_values"])

    layout = janus.layout
    grids = [(3, 4), (3, 4), (2, 5)]
    ids = layout.ids(INSTRUCTION, [r * c for r, c in grids])
    text = layout.text(INSTRUCTION, 3)
    assert SYSTEM_PROMPT in text and task_text(INSTRUCTION) in text and text.endswith("<|im_start|>assistant\n")
    input_ids = torch.tensor([ids])
    expected, _ = janus.model.qwen.model.get_rope_index(
        input_ids, mm_token_type_ids=(input_ids == layout.image_token_id).int(),
        image_grid_thw=torch.tensor([[1, 2 * r, 2 * c] for r, c in grids]))
    suffix = len(ids) - len(layout.prefix_ids) - sum(r * c + 2 for r, c in grids)
    ours, next_position = prompt_positions(len(layout.prefix_ids), grids, suffix)
    assert torch.equal(ours, expected[:, 0]) and next_position == int(expected.max()) + 1


def stream_memory(janus, frames, initial, sliding, instruction=INSTRUCTION):
    """Semantic memory over `frames` random blocks, then the suffix: -> memory, suffix hidden states."""
    layout, language = janus.layout, janus.language
    memory = SemanticMemory(initial, sliding)
    memory.start(language, layout.prefix_ids)
    for f in range(frames):
        memory.add_frame(language, f, layout.block_ids(12), layout.image_token_id, block_tokens(janus, 12, f), 3, 4)
    suffix = layout.suffix_ids(instruction)
    hidden = language.forward(language.embed(suffix), text_positions(memory.next_position, len(suffix)),
                              memory.cache())
    return memory, hidden


def recompute(janus, frames, initial=None, sliding=None, kept=()):
    """One pass over prefix + every frame block + suffix, positions as the stream assigned them, each token
    seeing what the memory held for it (plain causal attention when no windows are given)."""
    layout, language = janus.layout, janus.language
    suffix = layout.suffix_ids(INSTRUCTION)
    ids = layout.ids(INSTRUCTION, [12] * frames)
    visual = torch.cat([block_tokens(janus, 12, f) for f in range(frames)])
    positions, _ = prompt_positions(len(layout.prefix_ids), [(3, 4)] * frames, len(suffix))
    mask = None
    if initial is not None:
        segments = [("prefix", None, len(layout.prefix_ids))] + [("frame", f, 14) for f in range(frames)]
        mask = {"full_attention": window_attention_mask(segments + [("suffix", None, len(suffix))], initial,
                                                        sliding, kept)}
    hidden = language.forward(language.embed_with_images(ids, layout.image_token_id, visual), positions,
                              empty_cache(), attention_mask=mask)
    return hidden[:, -len(suffix):]


def test_semantic_memory_equals_recomputing_over_the_kept_frames(janus):
    with torch.no_grad():
        memory, streamed = stream_memory(janus, 6, 8, 48)
        torch.testing.assert_close(streamed, recompute(janus, 6), atol=1e-4, rtol=1e-4)  # no eviction yet

        memory, streamed = stream_memory(janus, 62, 8, 48)
        assert memory.frame_indices == list(range(8)) + list(range(14, 62))
        reference = recompute(janus, 62, 8, 48, memory.frame_indices)
        torch.testing.assert_close(streamed, reference, atol=1e-4, rtol=1e-4)
        unbounded = recompute(janus, 62)
    assert (streamed - unbounded).abs().max() > 1e-3  # evicted frames no longer reach the answer


def test_semantic_memory_stays_bounded_over_500_frames(janus):
    layout, language = janus.layout, janus.language
    memory = SemanticMemory(8, 48)
    with torch.no_grad():
        memory.start(language, layout.prefix_ids)
        tokens = block_tokens(janus, 12, 0)
        for f in range(500):
            memory.add_frame(language, f, layout.block_ids(12), layout.image_token_id, tokens, 3, 4)
            if f == 60:
                size = (memory.tokens, memory.nbytes)
    assert (memory.tokens, memory.nbytes) == size == (len(layout.prefix_ids) + 56 * 14, size[1])
    assert memory.frame_indices == list(range(8)) + list(range(452, 500))
    assert len(memory.spans) == 56


def test_greedy_decoding_equals_argmax_over_full_recomputation(janus):
    layout, language = janus.layout, janus.language
    with torch.no_grad():
        memory, hidden = stream_memory(janus, 2, 8, 48)
        suffix = layout.suffix_ids(INSTRUCTION)
        cache = memory.cache()
        cache_hidden = language.forward(language.embed(suffix), text_positions(memory.next_position, len(suffix)),
                                        cache)
        generated = language.greedy(cache, language.logits(cache_hidden[0, -1]), memory.next_position + len(suffix),
                                    6, eos_ids=())
        assert len(generated) == 6
        ids = layout.ids(INSTRUCTION, [12, 12])
        visual = torch.cat([block_tokens(janus, 12, f) for f in range(2)])
        for step in range(6):
            full = ids + generated[:step]
            positions, _ = prompt_positions(len(layout.prefix_ids), [(3, 4)] * 2,
                                            len(suffix) + step)
            out = language.forward(language.embed_with_images(full, layout.image_token_id, visual), positions,
                                   empty_cache())
            assert int(language.logits(out[0, -1]).argmax()) == generated[step]
