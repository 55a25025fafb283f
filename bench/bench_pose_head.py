"""Pose-head cost per plan: estimate + project on the CPU, and DA3 FLOPs at full size.

    .venv/bin/python bench/bench_pose_head.py [--repeats 3] [--size 256]

1. ``opencv`` estimator on 9 rendered 256x256 frames (the current frame + the 8 imagined instants;
   the test renderer's room, straight walk, Osmo mount preset) + ground-plane projection + plan.
2. ``da3`` with the tiny random DA3 (wiring-size network, random weights) at process_res 56 and 140.
4. FLOPs of one DA3 forward of 3 views (the current frame + the default 2 instants) and of 9 views at
   its processing resolution (504x504 for square frames) for DA3-Small and DA3-Base, next to the
   full-size 4-step backbone, counted by torch.utils.flop_counter.FlopCounterMode running the real
   network on real CPU tensors with random weights (opt-in ``--flops``: DA3's RoPE reads
   positions.max(), so the meta device cannot run it).
3. The whole pose head per plan next to the 4-step backbone on the same model set (bench_sparsevideonav's
   CPU-sized set: 128x128 frames, 16x16 latents, Wan VAE base width 12), interleaved, medians: each decode
   choice (the full 10-latent decode the preview does; ``decode_instants`` up to T+2 s = the policy's
   default pose_future_instants 2, up to T+5 s, all 8 instants; half resolution = latents average-pooled
   2x2 before the decoder) + the opencv estimate and projection on rendered frames of the decoded size.
   Then FLOPs of the same decode choices and of the 4-step backbone at full size (meta device, no weights).
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

from _machine import command_line, print_machine  # noqa: E402


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
    parser.add_argument("--no-decode", action="store_true", help="skip 3. (decode vs backbone, about a minute)")
    parser.add_argument("--dtype", default="both", choices=("float32", "bfloat16", "auto", "both"),
                        help="3.: dtype of the backbone and the VAE (auto: bfloat16 where the CPU has native bf16, "
                             "as bench_sparsevideonav picks; both: float32 (params/policy.yaml's CPU default) and "
                             "then auto's pick when it differs; default %(default)s)")
    parser.add_argument("--flops", action="store_true",
                        help="count DA3-Small/Base FLOPs at full size (real tensors on the CPU: minutes on 2 cores)")
    args = parser.parse_args()
    print(command_line(), flush=True)
    print_machine("cpu", "float32", "estimators run in float32 on the CPU")

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
    from sparsevideonav_ros.policies.pose_estimators.mount import GroundScaleConfig
    print(f"\n2. da3 tiny random network (wiring size) + projection, 9 frames {size}x{size}")
    torch.manual_seed(0)
    with tempfile.TemporaryDirectory() as tmp:
        folder = save_folder(build_network("da3-small", TINY), Path(tmp) / "tiny", "da3-small", TINY)
        net, info = load_folder(folder)
    for res in (56, 140):
        estimator = Da3PoseEstimator(net, info, mount, Da3EstimatorConfig(process_res=res, ground=GroundScaleConfig(min_points=1)))
        head = PoseHead(estimator, mount)
        head.plan(0.0, frames[0], frames[1:], k)
        total = _median_time(lambda: head.plan(0.0, frames[0], frames[1:], k), args.repeats)
        print(f"   process_res {res:4d}: per plan {total * 1e3:7.1f} ms ({info['parameters'] / 1e6:.1f} M params, "
              f"random weights: cost only)")

    if not args.no_decode:
        from _machine import pick_dtype
        runs = [pick_dtype(args.dtype, "cpu")] if args.dtype != "both" else [
            ("float32", "params/policy.yaml's CPU default")]
        if args.dtype == "both" and pick_dtype("auto", "cpu")[0] != "float32":
            runs.append(pick_dtype("auto", "cpu"))
        print("\n3. pose head per plan vs the 4-step backbone, CPU-sized set (128x128 frames, VAE base width 12), "
              f"median of {args.repeats}, interleaved")
        summaries = [decode_vs_backbone(args.repeats, dtype, reason) for dtype, reason in runs]
        decode_flops(summaries)

    print("\n4. DA3 FLOPs per plan at full size (FlopCounterMode), next to the full-size 4-step backbone")
    if not args.flops:
        print("   skipped (--flops): DA3's RoPE reads positions.max() (data-dependent), so the network cannot")
        print("   run on the meta device; counting needs a real forward (minutes on 2 CPU cores)")
        return 0
    from torch.utils.flop_counter import FlopCounterMode

    import bench_sparsevideonav as svn
    backbone_tflop = full_size_backbone_gflop(svn) / 1e3
    for name in ("da3-small", "da3-base"):
        # Real tensors: the ViT constructor and DA3's RoPE call .item(), which meta tensors refuse.
        net = build_network(name)
        params = sum(p.numel() for p in net.parameters())
        estimator = Da3PoseEstimator.__new__(Da3PoseEstimator)
        estimator.config = Da3EstimatorConfig()
        h, w = estimator.processed_size(size, size)
        # 3 views = the current frame + the default 2 instants (pose_future_instants 2); 9 = all 8 instants.
        for views in (3, 9):
            x = torch.zeros(1, views, 3, h, w)
            counter = FlopCounterMode(display=False)
            with counter, torch.no_grad():
                net(x, None, None, export_feat_layers=[], ref_view_strategy="first")
            tflop = counter.get_total_flops() / 1e12
            print(f"   {name:9s} {h}x{w}, {views} views: {tflop:6.2f} TFLOP per plan = {tflop / backbone_tflop:5.3f}x "
                  f"the 4-step backbone ({backbone_tflop:.1f} TFLOP), {params / 1e6:.1f} M params")
    return 0


def _decode_choices():
    """name -> (latents (1, 16, 10, h, w) -> decoded frames, latents decoded, frames kept, scale)."""
    import torch.nn.functional as F

    from sparsevideonav_ros.policies.sparsevideonav.video_latents import decode_instants, decode_latents
    return {
        "full decode, 10 latents -> 37 frames (preview)": (lambda vae, z: decode_latents(vae, z), 10, 37, 1),
        "decode_instants to T+2 s (default: 4 latents, 3 kept)": (lambda vae, z: decode_instants(vae, z, [1, 2, 3]),
                                                                  4, 3, 1),
        "decode_instants to T+5 s (5 latents, 4 kept)": (lambda vae, z: decode_instants(vae, z, [1, 2, 3, 4]), 5, 4, 1),
        "decode_instants, all 8 instants (10 latents, 9 kept)": (lambda vae, z: decode_instants(vae, z, range(1, 10)),
                                                                 10, 9, 1),
        "half resolution to T+2 s (latents pooled 2x2)": (
            lambda vae, z: decode_instants(vae, F.avg_pool3d(z, (1, 2, 2)), [1, 2, 3]), 4, 3, 2),
        LIBRARY_KERNELS: (lambda vae, z: decode_instants(vae, z, [1, 2, 3]), 4, 3, 1),
    }


# The default choice on a VAE without video_latents.use_fast_cpu_kernels (diffusers' forward as written):
# what the two CPU kernel overrides save, measured side by side.
LIBRARY_KERNELS = "to T+2 s, diffusers' own CPU kernels (no override)"


def _library_vae(vae):
    """Same weights, diffusers' own forward: a fresh AutoencoderKLWan that use_fast_cpu_kernels never saw."""
    from diffusers import AutoencoderKLWan

    library = AutoencoderKLWan(**{k: v for k, v in vae.config.items() if not k.startswith("_")})
    library.load_state_dict(vae.state_dict())
    import bench_sparsevideonav as svn

    return svn.cast(library, next(vae.parameters()).dtype).eval().requires_grad_(False)


DEFAULT_CHOICE = "decode_instants to T+2 s (default: 4 latents, 3 kept)"


def decode_vs_backbone(repeats: int, dtype_name: str, dtype_reason: str) -> str:
    """Time each decode choice + the opencv estimate next to the backbone in ``dtype_name``; returns the
    default choice's summary (pose head ms and its ratio to the backbone)."""
    import torch

    import bench_sparsevideonav as svn
    from pose_renderer import TRAJECTORIES, Room, camera_pose, constant_twist, render
    from sparsevideonav_ros.policies.pose_estimators.base import intrinsics_from_fov
    from sparsevideonav_ros.policies.pose_estimators.mount import MOUNT_PRESETS
    from sparsevideonav_ros.policies.pose_estimators.opencv_estimator import OpenCVPoseEstimator
    from sparsevideonav_ros.policies.sparsevideonav.pose_head import FUTURE_TIMES_S, PoseHead
    from sparsevideonav_ros.policies.sparsevideonav.sampling import sample_sparse_future

    spec = svn.cpu_spec()
    print(f"\n   {dtype_name} ({dtype_reason or 'as asked'}), {spec.name} set ({spec.image_size}x{spec.image_size} "
          f"frames, VAE base width {spec.vae['base_dim']})")
    with tempfile.TemporaryDirectory() as tmp:
        models = svn.build_models(spec, "cpu", svn.DTYPES[dtype_name], Path(tmp))
    reference, text, tokens = svn.sampler_inputs(models, 8)

    def backbone():
        return sample_sparse_future(models.transformer, reference, text, tokens, sampler="unipc", steps=4,
                                    generator=torch.Generator().manual_seed(0))

    latents = backbone()
    choices = _decode_choices()
    library_vae = _library_vae(models.vae)
    times = {name: [] for name in ("backbone", *choices)}
    with torch.no_grad():
        for _ in range(repeats):
            for name in times:
                vae = library_vae if name == LIBRARY_KERNELS else models.vae
                start = time.perf_counter()
                backbone() if name == "backbone" else choices[name][0](vae, latents)
                times[name].append(time.perf_counter() - start)
    med = {name: statistics.median(values) for name, values in times.items()}

    # Estimate + project at the decoded sizes, on rendered frames of a straight walk (Osmo mount, 70 deg FOV):
    # the cost, and whether the estimator still vouches for frames that small.
    mount = MOUNT_PRESETS["osmo"]
    start_pose, vx, vy, wz = TRAJECTORIES["straight"]
    estimate = {}
    for scale in (1, 2):
        size = spec.image_size // scale
        k = intrinsics_from_fov(size, size, math.radians(70.0))
        frames = [render(Room(seed=0), k, size, size, *camera_pose(constant_twist(start_pose, vx, vy, wz, t),
                                                                   mount.height_m, mount.pitch_down_rad,
                                                                   mount.forward_m)) for t in (0.0, 1.0, 2.0)]
        head = PoseHead(OpenCVPoseEstimator(mount), mount)
        result = head.plan(0.0, frames[0], frames[1:], k, FUTURE_TIMES_S[:2])
        estimate[scale] = (_median_time(lambda: head.plan(0.0, frames[0], frames[1:], k, FUTURE_TIMES_S[:2]), repeats),
                           int(result.valid.sum()), result.reason)
    b = med["backbone"]
    print(f"   4-step backbone (sample_sparse_future)                     {b * 1e3:8.1f} ms   1.00x")
    for name, (_, latents_decoded, kept, scale) in choices.items():
        est_s, valid, reason = estimate[scale]
        total = med[name] + est_s
        print(f"   {name:58s} {med[name] * 1e3:8.1f} ms  {med[name] / b:5.2f}x | + opencv estimate/project "
              f"{est_s * 1e3:6.1f} ms = pose head {total * 1e3:8.1f} ms {total / b:5.2f}x of the backbone")
    for scale, (est_s, valid, reason) in estimate.items():
        size = spec.image_size // scale
        print(f"   opencv on rendered {size}x{size} frames (T+1, T+2 s): {valid}/2 instants valid"
              + (f", stop: {reason}" if reason else ""))

    default_s = med[DEFAULT_CHOICE] + estimate[1][0]
    return f"{dtype_name} {default_s * 1e3:.0f} ms = {default_s / b:.2f}x the 4-step backbone ({b * 1e3:.0f} ms)"


def full_size_backbone_gflop(svn) -> float:
    """GFLOP of the 4-step backbone at full size as the sampler runs it (meta device, as decode_flops counts)."""
    import torch

    which = svn.full_size_spec()
    transformer, _, _ = svn.build_modules(which, "meta", torch.float32)
    return svn.backbone_plan_flops(transformer, which)[2] / 1e9


def decode_flops(summaries: list[str]) -> None:
    """FLOPs of the decode choices and the 4-step backbone at both sizes (meta device), then the summary line.

    On the CPU the VAE's 3D convolutions run below the backbone's FLOP rate, so the time ratios above are
    worse than the FLOP ratios; on a GPU time follows FLOPs more closely."""
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    import bench_sparsevideonav as svn

    spec = svn.cpu_spec()
    choices = _decode_choices()
    ratios = {}
    for which in (spec, svn.full_size_spec()):
        transformer, vae, _ = svn.build_modules(which, "meta", torch.float32)
        z = torch.zeros(1, 16, 10, which.grid, which.grid, device="meta")

        def count(fn) -> float:
            with torch.no_grad(), FlopCounterMode(display=False) as counter:
                fn()
            return counter.get_total_flops() / 1e9

        backbone_g = svn.backbone_plan_flops(transformer, which)[2] / 1e9
        print(f"\n   FLOPs, {which.name} ({which.image_size}x{which.image_size}, VAE base width "
              f"{which.vae['base_dim']}, meta device): 4-step backbone {backbone_g:.1f} GFLOP")
        for name, (fn, *_rest) in choices.items():
            if name == LIBRARY_KERNELS:
                continue  # the same FLOPs as the default choice
            g = count(lambda fn=fn: fn(vae, z))
            print(f"   {name:58s} {g:9.1f} GFLOP {g / backbone_g:5.2f}x of the backbone")
            ratios[which.name, name] = g / backbone_g
    print(f"   pose head per plan (default: decode to T+2 s + opencv) on the {spec.name} set: "
          f"{'; '.join(summaries)}; decode FLOPs {ratios[spec.name, DEFAULT_CHOICE]:.2f}x the backbone's there, "
          f"{ratios[svn.full_size_spec().name, DEFAULT_CHOICE]:.2f}x at full size")


if __name__ == "__main__":
    sys.exit(main())
