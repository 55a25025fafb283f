"""Offline evaluation: run any registered policy over a recorded bag (or a video) and write a report.

    python -m sparsevideonav_ros.tools.evaluate bags/<run> --policy scripted
    python -m sparsevideonav_ros.tools.evaluate walk.mp4 --instruction "stop by the wooden door" --policy <name>

No ROS needed (the bag is read with the rosbags library). Frames go through the same pipeline as
policy_node (policies/runner.PolicyRunner: the policy's 4 FPS time grid, its planning frames),
odometry reaches the policy as it would have on the robot (poses received up to the frame,
interpolated at its stamp), and each sampled frame is stepped before the next (no frame is queued
or dropped as on a busy robot). The instruction comes from
--instruction, else the bag's instruction messages at their recorded times, else the instruction
the recorded policy/status reported. The report folder holds:

  plans.png      the policy's plans anchored on the recorded odometry trajectory (and the recorded
                 plans, when the bag has them), plus every plan in the robot frame
  latency.json   per-step compute time and the policy's own timings (also printed); latency.png
  overlay.mp4    each 4 FPS frame with the plan drawn on it (ground projection + top view; the recorded
                 plan of the same frame beside it, in cyan), the step's text in a band above the frame
                 (never over the clip's own text), and the policy's preview image (Plan.preview, e.g.
                 its imagined future) beside it
  steps.json     every step: stamp, state, waypoints, timings (milliseconds, keys ending in _ms), the
                 chosen action of a discrete-action policy (JanusVLN's answer), error
  summary.json   counts, latency, and the agreement with the recorded plans

While it runs, a progress line (frames read of the input's total, ETA) goes to stderr. A bag whose
recording starts after the robot began moving is said (trials.recorded.bag_start_warnings): the
recorded plans then start where the recording does, not where the run did.

Exit status: 0 report written; 1 report written but the policy produced no plan (every step waited
for an instruction, warmed up or failed: the message says which, and hints --instruction); 2 unusable
input (missing, truncated or foreign bag, unreadable video), a missing checkpoint or a bad policy
configuration or params file: one line on stderr, no traceback.
"""
from __future__ import annotations

import argparse
import datetime
import json
import math
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator, Optional

import cv2
import numpy as np

from sparsevideonav_ros import stack
from sparsevideonav_ros.bags import BagError
from sparsevideonav_ros.configs import ConfigError
from sparsevideonav_ros.core import images, se2
from sparsevideonav_ros.core.progress import Progress
from sparsevideonav_ros.core.intrinsics import intrinsics_from_fov, matrix_from_camera_info
from sparsevideonav_ros.core.pose_history import PoseHistory
from sparsevideonav_ros.policies import registry
from sparsevideonav_ros.policies.base import PolicyError
from sparsevideonav_ros.policies.runner import PolicyRunner, policy_rate_hz
from sparsevideonav_ros.policies.runner import Step as RunnerStep

VIDEO_SUFFIXES = (".mp4", ".avi", ".mkv", ".mov", ".webm", ".m4v")
# Plan states in which the policy decided something (moved, stopped at the goal, refused its estimate);
# a run with none of them produced no plan (exit 1): it only waited (instruction, warm-up) or failed.
DECIDING_STATES = ("ok", "done", "pose_invalid")
COMPRESSED = "sensor_msgs/msg/CompressedImage"
RAW = "sensor_msgs/msg/Image"


class InputError(RuntimeError):
    """The input cannot be evaluated (the message says why)."""


# -- input events -----------------------------------------------------------------------------

@dataclass
class FrameEvent:
    stamp: float
    frame_id: str
    decode: Any  # () -> (H, W, 3) uint8 RGB; raises images.ImageEncodingError
    before_start: bool = False  # counted, not given to the policy


@dataclass
class Intrinsics:
    fx: float
    fy: float
    cx: float
    cy: float
    width: int
    height: int

    def scaled_to(self, width: int, height: int) -> "Intrinsics":
        sx, sy = width / self.width, height / self.height
        return Intrinsics(self.fx * sx, self.fy * sy, self.cx * sx, self.cy * sy, width, height)

    @classmethod
    def from_fov(cls, width: int, height: int, horizontal_fov_deg: float = 90.0) -> "Intrinsics":
        k = intrinsics_from_fov(width, height, math.radians(horizontal_fov_deg))
        return cls(k[0, 0], k[1, 1], k[0, 2], k[1, 2], width, height)

    def matrix_for(self, width: int, height: int) -> Optional[np.ndarray]:
        """(3, 3) K for a width x height frame when this camera_info is for that size, else None (as the node)."""
        return matrix_from_camera_info([self.fx, 0.0, self.cx, 0.0, self.fy, self.cy, 0.0, 0.0, 1.0],
                                       self.width, self.height, width, height)


@dataclass
class Episode:
    """What the input holds besides frames (filled while the events stream by)."""

    kind: str
    path: str
    topics: dict[str, str] = field(default_factory=dict)  # role -> topic
    odometry: list = field(default_factory=list)  # (stamp, (3,) pose)
    recorded_plans: list = field(default_factory=list)  # (stamp, (N, 3))
    instructions: list = field(default_factory=list)  # (time s, text) as recorded
    status_instruction: str = ""
    intrinsics: Optional[Intrinsics] = None
    frames_total: int = 0
    frames_expected: int = 0  # frames the input holds (bag message count, video frame count; 0 = unknown)
    start_s: float = 0.0  # where the policy's frames start, seconds into the input
    start_reason: str = "first frame"
    grid_anchor: Optional[float] = None  # virtual first sample that lines the 4 FPS grid up with the recording
    grid_matches: int = 0  # recorded plan frames the aligned grid samples (of the first bags.ALIGN_FRAMES frames)


def bag_events(path: Path, episode: Episode, image_topic: Optional[str], odom_topic: Optional[str],
               start: str = "aligned", rate_hz: float = 4.0) -> Iterator:
    """("frame"|"odom"|"instruction"|"path"|"camera_info"|"status", payload) in recorded order.

    start: 'aligned' = frames reach the policy from the one the recorded policy planned from first, on
    the recorded policy's 4 FPS grid (so both sample the same frames; from the first frame when the
    bag has no plans), or seconds into the bag.
    """
    from sparsevideonav_ros import bags

    reader = bags.open_bag(path)
    try:
        if image_topic:
            frames = bags.find_connections(reader, (COMPRESSED, RAW), explicit=image_topic)
        else:  # JPEG frames as the policy node subscribes them, else raw ones
            frames = (bags.find_connections(reader, (COMPRESSED,), "camera/image_raw/compressed",
                                            option="--image-topic")
                      or bags.find_connections(reader, (RAW,), "camera/image_raw", option="--image-topic"))
        if not frames or sum(c.msgcount for c in frames) == 0:
            raise bags.BagError(f"{path} has no camera frames: expected a {COMPRESSED} or {RAW} topic "
                                f"(e.g. /camera/image_raw/compressed); the bag has: {bags.describe_topics(reader)}")
        def stack_named(msg_type: str, name: str) -> list:  # optional roles: only under the stack's name
            return bags.find_connections(reader, (msg_type,), name, require_suffix=True)

        roles = {"frame": frames,
                 "odom": bags.find_connections(reader, ("nav_msgs/msg/Odometry",), "odom", odom_topic,
                                               option="--odom-topic"),
                 "instruction": stack_named("std_msgs/msg/String", "instruction"),
                 "path": stack_named("nav_msgs/msg/Path", "policy/path"),
                 "camera_info": stack_named("sensor_msgs/msg/CameraInfo", "camera/camera_info"),
                 "status": stack_named("diagnostic_msgs/msg/DiagnosticArray", "policy/status")}
        episode.topics = {role: conns[0].topic for role, conns in roles.items() if conns}
        episode.frames_expected = sum(c.msgcount for c in frames)
        start_ns = reader.start_time
        if start == "aligned":
            if roles["path"]:
                start_ns = align_with_recorded_plans(reader, roles["path"], frames, episode, rate_hz) or start_ns
        else:
            start_ns += int(float(start) * 1e9)
            episode.start_reason = f"--start {float(start):g} s"
        episode.start_s = (start_ns - reader.start_time) / 1e9
        role_of = {c.id: role for role, conns in roles.items() for c in conns}
        for connection, bag_ns, data in bags.messages(reader, [c for conns in roles.values() for c in conns]):
            role = role_of[connection.id]
            if role == "frame":
                event = frame_from_message(bags.decode(data, connection.msgtype, connection.topic), connection.msgtype)
                event.before_start = bag_ns < start_ns
                yield "frame", event
                continue
            msg = bags.decode(data, connection.msgtype, connection.topic)
            if role == "odom":
                p, q = msg.pose.pose.position, msg.pose.pose.orientation
                yield "odom", (bags.stamp_seconds(msg.header.stamp),
                               np.array([p.x, p.y, se2.yaw_from_quaternion(q.x, q.y, q.z, q.w)]))
            elif role == "instruction":
                yield "instruction", (bag_ns * 1e-9, msg.data)
            elif role == "path":
                rows = [(ps.pose.position.x, ps.pose.position.y,
                         se2.yaw_from_quaternion(ps.pose.orientation.x, ps.pose.orientation.y,
                                                 ps.pose.orientation.z, ps.pose.orientation.w)) for ps in msg.poses]
                yield "path", (bags.stamp_seconds(msg.header.stamp), np.asarray(rows, dtype=float).reshape(-1, 3))
            elif role == "camera_info":
                k = [float(v) for v in msg.k]
                if msg.width and msg.height and k[0] > 0 and k[4] > 0:
                    yield "camera_info", Intrinsics(k[0], k[4], k[2], k[5], int(msg.width), int(msg.height))
            elif role == "status":
                values = {kv.key: kv.value for status in msg.status for kv in status.values}
                yield "status", values
    finally:
        reader.close()


def align_with_recorded_plans(reader, path_connections, frame_connections, episode: Episode,
                              rate_hz: float = 4.0) -> Optional[int]:
    """Bag time (ns) of the first recorded plan's frame, with episode.grid_anchor set; None without plans."""
    from sparsevideonav_ros import bags

    grid = bags.recorded_grid(reader, path_connections[0].topic, frame_connections[0].topic, rate_hz)
    if grid is None:
        return None
    episode.grid_anchor, episode.grid_matches = grid.anchor_stamp, grid.matched
    episode.start_reason = "frame of the first recorded plan, 4 FPS grid where the recorded policy's was"
    return grid.start_ns


def frame_from_message(msg: Any, msg_type: str) -> FrameEvent:
    stamp = msg.header.stamp.sec + msg.header.stamp.nanosec * 1e-9
    if msg_type == COMPRESSED:
        return FrameEvent(stamp, msg.header.frame_id, lambda: images.decode_compressed(msg.format, msg.data))

    def decode_raw():
        array = images.array_from_image_fields(msg.height, msg.width, msg.encoding, msg.is_bigendian, msg.step,
                                               msg.data)
        return images.to_rgb(array, msg.encoding)
    return FrameEvent(stamp, msg.header.frame_id, decode_raw)


def video_events(path: Path, fps: Optional[float], start: str = "0", episode: Optional[Episode] = None) -> Iterator:
    from sparsevideonav_ros.sources.base import SourceError
    from sparsevideonav_ros.sources.file import VideoFileSource

    start_s = 0.0 if start == "aligned" else float(start)
    source = VideoFileSource(path, loop=False, fps=fps)
    try:
        source.open()
    except SourceError as error:
        raise InputError(str(error)) from error
    if episode is not None:
        episode.frames_expected = source.frame_count
    try:
        index = 0
        while True:
            frame = source.read()
            if frame is None:
                break
            rgb = frame.rgb
            stamp = index / source.nominal_fps
            yield "frame", FrameEvent(stamp, "camera_link", lambda rgb=rgb: rgb, before_start=stamp < start_s)
            index += 1
        if index == 0:
            raise InputError(f"{path} has no decodable frames")
    finally:
        source.close()


# -- running the policy -----------------------------------------------------------------------

def milliseconds_key(name: str) -> str:
    """A Plan.timings_s name (seconds, e.g. 'action_head_s') as the report's key for milliseconds
    ('action_head_ms'): a key says the unit of the value it holds."""
    return f"{name.removesuffix('_s')}_ms"


@dataclass
class Step:
    """One evaluated step. stamp: the plan's frame stamp (s); compute_ms: observe + plan (ms);
    timings_ms: the policy's own timings in milliseconds, keys ending in _ms (milliseconds_key)."""

    index: int
    stamp: float
    state: str
    waypoints: np.ndarray
    compute_ms: float
    timings_ms: dict
    error: str
    odom_pose: Optional[np.ndarray]
    frame_jpeg: bytes = b""  # the frame stepped on (drawn on when the video is written: all recorded plans known)
    preview_jpeg: bytes = b""
    reason: str = ""  # Plan.reason: why a plan stops beyond its state (e.g. the pose head's failed check)
    new_plan: bool = True  # False: the policy repeated an earlier plan (same stamp as that plan's step)
    action: str = ""  # a discrete-action policy's chosen action for this plan (JanusVLN: its answer)
    instruction: str = ""  # the instruction in effect when the frame was stepped (drawn in the overlay)

    def to_json(self) -> dict:
        return {"index": self.index, "stamp": self.stamp, "state": self.state, "reason": self.reason,
                "new_plan": self.new_plan, "action": self.action,
                "waypoints": np.round(self.waypoints, 6).tolist(), "compute_ms": round(self.compute_ms, 3),
                "timings_ms": {k: round(v, 3) for k, v in self.timings_ms.items()}, "error": self.error,
                "odom_pose": None if self.odom_pose is None else np.round(self.odom_pose, 6).tolist(),
                "has_preview": bool(self.preview_jpeg)}


def run_policy(events: Iterator, episode: Episode, policy, rate_hz: Optional[float], instruction: str,
               render: Optional["OverlayRenderer"], max_steps: int = 0,
               progress: Optional[Progress] = None) -> list[Step]:
    """Feed the input to ``policy`` through the PolicyRunner, as policy_node does, with every sampled
    frame stepped before the next one arrives (an evaluation waits for the policy; the robot cannot).
    progress: updated with the frames read so far (its total: episode.frames_expected)."""
    reported: set[str] = set()

    def report_error(message: str) -> None:  # a refused instruction, a failed step: said once each
        if message not in reported:
            reported.add(message)
            print(message, file=sys.stderr)

    runner = PolicyRunner(type(policy), lambda: policy, rate_hz=rate_hz, report_error=report_error,
                          log_info=lambda message: None)
    runner.load()  # built already: a bad configuration failed before the input was opened
    steps: list[Step] = []
    grid_anchored = tried_status_instruction = False
    if instruction:
        runner.set_instruction(instruction)
    for kind, payload in events:
        if kind == "odom":
            stamp, pose = payload
            try:
                runner.add_odometry(stamp, pose)
                episode.odometry.append((stamp, pose))
            except ValueError:
                pass  # non-finite odometry: the node rejects it too
        elif kind == "instruction":
            episode.instructions.append(payload)
            if not instruction:
                try:
                    runner.set_instruction(payload[1])
                except PolicyError as error:  # empty: refused at once, before the worker sees it
                    report_error(f"instruction refused: {error}")
        elif kind == "status":
            if not episode.status_instruction and payload.get("instruction", "").strip():
                episode.status_instruction = payload["instruction"].strip()
        elif kind == "path":
            episode.recorded_plans.append(payload)
        elif kind == "camera_info":
            episode.intrinsics = episode.intrinsics or payload
        elif kind == "frame":
            episode.frames_total += 1
            if progress is not None:
                if not progress.total and episode.frames_expected:
                    progress.total = episode.frames_expected  # known once the input is open
                progress.update(episode.frames_total, note=f"{len(steps)} steps")
            frame: FrameEvent = payload
            if frame.before_start or (max_steps and len(steps) >= max_steps):
                continue
            if episode.grid_anchor is not None and not grid_anchored:
                runner.anchor_grid(episode.grid_anchor)  # the recorded policy's grid (bags.recorded_grid)
                grid_anchored = True
            if not runner.wants_frame(frame.stamp):
                continue  # like the node: no decode for frames the 4 FPS grid drops
            try:
                rgb = frame.decode()
            except images.ImageEncodingError:
                continue
            if not runner.instruction and episode.status_instruction and not tried_status_instruction:
                # recorded as a launch argument / parameter: no instruction message, but status reports it
                # (also when the given or recorded one was refused: runner.instruction is what took effect)
                tried_status_instruction = True
                runner.set_instruction(episode.status_instruction)
            camera_matrix = episode.intrinsics.matrix_for(rgb.shape[1], rgb.shape[0]) if episode.intrinsics else None
            if not runner.add_frame(frame.stamp, rgb, frame.frame_id, camera_matrix=camera_matrix):
                continue
            for runner_step in runner.process():
                steps.append(step_record(len(steps), runner_step, chosen_action(policy, runner_step)))
                steps[-1].instruction = runner.instruction or instruction
                if render is not None:
                    render.add(steps[-1], runner_step.observation.rgb)
    return steps


def chosen_action(policy, step: RunnerStep) -> str:
    """The action a discrete-action policy chose for this step's plan: JanusVLN's answer text
    (``last_answer``, set when it decides; a repeated plan keeps the answer it came from); '' for
    policies without one and for steps that waited or failed."""
    if step.plan is None or step.plan.state not in DECIDING_STATES:
        return ""
    answer = getattr(policy, "last_answer", "")
    return " ".join(str(answer).split()) if isinstance(answer, str) else ""


def step_record(index: int, step: RunnerStep, action: str = "") -> Step:
    """A runner step as the report keeps it (a failed step has state 'error' and its message)."""
    observation, plan = step.observation, step.plan
    compute_ms = step.compute_s * 1e3
    if plan is None:  # the node publishes a stop for any policy failure; here it is a failed step
        return Step(index, observation.stamp, "error", np.zeros((0, 3)), compute_ms, {}, step.error,
                    observation.odom_pose, new_plan=False)
    preview = b""
    if plan.preview is not None:
        try:
            preview = images.encode_jpeg(np.ascontiguousarray(plan.preview), 90)
        except images.ImageEncodingError:
            preview = b""
    return Step(index, plan.stamp, plan.state, np.asarray(plan.waypoints, dtype=float).reshape(-1, 3), compute_ms,
                {milliseconds_key(k): v * 1e3 for k, v in plan.timings_s.items()}, "", observation.odom_pose,
                preview_jpeg=preview, reason=plan.reason, new_plan=step.new, action=action)


# -- drawing ----------------------------------------------------------------------------------

ORANGE, GREEN, WHITE, BLACK, GREY = (255, 140, 0), (60, 220, 60), (255, 255, 255), (0, 0, 0), (90, 90, 90)
CYAN = (0, 200, 255)  # the recorded plan (RGB)


def ascii_text(text: str) -> str:
    return text.encode("ascii", "replace").decode("ascii")


def put_text(image: np.ndarray, text: str, origin: tuple[int, int], scale: float = 0.5) -> None:
    """White text on a dark box (readable on any frame, and after video compression)."""
    text = ascii_text(text)
    (width, height), baseline = cv2.getTextSize(text, cv2.FONT_HERSHEY_SIMPLEX, scale, 1)
    x, y = origin
    box = image[max(0, y - height - 3):y + baseline + 1, max(0, x - 3):x + width + 3]
    box[:] = (box.astype(np.float32) * 0.3).astype(np.uint8)
    cv2.putText(image, text, origin, cv2.FONT_HERSHEY_SIMPLEX, scale, WHITE, 1, cv2.LINE_AA)


def project_ground(waypoints: np.ndarray, intrinsics: Intrinsics, camera_height_m: float,
                   min_forward_m: float = 0.2) -> list[tuple[int, int]]:
    """Image pixels of ground points (x forward, y left, in the robot frame) seen by a level camera
    ``camera_height_m`` above the ground at the robot origin; points closer than min_forward_m are left out."""
    points = []
    for x, y in waypoints[:, :2]:
        if x < min_forward_m:
            continue
        u = intrinsics.cx - intrinsics.fx * y / x
        v = intrinsics.cy + intrinsics.fy * camera_height_m / x
        points.append((int(round(u)), int(round(v))))
    return points


def draw_top_view(image: np.ndarray, waypoints: np.ndarray, size: int = 0, margin: int = 8,
                  recorded: Optional[np.ndarray] = None) -> None:
    """Top view of the plan in the bottom-left corner: robot at the centre facing up, 1 m scale bar;
    ``recorded`` (the recorded plan of the same frame) in cyan under it.
    ``size`` 0: a third of the frame's smaller side (60..150 px)."""
    h = image.shape[0]
    size = size or int(np.clip(min(image.shape[:2]) // 3, 60, 150))
    x0, y0 = margin, h - size - margin
    if y0 < 0 or size + margin > image.shape[1]:
        return
    region = image[y0:y0 + size, x0:x0 + size]
    region[:] = (region.astype(np.float32) * 0.35).astype(np.uint8)
    shown = [w for w in (waypoints, recorded) if w is not None and len(w)]
    extent = max([1.0] + [float(np.abs(w[:, :2]).max()) for w in shown]) * 1.15
    scale = (size / 2 - 4) / extent  # px per m
    centre = np.array([size / 2, size / 2])

    def px(x: float, y: float) -> tuple[int, int]:
        return int(round(x0 + centre[0] - y * scale)), int(round(y0 + centre[1] - x * scale))

    cv2.rectangle(image, (x0, y0), (x0 + size - 1, y0 + size - 1), GREY, 1)
    cv2.line(image, (x0 + 6, y0 + size - 8), (x0 + 6 + int(scale), y0 + size - 8), WHITE, 2)
    put_text(image, "1 m", (x0 + 8, y0 + size - 12), 0.35)
    robot = px(0.0, 0.0)
    cv2.arrowedLine(image, robot, px(0.25 * extent / 1.15, 0.0), WHITE, 2, tipLength=0.3)
    if recorded is not None and len(recorded):
        previous = robot
        for x, y, _ in recorded:
            cv2.line(image, previous, px(x, y), CYAN, 1, cv2.LINE_AA)
            cv2.circle(image, px(x, y), 2, CYAN, -1)
            previous = px(x, y)
    previous = robot
    for x, y, yaw in waypoints:
        point = px(x, y)
        cv2.line(image, previous, point, ORANGE, 2, cv2.LINE_AA)
        cv2.circle(image, point, 3, ORANGE, -1)
        tip = px(x + 0.15 * extent / 1.15 * math.cos(yaw), y + 0.15 * extent / 1.15 * math.sin(yaw))
        cv2.line(image, point, tip, GREEN, 1, cv2.LINE_AA)
        previous = point


class OverlayRenderer:
    """Overlay frames: the evaluated plan (orange) and the recorded plan of the same frame (cyan) drawn on
    the frame and in a top view, the step's text in a band above the frame (so it never covers the
    clip's own text, e.g. a camera's burnt-in time). Frames are kept as JPEG while the policy runs and
    drawn when the video is written, once every recorded plan has been read (a recorded plan comes
    after its frame in a bag, by the recorded policy's compute time)."""

    LINE_PX = 20  # text line height in the band
    BAND_LINES = 3

    def __init__(self, camera_height_m: float, instruction: str = "") -> None:
        self.camera_height_m = camera_height_m
        self.instruction = instruction
        self.first_stamp: Optional[float] = None

    def add(self, step: Step, rgb: np.ndarray) -> None:
        step.frame_jpeg = images.encode_jpeg(np.ascontiguousarray(rgb), 90)

    @property
    def band_px(self) -> int:
        return self.BAND_LINES * self.LINE_PX + 6

    def draw_plan(self, image: np.ndarray, waypoints: np.ndarray, intrinsics: Intrinsics, colour: tuple,
                  thickness: int) -> None:
        h, w = image.shape[:2]
        points = project_ground(waypoints, intrinsics, self.camera_height_m)
        if not points:
            return
        chain = [(w // 2, h - 1)] + points
        for a, b in zip(chain, chain[1:]):
            cv2.line(image, a, b, colour, thickness, cv2.LINE_AA)
        for point in points:
            cv2.circle(image, point, 6, colour, 2, cv2.LINE_AA)

    def render(self, step: Step, episode: Episode, recorded: Optional[np.ndarray] = None,
               policy_name: str = "") -> np.ndarray:
        """The overlay frame of ``step``: band (text) on top of the frame; ``recorded``: the recorded plan
        of the same frame stamp ((N, 3), None when the bag has none for it)."""
        image = images.decode_jpeg(step.frame_jpeg).copy()
        h, w = image.shape[:2]
        intrinsics = (episode.intrinsics.scaled_to(w, h) if episode.intrinsics else Intrinsics.from_fov(w, h))
        if recorded is not None and len(recorded):
            self.draw_plan(image, recorded, intrinsics, CYAN, 2)
        self.draw_plan(image, step.waypoints, intrinsics, ORANGE, 3)
        draw_top_view(image, step.waypoints, recorded=recorded)
        self.first_stamp = step.stamp if self.first_stamp is None else self.first_stamp
        band = np.full((self.band_px, w, 3), 20, np.uint8)
        first = (f"step {step.index}  t={step.stamp - self.first_stamp:.2f} s  {step.state}  "
                 f"{step.compute_ms:.1f} ms")
        if recorded is not None:
            first += "  orange: " + (policy_name or "evaluated") + ", cyan: recorded"
        lines = [first, self.instruction or step.instruction]
        if step.error:
            lines.append(step.error)
        elif step.action:
            lines.append(f"action: {step.action}")
        elif step.reason:
            lines.append(step.reason)
        for row, text in enumerate(lines[:self.BAND_LINES]):
            if text:
                put_text(band, text[:120], (6, (row + 1) * self.LINE_PX - 4), 0.45)
        return np.vstack([band, image])


def video_frames(steps: list[Step], renderer: Optional[OverlayRenderer] = None, episode: Optional[Episode] = None,
                 policy_name: str = "") -> Iterator[np.ndarray]:
    """Overlay frames, with the preview (scaled to the frame height) beside them when any step has one."""
    renderer = renderer or OverlayRenderer(0.35)
    episode = episode or Episode(kind="bag", path="")
    recorded = {stamp_key(stamp): waypoints for stamp, waypoints in episode.recorded_plans}

    def overlay(step: Step) -> np.ndarray:
        return renderer.render(step, episode, recorded.get(stamp_key(step.stamp)) if recorded else None,
                               policy_name)

    first = overlay(steps[0])
    band = renderer.band_px
    h = first.shape[0] - band  # the camera frame's height: the preview is scaled to it, below the band
    panel_w = 0
    for step in steps:
        if step.preview_jpeg:
            preview = images.decode_jpeg(step.preview_jpeg)
            panel_w = max(panel_w, int(round(preview.shape[1] * h / preview.shape[0])))
    panel_w += panel_w % 2  # even sizes for the codec
    for index, step in enumerate(steps):
        frame = first if index == 0 else overlay(step)
        if frame.shape != first.shape:
            frame = cv2.resize(frame, (first.shape[1], first.shape[0]))
        if panel_w:
            panel = np.full((band + h, panel_w, 3), 20, np.uint8)
            panel[band:] = 30
            if step.preview_jpeg:
                preview = images.decode_jpeg(step.preview_jpeg)
                width = int(round(preview.shape[1] * h / preview.shape[0]))
                panel[band:, :width] = cv2.resize(preview, (width, h), interpolation=cv2.INTER_AREA)
                put_text(panel, "policy preview", (6, renderer.LINE_PX - 4), 0.45)
            else:
                put_text(panel, "no preview", (6, renderer.LINE_PX - 4), 0.45)
            frame = np.hstack([frame, panel])
        yield frame


# -- report -----------------------------------------------------------------------------------

def stats(values: list[float]) -> dict:
    if not values:
        return {"count": 0}
    array = np.asarray(values, dtype=float)
    return {"count": int(array.size), "p50": round(float(np.percentile(array, 50)), 3),
            "p95": round(float(np.percentile(array, 95)), 3), "max": round(float(array.max()), 3),
            "mean": round(float(array.mean()), 3)}


def latency_report(steps: list[Step]) -> dict:
    names = sorted({name for step in steps for name in step.timings_ms})
    return {"compute_ms": stats([s.compute_ms for s in steps]),
            "timings_ms": {name: stats([s.timings_ms[name] for s in steps if name in s.timings_ms]) for name in names},
            "per_step": [{"index": s.index, "stamp": s.stamp, "compute_ms": round(s.compute_ms, 3),
                          **{k: round(v, 3) for k, v in s.timings_ms.items()}} for s in steps]}


def stamp_key(stamp: float) -> int:
    return int(round(stamp * 1e6))


def compare_with_recorded(steps: list[Step], recorded: list) -> dict:
    """Agreement of the evaluated plans with the plans recorded for the same frames (matched by stamp).

    Both sides are counted per planned frame: a policy re-publishes (and the evaluation repeats) its last
    plan between planning frames under the same stamp, so recorded_plans counts path messages and
    recorded_plan_frames their distinct stamps; every count below is of distinct frames, hence
    matched_frames <= recorded_plans_in_span <= recorded_plan_frames.
    """
    if not recorded:
        return {"recorded_plans": 0}
    by_stamp = {stamp_key(stamp): waypoints for stamp, waypoints in recorded}
    evaluated: dict[int, Step] = {}
    for step in steps:
        evaluated.setdefault(stamp_key(step.stamp), step)  # the step that made the plan, not its repeats
    # recorded plans made from frames within the evaluated span (not before the first evaluated frame:
    # the bag may lack those frames, or --start skipped them)
    first, last = (min(evaluated), max(evaluated)) if evaluated else (0, -1)
    in_span = sum(1 for key in by_stamp if first <= key <= last)
    matched, same_state, differences, unequal_lengths = 0, 0, [], 0
    for key, step in evaluated.items():
        other = by_stamp.get(key)
        if other is None:
            continue
        matched += 1
        if (len(other) == 0) == (len(step.waypoints) == 0):
            same_state += 1
        if len(other) and len(other) == len(step.waypoints):
            position = float(np.linalg.norm(other[:, :2] - step.waypoints[:, :2], axis=1).max())
            yaw = float(np.abs(se2.wrap_angle(other[:, 2] - step.waypoints[:, 2])).max())
            differences.append((position, yaw))
        elif len(other) and len(step.waypoints):
            unequal_lengths += 1
    result = {"recorded_plans": len(recorded), "recorded_plan_frames": len(by_stamp),
              "evaluated_plan_frames": len(evaluated), "recorded_plans_in_span": in_span, "matched_frames": matched,
              "same_stop_or_go": same_state, "compared_waypoints": len(differences),
              "unequal_waypoint_counts": unequal_lengths}
    if differences:
        positions = np.array([d[0] for d in differences])
        result.update(max_position_difference_m=round(float(positions.max()), 6),
                      median_position_difference_m=round(float(np.median(positions)), 6),
                      max_yaw_difference_rad=round(float(max(d[1] for d in differences)), 6),
                      within_5cm=int((positions <= 0.05).sum()))
    return result


def anchored(plans: list, odometry: list) -> list[np.ndarray]:
    """Plans (stamp, body-frame waypoints) in the odometry frame at the pose of their stamp."""
    history = PoseHistory(horizon_s=1e9)
    for stamp, pose in odometry:
        history.add(stamp, pose)
    result = []
    for stamp, waypoints in plans:
        if len(waypoints) == 0:
            continue
        try:
            pose = history.pose_at(stamp)
        except LookupError:
            continue
        result.append(np.vstack([pose, se2.compose(pose, waypoints)]))
    return result


def square_limits(ax, min_span_m: float = 1.0, margin: float = 0.08) -> None:
    """Equal axes (1 m is as long in x as in y) over a square window around everything drawn so far, at least
    ``min_span_m`` wide: a straight run keeps the panel's full height instead of being squashed into a strip
    (matplotlib's aspect 'equal' alone shrinks the axes box to the data's shape)."""
    ax.relim()
    ax.autoscale_view()
    (x0, x1), (y0, y1) = ax.get_xlim(), ax.get_ylim()
    if ax.has_data() and ax.dataLim.width >= 0 and np.all(np.isfinite(ax.dataLim.get_points())):
        (x0, y0), (x1, y1) = ax.dataLim.get_points()
    span = max(min_span_m, x1 - x0, y1 - y0) * (1.0 + 2 * margin)
    cx, cy = (x0 + x1) / 2, (y0 + y1) / 2
    ax.set_xlim(cx - span / 2, cx + span / 2)
    ax.set_ylim(cy - span / 2, cy + span / 2)
    ax.set_aspect("equal", adjustable="box")


def draw_odometry(ax, poses: np.ndarray, label: str, title: str) -> None:
    """Driven (N, 3) odometry poses with start/end marks on an odom-frame panel (plans drawn before it)."""
    if len(poses):
        ax.plot(poses[:, 0], poses[:, 1], "-", color="tab:blue", lw=2, label=label)
        ax.plot(*poses[0, :2], "go", label="start")
        ax.plot(*poses[-1, :2], "rs", label="end")
    square_limits(ax)
    ax.grid(True, alpha=0.3)
    ax.set_xlabel("x [m] (odom)")
    ax.set_ylabel("y [m] (odom)")
    ax.set_title(title)
    if ax.get_legend_handles_labels()[0]:  # nothing drawn (no odometry, no plans): no empty legend
        ax.legend(loc="best", fontsize=8)


def plot_plans(steps: list[Step], episode: Episode, path: Path, policy_name: str) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    with_odom = bool(episode.odometry)
    fig, axes = plt.subplots(1, 2 if with_odom else 1, figsize=(12 if with_odom else 6, 6), squeeze=False)
    axes = axes[0]
    if with_odom:
        ax = axes[0]
        for i, plan in enumerate(anchored(episode.recorded_plans, episode.odometry)):
            ax.plot(plan[:, 0], plan[:, 1], "--", color="tab:green", alpha=0.35, lw=1,
                    label="recorded plans" if i == 0 else None)
        for i, plan in enumerate(anchored([(s.stamp, s.waypoints) for s in steps], episode.odometry)):
            ax.plot(plan[:, 0], plan[:, 1], ".-", color="tab:orange", alpha=0.35, lw=1,
                    label=f"{policy_name} plans (at their frame's pose)" if i == 0 else None)
        draw_odometry(ax, np.array([pose for _, pose in episode.odometry]), "recorded odometry",
                      "Plans vs recorded trajectory")
    ax = axes[-1]
    # the recorded plans of the evaluated frames, under the evaluated ones: both in the robot frame
    evaluated_keys = {stamp_key(s.stamp) for s in steps}
    recorded = [w for stamp, w in episode.recorded_plans if len(w) and stamp_key(stamp) in evaluated_keys]
    for i, waypoints in enumerate(recorded):
        chain = np.vstack([np.zeros(3), waypoints])
        ax.plot(-chain[:, 1], chain[:, 0], "--", color="tab:cyan", alpha=0.5, lw=1.5,
                label="recorded plans (same frames)" if i == 0 else None)
    colours = plt.cm.viridis(np.linspace(0, 1, max(1, len(steps))))
    for step, colour in zip(steps, colours):
        if len(step.waypoints):
            chain = np.vstack([np.zeros(3), step.waypoints])
            ax.plot(-chain[:, 1], chain[:, 0], ".-", color=colour, alpha=0.6, lw=1)
    ax.plot(0, 0, "k^", ms=10, label="robot at the frame")
    ax.plot([-0.75, 0.75], [0.0, 0.0], alpha=0.0)  # at least 1.5 m wide, so lateral offsets stay visible
    ax.set_aspect("equal", adjustable="datalim")
    ax.grid(True, alpha=0.3)
    ax.set_xlabel("left <- y [m] -> right (robot frame)")
    ax.set_ylabel("x forward [m]")
    ax.set_title(f"Every plan in the robot frame (colour = time, {len(steps)} steps)")
    ax.legend(loc="best", fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def plot_latency(steps: list[Step], path: Path) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8, 3.5))
    t0 = steps[0].stamp
    times = [s.stamp - t0 for s in steps]
    ax.plot(times, [s.compute_ms for s in steps], ".-", lw=1, label="policy step (observe + plan)")
    for name in sorted({n for s in steps for n in s.timings_ms}):
        ax.plot([s.stamp - t0 for s in steps if name in s.timings_ms],
                [s.timings_ms[name] for s in steps if name in s.timings_ms], ".", ms=3, label=name)
    ax.set_xlabel("frame time [s]")
    ax.set_ylabel("ms")
    ax.set_title("Per-step latency")
    ax.grid(True, alpha=0.3)
    ax.legend(loc="best", fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def yaml_error_text(error) -> str:
    """One line for a PyYAML error: the problem and where ('expected ... at line 3, column 5')."""
    mark = getattr(error, "problem_mark", None)
    problem = getattr(error, "problem", None) or str(error).splitlines()[0]
    return f"{problem} at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else problem


def parse_values(items: list[str]) -> dict[str, Any]:
    import yaml

    values = {}
    for item in items:
        if "=" not in item:
            raise ConfigError(f"policy parameters are name=value, got {item!r}")
        key, text = item.split("=", 1)
        try:
            values[key.strip()] = yaml.safe_load(text)
        except yaml.YAMLError as error:
            raise ConfigError(f"-p {item}: the value is not valid YAML: {yaml_error_text(error)}") from None
    return values


def policy_node_parameters(params_file: Path) -> dict[str, Any]:
    """policy_node's ``ros__parameters`` in a params YAML (any namespace pattern, as params_file:= takes it)."""
    import yaml

    try:
        data = yaml.safe_load(Path(params_file).read_text(encoding="utf-8")) or {}
    except OSError as error:
        raise ConfigError(f"--params-file {params_file}: {error.strerror or error}") from None
    except yaml.YAMLError as error:
        raise ConfigError(f"--params-file {params_file}: not valid YAML: {yaml_error_text(error)}") from None
    for key, block in (data.items() if isinstance(data, dict) else ()):
        if str(key).rstrip("/").split("/")[-1] == "policy_node" and isinstance(block, dict):
            return dict(block.get("ros__parameters") or {})
    raise ConfigError(f"--params-file {params_file} has no policy_node block (ros__parameters)")


def policy_block(params_file: Path, policy: str) -> dict[str, Any]:
    """The ``<policy>:`` block of policy_node's parameters in a params YAML (as params_file:= takes it)."""
    values = policy_node_parameters(params_file).get(policy)
    if isinstance(values, dict):
        return values
    raise ConfigError(f"--params-file {params_file} has no policy_node block for policy {policy!r}")


def make_policy(name: str, values: dict):
    """registry.make_policy, with a checkpoint that cannot be loaded (missing files, wrong layout: each
    policy's CheckpointError) turned into a ConfigError: a one-line error (exit 2), not a traceback."""
    try:
        return registry.make_policy(name, values)
    except RuntimeError as error:
        if type(error).__name__ != "CheckpointError":  # policies/<name>/checkpoints.py, not imported here (torch)
            raise
        raise ConfigError(f"policy {name!r}: {error}") from error


def late_start_warnings(path: Path, odom_topic: Optional[str]) -> list[str]:
    """trials.recorded.bag_start_warnings: why the bag seems to start after the robot began moving
    (the recorder came late); [] when it cannot tell (the evaluation itself reports unreadable bags)."""
    from sparsevideonav_ros.trials.recorded import bag_start_warnings

    try:
        return bag_start_warnings(path, odom_topic)
    except (BagError, LookupError, ValueError):
        return []


def default_out(input_path: Path, policy: str) -> Path:
    stamp = datetime.datetime.now().strftime("%Y%m%d-%H%M%S")
    return Path("reports") / f"{stamp}-{stack.slugify(policy)}-{stack.slugify(input_path.stem) or 'input'}"


def evaluate(input_path: Path, policy_name: str, out: Path, instruction: str = "", rate_hz: Optional[float] = None,
             values: Optional[dict] = None, camera_height_m: float = 0.35, image_topic: Optional[str] = None,
             odom_topic: Optional[str] = None, video_fps: Optional[float] = None, max_steps: int = 0,
             write_video: bool = True, start: str = "aligned") -> dict:
    """Run the evaluation and write the report folder; returns the summary. Raises InputError (and
    bags.BagError, a RuntimeError too) for unusable input, ConfigError for a bad policy configuration
    or a checkpoint that cannot be loaded. Progress and a late-start warning go to stderr."""
    input_path = Path(input_path)
    if not input_path.exists():  # before the policy loads: a typo in the path must not cost a model load
        raise InputError(f"no such bag or video: {input_path}")
    policy = make_policy(policy_name, values or {})
    rate_hz = policy_rate_hz(type(policy), rate_hz, option="--rate")  # the policy's own rate, or refused
    if input_path.is_file() and input_path.suffix.lower() in VIDEO_SUFFIXES:
        episode = Episode(kind="video", path=str(input_path))
        events = video_events(input_path, video_fps, start, episode)
    else:
        episode = Episode(kind="bag", path=str(input_path))
        events = bag_events(input_path, episode, image_topic, odom_topic, start, rate_hz)
    start_warnings = late_start_warnings(input_path, odom_topic) if episode.kind == "bag" else []
    for warning in start_warnings:
        print(f"warning: {warning}", file=sys.stderr)
    renderer = OverlayRenderer(camera_height_m, instruction) if write_video else None
    started = time.perf_counter()
    progress = Progress(f"evaluate {policy_name}", unit="frames")
    steps = run_policy(events, episode, policy, rate_hz, instruction, renderer, max_steps, progress)
    elapsed = time.perf_counter() - started
    progress.finish(f"{len(steps)} steps")
    if not steps:
        raise InputError(f"{input_path}: no frame reached the policy ({episode.frames_total} frames, none decodable)")

    out.mkdir(parents=True, exist_ok=True)
    latency = latency_report(steps)
    (out / "latency.json").write_text(json.dumps(latency, indent=2))
    (out / "steps.json").write_text(json.dumps([s.to_json() for s in steps], indent=2))
    plot_plans(steps, episode, out / "plans.png", policy_name)
    plot_latency(steps, out / "latency.png")
    video_frames_written = 0
    if write_video:
        from sparsevideonav_ros.sources.file import write_video as write_mp4
        video_frames_written = write_mp4(out / "overlay.mp4", video_frames(steps, renderer, episode, policy_name),
                                         rate_hz)
    used_instruction = instruction or (episode.instructions[0][1] if episode.instructions else
                                       episode.status_instruction)
    states: dict[str, int] = {}
    for step in steps:
        states[step.state] = states.get(step.state, 0) + 1
    errors = [s for s in steps if s.error]
    summary = {
        "input": str(input_path), "kind": episode.kind, "topics": episode.topics, "policy": policy_name,
        "policy_config": policy.describe(), "instruction": used_instruction,
        "instruction_source": ("--instruction" if instruction else "bag instruction topic" if episode.instructions
                               else "recorded policy/status" if episode.status_instruction else "none"),
        "rate_hz": rate_hz, "frames_in_input": episode.frames_total, "steps": len(steps),
        "start_s": round(episode.start_s, 6), "start": episode.start_reason,
        "grid_anchor": episode.grid_anchor, "grid_matched_plan_frames": episode.grid_matches,
        "states": states, "plans": sum(1 for s in steps if s.state in DECIDING_STATES),
        "plans_with_waypoints": sum(1 for s in steps if len(s.waypoints)),
        "errors": len(errors), "first_error": errors[0].error if errors else "",
        "previews": sum(1 for s in steps if s.preview_jpeg), "odometry_messages": len(episode.odometry),
        "camera_intrinsics": "camera_info" if episode.intrinsics else "assumed 90 deg horizontal FOV",
        "camera_height_m": camera_height_m, "compute_ms": latency["compute_ms"],
        "versus_recorded": compare_with_recorded(steps, episode.recorded_plans),
        "video_frames": video_frames_written, "evaluation_wall_s": round(elapsed, 3),
        "bag_start_warnings": start_warnings,
    }
    (out / "summary.json").write_text(json.dumps(summary, indent=2, default=str))
    return summary


def waypoint_comparison_text(versus: dict) -> str:
    """The waypoint part of the 'versus recorded plans' line: the median difference, or why there is none."""
    if "median_position_difference_m" in versus:
        return (f"median waypoint difference {versus['median_position_difference_m']:.3f} m "
                f"(max {versus['max_position_difference_m']:.3f} m, {versus['within_5cm']} of "
                f"{versus['compared_waypoints']} within 5 cm)")
    if not versus.get("matched_frames"):
        return "no waypoints compared: no evaluated frame has a recorded plan"
    if versus.get("unequal_waypoint_counts"):
        return (f"no waypoints compared: the {versus['unequal_waypoint_counts']} matched plans that move have "
                f"a different number of waypoints than the recorded ones")
    return "no waypoints compared: in every matched frame one of the two plans is a stop"


def no_plan_message(summary: dict) -> str:
    """Why the evaluation produced no plan (exit 1), with what to do about it."""
    states = summary["states"]
    message = f"no plan: in {summary['steps']} steps the policy never planned (states {states})"
    if states.get("waiting_instruction"):
        message += (f"; it waited for an instruction ({summary['instruction_source']} gave "
                    f"{summary['instruction']!r}): give one with --instruction \"...\"")
    elif states.get("waiting_odometry"):
        message += (f"; it waited for odometry and the input has {summary['odometry_messages']} odometry messages"
                    + (" (a video has no odometry): evaluate a bag with odometry" if summary["kind"] == "video"
                       else ""))
    elif summary["errors"]:
        message += f"; first error: {summary['first_error']}"
    return message


def print_summary(summary: dict, out: Path) -> None:
    c = summary["compute_ms"]
    print(f"{summary['policy']} over {summary['input']} ({summary['kind']}): {summary['steps']} steps at "
          f"{summary['rate_hz']:g} FPS from {summary['frames_in_input']} frames; states {summary['states']}")
    print(f"instruction ({summary['instruction_source']}): {summary['instruction']!r}")
    print(f"step latency ms: p50 {c.get('p50', float('nan'))}  p95 {c.get('p95', float('nan'))}  "
          f"max {c.get('max', float('nan'))}  mean {c.get('mean', float('nan'))}  (n={c['count']})")
    versus = summary["versus_recorded"]
    if versus.get("recorded_plans"):
        print(f"versus recorded plans: {versus['matched_frames']} of {versus['recorded_plans_in_span']} recorded "
              f"planned frames in the evaluated span matched, {versus['same_stop_or_go']} same stop/go; "
              f"{waypoint_comparison_text(versus)}")
    if summary["errors"]:
        print(f"{summary['errors']} steps failed; first: {summary['first_error']}")
    print(f"report: {out.resolve()}")
    if not summary["plans"]:
        print(no_plan_message(summary), file=sys.stderr)


def main(argv: Optional[list[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("input", type=Path, help="rosbag2 folder / .mcap / .db3, or a video file")
    parser.add_argument("--policy", default="scripted", help=f"registered policy ({', '.join(registry.known_policies())})")
    parser.add_argument("--instruction", default="", help="instruction (default: the bag's)")
    parser.add_argument("-p", "--param", action="append", default=[], metavar="NAME=VALUE",
                        help="policy config value (YAML), e.g. -p horizon=3; repeatable; over --params-file")
    parser.add_argument("--params-file", type=Path,
                        help="params YAML (like params_file:=) whose policy_node '<policy>:' block configures the policy")
    parser.add_argument("--out", type=Path, help="report folder (default reports/<date>-<policy>-<input>)")
    parser.add_argument("--rate", type=float, help="policy frame rate (default: the policy's own, 4 FPS for "
                                                   "sparsevideonav and janusvln, which refuse any other; scripted 4)")
    parser.add_argument("--image-topic", help="camera topic when the bag has several")
    parser.add_argument("--odom-topic", help="odometry topic when the bag has several")
    parser.add_argument("--camera-height", type=float, default=0.35,
                        help="camera height above the ground (m) for drawing the plan on the frames")
    parser.add_argument("--video-fps", type=float, help="frame rate of a video that reports none")
    parser.add_argument("--start", default="aligned",
                        help="first frame for the policy: aligned (default: the frame the recorded policy planned "
                             "from first, on the recorded policy's 4 FPS grid, so both sample the same frames; the "
                             "first frame when there are no recorded plans) or seconds into the input")
    parser.add_argument("--max-steps", type=int, default=0, help="stop after this many policy steps (0 = all)")
    parser.add_argument("--no-video", action="store_true", help="skip overlay.mp4")
    options = parser.parse_args(argv)
    out = options.out or default_out(options.input, options.policy)
    try:
        if options.rate is not None and not options.rate > 0:
            raise ConfigError(f"--rate must be > 0, got {options.rate}")
        if options.start != "aligned":
            try:
                if not float(options.start) >= 0:
                    raise ValueError
            except ValueError:
                raise ConfigError(f"--start must be aligned or seconds >= 0, got {options.start!r}") from None
        values = policy_block(options.params_file, options.policy) if options.params_file else {}
        values.update(parse_values(options.param))
        summary = evaluate(options.input, options.policy, out, options.instruction, options.rate,
                           values, options.camera_height, options.image_topic,
                           options.odom_topic, options.video_fps, options.max_steps, not options.no_video,
                           options.start)
    except (InputError, ConfigError, BagError, PolicyError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    print_summary(summary, out)
    return 0 if summary["plans"] else 1


if __name__ == "__main__":
    sys.exit(main())
