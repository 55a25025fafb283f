"""The JanusVLN prompt: Qwen chat template, the release's system message and task text, split for caching.

Facts (docs/janusvln.md; the release's evaluation code): a system message (the release's text,
typo included, since the model was trained on it), then one user turn holding every image in time order
followed by the task text; generation starts after the assistant header. Rendered by the tokenizer's chat
template (Qwen2-VL's), each image is `<|vision_start|><|image_pad|><|vision_end|>`; the processor then repeats
`<|image_pad|>` once per merged visual token.

For the semantic memory the rendered prompt is cut at the special tokens into
    prefix  = system turn + user header           (the same every step: cached once)
    block   = <|vision_start|> image_pad * N <|vision_end|>   (one per frame: cached per frame)
    suffix  = task text + <|im_end|> + assistant header      (per step, after the cached frames)
Cutting at special tokens gives the same ids as tokenizing the whole prompt (special tokens are split first).
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional, Sequence

SYSTEM_PROMPT = ("You are a visual language navigation model, and your should go to the locations to complete the "
                 "given task. Compare the observation and instruction to infer your current progress, and then select "
                 "the correct direction from the candidates to go to the target location and finish the task.")
TASK_TEMPLATE = ("These images are your historical observations and your current observation.\n Your task is to "
                 "{instruction} \n You should take one of the following actions:\n MOVE_FORWARD\n TURN_LEFT\n "
                 "TURN_RIGHT\n STOP.")

VISION_START, VISION_END, IMAGE_PAD, VIDEO_PAD = "<|vision_start|>", "<|vision_end|>", "<|image_pad|>", "<|video_pad|>"
IM_START, IM_END, END_OF_TEXT = "<|im_start|>", "<|im_end|>", "<|endoftext|>"
IMAGE_BLOCK = VISION_START + IMAGE_PAD + VISION_END
CHAT_TEMPLATE_FILES = ("chat_template.jinja", "chat_template.json")

# Qwen2-VL / Qwen2.5-VL's published chat template (needed to build the tiny tokenizer offline; real checkpoints
# bring their own, which is what is used for them).
QWEN2_VL_CHAT_TEMPLATE = (
    "{% set image_count = namespace(value=0) %}{% set video_count = namespace(value=0) %}"
    "{% for message in messages %}{% if loop.first and message['role'] != 'system' %}<|im_start|>system\n"
    "You are a helpful assistant.<|im_end|>\n{% endif %}<|im_start|>{{ message['role'] }}\n"
    "{% if message['content'] is string %}{{ message['content'] }}<|im_end|>\n{% else %}"
    "{% for content in message['content'] %}"
    "{% if content['type'] == 'image' or 'image' in content or 'image_url' in content %}"
    "{% set image_count.value = image_count.value + 1 %}"
    "{% if add_vision_id %}Picture {{ image_count.value }}: {% endif %}<|vision_start|><|image_pad|><|vision_end|>"
    "{% elif content['type'] == 'video' or 'video' in content %}{% set video_count.value = video_count.value + 1 %}"
    "{% if add_vision_id %}Video {{ video_count.value }}: {% endif %}<|vision_start|><|video_pad|><|vision_end|>"
    "{% elif 'text' in content %}{{ content['text'] }}{% endif %}{% endfor %}<|im_end|>\n{% endif %}{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}")


class PromptError(ValueError):
    """The tokenizer or its chat template cannot build the JanusVLN prompt."""


def task_text(instruction: str) -> str:
    return TASK_TEMPLATE.format(instruction=instruction)


def messages(instruction: str, images: int) -> list[dict]:
    """The release's chat messages for `images` images (placeholders) and an instruction."""
    content = [{"type": "image", "image": f"frame-{i}"} for i in range(images)]
    return [{"role": "system", "content": SYSTEM_PROMPT},
            {"role": "user", "content": content + [{"type": "text", "text": task_text(instruction)}]}]


def find_chat_template(tokenizer, folder: Optional[Path]) -> str:
    """The tokenizer's chat template, else the processor's (chat_template.jinja / chat_template.json)."""
    template = getattr(tokenizer, "chat_template", None)
    if isinstance(template, str) and template:
        return template
    if folder is not None:
        jinja, as_json = (Path(folder) / name for name in CHAT_TEMPLATE_FILES)
        if jinja.is_file():
            return jinja.read_text(encoding="utf-8")
        if as_json.is_file():
            value = json.loads(as_json.read_text(encoding="utf-8")).get("chat_template")
            if isinstance(value, str) and value:
                return value
    raise PromptError(f"no chat template: the tokenizer has none and {folder} has neither "
                      f"{' nor '.join(CHAT_TEMPLATE_FILES)}")


@dataclass
class PromptLayout:
    """Token ids of the prompt pieces; ``ids(instruction, tokens_per_image)`` for the whole prompt."""

    tokenizer: object
    chat_template: str
    vision_start_id: int
    vision_end_id: int
    image_token_id: int
    prefix_ids: list[int]
    eos_ids: tuple[int, ...]
    _suffixes: dict = field(default_factory=dict, repr=False)

    @classmethod
    def build(cls, tokenizer, chat_template: str, image_token_id: int, vision_start_id: int, vision_end_id: int,
              eos_ids: Sequence[int] = ()) -> "PromptLayout":
        for token, expected in ((IMAGE_PAD, image_token_id), (VISION_START, vision_start_id),
                                (VISION_END, vision_end_id)):
            actual = tokenizer.convert_tokens_to_ids(token)
            if actual != expected:
                raise PromptError(f"tokenizer id of {token} is {actual}, the model config says {expected}")
        prefix, _ = cls._split(tokenizer, chat_template, "x")
        ids = set(int(i) for i in eos_ids)
        for token in (IM_END, END_OF_TEXT):
            token_id = tokenizer.convert_tokens_to_ids(token)
            if isinstance(token_id, int) and token_id != tokenizer.unk_token_id:
                ids.add(token_id)
        if tokenizer.eos_token_id is not None:
            ids.add(int(tokenizer.eos_token_id))
        layout = cls(tokenizer, chat_template, vision_start_id, vision_end_id, image_token_id,
                     cls._encode(tokenizer, prefix), tuple(sorted(ids)))
        return layout

    @staticmethod
    def _render(tokenizer, chat_template: str, instruction: str, images: int) -> str:
        return tokenizer.apply_chat_template(messages(instruction, images), chat_template=chat_template,
                                             tokenize=False, add_generation_prompt=True)

    @classmethod
    def _split(cls, tokenizer, chat_template: str, instruction: str) -> tuple[str, str]:
        one = cls._render(tokenizer, chat_template, instruction, 1)
        if one.count(IMAGE_BLOCK) != 1:
            raise PromptError(f"the chat template does not render an image as {IMAGE_BLOCK!r}: {one!r}")
        prefix, suffix = one.split(IMAGE_BLOCK)
        three = cls._render(tokenizer, chat_template, instruction, 3)
        if three != prefix + IMAGE_BLOCK * 3 + suffix:
            raise PromptError("the chat template puts text between images; the cached prompt layout needs "
                              "images rendered back to back")
        return prefix, suffix

    @staticmethod
    def _encode(tokenizer, text: str) -> list[int]:
        return list(tokenizer(text, add_special_tokens=False)["input_ids"])

    def suffix_ids(self, instruction: str) -> list[int]:
        """Task text + end of turn + assistant header for this instruction (rendered once per instruction)."""
        if instruction not in self._suffixes:
            if len(self._suffixes) >= 8:
                self._suffixes.clear()
            suffix = self._split(self.tokenizer, self.chat_template, instruction)[1]
            self._suffixes[instruction] = self._encode(self.tokenizer, suffix)
        return list(self._suffixes[instruction])

    def block_ids(self, image_tokens: int) -> list[int]:
        return [self.vision_start_id] + [self.image_token_id] * image_tokens + [self.vision_end_id]

    def ids(self, instruction: str, tokens_per_image: Sequence[int]) -> list[int]:
        """The whole prompt (as the processor would expand it) for images of these merged-token counts."""
        ids = list(self.prefix_ids)
        for count in tokens_per_image:
            ids += self.block_ids(count)
        return ids + self.suffix_ids(instruction)

    def text(self, instruction: str, images: int) -> str:
        return self._render(self.tokenizer, self.chat_template, instruction, images)

    def decode(self, ids: Sequence[int]) -> str:
        return self.tokenizer.decode(list(ids), skip_special_tokens=True, clean_up_tokenization_spaces=False)


# -- tiny offline tokenizer ------------------------------------------------------------------------

_TINY_CORPUS = (
    SYSTEM_PROMPT,
    task_text("walk forward and stop by the wooden door"),
    task_text("turn left at the sofa and go to the kitchen"),
    "MOVE_FORWARD", "TURN_LEFT", "TURN_RIGHT", "STOP", "MOVE_FORWARD\nTURN_LEFT\nTURN_RIGHT\nSTOP",
    "go down the hallway and turn right at the end, then stop in front of the plant next to the sofa.",
    "Walk past the table, go up the stairs and wait by the white door on your left.",
    "system\nuser\nassistant\n",
)
TINY_SPECIAL_TOKENS = (END_OF_TEXT, IM_START, IM_END, VISION_START, VISION_END, IMAGE_PAD, VIDEO_PAD)


def make_tiny_tokenizer(folder: Path, vocab_size: int = 600) -> Path:
    """Train a tiny byte-level BPE with Qwen2's pre-tokenizer and special tokens offline; save as a Qwen2
    tokenizer folder with the Qwen2-VL chat template. Loadable with AutoTokenizer like the real one."""
    from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import Qwen2Tokenizer
    from transformers.models.qwen2.tokenization_qwen2 import PRETOKENIZE_REGEX

    bpe = Tokenizer(models.BPE())
    bpe.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Split(Regex(PRETOKENIZE_REGEX), behavior="isolated", invert=False),
        pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)])
    bpe.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=[END_OF_TEXT], show_progress=False,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    bpe.train_from_iterator(list(_TINY_CORPUS) * 8, trainer=trainer)
    model = json.loads(bpe.to_str())["model"]
    merges = [tuple(m.split(" ")) if isinstance(m, str) else tuple(m) for m in model["merges"]]
    tokenizer = Qwen2Tokenizer(vocab=model["vocab"], merges=merges, eos_token=IM_END, pad_token=END_OF_TEXT,
                               unk_token=None, errors="replace", model_max_length=32768)
    tokenizer.add_special_tokens({"additional_special_tokens": list(TINY_SPECIAL_TOKENS[1:])})
    tokenizer.chat_template = QWEN2_VL_CHAT_TEMPLATE
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    tokenizer.save_pretrained(str(folder))
    return folder


def load_tokenizer(folder: Path):
    from transformers import AutoTokenizer

    folder = Path(folder)
    if not any((folder / name).is_file() for name in ("tokenizer.json", "vocab.json", "tokenizer_config.json")):
        raise PromptError(f"no tokenizer in {folder}: expected tokenizer.json (or vocab.json + merges.txt) "
                          f"and tokenizer_config.json")
    return AutoTokenizer.from_pretrained(str(folder), local_files_only=True)
