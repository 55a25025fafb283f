"""PolicyRunner (policies/runner.py): cadence under slow steps, callbacks that never wait, reset race.

The cadence tests run on a fake clock: a test policy "takes" its step time by advancing it, and
frames are handed over as they would have arrived meanwhile, so the test is exact and fast. The
threaded tests block a test policy on events (never on wall-clock sleeps) and assert orders and counts.
"""
from __future__ import annotations

import threading
import time
from dataclasses import dataclass

import numpy as np
import pytest

from sparsevideonav_ros.configs import ConfigError, ControllerNodeConfig
from sparsevideonav_ros.policies.base import Plan, Policy
from sparsevideonav_ros.policies.runner import FAILED, LOADING, READY, PolicyRunner, policy_rate_hz
from sparsevideonav_ros.policies.scripted.policy import ScriptedPolicy

RGB = np.zeros((8, 8, 3), np.uint8)
PERIOD_S = 0.25  # 4 FPS
PLAN_TIMEOUT_S = ControllerNodeConfig().plan_timeout_s  # 2 s: the controller stops on an older plan
MIN_FRAMES, CHUNK = 12, 4


class FakeClock:
    def __init__(self) -> None:
        self.t = 0.0

    def __call__(self) -> float:
        return self.t


@dataclass
class ChunkConfig:
    plan_s: float = 0.1


class ChunkPolicy(Policy):
    """Plans like SparseVideoNav: from frame 12 on, only on every 4th frame (its chunk grid), repeating
    its last plan in between; a new plan costs ``plan_s`` seconds of the fake clock."""

    name = "chunk_test"
    config_class = ChunkConfig
    frame_rate_hz = 4.0
    chunk_frames = CHUNK

    def __init__(self, config: ChunkConfig, clock: FakeClock) -> None:
        super().__init__(config)
        self.clock = clock
        self.reset()

    def reset(self) -> None:
        self.seen: list[float] = []
        self.last = None

    def plans_at(self, frames_seen: int) -> bool:
        return frames_seen % CHUNK == 0

    def observe(self, observation) -> None:
        self.seen.append(observation.stamp)

    def plan(self) -> Plan:
        if len(self.seen) < MIN_FRAMES:
            return Plan.stand_still(self.seen[-1], "warming_up")
        if len(self.seen) % CHUNK and self.last is not None:
            return self.last
        self.clock.t += self.config.plan_s
        self.last = Plan(stamp=self.seen[-1], waypoints=np.zeros((1, 3)))
        return self.last


def simulate(plan_s: float, seconds: float = 40.0):
    """Frames at 4 FPS into a runner whose policy steps take ``plan_s``; the worker takes whatever queued
    while it was busy. Returns (runner, published [(time s, plan stamp)], newest boundary frame stamp
    available when each new plan's batch was taken)."""
    clock = FakeClock()
    runner = PolicyRunner(ChunkPolicy, lambda: ChunkPolicy(ChunkConfig(plan_s), clock), clock=clock)
    assert runner.load()
    runner.set_instruction("go to the door")
    stamps = [i * PERIOD_S for i in range(int(seconds / PERIOD_S))]
    published, newest_boundary = [], []
    arrived = 0
    while arrived < len(stamps) or runner.pending_frames:
        while arrived < len(stamps) and stamps[arrived] <= clock.t + 1e-9:
            assert runner.add_frame(stamps[arrived], RGB)
            arrived += 1
        if not runner.pending_frames:
            clock.t = stamps[arrived]  # idle until the next frame
            continue
        boundaries = [stamps[i] for i in range(arrived) if (i + 1) % CHUNK == 0 and i + 1 >= MIN_FRAMES]
        for step in runner.process():
            if step.new and step.plan.state == "ok":
                published.append((clock.t, step.plan.stamp))
                newest_boundary.append(boundaries[-1])
    return runner, published, stamps, newest_boundary


def boundary_stamps(stamps):
    return [s for i, s in enumerate(stamps) if (i + 1) % CHUNK == 0 and i + 1 >= MIN_FRAMES]


def worst_plan_age(published, end_s: float) -> float:
    """Oldest the controller's newest plan gets: just before each replacement, and at the end."""
    ages = [later - stamp for (_, stamp), (later, _) in zip(published, published[1:])]
    return max(ages + [end_s - published[-1][1]])


@pytest.mark.parametrize("plan_s", [0.1, 0.6])
def test_every_chunk_boundary_is_planned_when_compute_fits(plan_s):
    runner, published, stamps, _ = simulate(plan_s)
    plan_stamps = [stamp for _, stamp in published]
    assert plan_stamps == boundary_stamps(stamps)  # one plan per boundary, none skipped, all on the grid
    frames_s = len(stamps) * PERIOD_S
    assert len(published) / (frames_s - (MIN_FRAMES - 1) * PERIOD_S) == pytest.approx(1.0, abs=0.05)
    assert worst_plan_age(published, stamps[-1]) <= PLAN_TIMEOUT_S
    assert runner.plan_rate_hz() == pytest.approx(1.0, abs=0.05)  # what policy/status reports
    assert runner.status_values()["frames_dropped"] == 0


def test_a_step_slower_than_the_chunk_plans_at_the_newest_boundary_it_crossed():
    runner, published, stamps, newest_boundary = simulate(1.3)
    plan_stamps = [stamp for _, stamp in published]
    assert set(plan_stamps) <= set(boundary_stamps(stamps))  # on the chunk grid
    # the newest boundary that had arrived when the batch was taken: no boundary crossed while busy is lost
    assert plan_stamps == newest_boundary
    frames_s = stamps[-1] - stamps[MIN_FRAMES - 1]
    rate = (len(published) - 1) / frames_s
    # back to back 1.3 s steps: ~1/1.3 = 0.77 plans per second of frames (stepping only on the newest
    # frame, the old node, planned when that frame happened to be a boundary: 0.5)
    assert 0.7 <= rate <= 1 / 1.3 + 0.02
    assert 0.7 <= runner.plan_rate_hz() <= 0.8
    intervals = np.diff([t for t, _ in published])
    assert np.allclose(intervals, 1.3)  # the worker never idled while a boundary waited
    # a 1.3 s step does not fit the controller's budget whatever the rule: a plan waits for the next one
    # for at least one step, on top of its own step (>= 2.6 s); the budget is compute <= plan_timeout_s - 1 s
    assert worst_plan_age(published, stamps[-1]) > PLAN_TIMEOUT_S


def test_the_plan_frame_is_the_newest_boundary_in_the_batch():
    clock = FakeClock()
    runner = PolicyRunner(ChunkPolicy, lambda: ChunkPolicy(ChunkConfig(0.0), clock), clock=clock)
    runner.load()
    for i in range(22):  # frames 1..22 queued at once: boundaries at 12, 16, 20
        runner.add_frame(i * PERIOD_S, RGB)
    (step,) = runner.process()
    assert step.new and step.plan.stamp == 19 * PERIOD_S  # frame 20, not the newest (22) nor 12 or 16
    assert runner.policy.seen == [i * PERIOD_S for i in range(22)]  # frames 21, 22 observed after it, in order


def test_frame_rate_comes_from_the_policy_and_a_contradiction_is_refused():
    assert policy_rate_hz(ChunkPolicy, None) == 4.0
    assert policy_rate_hz(ChunkPolicy, 4.0) == 4.0
    with pytest.raises(ConfigError, match="history_rate_hz 2 contradicts policy 'chunk_test'.*4 FPS"):
        policy_rate_hz(ChunkPolicy, 2.0)
    assert policy_rate_hz(ScriptedPolicy, 2.0) == 2.0  # scripted follows odometry: any rate
    with pytest.raises(ConfigError):
        PolicyRunner(ChunkPolicy, lambda: None, rate_hz=5.0)


# -- callbacks never wait on the policy ----------------------------------------------------------------

@dataclass
class GateConfig:
    pass


class GatePolicy(Policy):
    """Plans from every frame; set_instruction (a text encoder) and observe of a chosen stamp block on
    events until the test releases them."""

    name = "gate_test"
    config_class = GateConfig
    frame_rate_hz = 4.0

    def __init__(self, config: GateConfig) -> None:
        super().__init__(config)
        self.encoding, self.release_encoder = threading.Event(), threading.Event()
        self.observing, self.release_observe = threading.Event(), threading.Event()
        self.block_observe_at = None
        self.events: list = []  # ("observe", stamp, instruction, odom_pose) / ("reset",) in the order they ran
        self.latest = None

    def set_instruction(self, text: str) -> None:
        self.encoding.set()
        assert self.release_encoder.wait(10.0), "the test never released the text encoder"
        super().set_instruction(text)

    def reset(self) -> None:
        self.events.append(("reset",))

    def observe(self, observation) -> None:
        if observation.stamp == self.block_observe_at:
            self.observing.set()
            assert self.release_observe.wait(10.0), "the test never released observe"
        self.latest = observation
        self.events.append(("observe", observation.stamp, self.instruction, observation.odom_pose))

    def plan(self) -> Plan:
        return Plan(stamp=self.latest.stamp, waypoints=np.zeros((1, 3)))

    def observed(self) -> list[float]:
        return [e[1] for e in self.events if e[0] == "observe"]


def start_worker(runner: PolicyRunner):
    stop, published = threading.Event(), []
    thread = threading.Thread(target=runner.serve, args=(stop, published.append), daemon=True)
    thread.start()
    return stop, thread, published


def wait_for(predicate, timeout_s: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.01)
    return predicate()


def in_thread(fn, timeout_s: float = 5.0) -> bool:
    """Run fn in a thread; True if it returned within timeout_s (False: it waited on the policy)."""
    thread = threading.Thread(target=fn, daemon=True)
    thread.start()
    thread.join(timeout_s)
    return not thread.is_alive()


def test_instruction_encoding_runs_on_the_worker_while_frames_and_odometry_flow():
    policy = GatePolicy(GateConfig())
    runner = PolicyRunner(GatePolicy, lambda: policy)
    stop, thread, published = start_worker(runner)
    try:
        assert wait_for(lambda: runner.state == READY)
        assert in_thread(lambda: runner.set_instruction("go to the kitchen"))
        assert policy.encoding.wait(5.0)  # the encoder now runs (stands for umT5's seconds on a CPU)
        stamps = [10.0 + i * PERIOD_S for i in range(20)]

        def feed():
            for stamp in stamps:
                runner.add_odometry(stamp, (stamp, 0.0, 0.0))
                assert runner.wants_frame(stamp)
                assert runner.add_frame(stamp, RGB)

        assert in_thread(feed)  # every callback returned while the encoder was still busy
        assert runner.busy_with == "set_instruction" and not policy.observed()
        assert runner.status_values()["odometry_received"] == 20
        policy.release_encoder.set()
        assert wait_for(lambda: len(policy.observed()) == 20)
        assert policy.observed() == stamps  # no sampled frame lost
        # each frame reached the policy with the new instruction and its odometry pose at its stamp
        assert all(e[2] == "go to the kitchen" and e[3][0] == pytest.approx(e[1]) for e in policy.events)
        assert runner.status_values()["frames_dropped"] == 0 and runner.instruction == "go to the kitchen"
    finally:
        policy.release_encoder.set()
        stop.set()
        thread.join(5.0)


def test_reset_while_the_worker_holds_a_batch_discards_it_and_resets_before_new_frames():
    policy = GatePolicy(GateConfig())
    policy.block_observe_at = 0.0
    runner = PolicyRunner(GatePolicy, lambda: policy)
    runner.load()
    for i in range(4):
        runner.add_frame(i * PERIOD_S, RGB)
    stop, thread, published = start_worker(runner)
    try:
        assert policy.observing.wait(5.0)  # the worker took frames 0..3 and is in the policy
        assert in_thread(runner.reset)  # returns at once, though the policy is busy
        assert runner.add_frame(0.0, RGB)  # the grid restarted: an early stamp starts the new episode
        runner.add_frame(PERIOD_S, RGB)
        policy.release_observe.set()
        assert wait_for(lambda: policy.observed()[-2:] == [0.0, PERIOD_S] and len(policy.observed()) == 6)
        assert wait_for(lambda: len(published) == 1)
        time.sleep(0.2)  # nothing else may come
        reset_at = policy.events.index(("reset",))
        assert [e[1] for e in policy.events[reset_at + 1:]] == [0.0, PERIOD_S]  # only the new episode after it
        assert [s.plan.stamp for s in published] == [PERIOD_S]  # the old batch's plan (stamp 0.75) never came out
        assert runner.status_values()["frames_discarded_by_reset"] == 4
    finally:
        policy.release_observe.set()
        stop.set()
        thread.join(5.0)


def test_a_full_queue_drops_the_oldest_frames_and_counts_them():
    policy = GatePolicy(GateConfig())
    runner = PolicyRunner(GatePolicy, lambda: policy, max_pending_frames=4)
    for i in range(10):  # while loading: frames wait (bounded)
        runner.add_frame(i * PERIOD_S, RGB)
    assert runner.status_values()["runner_state"] == LOADING and runner.process() == []
    assert runner.status_values()["frames_dropped"] == 6 and runner.pending_frames == 4
    runner.load()
    (step,) = runner.process()
    assert policy.observed() == [6 * PERIOD_S, 7 * PERIOD_S, 8 * PERIOD_S, 9 * PERIOD_S]
    assert step.plan.stamp == 9 * PERIOD_S


def test_a_load_failure_is_kept_for_the_node_and_stops_the_worker():
    def missing():
        raise FileNotFoundError("no checkpoint at /nowhere/model.safetensors")

    runner = PolicyRunner(GatePolicy, missing)
    assert runner.state == LOADING
    stop, thread, _ = start_worker(runner)
    thread.join(5.0)
    assert not thread.is_alive() and runner.state == FAILED
    assert "no checkpoint at /nowhere" in str(runner.load_error)
    assert runner.status_values()["runner_state"] == FAILED


def test_a_failing_step_is_returned_as_an_error_and_the_next_frames_still_run():
    class Failing(GatePolicy):
        def plan(self) -> Plan:
            if self.latest.stamp == PERIOD_S:
                raise RuntimeError("bad weights")
            return super().plan()

    policy = Failing(GateConfig())
    runner = PolicyRunner(Failing, lambda: policy)
    errors = []
    runner.report_error = errors.append
    runner.load()
    steps = []
    for i in range(3):
        runner.add_frame(i * PERIOD_S, RGB)
        steps += runner.process()
    assert [(s.plan is None, s.observation.stamp) for s in steps] == [(False, 0.0), (True, PERIOD_S),
                                                                     (False, 2 * PERIOD_S)]
    assert "bad weights" in steps[1].error and errors == [steps[1].error]


def test_a_reset_during_a_later_batch_drops_the_earlier_batches_plan_too():
    """One process() can hold several batches (an instruction between frames splits them): a reset that
    comes while the second runs must keep the first batch's old-episode plan from being published."""
    policy = GatePolicy(GateConfig())
    policy.release_encoder.set()
    policy.block_observe_at = 4 * PERIOD_S  # inside the second batch
    runner = PolicyRunner(GatePolicy, lambda: policy)
    runner.load()
    for i in range(4):
        runner.add_frame(i * PERIOD_S, RGB)
    runner.set_instruction("go to the kitchen")
    for i in range(4, 8):
        runner.add_frame(i * PERIOD_S, RGB)
    stop, thread, published = start_worker(runner)
    try:
        assert policy.observing.wait(5.0)  # batch 1 (frames 0..3) is planned, batch 2 is in the policy
        assert in_thread(runner.reset)
        policy.release_observe.set()
        assert wait_for(lambda: ("reset",) in policy.events)
        time.sleep(0.2)
        assert published == [], [s.plan.stamp for s in published]  # batch 1's plan (stamp 0.75) belongs to the old episode
    finally:
        policy.release_observe.set()
        stop.set()
        thread.join(5.0)


class FailingResetPolicy(GatePolicy):
    def reset(self) -> None:
        raise RuntimeError("CUDA error: an illegal memory access was encountered")


def test_a_worker_that_fails_outside_a_step_ends_as_failed_not_silently():
    runner = PolicyRunner(FailingResetPolicy, lambda: FailingResetPolicy(GateConfig()), report_error=lambda m: None)
    stop, thread, _ = start_worker(runner)
    try:
        assert wait_for(lambda: runner.state == READY)
        runner.reset()
        thread.join(5.0)
        assert not thread.is_alive()  # the worker is gone ...
        assert runner.state == FAILED and "illegal memory access" in str(runner.load_error)  # ... and says so
    finally:
        stop.set()
