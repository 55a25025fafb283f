"""Pose head plumbing: times and decoded frame indices, ground-plane projection through the mount,
resampling to the plan's spacing, refusals that stop the robot (no renderer, no estimator model)."""
from __future__ import annotations

import math

import numpy as np
import pytest

from sparsevideonav_ros.core import se2
from sparsevideonav_ros.policies.pose_estimators.base import PoseEstimate, PoseEstimator, crop_resize_intrinsics
from sparsevideonav_ros.policies.pose_estimators.mount import MOUNT_PRESETS, CameraMount, invert_transform
from sparsevideonav_ros.policies.sparsevideonav.pose_head import (FUTURE_TIMES_S, POSE_INVALID_STATE, PoseHead,
                                                                  camera_poses_to_waypoints, instant_frame_indices,
                                                                  resample_waypoints)


def test_times_and_frame_indices_match_the_sampler_and_the_preview():
    sampling = pytest.importorskip("sparsevideonav_ros.policies.sparsevideonav.sampling")
    assert FUTURE_TIMES_S == sampling.future_times_s()
    current, futures = instant_frame_indices()
    assert current == 4 and futures == (8, 12, 16, 20, 24, 28, 32, 36)


def _camera_transforms(mount: CameraMount, body_poses: np.ndarray) -> np.ndarray:
    """Camera-to-reference transforms a rigid mount sees for body poses (x, y, yaw) in base_link at T."""
    out = []
    bc = mount.base_from_camera
    for x, y, yaw in body_poses:
        body = np.eye(4)
        body[:2, :2] = [[math.cos(yaw), -math.sin(yaw)], [math.sin(yaw), math.cos(yaw)]]
        body[:2, 3] = (x, y)
        out.append(invert_transform(bc) @ body @ bc)
    return np.stack(out)


@pytest.mark.parametrize("preset", sorted(MOUNT_PRESETS))
def test_projection_inverts_the_mount(preset):
    mount = MOUNT_PRESETS[preset]
    truth = np.array([[0.3, 0.0, 0.0], [0.6, 0.1, 0.2], [1.0, -0.5, -1.0], [0.0, 0.0, 2.5]])
    waypoints, tilt = camera_poses_to_waypoints(_camera_transforms(mount, truth), mount)
    np.testing.assert_allclose(waypoints, truth, atol=1e-9)
    np.testing.assert_allclose(tilt, 0.0, atol=1e-6)


def test_camera_forward_is_base_forward():
    # Level camera: moving 1 m along the optical axis (OpenCV z) is 1 m forward for the base, and 1 m
    # along camera x (right) is 1 m to base -y; a wrong axis mapping would swap or flip these.
    mount = CameraMount(height_m=0.5, pitch_down_rad=0.0, forward_m=0.2)
    t = np.eye(4)
    t[2, 3] = 1.0  # OpenCV z = forward
    waypoints, _ = camera_poses_to_waypoints(t[None], mount)
    np.testing.assert_allclose(waypoints[0], (1.0, 0.0, 0.0), atol=1e-12)
    t = np.eye(4)
    t[0, 3] = 1.0  # OpenCV x = right -> base y = -1
    np.testing.assert_allclose(camera_poses_to_waypoints(t[None], mount)[0][0], (0.0, -1.0, 0.0), atol=1e-12)


def test_resampling_keeps_the_sparse_instants_and_interpolates_between():
    sparse = np.array([[0.3, 0.0, 0.0], [0.6, 0.0, 0.1], [1.5, 0.3, 0.4]])
    dense, times = resample_waypoints(sparse, (1.0, 2.0, 5.0), 0.25)
    assert len(dense) == 20 and times[0] == 0.25 and times[-1] == 5.0
    np.testing.assert_allclose(dense[3], sparse[0])
    np.testing.assert_allclose(dense[7], sparse[1])
    np.testing.assert_allclose(dense[-1], sparse[2])
    np.testing.assert_allclose(dense[1], se2.interpolate(np.zeros(3), sparse[0], 0.5))
    cut, _ = resample_waypoints(sparse, (1.0, 2.0, 5.0), 0.25, horizon_s=2.0)
    assert len(cut) == 8
    with pytest.raises(ValueError):
        resample_waypoints(sparse, (2.0, 1.0, 5.0))


class _Fixed(PoseEstimator):
    name = "fixed"

    def __init__(self, estimate: PoseEstimate) -> None:
        self._estimate = estimate

    def estimate(self, current, futures, intrinsics):
        return self._estimate


def _head(body: np.ndarray, valid=None, reasons=None, **config):
    from sparsevideonav_ros.policies.sparsevideonav.pose_head import PoseHeadConfig
    mount = MOUNT_PRESETS["osmo"]
    n = len(body)
    valid = np.ones(n, bool) if valid is None else np.asarray(valid)
    reasons = tuple(reasons or ("" if v else "too_few_inliers: 3 of 40 matches" for v in valid))
    estimate = PoseEstimate(_camera_transforms(mount, body), valid, np.ones(n), reasons)
    return PoseHead(_Fixed(estimate), mount, PoseHeadConfig(**config))


FRAME = np.zeros((8, 8, 3), np.uint8)
K = np.array([[8.0, 0, 3.5], [0, 8.0, 3.5], [0, 0, 1]])
STRAIGHT = np.array([[0.3 * t, 0.0, 0.0] for t in FUTURE_TIMES_S])


def test_plan_is_anchored_at_the_frame_stamp_with_dense_waypoints():
    result = _head(STRAIGHT).plan(41.5, FRAME, [FRAME] * 8, K)
    assert result.ok and result.reason == ""
    assert result.plan.stamp == 41.5 and result.plan.waypoint_dt_s == 0.25
    assert len(result.plan.waypoints) == 80  # 20 s at 0.25 s
    np.testing.assert_allclose(result.plan.waypoints[:, 0], 0.3 * 0.25 * np.arange(1, 81), atol=1e-9)


def test_a_refused_frame_truncates_the_plan_or_stops_it():
    valid = [True, True, True, False, True, True, True, True]
    result = _head(STRAIGHT, valid).plan(0.0, FRAME, [FRAME] * 8, K)
    assert result.ok and len(result.plan.waypoints) == 20  # valid prefix up to T+5 s
    stop = _head(STRAIGHT, [True, False] + [True] * 6).plan(7.0, FRAME, [FRAME] * 8, K)
    assert stop.plan.state == POSE_INVALID_STATE and len(stop.plan.waypoints) == 0 and stop.plan.stamp == 7.0
    assert stop.reason == "T+2 s: too_few_inliers: 3 of 40 matches"


def test_implausible_speed_and_tilt_are_refused():
    fast = STRAIGHT.copy()
    fast[0, 0] = 3.0  # 3 m in the first second: a scale failure, not a Go2
    result = _head(fast).plan(0.0, FRAME, [FRAME] * 8, K)
    assert result.plan.state == POSE_INVALID_STATE and "inconsistent_scale" in result.reason
    mount = MOUNT_PRESETS["osmo"]
    transforms = _camera_transforms(mount, STRAIGHT)
    roll = np.eye(4)
    roll[1:3, 1:3] = [[math.cos(0.5), -math.sin(0.5)], [math.sin(0.5), math.cos(0.5)]]
    transforms[0] = transforms[0] @ roll
    estimate = PoseEstimate(transforms, np.ones(8, bool), np.ones(8), ("",) * 8)
    tilted = PoseHead(_Fixed(estimate), mount).plan(0.0, FRAME, [FRAME] * 8, K)
    assert tilted.plan.state == POSE_INVALID_STATE and "non_planar_motion" in tilted.reason


def test_non_finite_estimates_are_never_valid():
    transforms = np.tile(np.eye(4), (2, 1, 1))
    transforms[1, 0, 3] = np.nan
    estimate = PoseEstimate(transforms, np.ones(2, bool), np.ones(2), ("", ""))
    assert estimate.valid.tolist() == [True, False] and estimate.reasons[1].startswith("non_finite")


def test_crop_resize_intrinsics_keeps_the_principal_point_centred():
    k = np.array([[640.0, 0, 639.5], [0, 640.0, 359.5], [0, 0, 1]])
    out = crop_resize_intrinsics(k, 1280, 720, 256)
    np.testing.assert_allclose(out[0, 2], 127.5)
    np.testing.assert_allclose(out[1, 2], 127.5)
    np.testing.assert_allclose(out[0, 0], 640.0 * 256 / 720)


def test_a_pitched_camera_moving_along_its_view_is_hand_checked_forward_motion():
    # The round trip above holds for any mount algebra; this pins the convention with numbers worked out by
    # hand: a camera pitched 15 deg down that moves 1 m straight ahead sees its new centre at
    # (x, y, z) = (0, -sin 15, cos 15) in its old frame (OpenCV: y down, so "ahead and level" is slightly
    # up in the image). A flipped pitch sign or a swapped axis turns this into a climb or a sidestep.
    mount = CameraMount(height_m=0.45, pitch_down_rad=math.radians(15.0), forward_m=0.28)
    moved = np.eye(4)
    moved[:3, 3] = (0.0, -math.sin(math.radians(15.0)), math.cos(math.radians(15.0)))
    waypoints, tilt = camera_poses_to_waypoints(moved[None], mount)
    np.testing.assert_allclose(waypoints[0], [1.0, 0.0, 0.0], atol=1e-9)
    assert abs(tilt[0]) < 1e-9
