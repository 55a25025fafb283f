"""UVC cameras through OpenCV (V4L2 on Linux): DJI Osmo Action 4 in webcam mode, any webcam.

The camera is asked for MJPG at the configured size and rate (Osmo Action 4: 1280x720 or
1920x1080 at 30 fps) with a one-frame driver buffer; the grab thread of LiveSource keeps only the
freshest frame and reopens the device when it disappears. Frames are published at the camera's
native size: centre-crop and resize to the policy's input are the policy's job.

``device`` is a V4L2 index ("0", 0) or path (/dev/video2, /dev/v4l/by-id/...). Anything else
(a video file, an image sequence pattern like frames/%04d.png, a stream URL) is opened with
OpenCV's default backends through the same capture code and played at its own frame rate, as a
camera would deliver it: that is how this code is tested on machines without a camera. At the
end of such a file the source reconnects, i.e. starts it again, like a camera plugged back in.
"""
from __future__ import annotations

import os
import time
from typing import Optional, Union

import cv2
import numpy as np

from .base import SourceError
from .live import LiveSource


def parse_device(device: Union[str, int, None]) -> tuple[Union[int, str], bool]:
    """(OpenCV open argument, is a V4L2 device): '' -> (0, True), '2' -> (2, True), '/dev/video2' -> (path, True)."""
    if device is None or (isinstance(device, str) and device.strip() == ''):
        return 0, True
    if isinstance(device, int) or (isinstance(device, str) and device.strip().isdigit()):
        index = int(device)
        if index < 0:
            raise SourceError(f'UVC device index must be >= 0, got {index}')
        return index, True
    device = str(device)
    return device, device.startswith('/dev/')


class UvcSource(LiveSource):
    """OpenCV capture of a UVC camera (or a file/sequence played like one).

    Args:
        device: index or path, see parse_device().
        width, height, fps: asked of the camera; it may deliver something else (see status()['warning']).
        fourcc: pixel format asked of the camera ('MJPG'; '' = the driver's default).
        timeout_s: no frame for this long = camera lost; reopen attempts this often.
    """

    def __init__(self, device: Union[str, int, None] = '', width: int = 1280, height: int = 720, fps: float = 30.0,
                 fourcc: str = 'MJPG', timeout_s: float = 2.0):
        if int(width) <= 0 or int(height) <= 0 or not fps > 0:
            raise ValueError(f'UVC width, height and fps must be > 0, got {width}x{height} @ {fps}')
        if fourcc and len(fourcc) != 4:
            raise ValueError(f'fourcc must be 4 characters, got {fourcc!r}')
        super().__init__(width, height, fps, timeout_s)
        self.target, self.is_device = parse_device(device)
        self.requested = (int(width), int(height), float(fps))
        self.fourcc = fourcc
        self.warning = ''
        self._cap: Optional[cv2.VideoCapture] = None
        self._next_due = 0.0  # pacing of files/sequences

    def describe(self) -> str:
        return f'UVC camera {self.target}' if self.is_device else f'UVC capture of {self.target}'

    def _connect(self) -> None:
        if self.is_device:
            if isinstance(self.target, str) and not os.path.exists(self.target):
                raise SourceError(f'{self.describe()}: {self.target} does not exist (camera unplugged, or not in '
                                  f'UVC/webcam mode?)')
            if isinstance(self.target, int) and not os.path.exists(f'/dev/video{self.target}'):
                raise SourceError(f'{self.describe()}: /dev/video{self.target} does not exist (camera unplugged, or '
                                  f'not in UVC/webcam mode?); `v4l2-ctl --list-devices` lists the cameras')
            cap = cv2.VideoCapture(self.target, cv2.CAP_V4L2)
        else:
            if '%' not in self.target and '://' not in self.target and not os.path.exists(self.target):
                raise SourceError(f'{self.describe()}: {self.target} does not exist')
            cap = cv2.VideoCapture(self.target)
        if not cap.isOpened():
            cap.release()
            raise SourceError(f'cannot open {self.describe()} (busy, unsupported, or not a camera/video)')
        width, height, fps = self.requested
        if self.is_device:
            # Order matters for V4L2: pixel format first, then size, then rate.
            if self.fourcc:
                cap.set(cv2.CAP_PROP_FOURCC, cv2.VideoWriter_fourcc(*self.fourcc))
            cap.set(cv2.CAP_PROP_FRAME_WIDTH, width)
            cap.set(cv2.CAP_PROP_FRAME_HEIGHT, height)
            cap.set(cv2.CAP_PROP_FPS, fps)
            cap.set(cv2.CAP_PROP_BUFFERSIZE, 1)  # the driver keeps one frame, the grab thread the newest
            if hasattr(cv2, 'CAP_PROP_READ_TIMEOUT_MSEC'):
                cap.set(cv2.CAP_PROP_READ_TIMEOUT_MSEC, int(self.timeout_s * 1000))
        self.width = int(cap.get(cv2.CAP_PROP_FRAME_WIDTH))
        self.height = int(cap.get(cv2.CAP_PROP_FRAME_HEIGHT))
        actual_fps = cap.get(cv2.CAP_PROP_FPS)
        self.nominal_fps = float(actual_fps) if actual_fps and np.isfinite(actual_fps) and actual_fps > 0 else fps
        if self.is_device and (self.width, self.height) != (width, height):
            self.warning = (f'{self.describe()} delivers {self.width}x{self.height}, not the {width}x{height} asked '
                            f'for; frames are published as delivered')
        self._cap = cap
        self._next_due = time.monotonic()

    def _grab(self) -> Optional[tuple[np.ndarray, None]]:
        cap = self._cap
        if cap is None:
            return None
        if not self.is_device:  # a file would be read as fast as it decodes: deliver it at its frame rate
            delay = self._next_due - time.monotonic()
            if delay > 0 and self._stop.wait(delay):
                return None
            self._next_due = max(self._next_due + 1.0 / self.nominal_fps, time.monotonic() - 1.0 / self.nominal_fps)
        ok, bgr = cap.read()
        if not ok or bgr is None:
            return None
        if bgr.ndim == 2:
            return cv2.cvtColor(bgr, cv2.COLOR_GRAY2RGB), None
        return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB), None

    def _disconnect(self) -> None:
        cap, self._cap = self._cap, None
        if cap is not None:
            cap.release()

    def status(self) -> dict:
        return {**super().status(), 'device': str(self.target), 'warning': self.warning}
