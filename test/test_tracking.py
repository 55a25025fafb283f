import math

import numpy as np
import pytest

from sparsevideonav_ros.core import se2
from sparsevideonav_ros.core.tracking import (PathTracker, TrackerGains, TrackerLimits,
                                              TrackerOutput)

DT = 0.02
LIM = TrackerLimits()
EPS = 1e-9


def step(pose, out, dt=DT):
    """Integrate a body-frame twist for dt (midpoint heading)."""
    yaw_mid = pose[2] + 0.5 * out.wz * dt
    c, s = math.cos(yaw_mid), math.sin(yaw_mid)
    return np.array([pose[0] + (c * out.vx - s * out.vy) * dt,
                     pose[1] + (s * out.vx + c * out.vy) * dt,
                     float(se2.wrap_angle(pose[2] + out.wz * dt))])


def check_limits(out, prev, lim=LIM, dt=DT):
    assert lim.min_vx - EPS <= out.vx <= lim.max_vx + EPS
    assert abs(out.vy) <= lim.max_vy + EPS
    assert abs(out.wz) <= lim.max_wz + EPS
    if out.state == "tracking":
        assert abs(out.vx - prev.vx) <= lim.max_ax * dt + EPS
        assert abs(out.vy - prev.vy) <= lim.max_ay * dt + EPS
        assert abs(out.wz - prev.wz) <= lim.max_awz * dt + EPS


def simulate(tracker, pose, t_max, lim=LIM):
    """Run until arrival; the plan is re-stamped like a live planner would."""
    prev = TrackerOutput(0.0, 0.0, 0.0, "none", -1)
    t = 0.0
    states = []
    while t < t_max:
        out = tracker.compute(pose, t, DT)
        check_limits(out, prev, lim)
        states.append(out.state)
        if out.state == "arrived":
            return pose, t, states
        pose = step(pose, out)
        prev, t = out, t + DT
    raise AssertionError(f"did not arrive within {t_max} s, pose {pose}, last {states[-1]}")


def test_straight_line_arrives():
    tracker = PathTracker(LIM, TrackerGains(), plan_timeout_s=100.0)
    wps = np.column_stack([np.linspace(0.2, 2.0, 10), np.zeros(10), np.zeros(10)])
    tracker.set_plan(wps, 0.0)
    pose, t, states = simulate(tracker, np.zeros(3), 30.0)
    assert math.hypot(pose[0] - 2.0, pose[1]) <= 0.1
    assert abs(pose[2]) <= 0.1
    assert set(states) == {"tracking", "arrived"}
    assert t < 15.0


@pytest.mark.parametrize("allow_lateral", [True, False])
def test_square_with_turns_in_place(allow_lateral):
    h = math.pi / 2
    wps = np.array([[1, 0, 0], [1, 0, h], [1, 1, h], [1, 1, math.pi],
                    [0, 1, math.pi], [0, 1, -h], [0, 0, -h], [0, 0, 0]], dtype=float)
    tracker = PathTracker(LIM, TrackerGains(allow_lateral=allow_lateral), plan_timeout_s=100.0)
    tracker.set_plan(wps, 0.0)
    pose = np.zeros(3)
    visited_corners = set()
    prev = TrackerOutput(0.0, 0.0, 0.0, "none", -1)
    t = 0.0
    while True:
        out = tracker.compute(pose, t, DT)
        check_limits(out, prev)
        if out.state == "arrived":
            break
        assert out.state == "tracking"
        # Every turn-in-place waypoint must be the target at some point.
        visited_corners.add(out.target_index)
        pose = step(pose, out)
        prev, t = out, t + DT
        assert t < 60.0, f"stuck at {pose}, target {out.target_index}"
    assert {1, 3, 5, 7} <= visited_corners
    assert math.hypot(pose[0], pose[1]) <= 0.1
    assert abs(se2.wrap_angle(pose[2])) <= 0.1
    assert out.target_index == len(wps) - 1
    # Arrival is latched and commands exactly zero.
    out = tracker.compute(pose, t + DT, DT)
    assert (out.vx, out.vy, out.wz, out.state) == (0.0, 0.0, 0.0, "arrived")


def test_turn_in_place_actually_turns():
    tracker = PathTracker(LIM, TrackerGains(), plan_timeout_s=100.0)
    tracker.set_plan([[0, 0, 0], [0, 0, math.pi / 2]], 0.0)
    pose, _, _ = simulate(tracker, np.zeros(3), 10.0)
    assert abs(pose[2] - math.pi / 2) <= 0.1
    assert math.hypot(pose[0], pose[1]) <= 0.1


def test_plan_behind_robot_is_not_revisited():
    # Plan anchored at a past frame: first waypoints are already behind the robot.
    tracker = PathTracker(LIM, TrackerGains(), plan_timeout_s=100.0)
    wps = np.column_stack([np.linspace(0.0, 2.0, 21), np.zeros(21), np.zeros(21)])
    tracker.set_plan(wps, 0.0)
    out = tracker.compute(np.array([0.6, 0.0, 0.0]), 0.0, 1.0)
    assert out.target_index >= 9 and out.vx > 0.0


def test_no_plan_stale_and_empty_stop_immediately():
    tracker = PathTracker(LIM, TrackerGains(), plan_timeout_s=2.0)
    out = tracker.compute(np.zeros(3), 0.0, DT)
    assert (out.vx, out.vy, out.wz, out.state, out.target_index) == (0.0, 0.0, 0.0, "no_plan", -1)

    tracker.set_plan([[2.0, 0.5, 0.0]], 10.0)
    for i in range(100):  # build up speed
        out = tracker.compute(np.zeros(3), 10.0 + i * DT, DT)
    assert out.state == "tracking" and out.vx > 0.3 and out.wz > 0.0
    out = tracker.compute(np.zeros(3), 12.0, DT)  # exactly at the timeout: still fresh
    assert out.state == "tracking"
    out = tracker.compute(np.zeros(3), 12.01, DT)
    assert (out.vx, out.vy, out.wz, out.state) == (0.0, 0.0, 0.0, "stale")

    tracker.set_plan([[2.0, 0.5, 0.0]], 12.0)
    for i in range(50):
        out = tracker.compute(np.zeros(3), 12.0 + i * DT, DT)
    assert out.vx > 0.0
    tracker.set_plan(np.zeros((0, 3)), 13.0)
    out = tracker.compute(np.zeros(3), 13.0, DT)
    assert (out.vx, out.vy, out.wz, out.state) == (0.0, 0.0, 0.0, "empty_plan")
    tracker.set_plan([], 13.0)
    assert tracker.compute(np.zeros(3), 13.0, DT).state == "empty_plan"
    # After a safety stop the next tracking command ramps up from zero.
    tracker.set_plan([[2.0, 0.0, 0.0]], 13.0)
    out = tracker.compute(np.zeros(3), 13.0, DT)
    assert 0.0 < out.vx <= LIM.max_ax * DT + EPS


def test_clamps_and_rate_limits_from_standstill():
    lim = TrackerLimits(max_vx=0.4, max_vy=0.2, max_wz=0.5)
    tracker = PathTracker(lim, TrackerGains(k_linear=10, k_lateral=10, k_angular=10),
                          plan_timeout_s=100.0)
    tracker.set_plan([[5.0, 3.0, 0.0]], 0.0)
    out = tracker.compute(np.zeros(3), 0.0, 0.1)
    assert out.vx == pytest.approx(lim.max_ax * 0.1)
    assert out.vy == pytest.approx(lim.max_ay * 0.1)
    assert out.wz == pytest.approx(lim.max_awz * 0.1)
    for _ in range(20):
        out = tracker.compute(np.zeros(3), 0.0, 0.1)
    assert (out.vx, out.vy, out.wz) == pytest.approx((0.4, 0.2, 0.5))
    # Zero dt means no change is allowed.
    tracker.set_plan([[-5.0, -3.0, 0.0]], 0.0)
    out2 = tracker.compute(np.zeros(3), 0.0, 0.0)
    assert (out2.vx, out2.vy, out2.wz) == pytest.approx((out.vx, out.vy, out.wz))


def test_backwards_correction_respects_min_vx():
    tracker = PathTracker(LIM, TrackerGains(k_linear=10.0), plan_timeout_s=100.0)
    tracker.set_plan([[0.0, 0.0, 0.0]], 0.0)
    for _ in range(100):
        out = tracker.compute(np.array([0.09, 0.0, 0.5]), 0.0, DT)
    assert out.vx == pytest.approx(LIM.min_vx)
    assert out.wz < 0.0


def test_lateral_disabled():
    tracker = PathTracker(LIM, TrackerGains(allow_lateral=False), plan_timeout_s=100.0)
    tracker.set_plan([[1.0, 1.0, 0.0]], 0.0)
    for _ in range(50):
        out = tracker.compute(np.zeros(3), 0.0, DT)
        assert out.vy == 0.0
    assert out.wz > 0.0


def test_non_finite_raises():
    tracker = PathTracker()
    with pytest.raises(ValueError):
        tracker.set_plan([[1.0, float("nan"), 0.0]], 0.0)
    with pytest.raises(ValueError):
        tracker.set_plan([[1.0, 0.0, 0.0]], float("inf"))
    with pytest.raises(ValueError):
        tracker.set_plan(np.zeros((3, 2)), 0.0)
    tracker.set_plan([[1.0, 0.0, 0.0]], 0.0)
    with pytest.raises(ValueError):
        tracker.compute(np.array([0.0, float("nan"), 0.0]), 0.0, DT)
    with pytest.raises(ValueError):
        tracker.compute(np.zeros(3), float("nan"), DT)
    with pytest.raises(ValueError):
        tracker.compute(np.zeros(3), 0.0, -DT)


def test_reset_forgets_plan():
    tracker = PathTracker(plan_timeout_s=100.0)
    tracker.set_plan([[1.0, 0.0, 0.0]], 0.0)
    assert tracker.compute(np.zeros(3), 0.0, DT).state == "tracking"
    tracker.reset()
    assert tracker.compute(np.zeros(3), 0.0, DT).state == "no_plan"
