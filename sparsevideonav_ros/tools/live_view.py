"""Foxglove live view: the stack's topics on a foxglove-sdk WebSocket server, for installs without RViz.

    python -m sparsevideonav_ros.tools.launch bringup foxglove:=true      # or ros2 launch ... foxglove:=true
    # Foxglove: Open connection -> Foxglove WebSocket -> ws://127.0.0.1:8765; layout foxglove/sparsevideonav.json

What foxglove:=true starts (stack.plan_live_view). Every topic is forwarded as it came off the wire (CDR,
serialized subscriptions, no decode) under its ROS name with its ROS 2 message definition (schema encoding
ros2msg, from the rosbags type store), exactly what foxglove_bridge serves on a full ROS install: one
layout works for both, and for bags. /tf and /tf_static: forwarded where tf2_msgs imports (any ROS 2
install); on pip-only installs (no tf2_msgs wheel) they are made here from odom/transform and
camera/transform, the same transforms the nodes would put on /tf. Latched values (the camera mount,
the instruction, the e-stop) are sent again every second, as a WebSocket client joining later gets no
history.

The server binds 127.0.0.1 unless foxglove_address says otherwise; it sends only to clients that connect
to it and reaches out to nobody.
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any, Optional

from rclpy.utilities import remove_ros_args

from sparsevideonav_ros import bags, stack
from sparsevideonav_ros.configs import ConfigError
from sparsevideonav_ros.core.copies import CopyFilter
from sparsevideonav_ros.nodes import common
from sparsevideonav_ros.tools.record import message_type

try:  # any ROS 2 install; not among the PyPI wheels
    from tf2_msgs.msg import TFMessage
except ImportError:  # pragma: no cover - depends on the install
    TFMessage = None

FOXGLOVE_INSTALL = "pip install foxglove-sdk==0.30.3 (the pin in requirements.txt)"
TF_TYPE = "tf2_msgs/msg/TFMessage"
TRANSFORM_TYPE = "geometry_msgs/msg/TransformStamped"
RESEND_LATCHED_S = 1.0


def tf_topic_name(topic: str) -> Optional[str]:
    """'tf' / 'tf_static' for an absolute TF topic name in any namespace ('/robot1/tf' -> 'tf'), else None."""
    last = topic.rstrip("/").rsplit("/", 1)[-1]
    return last if last in stack.TF_TOPICS else None


class LiveView(common.StackNode):
    def __init__(self, topics: list[str], host: str, port: int, ready_file: str = "") -> None:
        super().__init__(stack.LIVE_VIEW_NAME)
        try:
            import foxglove
        except ImportError as error:
            raise ConfigError(f"foxglove:=true needs the foxglove-sdk package ({error}): {FOXGLOVE_INSTALL}") from None
        self.foxglove = foxglove
        self.store = bags.typestore()
        self.channels: dict[str, Any] = {}
        self.copies: dict[str, CopyFilter] = {}
        self.latched: dict[str, bytes] = {}  # topic -> last message, sent again every RESEND_LATCHED_S
        self.derived: dict[str, str] = {}  # absolute source topic (odom/transform) -> absolute TF topic it feeds
        self.counts: dict[str, int] = {}
        plan = []
        for topic in topics:
            if not topic.startswith("/"):
                raise ConfigError(f"topic {topic!r}: give absolute names (e.g. /odom)")
            tf_name = tf_topic_name(topic)
            if tf_name is not None:
                plan.append((topic, TF_TYPE, (stack.TF_TOPICS[tf_name][1],), tf_name == "tf_static"))
                continue
            known = bags.stack_topic(topic)
            if known is None:
                raise ConfigError(f"topic {topic} is not a stack topic; known: {', '.join(stack.TOPICS)}")
            plan.append((topic, known.msg_type, known.subscription_profiles, known.qos == "latched"))
        # Every channel exists before the server starts: a client that connects at once is advertised the
        # whole set (a channel added while a client subscribes can be unknown to the server at that moment).
        for topic, msg_type, profiles, latched in plan:
            self.channels[topic] = foxglove.Channel(topic, schema=self.schema(msg_type), message_encoding="cdr")
            if msg_type == TF_TYPE and TFMessage is None:
                # pip-only: made from the stack topic that carries the same transform (stack.TF_SOURCES)
                source = topic[: -len(tf_topic_name(topic))] + stack.TF_SOURCES[tf_topic_name(topic)]
                self.derived[source] = topic
                if source not in [entry[0] for entry in plan]:  # subscribe the source even when not forwarded
                    known = bags.stack_topic(source)
                    self.subscribe(source, known.msg_type, known.subscription_profiles, known.qos == "latched",
                                   forward=False)
                continue
            self.subscribe(topic, msg_type, profiles, latched, forward=True)
        try:
            self.server = foxglove.start_server(name="sparsevideonav_ros", host=host, port=port)
        except Exception as error:  # the SDK raises its own error types (address in use, bad host)
            raise ConfigError(f"Foxglove live view cannot serve on {host}:{port}: {error}") from None
        self.create_timer(RESEND_LATCHED_S, self.resend_latched)
        self.port = self.server.port
        where = f"ws://{host}:{self.port}"
        tf_how = "forwarded" if TFMessage is not None else "made from odom/transform and camera/transform (no tf2_msgs)"
        self.get_logger().info(f"Foxglove live view on {where}: {len(self.channels)} topics; /tf {tf_how}")
        if ready_file:
            Path(ready_file).write_text(str(self.port))

    def schema(self, msg_type: str):
        definition, _ = self.store.generate_msgdef(msg_type, ros_version=2)
        return self.foxglove.Schema(name=msg_type, encoding="ros2msg", data=definition.encode())

    def subscribe(self, topic: str, msg_type: str, profiles: tuple[str, ...], latched: bool, forward: bool) -> None:
        if len(profiles) > 1:
            self.copies[topic] = CopyFilter()
        for profile in profiles:
            self.create_subscription(message_type(msg_type), topic,
                                     lambda data, t=topic, f=forward, l=latched: self.on_message(t, bytes(data), f, l),
                                     common.qos(profile), raw=True)

    def now_ns(self) -> int:
        stamp = self.get_clock().now().nanoseconds
        return stamp if stamp > 0 else time.time_ns()  # sim time before the first /clock: wall time

    def on_message(self, topic: str, data: bytes, forward: bool, latched: bool) -> None:
        copies = self.copies.get(topic)
        if copies is not None and copies.is_copy(data, time.monotonic()):
            return
        if forward:
            self.log(topic, data, latched)
        target = self.derived.get(topic)
        if target is not None:  # odom/transform -> /tf, camera/transform -> /tf_static (pip-only)
            transform = self.store.deserialize_cdr(data, TRANSFORM_TYPE)
            message = self.store.types[TF_TYPE](transforms=[transform])
            self.log(target, bytes(self.store.serialize_cdr(message, TF_TYPE)), tf_topic_name(target) == "tf_static")

    def log(self, topic: str, data: bytes, latched: bool) -> None:
        self.channels[topic].log(data, log_time=self.now_ns())
        self.counts[topic] = self.counts.get(topic, 0) + 1
        if latched:
            self.latched[topic] = data

    def resend_latched(self) -> None:
        for topic, data in list(self.latched.items()):
            self.channels[topic].log(data, log_time=self.now_ns())

    def on_shutdown(self) -> None:
        self.server.stop()
        summary = ", ".join(f"{t}: {n}" for t, n in sorted(self.counts.items())) or "nothing"
        print(f"[{stack.LIVE_VIEW_NAME}] stopped ({summary})", flush=True)


def main(argv: Optional[list[str]] = None) -> int:
    argv = list(sys.argv if argv is None else [sys.argv[0]] + list(argv))
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--host", default="127.0.0.1", help="address to bind (default: this machine only)")
    parser.add_argument("--port", type=int, default=8765, help="TCP port (0 = any free one)")
    parser.add_argument("--ready-file", default="", help="written with the port once the server listens")
    parser.add_argument("topics", nargs="+", help="absolute topic names (stack topics, /tf, /tf_static)")
    options = parser.parse_args(remove_ros_args(args=argv)[1:])
    return common.run_node(lambda: LiveView(options.topics, options.host, options.port, options.ready_file), argv)


if __name__ == "__main__":
    raise SystemExit(main())
