"""JanusVLN's discrete actions -> Plan waypoints.

The model answers one of STOP, MOVE_FORWARD, TURN_LEFT, TURN_RIGHT per step (Habitat: 0.25 m, 15 degrees).
Two parsers (janusvln.action_parsing):
  * exact (default, the release's evaluation): the decoded answer must equal an action name character for
    character (no stripping, no case folding); anything else is STOP;
  * lenient: the first action named in the answer (case-insensitive, '_' or a space between words), so
    'MOVE_FORWARD.' or 'move forward' count; an answer naming no action is STOP.
Either way an answer that is not understood stops the robot, with a warning.
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


def parse_exact(text: str) -> ParsedAction:
    """`text` if it is exactly one of ACTIONS, else STOP (understood=False)."""
    if text in ACTIONS:
        return ParsedAction(text, text, True)
    return ParsedAction("STOP", text, False)


def parse_action(text: str, parsing: str = "lenient") -> ParsedAction:
    """parsing 'exact': see parse_exact; 'lenient': the first action named in `text`; STOP (understood=False)
    when there is none."""
    if parsing == "exact":
        return parse_exact(text)
    if parsing != "lenient":
        raise ValueError(f"unknown action parsing {parsing!r}; known: exact, lenient")
    match = _PATTERN.search(text or "")
    if match is None:
        return ParsedAction("STOP", text, False)
    return ParsedAction(re.sub(r"\s+", "_", match.group(1).upper()), text, True)


def parse_and_warn(text: str, logger: Optional[logging.Logger] = None, parsing: str = "lenient") -> ParsedAction:
    parsed = parse_action(text, parsing)
    if not parsed.understood:
        (logger or log).warning("JanusVLN answered %r, which names no action (%s parsing; actions: %s): stopping",
                                text, parsing, ", ".join(ACTIONS))
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
