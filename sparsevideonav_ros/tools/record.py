"""Record topics to a rosbag2 bag with the rosbags library: `ros2 bag record` for pip-only installs.

    python -m sparsevideonav_ros.tools.record --output bags/run1 /camera/image_raw/compressed /odom ...

What `record:=true` starts in the process runner (tools/launch.py); launch files start
`ros2 bag record -s mcap` over the same topics (stack.plan_recording). Every topic is subscribed
with serialized messages (no decode) and the QoS profiles the stack's nodes subscribe it with
(recorder_profiles), so the bag holds what the nodes receive, from publishers of any QoS: latched
inputs (instruction, estop) also when published before the recorder started. Each message is
written with its receive time on the node clock (sim time under use_sim_time; like
`ros2 bag record --use-sim-time`, nothing is written before the first /clock). SIGINT/SIGTERM
close the bag: the MCAP summary and metadata.yaml are written, so the bag reads everywhere.

/tf and /tf_static (stack.TF_TOPICS) are recorded as they are where tf2_msgs imports (any ROS 2 install);
on pip-only installs (no tf2_msgs wheel) the recorder writes them from odom/transform and
camera/transform (stack.TF_SOURCES), the transforms the nodes would have put on /tf, with the same
receive time: RViz and Foxglove find the frames in either bag.
"""
from __future__ import annotations

import argparse
import collections
import importlib
import sys
import time
from pathlib import Path
from typing import Optional

from diagnostic_msgs.msg import DiagnosticArray
from rclpy.utilities import remove_ros_args

from sparsevideonav_ros import bags, stack
from sparsevideonav_ros.configs import ConfigError
from sparsevideonav_ros.core.copies import CopyFilter
from sparsevideonav_ros.nodes import common

try:  # /tf, /tf_static as they are on a ROS install; made from odom/transform, camera/transform without it
    from tf2_msgs.msg import TFMessage
except ImportError:  # pragma: no cover - depends on the install
    TFMessage = None


def message_type(msg_type: str):
    package, kind, name = msg_type.split("/")
    return getattr(importlib.import_module(f"{package}.{kind}"), name)


def recorder_profiles(topic: stack.Topic) -> tuple[str, ...]:
    """The QoS profiles the recorder subscribes ``topic`` with: those of the stack's nodes.

    No single profile records everything a latched input's subscribers receive: only a latched
    (transient local) subscription gets the value a Humble `ros2 topic pub` held before the recorder
    started, and it never matches a volatile publisher (`ros2 topic pub` on Jazzy/Kilted) nor, being
    reliable, a best-effort one. So the recorder subscribes as the nodes do and writes each message
    once: a publisher matching several of the subscriptions delivers copies, dropped like the policy
    node drops instruction copies (core/copies.CopyFilter on the serialized bytes; like the policy, a
    publisher repeating one value without a pause of COPY_WINDOW_S is recorded once).
    """
    return topic.subscription_profiles


class BagRecorder(common.StackNode):
    def __init__(self, output: str, topics: list[str], storage: str = "mcap", ready_file: str = "") -> None:
        super().__init__(stack.RECORDER_NAME)
        resolved = []
        self.derived: dict[str, tuple[str, stack.Topic]] = {}  # source topic -> (TF topic, its Topic), pip-only
        for topic in topics:
            if not topic.startswith("/"):
                raise ConfigError(f"topic {topic!r}: give absolute names (e.g. /camera/image_raw/compressed)")
            tf_name = topic.rsplit("/", 1)[-1]
            if tf_name in stack.TF_TOPICS:
                msg_type, profile = stack.TF_TOPICS[tf_name]
                tf_topic = stack.Topic(tf_name, msg_type, profile, (), (), "transforms")
                if TFMessage is not None:
                    resolved.append((topic, tf_topic))
                else:
                    self.derived[topic[: -len(tf_name)] + stack.TF_SOURCES[tf_name]] = (topic, tf_topic)
                continue
            known = bags.stack_topic(topic)
            if known is None:
                raise ConfigError(f"topic {topic} is not a stack topic; known: {', '.join(stack.TOPICS)}")
            resolved.append((topic, known))
        for source in self.derived:
            if source not in [topic for topic, _ in resolved]:  # a TF topic without its source: subscribe it
                resolved.append((source, bags.stack_topic(source)))
        self.not_written = {source for source in self.derived if source not in topics}
        if Path(output).exists():
            raise ConfigError(f"bag folder {output} exists already; not overwriting a recording")
        self.output = output
        self.connections = {}
        self.counts: collections.Counter = collections.Counter()
        self.before_clock = 0
        self.copies: dict[str, CopyFilter] = {}  # topics subscribed more than once
        for topic, known in resolved:
            profiles = recorder_profiles(known)
            if len(profiles) > 1:
                self.copies[topic] = CopyFilter()
            for profile in profiles:
                # raw=True: the callback gets the CDR bytes as they came off the wire
                self.create_subscription(message_type(known.msg_type), topic,
                                         lambda data, topic=topic, known=known: self.on_message(topic, known, data),
                                         common.qos(profile), raw=True)
        # Subscriptions first (discovery starts), then the message definitions (~0.2 s) now rather than in
        # the first message's callback while messages queue up, then the bag folder.
        bags.typestore()
        try:
            self.writer = bags.open_writer(output, storage)
        except bags.BagError as error:
            raise ConfigError(str(error)) from error
        self.status_pub = self.create_publisher(DiagnosticArray, "recorder/status", common.topic_qos("recorder/status"))
        self.create_timer(0.2, self.publish_status)
        self.get_logger().info(f"recording {len(resolved)} topics to {output} ({storage})")
        if ready_file:  # the runner starts the other nodes once every subscription exists
            Path(ready_file).write_text(output)

    def on_message(self, topic: str, known: stack.Topic, data: bytes) -> None:
        copies = self.copies.get(topic)
        if copies is not None and copies.is_copy(bytes(data), time.monotonic()):
            return
        stamp_ns = self.get_clock().now().nanoseconds
        if stamp_ns <= 0:  # use_sim_time and no /clock yet
            self.before_clock += 1
            return
        if topic not in self.not_written:
            self.write(topic, known, stamp_ns, data)
        if topic in self.derived:  # pip-only: odom/transform -> /tf, camera/transform -> /tf_static
            tf_topic, tf_known = self.derived[topic]
            store = bags.typestore()
            message = store.types[tf_known.msg_type](transforms=[store.deserialize_cdr(bytes(data), known.msg_type)])
            self.write(tf_topic, tf_known, stamp_ns, bytes(store.serialize_cdr(message, tf_known.msg_type)))

    def write(self, topic: str, known: stack.Topic, stamp_ns: int, data: bytes) -> None:
        connection = self.connections.get(topic)
        if connection is None:  # a topic enters the bag with its first message, as with ros2 bag record
            connection = self.connections[topic] = bags.add_connection(self.writer, topic, known.msg_type, known.qos)
        self.writer.write(connection, stamp_ns, data)
        self.counts[topic] += 1

    def publish_status(self) -> None:
        """What is in the bag so far (controller_node's wait_for_recorder reads received_topics)."""
        values = {"output": self.output, "received_topics": " ".join(sorted(self.counts)),
                  "messages": sum(self.counts.values()), "before_clock": self.before_clock}
        self.status_pub.publish(common.diagnostics(self, stack.RECORDER_NAME, common.OK, "recording", values))

    def on_shutdown(self) -> None:
        self.writer.close()  # MCAP summary + metadata.yaml: the bag is complete
        total = sum(self.counts.values())
        summary = ", ".join(f"{t}: {n}" for t, n in sorted(self.counts.items())) or "nothing"
        print(f"[{stack.RECORDER_NAME}] closed {self.output}: {total} messages ({summary})"
              + (f"; {self.before_clock} dropped before the first /clock" if self.before_clock else ""), flush=True)


def main(argv: Optional[list[str]] = None) -> int:
    argv = list(sys.argv if argv is None else [sys.argv[0]] + list(argv))
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--output", "-o", required=True, help="bag folder to create (must not exist)")
    parser.add_argument("--storage", "-s", default=stack.RECORD_STORAGE, choices=sorted(bags.STORAGES))
    parser.add_argument("--ready-file", default="", help="written once every subscription exists (tools/launch.py "
                                                             "starts the other nodes after it)")
    parser.add_argument("topics", nargs="+", help="absolute topic names (types and QoS from stack.TOPICS)")
    options = parser.parse_args(remove_ros_args(args=argv)[1:])
    return common.run_node(lambda: BagRecorder(options.output, options.topics, options.storage, options.ready_file),
                           argv)


if __name__ == "__main__":
    raise SystemExit(main())
