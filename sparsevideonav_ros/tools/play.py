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

--wait-for-ready /policy/status (what replay passes): before the delay, the player waits until the policy
reports ready (its status state is past 'loading'), up to --ready-timeout seconds, with /clock held at bag
start - delay (policy_node publishes its status on a steady-clock timer); after the timeout it plays
anyway and says so. It watches the replayed graph (plans,
cmd_vel, odometry, status, like the demo's monitor) and, with --report-dir, writes
<report-dir>/<date>-replay-<policy>/summary.json (the demo's summary plus the replay's: frames played,
frames played before the policy was ready, seconds waited) and trajectory.png.
"""
from __future__ import annotations

import argparse
import collections
import datetime
import json
import signal
import sys
import threading
import time
from pathlib import Path
from typing import Optional

import rclpy
from rclpy.executors import SingleThreadedExecutor
from rclpy.node import Node
from rclpy.qos import DurabilityPolicy, HistoryPolicy, QoSProfile, ReliabilityPolicy
from rclpy.utilities import remove_ros_args
from rosgraph_msgs.msg import Clock

from sparsevideonav_ros import bags, stack
from sparsevideonav_ros.nodes import common
from sparsevideonav_ros.tools.record import message_type

# policy/status states in which the policy cannot take frames yet (runner LOADING; FAILED ends the node)
NOT_READY_STATES = ("loading", "failed")
CAMERA_TOPIC = "camera/image_raw/compressed"


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
                 clock_hz: float = stack.PLAYER_CLOCK_HZ, start_offset_s: float = 0.0,
                 ready: Optional["ReadyWatch"] = None, publish: bool = True) -> None:
        """ready: wait for the policy before playing, and count what was played before it was ready.
        publish: False for --then-run (another player publishes the bag: no publishers here but /clock)."""
        self.node, self.rate, self.delay_s = node, rate, delay_s
        self.bag_path = bag_path
        self.ready = ready
        self.clock_period_s = 1.0 / clock_hz if clock_hz > 0 else None
        self.reader = bags.open_bag(bag_path)
        available = {c.topic for c in self.reader.connections}
        wanted = topics or sorted(available)
        missing = [t for t in wanted if t not in available]
        self.connections = [c for c in self.reader.connections if c.topic in wanted]
        if not publish:
            self.connections = []
        elif not self.connections:
            raise bags.BagError(f"{bag_path} has none of the topics to play ({', '.join(wanted)}); it has: "
                                f"{bags.describe_topics(self.reader)}. Recorded in another namespace?")
        for topic in (missing if publish else []):
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
        self.frames_before_ready = 0  # camera frames published before the policy reported ready
        self.waited_s = 0.0  # wall seconds spent waiting for the policy
        self.policy_ready_in_time = True
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
        if self.ready is not None:
            self.wait_for_policy(stop)
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
            if connection.topic.endswith("/" + CAMERA_TOPIC) and self.ready is not None:
                self.ready.record_frame(len(data))
                if not self.ready.is_ready():
                    self.frames_before_ready += 1
            last_ns = stamp_ns
        self.publish_clock(last_ns, force=True)
        total = sum(self.counts.values())
        log.info(f"{'stopped' if stop.is_set() else 'finished'}: published {total} messages "
                 f"({', '.join(f'{t}: {n}' for t, n in sorted(self.counts.items()))})")
        return total

    def wait_for_policy(self, stop: threading.Event) -> None:
        """Block until the policy reports ready (or ready.timeout_s, or ``stop``), holding /clock at bag start -
        delay meanwhile: sim-time nodes wait on the bag's timeline (nothing before it), the policy's status
        flows on its steady-clock timer, and the delay then counts the clock up from there to the bag start."""
        log = self.node.get_logger()
        timeout = self.ready.timeout_s
        started = time.monotonic()
        held_ns = self.start_ns - int(self.delay_s * self.rate * 1e9)
        log.info(f"waiting for the policy to report ready on {self.ready.topic} (up to {timeout:g} s)")
        while not stop.is_set() and not self.ready.is_ready():
            if time.monotonic() - started >= timeout:
                break
            self.publish_clock(held_ns)
            stop.wait(min(self.clock_period_s or 0.05, 0.05))
        self.waited_s = time.monotonic() - started
        self.policy_ready_in_time = self.ready.is_ready()
        if self.policy_ready_in_time:
            log.info(f"policy ready after {self.waited_s:.1f} s ({self.ready.state_text()}); playing in "
                     f"{self.delay_s:g} s")
        elif not stop.is_set():
            log.warn(f"the policy did not report ready within {timeout:g} s ({self.ready.state_text()}); playing "
                     f"anyway: frames played before it is ready are counted (raise replay_ready_timeout)")

    def close(self) -> None:
        self.reader.close()


def graph_namespace(status_topic: str) -> str:
    """'/robot1/policy/status' -> '/robot1'; '/policy/status' -> '/' (the root: absolute names)."""
    if not status_topic.endswith("policy/status"):
        raise ValueError(f"--wait-for-ready takes a policy/status topic, got {status_topic!r}")
    return status_topic[:-len("policy/status")].rstrip("/") or "/"


class ReadyWatch:
    """Watches the replayed graph from the player's node (``monitor``: a GraphMonitor, spun by a thread of
    the player): the policy's readiness (policy/status ``topic``), and what the demo's monitor records
    (plans, cmd_vel, odometry, status) for the replay summary."""

    def __init__(self, monitor, topic: str, timeout_s: float) -> None:
        self.monitor, self.topic, self.timeout_s = monitor, topic, timeout_s
        self.ready_since: Optional[float] = None
        self.ready_wall: Optional[float] = None  # time.time() of ready_since (the monitor's receive times)

    def status(self) -> dict:
        with self.monitor.lock:
            return dict(self.monitor.record.status.get("policy/status", {}))

    def is_ready(self) -> bool:
        if self.ready_since is None:
            state = self.status().get("state")
            if state is not None and state not in NOT_READY_STATES:
                self.ready_since, self.ready_wall = time.monotonic(), time.time()
        return self.ready_since is not None

    def state_text(self) -> str:
        status = self.status()
        return f"policy/status state {status['state']!r}" if status else "no policy/status received"

    def record_frame(self, size: int) -> None:
        with self.monitor.lock:
            self.monitor.record.frames.append((time.time(), 0.0, size))


def replay_summary(player: BagPlayer, watch: ReadyWatch, duration_s: float, stopped: bool) -> dict:
    """The demo's summary of what the replayed graph did, plus how the replay went."""
    from sparsevideonav_ros.tools.demo import summarise

    summary = summarise(watch.monitor.record, duration_s, {})
    frames = sum(n for topic, n in player.counts.items() if topic.endswith("/" + CAMERA_TOPIC))
    if not player.connections:  # --then-run: another player published; the monitor received its frames
        with watch.monitor.lock:
            received = [wall for wall, _, _ in watch.monitor.record.frames]
        frames = len(received)
        player.frames_before_ready = sum(1 for wall in received if watch.ready_wall is None or wall < watch.ready_wall)
    summary.update({
        "bag": str(Path(player.bag_path).resolve()), "replay_rate": player.rate, "replay_delay_s": player.delay_s,
        "start_offset_s": round((player.start_ns - player.reader.start_time) / 1e9, 6),
        "waited_for_policy_s": round(player.waited_s, 2), "policy_ready": player.policy_ready_in_time,
        "frames_played": frames, "frames_played_before_policy_ready": player.frames_before_ready,
        "messages_played": dict(sorted(player.counts.items())), "stopped_early": stopped,
    })
    return summary


def run_then(player: BagPlayer, command: list[str], stop: threading.Event) -> int:
    """--then-run (replay.launch.py: ``ros2 bag play ...``): wait for the policy as the rosbags player does
    (holding /clock), then run ``command`` until it ends, passing Ctrl-C / SIGTERM on; its exit code."""
    import subprocess

    player.wait_for_policy(stop)
    if stop.is_set():
        return 0
    player.node.get_logger().info(f"starting: {' '.join(command)}")
    try:
        child = subprocess.Popen(command)
    except OSError as error:
        raise bags.BagError(f"cannot run {command[0]}: {error}") from error
    while child.poll() is None and not stop.is_set():
        time.sleep(0.1)
    if child.poll() is None:
        child.send_signal(signal.SIGINT)
        try:
            child.wait(timeout=10)
        except subprocess.TimeoutExpired:
            child.kill()
    return child.wait()


def write_report(report_dir: Path, policy: str, summary: dict, watch: ReadyWatch) -> Path:
    """<report_dir>/<date>-replay-<policy>/summary.json and trajectory.png; returns the folder."""
    from sparsevideonav_ros.tools.demo import plot_trajectory

    stamp = datetime.datetime.now().strftime("%Y%m%d-%H%M%S")
    folder = Path(report_dir) / f"{stamp}-replay-{stack.slugify(policy) or 'policy'}"
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "summary.json").write_text(json.dumps(summary, indent=2, default=str))
    plot_trajectory(watch.monitor.record, folder / "trajectory.png")
    return folder


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
    parser.add_argument("--wait-for-ready", metavar="STATUS_TOPIC", default="",
                        help="wait until the policy's status on this topic (e.g. /policy/status) leaves 'loading'")
    parser.add_argument("--ready-timeout", type=non_negative, default=300.0,
                        help="seconds to wait for the policy before playing anyway (with --wait-for-ready)")
    parser.add_argument("--report-dir", type=Path,
                        help="write <dir>/<date>-replay-<policy>/summary.json and trajectory.png (with --wait-for-ready)")
    parser.add_argument("--policy", default="policy", help="policy name for the report folder")
    parser.add_argument("--then-run", nargs=argparse.REMAINDER, default=[], metavar="COMMAND",
                        help="(last) wait for the policy, then run COMMAND to play the bag instead of playing it "
                             "here, e.g. `ros2 bag play ...` (replay.launch.py); needs --wait-for-ready")
    options = parser.parse_args(remove_ros_args(args=argv)[1:])
    if options.wait_for_ready:
        try:
            graph_namespace(options.wait_for_ready)
        except ValueError as error:
            parser.error(str(error))  # one line, exit 2
    elif options.then_run:
        parser.error("--then-run needs --wait-for-ready")

    rclpy.init(args=argv)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    if options.wait_for_ready:
        from sparsevideonav_ros.tools.monitor import GraphMonitor

        # One node (a process-wide `-r __node:=` would give a second one the same name): the player's node
        # is the monitor, its subscriptions spun by a thread while the main thread publishes on schedule.
        node = GraphMonitor(stack.PLAYER_NAME, namespace=graph_namespace(options.wait_for_ready),
                            frames=bool(options.then_run), publishers=False)
    else:
        node = Node(stack.PLAYER_NAME)
    player = watch = executor = spinner = None
    spin_stop = threading.Event()
    try:
        if options.wait_for_ready:
            watch = ReadyWatch(node, options.wait_for_ready, options.ready_timeout)
            executor = SingleThreadedExecutor()
            executor.add_node(node)
            spinner = threading.Thread(target=spin_until, args=(executor, spin_stop), name="replay_watch", daemon=True)
            spinner.start()
        player = BagPlayer(node, options.bag, options.topics, options.rate, options.delay, options.clock,
                           options.start_offset, ready=watch, publish=not options.then_run)
        started = time.monotonic()
        code = 0
        if options.then_run:
            code = run_then(player, options.then_run, stop)
        else:
            player.run(stop)
        if watch is not None:
            stop.wait(0.5)  # the last plans and odometry of the replayed graph
            summary = replay_summary(player, watch, time.monotonic() - started, stop.is_set())
            log = node.get_logger()
            log.info(f"replay: {summary['frames_played']} frames played, "
                     f"{summary['frames_played_before_policy_ready']} before the policy was ready "
                     f"(waited {summary['waited_for_policy_s']:g} s); {summary['plans_out']} plans, "
                     f"{summary['cmd_vel_nonzero']} moving cmd_vel, robot drove {summary['robot_path_length_m']:.2f} m")
            if options.report_dir:
                folder = write_report(options.report_dir, options.policy, summary, watch)
                log.info(f"replay summary: {folder / 'summary.json'}")
                print(f"replay summary: {folder / 'summary.json'}", flush=True)
        return code
    except bags.BagError as error:
        node.get_logger().fatal(str(error))
        print(f"[FATAL] {stack.PLAYER_NAME}: {error}", file=sys.stderr, flush=True)
        return 2
    finally:
        if player is not None:
            player.close()
        spin_stop.set()
        if spinner is not None:
            spinner.join(timeout=2.0)  # a thread still in rclpy at exit aborts the process
        if executor is not None:
            executor.shutdown(timeout_sec=1.0)
        node.destroy_node()
        if rclpy.ok():
            rclpy.shutdown()


def spin_until(executor, stop: threading.Event) -> None:
    """The watch's spin thread: until ``stop`` (set before the node is destroyed) or rclpy shuts down."""
    try:
        while not stop.is_set() and rclpy.ok():
            executor.spin_once(timeout_sec=0.05)
    except Exception:  # noqa: BLE001 - shutdown while spinning (ExternalShutdownException, context invalid)
        pass


if __name__ == "__main__":
    raise SystemExit(main())
