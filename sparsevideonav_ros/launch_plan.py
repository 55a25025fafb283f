"""What a launch starts, including what only the bag can tell: stack.py's planners + replay alignment.

stack.py declares the graph and turns launch arguments into processes without reading any file
but its YAML; a replay's start offset, grid anchor and initial instruction come from the bag's
recorded plans and instructions. This module reads them (sparsevideonav_ros/bags.py, rosbags)
and passes them to stack's planners, for the three users of replay planning: the launch files
(launch_support.py), the pip-only runner (tools/launch.py) and through it the player
(tools/play.py). The import goes one way, launch_plan -> bags -> stack.
"""
from __future__ import annotations

import datetime
import functools
from typing import Optional

from sparsevideonav_ros import stack


def replay_alignment(launch_name: str, arguments: Optional[dict[str, str]]) -> stack.ReplayAlignment:
    """Where a replay starts, read from its bag.

    replay_start:=aligned starts at the frame of the first recorded plan and anchors the replayed policy's
    4 FPS grid where the recorded one was (policy_node history_grid_anchor_s), so it samples the very
    frames the recorded policy did. A player skips what precedes its start, so the last instruction
    recorded before it becomes the policy's initial instruction.
    """
    values = stack.resolve_arguments(launch_name, arguments)
    bag = stack.replay_bag(launch_name, values)
    from sparsevideonav_ros import bags  # rosbags: a pip requirement, read only for replays
    namespace = values["namespace"]
    anchor = None
    if values["replay_start"].strip() == "aligned":
        grid = bags.recorded_grid_of(bag, stack.resolve_topic(namespace, "policy/path"),
                                     stack.resolve_topic(namespace, "camera/image_raw/compressed"))
        start, anchor = (grid.offset_s, grid.anchor_stamp) if grid else (0.0, None)
    else:
        start = stack.parse_float(values["replay_start"], "replay_start", 0.0, strict=False)
    instruction = bags.last_text_before(bag, stack.resolve_topic(namespace, "instruction"), start) if start > 0 else ""
    return stack.ReplayAlignment(start_offset_s=start, grid_anchor_s=anchor, instruction=instruction)


def _alignment_if_replay(launch_name: str, arguments: Optional[dict[str, str]]) -> Optional[stack.ReplayAlignment]:
    values = stack.resolve_arguments(launch_name, arguments)
    if "bag" not in values:
        return None
    return _cached_alignment(launch_name, tuple(sorted((arguments or {}).items())))


@functools.lru_cache(maxsize=8)
def _cached_alignment(launch_name: str, arguments: tuple) -> stack.ReplayAlignment:
    """A launch file plans its nodes and its player separately: the bag is scanned once for both."""
    return replay_alignment(launch_name, dict(arguments))


def plan_processes(launch_name: str, arguments: Optional[dict[str, str]] = None,
                   share=None) -> list[stack.ProcessSpec]:
    """stack.plan_processes, with the bag read for a replay."""
    return stack.plan_processes(launch_name, arguments, share, _alignment_if_replay(launch_name, arguments))


def plan_playback(launch_name: str, arguments: Optional[dict[str, str]] = None) -> Optional[stack.PlaybackSpec]:
    """stack.plan_playback, with the bag read (None for launch files without a player)."""
    return stack.plan_playback(launch_name, arguments, _alignment_if_replay(launch_name, arguments))


def plan_graph(launch_name: str, arguments: Optional[dict[str, str]] = None, share=None,
               now: Optional[datetime.datetime] = None) -> list:
    """stack.plan_graph (recorder, nodes, player in start order), with the bag read for a replay."""
    return stack.plan_graph(launch_name, arguments, share, now, _alignment_if_replay(launch_name, arguments))
