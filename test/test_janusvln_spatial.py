"""JanusVLN's spatial side: VGGT aggregator with the KV-cache spatial memory (initial 8 + sliding 48 frames),
the merger and the fusion alignment, on small random aggregators; the release sizes on the meta device."""
import numpy as np
import pytest
import torch

from sparsevideonav_ros.policies.janusvln import fusion
from sparsevideonav_ros.policies.janusvln.spatial import (Aggregator, AggregatorConfig, SpatialMemory, visible_frames,
                                                          window_mask)

SMALL = AggregatorConfig(img_size=28, embed_dim=32, depth=3, num_heads=2, mlp_ratio=2.0, patch_embed_depth=1,
                         patch_embed_num_heads=2)


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny tensors: thread hand-offs cost more than the maths
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def aggregator():
    torch.manual_seed(0)
    model = Aggregator(SMALL).eval()
    with torch.no_grad():
        for name, parameter in model.named_parameters():
            parameter.normal_(1.0 if name.endswith("norm.weight") else 0.0, 0.2)
    return model


def frames(count, height=28, width=42, seed=0):
    return torch.rand(count, 3, height, width, generator=torch.Generator().manual_seed(seed))


def stream(aggregator, images, memory, layer=-2):
    with torch.no_grad():
        return torch.stack([aggregator.forward_step(image, memory, layer) for image in images])


def test_eviction_keeps_exactly_the_first_8_and_the_last_48_frames(aggregator):
    memory = SpatialMemory(8, 48)
    sizes = set()
    with torch.no_grad():
        for t, image in enumerate(frames(70)):
            aggregator.forward_step(image, memory)
            seen = t + 1
            expected = list(range(seen)) if seen <= 56 else list(range(8)) + list(range(seen - 48, seen))
            assert memory.frame_indices == expected, f"after frame {t}"
            sizes.add(memory.nbytes)
    assert len(sizes) == 1  # one allocation of 8 + 48 + 1 frame slots per cached layer, written in place
    # layer -2 of 3 is read: the last layer is neither run nor cached
    assert len(memory.keys) == SMALL.depth - 1
    assert memory.keys[0].shape[2] == 8 + 48 + 1


def test_cached_step_equals_recomputing_over_the_kept_frames(aggregator):
    images = frames(70, seed=1)
    memory = SpatialMemory(8, 48)
    streamed = stream(aggregator, images, memory)
    with torch.no_grad():
        # no eviction yet: plain causal recomputation over all frames
        causal = aggregator.forward_frames(images[:56])
        # with eviction: recomputation where each frame sees exactly the frames the memory held for it
        windowed = aggregator.forward_frames(images, initial_window=8, sliding_window=48)
        unbounded = aggregator.forward_frames(images)
    torch.testing.assert_close(streamed[:56], causal, atol=1e-5, rtol=1e-4)
    torch.testing.assert_close(streamed, windowed, atol=1e-5, rtol=1e-4)
    # ...and the evicted frames really are gone from the later frames' attention
    assert (streamed[60:] - unbounded[60:]).abs().max() > 1e-4
    # the first frame of an episode uses the first-frame camera/register tokens, later ones the others
    assert not torch.equal(aggregator.camera_token[0, 0], aggregator.camera_token[0, 1])


def test_window_mask_matches_the_eviction_rule():
    mask = window_mask(60, 1, 8, 48, torch.device("cpu"))
    for i in (0, 7, 30, 56, 57, 59):
        visible = [j for j in range(60) if mask[i, j]]
        assert visible == sorted(set(range(min(i + 1, 8))) | set(range(max(0, i - 48), i + 1)))
        assert visible == visible_frames(i, 8, 48)
    assert int(mask.sum(1).max()) == 8 + 48 + 1


def test_memory_stays_bounded_over_500_steps(aggregator):
    memory = SpatialMemory(8, 48)
    images = frames(16, height=14, width=14, seed=2)
    with torch.no_grad():
        for t in range(500):
            aggregator.forward_step(images[t % 16], memory)
            if t == 56:
                full = (memory.nbytes, [k.data_ptr() for k in memory.keys])
    assert memory.frames_seen == 500
    assert memory.frame_indices == list(range(8)) + list(range(452, 500))
    assert (memory.nbytes, [k.data_ptr() for k in memory.keys]) == full  # same buffers, never grown
    assert len(memory.slot_frame) == 57


def test_new_episode_and_image_size_checks(aggregator):
    memory = SpatialMemory(2, 3)
    stream(aggregator, frames(4), memory)
    memory.reset()
    assert memory.frame_indices == [] and memory.nbytes == 0
    stream(aggregator, frames(1), memory)
    with pytest.raises(ValueError, match="image size must not change"):
        stream(aggregator, frames(1, height=14, width=14), memory)
    with pytest.raises(ValueError, match="multiple of the 14-pixel patch"):
        stream(aggregator, frames(1, height=20, width=28), SpatialMemory())


def test_fusion_groups_patches_in_qwen_merged_order_at_release_size():
    rows, cols, start = 35, 46, 5  # 640x480 -> 644x490 -> 35 x 46 patches + camera + 4 registers = 1615 tokens
    features = torch.arange(start + rows * cols, dtype=torch.float32)[:, None].repeat(1, 2048)
    grouped = fusion.group_patch_features(features, rows, cols, start)
    assert grouped.shape == (391, 4, 2048)  # the 35th row is cropped: 17 x 23 groups
    index = grouped[..., 0].long() - start  # flat patch index = row * 46 + col
    assert index[0].tolist() == [0, 1, 46, 47]
    assert index[1].tolist() == [2, 3, 48, 49]
    assert index[23].tolist() == [92, 93, 138, 139]  # second group row starts at patch row 2
    assert int(index.max()) == 33 * 46 + 45
    with torch.device("meta"):
        merger = fusion.SpatialMerger(output_dim=3584, hidden_dim=4096, context_dim=2048)
        tokens = merger(grouped.to("meta"))
    assert tokens.shape == (391, 3584)
    assert (merger.mlp[0].in_features, merger.mlp[0].out_features, merger.mlp[2].out_features) == (8192, 4096, 3584)


def test_fuse_adds_lambda_times_the_spatial_tokens_to_every_image():
    visual = torch.randn(3 * 12, 64)
    spatial = torch.randn(12, 64)
    fused = fusion.fuse(visual, spatial, 0.2)
    torch.testing.assert_close(fused, visual + 0.2 * spatial.repeat(3, 1))
    with pytest.raises(ValueError, match="cannot align"):
        fusion.fuse(torch.randn(13, 64), spatial, 0.2)


def test_vggt_1b_aggregator_instantiates_on_meta_with_its_parameter_count():
    with torch.device("meta"):
        model = Aggregator(AggregatorConfig())
    total = sum(p.numel() for p in model.parameters())
    dino = sum(p.numel() for p in model.patch_embed.parameters())
    assert 300e6 < dino < 310e6  # DINOv2-L/14 with registers
    assert 900e6 < total < 920e6  # + 24 frame and 24 global blocks of dim 1024 (VGGT-1B without its heads)
    assert model.patch_embed.pos_embed.shape == (1, 1 + 37 * 37, 1024)
    assert model.camera_token.shape == (1, 2, 1, 1024) and model.register_token.shape == (1, 2, 4, 1024)
    # memory per cached frame at 644 x 490 in bfloat16: 23 cached global layers x (k, v) x 1615 tokens x 1024
    per_frame = 23 * 2 * 1615 * 1024 * 2
    assert 150e6 < per_frame < 160e6 and 8.0e9 < per_frame * 57 < 9.0e9
    assert np.isclose(model.head_dim, 64)
