"""Camera frame source interface shared by synthetic, file and (later) device sources."""

from __future__ import annotations

import abc
from dataclasses import dataclass
from typing import Iterator

import numpy as np


class SourceError(RuntimeError):
    """A frame source cannot be opened or read (missing file, bad codec, ...)."""


@dataclass(frozen=True)
class Frame:
    """One camera frame.

    Attributes:
        rgb: (H, W, 3) uint8 RGB image.
        stamp: capture time in seconds (epoch/ROS time) when the source knows
            it, None if the node should stamp the frame on receipt.
        index: 0-based frame counter since open(); keeps increasing across loops.
        depth: optional (H, W) uint16 depth in millimetres aligned to rgb (0 = no reading).
    """

    rgb: np.ndarray
    stamp: float | None
    index: int
    depth: np.ndarray | None = None

    def __post_init__(self):
        rgb = self.rgb
        if not isinstance(rgb, np.ndarray) or rgb.dtype != np.uint8 or rgb.ndim != 3 or rgb.shape[2] != 3:
            desc = f'{rgb.shape} {rgb.dtype}' if isinstance(rgb, np.ndarray) else type(rgb).__name__
            raise ValueError(f'Frame.rgb must be an (H, W, 3) uint8 array, got {desc}')
        depth = self.depth
        if depth is not None and not (isinstance(depth, np.ndarray) and depth.dtype == np.uint16
                                      and depth.shape == rgb.shape[:2]):
            desc = f'{depth.shape} {depth.dtype}' if isinstance(depth, np.ndarray) else type(depth).__name__
            raise ValueError(f'Frame.depth must be an {rgb.shape[:2]} uint16 array like rgb, got {desc}')


class FrameSource(abc.ABC):
    """A stream of RGB frames.

    Use as ``with source: frame = source.read()`` or ``for frame in source``.
    read() does not pace itself: live sources block until the next frame,
    file/synthetic sources return immediately and the caller paces them at
    `nominal_fps`.

    Attributes:
        width, height: frame size in pixels (0 until known, e.g. before a file is opened).
        nominal_fps: intended frame rate in Hz (0.0 if unknown).
    """

    # Pinhole intrinsics (fx, fy, cx, cy) in pixels when the device reports them (RealSense), else None.
    intrinsics: tuple[float, float, float, float] | None = None

    def __init__(self, width: int = 0, height: int = 0, nominal_fps: float = 0.0):
        self.width, self.height, self.nominal_fps = int(width), int(height), float(nominal_fps)

    @abc.abstractmethod
    def open(self) -> None:
        """Acquire the underlying resource; raises SourceError on failure."""

    @abc.abstractmethod
    def read(self) -> Frame | None:
        """Return the next frame, or None at end of stream (finite sources only)."""

    @abc.abstractmethod
    def close(self) -> None:
        """Release the underlying resource; safe to call more than once."""

    def __enter__(self) -> 'FrameSource':
        self.open()
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __iter__(self) -> Iterator[Frame]:
        while (frame := self.read()) is not None:
            yield frame
