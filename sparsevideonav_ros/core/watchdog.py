"""Safety state machine between velocity commands and the robot.

The robot bridge feeds every incoming command through on_cmd() and, at its own
fixed rate, sends whatever output() returns. Everything that is not a fresh,
finite, non-zero command while the e-stop is released becomes a zero command,
so any failure upstream (crashed planner, NaNs, dropped link) stops the robot.
"""

from __future__ import annotations

import math
from dataclasses import dataclass


@dataclass(frozen=True)
class VelocityLimits:
    """Hard limits sent to the robot: vx, vy in m/s, wz in rad/s (min_vx < 0 = backwards)."""
    max_vx: float = 0.6
    min_vx: float = -0.3
    max_vy: float = 0.4
    max_wz: float = 1.2


@dataclass(frozen=True)
class SafeCommand:
    """Command to send: vx, vy (m/s), wz (rad/s).

    state: 'idle' | 'moving' | 'timeout' | 'estop' | 'rejected' | 'zero'
    (plus 'shutdown' from shutdown_command()). stop_edge: send an explicit stop
    (Go2 StopMove) now; True once per transition to zero and on the first
    output of each e-stop engagement.
    """
    vx: float
    vy: float
    wz: float
    state: str
    stop_edge: bool


def _clamp(v: float, lo: float, hi: float) -> float:
    return min(max(v, lo), hi)


class SafetyWatchdog:
    """Validates, clamps and times out velocity commands; latched e-stop.

    Times (s) passed to on_cmd() and output() must come from the same clock.
    """

    def __init__(self, limits: VelocityLimits = VelocityLimits(), cmd_timeout_s: float = 0.5):
        if not cmd_timeout_s > 0.0:
            raise ValueError(f"cmd_timeout_s must be > 0, got {cmd_timeout_s}")
        self.limits = limits
        self.cmd_timeout_s = float(cmd_timeout_s)
        self.rejected_count = 0
        self.last_cmd_stamp: float | None = None  # arrival of any command, even ignored
        self._cmd: tuple[float, float, float] | None = None
        self._cmd_stamp = 0.0
        self._rejected = False
        self._estop_reason: str | None = None
        self._estop_edge_pending = False
        self._last_nonzero = False

    @property
    def estopped(self) -> bool:
        return self._estop_reason is not None

    @property
    def estop_reason(self) -> str | None:
        return self._estop_reason

    def on_cmd(self, stamp_now: float, vx: float, vy: float, wz: float) -> str | None:
        """Store a command received at stamp_now (s). Returns an error string if rejected.

        Non-finite input replaces the stored command with zero rather than
        keeping the previous one: whatever produced a NaN cannot be trusted to
        have meant the earlier command either. While the e-stop is engaged
        valid commands are ignored (None is returned; check `estopped`).
        """
        try:
            t, cmd = float(stamp_now), (float(vx), float(vy), float(wz))
        except (TypeError, ValueError):
            t, cmd = math.nan, (math.nan,) * 3
        if math.isfinite(t):
            self.last_cmd_stamp = t
        if not all(math.isfinite(v) for v in (t, *cmd)):
            self.rejected_count += 1
            self._cmd, self._rejected = (0.0, 0.0, 0.0), True
            return (f"rejected non-finite command: t={stamp_now!r} "
                    f"vx={vx!r} vy={vy!r} wz={wz!r}")
        if not self.estopped:
            self._cmd, self._cmd_stamp, self._rejected = cmd, t, False
        return None

    def engage_estop(self, reason: str) -> None:
        """Latch the e-stop. Re-engaging while latched only updates the reason."""
        if not self.estopped:
            self._estop_edge_pending = True
        self._estop_reason = reason or "unspecified"

    def release_estop(self) -> None:
        """Clear the e-stop and forget the last command, so motion resumes only
        on a command sent after the release, never on one from before it."""
        self._estop_reason = None
        self._estop_edge_pending = False
        self._cmd, self._rejected = None, False

    def _emit(self, vx: float, vy: float, wz: float, state: str) -> SafeCommand:
        nonzero = (vx, vy, wz) != (0.0, 0.0, 0.0)
        edge = ((not nonzero and self._last_nonzero)
                or (state == "estop" and self._estop_edge_pending))
        if state == "estop":
            self._estop_edge_pending = False
        self._last_nonzero = nonzero
        return SafeCommand(vx, vy, wz, state, edge)

    def output(self, now: float) -> SafeCommand:
        """The command to send at time now (s): clamped when 'moving', zero otherwise.

        The command times out once now - stamp >= cmd_timeout_s. A command
        stamped in the future (clock jumped back) or a non-finite `now` also
        counts as timed out: without a trustworthy age we must not move.
        """
        if self.estopped:
            return self._emit(0.0, 0.0, 0.0, "estop")
        if self._cmd is None:
            return self._emit(0.0, 0.0, 0.0, "idle")
        if self._rejected:
            return self._emit(0.0, 0.0, 0.0, "rejected")
        age = now - self._cmd_stamp
        if not (0.0 <= age < self.cmd_timeout_s):  # also catches NaN
            return self._emit(0.0, 0.0, 0.0, "timeout")
        lim = self.limits
        vx = _clamp(self._cmd[0], lim.min_vx, lim.max_vx)
        vy = _clamp(self._cmd[1], -lim.max_vy, lim.max_vy)
        wz = _clamp(self._cmd[2], -lim.max_wz, lim.max_wz)
        if (vx, vy, wz) == (0.0, 0.0, 0.0):
            return self._emit(0.0, 0.0, 0.0, "zero")
        return self._emit(vx, vy, wz, "moving")

    def command_expiry(self) -> float | None:
        """Time (s, the on_cmd clock) at which the stored command times out; None when no command
        could move the robot (none stored, rejected, or e-stop engaged). The bridge wakes at this
        instant, so the stop goes out at the bound rather than at the next control tick."""
        if self.estopped or self._cmd is None or self._rejected:
            return None
        return self._cmd_stamp + self.cmd_timeout_s

    def shutdown_command(self) -> SafeCommand:
        """Zero command with stop_edge=True, to send once when the bridge exits."""
        self._last_nonzero = False
        return SafeCommand(0.0, 0.0, 0.0, "shutdown", True)
