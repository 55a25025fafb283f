"""Per-episode navigation metrics of the SparseVideoNav protocol, from what a bag recorded. Pure numpy.

Times are seconds on the bag's clock (each message's receive time, as the recorder wrote it);
positions in metres, angles in radians, in the odometry frame.

Definitions (docs/trials.md explains them for users):

- The episode starts at the first instruction message in the bag (the robot waits for it), else at
  the bag's start; the start pose is the last odometry at or before that instant (else the first).
- The robot *moves* while its odometry twist exceeds ``MotionThresholds.linear_mps`` or
  ``angular_radps`` (velocities from pose differences when the bag's odometry carries no twist).
- success: at rest at the end of the bag and within ``success_radius_m`` of the goal (the paper: the
  robot stops within 1.5 m of the target). SPL = success * shortest / max(path, shortest), shortest
  being the straight line start -> goal (no map here).
- time to stop: when the final rest began; stop-and-go: rests of at least ``min_stop_s`` between the
  first and the last motion.
- stopped by a stale plan / the watchdog / the e-stop: the share of the episode during which
  controller/status said ``stale`` / go2/status said ``timeout`` / ``estop`` (each status holds until
  the next one on its topic, at most ``state_hold_s``).
- plan latency: receive time of each planned frame's first path minus the frame's stamp.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Optional

import numpy as np

from sparsevideonav_ros.core import se2
from sparsevideonav_ros.core.pose_history import PoseHistory
from sparsevideonav_ros.trials.trial import Trial

# Controller and bridge states (controller_node / core.tracking, go2_bridge_node / core.watchdog)
# in which the robot is held still for the reason each metric names.
STALE_PLAN_STATE = "stale"  # controller: the newest plan is older than plan_timeout_s
WATCHDOG_STATE = "timeout"  # bridge: no cmd_vel for cmd_timeout_s
ESTOP_STATE = "estop"  # bridge: latched e-stop
SIM_BACKEND = "sim"  # go2/status backend of the kinematic sim robot, which starts at the odometry origin

# Offline: plan states that stand still without being the policy's decision that the goal is reached.
NOT_A_STOP_DECISION = ("waiting_instruction", "waiting_odometry", "warming_up", "loading", "pose_invalid", "error")


class MetricsError(ValueError):
    """The recording cannot give the metrics (e.g. no odometry)."""


@dataclass(frozen=True)
class MotionThresholds:
    linear_mps: float = 0.05  # body speed (m/s) above which the robot moves
    angular_radps: float = 0.1  # yaw rate (rad/s) above which the robot moves
    min_stop_s: float = 0.5  # a rest shorter than this between motions is not a stop (stop-and-go)
    origin_tolerance_m: float = 0.05  # the sim robot's first odometry farther than this from the origin: late bag
    state_hold_s: float = 1.5  # a status message holds its state at most this long (they come at 2 Hz)
    plan_stop_m: float = 0.1  # offline: a plan ending within this distance (m)...
    plan_stop_rad: float = 0.1  # ...and yaw (rad) of the robot stands still


@dataclass
class RecordedEpisode:
    """What a bag holds for the metrics (recorded.read_episode fills it; tests build it directly)."""

    path: str = ""
    bag_start_s: float = 0.0
    bag_end_s: float = 0.0
    odom_times: np.ndarray = field(default_factory=lambda: np.zeros(0))  # (N,) receive times (s)
    odom_stamps: np.ndarray = field(default_factory=lambda: np.zeros(0))  # (N,) header stamps (s)
    poses: np.ndarray = field(default_factory=lambda: np.zeros((0, 3)))  # (N, 3) x m, y m, yaw rad
    velocities: np.ndarray = field(default_factory=lambda: np.zeros((0, 3)))  # (N, 3) vx, vy m/s, wz rad/s (body)
    commands: np.ndarray = field(default_factory=lambda: np.zeros((0, 4)))  # (M, 4) time s, vx, vy, wz
    plans: list = field(default_factory=list)  # (receive time s, frame stamp s, waypoint count)
    controller_states: list = field(default_factory=list)  # (receive time s, state)
    bridge_states: list = field(default_factory=list)  # (receive time s, state)
    bridge_backend: str = ""  # go2/status 'backend' (sim | unitree)
    policy_name: str = ""  # policy/status 'policy'
    instructions: list = field(default_factory=list)  # (receive time s, text)
    first_frame_s: Optional[float] = None  # receive time of the first camera frame (s), None without frames
    topics: dict = field(default_factory=dict)  # role -> topic name


def percentiles_ms(latencies_s: list[float]) -> dict:
    if not latencies_s:
        return {"count": 0}
    values = np.asarray(latencies_s, dtype=float) * 1e3
    return {"p50": round(float(np.percentile(values, 50)), 2), "p95": round(float(np.percentile(values, 95)), 2),
            "max": round(float(values.max()), 2), "count": int(values.size)}


def plan_latencies_s(plans: list) -> list[float]:
    """Receive time - frame stamp of the first path received for each planned frame (s); a policy
    re-publishing its last plan between planning steps adds nothing."""
    first: dict[int, float] = {}
    for received, stamp, _ in plans:
        first.setdefault(int(round(stamp * 1e6)), received - stamp)
    return list(first.values())


def body_velocities(episode: RecordedEpisode) -> np.ndarray:
    """(N, 3) body velocities: the odometry twist, or pose differences when no sample carries a twist."""
    if len(episode.velocities) and np.any(np.abs(episode.velocities) > 0):
        return episode.velocities
    poses, stamps = episode.poses, episode.odom_stamps
    velocities = np.zeros((len(poses), 3))
    if len(poses) > 1:
        dt = np.diff(stamps)
        dt[dt <= 0] = np.inf
        delta = np.diff(poses, axis=0)
        yaw = poses[:-1, 2]
        # world-frame displacement into the body frame of the earlier pose
        forward = (np.cos(yaw) * delta[:, 0] + np.sin(yaw) * delta[:, 1]) / dt
        left = (-np.sin(yaw) * delta[:, 0] + np.cos(yaw) * delta[:, 1]) / dt
        turn = np.arctan2(np.sin(delta[:, 2]), np.cos(delta[:, 2])) / dt
        velocities[1:] = np.column_stack([forward, left, turn])
    return velocities


def moving_mask(velocities: np.ndarray, thresholds: MotionThresholds) -> np.ndarray:
    return ((np.hypot(velocities[:, 0], velocities[:, 1]) > thresholds.linear_mps)
            | (np.abs(velocities[:, 2]) > thresholds.angular_radps))


def rests(times: np.ndarray, moving: np.ndarray) -> list[tuple[int, int]]:
    """(first, last) sample indices of each run of samples at rest."""
    result, start = [], None
    for index, is_moving in enumerate(moving):
        if not is_moving and start is None:
            start = index
        elif is_moving and start is not None:
            result.append((start, index - 1))
            start = None
    if start is not None:
        result.append((start, len(moving) - 1))
    return result


def state_durations(states: list, start_s: float, end_s: float, hold_s: float) -> dict[str, float]:
    """Seconds spent in each state within [start_s, end_s]: a state holds from its message until the
    next one, at most hold_s (after that the state is unknown and counts for none)."""
    durations: dict[str, float] = {}
    for index, (time_s, state) in enumerate(states):
        until = states[index + 1][0] if index + 1 < len(states) else end_s
        begin, finish = max(time_s, start_s), min(until, time_s + hold_s, end_s)
        if finish > begin:
            durations[state] = durations.get(state, 0.0) + finish - begin
    return durations


def late_start_warnings(episode: RecordedEpisode, thresholds: MotionThresholds = MotionThresholds()) -> list[str]:
    """Why the bag seems to start after the robot began moving (empty when nothing says so).

    The recorder may subscribe late (discovery): the start pose, path length and times are then wrong.
    """
    warnings: list[str] = []
    if not len(episode.poses):
        return warnings
    first_time = float(episode.odom_times[0])
    into_bag = first_time - episode.bag_start_s
    velocity = body_velocities(episode)[0]
    if moving_mask(velocity[None, :], thresholds)[0]:
        warnings.append(f"the bag starts after motion began: its first odometry ({into_bag:.2f} s into the bag) "
                        f"already moves at {math.hypot(velocity[0], velocity[1]):.2f} m/s, {velocity[2]:.2f} rad/s")
    offset = float(np.hypot(*episode.poses[0, :2]))
    if episode.bridge_backend == SIM_BACKEND and (offset > thresholds.origin_tolerance_m
                                                  or abs(episode.poses[0, 2]) > thresholds.angular_radps):
        warnings.append(f"the bag starts after motion began: its first odometry ({into_bag:.2f} s into the bag) is "
                        f"{offset:.2f} m and {episode.poses[0, 2]:.2f} rad from the odometry origin, where the sim "
                        f"robot starts")
    commands = episode.commands
    moving_commands = commands[(np.abs(commands[:, 1:]) > 1e-6).any(axis=1)] if len(commands) else commands
    if len(moving_commands) and moving_commands[0, 0] < first_time:
        warnings.append(f"the bag starts after motion began: cmd_vel was nonzero "
                        f"{first_time - moving_commands[0, 0]:.2f} s before the first odometry "
                        f"({into_bag:.2f} s into the bag)")
    if episode.first_frame_s is not None:
        before = episode.odom_times <= episode.first_frame_s
        moved = float(np.hypot(*(episode.poses[before][-1, :2] - episode.poses[0, :2]))) if before.any() else 0.0
        if moved > thresholds.origin_tolerance_m:
            warnings.append(f"the camera frames start {episode.first_frame_s - episode.bag_start_s:.2f} s into the "
                            f"bag, after the robot had moved {moved:.2f} m: a replay or offline evaluation of this "
                            f"bag starts mid-run")
    return warnings


def episode_metrics(episode: RecordedEpisode, trial: Trial,
                    thresholds: MotionThresholds = MotionThresholds()) -> dict:
    """The metrics of one recorded episode against its trial (see the module docstring); JSON-ready."""
    goal = trial.require_goal()
    if len(episode.poses) == 0:
        raise MetricsError(f"{episode.path or 'the bag'} has no odometry: the metrics need the robot's poses "
                           f"(nav_msgs/Odometry on odom); the bag has {', '.join(episode.topics.values()) or 'no topics'}")
    times = episode.odom_times
    if episode.instructions:
        start_s, origin = float(episode.instructions[0][0]), "first instruction"
    else:
        start_s, origin = float(episode.bag_start_s), "bag start (no instruction message recorded)"
    end_s = max(float(episode.bag_end_s), float(times[-1]))
    at_start = np.flatnonzero(times <= start_s)
    first = int(at_start[-1]) if len(at_start) else 0
    start_pose = episode.poses[first]
    goal_pose = goal.in_odom(start_pose)
    poses = episode.poses[first:]
    window_times = times[first:]
    moving = moving_mask(body_velocities(episode)[first:], thresholds)
    final_pose = poses[-1]
    final_distance = float(np.hypot(*(final_pose[:2] - goal_pose[:2])))
    path_length = float(np.linalg.norm(np.diff(poses[:, :2], axis=0), axis=1).sum()) if len(poses) > 1 else 0.0
    shortest = float(np.hypot(*(goal_pose[:2] - start_pose[:2])))
    stopped_at_end = not bool(moving[-1])
    success = stopped_at_end and final_distance <= trial.success_radius_m
    spl = (1.0 if shortest == 0 else shortest / max(path_length, shortest)) if success else 0.0

    moving_indices = np.flatnonzero(moving)
    time_to_first_motion = time_to_stop = None
    stop_and_go = 0
    if len(moving_indices):
        first_motion, last_motion = int(moving_indices[0]), int(moving_indices[-1])
        time_to_first_motion = float(window_times[first_motion]) - start_s
        if stopped_at_end:
            time_to_stop = float(window_times[last_motion + 1]) - start_s
        for begin, finish in rests(window_times, moving):
            if first_motion < begin and finish < last_motion:
                rest_s = float(window_times[finish + 1] - window_times[begin])  # until motion resumed
                stop_and_go += rest_s >= thresholds.min_stop_s

    duration = end_s - start_s
    controller = state_durations(episode.controller_states, start_s, end_s, thresholds.state_hold_s)
    bridge = state_durations(episode.bridge_states, start_s, end_s, thresholds.state_hold_s)

    def share(seconds: float) -> float:
        return round(seconds / duration, 4) if duration > 0 else 0.0

    why = ("reached: at rest within the success radius" if success else
           "still moving at the end of the bag" if not stopped_at_end else
           f"stopped {final_distance - trial.success_radius_m:.2f} m outside the success radius")
    heading_error = (None if math.isnan(goal_pose[2]) else
                     round(float(abs(math.atan2(math.sin(final_pose[2] - goal_pose[2]),
                                                math.cos(final_pose[2] - goal_pose[2])))), 4))
    return {
        "bag": episode.path, "policy": episode.policy_name, "scene": trial.scene, "task": trial.task,
        "trial_index": trial.trial_index, "instruction": trial.instruction,
        "success": bool(success), "outcome": why, "success_radius_m": trial.success_radius_m,
        "final_distance_m": round(final_distance, 4), "final_heading_error_rad": heading_error,
        "path_length_m": round(path_length, 4), "shortest_path_m": round(shortest, 4), "spl": round(spl, 4),
        "time_to_first_motion_s": None if time_to_first_motion is None else round(time_to_first_motion, 3),
        "time_to_stop_s": None if time_to_stop is None else round(time_to_stop, 3),
        "stopped_at_end": stopped_at_end, "stop_and_go_count": int(stop_and_go),
        "episode_duration_s": round(duration, 3), "episode_start": origin,
        "stale_plan_fraction": share(controller.get(STALE_PLAN_STATE, 0.0)),
        "watchdog_fraction": share(bridge.get(WATCHDOG_STATE, 0.0)),
        "estop_fraction": share(bridge.get(ESTOP_STATE, 0.0)),
        "controller_state_fractions": {k: share(v) for k, v in sorted(controller.items())},
        "bridge_state_fractions": {k: share(v) for k, v in sorted(bridge.items())},
        "plan_latency_ms": percentiles_ms(plan_latencies_s(episode.plans)),
        "start_pose": np.round(start_pose, 4).tolist(), "final_pose": np.round(final_pose, 4).tolist(),
        "goal_odom": [round(float(v), 4) if not math.isnan(v) else None for v in goal_pose],
        "goal": goal.to_json(), "warnings": late_start_warnings(episode, thresholds),
    }


# -- offline evaluation against the recorded run ----------------------------------------------

def offline_metrics(steps: list[dict], odom_stamps: np.ndarray, poses: np.ndarray, goal_xy: np.ndarray,
                    success_radius_m: float, start_pose: Optional[np.ndarray] = None,
                    thresholds: MotionThresholds = MotionThresholds()) -> dict:
    """How a policy evaluated offline on a bag (tools/evaluate steps.json: stamp, state, waypoints in the
    robot frame at the frame's stamp) would have done along the recorded odometry.

    The robot did not follow this policy, so nothing here is a driven outcome: the policy's first *stop
    decision* after its first moving plan is taken where the recorded robot was at that frame (state
    ``done``, or a plan that stands still in a state other than NOT_A_STOP_DECISION), and counts as an
    offline success within ``success_radius_m`` of the goal. A warning says when the policy's first frame
    is away from ``start_pose`` (the episode's start): the bag's frames begin mid-run. goal_progress_m: how much closer to the
    goal each moving plan's end is than the robot at its frame (m, median; > 0 heads for the goal).
    """
    history = PoseHistory(horizon_s=1e9)
    for stamp, pose in zip(odom_stamps, poses):
        history.add(float(stamp), pose)
    goal_xy = np.asarray(goal_xy[:2], dtype=float)
    progress, inside, inside_stops, premature = [], 0, 0, 0
    first_motion: Optional[int] = None
    first_pose: Optional[np.ndarray] = None
    decision: Optional[tuple[int, float]] = None  # (step index, distance to the goal then)
    states: dict[str, int] = {}
    for index, step in enumerate(steps):
        waypoints = np.asarray(step["waypoints"], dtype=float).reshape(-1, 3)
        state = step.get("state", "")
        states[state] = states.get(state, 0) + 1
        stands_still = (len(waypoints) == 0 or (np.hypot(*waypoints[-1, :2]) <= thresholds.plan_stop_m
                                                  and abs(waypoints[-1, 2]) <= thresholds.plan_stop_rad))
        try:
            pose = history.pose_at(float(step["stamp"]))
        except LookupError:
            continue  # no recorded odometry at this frame
        first_pose = pose if first_pose is None else first_pose
        distance = float(np.hypot(*(pose[:2] - goal_xy)))
        if not stands_still:
            if first_motion is None:
                first_motion = index
            end = se2.compose(pose, waypoints[-1])
            progress.append(distance - float(np.hypot(*(end[:2] - goal_xy))))
            continue
        if first_motion is None or state in NOT_A_STOP_DECISION:
            continue
        if decision is None:
            decision = (index, distance)
        if distance <= success_radius_m:
            inside_stops += 1
        else:
            premature += 1
    for step in steps[first_motion:] if first_motion is not None else ():
        try:
            pose = history.pose_at(float(step["stamp"]))
        except LookupError:
            continue
        inside += float(np.hypot(*(pose[:2] - goal_xy))) <= success_radius_m
    compute = [float(s.get("compute_ms", 0.0)) for s in steps]
    warnings = []
    if start_pose is not None and first_pose is not None:
        offset = float(np.hypot(*(first_pose[:2] - np.asarray(start_pose)[:2])))
        if offset > thresholds.origin_tolerance_m:
            warnings.append(f"the policy's first frame is {offset:.2f} m from the episode's start pose: the bag's "
                            f"frames begin after the robot moved, so the policy starts mid-run")
    return {
        "steps": len(steps), "states": states,
        "first_moving_plan_step": first_motion,
        "stop_decision_step": None if decision is None else decision[0],
        "stop_decision_distance_m": None if decision is None else round(decision[1], 4),
        "offline_success": bool(decision is not None and decision[1] <= success_radius_m),
        "goal_progress_m": round(float(np.median(progress)), 4) if progress else None,
        "plans_toward_goal_fraction": round(float(np.mean(np.asarray(progress) > 0)), 4) if progress else None,
        "steps_within_radius": int(inside), "stops_within_radius": int(inside_stops),
        "stops_outside_radius": int(premature),
        "compute_ms": {"p50": round(float(np.percentile(compute, 50)), 2),
                       "p95": round(float(np.percentile(compute, 95)), 2)} if compute else {},
        "warnings": warnings,
    }

