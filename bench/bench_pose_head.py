"""Pose-head cost per plan: estimate + project on the CPU, and DA3 FLOPs at full size.

    .venv/bin/python bench/bench_pose_head.py [--repeats 3] [--size 256]

1. ``opencv`` estimator on 9 rendered 256x256 frames (the current frame + the 8 imagined instants;
   the test renderer's room, straight walk, Osmo mount preset) + ground-plane projection + plan.
2. ``da3`` with the tiny random DA3 (wiring-size network, random weights) at process_res 56 and 140.
3. FLOPs of one DA3 forward of 9 views at its processing resolution (504x504 for square frames) for
   DA3-Small and DA3-Base, counted by torch.utils.flop_counter.FlopCounterMode running the real
   network on real CPU tensors with random weights (opt-in ``--flops``: DA3's RoPE reads
   positions.max(), so the meta device cannot run it).
Decoding the imagined latents (VAE) is not measured here: it belongs to the policy's VAE wiring.
Hook: pass the decoded instants to ``PoseHead.plan`` (see ``ImaginedFrames`` in
sparsevideonav_ros/policies/sparsevideonav/pose_head.py) and time the decode beside this.
"""
from __future__ import annotations

import argparse
import math
import statistics
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "test"))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from _machine import print_machine  # noqa: E402


def _median_time(fn, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--flops", action="store_true",
                        help="count DA3-Small/Base FLOPs at full size (real tensors on the CPU: minutes on 2 cores)")
    args = parser.parse_args()
    print_machine("cpu", "float32", "estimators run in float32 on the CPU")

    import numpy as np
    import torch

    from pose_renderer import TRAJECTORIES, Room, camera_pose, constant_twist, render
    from sparsevideonav_ros.policies.pose_estimators.base import intrinsics_from_fov
    from sparsevideonav_ros.policies.pose_estimators.mount import MOUNT_PRESETS
    from sparsevideonav_ros.policies.pose_estimators.opencv_estimator import OpenCVEstimatorConfig, OpenCVPoseEstimator
    from sparsevideonav_ros.policies.sparsevideonav.pose_head import FUTURE_TIMES_S, PoseHead

    size = args.size
    mount = MOUNT_PRESETS["osmo"]
    k = intrinsics_from_fov(size, size, math.radians(70.0))
    room = Room(seed=0)
    start, vx, vy, wz = TRAJECTORIES["straight"]
    frames = [render(room, k, size, size, *camera_pose(constant_twist(start, vx, vy, wz, t), mount.height_m,
                                                       mount.pitch_down_rad, mount.forward_m))
              for t in (0.0, *FUTURE_TIMES_S)]

    print(f"\n1. opencv estimator + projection, 9 frames {size}x{size} (median of {args.repeats})")
    for features in ("sift", "orb"):
        head = PoseHead(OpenCVPoseEstimator(mount, OpenCVEstimatorConfig(features=features)), mount)
        result = head.plan(0.0, frames[0], frames[1:], k)
        total = _median_time(lambda: head.plan(0.0, frames[0], frames[1:], k), args.repeats)
        t = result.estimate.timings_s
        print(f"   {features:5s} per plan {total * 1e3:7.1f} ms  (features {t['features_s'] * 1e3:.1f} ms, "
              f"geometry {t['geometry_s'] * 1e3:.1f} ms, project {result.timings_s['project_s'] * 1e3:.2f} ms); "
              f"valid frames {int(result.valid.sum())}/8, state {result.plan.state}")

    from sparsevideonav_ros.policies.pose_estimators.da3_estimator import (TINY, Da3EstimatorConfig, Da3PoseEstimator,
                                                                           build_network, load_folder, save_folder)
    print(f"\n2. da3 tiny random network (wiring size) + projection, 9 frames {size}x{size}")
    torch.manual_seed(0)
    with tempfile.TemporaryDirectory() as tmp:
        folder = save_folder(build_network("da3-small", TINY), Path(tmp) / "tiny", "da3-small", TINY)
        net, info = load_folder(folder)
    for res in (56, 140):
        estimator = Da3PoseEstimator(net, info, mount, Da3EstimatorConfig(process_res=res, min_ground_points=1))
        head = PoseHead(estimator, mount)
        head.plan(0.0, frames[0], frames[1:], k)
        total = _median_time(lambda: head.plan(0.0, frames[0], frames[1:], k), args.repeats)
        print(f"   process_res {res:4d}: per plan {total * 1e3:7.1f} ms ({info['parameters'] / 1e6:.1f} M params, "
              f"random weights: cost only)")

    print("\n3. DA3 FLOPs per plan at full size (9 views, FlopCounterMode)")
    if not args.flops:
        print("   skipped (--flops): DA3's RoPE reads positions.max() (data-dependent), so the network cannot")
        print("   run on the meta device; counting needs a real forward (minutes on 2 CPU cores)")
        return 0
    from torch.utils.flop_counter import FlopCounterMode
    for name in ("da3-small", "da3-base"):
        # Real tensors: the ViT constructor and DA3's RoPE call .item(), which meta tensors refuse.
        net = build_network(name)
        estimator = Da3PoseEstimator.__new__(Da3PoseEstimator)
        estimator.config = Da3EstimatorConfig()
        h, w = estimator.processed_size(size, size)
        x = torch.zeros(1, 9, 3, h, w)
        counter = FlopCounterMode(display=False)
        with counter, torch.no_grad():
            net(x, None, None, export_feat_layers=[], ref_view_strategy="first")
        params = sum(p.numel() for p in net.parameters())
        print(f"   {name:9s} {h}x{w}: {counter.get_total_flops() / 1e12:6.2f} TFLOP per plan, "
              f"{params / 1e6:.1f} M params")
    print("\n   (decode of the imagined instants: not measured here, see the module docstring)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
