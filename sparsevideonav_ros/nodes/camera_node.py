"""camera_node: frames from a source -> rgb8 Image, JPEG CompressedImage and CameraInfo.

Live cameras (uvc/osmo, realsense/d455) are read by their own grab thread; each timer tick publishes
the freshest frame not yet published (none when the camera has nothing new), stamped with its
capture time. A camera that disappears is reopened by its source; camera/status says so.
"""
from __future__ import annotations

import math
import time

from diagnostic_msgs.msg import DiagnosticArray
from geometry_msgs.msg import TransformStamped
from sensor_msgs.msg import CameraInfo, CompressedImage, Image
from std_msgs.msg import Header

from sparsevideonav_ros.configs import CameraNodeConfig
from sparsevideonav_ros.nodes import common, convert, transforms
from sparsevideonav_ros.sources import factory
from sparsevideonav_ros.sources.base import SourceError

NAME = "camera_node"

try:  # /tf_static needs tf2_msgs, present on a ROS install but not among the PyPI wheels
    from tf2_msgs.msg import TFMessage
except ImportError:  # pragma: no cover - depends on the install
    TFMessage = None


def open_source(config: CameraNodeConfig):
    width, height = config.frame_size()
    if config.kind == "synthetic":
        return factory.make_source("synthetic", width=width, height=height, fps=config.rate_hz or 15.0)
    if config.kind == "video":
        return factory.make_source("video", path=config.path, loop=config.loop)
    if config.kind == "uvc":
        return factory.make_source("uvc", device=config.path, width=width, height=height, fps=config.camera_fps(),
                                   fourcc=config.fourcc, timeout_s=config.timeout_s)
    if config.kind == "realsense":
        return factory.make_source("realsense", device=config.path, width=width, height=height,
                                   fps=config.camera_fps(), depth=config.depth, loop=config.loop,
                                   timeout_s=config.timeout_s)
    return factory.make_source("image_folder", path=config.path, fps=config.rate_hz or 15.0, loop=config.loop)


class CameraNode(common.StackNode):
    def __init__(self) -> None:
        super().__init__(NAME)
        self.config: CameraNodeConfig = common.declare_config(self, CameraNodeConfig)
        try:
            self.source = open_source(self.config)
            self.source.open()
        except (SourceError, ValueError, OSError) as error:
            raise common.ConfigError(f"camera source {self.config.source!r} failed to open: {error}") from error
        self.raw_pub = (self.create_publisher(Image, "camera/image_raw", common.topic_qos("camera/image_raw"))
                        if self.config.publish_raw else None)
        self.jpeg_pub = (self.create_publisher(CompressedImage, "camera/image_raw/compressed",
                                               common.topic_qos("camera/image_raw/compressed"))
                         if self.config.publish_compressed else None)
        self.info_pub = self.create_publisher(CameraInfo, "camera/camera_info", common.topic_qos("camera/camera_info"))
        self.depth_pub = (self.create_publisher(Image, "camera/aligned_depth_to_color/image_raw",
                                                common.topic_qos("camera/aligned_depth_to_color/image_raw"))
                          if self.config.depth else None)
        self.status_pub = self.create_publisher(DiagnosticArray, "camera/status", common.topic_qos("camera/status"))
        self.publish_mount()
        self.live = getattr(self.source, "live", False)
        self.source_state = "streaming"
        self.create_timer(1.0, self.publish_status)
        if getattr(self.source, "warning", ""):
            self.get_logger().warn(self.source.warning)
        rate = self.config.rate_hz or self.source.nominal_fps or 15.0
        self.frames_published = 0
        self.timer = self.create_timer(1.0 / rate, self.publish_next)
        size = f" {self.source.width}x{self.source.height}" if self.source.width else ""
        self.get_logger().info(f"publishing {self.config.source}{size} frames at {rate:.1f} Hz")

    def publish_mount(self) -> None:
        """base_frame -> frame_id from the camera mount, once and latched (the frame is rigid): this node stamps
        the images with frame_id, so it is the one that says where that frame sits (nodes/transforms.py)."""
        mount = transforms.camera_mount(self.config)
        transform = transforms.camera_transform_msg(mount, self.config.base_frame, self.config.frame_id,
                                                    self.get_clock().now().to_msg())
        self.transform_pub = self.create_publisher(TransformStamped, "camera/transform",
                                                   common.topic_qos("camera/transform"))
        self.transform_pub.publish(transform)
        if TFMessage is not None:
            # Relative like /tf (go2_bridge_node): /tf_static, or /<robot>/tf_static in a namespace.
            self.tf_static_pub = self.create_publisher(TFMessage, "tf_static", common.qos("latched"))
            self.tf_static_pub.publish(TFMessage(transforms=[transform]))
        else:
            self.get_logger().info(transforms.NO_TF2_MSGS.format(topic="tf_static", source="camera/transform"))
        self.get_logger().info(f"camera mount {self.config.camera_mount}: {self.config.base_frame} -> "
                               f"{self.config.frame_id} at {mount.forward_m:g} m ahead, {mount.height_m:g} m high, "
                               f"pitched {math.degrees(mount.pitch_down_rad):g} deg down")

    def publish_next(self) -> None:
        if self.live:
            self.check_live_source()
            frame = self.source.poll()
            if frame is None:  # nothing newer than the last published frame
                return
        else:
            frame = self.source.read()
        if frame is None:  # finite source ended and loop is off
            self.get_logger().info("camera source ended; no more frames")
            self.timer.cancel()
            return
        header = Header(frame_id=self.config.frame_id)
        # Stamp at capture: the policy plans from this instant and the controller anchors odometry to it.
        if frame.stamp is not None:  # capture wall time -> this node's clock (sim time included)
            header.stamp = common.seconds_to_stamp(common.now_seconds(self) - max(0.0, time.time() - frame.stamp))
        else:
            header.stamp = self.get_clock().now().to_msg()
        height, width = frame.rgb.shape[:2]
        # JPEG first: it is the stream the policy waits for. Raw frames are built only when someone listens.
        if self.jpeg_pub is not None:
            self.jpeg_pub.publish(convert.compressed_msg_from_rgb(frame.rgb, self.config.jpeg_quality, header))
        if self.raw_pub is not None and self.raw_pub.get_subscription_count() > 0:
            self.raw_pub.publish(convert.image_msg_from_array(frame.rgb, "rgb8", header))
        if self.depth_pub is not None and frame.depth is not None:
            self.depth_pub.publish(convert.image_msg_from_array(frame.depth, "16UC1", header))
        self.info_pub.publish(convert.camera_info_msg(width, height, math.radians(self.config.horizontal_fov_deg),
                                                      header, intrinsics=self.source.intrinsics))
        self.frames_published += 1

    def check_live_source(self) -> None:
        """Log when a live camera is lost and when it is back (the source reconnects by itself)."""
        state = self.source.state
        if state == self.source_state:
            return
        if state == "reconnecting":
            self.get_logger().error(f"camera lost: {self.source.last_error}; reopening every "
                                    f"{self.config.timeout_s} s")
        elif state == "streaming":
            self.get_logger().info(f"camera back ({self.source.width}x{self.source.height}); streaming again")
        self.source_state = state

    def publish_status(self) -> None:
        values = {"source": self.config.source, "frames_published": self.frames_published}
        if self.live:
            self.check_live_source()
            values.update(self.source.status())
        state = values.get("state", "streaming")
        level = common.OK if state == "streaming" else common.ERROR
        self.status_pub.publish(common.diagnostics(self, NAME, level, state, values))

    def on_shutdown(self) -> None:
        self.source.close()


def main(args=None) -> int:
    return common.run_node(CameraNode, args)


if __name__ == "__main__":
    raise SystemExit(main())
