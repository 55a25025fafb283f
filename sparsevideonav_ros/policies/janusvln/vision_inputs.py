"""Camera frame -> the two visual inputs of one JanusVLN step.

Facts (docs/janusvln.md; the release loads frames with VGGT's image loader in its "crop" mode):
  * the RGB frame is resized (PIL bicubic) to `width` (644) wide and round(h * width / w / 14) * 14 high
    (640 x 480 -> 644 x 490), values in [0, 1]; a frame that comes out taller than `width` (portrait) is
    centre-cropped to `width` rows, keeping rows (H' - width) // 2 .. + width (480 x 640 -> 644 x 854 ->
    rows 105..748); the aggregator gets this image;
  * Qwen gets the same image cropped at the bottom/right to whole 2 x 2 patch groups (644 x 476 -> 34 x 46
    patches -> 391 merged tokens), normalised with the processor's mean/std (CLIP's by default) and cut
    into (grid_t * rows * cols, 3 * 2 * 14 * 14) patches in Qwen2-VL's order (the still image repeated over
    the temporal patch of 2). The release runs the processor on the already-sized image; ours does the same
    arithmetic without its (size-preserving) resize.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)


@dataclass(frozen=True)
class ImageProcessing:
    """What the checkpoint's preprocessor_config.json says (Qwen2.5-VL defaults) plus the model input width."""

    width: int = 644
    patch_size: int = 14
    merge_size: int = 2
    temporal_patch_size: int = 2
    image_mean: tuple = CLIP_MEAN
    image_std: tuple = CLIP_STD

    @classmethod
    def from_preprocessor_config(cls, values: dict, width: int) -> "ImageProcessing":
        return cls(width=width, patch_size=int(values.get("patch_size", 14)),
                   merge_size=int(values.get("merge_size", 2)),
                   temporal_patch_size=int(values.get("temporal_patch_size", 2)),
                   image_mean=tuple(float(v) for v in values.get("image_mean", CLIP_MEAN)),
                   image_std=tuple(float(v) for v in values.get("image_std", CLIP_STD)))


def resized_shape(height: int, width: int, target_width: int, patch: int = 14) -> tuple[int, int]:
    """(height, width) of the model image: `target_width` wide, aspect kept to whole patches (VGGT's rule)."""
    new_height = round(height * (target_width / width) / patch) * patch
    if new_height < patch:
        raise ValueError(f"a {width}x{height} frame is too flat for a {target_width}-pixel-wide model input")
    return int(new_height), int(target_width)


def crop_rows(height: int, target_width: int) -> slice:
    """Rows of a resized frame the model keeps: all of them, or the centre `target_width` rows of a frame
    taller than it is wide after the resize (the release's loader; the start rounds down)."""
    if height <= target_width:
        return slice(0, height)
    start = (height - target_width) // 2
    return slice(start, start + target_width)


def resize_frame(rgb: np.ndarray, target_width: int, patch: int = 14) -> torch.Tensor:
    """(H, W, 3) uint8 -> (3, min(H', W'), W') uint8: PIL bicubic to resized_shape, then the centre crop of a
    tall frame (crop_rows), as in the release (which then divides by 255: kept as uint8 here, a quarter of
    the memory of a stored float frame, with nothing lost)."""
    from PIL import Image

    height, width = resized_shape(rgb.shape[0], rgb.shape[1], target_width, patch)
    image = Image.fromarray(np.ascontiguousarray(rgb)).resize((width, height), Image.Resampling.BICUBIC)
    array = np.array(image, dtype=np.uint8)[crop_rows(height, target_width)]
    return torch.from_numpy(array).permute(2, 0, 1).contiguous()


def qwen_patches(image: torch.Tensor, processing: ImageProcessing) -> tuple[torch.Tensor, torch.Tensor]:
    """(3, H, W) in [0, 1] -> pixel_values (rows*cols, 3*T*P*P) float32 and grid_thw (1, 3), after the crop
    to whole merge groups."""
    p, m, t = processing.patch_size, processing.merge_size, processing.temporal_patch_size
    rows, cols = image.shape[1] // p // m * m, image.shape[2] // p // m * m
    if rows == 0 or cols == 0:
        raise ValueError(f"image {tuple(image.shape)} is smaller than one {m}x{m} group of {p}-pixel patches")
    x = image[:, :rows * p, :cols * p].float()
    mean = torch.tensor(processing.image_mean).view(3, 1, 1)
    std = torch.tensor(processing.image_std).view(3, 1, 1)
    x = ((x - mean) / std).unsqueeze(0).repeat(t, 1, 1, 1)  # (T, C, H, W)
    x = x.reshape(1, t, 3, rows // m, m, p, cols // m, m, p).permute(0, 3, 6, 4, 7, 2, 1, 5, 8)
    return x.reshape(rows * cols, 3 * t * p * p), torch.tensor([[1, rows, cols]])


@dataclass
class FrameInputs:
    """One preprocessed frame: the resized image (uint8, what a stored frame keeps) and the model inputs
    derived from it on use: the aggregator image in [0, 1] and Qwen's patches."""

    image: torch.Tensor  # (3, H, W) uint8
    processing: ImageProcessing

    @classmethod
    def from_rgb(cls, rgb: np.ndarray, processing: ImageProcessing) -> "FrameInputs":
        return cls(resize_frame(rgb, processing.width, processing.patch_size), processing)

    @property
    def nbytes(self) -> int:
        return self.image.numel()

    @property
    def vggt_image(self) -> torch.Tensor:
        return self.image.float() / 255.0

    def qwen_inputs(self) -> tuple[torch.Tensor, torch.Tensor]:
        """pixel_values (rows*cols, 3*T*P*P), grid_thw (1, 3)."""
        return qwen_patches(self.vggt_image, self.processing)

    @property
    def grid_thw(self) -> torch.Tensor:
        p, m = self.processing.patch_size, self.processing.merge_size
        return torch.tensor([[1, self.image.shape[1] // p // m * m, self.image.shape[2] // p // m * m]])
