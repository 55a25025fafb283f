"""policy_node: camera frames + instruction -> the policy runner -> Path.

Thin: callbacks decode frames and hand them, odometry, instructions and reset requests to a
PolicyRunner (policies/runner.py: 4 FPS sampling, odometry at the frame's stamp, bounded queue,
planning cadence) and return at once; one worker thread loads the policy's weights (after the node
is up: parameters and policy/status, state 'loading', answer meanwhile), then runs every policy call
(set_instruction encodes the text there, reset too) and publishes what the runner returns. A load
failure (missing checkpoint files...) ends the node with exit code 2 and one FATAL line: the worker
records it and the spin loop raises it (check_health, nodes/common.run_node).

Not a managed (lifecycle) node: a lifecycle node waits for someone to configure and activate it
(nav2 runs a lifecycle_manager for that); our launch files, the process runner, replays and the
tests would all need that manager and lifecycle_msgs, for no change a user sees: loading in the
worker already answers queries during the load, and the policy is chosen at start (a reload is a
restart), so there is no transition to manage.
"""
from __future__ import annotations

import threading
import time
from typing import Optional

import numpy as np
from diagnostic_msgs.msg import DiagnosticArray
from nav_msgs.msg import Odometry, Path
from rcl_interfaces.msg import SetParametersResult
from sensor_msgs.msg import CameraInfo, CompressedImage, Image
from std_msgs.msg import Header, String
from std_srvs.srv import Trigger
from visualization_msgs.msg import MarkerArray

from sparsevideonav_ros.configs import ConfigError, PolicyNodeConfig
from sparsevideonav_ros.core import images
from sparsevideonav_ros.core.copies import CopyFilter
from sparsevideonav_ros.core.intrinsics import matrix_from_camera_info
from sparsevideonav_ros.core.status import ErrorLog
from sparsevideonav_ros.nodes import common, convert, markers
from sparsevideonav_ros.policies import registry
from sparsevideonav_ros.policies.base import Plan, PolicyError
from sparsevideonav_ros.policies.runner import FAILED, LOADING, PolicyRunner, Step

NAME = "policy_node"


class PolicyNode(common.StackNode):
    def __init__(self) -> None:
        super().__init__(NAME)
        self.config: PolicyNodeConfig = common.declare_config(self, PolicyNodeConfig, dynamic=("instruction",))
        policy_cls = registry.policy_class(self.config.policy)  # UnknownPolicyError lists known names
        policy_config = common.declare_config(self, policy_cls.config_class, prefix=f"{self.config.policy}.")
        self.inactive_parameter_prefixes = tuple(f"{name}." for name in registry.known_policies()
                                                 if name != self.config.policy)
        self.frames_in = self.frames_rejected = self.instruction_copies_seen = 0
        # latest error, its age, ERROR only while recent (core/status.py); on the monotonic clock, so a
        # paused /clock (replay) cannot keep an old error alive
        self.errors = ErrorLog()
        # ConfigError here (history_rate_hz contradicting the policy's rate) refuses the start
        self.runner = PolicyRunner(policy_cls, lambda: policy_cls(policy_config), rate_hz=self.config.history_rate_hz,
                                   max_pending_frames=self.config.max_pending_frames,
                                   grid_anchor_s=self.config.history_grid_anchor_s,
                                   report_error=self.report_error, log_info=self.get_logger().info)
        # An instruction arrives once per subscription that matches its publisher (up to three copies, see
        # stack.LATCHED_INPUT): the same text less than core/copies.COPY_WINDOW_S (2 s) after the previous one
        # is a copy and ignored (so is a publisher repeating it at 1 Hz); the same text sent again after a
        # pause is taken again (JanusVLN goes on after it stopped, SparseVideoNav re-plans).
        self.instruction_copies = CopyFilter()
        self.last_plan: Optional[Plan] = None
        self.last_published_preview: Optional[Plan] = None
        self.last_latency_s = float("nan")

        self.path_pub = self.create_publisher(Path, "policy/path", common.topic_qos("policy/path"))
        self.future_pub = self.create_publisher(Image, "policy/future", common.topic_qos("policy/future"))
        self.future_jpeg_pub = self.create_publisher(CompressedImage, "policy/future/compressed",
                                                     common.topic_qos("policy/future/compressed"))
        self.status_pub = self.create_publisher(DiagnosticArray, "policy/status", common.topic_qos("policy/status"))
        # RViz/Foxglove markers of each plan (nodes/markers.py): here because only the policy knows the waypoints'
        # timing (Plan.waypoint_dt_s, not in nav_msgs/Path); built only while someone subscribes.
        self.markers_pub = self.create_publisher(MarkerArray, "policy/markers", common.topic_qos("policy/markers"))
        if self.config.image_input == "compressed":
            self.create_subscription(CompressedImage, "camera/image_raw/compressed", self.on_compressed,
                                     common.topic_qos("camera/image_raw/compressed"))
        else:
            self.create_subscription(Image, "camera/image_raw", self.on_raw, common.topic_qos("camera/image_raw"))
        # The camera's calibration for the pose head (SparseVideoNav action_head pose): the newest CameraInfo,
        # used for frames of its size only (policies/base.Observation.camera_matrix).
        self.camera_info: Optional[CameraInfo] = None
        self.create_subscription(CameraInfo, "camera/camera_info", self.on_camera_info,
                                 common.topic_qos("camera/camera_info"))
        # user-facing inputs: one subscription per QoS profile, so every publisher a user has matches
        common.subscribe(self, String, "instruction", self.on_instruction)
        common.subscribe(self, Odometry, "odom", self.on_odom)
        self.create_service(Trigger, "policy/reset", self.on_reset)
        self.add_on_set_parameters_callback(self.on_parameters)
        # On the steady clock: status flows while a replay's /clock is held (the bag player waits for this
        # very status to leave 'loading' before it plays, so a sim-time timer would never fire).
        from rclpy.clock import Clock, ClockType
        self.create_timer(1.0 / self.config.status_rate_hz, self.publish_status,
                          clock=Clock(clock_type=ClockType.STEADY_TIME))

        if self.config.instruction.strip():
            self.set_instruction(self.config.instruction)
        self.stop_worker = threading.Event()
        self.worker = threading.Thread(target=self.run_worker, name="policy-worker", daemon=True)
        self.worker.start()
        self.get_logger().info(f"policy {self.runner.policy_name!r} loading, {self.config.image_input} images, "
                               f"history at {self.runner.rate_hz:g} FPS")

    # -- inputs (executor callbacks: none of them waits on the policy) ------------------------
    def report_error(self, message: str) -> None:
        self.errors.report(message, time.monotonic())
        self.get_logger().error(message, throttle_duration_sec=1.0)

    def on_compressed(self, msg: CompressedImage) -> None:
        self.frames_in += 1
        # Most camera frames fall between 4 FPS ticks: skip their JPEG decode entirely.
        if not self.runner.wants_frame(common.stamp_to_seconds(msg.header.stamp)):
            return
        try:
            rgb = convert.rgb_from_compressed_msg(msg)
        except images.ImageEncodingError as error:
            self.frames_rejected += 1
            self.report_error(f"rejected compressed frame: {error}")
            return
        self.accept_frame(rgb, msg.header)

    def on_raw(self, msg: Image) -> None:
        self.frames_in += 1
        try:
            rgb = convert.rgb_from_image_msg(msg)
        except images.ImageEncodingError as error:
            self.frames_rejected += 1
            self.report_error(f"rejected raw frame: {error}")
            return
        self.accept_frame(rgb, msg.header)

    def accept_frame(self, rgb: np.ndarray, header: Header) -> None:
        try:
            images.check_image_size(rgb, self.config.expected_width, self.config.expected_height)
        except images.ImageEncodingError as error:
            self.frames_rejected += 1
            self.report_error(f"rejected frame: {error}")
            return
        info = self.camera_info
        camera_matrix = None if info is None else matrix_from_camera_info(info.k, info.width, info.height,
                                                                         rgb.shape[1], rgb.shape[0])
        self.runner.add_frame(common.stamp_to_seconds(header.stamp), rgb, header.frame_id, camera_matrix=camera_matrix)

    def on_camera_info(self, msg: CameraInfo) -> None:
        self.camera_info = msg

    def on_odom(self, msg: Odometry) -> None:
        try:
            self.runner.add_odometry(common.stamp_to_seconds(msg.header.stamp), convert.pose_from_odometry_msg(msg))
        except ValueError as error:  # non-finite odometry: keep the last good poses, say why
            self.report_error(f"odometry rejected: {error}")

    def on_instruction(self, msg: String) -> None:
        if self.instruction_copies.is_copy(msg.data, time.monotonic()):
            self.instruction_copies_seen += 1
            return
        self.set_instruction(msg.data)

    def set_instruction(self, text: str) -> bool:
        """Queue the instruction for the worker; False (error reported) when it is empty."""
        try:
            self.runner.set_instruction(text)
        except PolicyError as error:
            self.report_error(f"instruction refused: {error}")
            return False
        return True

    def on_parameters(self, parameters) -> SetParametersResult:
        for parameter in parameters:
            if parameter.name == "instruction" and not self.set_instruction(str(parameter.value)):
                return SetParametersResult(successful=False, reason=self.errors.message)
            if parameter.name == "policy":
                return SetParametersResult(successful=False, reason="policy is chosen at start; relaunch with policy:=")
        return SetParametersResult(successful=True)

    def on_reset(self, request, response):
        self.runner.reset()  # the worker resets the policy before it sees another frame
        self.publish_stop(common.now_seconds(self))
        response.success, response.message = True, "policy history and progress cleared"
        return response

    # -- worker ---------------------------------------------------------------------------
    def run_worker(self) -> None:
        self.runner.serve(self.stop_worker, self.publish_step)

    def check_health(self) -> None:
        """Called by the spin loop: a policy that failed to load, or whose worker stopped, ends the node
        (exit 2, one FATAL line)."""
        if self.runner.state == FAILED:
            error = self.runner.load_error
            what = "failed to load" if self.runner.policy is None else "worker stopped"
            raise ConfigError(f"policy {self.runner.policy_name!r} {what}: {type(error).__name__}: {error}")

    def publish_step(self, step: Step) -> None:
        if step.plan is None:  # the policy failed (the runner reported it): stop the robot now
            self.publish_stop(step.observation.stamp)
            return
        plan = step.plan
        if step.new:
            self.last_latency_s = common.now_seconds(self) - plan.stamp
        self.last_plan = plan
        self.path_pub.publish(convert.path_msg_from_waypoints(plan.waypoints, self.plan_header(plan.stamp)))
        self.publish_markers(plan.waypoints, plan.stamp, plan.state, plan.waypoint_dt_s)
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

    def publish_markers(self, waypoints: np.ndarray, stamp: float, state: str, dt_s: Optional[float]) -> None:
        if self.markers_pub.get_subscription_count():
            self.markers_pub.publish(markers.plan_markers(waypoints, self.plan_header(stamp), state,
                                                          self.runner.policy_name, dt_s))

    def plan_header(self, stamp: float) -> Header:
        return Header(stamp=common.seconds_to_stamp(stamp), frame_id=self.config.plan_frame)

    def publish_stop(self, stamp: float) -> None:
        """An empty path: the controller stops at once instead of waiting for the plan timeout."""
        self.path_pub.publish(convert.path_msg_from_waypoints(np.zeros((0, 3)), self.plan_header(stamp)))
        self.publish_markers(np.zeros((0, 3)), stamp, "stopped", None)

    # -- status ---------------------------------------------------------------------------
    def publish_status(self) -> None:
        runner = self.runner
        if runner.state in (LOADING, FAILED):
            state = runner.state
        else:
            state = self.last_plan.state if self.last_plan else "waiting_frames"
        now = time.monotonic()
        level = self.errors.level(now)
        values = {
            "policy": runner.policy_name, "state": state, "instruction": runner.instruction,
            # Why the last plan stops beyond its state (e.g. pose_invalid: the failed check and its numbers).
            "plan_reason": self.last_plan.reason if self.last_plan else "",
            "latency_ms": f"{self.last_latency_s * 1e3:.1f}", "compute_ms": f"{runner.last_compute_s * 1e3:.1f}",
            **runner.status_values(), **self.errors.values(now),
            "frames_in": self.frames_in, "frames_rejected": self.frames_rejected,
            "instruction_copies": self.instruction_copies_seen,
            **{f"{name.removesuffix('_s')}_ms": f"{seconds * 1e3:.1f}"
               for name, seconds in (self.last_plan.timings_s.items() if self.last_plan else ())},
        }
        self.status_pub.publish(common.diagnostics(self, f"{NAME}: {runner.policy_name}", level, state, values))

    def on_shutdown(self) -> None:
        self.stop_worker.set()
        self.worker.join(timeout=2.0)  # a load or a long step still running is left to the daemon thread

    def busy_threads(self) -> list[str]:
        return [self.worker.name] if self.worker.is_alive() else []


def main(args=None) -> int:
    return common.run_node(PolicyNode, args)


if __name__ == "__main__":
    raise SystemExit(main())
