"""Play a rosbag2 bag with its recorded timing and publish /clock: `ros2 bag play --clock` for pip-only installs.

    python -m sparsevideonav_ros.tools.play bags/run1 --clock 100 --rate 1 --delay 3 --topics /camera/image_raw/compressed ...

What replay starts in the process runner (tools/launch.py); replay.launch.py starts
`ros2 bag play` with the same bag, topics, rate, delay and clock rate (launch_plan.plan_playback).
The bag is read with the rosbags library and the serialized messages are published unchanged
(header stamps are the recorded ones), each when the bag clock reaches its recorded time:
bag time = bag start + (wall time since start) * rate. /clock carries the bag time at --clock Hz,
from the start of the delay (counting up from bag start - delay, so sim-time nodes already run when
the first message comes) to the last message; then the player exits 0.
A bag that cannot be read, or that has none of the topics, exits 2 with the reason.
"""
from __future__ import annotations

import argparse
import collections
import signal
import sys
import threading
import time
from typing import Optional

import rclpy
from rclpy.node import Node
from rclpy.qos import DurabilityPolicy, HistoryPolicy, QoSProfile, ReliabilityPolicy
from rclpy.utilities import remove_ros_args
from rosgraph_msgs.msg import Clock

from sparsevideonav_ros import bags, stack
from sparsevideonav_ros.nodes import common
from sparsevideonav_ros.tools.record import message_type


def positive(text: str) -> float:
    value = float(text)
    if not value > 0:
        raise argparse.ArgumentTypeError(f"{text} must be > 0")
    return value


def non_negative(text: str) -> float:
    value = float(text)
    if not value >= 0:
        raise argparse.ArgumentTypeError(f"{text} must be >= 0")
    return value


class BagPlayer:
    """Publishes a bag's messages on their recorded schedule; ``run`` returns when done or stopped."""

    def __init__(self, node: Node, bag_path: str, topics: list[str], rate: float = 1.0, delay_s: float = 0.0,
                 clock_hz: float = stack.PLAYER_CLOCK_HZ, start_offset_s: float = 0.0) -> None:
        self.node, self.rate, self.delay_s = node, rate, delay_s
        self.clock_period_s = 1.0 / clock_hz if clock_hz > 0 else None
        self.reader = bags.open_bag(bag_path)
        available = {c.topic for c in self.reader.connections}
        wanted = topics or sorted(available)
        missing = [t for t in wanted if t not in available]
        self.connections = [c for c in self.reader.connections if c.topic in wanted]
        if not self.connections:
            raise bags.BagError(f"{bag_path} has none of the topics to play ({', '.join(wanted)}); it has: "
                                f"{bags.describe_topics(self.reader)}. Recorded in another namespace?")
        for topic in missing:
            node.get_logger().warn(f"{topic} is not in the bag; not played")
        self.publishers = {}
        for connection in self.connections:
            if connection.topic in self.publishers:
                continue
            known = bags.stack_topic(connection.topic)
            profile = common.qos(known.qos) if known is not None else common.qos("reliable")
            try:
                msg_class = message_type(connection.msgtype)
            except (ImportError, AttributeError, ValueError) as error:
                raise bags.BagError(f"{connection.topic}: message type {connection.msgtype} is not installed "
                                    f"({error})") from error
            self.publishers[connection.topic] = node.create_publisher(msg_class, connection.topic, profile)
        self.clock_pub = node.create_publisher(
            Clock, "/clock", QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=1,
                                        reliability=ReliabilityPolicy.RELIABLE, durability=DurabilityPolicy.VOLATILE))
        # playback (and /clock) start start_offset_s into the bag; earlier messages are skipped
        self.start_ns = self.reader.start_time + int(round(start_offset_s * 1e6)) * 1000
        self.counts: collections.Counter = collections.Counter()
        self._last_clock_wall = -1e9

    def bag_time_ns(self, wall: float, wall_start: float) -> int:
        return self.start_ns + int((wall - wall_start) * self.rate * 1e9)

    def publish_clock(self, bag_ns: int, force: bool = False) -> None:
        now = time.monotonic()
        if self.clock_period_s is None or (not force and now - self._last_clock_wall < self.clock_period_s):
            return
        self._last_clock_wall = now
        msg = Clock()
        msg.clock.sec, msg.clock.nanosec = divmod(bag_ns, 1_000_000_000)
        self.clock_pub.publish(msg)

    def wait_until(self, wall_target: float, wall_start: float, stop: threading.Event) -> None:
        while not stop.is_set():
            now = time.monotonic()
            if now >= wall_target:
                return
            self.publish_clock(self.bag_time_ns(now, wall_start))
            step = wall_target - now
            if self.clock_period_s is not None:
                step = min(step, self.clock_period_s)
            stop.wait(step)

    def run(self, stop: threading.Event) -> int:
        """Play everything (or until ``stop``); returns the number of messages published."""
        log = self.node.get_logger()
        duration = (self.reader.end_time - self.start_ns) / 1e9
        offset = (self.start_ns - self.reader.start_time) / 1e9
        log.info(f"playing {len(self.publishers)} topics, {duration:.1f} s of bag from {offset:.3f} s into it, "
                 f"at rate {self.rate:g}, after {self.delay_s:g} s")
        # During the delay the clock counts up to the bag start (from bag start - delay), so sim-time nodes
        # run on the bag's timeline before the first frame: the sim robot has odometry out by then.
        wall_start = time.monotonic() + self.delay_s
        while not stop.is_set() and time.monotonic() < wall_start:
            self.publish_clock(self.start_ns - int((wall_start - time.monotonic()) * self.rate * 1e9))
            stop.wait(min(self.clock_period_s or 0.05, max(0.0, wall_start - time.monotonic())))
        last_ns = self.start_ns
        for connection, stamp_ns, data in bags.messages(self.reader, self.connections, self.start_ns):
            if stop.is_set():
                break
            self.wait_until(wall_start + (stamp_ns - self.start_ns) / 1e9 / self.rate, wall_start, stop)
            if stop.is_set():
                break
            self.publishers[connection.topic].publish(bytes(data))
            self.counts[connection.topic] += 1
            last_ns = stamp_ns
        self.publish_clock(last_ns, force=True)
        total = sum(self.counts.values())
        log.info(f"{'stopped' if stop.is_set() else 'finished'}: published {total} messages "
                 f"({', '.join(f'{t}: {n}' for t, n in sorted(self.counts.items()))})")
        return total

    def close(self) -> None:
        self.reader.close()


def main(argv: Optional[list[str]] = None) -> int:
    argv = list(sys.argv if argv is None else [sys.argv[0]] + list(argv))
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("bag", help="rosbag2 folder, .mcap or .db3 file")
    parser.add_argument("--topics", nargs="+", default=[], help="topics to play (default: all)")
    parser.add_argument("--rate", "-r", type=positive, default=1.0, help="playback speed factor")
    parser.add_argument("--delay", "-d", type=non_negative, default=0.0, help="seconds before playback starts")
    parser.add_argument("--clock", type=non_negative, default=stack.PLAYER_CLOCK_HZ,
                        help="/clock rate in Hz (0 = no /clock)")
    parser.add_argument("--start-offset", type=non_negative, default=0.0,
                        help="start this many seconds after the bag's start")
    options = parser.parse_args(remove_ros_args(args=argv)[1:])

    rclpy.init(args=argv)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    node = Node(stack.PLAYER_NAME)
    player = None
    try:
        player = BagPlayer(node, options.bag, options.topics, options.rate, options.delay, options.clock,
                           options.start_offset)
        player.run(stop)
        return 0
    except bags.BagError as error:
        node.get_logger().fatal(str(error))
        print(f"[FATAL] {stack.PLAYER_NAME}: {error}", file=sys.stderr, flush=True)
        return 2
    finally:
        if player is not None:
            player.close()
        node.destroy_node()
        if rclpy.ok():
            rclpy.shutdown()


if __name__ == "__main__":
    raise SystemExit(main())
