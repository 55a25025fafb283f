"""Build a FrameSource from a kind name and keyword arguments (e.g. ROS parameters)."""

from __future__ import annotations

import inspect

from .base import FrameSource
from .file import ImageFolderSource, VideoFileSource
from .realsense import RealSenseSource
from .synthetic import SyntheticSource
from .uvc import UvcSource

# kind -> FrameSource class (realsense imports pyrealsense2 only when opened).
SOURCE_KINDS: dict[str, type[FrameSource]] = {
    'synthetic': SyntheticSource,
    'video': VideoFileSource,
    'image_folder': ImageFolderSource,
    'uvc': UvcSource,
    'realsense': RealSenseSource,
}


def make_source(kind: str, **kwargs) -> FrameSource:
    """Construct (not open) the source `kind` with `kwargs` passed to its constructor.

    Raises ValueError for an unknown kind or arguments the kind does not accept,
    naming the known kinds / accepted parameters.
    """
    try:
        cls = SOURCE_KINDS[kind]
    except (KeyError, TypeError):
        raise ValueError(f'unknown frame source kind {kind!r}; known: {", ".join(sorted(SOURCE_KINDS))}') from None
    sig = inspect.signature(cls)
    try:
        sig.bind(**kwargs)
    except TypeError as exc:
        params = ', '.join(sig.parameters)
        raise ValueError(f'bad arguments for frame source {kind!r}: {exc}; accepted parameters: {params}') from None
    return cls(**kwargs)
