import math

import numpy as np
import pytest

from sparsevideonav_ros.core.pose_history import PoseHistory


def filled(horizon_s=10.0):
    h = PoseHistory(horizon_s)
    for i in range(11):  # 0..1 s at 10 Hz, moving +x at 1 m/s and turning at 1 rad/s
        t = 0.1 * i
        h.add(100.0 + t, [t, 0.0, t])
    return h


def test_empty():
    h = PoseHistory()
    assert len(h) == 0 and h.latest() is None
    with pytest.raises(LookupError, match="empty"):
        h.pose_at(0.0)


def test_interpolation_and_exact_hits():
    h = filled()
    assert len(h) == 11
    np.testing.assert_allclose(h.pose_at(100.25), [0.25, 0.0, 0.25])
    np.testing.assert_allclose(h.pose_at(100.3), [0.3, 0.0, 0.3])
    np.testing.assert_allclose(h.pose_at(100.0), [0.0, 0.0, 0.0])
    stamp, pose = h.latest()
    assert stamp == pytest.approx(101.0)
    np.testing.assert_allclose(pose, [1.0, 0.0, 1.0])


def test_yaw_interpolates_across_pi():
    h = PoseHistory()
    h.add(0.0, [0, 0, math.pi - 0.1])
    h.add(1.0, [0, 0, -math.pi + 0.1])
    assert abs(math.remainder(h.pose_at(0.5)[2] - math.pi, 2 * math.pi)) < 1e-9


def test_extrapolation_window():
    h = filled()
    np.testing.assert_allclose(h.pose_at(101.19), [1.0, 0.0, 1.0])
    with pytest.raises(LookupError, match="newer"):
        h.pose_at(101.21)
    np.testing.assert_allclose(h.pose_at(101.5, max_extrapolation_s=0.5), [1.0, 0.0, 1.0])


def test_too_old():
    h = filled()
    with pytest.raises(LookupError, match="older"):
        h.pose_at(99.99)


def test_horizon_eviction():
    h = PoseHistory(horizon_s=0.5)
    for i in range(11):
        h.add(0.1 * i, [0.1 * i, 0, 0])
    assert len(h) == 6  # stamps 0.5 .. 1.0 are within newest - 0.5
    with pytest.raises(LookupError):
        h.pose_at(0.4)
    assert h.pose_at(0.5)[0] == pytest.approx(0.5)


def test_time_jump_back_clears():
    h = filled()
    h.add(50.0, [5.0, 5.0, 0.0])
    assert len(h) == 1
    np.testing.assert_allclose(h.pose_at(50.0), [5.0, 5.0, 0.0])
    with pytest.raises(LookupError):
        h.pose_at(100.5)


def test_duplicate_stamp_keeps_newest():
    h = PoseHistory()
    h.add(1.0, [0, 0, 0])
    h.add(2.0, [1, 0, 0])
    h.add(2.0, [2, 0, 0])
    assert len(h) == 2
    np.testing.assert_allclose(h.pose_at(1.5), [1.0, 0.0, 0.0])


def test_rejects_bad_samples():
    h = PoseHistory()
    with pytest.raises(ValueError):
        h.add(float("nan"), [0, 0, 0])
    with pytest.raises(ValueError):
        h.add(0.0, [0, float("inf"), 0])
    with pytest.raises(ValueError):
        h.add(0.0, [0, 0])
    assert len(h) == 0
