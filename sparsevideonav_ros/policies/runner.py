"""One frame pipeline for every caller of a policy: policy_node, evaluate, train_action_head, benches.

Plain Python (no rclpy, no torch): the policy's own module imports torch, this one only drives it.

Two sides, so that a ROS callback never waits on the model:

* the **input side** (any thread, returns at once): :meth:`PolicyRunner.wants_frame` /
  :meth:`~PolicyRunner.add_frame` sample the camera stream on the policy's time grid
  (core/frame_sampler.py) and look the odometry pose up at the frame's stamp (core/pose_history.py);
  :meth:`~PolicyRunner.add_odometry`, :meth:`~PolicyRunner.set_instruction` and
  :meth:`~PolicyRunner.reset` only queue. Sampled frames wait in a bounded queue; when it is full the
  oldest is dropped and counted (``frames_dropped``).
* the **worker side** (one thread, or the caller's loop offline): :meth:`~PolicyRunner.load` builds
  the policy (weights load here, after the node is up), :meth:`~PolicyRunner.process` applies queued
  instructions and resets and feeds queued frames to the policy, in arrival order.

Planning cadence. A policy plans from the frames its ``plans_at(n)`` names (n = frames observed since
reset, counting the frame itself): SparseVideoNav every 4th frame, on the VAE chunk grid; JanusVLN
its action-step frames; scripted every frame. The worker takes every frame queued while the policy
was busy, and plans at the **newest frame of that batch the policy plans at** (the newest chunk
boundary crossed): older frames of the batch are observed before it, newer ones after it (they are
history for the next plan). Older boundaries of the same batch are not planned: their plan would be
superseded before it was published. So a boundary crossed while the policy was busy is never lost,
plans stay on the chunk grid, and with compute c below the chunk period P every boundary is
planned: the newest plan is at most P + c old (SparseVideoNav at 4 FPS: 1 s + c, within the
controller's 2 s plan_timeout_s while c <= 1 s). A batch that crosses no boundary is stepped on its
newest frame, and the policy's own rule answers (SparseVideoNav repeats its last plan, or makes its
first one).

Reset race: reset() empties the queue and bumps an episode counter at once; a batch the worker had
already taken finishes against the old episode, its plan is discarded (never returned), and the
policy is reset before it sees any later frame.
"""
from __future__ import annotations

import collections
import itertools
import logging
import math
import threading
import time
from dataclasses import dataclass
from typing import Callable, Optional

import numpy as np

from sparsevideonav_ros.configs import ConfigError
from sparsevideonav_ros.core.frame_sampler import FrameSampler
from sparsevideonav_ros.core.pose_history import PoseHistory
from sparsevideonav_ros.policies.base import Observation, Plan, Policy, PolicyError

LOADING, READY, FAILED = "loading", "ready", "failed"
PLAN_RATE_WINDOW_S = 10.0  # frame time over which policy/status reports the achieved plan rate

log = logging.getLogger("sparsevideonav_ros.policies.runner")


def policy_rate_hz(policy_class: type, requested_hz: Optional[float] = None, option: str = "history_rate_hz") -> float:
    """The frame rate the runner samples at: the policy's own (``frame_rate_hz``), else ``requested_hz``
    (a policy that declares none takes any rate), else 4 FPS. A requested rate that contradicts the
    policy's is a ConfigError naming ``option``: the policy would see frames spaced unlike those it was
    trained on."""
    declared = getattr(policy_class, "frame_rate_hz", None)
    if declared is not None:
        if requested_hz is not None and not math.isclose(requested_hz, declared, rel_tol=1e-9):
            raise ConfigError(f"{option} {requested_hz:g} contradicts policy {policy_class.name!r}, which "
                              f"runs at {declared:g} FPS: set {option} {declared:g} (or leave it out)")
        return float(declared)
    return float(requested_hz) if requested_hz is not None else 4.0


@dataclass
class Step:
    """One policy step as the worker ran it.

    observation: the frame stepped on. plan: its plan (None when the step failed; a stop is due).
    new: the policy made this plan now (False: it repeated an earlier plan, whose stamp is older).
    compute_s: seconds of policy work for this batch (observe + plan). error: why the step failed.
    epoch: the episode (reset count) it belongs to: a step of an older episode is never published.
    """

    observation: Observation
    plan: Optional[Plan]
    new: bool
    compute_s: float
    error: str = ""
    epoch: int = 0


class PolicyRunner:
    """Drives one policy; see the module docstring for the two sides and the cadence rule.

    policy_class: the Policy subclass (its ``frame_rate_hz`` sets the grid before the weights load).
    make_policy: () -> Policy, called by load() on the worker side.
    rate_hz: a requested history rate (must match the policy's own, see policy_rate_hz).
    max_pending_frames: sampled frames queued for a busy policy before the oldest is dropped.
    grid_anchor_s: > 0 starts the sampling grid there (a replay samples the recorded run's frames).
    instruction: applied right after loading (empty = none yet).
    report_error / log_info: (message) -> None, called from either side (a node forwards them to its log).
    clock: seconds, for compute times (time.perf_counter; tests pass a fake one).
    step: (policy, observation) -> Plan for the frame planned at (default ``policy.step``); the action-head
      trainer imagines the future there instead of planning.
    """

    def __init__(self, policy_class: type, make_policy: Callable[[], Policy], rate_hz: Optional[float] = None,
                 max_pending_frames: int = 64, grid_anchor_s: float = 0.0, odometry_horizon_s: float = 10.0,
                 instruction: str = "", report_error: Optional[Callable[[str], None]] = None,
                 log_info: Optional[Callable[[str], None]] = None, clock: Callable[[], float] = time.perf_counter,
                 step: Optional[Callable[[Policy, Observation], Plan]] = None):
        if max_pending_frames < 1:
            raise ConfigError(f"max_pending_frames must be >= 1, got {max_pending_frames}")
        self.policy_name: str = policy_class.name
        self.rate_hz = policy_rate_hz(policy_class, rate_hz)
        self._make_policy = make_policy
        self.max_pending_frames = int(max_pending_frames)
        self.report_error = report_error or (lambda message: log.error(message))
        self.log_info = log_info or (lambda message: log.info(message))
        self.clock = clock
        self._step = step or (lambda policy, observation: policy.step(observation))
        self.policy: Optional[Policy] = None
        self.state = LOADING
        self.load_error: Optional[BaseException] = None

        self._lock = threading.Lock()  # input side state only; never held while the policy runs
        self._wake = threading.Event()
        self._sampler = FrameSampler(rate_hz=self.rate_hz)
        if grid_anchor_s > 0:
            self.anchor_grid(float(grid_anchor_s))
        self._odometry = PoseHistory(horizon_s=odometry_horizon_s)
        self._frames: collections.deque = collections.deque()  # (seq, epoch, Observation)
        self._commands: list = []  # (seq, epoch, kind, text)
        self._seq = itertools.count()
        self._epoch = 0  # bumped by reset(): work of an older epoch is stale
        self._observed = 0  # frames the policy observed since its last reset (worker side)
        self._last_plan: Optional[Plan] = None
        self._new_plan_stamps: collections.deque = collections.deque()
        self._first_frame_stamp: Optional[float] = None
        self._newest_frame_stamp: Optional[float] = None
        self.busy_with = ""  # what the worker is doing now ('' = idle), for status
        self.instruction = ""
        self.last_compute_s = math.nan
        self.counters = collections.Counter({key: 0 for key in (
            "frames_sampled", "frames_dropped", "frames_discarded_by_reset", "odometry_received",
            "plans", "new_plans", "instructions", "resets", "policy_errors")})
        if instruction.strip():
            self.set_instruction(instruction)

    # -- input side (any thread; returns at once) ------------------------------------------------
    def anchor_grid(self, stamp: float) -> None:
        """Start the sampling grid at ``stamp`` (s) as if a frame had been sampled there: a replay or an
        evaluation samples the frames the recorded run sampled (FrameSampler.anchor_at)."""
        with self._lock:
            self._sampler.anchor_at(stamp)

    def wants_frame(self, stamp: float) -> bool:
        """Would a frame stamped ``stamp`` (s) be sampled? Lets a caller skip decoding dropped frames."""
        with self._lock:
            return self._sampler.would_accept(stamp)

    def add_frame(self, stamp: float, rgb: np.ndarray, frame_id: str = "camera_link",
                  depth: Optional[np.ndarray] = None, camera_matrix: Optional[np.ndarray] = None) -> bool:
        """Offer a decoded (H, W, 3) uint8 frame; True when it was sampled and queued for the policy.

        Its odometry pose is looked up now (poses received up to this frame, as on the robot); none
        known leaves ``odom_pose`` None. Raises PolicyError for an rgb array of the wrong shape/dtype.
        """
        with self._lock:
            if not self._sampler.offer(stamp):
                return False
            try:
                odom_pose = self._odometry.pose_at(stamp)
            except LookupError:
                odom_pose = None  # policies that need odometry say so themselves
            observation = Observation(stamp=float(stamp), rgb=rgb, frame_id=frame_id, odom_pose=odom_pose,
                                      depth=depth, camera_matrix=camera_matrix)
            self._frames.append((next(self._seq), self._epoch, observation))
            if len(self._frames) > self.max_pending_frames:
                self._frames.popleft()
                self.counters["frames_dropped"] += 1
            self.counters["frames_sampled"] += 1
            if self._first_frame_stamp is None:
                self._first_frame_stamp = float(stamp)
            self._newest_frame_stamp = float(stamp)
        self._wake.set()
        return True

    def add_odometry(self, stamp: float, pose) -> None:
        """Store a (3,) pose (x m, y m, yaw rad) at ``stamp`` (s); ValueError when non-finite."""
        with self._lock:
            self._odometry.add(stamp, pose)
            self.counters["odometry_received"] += 1

    @staticmethod
    def check_instruction(text: str) -> str:
        """The stripped instruction, or PolicyError when it is empty (refused before queuing)."""
        if not isinstance(text, str) or not text.strip():
            raise PolicyError("instruction is empty; send a non-empty std_msgs/String on 'instruction'")
        return text.strip()

    def set_instruction(self, text: str) -> None:
        """Queue an instruction for the worker (SparseVideoNav encodes it with umT5 there: seconds on a
        CPU). An empty one raises PolicyError here; a policy's own refusal is reported by the worker."""
        text = self.check_instruction(text)
        with self._lock:
            self._commands.append((next(self._seq), self._epoch, "instruction", text))
        self._wake.set()

    def reset(self) -> None:
        """Start a new episode: queued frames are discarded, the sampling grid restarts at the next
        frame, a batch the worker already holds is not observed afterwards (module docstring)."""
        with self._lock:
            self.counters["frames_discarded_by_reset"] += len(self._frames)
            self._frames.clear()
            self._epoch += 1
            self._sampler.reset()
            self._commands.append((next(self._seq), self._epoch, "reset", ""))
            self._new_plan_stamps.clear()
            self._first_frame_stamp = self._newest_frame_stamp = None
        self._wake.set()

    @property
    def pending_frames(self) -> int:
        with self._lock:
            return len(self._frames)

    # -- worker side ----------------------------------------------------------------------------
    def load(self) -> bool:
        """Build the policy (weights load here). False, with ``load_error`` and state 'failed', if it raised."""
        self.busy_with = "loading"
        try:
            policy = self._make_policy()
        except Exception as error:  # noqa: BLE001 - any load failure ends the node; the caller decides how
            self.load_error = error
            self.state = FAILED
            self.busy_with = ""
            return False
        self.policy = policy
        summary = policy.load_summary()
        # Which weights drive the robot belongs in the node's log (Python logging is not shown there).
        self.log_info(f"policy {policy.name!r} loaded" + (f": {summary}" if summary else ""))
        self.state = READY
        self.busy_with = ""
        self._wake.set()  # frames queued while loading are waiting
        return True

    def wait(self, timeout_s: float) -> bool:
        """Block until input arrived (or ``timeout_s``); True when there may be work."""
        woke = self._wake.wait(timeout=timeout_s)
        self._wake.clear()
        return woke

    def process(self) -> list[Step]:
        """Apply everything queued so far, in arrival order; returns the steps to publish.

        Each run of consecutive frames is one batch (cadence rule in the module docstring);
        instructions and resets between them are applied where they arrived. Nothing is done before
        load() succeeded (frames wait in the bounded queue).
        """
        if self.policy is None:
            return []
        with self._lock:
            frames, self._frames = list(self._frames), collections.deque()
            commands, self._commands = self._commands, []
        items = sorted([(seq, "frame", epoch, obs) for seq, epoch, obs in frames]
                       + [(seq, kind, epoch, text) for seq, epoch, kind, text in commands], key=lambda item: item[0])
        steps: list[Step] = []
        batch: list[Observation] = []
        batch_epoch = None
        for _, kind, epoch, payload in items:
            if kind == "frame" and (batch_epoch is None or epoch == batch_epoch):
                batch.append(payload)
                batch_epoch = epoch
                continue
            if batch:
                steps.extend(self._run_batch(batch, batch_epoch))
                batch, batch_epoch = [], None
            if kind == "frame":
                batch, batch_epoch = [payload], epoch
            else:
                self._apply_command(kind, epoch, payload)
        if batch:
            steps.extend(self._run_batch(batch, batch_epoch))
        return steps

    def _apply_command(self, kind: str, epoch: int, text: str) -> None:
        policy = self.policy
        if kind == "reset":
            self.busy_with = "reset"
            try:
                policy.reset()
            finally:
                self.busy_with = ""
            self._observed = 0
            self._last_plan = None
            self.counters["resets"] += 1
            return
        self.busy_with = "set_instruction"
        try:
            policy.set_instruction(text)
        except Exception as error:  # noqa: BLE001 - a refused instruction is reported, the node goes on
            self.report_error(f"instruction refused: {error}")
            return
        finally:
            self.busy_with = ""
        self.instruction = policy.instruction
        self.counters["instructions"] += 1
        self.log_info(f"instruction: {self.instruction!r}")

    def _plan_index(self, count: int) -> int:
        """Index in a batch of ``count`` frames to plan at: the newest the policy plans at, else the newest."""
        due = [i for i in range(count) if self.policy.plans_at(self._observed + i + 1)]
        return due[-1] if due else count - 1

    def _run_batch(self, batch: list[Observation], epoch: int) -> list[Step]:
        if epoch != self._current_epoch():
            with self._lock:
                self.counters["frames_discarded_by_reset"] += len(batch)
            return []
        policy = self.policy
        index = self._plan_index(len(batch))
        started = self.clock()
        self.busy_with = "step"
        try:
            for observation in batch[:index]:
                policy.observe(observation)
                self._observed += 1
            plan = self._step(policy, batch[index])
            self._observed += 1
            for observation in batch[index + 1:]:
                policy.observe(observation)
                self._observed += 1
        except Exception as error:  # noqa: BLE001 - any policy failure must stop the robot, and be visible
            self.busy_with = ""
            self.counters["policy_errors"] += 1
            message = f"policy {self.policy_name} failed: {type(error).__name__}: {error}"
            self.report_error(message)
            return [Step(batch[index], None, False, self.clock() - started, message, epoch)]
        finally:
            self.busy_with = ""
        compute_s = self.clock() - started
        if epoch != self._current_epoch():
            # reset() came while this batch ran: its plan belongs to the old episode and is never returned
            with self._lock:
                self.counters["frames_discarded_by_reset"] += len(batch)
            return []
        new = plan is not self._last_plan  # a policy repeats its last plan between planning frames
        self._last_plan = plan
        self.counters["plans"] += 1
        if new:
            self.counters["new_plans"] += 1
            self.last_compute_s = compute_s
            if plan.state == "ok":  # the rate of trajectories; a policy waiting stands still every frame
                with self._lock:
                    self._new_plan_stamps.append(plan.stamp)
        return [Step(batch[index], plan, new, compute_s, epoch=epoch)]

    def _current_epoch(self) -> int:
        with self._lock:
            return self._epoch

    def serve(self, stop: threading.Event, publish: Callable[[Step], None], poll_s: float = 0.1) -> None:
        """Worker loop for a node: load, then process queued input until ``stop`` is set.

        A load failure, or anything else that escapes the worker (a reset that raises, a publish that
        fails), leaves ``state`` 'failed' and ``load_error`` set and returns: the node ends rather than
        go on reporting status with a worker that no longer plans. Steps of an episode that a reset()
        ended while later batches ran are dropped here, just before publishing."""
        try:
            if not self.load():
                return
            while not stop.is_set():
                if not self.wait(poll_s):
                    continue
                for step in self.process():
                    if stop.is_set():
                        return
                    if step.epoch != self._current_epoch():
                        continue  # a reset came while a later batch of this process() ran
                    publish(step)
        except Exception as error:  # noqa: BLE001 - the worker must not die silently
            self.load_error = error
            self.state = FAILED
            self.report_error(f"policy worker stopped: {type(error).__name__}: {error}")

    # -- status -----------------------------------------------------------------------------------
    def plan_rate_hz(self) -> float:
        """New trajectories (plans in state 'ok') per second of frame time over the last
        PLAN_RATE_WINDOW_S of sampled frames (NaN before the first frame). SparseVideoNav at 4 FPS
        keeping its cadence: 1.0."""
        with self._lock:
            newest, first = self._newest_frame_stamp, self._first_frame_stamp
            if newest is None:
                return math.nan
            while self._new_plan_stamps and self._new_plan_stamps[0] <= newest - PLAN_RATE_WINDOW_S:
                self._new_plan_stamps.popleft()
            span = min(PLAN_RATE_WINDOW_S, newest - first + 1.0 / self.rate_hz)
            return len(self._new_plan_stamps) / span

    def status_values(self) -> dict[str, object]:
        """policy/status key/values of the pipeline (counters, queue, cadence, what the worker does)."""
        policy = self.policy
        rate = self.plan_rate_hz()
        with self._lock:
            counters = dict(self.counters)
            pending = len(self._frames)
        return {"runner_state": self.state, "busy_with": self.busy_with or "idle", "history_rate_hz": f"{self.rate_hz:g}",
                "plan_rate_hz": "" if math.isnan(rate) else f"{rate:.2f}", "pending_frames": pending,
                "history_length": policy.history_length if policy is not None else 0,
                **{key: value for key, value in sorted(counters.items())},
                **(policy.status_values() if policy is not None else {})}
