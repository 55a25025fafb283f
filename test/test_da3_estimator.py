"""`da3` pose estimator: WIRING ONLY. The network has tiny random weights (no DA3 weights exist on
the project's machines), so these tests check loading, shapes, conventions, the world->camera
inversion, the scale and the pinned reference view, never pose accuracy."""
from __future__ import annotations

import json
import math

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("depth_anything_3.model.da3")

from sparsevideonav_ros.policies.pose_estimators import make_estimator  # noqa: E402
from sparsevideonav_ros.policies.pose_estimators.base import (PoseEstimationError, intrinsics_from_fov,  # noqa: E402
                                                              resize_intrinsics)
from sparsevideonav_ros.policies.pose_estimators.da3_estimator import (TINY, Da3EstimatorConfig, Da3PoseEstimator,  # noqa: E402
                                                                       build_network, licence_of, load_folder,
                                                                       save_folder)
from sparsevideonav_ros.policies.pose_estimators.mount import MOUNT_PRESETS, GroundScaleConfig, invert_transform  # noqa: E402

MOUNT = MOUNT_PRESETS["osmo"]
SIZE = 64
K = intrinsics_from_fov(SIZE, SIZE, math.radians(70.0))


@pytest.fixture(scope="module")
def tiny_folder(tmp_path_factory):
    torch.manual_seed(0)
    net = build_network("da3-small", TINY)
    return save_folder(net, tmp_path_factory.mktemp("da3") / "tiny", "da3-small", TINY), net


def _frames(n: int, seed: int = 0):
    rng = np.random.default_rng(seed)
    return [rng.integers(0, 256, (SIZE, SIZE, 3), dtype=np.uint8) for _ in range(n)]


def test_tiny_folder_round_trips_strictly(tiny_folder):
    folder, net = tiny_folder
    loaded, info = load_folder(folder)
    assert info["model_name"] == "da3-small" and info["licence"] == "random weights (tests)"
    assert 5e6 < info["parameters"] < 3e7  # tiny: ~20 M, not the 34 M of da3-small
    for (name, a), (_, b) in zip(net.state_dict().items(), loaded.state_dict().items()):
        assert torch.equal(a, b), name
    # Strict: one missing key is refused, naming the mismatch.
    from safetensors.torch import load_file, save_file
    state = load_file(str(folder / "model.safetensors"))
    state.pop(next(iter(state)))
    broken = folder.parent / "broken"
    broken.mkdir()
    (broken / "config.json").write_text((folder / "config.json").read_text())
    save_file(state, str(broken / "model.safetensors"))
    with pytest.raises(PoseEstimationError, match="does not match preset"):
        load_folder(broken)


def test_licences_and_presets_without_camera_head(tmp_path):
    assert licence_of("da3-small") == licence_of("da3-base") == "Apache-2.0"
    assert licence_of("da3-large") == licence_of("da3-giant") == "CC BY-NC 4.0"
    (tmp_path / "config.json").write_text(json.dumps({"model_name": "da3metric-large"}))
    (tmp_path / "model.safetensors").write_bytes(b"")
    with pytest.raises(PoseEstimationError, match="no camera head"):
        load_folder(tmp_path)


def test_forward_shapes_and_reference_pinned_to_the_current_frame(tiny_folder, monkeypatch):
    import depth_anything_3.model.dinov2.vision_transformer as vt
    seen = []
    original = vt.select_reference_view

    def spy(x, strategy="saddle_balanced"):
        index = original(x, strategy=strategy)
        seen.append((strategy, index.tolist() if hasattr(index, "tolist") else index))
        return index

    monkeypatch.setattr(vt, "select_reference_view", spy)
    estimator = make_estimator("da3", MOUNT, weights=str(tiny_folder[0]), process_res=56,
                               ground=GroundScaleConfig(min_points=1))
    frames = _frames(9)
    x = estimator.preprocess(frames)
    assert tuple(x.shape) == (1, 9, 3, 56, 56)
    extrinsics, depth = estimator.forward(x)
    assert extrinsics.shape == (9, 4, 4) and depth.shape == (9, 56, 56)
    assert seen and all(s == ("first", [0]) for s in seen), seen
    estimate = estimator.estimate(frames[0], frames[1:], K)
    assert len(estimate) == 8 and estimate.camera_to_reference.shape == (8, 4, 4)
    assert estimate.info["licence"] == "random weights (tests)"


def test_world_to_camera_is_inverted_and_scaled_from_the_ground():
    # A stand-in for the network with known outputs: world = camera 0 at an arbitrary pose, camera k turned
    # 0.04 k rad about the camera's vertical and 0.5 m * k ahead (in camera 0's frame), depth = the ground
    # plane seen from the mount through the depth map's own intrinsics, all at DA3 scale 1/4 (so the ground
    # says 4x). Frames are 40x64, so the processed size differs per axis and the intrinsics must be rescaled
    # per axis. The estimator must return camera k in camera 0's frame, in metres, rotation included.
    height, width = 40, 64  # processed to 28 x 56: x and y scale differently (0.7 vs 0.875)
    frames_k = intrinsics_from_fov(width, height, math.radians(70.0))
    truth = []
    for k in range(1, 9):
        cam0_from_camk = np.eye(4)
        cam0_from_camk[:3, :3] = _rot(0.0, 0.04 * k, 0.0)
        cam0_from_camk[:3, 3] = (0.02 * k, 0.0, 0.5 * k)
        truth.append(cam0_from_camk)

    class Fake(Da3PoseEstimator):
        def forward(self, x):
            n, h, w = x.shape[1], x.shape[3], x.shape[4]
            assert (h, w) == self.processed_size(height, width) and h != w
            world_from_cam0 = np.eye(4)
            world_from_cam0[:3, :3] = _rot(0.3, -0.2, 0.1)
            world_from_cam0[:3, 3] = (1.0, -2.0, 0.5)
            cams = [invert_transform(world_from_cam0)]
            for cam0_from_camk in truth:
                at_da3_scale = cam0_from_camk.copy()
                at_da3_scale[:3, 3] *= 0.25
                cams.append(invert_transform(world_from_cam0 @ at_da3_scale))
            kk = resize_intrinsics(frames_k, w / width, h / height)
            v, u = np.mgrid[0:h, 0:w]
            rays = np.stack([u, v, np.ones_like(u)], -1) @ np.linalg.inv(kk).T
            up = MOUNT.up_in_camera
            with np.errstate(divide="ignore"):
                z = np.where(rays @ up < 0, 0.25 * MOUNT.height_m / -(rays @ up), 100.0)
            return np.stack(cams), np.repeat(z[None], n, axis=0)

    estimator = Fake(torch.nn.Identity(), {"model_name": "da3-small", "licence": "Apache-2.0"}, MOUNT,
                     Da3EstimatorConfig(process_res=56, ground_stride=2))  # a small depth map: a finer grid
    rng = np.random.default_rng(0)
    frames = [rng.integers(0, 256, (height, width, 3), dtype=np.uint8) for _ in range(9)]
    estimate = estimator.estimate(frames[0], frames[1:], frames_k)
    assert estimate.valid.all(), estimate.reasons
    for k in range(8):
        np.testing.assert_allclose(estimate.camera_to_reference[k][:3, :3], truth[k][:3, :3], atol=1e-9)
        np.testing.assert_allclose(estimate.camera_to_reference[k][:3, 3], truth[k][:3, 3], rtol=0.02, atol=0.01)
    assert estimate.info["scale"] == pytest.approx(4.0, rel=0.02)


def _rot(a, b, c):
    ca, sa, cb, sb, cc, sc = math.cos(a), math.sin(a), math.cos(b), math.sin(b), math.cos(c), math.sin(c)
    rx = np.array([[1, 0, 0], [0, ca, -sa], [0, sa, ca]])
    ry = np.array([[cb, 0, sb], [0, 1, 0], [-sb, 0, cb]])
    rz = np.array([[cc, -sc, 0], [sc, cc, 0], [0, 0, 1]])
    return rz @ ry @ rx
