"""policy_node whose SparseVideoNav imagines a rendered walk in place of its decoded future (tests only).

Why: tiny random weights imagine noise, which the pose head rightly refuses (test_svn_node checks the robot
then stands still), so with them nothing downstream of the estimator ever runs over ROS. This entry point
runs the real policy_node with the real policy, backbone, pose head, opencv estimator and plan; only the
policy's ImaginedFrames hook (``policy.imagined_frames``, latents -> (current frame, future frames)) returns
rendered frames of a straight walk (test/pose_renderer.py: 256x256, 70 deg horizontal FOV, the Osmo mount)
instead of the VAE's decode. Whatever the robot does then comes from the pose head's estimate of that walk.

    python -m rendered_imagination_node --ros-args ...   (test/ on PYTHONPATH)
"""
from __future__ import annotations

import math

from pose_renderer import TRAJECTORIES, Room, camera_pose, constant_twist, render
from sparsevideonav_ros.nodes import policy_node
from sparsevideonav_ros.policies.pose_estimators.base import intrinsics_from_fov
from sparsevideonav_ros.policies.pose_estimators.mount import MOUNT_PRESETS
from sparsevideonav_ros.policies.sparsevideonav.policy import SparseVideoNavPolicy

SIZE = 256
FOV_DEG = 70.0
MOUNT = "osmo"
TRAJECTORY = "straight"  # 0.3 m/s forward


def rendered_walk(instant_times_s) -> tuple:
    """(current frame, [frame at each instant]) uint8 RGB (SIZE, SIZE, 3) along TRAJECTORY."""
    mount = MOUNT_PRESETS[MOUNT]
    start, vx, vy, wz = TRAJECTORIES[TRAJECTORY]
    k = intrinsics_from_fov(SIZE, SIZE, math.radians(FOV_DEG))
    frames = [render(Room(seed=0), k, SIZE, SIZE,
                     *camera_pose(constant_twist(start, vx, vy, wz, t), mount.height_m, mount.pitch_down_rad,
                                  mount.forward_m, mount.lateral_m))
              for t in (0.0, *instant_times_s)]
    return frames[0], frames[1:]


def install() -> None:
    """Make every SparseVideoNavPolicy built from now on (in this process) imagine the rendered walk.

    Only the node process calls this (``__main__`` below); importing the module (the test reads its
    constants) changes nothing."""
    library_init = SparseVideoNavPolicy.__init__

    def init_with_rendered_imagination(self, *args, **kwargs):
        library_init(self, *args, **kwargs)
        if self.pose_head is not None:
            # The walk is relative to the current frame, so the same frames stand for every plan.
            current, futures = rendered_walk(self.pose_times_s)
            self.imagined_frames = lambda latents: (current, futures)

    SparseVideoNavPolicy.__init__ = init_with_rendered_imagination


if __name__ == "__main__":
    install()
    raise SystemExit(policy_node.main())
