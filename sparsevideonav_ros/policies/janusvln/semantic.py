"""Qwen2.5-VL language-model side of JanusVLN: M-RoPE positions, the semantic memory, greedy decoding.

Semantic memory (the part of the paper the authors did not release; ours): the language model's key/value
cache of the prompt prefix (system turn + user header, kept for the whole episode) and of every frame's
visual block (<|vision_start|> + merged visual tokens + <|vision_end|>), with the spatial memory's windows:
the first `initial_window` frames and the last `sliding_window`. A new frame is encoded once (ViT + one
language-model pass over its own block, attending to the prefix and the held frames) and never again. A
step then only runs the task text + assistant header over the memory, and decodes.

Positions follow Qwen2.5-VL's M-RoPE as the processor + model lay them out for the whole prompt: text tokens
advance all three axes by one; an image's tokens sit at (s, s + row, s + col) from its start s, and the text
after it starts at s + max(rows, cols) (in merged units). Each frame keeps the positions it was encoded at;
evicting a frame leaves a gap (no re-rotation of cached keys), so positions grow by about 25 per frame at
the released input size (Qwen2.5-VL-7B allows 128000).

Keys are stored after RoPE, as transformers' caches do, so a frame's cache entries are reused unchanged.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional, Sequence

import torch


def text_positions(start: int, length: int, device=None) -> torch.Tensor:
    """(3, length) positions of text tokens starting at `start`."""
    return (torch.arange(length, device=device) + start).view(1, -1).expand(3, -1)


def image_positions(start: int, rows: int, cols: int, device=None) -> torch.Tensor:
    """(3, rows*cols) positions of one still image's merged tokens starting at `start` (row-major)."""
    r = torch.arange(rows, device=device).view(-1, 1).expand(rows, cols).reshape(-1)
    c = torch.arange(cols, device=device).view(1, -1).expand(rows, cols).reshape(-1)
    return torch.stack([torch.zeros_like(r), r, c]) + start


def block_positions(start: int, rows: int, cols: int, device=None) -> tuple[torch.Tensor, int]:
    """Positions of <|vision_start|> image <|vision_end|> starting at `start`, and the next free position."""
    image_start = start + 1
    end = image_start + max(rows, cols)
    positions = torch.cat([text_positions(start, 1, device), image_positions(image_start, rows, cols, device),
                           text_positions(end, 1, device)], dim=1)
    return positions, end + 1


def prompt_positions(prefix_len: int, grids: Sequence[tuple[int, int]], suffix_len: int,
                     start: int = 0) -> tuple[torch.Tensor, int]:
    """Positions of prefix + one block per (rows, cols) merged grid + suffix, and the next free position."""
    parts = [text_positions(start, prefix_len)]
    position = start + prefix_len
    for rows, cols in grids:
        block, position = block_positions(position, rows, cols)
        parts.append(block)
    parts.append(text_positions(position, suffix_len))
    return torch.cat(parts, dim=1), position + suffix_len


class LanguageModel:
    """Thin driver of a transformers Qwen2_5_VLForConditionalGeneration: visual tokens, forward, greedy decode."""

    def __init__(self, qwen) -> None:
        self.qwen = qwen
        self.merge = int(qwen.config.vision_config.spatial_merge_size)

    @property
    def device(self) -> torch.device:
        return self.qwen.lm_head.weight.device

    @property
    def dtype(self) -> torch.dtype:
        return self.qwen.lm_head.weight.dtype

    def visual_tokens(self, pixel_values: torch.Tensor, grid_thw: torch.Tensor) -> torch.Tensor:
        """Qwen's ViT + patch merger: (patches, 1176) per image, stacked -> (merged tokens, hidden)."""
        visual = self.qwen.model.visual
        out = visual(pixel_values.to(self.device, visual.dtype), grid_thw=grid_thw.to(self.device))
        return out.pooler_output

    def embed(self, ids: Sequence[int]) -> torch.Tensor:
        ids_t = torch.tensor([list(ids)], device=self.device)
        return self.qwen.model.language_model.embed_tokens(ids_t)

    def embed_with_images(self, ids: Sequence[int], image_token_id: int, image_tokens: torch.Tensor) -> torch.Tensor:
        """Token embeddings with the image placeholders replaced, in order, by `image_tokens`."""
        embeds = self.embed(ids)
        mask = torch.tensor([list(ids)], device=self.device) == image_token_id
        if int(mask.sum()) != image_tokens.shape[0]:
            raise ValueError(f"{int(mask.sum())} image placeholders for {image_tokens.shape[0]} visual tokens")
        return embeds.masked_scatter(mask.unsqueeze(-1), image_tokens.to(embeds.dtype))

    def forward(self, embeds: torch.Tensor, positions: torch.Tensor, cache, attention_mask=None) -> torch.Tensor:
        """Run the decoder on (1, L, H) embeddings at (3, L) positions, extending `cache`; -> hidden (1, L, H)."""
        out = self.qwen.model.language_model(inputs_embeds=embeds, position_ids=positions.to(self.device)[:, None],
                                             past_key_values=cache, use_cache=True,
                                             attention_mask=attention_mask)
        return out.last_hidden_state

    def logits(self, hidden: torch.Tensor) -> torch.Tensor:
        return self.qwen.lm_head(hidden).float()

    def greedy(self, cache, last_logits: torch.Tensor, next_position: int, max_new_tokens: int,
               eos_ids: Sequence[int]) -> list[int]:
        """Greedy decoding from the last prompt logits (V,): argmax until an end token or `max_new_tokens`."""
        generated: list[int] = []
        logits = last_logits
        position = next_position
        for _ in range(max_new_tokens):
            token = int(torch.argmax(logits))
            if token in eos_ids:
                break
            generated.append(token)
            if len(generated) == max_new_tokens:
                break
            hidden = self.forward(self.embed([token]), text_positions(position, 1), cache)
            logits = self.logits(hidden[0, -1])
            position += 1
        return generated


def empty_cache():
    from transformers import DynamicCache
    return DynamicCache()


def cache_from(keys: Sequence[torch.Tensor], values: Sequence[torch.Tensor]):
    """A transformers DynamicCache holding copies-on-extend of these per-layer (1, kv_heads, T, D) tensors."""
    from transformers import DynamicCache
    return DynamicCache(ddp_cache_data=list(zip(keys, values)))


@dataclass
class FrameSpan:
    frame: int
    start: int  # token offset in the memory tensors
    length: int


@dataclass
class SemanticMemory:
    """The language model's KV cache of the prompt prefix and of the held frames' visual blocks."""

    initial_window: int = 8
    sliding_window: int = 48
    keys: list = field(default_factory=list)  # per layer (1, kv_heads, tokens, head_dim)
    values: list = field(default_factory=list)
    prefix_length: int = 0
    spans: list = field(default_factory=list)  # FrameSpan per held frame, oldest first
    next_position: int = 0
    dtype: Optional[torch.dtype] = None  # storage dtype of the keys/values (None = the compute dtype)
    compute_dtype: Optional[torch.dtype] = None  # the language model's, seen at the last store

    def reset(self) -> None:
        self.keys, self.values, self.spans = [], [], []
        self.prefix_length = self.next_position = 0

    @property
    def frame_indices(self) -> list[int]:
        return [span.frame for span in self.spans]

    @property
    def tokens(self) -> int:
        return int(self.keys[0].shape[2]) if self.keys else 0

    @property
    def nbytes(self) -> int:
        return sum(t.numel() * t.element_size() for t in self.keys + self.values)

    def cache(self):
        """A DynamicCache over the memory in the compute dtype (the stored tensors themselves when they are in it)."""
        if not self.keys:
            return empty_cache()
        dtype = self.compute_dtype
        return cache_from([k.to(dtype) for k in self.keys], [v.to(dtype) for v in self.values])

    def _store(self, cache) -> None:
        self.compute_dtype = cache.layers[0].keys.dtype
        dtype = self.dtype or self.compute_dtype
        self.keys = [layer.keys.to(dtype) for layer in cache.layers]
        self.values = [layer.values.to(dtype) for layer in cache.layers]

    def start(self, model: LanguageModel, prefix_ids: Sequence[int]) -> None:
        """Encode the prompt prefix (system turn + user header) once per episode."""
        self.reset()
        cache = empty_cache()
        model.forward(model.embed(prefix_ids), text_positions(0, len(prefix_ids)), cache)
        self._store(cache)
        self.prefix_length = self.next_position = len(prefix_ids)

    def add_frame(self, model: LanguageModel, frame: int, block_ids: Sequence[int], image_token_id: int,
                  image_tokens: torch.Tensor, rows: int, cols: int) -> None:
        """Encode one frame's block over the memory and keep its keys/values; evict beyond the windows."""
        if not self.keys:
            raise RuntimeError("SemanticMemory.add_frame before start()")
        positions, next_position = block_positions(self.next_position, rows, cols)
        cache = self.cache()
        model.forward(model.embed_with_images(block_ids, image_token_id, image_tokens), positions, cache)
        self._store(cache)
        self.spans.append(FrameSpan(frame, self.tokens - len(block_ids), len(block_ids)))
        self.next_position = next_position
        self._evict()

    def _evict(self) -> None:
        if len(self.spans) <= self.initial_window + self.sliding_window:
            return
        index = self.initial_window  # the oldest frame outside the initial window
        span = self.spans.pop(index)
        end = span.start + span.length
        self.keys = [torch.cat([k[:, :, :span.start], k[:, :, end:]], dim=2) for k in self.keys]
        self.values = [torch.cat([v[:, :, :span.start], v[:, :, end:]], dim=2) for v in self.values]
        for later in self.spans[index:]:
            later.start -= span.length


def window_attention_mask(segments: Sequence[tuple[str, Optional[int], int]], initial_window: int,
                          sliding_window: int, kept_at_end: Sequence[int]) -> torch.Tensor:
    """Reference mask for recomputing the semantic memory in one pass (tests): segments are
    ("prefix", None, n), ("frame", f, n), ("suffix", None, n) in sequence order. A frame's tokens see the
    prefix, themselves (causally) and the frames f' < f the memory held then; the suffix sees the prefix and
    the frames held at the end. -> (1, 1, L, L) bool."""
    kinds, frames = [], []
    codes = {"prefix": 0, "frame": 1, "suffix": 2}
    for kind, frame, length in segments:
        kinds += [codes[kind]] * length
        frames += [-1 if frame is None else int(frame)] * length
    kind_t, frame_t = torch.tensor(kinds), torch.tensor(frames)
    ki, kj = kind_t[:, None], kind_t[None, :]
    fi, fj = frame_t[:, None], frame_t[None, :]
    causal = torch.ones(len(kinds), len(kinds), dtype=torch.bool).tril()
    same = (ki == kj) & (fi == fj)
    frame_to_frame = (ki == 1) & (kj == 1) & ((fj < initial_window) | (fj >= fi - sliding_window))
    kept = torch.tensor(sorted(set(int(f) for f in kept_at_end)), dtype=torch.long)
    suffix_to_frame = (ki == 2) & (kj == 1) & torch.isin(fj, kept)
    mask = causal & ((kj == 0) | same | frame_to_frame | suffix_to_frame)
    return mask[None, None]
