"""JanusVLN's discrete actions -> Plan waypoints.

The model answers one of STOP, MOVE_FORWARD, TURN_LEFT, TURN_RIGHT per step (Habitat: 0.25 m, 15 degrees).
The release accepts only the exact answer and treats anything else as STOP; we read the first action name
in the answer (case-insensitive, '_' or a space between words), so 'MOVE_FORWARD.' or 'move forward' count,
and still treat an answer naming no action as STOP, with a warning.
"""
from __future__ import annotations

import logging
import math
import re
from dataclasses import dataclass
from typing import Optional

import numpy as np

log = logging.getLogger(__name__)

ACTIONS = ("STOP", "MOVE_FORWARD", "TURN_LEFT", "TURN_RIGHT")
_PATTERN = re.compile(r"\b(STOP|MOVE[ _]FORWARD|TURN[ _]LEFT|TURN[ _]RIGHT)\b", re.IGNORECASE)


@dataclass(frozen=True)
class ParsedAction:
    action: str  # one of ACTIONS
    text: str  # the model's answer
    understood: bool  # False: no action named, treated as STOP


def parse_action(text: str) -> ParsedAction:
    """The first action named in `text`; STOP (understood=False) when there is none."""
    match = _PATTERN.search(text or "")
    if match is None:
        return ParsedAction("STOP", text, False)
    return ParsedAction(re.sub(r"\s+", "_", match.group(1).upper()), text, True)


def parse_and_warn(text: str, logger: Optional[logging.Logger] = None) -> ParsedAction:
    parsed = parse_action(text)
    if not parsed.understood:
        (logger or log).warning("JanusVLN answered %r, which names no action (%s): stopping", text,
                                ", ".join(ACTIONS))
    return parsed


def action_waypoints(action: str, forward_step_m: float, turn_angle_deg: float) -> np.ndarray:
    """(N, 3) body-frame waypoints for one action: a step ahead, a turn in place, or none for STOP."""
    turn = math.radians(turn_angle_deg)
    if action == "MOVE_FORWARD":
        return np.array([[forward_step_m, 0.0, 0.0]])
    if action == "TURN_LEFT":
        return np.array([[0.0, 0.0, turn]])
    if action == "TURN_RIGHT":
        return np.array([[0.0, 0.0, -turn]])
    if action == "STOP":
        return np.zeros((0, 3))
    raise ValueError(f"unknown action {action!r}; known: {ACTIONS}")
