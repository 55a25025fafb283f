"""Export recordings to a LeRobotDataset v3.0 with navigation semantics.

    python -m sparsevideonav_ros.tools.export_lerobot bags/run1 bags/run2 --out exports/go2 --camera-mount d455
    python -m sparsevideonav_ros.tools.export_lerobot osmo/walks --out exports/osmo --camera-mount osmo

Any source sparsevideonav_ros.datasets.open_episodes reads (our bags, plain episode folders, another
LeRobot v3 dataset) becomes one v3.0 dataset: 4 FPS video per camera, observation.state = odometry
(x, y, yaw), action = (dx, dy, dtheta) per frame, the instruction as the task, the camera's intrinsics
and mount in the metadata (docs/datasets.md, "LeRobot v3"). Every episode is validated before anything
is written. No ROS needed.

Exit status: 0 written; 2 unusable input or output (one line on stderr, no traceback); 130 interrupted
(Ctrl-C: nothing is left at --out, an earlier dataset there is kept).
"""
from __future__ import annotations

import argparse
import math
import sys
from dataclasses import replace
from pathlib import Path
from typing import Optional

from sparsevideonav_ros.datasets import EpisodeError, adapter_names, open_episodes

MOUNTS = ("osmo", "d455")


def apply_mount(episodes, mount_name: str) -> None:
    """Set the mount preset's height (m) and pitch (deg) on every episode whose camera does not know them."""
    from sparsevideonav_ros.policies.pose_estimators.mount import mount_preset

    mount = mount_preset(mount_name)
    for episode in episodes:
        camera = episode.camera
        episode.camera = replace(
            camera, name=camera.name or mount_name,
            mount_height_m=camera.mount_height_m if camera.mount_height_m is not None else mount.height_m,
            mount_pitch_down_deg=(camera.mount_pitch_down_deg if camera.mount_pitch_down_deg is not None
                                  else math.degrees(mount.pitch_down_rad)))


def main(argv: Optional[list[str]] = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m sparsevideonav_ros.tools.export_lerobot", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("sources", nargs="+", metavar="BAG", help="bags, episode folders or datasets to export")
    parser.add_argument("--out", required=True, type=Path, help="dataset folder to create (missing or empty)")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing LeRobot dataset at --out")
    parser.add_argument("--camera-mount", choices=MOUNTS, default=None,
                        help="mount preset (height, pitch) for episodes that do not record theirs; also names "
                             "the camera (observation.images.<mount>)")
    parser.add_argument("--camera", default="", help="camera name in observation.images.<camera> (default: the "
                                                     "episodes' camera name, the mount, else 'front')")
    parser.add_argument("--repo-id", default="local/sparsevideonav", help="dataset name recorded in info.json")
    parser.add_argument("--adapter", default="auto", help=f"source adapter: auto, {', '.join(adapter_names())}")
    parser.add_argument("--instruction", default="", help="instruction for episodes that recorded none")
    parser.add_argument("--robot-type", default="unitree_go2")
    options = parser.parse_args(argv)

    from tqdm import tqdm

    from sparsevideonav_ros.datasets import lerobot_v3
    from sparsevideonav_ros.datasets.video import VideoError

    out: Path = options.out
    if out.exists() and (not out.is_dir() or any(out.iterdir())) and not options.overwrite:
        print(f"error: {out} exists and is not empty; pass --overwrite to replace it", file=sys.stderr)
        return 2
    try:
        episodes = open_episodes(options.sources, adapter=options.adapter, instruction=options.instruction)
        if options.camera_mount:
            apply_mount(episodes, options.camera_mount)
        total = sum(len(e.frames) for e in episodes)
        with tqdm(total=total, unit="frame", desc="export", file=sys.stderr) as bar:
            lerobot_v3.write_dataset(episodes, out, repo_id=options.repo_id, robot_type=options.robot_type,
                                     camera_name=options.camera, overwrite=options.overwrite, progress=bar.update)
    except (EpisodeError, VideoError, ValueError, OSError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"interrupted: nothing written to {out}", file=sys.stderr)
        return 130
    print(f"{len(episodes)} episodes, {total} frames at 4 FPS -> {out.resolve()} (LeRobotDataset v3.0)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
