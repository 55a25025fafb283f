"""A small ray-casting renderer for pose-head tests (numpy + OpenCV only).

A rectangular room: a textured ground plane (z = 0) and four textured walls of ``wall_height_m``,
plain sky above. World frame x forward, y left, z up. The camera is built here from first principles
(look direction from yaw and pitch), independently of the package's CameraMount, so a convention
error in the package cannot cancel against the same error in the renderer.

Textures are random multi-scale noise plus random shapes (corners for ORB, blobs for SIFT), drawn
once per seed, with a mip pyramid so far-away ground at grazing angles is filtered rather than
aliased (aliasing would make features that flicker from frame to frame like no real camera does).
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import cv2
import numpy as np

SKY_RGB = np.array([170.0, 200.0, 235.0])


def _texture(rng: np.random.Generator, height: int, width: int, shapes: int, max_size: int = 40) -> np.ndarray:
    tex = np.zeros((height, width, 3), np.float32)
    for cell, weight in ((256, 50.0), (64, 40.0), (16, 30.0)):
        small = rng.uniform(-1, 1, (max(2, height // cell), max(2, width // cell), 3)).astype(np.float32)
        tex += weight * cv2.resize(small, (width, height), interpolation=cv2.INTER_CUBIC)
    tex += 120.0
    img = np.clip(tex, 0, 255).astype(np.uint8)
    for _ in range(shapes):
        colour = tuple(int(c) for c in rng.integers(0, 256, 3))
        x, y = int(rng.integers(0, width)), int(rng.integers(0, height))
        size = int(rng.integers(3, max_size))
        if rng.random() < 0.5:
            cv2.rectangle(img, (x, y), (x + size, y + int(rng.integers(3, max_size))), colour, -1)
        else:
            cv2.circle(img, (x, y), size // 2, colour, -1)
    return img


class Pyramid:
    """Mip levels of one texture (float32), sampled bilinearly at a per-sample level."""

    def __init__(self, image: np.ndarray, levels: int = 7) -> None:
        self.levels = [image.astype(np.float32)]
        for _ in range(levels - 1):
            self.levels.append(cv2.pyrDown(self.levels[-1]))

    def sample(self, u: np.ndarray, v: np.ndarray, level: np.ndarray, wrap: bool) -> np.ndarray:
        """u, v: texel coordinates of level 0 (N,); level: (N,) float >= 0. Returns (N, 3)."""
        out = np.zeros((len(u), 3), np.float32)
        lv = np.clip(np.round(level).astype(int), 0, len(self.levels) - 1)
        for index, img in enumerate(self.levels):
            sel = lv == index
            if not sel.any():
                continue
            h, w = img.shape[:2]
            scale = 0.5 ** index
            x = u[sel] * scale - 0.5
            y = v[sel] * scale - 0.5
            x0, y0 = np.floor(x).astype(int), np.floor(y).astype(int)
            fx, fy = (x - x0)[:, None], (y - y0)[:, None]
            def px(yy, xx):
                if wrap:
                    return img[yy % h, xx % w]
                return img[np.clip(yy, 0, h - 1), np.clip(xx, 0, w - 1)]
            out[sel] = ((1 - fy) * ((1 - fx) * px(y0, x0) + fx * px(y0, x0 + 1))
                        + fy * ((1 - fx) * px(y0 + 1, x0) + fx * px(y0 + 1, x0 + 1)))
        return out


@dataclass
class Room:
    """Axis-aligned room [x_min, x_max] x [y_min, y_max] (m) with walls of wall_height_m."""

    x_min: float = -8.0
    x_max: float = 8.0
    y_min: float = -6.0
    y_max: float = 6.0
    wall_height_m: float = 3.0
    ground_texel_m: float = 0.01
    wall_texel_m: float = 0.02
    seed: int = 0

    def __post_init__(self) -> None:
        rng = np.random.default_rng(self.seed)
        self.ground = Pyramid(_texture(rng, 2048, 2048, 40000, max_size=16))
        perimeter = 2 * ((self.x_max - self.x_min) + (self.y_max - self.y_min))
        self.wall = Pyramid(_texture(rng, int(self.wall_height_m / self.wall_texel_m), int(perimeter / self.wall_texel_m),
                                     4000))

    def walls(self):
        """(axis, value, direction sign, offset along perimeter at the wall start, start coordinate)."""
        lx, ly = self.x_max - self.x_min, self.y_max - self.y_min
        return ((0, self.x_max, +1, 0.0, self.y_min), (1, self.y_max, +1, ly, self.x_min),
                (0, self.x_min, -1, ly + lx, self.y_min), (1, self.y_min, -1, 2 * ly + lx, self.x_min))


def camera_rotation(yaw: float, pitch_down: float) -> np.ndarray:
    """(3, 3) world-from-camera rotation: columns are the camera's x (right), y (down), z (forward)
    axes in world coordinates, for a camera looking along yaw, tilted down by pitch_down (rad)."""
    forward = np.array([math.cos(pitch_down) * math.cos(yaw), math.cos(pitch_down) * math.sin(yaw), -math.sin(pitch_down)])
    right = np.array([math.sin(yaw), -math.cos(yaw), 0.0])  # horizontal, 90 deg clockwise from the look direction
    down = np.cross(forward, right)
    return np.stack([right, down, forward], axis=1)


def render(room: Room, intrinsics: np.ndarray, width: int, height: int, position: np.ndarray, rotation: np.ndarray,
           supersample: int = 2) -> np.ndarray:
    """RGB uint8 (height, width, 3) seen by a pinhole camera at ``position`` (3,) world metres with
    world-from-camera ``rotation`` (3, 3); intrinsics (3, 3) for the width x height grid."""
    s = supersample
    k_inv = np.linalg.inv(intrinsics)
    offsets = (np.arange(s) + 0.5) / s - 0.5
    us = (np.arange(width)[:, None] + offsets[None]).ravel()
    vs = (np.arange(height)[:, None] + offsets[None]).ravel()
    u, v = np.meshgrid(us, vs)
    rays = np.stack([u.ravel(), v.ravel(), np.ones(u.size)], axis=1) @ k_inv.T
    norm = np.linalg.norm(rays, axis=1)
    rays = rays / norm[:, None]
    # Angle one output pixel spans along each ray (for the mip level): focal length over ray obliquity.
    pixel_angle = 1.0 / (intrinsics[0, 0] * norm)
    d = rays @ rotation.T
    c = np.asarray(position, float)
    n = len(d)
    colour = np.tile(SKY_RGB.astype(np.float32), (n, 1))
    with np.errstate(divide="ignore", invalid="ignore"):
        t_ground = np.where(d[:, 2] < 0, -c[2] / d[:, 2], np.inf)
    # Walls: the nearest one hit in front of the camera below the wall height.
    wall_t = np.full(n, np.inf)
    wall_u = np.zeros(n)
    wall_z = np.zeros(n)
    for axis, value, sign, offset, start in room.walls():
        with np.errstate(divide="ignore", invalid="ignore"):
            t = (value - c[axis]) / d[:, axis]
        t = np.where(t > 1e-6, t, np.inf)
        p = c + t[:, None] * d
        other = 1 - axis
        along = (p[:, other] - start) if sign > 0 else ((room.y_max if other == 1 else room.x_max) - p[:, other])
        length = (room.y_max - room.y_min) if other == 1 else (room.x_max - room.x_min)
        inside = (along >= 0) & (along <= length) & (p[:, 2] >= 0) & (p[:, 2] <= room.wall_height_m)
        better = inside & (t < wall_t)
        wall_t = np.where(better, t, wall_t)
        wall_u = np.where(better, offset + along, wall_u)
        wall_z = np.where(better, p[:, 2], wall_z)
    ground = t_ground < wall_t
    wall = ~ground & np.isfinite(wall_t)
    if ground.any():
        t = t_ground[ground]
        p = c + t[:, None] * d[ground]
        footprint = t * pixel_angle[ground] / np.abs(d[ground, 2])
        level = np.log2(np.maximum(footprint / room.ground_texel_m, 1.0))
        colour[ground] = room.ground.sample((p[:, 0] - room.x_min) / room.ground_texel_m,
                                            (p[:, 1] - room.y_min) / room.ground_texel_m, level, wrap=True)
    if wall.any():
        t = wall_t[wall]
        # Obliquity on an axis-aligned wall, approximated by the larger horizontal ray component
        # (exact for the wall the ray is most head-on to; only picks a mip level).
        axis_comp = np.max(np.abs(d[wall][:, :2]), axis=1)
        footprint = t * pixel_angle[wall] / np.maximum(axis_comp, 1e-3)
        level = np.log2(np.maximum(footprint / room.wall_texel_m, 1.0))
        colour[wall] = room.wall.sample(wall_u[wall] / room.wall_texel_m,
                                        (room.wall_height_m - wall_z[wall]) / room.wall_texel_m, level, wrap=False)
    img = colour.reshape(height * s, width * s, 3)
    img = cv2.resize(img, (width, height), interpolation=cv2.INTER_AREA)
    return np.clip(np.round(img), 0, 255).astype(np.uint8)


# -- trajectories: base_link pose (x, y, yaw) in the world at time t (s) -------------------------

def constant_twist(start: tuple[float, float, float], vx: float, vy: float, wz: float, t: float) -> np.ndarray:
    """Pose after holding the body twist (vx, vy m/s, wz rad/s) for t seconds from start (x, y, yaw)."""
    x0, y0, yaw0 = start
    if abs(wz) < 1e-9:
        dx, dy = vx * t, vy * t
    else:
        th = wz * t
        dx = (vx * math.sin(th) - vy * (1 - math.cos(th))) / wz
        dy = (vx * (1 - math.cos(th)) + vy * math.sin(th)) / wz
    c, s = math.cos(yaw0), math.sin(yaw0)
    return np.array([x0 + c * dx - s * dy, y0 + s * dx + c * dy, yaw0 + wz * t])


TRAJECTORIES = {
    # name: (start pose in the room, vx m/s, vy m/s, wz rad/s)
    "straight": ((-5.0, 0.0, 0.0), 0.3, 0.0, 0.0),
    "turn_left": ((-5.0, -3.0, 0.0), 0.3, 0.0, 0.08),
    "turn_right": ((-5.0, 3.0, 0.0), 0.3, 0.0, -0.08),
    "rotate_in_place": ((0.0, 0.0, 0.0), 0.0, 0.0, 0.12),
    "sidestep_left": ((-3.0, -2.0, 0.0), 0.0, 0.15, 0.0),
}


def camera_pose(base_pose: np.ndarray, height_m: float, pitch_down_rad: float, forward_m: float,
                lateral_m: float = 0.0) -> tuple[np.ndarray, np.ndarray]:
    """(position (3,), world-from-camera rotation (3, 3)) of a camera mounted on a base at (x, y, yaw)."""
    x, y, yaw = base_pose
    c, s = math.cos(yaw), math.sin(yaw)
    position = np.array([x + c * forward_m - s * lateral_m, y + s * forward_m + c * lateral_m, height_m])
    return position, camera_rotation(yaw, pitch_down_rad)
