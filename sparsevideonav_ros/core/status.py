"""Error bookkeeping for a node's status topic: the latest error, its age, and whether it still counts.

Plain Python (no rclpy): the nodes feed it with a monotonic clock and publish ``level()`` and
``values()`` in their diagnostics.
"""
from __future__ import annotations

import math
import threading
from typing import Optional

# Levels as in diagnostic_msgs/DiagnosticStatus (OK, WARN, ERROR), so nodes can publish them as they are.
OK, WARN, ERROR = 0, 1, 2

# How long a one-off error keeps a status at ERROR after it was last reported. Long enough that a
# viewer polling the status at 1-2 Hz (`ros2 topic echo`, rqt, Foxglove) sees it; short enough that a
# glitch that is over does not read as a fault minutes later. An error that persists is reported
# again and again (every rejected frame, every failed step), or holds a cause: it stays ERROR.
ERROR_HOLD_S = 5.0


class ErrorLog:
    """The latest error of a node and whether it is still an error now.

    The level is ERROR while any cause is active (``report(..., cause=...)`` until
    ``clear_cause(cause)``), or while the latest error is younger than ``hold_s``; OK otherwise. The
    latest message and its age stay readable after the level is back to OK, so a status shows what
    went wrong last and how long ago, without claiming that it still does.

        errors = ErrorLog()
        errors.report("rejected frame: yuv422", now)          # one-off: ERROR for hold_s
        errors.report("robot link lost", now, cause="link")   # ERROR until the cause is cleared
        errors.clear_cause("link")                            # link back: OK once hold_s has passed

    ``now`` is any monotonic clock in seconds (time.monotonic()); use the same one for every call.
    Thread-safe: workers report while the status timer reads.
    """

    def __init__(self, hold_s: float = ERROR_HOLD_S) -> None:
        if not (hold_s >= 0.0 and math.isfinite(hold_s)):
            raise ValueError(f"hold_s must be finite and >= 0, got {hold_s!r}")
        self.hold_s = hold_s
        self.message = ""
        self.reported_at: Optional[float] = None
        self.count = 0
        self._causes: dict[str, str] = {}  # active cause -> its latest message
        self._lock = threading.Lock()

    def report(self, message: str, now: float, cause: Optional[str] = None) -> None:
        """Record an error. With ``cause``, the error lasts until ``clear_cause(cause)`` (plus hold_s)."""
        with self._lock:
            self.message = message
            self.reported_at = now
            self.count += 1
            if cause is not None:
                self._causes[cause] = message

    def clear_cause(self, cause: str) -> bool:
        """The condition behind ``cause`` is over; True if it was active. Its last report still holds."""
        with self._lock:
            return self._causes.pop(cause, None) is not None

    @property
    def active_causes(self) -> tuple[str, ...]:
        with self._lock:
            return tuple(sorted(self._causes))

    def age_s(self, now: float) -> Optional[float]:
        """Seconds since the latest error, None if there was none."""
        return None if self.reported_at is None else max(now - self.reported_at, 0.0)

    def is_error(self, now: float) -> bool:
        with self._lock:
            age = self.age_s(now)
            return bool(self._causes) or (age is not None and age < self.hold_s)

    def level(self, now: float) -> int:
        return ERROR if self.is_error(now) else OK

    def values(self, now: float) -> dict[str, str]:
        """Status key/values: ``last_error`` (latest message, '' if none), ``last_error_age_s`` ('' if
        none), ``active_errors`` (active causes, comma-separated) and ``errors`` (reports so far)."""
        with self._lock:
            age = self.age_s(now)
            return {"last_error": self.message, "last_error_age_s": "" if age is None else f"{age:.1f}",
                    "active_errors": ", ".join(sorted(self._causes)), "errors": str(self.count)}
