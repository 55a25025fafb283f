"""Deterministic synthetic camera: a corridor-like scene approached at constant speed.

The scene is a sky/wall gradient above the horizon, a perspective checkerboard
floor that scrolls towards the camera, a coloured door standing on the floor
that grows as the camera approaches it (the approach repeats every
`APPROACH_S` seconds), and the frame index printed top-left.  Everything is a
pure function of (width, height, fps, seed, index), so tests and benchmarks
get identical frames on every run, and it has real texture for JPEG and
policies to chew on.
"""

from __future__ import annotations

import cv2
import numpy as np

from .base import Frame, FrameSource, SourceError

_CAM_HEIGHT_M = 0.30   # Go2 head camera height above the floor
_SPEED_M_S = 0.50      # simulated forward speed
_TILE_M = 0.50         # floor checker tile size
_DOOR_FAR_M, _DOOR_NEAR_M = 8.0, 1.0
_DOOR_W_M, _DOOR_H_M = 0.9, 2.0
APPROACH_S = (_DOOR_FAR_M - _DOOR_NEAR_M) / _SPEED_M_S  # one far->near approach, seconds
_DOOR_COLOURS = ((170, 60, 40), (40, 90, 170), (60, 140, 60), (200, 160, 40))  # RGB


class SyntheticSource(FrameSource):
    """Infinite deterministic scene; frames are (height, width, 3) uint8 RGB, stamp None.

    Args:
        width, height: frame size in pixels (>= 16).
        fps: nominal frame rate in Hz; sets simulated time t = index / fps.
        seed: varies door colour, door lateral offset and the fixed noise texture.
    """

    def __init__(self, width: int = 640, height: int = 480, fps: float = 15.0, seed: int = 0):
        if int(width) < 16 or int(height) < 16:
            raise ValueError(f'synthetic frame size must be at least 16x16, got {width}x{height}')
        if not fps > 0:
            raise ValueError(f'synthetic fps must be > 0, got {fps}')
        super().__init__(width, height, fps)
        self.seed = int(seed)
        rng = np.random.default_rng(self.seed)
        w, h = self.width, self.height
        self._f = 0.8 * w                        # focal length, px (~64 deg HFOV)
        self._cx, self._hy = w / 2.0, int(0.45 * h)  # principal x, horizon row
        self._door_rgb = np.array(_DOOR_COLOURS[rng.integers(len(_DOOR_COLOURS))], np.float32)
        self._door_x_m = float(rng.uniform(-0.6, 0.6))
        noise = rng.normal(0.0, 4.0, (h, w, 1)).astype(np.float32)  # fixed sensor-like grain

        # Above the horizon: static vertical gradient (light sky/wall), grain baked in.
        ys = np.linspace(0.0, 1.0, self._hy, dtype=np.float32)[:, None, None]
        sky = (1 - ys) * np.array([150, 185, 225], np.float32) + ys * np.array([215, 220, 225], np.float32)
        self._sky = np.clip(sky + noise[:self._hy], 0, 255).astype(np.uint8)

        # Floor rows: depth per row and integer tile column per pixel are static;
        # only the forward tile index changes per frame.
        dy = np.arange(h - self._hy, dtype=np.float32)[:, None] + 0.5
        self._z = self._f * _CAM_HEIGHT_M / dy                                  # (Hf, 1) metres
        x_m = (np.arange(w, dtype=np.float32)[None, :] - self._cx) * self._z / self._f
        self._tile_u = np.floor(x_m / _TILE_M).astype(np.int32)                 # (Hf, W)
        # The two checker colours per pixel (grain baked in) are static too, so a
        # frame is a uint8 select between them; contrast fades with distance,
        # standing in for texture blur.
        amp = 45.0 * np.exp(-self._z / 6.0)[:, :, None]                        # (Hf, 1, 1)
        tint, grain = np.array([1.0, 0.92, 0.8], np.float32), noise[self._hy:]
        self._floor_dark, self._floor_light = (
            np.clip((120.0 + sgn * amp) * tint + grain, 0, 255).astype(np.uint8) for sgn in (-1, 1))
        self._index = 0
        self._opened = False

    def open(self) -> None:
        self._index, self._opened = 0, True

    def close(self) -> None:
        self._opened = False

    def read(self) -> Frame:
        if not self._opened:
            raise SourceError('SyntheticSource.read() called before open()')
        frame = Frame(self.render(self._index), None, self._index)
        self._index += 1
        return frame

    def render(self, index: int) -> np.ndarray:
        """Frame `index` as (height, width, 3) uint8 RGB; pure function of the constructor args."""
        t = index / self.nominal_fps
        out = np.empty((self.height, self.width, 3), np.uint8)
        out[:self._hy] = self._sky

        tile_v = np.floor((self._z + _SPEED_M_S * t) / _TILE_M).astype(np.int32)     # (Hf, 1)
        light = ((self._tile_u + tile_v) & 1).astype(bool)[:, :, None]               # (Hf, W, 1)
        np.copyto(out[self._hy:], self._floor_dark)
        np.copyto(out[self._hy:], self._floor_light, where=light)

        # Door standing on the floor at distance d, approached then reset.
        d = _DOOR_FAR_M - (_SPEED_M_S * t) % (_DOOR_FAR_M - _DOOR_NEAR_M)
        s = self._f / d  # px per metre at the door
        x0, x1 = int(self._cx + s * (self._door_x_m - _DOOR_W_M / 2)), int(self._cx + s * (self._door_x_m + _DOOR_W_M / 2))
        y1 = int(self._hy + s * _CAM_HEIGHT_M)
        y0 = int(y1 - s * _DOOR_H_M)
        rgb = tuple(int(c) for c in self._door_rgb)
        cv2.rectangle(out, (x0, y0), (x1, y1), rgb, thickness=-1)
        frame_px = max(1, int(0.06 * s))  # darker frame/trim, 6 cm wide
        cv2.rectangle(out, (x0, y0), (x1, y1), tuple(c // 2 for c in rgb), thickness=frame_px)
        knob = (int(x0 + 0.8 * (x1 - x0)), int(y1 - s * 1.0))
        cv2.circle(out, knob, max(1, int(0.04 * s)), (230, 200, 90), thickness=-1)

        scale = self.width / 640.0
        org = (int(8 * scale), int(28 * scale))
        for colour, thick in (((0, 0, 0), 4), ((255, 255, 255), 1)):  # outlined for any background
            cv2.putText(out, f'{index:06d}', org, cv2.FONT_HERSHEY_SIMPLEX, 0.8 * scale, colour,
                        max(1, int(thick * scale)), cv2.LINE_AA)
        return out
