"""SparseVideoNav backbone: diffusers' Wan2.1 transformer with per-block history cross-attention.

Shapes at the paper's size (256x256 frames): latents (B, 16, 10, 32, 32) = 2 reference + 8 sparse
future latent frames -> 2560 tokens of width 1536; text (B, 512, 4096) umT5 embeddings, zero-padded;
history tokens (B, 2560, 512) from the Q-Former + Video-Former, whatever the history length.

Sections: 1. per-plan context (what the sampler steps share), 2. history block, 3. model (config, history
compression, forward).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import torch
from diffusers.configuration_utils import register_to_config
from diffusers.models.attention_dispatch import dispatch_attention_fn
from diffusers.models.normalization import FP32LayerNorm
from diffusers.models.transformers.transformer_wan import (WanAttention, WanAttnProcessor, WanTransformer3DModel,
                                                            WanTransformerBlock)
from torch import nn

from sparsevideonav_ros.policies.sparsevideonav.history_formers import (QFormer, QFormerConfig, VideoFormer,
                                                                        VideoFormerConfig)

# Wan2.1-T2V-1.3B (reference: dim 1536 = 12 heads x 128, ffn 8960, 30 layers).
WAN_1_3B = dict(num_attention_heads=12, attention_head_dim=128, ffn_dim=8960, num_layers=30)
LATENT_CHANNELS = 16


# 1. Per-plan context -------------------------------------------------------------------------
#
# The text and history cross-attentions attend to the same context at every sampler step: their keys and
# values (and the text projection and each block's history_proj MLP before them) depend only on the
# instruction and the history, not on the noisy latents or the timestep. At full size that is about
# 3.1 TFLOP of a 49.6 TFLOP step (counted, bench_sparsevideonav), so a plan computes it once
# (SparseVideoNavTransformer.plan_context) and every step reuses it. diffusers' Wan attention has no such
# cache (its caching hooks skip or approximate whole blocks), hence CrossAttentionKVProcessor: the same
# projections, norms and dispatch as WanAttnProcessor, with the key/value projection moved out of the step.


@dataclass
class CrossAttentionKV:
    """Keys and values of one cross-attention, (B, L, heads, head_dim) each, after norm_k, as
    WanAttnProcessor computes them from its context."""

    key: torch.Tensor
    value: torch.Tensor


def cross_attention_kv(attn: WanAttention, context: torch.Tensor) -> CrossAttentionKV:
    """context (B, L, dim) -> its CrossAttentionKV for ``attn`` (a cross-attention without added KV)."""
    key = attn.norm_k(attn.to_k(context))
    value = attn.to_v(context)
    return CrossAttentionKV(key.unflatten(2, (attn.heads, -1)), value.unflatten(2, (attn.heads, -1)))


class CrossAttentionKVProcessor(WanAttnProcessor):
    """WanAttnProcessor that also takes precomputed keys/values (a CrossAttentionKV) as its context."""

    def __call__(self, attn, hidden_states, encoder_hidden_states=None, attention_mask=None, rotary_emb=None):
        if not isinstance(encoder_hidden_states, CrossAttentionKV):
            return super().__call__(attn, hidden_states, encoder_hidden_states, attention_mask, rotary_emb)
        if attn.add_k_proj is not None or getattr(attn, "fused_projections", False) or rotary_emb is not None:
            raise ValueError("precomputed cross-attention keys/values: only for plain (unfused, text/history) "
                             "cross-attention")
        query = attn.norm_q(attn.to_q(hidden_states)).unflatten(2, (attn.heads, -1))
        out = dispatch_attention_fn(query, encoder_hidden_states.key, encoder_hidden_states.value,
                                    attn_mask=attention_mask, dropout_p=0.0, is_causal=False,
                                    backend=self._attention_backend, parallel_config=None)
        out = out.flatten(2, 3).type_as(query)
        return attn.to_out[1](attn.to_out[0](out))


@dataclass
class PlanContext:
    """What every sampler step of one plan shares: the projected text (B, 512, dim) and, per block, the text
    and history cross-attention keys/values (history None when the plan has no history)."""

    text: torch.Tensor
    text_kv: list[CrossAttentionKV]
    history_kv: Optional[list[CrossAttentionKV]]


# 2. History block ----------------------------------------------------------------------------

class HistoryWanTransformerBlock(WanTransformerBlock):
    """A Wan block with a history cross-attention between the text cross-attention and the FFN.

    history_proj: MLP (history_dim -> history_dim -> dim, GELU); norm_history: affine LayerNorm;
    attn_history: qk-RMSNorm cross-attention whose output projection starts at zero, so a fresh
    block computes exactly what the plain Wan block computes.
    """

    def __init__(self, dim: int, ffn_dim: int, num_heads: int, qk_norm: str, cross_attn_norm: bool, eps: float,
                 history_dim: int) -> None:
        super().__init__(dim, ffn_dim, num_heads, qk_norm, cross_attn_norm, eps)
        self.history_proj = nn.Sequential(nn.Linear(history_dim, history_dim), nn.GELU(),
                                          nn.Linear(history_dim, dim))
        self.norm_history = FP32LayerNorm(dim, eps, elementwise_affine=True)
        self.attn_history = WanAttention(dim=dim, heads=num_heads, dim_head=dim // num_heads, eps=eps,
                                         cross_attention_dim_head=dim // num_heads,
                                         processor=CrossAttentionKVProcessor())
        self.attn2.set_processor(CrossAttentionKVProcessor())
        nn.init.zeros_(self.attn_history.to_out[0].weight)
        nn.init.zeros_(self.attn_history.to_out[0].bias)

    def context_kv(self, text: torch.Tensor, history_tokens: Optional[torch.Tensor]):
        """(text CrossAttentionKV, history CrossAttentionKV or None) of this block for one plan.
        text: (B, 512, dim) projected; history_tokens: (B, N, history_dim) or None."""
        history = None if history_tokens is None else cross_attention_kv(self.attn_history,
                                                                          self.history_proj(history_tokens))
        return cross_attention_kv(self.attn2, text), history

    def forward(self, hidden_states: torch.Tensor, encoder_hidden_states, temb: torch.Tensor,
                rotary_emb, history_tokens=None) -> torch.Tensor:
        """hidden (B, S, dim); temb (B, 6, dim); text: (B, 512, dim) or its CrossAttentionKV; history:
        (B, N, history_dim), its CrossAttentionKV (context_kv), or None (no history attention)."""
        shift_msa, scale_msa, gate_msa, c_shift_msa, c_scale_msa, c_gate_msa = (
            self.scale_shift_table + temb.float()).chunk(6, dim=1)
        norm = (self.norm1(hidden_states.float()) * (1 + scale_msa) + shift_msa).type_as(hidden_states)
        attn = self.attn1(norm, None, None, rotary_emb)
        hidden_states = (hidden_states.float() + attn * gate_msa).type_as(hidden_states)

        norm = self.norm2(hidden_states.float()).type_as(hidden_states)  # diffusers' norm2 = cross-attn norm
        hidden_states = hidden_states + self.attn2(norm, encoder_hidden_states, None, None)

        if history_tokens is not None:
            context = history_tokens if isinstance(history_tokens, CrossAttentionKV) else self.history_proj(history_tokens)
            norm = self.norm_history(hidden_states.float()).type_as(hidden_states)
            hidden_states = hidden_states + self.attn_history(norm, context, None, None)

        norm = (self.norm3(hidden_states.float()) * (1 + c_scale_msa) + c_shift_msa).type_as(hidden_states)
        ff = self.ffn(norm)
        return (hidden_states.float() + ff.float() * c_gate_msa).type_as(hidden_states)


# 3. Model ------------------------------------------------------------------------------------

class SparseVideoNavTransformer(WanTransformer3DModel):
    """Wan2.1 T2V transformer + history compression (Q-Former, Video-Former) + history cross-attention.

    Every constructor argument is repeated under @register_to_config: without that, from_pretrained
    would fill missing ones from WanTransformer3DModel's defaults (the 14B model).
    """

    _no_split_modules = ["HistoryWanTransformerBlock"]
    _repeated_blocks = ["HistoryWanTransformerBlock"]

    @register_to_config
    def __init__(
        self,
        patch_size: tuple[int, ...] = (1, 2, 2),
        num_attention_heads: int = 12,
        attention_head_dim: int = 128,
        in_channels: int = LATENT_CHANNELS,
        out_channels: int = LATENT_CHANNELS,
        text_dim: int = 4096,
        freq_dim: int = 256,
        ffn_dim: int = 8960,
        num_layers: int = 30,
        cross_attn_norm: bool = True,
        qk_norm: Optional[str] = "rms_norm_across_heads",
        eps: float = 1e-6,
        image_dim: Optional[int] = None,
        added_kv_proj_dim: Optional[int] = None,
        rope_max_seq_len: int = 1024,
        pos_embed_seq_len: Optional[int] = None,
        qformer_config: Optional[dict] = None,
        video_former_config: Optional[dict] = None,
    ) -> None:
        if image_dim is not None or added_kv_proj_dim is not None:
            raise ValueError("SparseVideoNav is built on the T2V model: image_dim/added_kv_proj_dim must be None")
        # The parent builds its blocks from num_layers; ours replace them, so build none there and
        # put the real num_layers back into the config the parent's decorator overwrote.
        super().__init__(patch_size=patch_size, num_attention_heads=num_attention_heads,
                         attention_head_dim=attention_head_dim, in_channels=in_channels, out_channels=out_channels,
                         text_dim=text_dim, freq_dim=freq_dim, ffn_dim=ffn_dim, num_layers=0,
                         cross_attn_norm=cross_attn_norm, qk_norm=qk_norm, eps=eps, image_dim=None,
                         added_kv_proj_dim=None, rope_max_seq_len=rope_max_seq_len,
                         pos_embed_seq_len=pos_embed_seq_len)
        self.register_to_config(num_layers=num_layers)

        qformer = QFormerConfig(**(qformer_config or {}))
        video_former = VideoFormerConfig(**(video_former_config or {}))
        if video_former.input_dim != qformer.dim:
            raise ValueError(f"video_former.input_dim ({video_former.input_dim}) must equal qformer.dim ({qformer.dim})")
        inner_dim = num_attention_heads * attention_head_dim
        history_dim = video_former.dim
        self.history_pre_proj = nn.Linear(in_channels, inner_dim)
        self.history_post_proj = nn.Linear(inner_dim, qformer.dim)
        self.qformer = QFormer(qformer)
        self.video_former = VideoFormer(video_former)
        self.blocks = nn.ModuleList([
            HistoryWanTransformerBlock(inner_dim, ffn_dim, num_attention_heads, qk_norm, cross_attn_norm, eps,
                                       history_dim)
            for _ in range(num_layers)])

    @property
    def history_slots(self) -> int:
        return self.video_former.config.num_slots

    def compress_history(self, history_latents: torch.Tensor, frame_mask: Optional[torch.Tensor],
                         text_embeds: torch.Tensor, text_mask: torch.Tensor) -> torch.Tensor:
        """History latents -> a fixed number of history tokens.

        history_latents: (B, 16, F, h, w) normalised VAE latents, oldest first (F latent frames = 4F frames).
        frame_mask: (B, F) bool, True for real frames (None = all real).
        text_embeds: (B, L, 4096) raw umT5 embeddings; text_mask (B, L) bool, True for real tokens.
        Returns (B, video_former.num_latents, video_former.dim), e.g. (B, 2560, 512).
        """
        batch, channels, frames, height, width = history_latents.shape
        tokens_per_frame = height * width
        slots = self.video_former.config.num_slots
        if self.qformer.config.num_latents != slots * tokens_per_frame:
            raise ValueError(f"Q-Former has {self.qformer.config.num_latents} latents but {slots} slots x "
                             f"{height}x{width} latent tokens = {slots * tokens_per_frame}: the model was built for "
                             f"another image size")
        features = history_latents.permute(0, 2, 3, 4, 1).reshape(batch, frames, tokens_per_frame, channels)
        features = self.history_post_proj(self.history_pre_proj(features.to(self.history_pre_proj.weight.dtype)))
        # frame_mask None stays None (all real frames: QFormer skips the mask, as it drops an all-true one), so
        # this also runs on meta tensors, whose mask checks cannot be answered (the bench counts FLOPs so)
        text_embeds = text_embeds.to(features.dtype)
        queries = self.qformer(features, frame_mask=frame_mask, language=text_embeds, language_mask=text_mask)
        queries = queries.reshape(batch, slots, tokens_per_frame, queries.shape[-1])
        return self.video_former(queries, language=text_embeds, language_mask=text_mask)

    def plan_context(self, encoder_hidden_states: torch.Tensor,
                     history_tokens: Optional[torch.Tensor] = None) -> PlanContext:
        """The per-plan context (section 1): text (B, 512, text_dim) zero-padded umT5 embeddings and history
        tokens (B, N, history_dim) or None -> the text projection and every block's cross-attention K/V."""
        text = self.condition_embedder.text_embedder(encoder_hidden_states)
        kv = [block.context_kv(text, history_tokens) for block in self.blocks]
        return PlanContext(text, [t for t, _ in kv], None if history_tokens is None else [h for _, h in kv])

    def forward(self, hidden_states: torch.Tensor, timestep: torch.Tensor, encoder_hidden_states: torch.Tensor,
                history_tokens: Optional[torch.Tensor] = None, return_dict: bool = False,
                context: Optional[PlanContext] = None, **unused) -> torch.Tensor:
        """Velocity prediction (diffusers flow convention: noise - data) for one sampler step.

        hidden_states: (B, 16, F, H, W) latents; timestep: (B,) on the 0..1000 scale;
        encoder_hidden_states: (B, 512, text_dim) zero-padded umT5 embeddings;
        history_tokens: (B, N, history_dim) or None (no history: the history attention is skipped).
        context: plan_context(encoder_hidden_states, history_tokens) computed once for the plan's steps
        (None: computed here; the same result). Returns (B, 16, F, H, W).
        """
        batch, _, frames, height, width = hidden_states.shape
        p_t, p_h, p_w = self.config.patch_size
        if context is None:
            context = self.plan_context(encoder_hidden_states, history_tokens)
        rotary_emb = self.rope(hidden_states)
        tokens = self.patch_embedding(hidden_states).flatten(2).transpose(1, 2).contiguous()
        # The time embedding only: the text projection is in the context (a zero-length raw text keeps the
        # call and its dtype handling diffusers' own).
        temb, timestep_proj, _, _ = self.condition_embedder(timestep, encoder_hidden_states[:, :0], None)
        timestep_proj = timestep_proj.unflatten(1, (6, -1))
        history_kv = context.history_kv or [None] * len(self.blocks)
        for block, text_kv, block_history in zip(self.blocks, context.text_kv, history_kv):
            tokens = block(tokens, text_kv, timestep_proj, rotary_emb, block_history)
        shift, scale = (self.scale_shift_table.to(temb.device) + temb.unsqueeze(1)).chunk(2, dim=1)
        tokens = (self.norm_out(tokens.float()) * (1 + scale) + shift).type_as(tokens)
        tokens = self.proj_out(tokens)
        tokens = tokens.reshape(batch, frames // p_t, height // p_h, width // p_w, p_t, p_h, p_w, -1)
        return tokens.permute(0, 7, 1, 4, 2, 5, 3, 6).flatten(6, 7).flatten(4, 5).flatten(2, 3)
