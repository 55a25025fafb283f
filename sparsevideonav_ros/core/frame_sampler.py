"""Decimate a camera stream to the policy's frame rate (4 FPS by default).

The policy was trained on frames spaced 1/rate_hz apart, so frames are picked
on a fixed time grid rather than "every n-th frame": the grid keeps the
spacing right whatever the camera rate and does not drift when frames drop.
"""

from __future__ import annotations

import math


class FrameSampler:
    """Online frame selection on a grid t0 + k / rate_hz (s).

    t0 is the stamp of the first accepted frame. A frame is accepted iff it is
    the first one belonging to a tick not yet used, where a frame at stamp t
    belongs to the latest tick k with t >= t0 + (k - tolerance_fraction) / rate_hz.
    The early tolerance lets a jittery camera at exactly rate_hz, whose frame
    lands a few ms before its tick, keep every frame instead of slipping a
    whole period. After a gap the grid jumps to the frame's own tick, so a
    single late frame is never accepted for several ticks.
    """

    def __init__(self, rate_hz: float = 4.0, tolerance_fraction: float = 0.25):
        if not rate_hz > 0.0:
            raise ValueError(f"rate_hz must be > 0, got {rate_hz}")
        if not 0.0 <= tolerance_fraction < 1.0:
            raise ValueError(f"tolerance_fraction must be in [0, 1), got {tolerance_fraction}")
        self.rate_hz = float(rate_hz)
        self.period_s = 1.0 / self.rate_hz
        self.tolerance_fraction = float(tolerance_fraction)
        self.reset()

    def reset(self) -> None:
        """Forget the grid and zero the counters (accepted, offered, resets)."""
        self._t0: float | None = None
        self._next_tick = 0
        self._last_accepted = -math.inf
        self._accepted = 0
        self._offered = 0
        self.resets = 0  # grid restarts caused by time going backwards

    @property
    def accepted(self) -> int:
        return self._accepted

    @property
    def offered(self) -> int:
        return self._offered

    def _anchor(self, stamp: float) -> bool:
        self._t0, self._next_tick = stamp, 1
        self._last_accepted = stamp
        self._accepted += 1
        return True

    def anchor_at(self, stamp: float) -> None:
        """Start the grid at ``stamp`` without a frame: frames are then picked on t0 = stamp exactly as
        if a frame stamped ``stamp`` had been accepted (not counted). A replay anchors the grid where
        the recorded run's was (see infer_grid_anchor) to sample the very frames it sampled."""
        stamp = float(stamp)
        if not math.isfinite(stamp):
            raise ValueError(f"grid anchor must be finite, got {stamp}")
        self._t0, self._next_tick, self._last_accepted = stamp, 1, stamp

    def would_accept(self, stamp: float) -> bool:
        """What ``offer(stamp)`` would answer, without changing anything.

        Lets a caller skip expensive work (JPEG decode) for frames the grid will drop.
        """
        stamp = float(stamp)
        if not math.isfinite(stamp):
            return False
        if self._t0 is None or stamp < self._last_accepted:
            return True
        return math.floor((stamp - self._t0) * self.rate_hz + self.tolerance_fraction) >= self._next_tick

    def offer(self, stamp: float) -> bool:
        """Offer a frame stamped `stamp` (s); True if it should go to the policy.

        A stamp older than the last accepted frame means the clock jumped back
        (bag loop, sim reset): the grid restarts at this frame, which is
        accepted, and `resets` is incremented. A non-finite stamp is refused.
        """
        self._offered += 1
        stamp = float(stamp)
        if not math.isfinite(stamp):
            return False
        if self._t0 is None:
            return self._anchor(stamp)
        if stamp < self._last_accepted:
            self.resets += 1
            return self._anchor(stamp)
        tick = math.floor((stamp - self._t0) * self.rate_hz + self.tolerance_fraction)
        if tick < self._next_tick:
            return False
        self._next_tick = tick + 1
        self._last_accepted = stamp
        self._accepted += 1
        return True


def infer_grid_anchor(frame_stamps, sampled_stamps, rate_hz: float = 4.0,
                      tolerance_fraction: float = 0.25) -> tuple[float, int]:
    """Where a FrameSampler's grid must be anchored to pick ``sampled_stamps`` out of ``frame_stamps``.

    A recorded run tells which frames its sampler picked (the stamps of its plans) but not where its
    grid started (that first frame may be missing from the recording). Anchored on the returned stamp
    and fed ``frame_stamps`` from ``sampled_stamps[0]`` on, a sampler picks the most of
    ``sampled_stamps``. Returns (anchor stamp, how many of them it picks). The grid's phase only matters
    up to where its tolerance edges fall between frames, so each phase interval between two frames'
    edge crossings is tried once; of the best, the widest interval's middle is taken (the phase most
    tolerant of stamp jitter).
    """
    period = 1.0 / rate_hz
    first = float(sampled_stamps[0])
    frames = [float(f) for f in frame_stamps if f >= first - 5e-7]
    wanted = {round(float(s), 6) for s in sampled_stamps}
    low, high = -tolerance_fraction * period, (1.0 - tolerance_fraction) * period
    # phi: the first sampled frame lies at anchor + 2 periods + phi, inside tick 2's window
    edges = sorted({low + (-(f - first)) % period for f in frames} | {low, high})
    best, best_width, best_phi = -1, -1.0, 0.0
    for a, b in zip(edges, edges[1:]):
        if b - a < 1e-9:
            continue
        phi = 0.5 * (a + b)
        sampler = FrameSampler(rate_hz, tolerance_fraction)
        sampler.anchor_at(first - 2 * period - phi)
        score = sum(1 for f in frames if sampler.offer(f) and round(f, 6) in wanted)
        if score > best or (score == best and b - a > best_width):
            best, best_width, best_phi = score, b - a, phi
    return first - 2 * period - best_phi, best
