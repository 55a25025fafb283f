"""policy/markers: a plan as visualization_msgs markers for RViz and Foxglove.

One MarkerArray per plan, in the plan's frame (plan_frame, base_link at the frame's stamp) and stamp, so
the viewer places it where the robot was when the frame was taken:
  DELETEALL                      the previous plan's markers go (a shorter plan leaves no stale labels)
  ns "plan"       LINE_STRIP     robot origin, then the waypoints in order
  ns "waypoints"  SPHERE_LIST    the waypoints
  ns "times"      TEXT           "T+1 s", "T+2 s", ...: time ahead of the frame at each whole second of the plan
                                 (SparseVideoNav's imagined-future instants T+1, 2, 5, 8, ... s fall on them;
                                 its pose head plans through the first pose_future_instants of them)
  ns "state"      TEXT           "<policy>: <state>" above the robot (ok, warming_up, pose_invalid, ...)
A stop (no waypoints) sends DELETEALL and the state only.
"""
from __future__ import annotations

import math
from typing import Any, Optional

import numpy as np
from geometry_msgs.msg import Point
from std_msgs.msg import ColorRGBA, Header
from visualization_msgs.msg import Marker, MarkerArray

PLAN_COLOR = (0.1, 0.9, 0.3, 1.0)
TIME_COLOR = (1.0, 1.0, 0.2, 1.0)
STATE_COLORS = {"ok": (0.1, 0.9, 0.3, 1.0)}
OTHER_STATE_COLOR = (1.0, 0.5, 0.1, 1.0)
LABEL_HEIGHT_M = 0.15
STATE_HEIGHT_M = 0.8


def labelled_times(count: int, dt_s: Optional[float]) -> list[tuple[int, float]]:
    """(waypoint index, seconds ahead) of the waypoints that get a time label: waypoint i is (i + 1) * dt_s
    ahead; whole seconds are labelled, and the last waypoint. Without timing (dt_s None): none."""
    if not count or not dt_s or not math.isfinite(dt_s) or dt_s <= 0:
        return []
    out = []
    for index in range(count):
        seconds = (index + 1) * dt_s
        if abs(seconds - round(seconds)) < 1e-6 or index == count - 1:
            out.append((index, seconds))
    return out


def time_label(seconds: float) -> str:
    return f"T+{seconds:.0f} s" if abs(seconds - round(seconds)) < 1e-6 else f"T+{seconds:.2f} s"


def _color(rgba: tuple) -> ColorRGBA:
    return ColorRGBA(r=float(rgba[0]), g=float(rgba[1]), b=float(rgba[2]), a=float(rgba[3]))


def _marker(header: Header, ns: str, marker_id: int, kind: int, rgba: tuple) -> Marker:
    marker = Marker(header=header, ns=ns, id=marker_id, type=kind, action=Marker.ADD)
    marker.pose.orientation.w = 1.0
    marker.color = _color(rgba)
    marker.frame_locked = False  # stays where the robot was at the frame's stamp
    return marker


def plan_markers(waypoints: np.ndarray, header: Header, state: str, policy: str = "",
                 dt_s: Optional[float] = None) -> MarkerArray:
    """The markers of one plan: waypoints (N, 3) x, y, yaw in header.frame_id at header.stamp."""
    wp = np.asarray(waypoints, dtype=float).reshape(-1, 3)
    array = MarkerArray()
    clear = Marker(header=header, action=Marker.DELETEALL)
    array.markers.append(clear)
    if len(wp):
        line = _marker(header, "plan", 0, Marker.LINE_STRIP, PLAN_COLOR)
        line.scale.x = 0.03
        line.points = [Point(x=0.0, y=0.0, z=0.0)] + [Point(x=float(x), y=float(y), z=0.0) for x, y, _ in wp]
        array.markers.append(line)
        spheres = _marker(header, "waypoints", 0, Marker.SPHERE_LIST, PLAN_COLOR)
        spheres.scale.x = spheres.scale.y = spheres.scale.z = 0.06
        spheres.points = [Point(x=float(x), y=float(y), z=0.0) for x, y, _ in wp]
        array.markers.append(spheres)
        for label_id, (index, seconds) in enumerate(labelled_times(len(wp), dt_s)):
            text = _marker(header, "times", label_id, Marker.TEXT_VIEW_FACING, TIME_COLOR)
            text.pose.position.x, text.pose.position.y = float(wp[index, 0]), float(wp[index, 1])
            text.pose.position.z = LABEL_HEIGHT_M
            text.scale.z = 0.12
            text.text = time_label(seconds)
            array.markers.append(text)
    status = _marker(header, "state", 0, Marker.TEXT_VIEW_FACING, STATE_COLORS.get(state, OTHER_STATE_COLOR))
    status.pose.position.z = STATE_HEIGHT_M
    status.scale.z = 0.15
    status.text = f"{policy}: {state}" if policy else state
    array.markers.append(status)
    return array


def marker_summary(array: Any) -> dict[str, list]:
    """ns -> [points or text] of a MarkerArray (tests, the live view's log line)."""
    out: dict[str, list] = {}
    for marker in array.markers:
        if marker.action == Marker.DELETEALL:
            out.setdefault("deleteall", []).append(True)
        elif marker.type == Marker.TEXT_VIEW_FACING:
            out.setdefault(marker.ns, []).append(marker.text)
        else:
            out.setdefault(marker.ns, []).append([(p.x, p.y) for p in marker.points])
    return out
