"""``opencv``: classical two-view geometry, no weights (OpenCV + numpy; no torch).

Per pair of frames (a, b):
1. SIFT (default) or ORB features, brute-force k-NN matching with Lowe's ratio test.
2. Essential matrix with RANSAC (``cv2.findEssentialMat``), relative pose with the cheirality check
   (``cv2.recoverPose``): X_b = R X_a + t with |t| = 1 (up to scale).
3. Rotation-only test: a rotation fitted to the essential inliers' bearing vectors; if it leaves a
   residual (90th percentile) below ``parallax_min_px`` the robot turned in place: the pose reported is
   that turn about base_link (the camera centre sweeps the mount offset around it), flagged
   ``rotation_only``, with the measured ``parallax_px`` in the frame's diagnostics.
4. Metric scale from the ground: the inliers are triangulated in camera a, points below the camera
   go through a RANSAC plane fit whose normal must lie within ``ground.max_tilt_deg`` of the mount's
   up direction, and the scale makes the camera-to-plane distance equal the mount height
   (mount.ground_scale, shared with the da3 estimator). Fallback when the ground is not visible (too few
   ground points) or disagrees with itself (near and far ground points give scales more than
   ``ground.max_disagreement`` apart): the frame is refused (``ground_not_visible`` /
   ``inconsistent_scale``). No other scale source is guessed.

Frames are paired as a chain (current -> f1 -> f2 -> ...; neighbours overlap most, the imagined
future reaches 20 s ahead) or each future frame against the current one (``pairing="reference"``).
A chain refuses every frame after the first refused link (``previous_invalid``).
"""
from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from typing import Any, Optional, Sequence

import cv2
import numpy as np

from sparsevideonav_ros.policies.pose_estimators.base import PoseEstimate, PoseEstimator, check_frames
from sparsevideonav_ros.policies.pose_estimators.mount import (CameraMount, GroundScaleConfig, body_motion,
                                                               camera_motion, ground_scale, invert_transform)

FEATURES = ("sift", "orb")
PAIRINGS = ("chain", "reference")


@dataclass(frozen=True)
class OpenCVEstimatorConfig:
    """Thresholds of the two-view pipeline (pixels of the frames given, metres, degrees).

    features: sift | orb. max_features: per frame. ratio: Lowe ratio for k-NN matches.
    ransac_threshold_px: essential-matrix RANSAC inlier distance. min_matches / min_inliers /
    min_inlier_fraction: refuse a pair below these. parallax_min_px: rotation-only below this 90th-percentile
    residual. ground: the metric-scale step (mount.GroundScaleConfig; min_points counts triangulated
    ground points). min_triangulation_angle_deg: points with less parallax are too noisy to triangulate.
    pairing: chain | reference.
    """

    features: str = "sift"
    max_features: int = 2000
    ratio: float = 0.8
    ransac_threshold_px: float = 1.0
    min_matches: int = 30
    min_inliers: int = 25
    min_inlier_fraction: float = 0.3
    parallax_min_px: float = 0.8
    ground: GroundScaleConfig = GroundScaleConfig(min_points=20)
    min_triangulation_angle_deg: float = 0.3
    pairing: str = "chain"

    def __post_init__(self) -> None:
        if self.features not in FEATURES:
            raise ValueError(f"opencv estimator features={self.features!r} is not one of {list(FEATURES)}")
        if self.pairing not in PAIRINGS:
            raise ValueError(f"opencv estimator pairing={self.pairing!r} is not one of {list(PAIRINGS)}")
        if not 0.0 < self.ratio < 1.0:
            raise ValueError(f"opencv estimator ratio must be in (0, 1), got {self.ratio}")


@dataclass
class _Link:
    """One pair's result: T_a_b (4, 4) camera b -> camera a in metres, or a reason."""

    transform: Optional[np.ndarray]
    reason: str = ""
    confidence: float = 0.0
    rotation_only: bool = False
    diagnostics: dict[str, Any] = field(default_factory=dict)


def _fit_rotation(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Rotation R minimising sum |b - R a|^2 over unit bearing vectors a, b (N, 3) (Kabsch)."""
    u, _, vt = np.linalg.svd(b.T @ a)
    d = np.sign(np.linalg.det(u @ vt))
    return u @ np.diag([1.0, 1.0, d]) @ vt


class OpenCVPoseEstimator(PoseEstimator):
    """Two-view geometry with the metric scale from the camera mount's height over the ground."""

    name = "opencv"

    def __init__(self, mount: CameraMount, config: OpenCVEstimatorConfig = OpenCVEstimatorConfig()) -> None:
        self.mount = mount
        self.config = config
        if config.features == "sift":
            self._detector = cv2.SIFT_create(nfeatures=config.max_features, contrastThreshold=0.02)
            self._norm = cv2.NORM_L2
        else:
            self._detector = cv2.ORB_create(nfeatures=config.max_features, fastThreshold=10)
            self._norm = cv2.NORM_HAMMING
        self._matcher = cv2.BFMatcher(self._norm)

    def describe(self) -> dict[str, Any]:
        return {"estimator": self.name, "weights": "none", "licence": "n/a (no weights)",
                "features": self.config.features, "pairing": self.config.pairing, "scale": "ground plane + mount height"}

    # -- pipeline ---------------------------------------------------------------------------------
    def _features(self, rgb: np.ndarray) -> tuple[np.ndarray, Optional[np.ndarray]]:
        gray = cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY)
        keypoints, descriptors = self._detector.detectAndCompute(gray, None)
        points = np.array([k.pt for k in keypoints], dtype=np.float64).reshape(-1, 2)
        return points, descriptors

    def _link(self, fa, fb, k: np.ndarray) -> _Link:
        cfg = self.config
        (pa, da), (pb, db) = fa, fb
        if da is None or db is None or len(pa) < 2 or len(pb) < 2:
            return _Link(None, f"too_few_features: {len(pa)} / {len(pb)} keypoints")
        pairs = self._matcher.knnMatch(da, db, k=2)
        good = [m[0] for m in pairs if len(m) == 2 and m[0].distance < cfg.ratio * m[1].distance]
        diag: dict[str, Any] = {"matches": len(good)}
        if len(good) < cfg.min_matches:
            return _Link(None, f"too_few_features: {len(good)} ratio-test matches < {cfg.min_matches}", diagnostics=diag)
        xa = pa[[m.queryIdx for m in good]]
        xb = pb[[m.trainIdx for m in good]]
        e, mask = cv2.findEssentialMat(xa, xb, k, method=cv2.RANSAC, prob=0.999, threshold=cfg.ransac_threshold_px)
        if e is None or mask is None:
            return _Link(None, "degenerate_motion: no essential matrix", diagnostics=diag)
        e = e[:3]  # several solutions may come stacked; RANSAC's best is the first
        inl = mask.ravel().astype(bool)
        diag["essential_inliers"] = int(inl.sum())
        fraction = inl.sum() / len(good)
        if inl.sum() < cfg.min_inliers or fraction < cfg.min_inlier_fraction:
            return _Link(None, f"too_few_inliers: {int(inl.sum())} of {len(good)} matches", diagnostics=diag)

        # Rotation-only test on the essential inliers' bearings: tiny residual = no measurable translation.
        k_inv = np.linalg.inv(k)
        ba = np.c_[xa[inl], np.ones(inl.sum())] @ k_inv.T
        bb = np.c_[xb[inl], np.ones(inl.sum())] @ k_inv.T
        ba /= np.linalg.norm(ba, axis=1, keepdims=True)
        bb /= np.linalg.norm(bb, axis=1, keepdims=True)
        r_rot = _fit_rotation(ba, bb)
        residual = np.arccos(np.clip(np.sum(bb * (ba @ r_rot.T), axis=1), -1.0, 1.0))
        focal = 0.5 * (k[0, 0] + k[1, 1])
        # 90th percentile, not the median: a small sideways step looks like a small yaw to the distant
        # majority of points; only the near ones (ground) tell them apart.
        parallax_px = float(np.percentile(residual, 90) * focal)
        diag["parallax_px"] = parallax_px
        if parallax_px < cfg.parallax_min_px:
            # No measurable translation: the robot turned in place, i.e. about base_link (a Go2 turns
            # about its body centre), so the camera centre swept the mount offset around it. The camera
            # translation this implies stays within what the parallax threshold can hide.
            cam_a_from_b = np.eye(4)
            cam_a_from_b[:3, :3] = r_rot.T  # X_b = R X_a  ->  X_a = R^T X_b
            body = body_motion(self.mount, cam_a_from_b)
            yaw = math.atan2(body[1, 0], body[0, 0])
            turn = np.eye(4)
            turn[:2, :2] = [[math.cos(yaw), -math.sin(yaw)], [math.sin(yaw), math.cos(yaw)]]
            t_ab = camera_motion(self.mount, turn)
            diag["rotation_only"] = True
            return _Link(t_ab, confidence=float(fraction), rotation_only=True, diagnostics=diag)

        # distanceThresh far beyond the scene: OpenCV's default (50 baselines) drops distant points as
        # "at infinity", which for small steps is most of a room; parallax is checked below instead.
        count, r, t, pose_mask, _ = cv2.recoverPose(e, xa, xb, k, distanceThresh=1e6, mask=mask.copy())
        cheiral = pose_mask.ravel().astype(bool)
        diag["pose_inliers"] = int(count)
        if count < cfg.min_inliers:
            return _Link(None, f"too_few_inliers: {int(count)} pass the cheirality check", diagnostics=diag)
        # Among inliers with real parallax (distant points have none and fail the cheirality test by
        # chance), most must lie in front of both cameras, else the motion is not resolved.
        moving = residual * focal > 2.0 * cfg.ransac_threshold_px
        in_front = cheiral[inl][moving]
        if moving.sum() >= cfg.min_inliers and in_front.mean() < 0.5:
            return _Link(None, f"degenerate_motion: {int(in_front.sum())} of {int(moving.sum())} parallax inliers "
                               f"in front of both cameras", diagnostics=diag)
        t = t.ravel() / np.linalg.norm(t)

        # Triangulate in camera a (unit baseline) and fix the scale from the ground plane.
        p_a = k @ np.c_[np.eye(3), np.zeros(3)]
        p_b = k @ np.c_[r, t]
        hom = cv2.triangulatePoints(p_a, p_b, xa[cheiral].T, xb[cheiral].T)
        with np.errstate(divide="ignore", invalid="ignore"):
            x3 = (hom[:3] / hom[3]).T
        x3_b = x3 @ r.T + t
        ray_a = x3 / np.linalg.norm(x3, axis=1, keepdims=True)
        ray_b = (x3 - (-r.T @ t)) / np.linalg.norm(x3 - (-r.T @ t), axis=1, keepdims=True)
        angle = np.degrees(np.arccos(np.clip(np.sum(ray_a * ray_b, axis=1), -1, 1)))
        ok = (np.all(np.isfinite(x3), axis=1) & (x3[:, 2] > 0) & (x3_b[:, 2] > 0)
              & (angle > cfg.min_triangulation_angle_deg))
        scale, reason, ground_diag = ground_scale(x3[ok], self.mount, cfg.ground, "triangulated points")
        diag.update(ground_diag)
        if reason:
            return _Link(None, reason, diagnostics=diag)
        t_ba = np.eye(4)
        t_ba[:3, :3] = r
        t_ba[:3, 3] = t * scale
        confidence = float(count / len(good)) * min(1.0, diag["ground_points"] / (2.0 * cfg.ground.min_points))
        return _Link(invert_transform(t_ba), confidence=confidence, diagnostics=diag)

    def estimate(self, current: np.ndarray, futures: Sequence[np.ndarray], intrinsics: np.ndarray) -> PoseEstimate:
        """current, futures: (H, W, 3) uint8 RGB; intrinsics (3, 3) px. Returns camera-to-reference
        (current camera) transforms in metres; see the module docstring for the checks."""
        k = check_frames(current, futures, intrinsics)
        clock = time.perf_counter
        start = clock()
        feats = [self._features(frame) for frame in (current, *futures)]
        timings = {"features_s": clock() - start}
        start = clock()
        n = len(futures)
        transforms = np.full((n, 4, 4), np.nan)
        valid = np.zeros(n, bool)
        confidence = np.zeros(n)
        rotation_only = np.zeros(n, bool)
        reasons: list[str] = []
        links: list[dict[str, Any]] = []
        chain = np.eye(4)
        chain_conf = 1.0
        broken = ""
        for i in range(n):
            if self.config.pairing == "chain":
                if broken:
                    reasons.append(f"previous_invalid: frame {broken}")
                    links.append({})
                    continue
                link = self._link(feats[i], feats[i + 1], k)
            else:
                link = self._link(feats[0], feats[i + 1], k)
            links.append(link.diagnostics)
            if link.transform is None:
                reasons.append(link.reason)
                broken = f"{i} ({link.reason.split(':')[0]})"
                continue
            if self.config.pairing == "chain":
                chain = chain @ link.transform
                chain_conf = min(chain_conf, link.confidence)
                transforms[i], confidence[i] = chain, chain_conf
                rotation_only[i] = link.rotation_only
            else:
                transforms[i], confidence[i], rotation_only[i] = link.transform, link.confidence, link.rotation_only
            valid[i] = True
            reasons.append("")
        timings["geometry_s"] = clock() - start
        return PoseEstimate(transforms, valid, confidence, tuple(reasons), rotation_only,
                            info={**self.describe(), "links": links}, timings_s=timings)
