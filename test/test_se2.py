import math

import numpy as np
import pytest

from sparsevideonav_ros.core import se2

RNG = np.random.default_rng(0)


def random_poses(n):
    return np.column_stack([RNG.uniform(-5, 5, n), RNG.uniform(-5, 5, n),
                            RNG.uniform(-math.pi, math.pi, n)])


def assert_pose_close(a, b, atol=1e-9):
    a, b = np.asarray(a), np.asarray(b)
    np.testing.assert_allclose(a[..., :2], b[..., :2], atol=atol)
    np.testing.assert_allclose(se2.wrap_angle(a[..., 2] - b[..., 2]), 0.0, atol=atol)


def test_wrap_angle_range():
    a = np.linspace(-20, 20, 1001)
    w = se2.wrap_angle(a)
    assert np.all(w >= -math.pi) and np.all(w < math.pi)
    np.testing.assert_allclose(np.sin(w), np.sin(a), atol=1e-12)
    np.testing.assert_allclose(np.cos(w), np.cos(a), atol=1e-12)
    assert se2.wrap_angle(math.pi) == pytest.approx(-math.pi)
    assert se2.wrap_angle(3 * math.pi / 2) == pytest.approx(-math.pi / 2)


def test_compose_known_values():
    a = np.array([1.0, 2.0, math.pi / 2])
    b = np.array([1.0, 0.0, math.pi / 2])
    assert_pose_close(se2.compose(a, b), [1.0, 3.0, math.pi])


def test_inverse_and_relative():
    p = random_poses(50)
    q = random_poses(50)
    assert_pose_close(se2.compose(p, se2.inverse(p)), np.zeros((50, 3)))
    assert_pose_close(se2.compose(se2.inverse(p), p), np.zeros((50, 3)))
    assert_pose_close(se2.compose(p, se2.relative(p, q)), q)


def test_compose_broadcasts_and_is_associative():
    a = random_poses(1)[0]
    b = random_poses(7)
    c = random_poses(7)
    out = se2.compose(a, b)
    assert out.shape == (7, 3)
    assert_pose_close(out[3], se2.compose(a, b[3]))
    assert_pose_close(se2.compose(se2.compose(a, b), c), se2.compose(a, se2.compose(b, c)))
    with pytest.raises(ValueError):
        se2.compose(np.zeros(2), np.zeros(3))


def test_poses_from_deltas():
    # Four unit moves each followed by a left quarter turn trace a square back to the start.
    deltas = np.tile([1.0, 0.0, math.pi / 2], (4, 1))
    poses = se2.poses_from_deltas(deltas)
    assert poses.shape == (4, 3)
    assert_pose_close(poses[0], [1, 0, math.pi / 2])
    assert_pose_close(poses[1], [1, 1, math.pi])
    assert_pose_close(poses[3], [0, 0, 0])
    assert se2.poses_from_deltas(np.zeros((0, 3))).shape == (0, 3)


def test_quaternion_roundtrip():
    for yaw in np.linspace(-math.pi, math.pi - 1e-9, 37):
        q = se2.quaternion_from_yaw(yaw)
        assert isinstance(q, tuple) and len(q) == 4
        assert sum(c * c for c in q) == pytest.approx(1.0)
        assert se2.wrap_angle(se2.yaw_from_quaternion(*q) - yaw) == pytest.approx(0.0, abs=1e-12)
    assert se2.yaw_from_quaternion(0.0, 0.0, 0.0, 1.0) == 0.0


def test_yaw_from_quaternion_ignores_roll_pitch():
    # Roll 0.3 about x, then yaw 0.7 about z (q = q_yaw * q_roll).
    r, y = 0.3, 0.7
    qx, qw_r = math.sin(r / 2), math.cos(r / 2)
    qz, qw_y = math.sin(y / 2), math.cos(y / 2)
    q = (qw_y * qx, qz * qx, qz * qw_r, qw_y * qw_r)
    assert se2.yaw_from_quaternion(*q) == pytest.approx(y)


def test_interpolate_shortest_arc():
    p0 = np.array([0.0, 0.0, math.pi - 0.1])
    p1 = np.array([2.0, -4.0, -math.pi + 0.1])
    mid = se2.interpolate(p0, p1, 0.5)
    np.testing.assert_allclose(mid[:2], [1.0, -2.0])
    assert abs(se2.wrap_angle(mid[2] - math.pi)) < 1e-9  # through pi, not through 0
    assert_pose_close(se2.interpolate(p0, p1, 0.0), p0)
    assert_pose_close(se2.interpolate(p0, p1, 1.0), p1)
    batch = se2.interpolate(p0, p1, np.array([0.0, 0.5, 1.0]))
    assert batch.shape == (3, 3)
    assert_pose_close(batch[1], mid)


def test_exp_matches_fine_integration_and_log_inverts():
    twist = np.array([0.5, 0.2, 1.2])  # body velocity held for 1 s
    pose = np.zeros(3)
    for _ in range(10000):
        pose = se2.compose(pose, twist / 10000)
    assert_pose_close(se2.exp(twist), pose, atol=1e-4)
    # Straight motion and tiny rotations take the Taylor branch without 0/0.
    assert_pose_close(se2.exp([1.0, -2.0, 0.0]), [1.0, -2.0, 0.0])
    assert_pose_close(se2.exp([1.0, 0.0, 1e-9]), [1.0, 5e-10, 1e-9])
    twists = random_poses(20)
    twists[:, 2] *= 0.99  # keep yaw inside (-pi, pi) so log is unique
    twists[0, 2] = 0.0
    np.testing.assert_allclose(se2.log(se2.exp(twists)), twists, atol=1e-9)
    assert se2.exp(twists).shape == (20, 3)
