"""Recorded frame sources (video file, folder of images) and a video writer helper."""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Iterable

import cv2
import numpy as np

from .base import Frame, FrameSource, SourceError

IMAGE_SUFFIXES = ('.png', '.jpg', '.jpeg')


class VideoFileSource(FrameSource):
    """Frames of a video file via OpenCV, as (H, W, 3) uint8 RGB with stamp None.

    Args:
        path: video file (anything OpenCV's FFmpeg backend reads: mp4, avi, mkv, ...).
        loop: restart from the first frame at end of file instead of returning None.
        fps: override for nominal_fps, needed only when the file reports no frame rate.

    width/height/nominal_fps come from the file and are set by open().
    """

    def __init__(self, path: str | os.PathLike, loop: bool = False, fps: float | None = None):
        super().__init__()
        self.path, self.loop, self._fps_override = Path(path), bool(loop), fps
        if fps is not None and not fps > 0:
            raise ValueError(f'fps override must be > 0, got {fps}')
        self._cap: cv2.VideoCapture | None = None
        self._index = 0

    def _open_capture(self) -> cv2.VideoCapture:
        cap = cv2.VideoCapture(str(self.path))
        if not cap.isOpened():
            cap.release()
            raise SourceError(f'cannot open video file {self.path} (not a video, or an unsupported codec)')
        return cap

    def open(self) -> None:
        if not self.path.is_file():
            raise SourceError(f'video file not found: {self.path}')
        self.close()
        cap = self._open_capture()
        fps = cap.get(cv2.CAP_PROP_FPS)
        if self._fps_override is not None:
            fps = self._fps_override
        elif not (fps > 0 and np.isfinite(fps)):
            cap.release()
            raise SourceError(f'video file {self.path} reports no frame rate; pass fps= explicitly')
        self.width = int(cap.get(cv2.CAP_PROP_FRAME_WIDTH))
        self.height = int(cap.get(cv2.CAP_PROP_FRAME_HEIGHT))
        self.nominal_fps = float(fps)
        self._cap, self._index = cap, 0

    @property
    def frame_count(self) -> int:
        """Frame count from the container header (may be approximate; 0 if unknown or not open)."""
        return max(0, int(self._cap.get(cv2.CAP_PROP_FRAME_COUNT))) if self._cap is not None else 0

    def read(self) -> Frame | None:
        if self._cap is None:
            raise SourceError(f'VideoFileSource({self.path}).read() called before open()')
        ok, bgr = self._cap.read()
        if not ok and self.loop:
            # Reopen rather than seek: seeking to frame 0 is unreliable for some codecs.
            self._cap.release()
            self._cap = self._open_capture()
            ok, bgr = self._cap.read()
            if not ok:
                raise SourceError(f'video file {self.path} has no decodable frames; cannot loop')
        if not ok:
            return None
        frame = Frame(cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB), None, self._index)
        self._index += 1
        return frame

    def close(self) -> None:
        if self._cap is not None:
            self._cap.release()
            self._cap = None


def _natural_key(path: Path):
    """Sort key so frame2.png comes before frame10.png."""
    return [int(tok) if tok.isdigit() else tok.lower() for tok in re.split(r'(\d+)', path.name)]


class ImageFolderSource(FrameSource):
    """Images (*.png, *.jpg, *.jpeg, any case) of a folder in natural name order, as RGB frames.

    All images must have the size of the first one.  stamp is None.

    Args:
        path: folder of images (not searched recursively).
        fps: nominal frame rate in Hz to play the images at (> 0).
        loop: restart from the first image after the last instead of returning None.
    """

    def __init__(self, path: str | os.PathLike, fps: float, loop: bool = False):
        if not fps > 0:
            raise ValueError(f'image folder fps must be > 0, got {fps}')
        super().__init__(nominal_fps=fps)
        self.path, self.loop = Path(path), bool(loop)
        self.files: list[Path] = []
        self._pos, self._index, self._opened = 0, 0, False

    def open(self) -> None:
        if not self.path.is_dir():
            raise SourceError(f'image folder not found: {self.path}')
        files = sorted((p for p in self.path.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file()),
                       key=_natural_key)
        if not files:
            raise SourceError(f'image folder {self.path} has no {"/".join(IMAGE_SUFFIXES)} files')
        self.files, self._pos, self._index, self._opened = files, 0, 0, True
        first = self._load(files[0])
        self.height, self.width = first.shape[:2]

    def _load(self, file: Path) -> np.ndarray:
        bgr = cv2.imread(str(file), cv2.IMREAD_COLOR)
        if bgr is None:
            raise SourceError(f'cannot read image {file}')
        return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)

    def read(self) -> Frame | None:
        if not self._opened:
            raise SourceError(f'ImageFolderSource({self.path}).read() called before open()')
        if self._pos >= len(self.files):
            if not self.loop:
                return None
            self._pos = 0
        file = self.files[self._pos]
        rgb = self._load(file)
        if rgb.shape[:2] != (self.height, self.width):
            raise SourceError(f'image {file} is {rgb.shape[1]}x{rgb.shape[0]} but the folder started '
                              f'with {self.width}x{self.height} images; all must match')
        frame = Frame(rgb, None, self._index)
        self._pos, self._index = self._pos + 1, self._index + 1
        return frame

    def close(self) -> None:
        self._opened = False


def write_video(path: str | os.PathLike, frames: Iterable, fps: float) -> int:
    """Write RGB frames ((H, W, 3) uint8 arrays or Frame objects, all one size) to an mp4v video.

    Returns the number of frames written.  Raises SourceError if the writer
    cannot be opened, ValueError for bad frames, fps or an empty iterable.
    """
    if not fps > 0:
        raise ValueError(f'video fps must be > 0, got {fps}')
    path = Path(path)
    if not path.parent.is_dir():
        raise SourceError(f'cannot write video {path}: folder {path.parent} does not exist')
    writer, size, count = None, None, 0
    try:
        for item in frames:
            rgb = item.rgb if isinstance(item, Frame) else item
            if not isinstance(rgb, np.ndarray) or rgb.dtype != np.uint8 or rgb.ndim != 3 or rgb.shape[2] != 3:
                desc = f'{rgb.shape} {rgb.dtype}' if isinstance(rgb, np.ndarray) else type(rgb).__name__
                raise ValueError(f'frame {count} must be (H, W, 3) uint8 RGB, got {desc}')
            if writer is None:  # size is only known from the first frame
                size = (rgb.shape[1], rgb.shape[0])
                writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*'mp4v'), float(fps), size)
                if not writer.isOpened():
                    raise SourceError(f'cannot open video writer for {path} (mp4v, {size[0]}x{size[1]} @ {fps} fps)')
            elif (rgb.shape[1], rgb.shape[0]) != size:
                raise ValueError(f'frame {count} is {rgb.shape[1]}x{rgb.shape[0]}, expected {size[0]}x{size[1]} '
                                 f'like the first frame')
            writer.write(cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
            count += 1
    finally:
        if writer is not None:
            writer.release()
    if count == 0:
        raise ValueError(f'no frames given to write to {path}')
    return count
