"""Video files for the dataset adapters: read frames by index lazily, resample to 4 FPS by time, write mp4.

OpenCV's FFmpeg backend (opencv-python-headless, already a dependency) does the decoding and encoding:
no second video library. Its limits are what they are (no software AV1 decoder in the pip wheel, see
``VideoReader.read``); errors say so instead of returning black frames.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Optional, Sequence

import cv2
import numpy as np

from sparsevideonav_ros.core.frame_sampler import FrameSampler
from sparsevideonav_ros.datasets.episodes import FRAME_RATE_HZ

VIDEO_SUFFIXES = (".mp4", ".mov", ".avi", ".mkv", ".webm", ".m4v")

# What OpenCV's pip FFmpeg writes into .mp4 here: 'mp4v' = MPEG-4 Part 2 (FFmpeg's mpeg4 encoder). Chosen
# because it is the one mp4 encoder the wheel always has that is fast (~600 frames/s at 640x480 on one core;
# libvpx VP9 through OpenCV ran at ~8 frames/s, too slow for hours of data; H.264/AV1 encoders are not in
# the wheel) and that every FFmpeg-based reader decodes (LeRobot's torchcodec and PyAV backends, OpenCV).
# The price: ~35 dB PSNR (a few grey levels of mean error) and no playback in web browsers (the Hub's viewer).
MP4_FOURCC = "mp4v"
MP4_CODEC_NAME = "mpeg4"  # FFmpeg's name for it (what LeRobot's info.json calls video.codec)

# FourCC tags of codecs OpenCV's FFmpeg here cannot decode in software (checked on the wheel: its libavcodec
# has the AV1 parser but only a hardware-accelerated AV1 decoder, no libdav1d/libaom decoder).
UNDECODABLE = {"av01": "AV1", "AV01": "AV1"}


class VideoError(RuntimeError):
    """A video cannot be opened or a frame cannot be decoded; the message says which and why."""


def fourcc_text(value: float) -> str:
    code = int(value)
    return "".join(chr((code >> (8 * i)) & 0xFF) for i in range(4)) if code > 0 else ""


class VideoReader:
    """Frames of one video file by index, decoded on demand: (H, W, 3) uint8 RGB.

    Sequential access (the usual: an episode read frame by frame) decodes forward from the last frame read;
    a jump backwards or far ahead seeks. The capture is reopened in a new process (a DataLoader worker
    forked after the first read must not share the parent's decoder).
    """

    def __init__(self, path: str | Path, codec_hint: str = "") -> None:
        self.path = Path(path)
        self.codec_hint = codec_hint  # e.g. info.json's video.codec, for the error message
        self._capture: Optional[cv2.VideoCapture] = None
        self._pid = -1
        self._next = 0  # index of the frame the capture reads next

    def __getstate__(self) -> dict:
        return {"path": self.path, "codec_hint": self.codec_hint}

    def __setstate__(self, state: dict) -> None:
        self.__init__(state["path"], state["codec_hint"])

    def _open(self) -> cv2.VideoCapture:
        if self._capture is None or self._pid != os.getpid():
            if not self.path.is_file():
                raise VideoError(f"video {self.path} does not exist")
            capture = cv2.VideoCapture(str(self.path), cv2.CAP_FFMPEG)
            if not capture.isOpened():
                if self._is_av1_hint():
                    raise self._av1_error()
                raise VideoError(f"OpenCV cannot open video {self.path}: not a video, or a container its FFmpeg "
                                 f"does not read")
            self._capture, self._pid, self._next = capture, os.getpid(), 0
        return self._capture

    @property
    def fps(self) -> float:
        return float(self._open().get(cv2.CAP_PROP_FPS) or 0.0)

    def _is_av1_hint(self) -> bool:
        return self.codec_hint.lower() in ("av1", "libsvtav1", "libaom-av1", "libdav1d")

    def _av1_error(self) -> VideoError:
        return VideoError(f"{self.path} is AV1 video (LeRobot's default codec, libsvtav1), which OpenCV's FFmpeg "
                          f"here cannot decode (no software AV1 decoder in the opencv-python wheel). Re-encode it, "
                          f"e.g. `ffmpeg -i in.mp4 -c:v libx264 -pix_fmt yuv420p out.mp4`, or record the dataset "
                          f"with vcodec='h264'")

    def _undecodable(self) -> VideoError:
        tag = fourcc_text(self._open().get(cv2.CAP_PROP_FOURCC))
        if UNDECODABLE.get(tag) == "AV1" or self._is_av1_hint():
            return self._av1_error()
        hint = f", {self.codec_hint}" if self.codec_hint else ""
        return VideoError(f"cannot decode a frame of {self.path} (codec tag {tag!r}{hint}): OpenCV's FFmpeg has no "
                          f"decoder for it or the file is damaged")

    def read(self, index: int) -> np.ndarray:
        """Frame ``index`` (0-based, in decoding order) as (H, W, 3) uint8 RGB. Raises VideoError."""
        capture = self._open()
        if index < self._next or index > self._next + 64:  # decoding forward is cheaper than a short seek
            capture.set(cv2.CAP_PROP_POS_FRAMES, index)
            self._next = int(capture.get(cv2.CAP_PROP_POS_FRAMES))
            if self._next != index:  # a seek to the wrong frame: decode from the start instead
                capture.set(cv2.CAP_PROP_POS_FRAMES, 0)
                self._next = 0
        while self._next < index:
            if not capture.grab():
                raise self._end(index)
            self._next += 1
        ok, bgr = capture.read()
        if not ok:
            if index == 0:
                raise self._undecodable()
            raise self._end(index)
        self._next += 1
        return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)

    def _end(self, index: int) -> VideoError:
        if self._next == 0:
            return self._undecodable()
        return VideoError(f"{self.path} ends after {self._next} frames; frame {index} was asked for")

    def timestamps(self) -> np.ndarray:
        """(N,) presentation time (s) of every frame, by scanning the file (grab only, no colour conversion);
        phone and action cameras often record variable frame rates, so index / fps would drift."""
        capture = cv2.VideoCapture(str(self.path), cv2.CAP_FFMPEG)
        if not capture.isOpened():
            raise VideoError(f"OpenCV cannot open video {self.path}")
        stamps = []
        try:
            while capture.grab():
                stamps.append(capture.get(cv2.CAP_PROP_POS_MSEC) / 1000.0)
        finally:
            capture.release()
        if not stamps:
            raise self._undecodable()
        stamps = np.asarray(stamps, dtype=float)
        if np.any(np.diff(stamps) <= 0):  # no usable timestamps (some containers): fall back to the nominal rate
            fps = self.fps
            if not fps > 0:
                raise VideoError(f"{self.path} has neither frame timestamps nor a frame rate")
            stamps = np.arange(len(stamps)) / fps
        return stamps

    def close(self) -> None:
        if self._capture is not None:
            self._capture.release()
            self._capture = None


def resample_indices(stamps_s: Sequence[float], rate_hz: float = FRAME_RATE_HZ) -> list[int]:
    """Indices of the frames the policy's 4 FPS grid (core.frame_sampler.FrameSampler) picks from ``stamps_s``."""
    sampler = FrameSampler(rate_hz)
    return [i for i, stamp in enumerate(stamps_s) if sampler.offer(float(stamp))]


class Mp4Writer:
    """Appends (H, W, 3) uint8 RGB frames to an .mp4 (MP4_FOURCC, constant ``fps``); frames_written counts."""

    def __init__(self, path: str | Path, width: int, height: int, fps: float = FRAME_RATE_HZ) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.size = (int(width), int(height))
        self._writer = cv2.VideoWriter(str(self.path), cv2.CAP_FFMPEG, cv2.VideoWriter_fourcc(*MP4_FOURCC),
                                       float(fps), self.size)
        if not self._writer.isOpened():
            raise VideoError(f"OpenCV cannot write {MP4_FOURCC} video to {self.path}")
        self.frames_written = 0

    def write(self, rgb: np.ndarray) -> None:
        if rgb.shape != (self.size[1], self.size[0], 3) or rgb.dtype != np.uint8:
            raise VideoError(f"frame {self.frames_written} of {self.path} is {rgb.shape} {rgb.dtype}; expected "
                             f"({self.size[1]}, {self.size[0]}, 3) uint8 (every frame of a video the same size)")
        self._writer.write(cv2.cvtColor(np.ascontiguousarray(rgb), cv2.COLOR_RGB2BGR))
        self.frames_written += 1

    def close(self) -> None:
        self._writer.release()
