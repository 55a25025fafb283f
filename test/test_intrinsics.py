"""core/intrinsics: the pinhole convention shared by camera_node, the pose head and evaluate."""
import math

import numpy as np
import pytest

from sparsevideonav_ros.core.intrinsics import intrinsics_from_fov, matrix_from_camera_info


def test_fov_matrix_is_centred_with_square_pixels():
    k = intrinsics_from_fov(640, 480, math.radians(90.0))
    assert np.allclose(k, [[320.0, 0.0, 319.5], [0.0, 320.0, 239.5], [0.0, 0.0, 1.0]])
    with pytest.raises(ValueError):
        intrinsics_from_fov(640, 480, math.pi)


def test_camera_info_matrix_only_for_its_own_size_and_when_calibrated():
    k = [500.0, 0.0, 300.0, 0.0, 510.0, 200.0, 0.0, 0.0, 1.0]
    assert np.array_equal(matrix_from_camera_info(k, 640, 480, 640, 480), np.array(k).reshape(3, 3))
    assert matrix_from_camera_info(k, 640, 480, 320, 240) is None  # K of another size is wrong, not close
    assert matrix_from_camera_info([0.0] * 9, 640, 480, 640, 480) is None  # REP 104: uncalibrated
    assert matrix_from_camera_info(k[:8] + [2.0], 640, 480, 640, 480) is None
    assert matrix_from_camera_info(k[:4] + [float("nan")] + k[5:], 640, 480, 640, 480) is None


def test_camera_node_publishes_the_same_matrix():
    from sparsevideonav_ros.nodes import convert
    msg = convert.camera_info_msg(160, 120, math.radians(70.0), None)
    assert np.allclose(np.array(msg.k).reshape(3, 3), intrinsics_from_fov(160, 120, math.radians(70.0)))
