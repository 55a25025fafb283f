"""policy_node: camera frames + instruction -> 4 FPS history -> selected policy -> Path.

The policy runs in a worker thread so image callbacks never wait on inference; frames sampled
while it is busy queue up (bounded) and are all observed before the next plan.
"""
from __future__ import annotations

import collections
import threading
import time
import traceback
from typing import Optional

import numpy as np
from diagnostic_msgs.msg import DiagnosticArray
from nav_msgs.msg import Odometry, Path
from rcl_interfaces.msg import SetParametersResult
from sensor_msgs.msg import CompressedImage, Image
from std_msgs.msg import Header, String
from std_srvs.srv import Trigger

from sparsevideonav_ros.configs import ConfigError, PolicyNodeConfig
from sparsevideonav_ros.core import images
from sparsevideonav_ros.core.copies import CopyFilter
from sparsevideonav_ros.core.frame_sampler import FrameSampler
from sparsevideonav_ros.core.pose_history import PoseHistory
from sparsevideonav_ros.core.status import ErrorLog
from sparsevideonav_ros.nodes import common, convert
from sparsevideonav_ros.policies import registry
from sparsevideonav_ros.policies.base import Observation, Plan, PolicyError

NAME = "policy_node"


class PolicyNode(common.StackNode):
    def __init__(self) -> None:
        super().__init__(NAME)
        self.config: PolicyNodeConfig = common.declare_config(self, PolicyNodeConfig, dynamic=("instruction",))
        policy_cls = registry.policy_class(self.config.policy)  # UnknownPolicyError lists known names
        policy_config = common.declare_config(self, policy_cls.config_class, prefix=f"{self.config.policy}.")
        self.inactive_parameter_prefixes = tuple(f"{name}." for name in registry.known_policies()
                                                 if name != self.config.policy)
        self.policy = policy_cls(policy_config)
        self.policy_lock = threading.Lock()

        self.sampler = FrameSampler(rate_hz=self.config.history_rate_hz)
        if self.config.history_grid_anchor_s > 0:  # a replay: sample the frames the recorded run sampled
            self.sampler.anchor_at(self.config.history_grid_anchor_s)
        self.odometry = PoseHistory(horizon_s=10.0)
        self.pending: collections.deque[Observation] = collections.deque(maxlen=self.config.max_pending_frames)
        self.wake = threading.Event()
        self.closing = False
        self.counters = collections.Counter({key: 0 for key in (
            "frames_in", "frames_rejected", "frames_sampled", "plans", "instructions", "instruction_copies")})
        # latest error, its age, ERROR only while recent (core/status.py); on the monotonic clock, so a
        # paused /clock (replay) cannot keep an old error alive
        self.errors = ErrorLog()
        # An instruction arrives once per subscription that matches its publisher (up to three copies, see
        # stack.LATCHED_INPUT): the same text less than core/copies.COPY_WINDOW_S (2 s) after the previous one
        # is a copy and ignored (so is a publisher repeating it at 1 Hz); the same text sent again after a
        # pause is taken again (JanusVLN goes on after it stopped, SparseVideoNav re-plans).
        self.instruction_copies = CopyFilter()
        self.last_plan: Optional[Plan] = None
        self.last_published_preview: Optional[Plan] = None
        self.last_latency_s = float("nan")
        self.last_compute_s = float("nan")

        self.path_pub = self.create_publisher(Path, "policy/path", common.topic_qos("policy/path"))
        self.future_pub = self.create_publisher(Image, "policy/future", common.topic_qos("policy/future"))
        self.future_jpeg_pub = self.create_publisher(CompressedImage, "policy/future/compressed",
                                                     common.topic_qos("policy/future/compressed"))
        self.status_pub = self.create_publisher(DiagnosticArray, "policy/status", common.topic_qos("policy/status"))
        if self.config.image_input == "compressed":
            self.create_subscription(CompressedImage, "camera/image_raw/compressed", self.on_compressed,
                                     common.topic_qos("camera/image_raw/compressed"))
        else:
            self.create_subscription(Image, "camera/image_raw", self.on_raw, common.topic_qos("camera/image_raw"))
        # user-facing inputs: one subscription per QoS profile, so every publisher a user has matches
        common.subscribe(self, String, "instruction", self.on_instruction)
        common.subscribe(self, Odometry, "odom", self.on_odom)
        self.create_service(Trigger, "policy/reset", self.on_reset)
        self.add_on_set_parameters_callback(self.on_parameters)
        self.create_timer(1.0 / self.config.status_rate_hz, self.publish_status)

        if self.config.instruction.strip():
            self.set_instruction(self.config.instruction)
        self.worker = threading.Thread(target=self.run_worker, name="policy-worker", daemon=True)
        self.worker.start()
        self.get_logger().info(f"policy {self.policy.name!r} ready, {self.config.image_input} images, "
                               f"history at {self.config.history_rate_hz:g} FPS")

    # -- inputs ---------------------------------------------------------------------------
    def report_error(self, message: str) -> None:
        self.errors.report(message, time.monotonic())
        self.get_logger().error(message, throttle_duration_sec=1.0)

    def on_compressed(self, msg: CompressedImage) -> None:
        self.counters["frames_in"] += 1
        # Most camera frames fall between 4 FPS ticks: skip their JPEG decode entirely.
        if not self.sampler.would_accept(common.stamp_to_seconds(msg.header.stamp)):
            return
        try:
            rgb = convert.rgb_from_compressed_msg(msg)
        except images.ImageEncodingError as error:
            self.counters["frames_rejected"] += 1
            self.report_error(f"rejected compressed frame: {error}")
            return
        self.accept_frame(rgb, msg.header)

    def on_raw(self, msg: Image) -> None:
        self.counters["frames_in"] += 1
        try:
            rgb = convert.rgb_from_image_msg(msg)
        except images.ImageEncodingError as error:
            self.counters["frames_rejected"] += 1
            self.report_error(f"rejected raw frame: {error}")
            return
        self.accept_frame(rgb, msg.header)

    def accept_frame(self, rgb: np.ndarray, header: Header) -> None:
        try:
            images.check_image_size(rgb, self.config.expected_width, self.config.expected_height)
        except images.ImageEncodingError as error:
            self.counters["frames_rejected"] += 1
            self.report_error(f"rejected frame: {error}")
            return
        stamp = common.stamp_to_seconds(header.stamp)
        if not self.sampler.offer(stamp):
            return
        try:
            odom_pose = self.odometry.pose_at(stamp)
        except LookupError:
            odom_pose = None  # policies that need odometry say so themselves
        self.pending.append(Observation(stamp=stamp, rgb=rgb, frame_id=header.frame_id, odom_pose=odom_pose))
        self.counters["frames_sampled"] += 1
        self.wake.set()

    def on_odom(self, msg: Odometry) -> None:
        try:
            self.odometry.add(common.stamp_to_seconds(msg.header.stamp), convert.pose_from_odometry_msg(msg))
        except ValueError as error:  # non-finite odometry: keep the last good poses, say why
            self.report_error(f"odometry rejected: {error}")

    def on_instruction(self, msg: String) -> None:
        if self.instruction_copies.is_copy(msg.data, time.monotonic()):
            self.counters["instruction_copies"] += 1
            return
        self.set_instruction(msg.data)

    def set_instruction(self, text: str) -> bool:
        try:
            with self.policy_lock:
                self.policy.set_instruction(text)
        except PolicyError as error:
            self.report_error(f"instruction refused: {error}")
            return False
        self.counters["instructions"] += 1
        self.get_logger().info(f"instruction: {text.strip()!r}")
        return True

    def on_parameters(self, parameters) -> SetParametersResult:
        for parameter in parameters:
            if parameter.name == "instruction" and not self.set_instruction(str(parameter.value)):
                return SetParametersResult(successful=False, reason=self.errors.message)
            if parameter.name == "policy":
                return SetParametersResult(successful=False, reason="policy is chosen at start; relaunch with policy:=")
        return SetParametersResult(successful=True)

    def on_reset(self, request, response):
        with self.policy_lock:
            self.pending.clear()
            self.sampler.reset()
            self.policy.reset()
        self.publish_stop(common.now_seconds(self))
        response.success, response.message = True, "policy history and progress cleared"
        return response

    # -- worker ---------------------------------------------------------------------------
    def run_worker(self) -> None:
        while not self.closing:
            if not self.wake.wait(timeout=0.1):
                continue
            self.wake.clear()
            batch = []
            while self.pending:
                batch.append(self.pending.popleft())
            if batch:
                self.run_policy(batch)

    def run_policy(self, batch: list[Observation]) -> None:
        started = time.perf_counter()
        newest = batch[-1]
        try:
            with self.policy_lock:
                for observation in batch[:-1]:
                    self.policy.observe(observation)
                plan = self.policy.step(newest)
        except Exception as error:  # any policy failure must stop the robot, and be visible
            self.report_error(f"policy {self.policy.name} failed: {error}")
            self.get_logger().debug(traceback.format_exc())
            self.publish_stop(newest.stamp)
            return
        if plan is not self.last_plan:  # a policy may repeat its last plan between planning steps
            self.last_compute_s = time.perf_counter() - started
            self.last_latency_s = common.now_seconds(self) - plan.stamp
        self.last_plan = plan
        self.counters["plans"] += 1
        self.path_pub.publish(convert.path_msg_from_waypoints(plan.waypoints, self.plan_header(plan.stamp)))
        if plan.preview is not None and plan is not self.last_published_preview:
            self.publish_preview(plan)

    def publish_preview(self, plan: Plan) -> None:
        """The policy's imagined future, built only for subscribers (a mosaic costs a JPEG encode)."""
        self.last_published_preview = plan
        header = self.plan_header(plan.stamp)
        header.frame_id = self.config.plan_frame
        preview = np.ascontiguousarray(plan.preview)
        if self.future_pub.get_subscription_count():
            self.future_pub.publish(convert.image_msg_from_array(preview, "rgb8", header))
        if self.future_jpeg_pub.get_subscription_count():
            self.future_jpeg_pub.publish(convert.compressed_msg_from_rgb(preview, 90, header))

    def plan_header(self, stamp: float) -> Header:
        return Header(stamp=common.seconds_to_stamp(stamp), frame_id=self.config.plan_frame)

    def publish_stop(self, stamp: float) -> None:
        """An empty path: the controller stops at once instead of waiting for the plan timeout."""
        self.path_pub.publish(convert.path_msg_from_waypoints(np.zeros((0, 3)), self.plan_header(stamp)))

    # -- status ---------------------------------------------------------------------------
    def publish_status(self) -> None:
        state = self.last_plan.state if self.last_plan else "waiting_frames"
        now = time.monotonic()
        level = self.errors.level(now)
        values = {
            "policy": self.policy.name, "state": state, "instruction": self.policy.instruction,
            "latency_ms": f"{self.last_latency_s * 1e3:.1f}", "compute_ms": f"{self.last_compute_s * 1e3:.1f}",
            "history_length": self.policy.history_length, "pending_frames": len(self.pending),
            **self.errors.values(now), **{k: v for k, v in sorted(self.counters.items())},
            **{f"{name.removesuffix('_s')}_ms": f"{seconds * 1e3:.1f}"
               for name, seconds in (self.last_plan.timings_s.items() if self.last_plan else ())},
        }
        self.status_pub.publish(common.diagnostics(self, f"{NAME}: {self.policy.name}", level, state, values))

    def on_shutdown(self) -> None:
        self.closing = True
        self.wake.set()
        self.worker.join(timeout=2.0)


def main(args=None) -> int:
    return common.run_node(PolicyNode, args)


if __name__ == "__main__":
    raise SystemExit(main())
