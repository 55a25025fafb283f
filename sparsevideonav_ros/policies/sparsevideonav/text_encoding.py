"""Instruction text -> umT5 embeddings, once per instruction.

Facts (from the authors' release, OpenDriveLab/SparseVideoNav, and the Wan2.1 code it builds on):
  * Text encoder: umT5-xxl encoder (d_model = text_dim 4096), at most 512 tokens, tokenizer google/umt5-xxl
    with its special tokens (a trailing </s>); the release cleans the text first (ftfy + HTML unescape,
    whitespace collapsed).
  * The release keeps the embeddings of the valid tokens and zero-pads them to 512 for the backbone (its text
    cross-attention attends to all 512 positions, no mask); the Q-Former / Video-Former FiLM pools over the
    valid tokens only, so ``encode`` returns the validity mask with the padded embeddings.
  * The valid tokens are encoded without padding. The release pads to 512 and masks the padding in every
    attention, which gives the same values for the valid tokens (masked keys get zero weight) at 512
    tokens' cost; on CPU that is the difference between seconds and minutes for umT5-xxl.

Checkpoints (local files only):
  * the diffusers-format Wan2.1 folder: ``text_encoder/`` (transformers ``UMT5EncoderModel``: config.json +
    model*.safetensors) and ``tokenizer/`` (tokenizer.json / spiece.model + tokenizer_config.json);
  * the authors' ``models_t5_umt5-xxl-enc-bf16.pth`` (Wan's own T5 naming): mapped key by key onto
    ``UMT5EncoderModel`` with the umT5-xxl config (``UMT5_XXL_CONFIG``), every key checked. Same weights as
    the diffusers ``text_encoder/``.
"""
from __future__ import annotations

import html
import json
import re
import warnings
from collections import OrderedDict
from pathlib import Path
from typing import Any, Mapping, Union

import torch

TEXT_LEN = 512
WAN_T5_FILE = "models_t5_umt5-xxl-enc-bf16.pth"
MODEL_WEIGHT_FILES = ("model.safetensors", "model.safetensors.index.json", "pytorch_model.bin",
                      "pytorch_model.bin.index.json")
TOKENIZER_FILES = ("tokenizer.json", "spiece.model")
_CACHE_SIZE = 8

# google/umt5-xxl encoder (as in the Wan2.1 release: vocab 256384, dim 4096, ffn 10240, 64 heads, 24 layers,
# 32 relative-position buckets per layer, gated tanh-GELU feed-forward).
UMT5_XXL_CONFIG: dict[str, Any] = dict(
    vocab_size=256384,
    d_model=4096,
    d_kv=64,
    d_ff=10240,
    num_layers=24,
    num_heads=64,
    relative_attention_num_buckets=32,
    relative_attention_max_distance=128,
    feed_forward_proj="gated-gelu",
    dropout_rate=0.1,
    layer_norm_epsilon=1e-6,
    pad_token_id=0,
    eos_token_id=1,
    decoder_start_token_id=0,
    tie_word_embeddings=False,
)


def clean_instruction(text: str) -> str:
    """The release's 'whitespace' cleaning: fix text (ftfy, when installed), HTML-unescape twice, collapse spaces."""
    if not isinstance(text, str):
        raise TypeError(f"instruction must be a str, got {type(text).__name__}")
    try:
        import ftfy  # optional; the release uses it to repair mojibake
        text = ftfy.fix_text(text)
    except ImportError:
        pass
    text = html.unescape(html.unescape(text))
    return re.sub(r"\s+", " ", text).strip()


# -- Wan T5 naming <-> transformers UMT5EncoderModel ------------------------------------------------

_WAN_BLOCK = re.compile(r"blocks\.(\d+)\.(.+)")
_WAN_TO_HF_BLOCK = {
    "norm1.weight": "layer.0.layer_norm.weight",
    "attn.q.weight": "layer.0.SelfAttention.q.weight",
    "attn.k.weight": "layer.0.SelfAttention.k.weight",
    "attn.v.weight": "layer.0.SelfAttention.v.weight",
    "attn.o.weight": "layer.0.SelfAttention.o.weight",
    "pos_embedding.embedding.weight": "layer.0.SelfAttention.relative_attention_bias.weight",
    "norm2.weight": "layer.1.layer_norm.weight",
    "ffn.gate.0.weight": "layer.1.DenseReluDense.wi_0.weight",  # GELU branch
    "ffn.fc1.weight": "layer.1.DenseReluDense.wi_1.weight",  # linear branch
    "ffn.fc2.weight": "layer.1.DenseReluDense.wo.weight",
}
_HF_TO_WAN_BLOCK = {v: k for k, v in _WAN_TO_HF_BLOCK.items()}


def wan_t5_to_umt5(state: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Wan's T5 encoder state dict (models_t5_umt5-xxl-enc-bf16.pth) -> UMT5EncoderModel state dict."""
    out: dict[str, torch.Tensor] = {}
    for key, value in state.items():
        if key == "token_embedding.weight":
            out["shared.weight"] = value
            out["encoder.embed_tokens.weight"] = value  # tied to `shared` in UMT5EncoderModel
        elif key == "norm.weight":
            out["encoder.final_layer_norm.weight"] = value
        else:
            match = _WAN_BLOCK.fullmatch(key)
            if not match or match.group(2) not in _WAN_TO_HF_BLOCK:
                raise KeyError(f"unexpected key {key!r} in a Wan T5 encoder checkpoint")
            out[f"encoder.block.{match.group(1)}.{_WAN_TO_HF_BLOCK[match.group(2)]}"] = value
    return out


def umt5_to_wan_t5(state: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """UMT5EncoderModel state dict -> Wan's T5 encoder naming (to write test fixtures in the release layout)."""
    out: dict[str, torch.Tensor] = {}
    for key, value in state.items():
        if key == "shared.weight":
            out["token_embedding.weight"] = value
        elif key == "encoder.embed_tokens.weight":
            continue  # tied copy of shared.weight
        elif key == "encoder.final_layer_norm.weight":
            out["norm.weight"] = value
        else:
            match = re.fullmatch(r"encoder\.block\.(\d+)\.(.+)", key)
            if not match or match.group(2) not in _HF_TO_WAN_BLOCK:
                raise KeyError(f"no Wan T5 name for {key!r}")
            out[f"blocks.{match.group(1)}.{_HF_TO_WAN_BLOCK[match.group(2)]}"] = value
    return out


def _umt5_config(config: Union[None, str, Path, Mapping[str, Any]]):
    from transformers import UMT5Config

    if config is None:
        return UMT5Config(**UMT5_XXL_CONFIG)
    if isinstance(config, Mapping):
        return UMT5Config(**dict(config))
    path = Path(config)
    if path.is_dir():
        path = path / "config.json"
    if not path.is_file():
        raise FileNotFoundError(f"umT5 config not found: expected {path}")
    return UMT5Config(**json.loads(path.read_text()))


def load_wan_t5_encoder(path: Union[str, Path], dtype: torch.dtype = torch.float32,
                        config: Union[None, str, Path, Mapping[str, Any]] = None):
    """Wan-format umT5 encoder checkpoint (.pth) -> UMT5EncoderModel (CPU, eval), every key checked."""
    from transformers import UMT5EncoderModel

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"umT5 encoder checkpoint not found: expected {path}")
    state = torch.load(str(path), map_location="cpu", weights_only=True, mmap=True)
    if not isinstance(state, Mapping):
        raise ValueError(f"{path} does not hold a state dict (Wan T5 encoder checkpoint expected)")
    converted = wan_t5_to_umt5(state)
    hf_config = _umt5_config(config)
    with torch.device("meta"):
        model = UMT5EncoderModel(hf_config)
    expected = model.state_dict()
    missing = sorted(set(expected) - set(converted))
    unexpected = sorted(set(converted) - set(expected))
    if missing or unexpected:
        raise ValueError(f"{path} does not match the umT5 config (d_model={hf_config.d_model}, "
                         f"num_layers={hf_config.num_layers}): missing {missing[:8]}, unexpected {unexpected[:8]}")
    for key, param in expected.items():
        if tuple(converted[key].shape) != tuple(param.shape):
            raise ValueError(f"{path}: {key} has shape {tuple(converted[key].shape)}, the config expects "
                             f"{tuple(param.shape)}")
    model.load_state_dict({k: v.to(dtype) for k, v in converted.items()}, strict=True, assign=True)
    model.tie_weights()
    leftover = [n for n, t in list(model.named_parameters()) + list(model.named_buffers()) if t.is_meta]
    if leftover:
        raise ValueError(f"{path}: no value for {leftover[:8]}")
    return model.eval()


# -- the encoder ----------------------------------------------------------------------------------

def _load_tokenizer(tokenizer_dir: Path):
    from transformers import AutoTokenizer, T5Tokenizer

    if not tokenizer_dir.is_dir():
        raise FileNotFoundError(f"tokenizer folder not found: {tokenizer_dir} (expected the google/umt5-xxl "
                                f"tokenizer: {' or '.join(TOKENIZER_FILES)} + tokenizer_config.json)")
    if not any((tokenizer_dir / name).is_file() for name in TOKENIZER_FILES):
        raise FileNotFoundError(f"tokenizer files missing in {tokenizer_dir}: expected "
                                f"{' or '.join(str(tokenizer_dir / n) for n in TOKENIZER_FILES)}")
    if (tokenizer_dir / "tokenizer_config.json").is_file():
        return AutoTokenizer.from_pretrained(str(tokenizer_dir), local_files_only=True)
    return T5Tokenizer.from_pretrained(str(tokenizer_dir), local_files_only=True)


def _load_text_encoder(path: Path, dtype: torch.dtype, config):
    from transformers import UMT5EncoderModel

    if not path.exists():
        raise FileNotFoundError(
            f"umT5 text encoder not found: {path} (expected a transformers folder with config.json + "
            f"model.safetensors, e.g. Wan2.1-T2V-1.3B-Diffusers/text_encoder, or Wan's {WAN_T5_FILE})")
    if path.is_file():
        return load_wan_t5_encoder(path, dtype, config)
    if not (path / "config.json").is_file():
        if (path / WAN_T5_FILE).is_file():
            return load_wan_t5_encoder(path / WAN_T5_FILE, dtype, config)
        raise FileNotFoundError(f"no umT5 text encoder in {path}: expected {path / 'config.json'} + "
                                f"{path / MODEL_WEIGHT_FILES[0]} (transformers folder) or {path / WAN_T5_FILE}")
    if not any((path / name).is_file() for name in MODEL_WEIGHT_FILES):
        raise FileNotFoundError(f"umT5 weights missing in {path}: expected {path / MODEL_WEIGHT_FILES[0]} "
                                f"(or {', '.join(MODEL_WEIGHT_FILES[1:])})")
    return UMT5EncoderModel.from_pretrained(str(path), dtype=dtype, local_files_only=True).eval()


class InstructionEncoder:
    """umT5 encoder + tokenizer; ``encode(text)`` -> (embeds (1, 512, D) float32 zero-padded, mask (1, 512) bool).

    Results are cached per cleaned instruction (the last few), so re-sending an instruction costs nothing,
    and stay available after ``offload(free=True)``. Outputs are CPU tensors; move them where needed.
    """

    def __init__(self, text_encoder, tokenizer, device: Union[str, torch.device] = "cpu",
                 text_len: int = TEXT_LEN, encode_device: Union[None, str, torch.device] = None) -> None:
        """device: where umT5 lives. encode_device: where it runs a new instruction (None = device); umT5 moves
        there for that one forward and back to ``device`` after (e.g. lives on the CPU, encodes on the GPU, and
        the GPU memory is free again between instructions)."""
        self.text_encoder = text_encoder.eval().requires_grad_(False).to(device)
        self.tokenizer = tokenizer
        self.device = torch.device(device)
        self.encode_device = torch.device(encode_device) if encode_device is not None else None
        self.text_len = int(text_len)
        self.text_dim = int(text_encoder.config.d_model)
        self._cache: OrderedDict[str, tuple[torch.Tensor, torch.Tensor]] = OrderedDict()

    @classmethod
    def from_pretrained(cls, text_encoder_dir: Union[str, Path], tokenizer_dir: Union[str, Path],
                        device: Union[str, torch.device] = "cpu", dtype: torch.dtype = torch.float32,
                        config: Union[None, str, Path, Mapping[str, Any]] = None,
                        encode_device: Union[None, str, torch.device] = None) -> "InstructionEncoder":
        """Load from local files only.

        text_encoder_dir: a transformers UMT5EncoderModel folder (Wan2.1-T2V-1.3B-Diffusers/text_encoder), or
        Wan's ``models_t5_umt5-xxl-enc-bf16.pth`` (or a folder holding it), mapped onto UMT5EncoderModel with
        ``config`` (default: umT5-xxl). tokenizer_dir: the google/umt5-xxl tokenizer folder
        (Wan2.1-T2V-1.3B-Diffusers/tokenizer, or <release>/google/umt5-xxl).
        umT5-xxl is 5.7 B parameters: about 23 GB in float32, 11.4 GB in bfloat16 (what the release uses).
        """
        tokenizer = _load_tokenizer(Path(tokenizer_dir))
        model = _load_text_encoder(Path(text_encoder_dir), dtype, config)
        return cls(model, tokenizer, device=device, encode_device=encode_device)

    @property
    def hidden_size(self) -> int:
        """Embedding width D (4096 for umT5-xxl); same as ``text_dim``."""
        return self.text_dim

    def save_pretrained(self, text_encoder_dir: Union[str, Path], tokenizer_dir: Union[str, Path]) -> None:
        """Write the encoder (transformers folder) and tokenizer so ``from_pretrained`` loads them back."""
        if self.text_encoder is None:
            raise RuntimeError("InstructionEncoder was freed by offload(free=True); nothing to save")
        self.text_encoder.save_pretrained(str(text_encoder_dir))
        self.tokenizer.save_pretrained(str(tokenizer_dir))

    def tokenize(self, text: str) -> torch.Tensor:
        """Cleaned instruction -> (1, L) token ids ending in </s>; L <= text_len (longer is cut, with a warning)."""
        full = self.tokenizer(text, add_special_tokens=True)["input_ids"]
        if len(full) > self.text_len:
            warnings.warn(f"instruction has {len(full)} tokens; only the first {self.text_len} are used")
        ids = self.tokenizer(text, add_special_tokens=True, truncation=True, max_length=self.text_len,
                             return_tensors="pt")["input_ids"]
        return ids

    @torch.no_grad()
    def encode(self, text: str) -> tuple[torch.Tensor, torch.Tensor]:
        """Instruction -> (embeds (1, text_len, D) float32, zero after the valid tokens; mask (1, text_len) bool)."""
        cleaned = clean_instruction(text)
        if not cleaned:
            raise ValueError("instruction is empty (nothing left after whitespace cleaning)")
        if cleaned in self._cache:
            self._cache.move_to_end(cleaned)
            embeds, mask = self._cache[cleaned]
            return embeds.clone(), mask.clone()
        if self.text_encoder is None:
            raise RuntimeError("InstructionEncoder was freed by offload(free=True); only cached instructions "
                               "can be encoded, load it again for a new one")
        run_on = self.encode_device or self.device
        ids = self.tokenize(cleaned).to(run_on)
        count = int(ids.shape[1])
        if run_on != self.device:
            self.text_encoder.to(run_on)
        try:
            hidden = self.text_encoder(input_ids=ids, attention_mask=torch.ones_like(ids)).last_hidden_state.cpu()
        finally:
            if run_on != self.device:  # back where it lives, its accelerator memory released
                self.text_encoder.to(self.device)
                if run_on.type == "cuda":
                    torch.cuda.empty_cache()
        embeds = torch.zeros(1, self.text_len, self.text_dim, dtype=torch.float32)
        embeds[:, :count] = hidden.float().cpu()
        mask = torch.zeros(1, self.text_len, dtype=torch.bool)
        mask[:, :count] = True
        self._cache[cleaned] = (embeds, mask)
        while len(self._cache) > _CACHE_SIZE:
            self._cache.popitem(last=False)
        return embeds.clone(), mask.clone()

    def to(self, device: Union[str, torch.device]) -> "InstructionEncoder":
        """Move the text encoder (e.g. back to the GPU for a new instruction)."""
        if self.text_encoder is None:
            raise RuntimeError("InstructionEncoder was freed by offload(free=True)")
        self.device = torch.device(device)
        self.text_encoder.to(self.device)
        return self

    def offload(self, free: bool = False) -> None:
        """Move the encoder to CPU (frees accelerator memory), or drop it entirely with free=True.

        After free=True, cached instructions still encode; a new instruction raises RuntimeError.
        """
        if self.text_encoder is not None:
            self.text_encoder.to("cpu")
        self.device = torch.device("cpu")
        if free:
            self.text_encoder = None
        if torch.cuda.is_available():
            torch.cuda.empty_cache()


# -- tiny offline fixtures ------------------------------------------------------------------------

_TINY_CORPUS = (
    "go to the red chair and stop",
    "turn left at the door then walk forward",
    "walk past the table and stop near the window",
    "find the kitchen and wait there",
    "move towards the person in the blue shirt",
    "go down the hallway and turn right at the end",
    "stop in front of the plant next to the sofa",
    "Walk straight ahead, then turn around.",
    "Go up to the white door on your left and stop.",
    "follow the corridor until you see the stairs",
)


def make_tiny_text_encoder(folder: Union[str, Path], d_model: int = 32, num_layers: int = 2, num_heads: int = 4,
                           d_ff: int = 64, vocab_size: int = 128, seed: int = 0) -> tuple[Path, Path]:
    """Write a tiny random umT5 encoder and a real (trained, tiny) Unigram tokenizer under ``folder``.

    Returns (text_encoder_dir, tokenizer_dir) = (folder/text_encoder, folder/tokenizer), loadable with
    ``InstructionEncoder.from_pretrained`` exactly like the real folders. The tokenizer is a T5-style
    SentencePiece Unigram model (ids: 0 <pad>, 1 </s>, 2 <unk>; Metaspace; trailing </s>) trained offline
    with the ``tokenizers`` library on a few navigation sentences.
    """
    from tokenizers import Tokenizer, models, pre_tokenizers, trainers
    from transformers import T5Tokenizer, UMT5Config, UMT5EncoderModel

    folder = Path(folder)
    text_encoder_dir, tokenizer_dir = folder / "text_encoder", folder / "tokenizer"

    unigram = Tokenizer(models.Unigram())
    unigram.pre_tokenizer = pre_tokenizers.Metaspace(replacement="\u2581", prepend_scheme="always")
    trainer = trainers.UnigramTrainer(vocab_size=vocab_size, special_tokens=["<pad>", "</s>", "<unk>"],
                                      unk_token="<unk>", show_progress=False)
    unigram.train_from_iterator(list(_TINY_CORPUS) * 4, trainer=trainer)
    vocab = [(piece, float(score)) for piece, score in json.loads(unigram.to_str())["model"]["vocab"]]
    tokenizer = T5Tokenizer(vocab=vocab, extra_ids=0)
    tokenizer.model_max_length = TEXT_LEN
    tokenizer.save_pretrained(str(tokenizer_dir))

    config = UMT5Config(vocab_size=len(tokenizer), d_model=d_model, d_kv=d_model // num_heads, d_ff=d_ff,
                        num_layers=num_layers, num_decoder_layers=num_layers, num_heads=num_heads,
                        relative_attention_num_buckets=32, relative_attention_max_distance=128,
                        feed_forward_proj="gated-gelu", pad_token_id=0, eos_token_id=1,
                        decoder_start_token_id=0, tie_word_embeddings=False)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = UMT5EncoderModel(config).eval()
    model.save_pretrained(str(text_encoder_dir))
    return text_encoder_dir, tokenizer_dir
