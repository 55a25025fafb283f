"""Trials of the SparseVideoNav protocol: define one, capture its goal, run it, compute its metrics.

    python -m sparsevideonav_ros.tools.trial define trials/corridor-ifn-3.json --instruction "walk to the door" \\
        --task ifn --scene corridor --index 3 --goal 4.0 0.5          # goal relative to the start (m, m[, rad])
    python -m sparsevideonav_ros.tools.trial capture-goal trials/corridor-ifn-3.json   # robot at the goal: /odom once
    python -m sparsevideonav_ros.tools.trial run-sim trials/corridor-ifn-3.json -p "waypoints=[4.0,0.5,0.0]"
    python -m sparsevideonav_ros.tools.trial attach trials/corridor-ifn-3.json bags/<run>
    python -m sparsevideonav_ros.tools.trial metrics bags/<run>       # uses bags/<run>/trial.json

A trial lives beside its bag as trial.json (<bag>/trial.json, or <run folder>/trial.json); metrics
are written to <bag>/metrics.json and printed. Metric definitions: sparsevideonav_ros/trials/metrics.py
and docs/trials.md.

Exit status: 0 done; 1 a sim run whose graph failed; 2 unusable input (missing or unreadable bag,
bad trial file, no odometry on the topic) with one line on stderr.
"""
from __future__ import annotations

import argparse
import datetime
import json
import math
import sys
import threading
import time
from pathlib import Path
from typing import Optional

from sparsevideonav_ros.bags import BagError
from sparsevideonav_ros.configs import ConfigError
from sparsevideonav_ros.trials import metrics as trial_metrics
from sparsevideonav_ros.trials.recorded import read_episode
from sparsevideonav_ros.trials.trial import (DEFAULT_SUCCESS_RADIUS_M, TASK_TYPES, TRIAL_FILE, Goal, Trial, TrialError,
                                             bag_folder, find_trial, load_trial, save_trial)

METRICS_FILE = "metrics.json"
EXPECTED_ERRORS = (TrialError, BagError, ConfigError, trial_metrics.MetricsError)


def trial_file(target: Path) -> Path:
    """A .json path as given; a folder (bag or run folder) gets trial.json in it."""
    return target if target.suffix == ".json" else target / TRIAL_FILE


# -- metrics ----------------------------------------------------------------------------------

def bag_metrics(bag: Path, trial_path: Optional[Path] = None, odom_topic: Optional[str] = None) -> dict:
    """Metrics of one bag against its trial (``trial_path``, else the one beside the bag)."""
    if not bag.exists():
        raise BagError(f"no bag at {bag}")
    trial_path = trial_path or find_trial(bag)
    trial = load_trial(trial_path)
    trial.require_goal(str(trial_path))
    result = trial_metrics.episode_metrics(read_episode(bag, odom_topic), trial)
    result["trial_file"] = str(trial_path)
    return result


def percent(fraction: float) -> str:
    return f"{fraction * 100:.0f}%"


def print_metrics(result: dict) -> None:
    latency = result["plan_latency_ms"]

    def seconds(value: Optional[float]) -> str:
        return "never" if value is None else f"{value:.2f} s"
    print(f"{result['bag']}: {result['policy'] or 'policy ?'} in {result['scene']} ({result['task'].upper()} "
          f"#{result['trial_index']}): {'SUCCESS' if result['success'] else 'FAILURE'} ({result['outcome']})")
    print(f"  final distance {result['final_distance_m']:.2f} m (radius {result['success_radius_m']:g} m), "
          f"path {result['path_length_m']:.2f} m, shortest {result['shortest_path_m']:.2f} m, SPL {result['spl']:.2f}")
    print(f"  first motion {seconds(result['time_to_first_motion_s'])}, stop {seconds(result['time_to_stop_s'])} "
          f"after the {result['episode_start']}; stop-and-go {result['stop_and_go_count']}; stopped by a stale plan "
          f"{percent(result['stale_plan_fraction'])}, the watchdog {percent(result['watchdog_fraction'])}, the e-stop "
          f"{percent(result['estop_fraction'])} of {result['episode_duration_s']:.1f} s")
    if latency.get("count"):
        print(f"  plan latency p50 {latency['p50']:.1f} ms, p95 {latency['p95']:.1f} ms ({latency['count']} plans)")
    else:
        print("  plan latency: no plans in the bag")
    for warning in result["warnings"]:
        print(f"warning: {result['bag']}: {warning}", file=sys.stderr)


def write_metrics(result: dict, bag: Path, out: Optional[Path] = None) -> Path:
    out = out or bag_folder(bag) / METRICS_FILE
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    return out


# -- goal capture (the one rclpy part) --------------------------------------------------------

def capture_odometry(topic: str, timeout_s: float) -> tuple[list[float], str]:
    """((x m, y m, yaw rad), header.frame_id) of the next odometry message on ``topic``, over the ROS
    environment this process has (ROS_DOMAIN_ID etc.); TrialError when none comes within timeout_s."""
    import rclpy
    from nav_msgs.msg import Odometry

    from sparsevideonav_ros import bags
    from sparsevideonav_ros.nodes import common, convert

    known = bags.stack_topic(topic)
    profiles = known.subscription_profiles if known is not None else ("reliable", "sensor_data")
    received: list = []
    rclpy.init(args=[])
    try:
        node = rclpy.create_node("trial_goal_capture")
        for profile in profiles:  # as the stack's nodes subscribe odom: any publisher's QoS matches
            node.create_subscription(Odometry, topic, received.append, common.qos(profile))
        deadline = time.monotonic() + timeout_s
        while not received and time.monotonic() < deadline:
            rclpy.spin_once(node, timeout_sec=0.05)
        node.destroy_node()
    finally:
        rclpy.shutdown()
    if not received:
        raise TrialError(f"no odometry on {topic} within {timeout_s:g} s (is the robot side running, with this "
                         f"ROS_DOMAIN_ID? check with `ros2 topic echo {topic}`)")
    msg = received[0]
    pose = convert.pose_from_odometry_msg(msg)
    if not all(math.isfinite(v) for v in pose):
        raise TrialError(f"the odometry on {topic} is not finite: {pose.tolist()}")
    return [float(v) for v in pose], msg.header.frame_id


# -- sim run ----------------------------------------------------------------------------------

class ElapsedBar:
    """A tqdm bar that counts seconds of a job that reports no progress of its own (bounded by total_s)."""

    def __init__(self, total_s: float, description: str) -> None:
        from tqdm import tqdm
        self.bar = tqdm(total=round(total_s), desc=description, unit="s", file=sys.stderr,
                        bar_format="{desc}: {n:.0f}/{total} s (upper bound) {bar}")
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._tick, daemon=True)

    def _tick(self) -> None:
        started = time.monotonic()
        while not self.stop.wait(0.5):
            self.bar.n = min(self.bar.total, time.monotonic() - started)
            self.bar.refresh()

    def __enter__(self) -> "ElapsedBar":
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop.set()
        self.thread.join()
        self.bar.close()


def run_sim(trial_path: Path, out_root: Path, policy: str, duration_s: float, policy_params: dict,
            extra_arguments: dict[str, str]) -> tuple[Path, dict, dict]:
    """Run the trial with the whole graph and the sim robot (tools/demo.run_demo with record:=true):
    the trial's instruction is sent once the graph is up; the trial is stored beside the bag and its
    metrics computed. Returns (bag, metrics, demo summary)."""
    from sparsevideonav_ros.tools.demo import run_demo

    trial = load_trial(trial_path)
    trial.require_goal(str(trial_path))
    arguments = {**extra_arguments, "record": "true"}
    with ElapsedBar(duration_s, f"sim trial {trial.scene} {trial.task} #{trial.trial_index}"):
        run_dir, summary = run_demo(out_root, duration_s, policy, trial.instruction, extra_arguments=arguments,
                                    policy_params=policy_params)
    recorded = sorted(meta.parent for meta in run_dir.rglob("metadata.yaml"))
    if not recorded:
        raise BagError(f"the sim run wrote no bag in {run_dir} (see {run_dir / 'logs'})")
    bag = recorded[-1]
    save_trial(trial, bag)
    result = bag_metrics(bag)
    write_metrics(result, bag)
    return bag, result, summary


# -- command line -----------------------------------------------------------------------------

def goal_from_numbers(numbers: Optional[list[float]]) -> Optional[Goal]:
    if not numbers:
        return None
    if len(numbers) not in (2, 3):
        raise TrialError(f"--goal takes X Y [YAW] (metres, radians), got {len(numbers)} numbers")
    return Goal("start", float(numbers[0]), float(numbers[1]), float(numbers[2]) if len(numbers) == 3 else None)


def command_define(options) -> int:
    path = trial_file(options.target)
    if path.exists() and not options.force:
        raise TrialError(f"{path} exists already; pass --force to replace it")
    trial = Trial(instruction=options.instruction, task=options.task.lower(), scene=options.scene,
                  trial_index=options.index, goal=goal_from_numbers(options.goal),
                  success_radius_m=options.radius, notes=options.notes)
    written = save_trial(trial, path)
    goal = trial.goal.describe() if trial.goal else "none yet (capture it with capture-goal)"
    print(f"trial written: {written} ({trial.scene} {trial.task.upper()} #{trial.trial_index}; goal {goal})")
    return 0


def command_capture_goal(options) -> int:
    path = trial_file(options.trial)
    trial = load_trial(path)
    pose, frame_id = capture_odometry(options.odom_topic, options.timeout)
    goal = Goal("odom", pose[0], pose[1], pose[2], odom_frame_id=frame_id or "odom",
                captured_at=datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"))
    save_trial(trial.with_goal(goal), path)
    print(f"goal captured from {options.odom_topic}: {goal.describe()}; written to {path}")
    return 0


def command_attach(options) -> int:
    trial = load_trial(trial_file(options.trial))
    for bag in options.bags:
        if not bag.exists():
            raise BagError(f"no bag at {bag}")
        target = bag_folder(bag) / TRIAL_FILE
        if target.exists() and load_trial(target) != trial and not options.force:
            raise TrialError(f"{target} holds another trial; pass --force to replace it")
        save_trial(trial, target)
        print(f"trial attached: {target}")
    return 0


def command_show(options) -> int:
    target = options.target
    path = find_trial(target) if target.is_dir() else target  # a bag folder: its trial, or its run folder's
    trial = load_trial(path)
    print(f"{path}: valid trial (format version {trial.to_json()['version']})")
    print(json.dumps(trial.to_json(), indent=2))
    return 0


def command_metrics(options) -> int:
    if (options.trial or options.out) and len(options.bags) > 1:
        raise TrialError("--trial and --out are for one bag; with several, each bag's trial.json is used and "
                         "its metrics.json written beside it")
    from tqdm import tqdm
    results = []
    for bag in tqdm(options.bags, desc="metrics", unit="bag", file=sys.stderr, disable=len(options.bags) < 2):
        result = bag_metrics(bag, options.trial, options.odom_topic)
        written = write_metrics(result, bag, options.out)
        results.append(result)
        if options.json:
            print(json.dumps(result, indent=2))
        else:
            print_metrics(result)
            print(f"  metrics: {written}")
    return 0


def parse_launch_arguments(items: list[str]) -> dict[str, str]:
    """name:=value launch arguments, checked against bringup's before anything starts."""
    from sparsevideonav_ros import stack
    from sparsevideonav_ros.tools import launch

    try:
        arguments = launch.parse_launch_arguments(items)
    except SystemExit as error:  # the runner's own parser exits with the message
        raise ConfigError(str(error)) from None
    try:
        stack.resolve_arguments("bringup", arguments)
    except ValueError as error:
        raise ConfigError(str(error)) from None
    return arguments


def command_run_sim(options) -> int:
    if not options.duration > 0:
        raise ConfigError(f"--duration must be > 0 seconds, got {options.duration:g}")
    from sparsevideonav_ros.tools.evaluate import parse_values
    params = parse_values(options.param)
    bag, result, summary = run_sim(trial_file(options.trial), options.out, options.policy, options.duration, params,
                                   parse_launch_arguments(options.arguments))
    print_metrics(result)
    print(f"  bag: {bag} (trial.json and metrics.json beside it)")
    if summary.get("crashed_nodes"):
        print(f"error: nodes exited during the run: {summary['crashed_nodes']} (logs in {bag.parent / 'logs'})",
              file=sys.stderr)
        return 1
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m sparsevideonav_ros.tools.trial", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = parser.add_subparsers(dest="command", required=True)

    define = commands.add_parser("define", help="write a trial file")
    define.add_argument("target", type=Path, help="trial .json to write, or a bag / run folder (gets trial.json)")
    define.add_argument("--instruction", required=True, help="the instruction the robot is given")
    define.add_argument("--task", required=True, type=str.lower, choices=sorted(TASK_TYPES),
                        help="ifn = instruction-following, bvn = beyond-the-view navigation")
    define.add_argument("--scene", required=True, help="scene name (a row of the comparison table)")
    define.add_argument("--index", required=True, type=int, help="trial index within scene and task (>= 0)")
    define.add_argument("--goal", type=float, nargs="+", metavar="X Y [YAW]",
                        help="goal relative to the start: x forward, y left (m), optional yaw (rad); "
                             "omit to capture it later with capture-goal")
    define.add_argument("--radius", type=float, default=DEFAULT_SUCCESS_RADIUS_M,
                        help=f"success radius (m, default {DEFAULT_SUCCESS_RADIUS_M:g})")
    define.add_argument("--notes", default="", help="free text kept in the trial")
    define.add_argument("--force", action="store_true", help="replace an existing trial file")
    define.set_defaults(run=command_define)

    capture = commands.add_parser("capture-goal", help="store the robot's current odometry pose as the goal")
    capture.add_argument("trial", type=Path, help="trial file (or the folder holding trial.json) to update")
    capture.add_argument("--odom-topic", default="/odom", help="odometry topic (default /odom)")
    capture.add_argument("--timeout", type=float, default=5.0, help="seconds to wait for one message (default 5)")
    capture.set_defaults(run=command_capture_goal)

    attach = commands.add_parser("attach", help="copy a trial beside one or more bags (<bag>/trial.json)")
    attach.add_argument("trial", type=Path, help="trial file")
    attach.add_argument("bags", type=Path, nargs="+", help="bag folders (or .mcap/.db3 files)")
    attach.add_argument("--force", action="store_true", help="replace a different trial already attached")
    attach.set_defaults(run=command_attach)

    show = commands.add_parser("show", help="validate and print a trial (a file, or a bag's trial)")
    show.add_argument("target", type=Path, help="trial file, or a bag / run folder")
    show.set_defaults(run=command_show)

    metrics = commands.add_parser("metrics", help="per-episode metrics of bags against their trials")
    metrics.add_argument("bags", type=Path, nargs="+", help="bag folders (or .mcap/.db3 files)")
    metrics.add_argument("--trial", type=Path, help="trial file (default: trial.json beside the bag)")
    metrics.add_argument("--odom-topic", help="odometry topic when the bag has several")
    metrics.add_argument("--out", type=Path, help=f"metrics file for one bag (default <bag>/{METRICS_FILE})")
    metrics.add_argument("--json", action="store_true", help="print the metrics as JSON")
    metrics.set_defaults(run=command_metrics)

    sim = commands.add_parser("run-sim", help="run a trial with the whole graph and the sim robot, recorded")
    sim.add_argument("trial", type=Path, help="trial file (its instruction is sent to the policy)")
    sim.add_argument("--policy", default="scripted", help="policy name (default scripted)")
    sim.add_argument("-p", "--param", action="append", default=[], metavar="NAME=VALUE",
                     help="policy parameter (YAML value), e.g. -p 'waypoints=[2.0,0.0,0.0]'; repeatable")
    sim.add_argument("--duration", type=float, default=45.0, help="upper bound on the run (s, default 45)")
    sim.add_argument("--out", type=Path, default=Path("runs"), help="folder for run folders (default runs)")
    sim.add_argument("arguments", nargs="*", help="extra launch arguments name:=value")
    sim.set_defaults(run=command_run_sim)
    return parser


def main(argv: Optional[list[str]] = None) -> int:
    options = build_parser().parse_args(argv)
    try:
        return options.run(options)
    except EXPECTED_ERRORS as error:
        print(f"error: {error}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
