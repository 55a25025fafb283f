"""camera_node: frames from a source -> rgb8 Image, JPEG CompressedImage and CameraInfo."""
from __future__ import annotations

import math

from sensor_msgs.msg import CameraInfo, CompressedImage, Image
from std_msgs.msg import Header

from sparsevideonav_ros.configs import CameraNodeConfig
from sparsevideonav_ros.nodes import common, convert
from sparsevideonav_ros.sources import factory
from sparsevideonav_ros.sources.base import SourceError

NAME = "camera_node"


def open_source(config: CameraNodeConfig):
    if config.source == "synthetic":
        return factory.make_source("synthetic", width=config.width, height=config.height,
                                   fps=config.rate_hz or 15.0)
    if config.source == "video":
        return factory.make_source("video", path=config.path, loop=config.loop)
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
        rate = self.config.rate_hz or self.source.nominal_fps or 15.0
        self.frames_published = 0
        self.timer = self.create_timer(1.0 / rate, self.publish_next)
        self.get_logger().info(f"publishing {self.config.source} frames at {rate:.1f} Hz")

    def publish_next(self) -> None:
        frame = self.source.read()
        if frame is None:  # finite source ended and loop is off
            self.get_logger().info("camera source ended; no more frames")
            self.timer.cancel()
            return
        header = Header(frame_id=self.config.frame_id)
        # Stamp at capture: the policy plans from this instant and the controller anchors odometry to it.
        header.stamp = (common.seconds_to_stamp(frame.stamp) if frame.stamp is not None
                        else self.get_clock().now().to_msg())
        height, width = frame.rgb.shape[:2]
        # JPEG first: it is the stream the policy waits for. Raw frames are built only when someone listens.
        if self.jpeg_pub is not None:
            self.jpeg_pub.publish(convert.compressed_msg_from_rgb(frame.rgb, self.config.jpeg_quality, header))
        if self.raw_pub is not None and self.raw_pub.get_subscription_count() > 0:
            self.raw_pub.publish(convert.image_msg_from_array(frame.rgb, "rgb8", header))
        self.info_pub.publish(convert.camera_info_msg(width, height, math.radians(self.config.horizontal_fov_deg),
                                                      header))
        self.frames_published += 1

    def on_shutdown(self) -> None:
        self.source.close()


def main(args=None) -> int:
    return common.run_node(CameraNode, args)


if __name__ == "__main__":
    raise SystemExit(main())
