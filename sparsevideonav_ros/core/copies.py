"""Telling the copies of one message from a new message, for inputs subscribed once per QoS profile.

A user-facing input such as `instruction` is subscribed with several QoS profiles so that every
publisher matches (stack.LATCHED_INPUT); a publisher that matches more than one of them delivers
each message once per matching subscription. Plain Python, no rclpy.
"""
from __future__ import annotations

import threading
from typing import Hashable, Optional

# Copies of one message reach the subscriptions of one process within milliseconds; only a reliable
# copy repaired after a lost packet can lag, by up to the writer's heartbeat period. People who
# re-send the same instruction (to go again after the robot stopped) do so seconds apart. A late
# copy taken as new only repeats the same value.
COPY_WINDOW_S = 2.0


class CopyFilter:
    """``is_copy(key, now)``: True for a message equal to the previous one, received less than ``window_s`` before.

    The key is what makes two messages the same (the instruction text, the serialized bytes). Copies
    extend the window: a publisher that repeats one value (`ros2 topic pub` without --once, 1 Hz)
    gives one message, not one every ``window_s``; the same value sent again after ``window_s`` of
    silence is a new message. ``now``: a monotonic clock (s).
    """

    def __init__(self, window_s: float = COPY_WINDOW_S) -> None:
        if not window_s >= 0.0:
            raise ValueError(f"window_s must be >= 0, got {window_s!r}")
        self.window_s = window_s
        self._last: Optional[tuple[Hashable, float]] = None
        self._lock = threading.Lock()  # several executor threads may deliver copies at once

    def is_copy(self, key: Hashable, now: float) -> bool:
        with self._lock:
            last = self._last
            copy = last is not None and last[0] == key and now - last[1] < self.window_s
            self._last = (key, now)
            return copy
