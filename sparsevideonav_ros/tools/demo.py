"""The main job: run the whole graph for a bounded time on loopback and write a run folder.

    python -m sparsevideonav_ros.tools.demo            (make demo)

Generates a camera clip, starts bringup (camera on the clip, policy `scripted` driving a 1 m
square, controller, sim Go2) as processes, watches every topic, and writes
runs/<date>-demo-<policy>/ with summary.json, trajectory.png and each node's log.

    python -m sparsevideonav_ros.tools.demo --policy sparsevideonav -p action_head=pose

``-p NAME=VALUE`` sets a parameter of the policy's block (here SparseVideoNav's pose head). A run in
which the robot stood still because every plan was a stop that says why (state pose_invalid: the
pose head refused the imagined future, as it does for the tiny random models' noise) counts as
finished, not failed: standing still is what a refused estimate must do.

While it runs, a progress line (seconds of the run's upper bound, plans, distance driven, policy
state) goes to stderr. With record:=true the bag's path is printed when the recorder starts and at
the end. A failed run prints each failing node's FATAL line (or the end of its log) before
"DEMO FAILED". Exit status: 0 finished, 1 failed, 2 bad arguments.
"""
from __future__ import annotations

import argparse
import datetime
import json
import os
import sys
import time
from pathlib import Path
from typing import Optional

import numpy as np

from sparsevideonav_ros import stack
from sparsevideonav_ros.core.progress import Progress

DEFAULT_INSTRUCTION = "walk forward and stop by the wooden door"


def generate_clip(path: Path, seconds: float = 8.0, fps: float = 15.0) -> Path:
    from sparsevideonav_ros.sources.file import write_video
    from sparsevideonav_ros.sources.synthetic import SyntheticSource
    source = SyntheticSource(width=640, height=480, fps=fps)
    source.open()
    write_video(path, (source.render(i) for i in range(int(seconds * fps))), fps)
    return path


def percentiles(values: list[float]) -> dict[str, float]:
    if not values:
        return {}
    array = np.asarray(values)
    return {"p50": float(np.percentile(array, 50)), "p95": float(np.percentile(array, 95)),
            "max": float(array.max()), "count": int(array.size)}


def first_receipt_latencies(plans) -> list[float]:
    """Receipt time - frame stamp of the first path received for each frame stamp (seconds)."""
    first: dict[float, float] = {}
    for received, stamp, *_ in plans:
        first.setdefault(stamp, received - stamp)
    return list(first.values())


def anchored_plans(record) -> list[np.ndarray]:
    """Each received plan in the odom frame, anchored at the odometry pose of its frame's stamp."""
    from sparsevideonav_ros.tools.evaluate import anchored
    return anchored([(stamp, waypoints) for _, stamp, _, waypoints in record.plans],
                    [(stamp, pose) for _, stamp, pose, _ in record.odom])


def summarise(record, duration_s: float, exit_codes: dict[str, int]) -> dict:
    poses = np.array([pose for _, _, pose, _ in record.odom]) if record.odom else np.zeros((0, 3))
    steps = np.linalg.norm(np.diff(poses[:, :2], axis=0), axis=1) if len(poses) > 1 else np.zeros(0)
    moving_cmds = [c for c in record.cmds if any(abs(v) > 1e-6 for v in c[1:])]
    return {
        "duration_s": round(duration_s, 2),
        "frames_in": len(record.frames),
        "mean_jpeg_bytes": int(np.mean([f[2] for f in record.frames])) if record.frames else 0,
        "plans_out": len(record.plans),
        "plans_with_waypoints": sum(1 for p in record.plans if len(p[3])),
        "cmd_vel_messages": len(record.cmds),
        "cmd_vel_nonzero": len(moving_cmds),
        "robot_start_pose": poses[0].round(3).tolist() if len(poses) else None,
        "robot_end_pose": poses[-1].round(3).tolist() if len(poses) else None,
        "robot_displacement_m": float(np.linalg.norm(poses[-1, :2] - poses[0, :2])) if len(poses) else 0.0,
        "robot_path_length_m": float(steps.sum()),
        # first receipt of each planned frame: a policy may re-publish its last plan between planning steps
        "plan_latency_ms": {k: (round(v * 1e3, 2) if k != "count" else v)
                            for k, v in percentiles(first_receipt_latencies(record.plans)).items()},
        "policy_status": record.status.get("policy/status", {}),
        "controller_status": record.status.get("controller/status", {}),
        "bridge_status": record.status.get("go2/status", {}),
        "node_exit_codes": exit_codes,
    }


def failure_lines(log_dir: Path, exit_codes: dict[str, int], tail: int = 3) -> list[str]:
    """What a failed run's nodes said: each node that exited non-zero with its FATAL line(s) from
    ``log_dir/<node>.log`` (rclpy's '[FATAL] [time] [node]: ...'), else the last ``tail`` lines of its log
    (a traceback's end); then FATAL lines of any other node."""
    lines = []
    logs = {path.stem: path for path in sorted(Path(log_dir).glob("*.log"))}

    def read(node: str) -> list[str]:
        try:
            return logs[node].read_text(errors="replace").splitlines() if node in logs else []
        except OSError:
            return []

    failed = [node for node, code in exit_codes.items() if code not in (0, None)]
    for node in failed:
        text = read(node)
        fatal = [line.strip() for line in text if "FATAL" in line]
        shown = fatal or [line.rstrip() for line in text if line.strip()][-tail:]
        where = f" (log: {logs[node]})" if node in logs else ""
        lines.append(f"{node} exited with code {exit_codes[node]}{where}:")
        lines.extend(f"  {line}" for line in shown)
    for node in logs:
        if node not in failed:
            lines.extend(f"{node}: {line.strip()}" for line in read(node) if "FATAL" in line)
    return lines


def progress_note(record) -> str:
    """Progress of a demo run: plans received, distance driven (odometry), the policy's state."""
    poses = np.array([pose for _, _, pose, _ in record.odom]).reshape(-1, 3)
    driven = float(np.linalg.norm(np.diff(poses[:, :2], axis=0), axis=1).sum()) if len(poses) > 1 else 0.0
    state = record.status.get("policy/status", {}).get("state", "starting")
    return f"{len(record.plans)} plans, {driven:.2f} m driven, policy {state}"


def plot_trajectory(record, path: Path) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, ax = plt.subplots(figsize=(6, 6))
    for i, plan in enumerate(anchored_plans(record)):
        ax.plot(plan[:, 0], plan[:, 1], ".-", color="tab:orange", alpha=0.15, lw=0.8,
                label="plans (anchored at their frame)" if i == 0 else None)
    from sparsevideonav_ros.tools.evaluate import draw_odometry
    draw_odometry(ax, np.array([pose for _, _, pose, _ in record.odom]).reshape(-1, 3), "driven (odom)",
                  "Driven trajectory vs plans")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


# Plan states in which standing still is the policy's correct answer (not a failed demo).
REFUSED_STATES = ("pose_invalid",)


def run_demo(out_root: Path, duration_s: float, policy: str, instruction: str,
             domain_id: Optional[int] = None, extra_arguments: Optional[dict[str, str]] = None,
             policy_params: Optional[dict] = None) -> tuple[Path, dict]:
    """Run the graph; return (run folder, summary). Sets a loopback-only ROS environment.
    policy_params: values for the policy's parameter block (policy_node ``<policy>.<name>``)."""
    import rclpy

    from sparsevideonav_ros.tools.launch import GraphRunner
    from sparsevideonav_ros.tools.monitor import GraphMonitor, spin_for

    stamp = datetime.datetime.now().strftime("%Y%m%d-%H%M%S")
    run_dir = out_root / f"{stamp}-demo-{policy}"
    run_dir.mkdir(parents=True, exist_ok=True)
    if domain_id is None:
        domain_id = int(os.environ.get("ROS_DOMAIN_ID", stack.pick_domain_id(stack.DEMO_DOMAIN_IDS, os.getpid())))
    env = stack.loopback_environment(domain_id)
    os.environ.update({k: env[k] for k in ("ROS_DOMAIN_ID", "ROS_AUTOMATIC_DISCOVERY_RANGE", "ROS_LOCALHOST_ONLY")})
    clip = generate_clip(run_dir / "camera_clip.mp4")
    # The scripted route waits for the instruction, which is sent once the monitor sees the whole
    # graph: the recorded trajectory then starts where the robot stood.
    overrides = run_dir / "demo_params.yaml"
    import yaml
    blocks: dict = {"scripted": {"require_instruction": True}}
    if policy_params:
        blocks.setdefault(policy, {}).update(policy_params)
    overrides.write_text(yaml.safe_dump({"/**/policy_node": {"ros__parameters": blocks}}))
    arguments = {"policy": policy, "camera": "video", "camera_path": str(clip), "params_file": str(overrides)}
    arguments.update(extra_arguments or {})
    if arguments.get("record", "").lower() in ("true", "1", "yes"):
        arguments.setdefault("record_dir", str(run_dir))  # `make demo ARGS="record:=true"`: the bag in the run folder
    processes = stack.plan_graph("bringup", arguments)  # + the bag recorder with record:=true
    (run_dir / "graph.json").write_text(json.dumps([p.__dict__ for p in processes], indent=2, default=str))
    bag = next((p.output for p in processes if isinstance(p, stack.RecordingSpec)), None)
    if bag:
        print(f"recording the run to {bag}", flush=True)

    rclpy.init(args=[])
    monitor = GraphMonitor("demo_monitor")
    runner = GraphRunner(processes, env=env, log_dir=run_dir / "logs")
    started = time.monotonic()
    exit_codes: dict[str, int] = {}
    progress = Progress(f"demo {policy}", total=duration_s, unit="s")
    try:
        runner.start()

        def graph_visible() -> bool:
            record = monitor.record
            return bool(record.frames and record.odom and "policy/status" in record.status) or bool(runner.exited())

        spin_for(monitor, 30.0, until=graph_visible)
        monitor.send_instruction(instruction)

        driving_since = time.monotonic()

        def finished() -> bool:
            progress.update(round(time.monotonic() - driving_since, 1), note=progress_note(monitor.record))
            if runner.exited():
                return True
            state = monitor.record.status.get("policy/status", {}).get("state")
            return state == "done" and monitor.latest_speed() < 1e-3

        spin_for(monitor, duration_s, until=finished)
        spin_for(monitor, 0.5)  # last status and odometry
        progress.finish(progress_note(monitor.record))
        crashed = runner.exited()
    finally:
        exit_codes = runner.stop()
        elapsed = time.monotonic() - started
        monitor.destroy_node()
        rclpy.shutdown()
    summary = summarise(monitor.record, elapsed, exit_codes)
    summary["crashed_nodes"] = crashed
    summary["bag"] = bag
    summary["instruction"] = instruction
    summary["ros_domain_id"] = domain_id
    (run_dir / "summary.json").write_text(json.dumps(summary, indent=2))
    plot_trajectory(monitor.record, run_dir / "trajectory.png")
    return run_dir, summary


def main(argv: Optional[list[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--duration", type=float, default=45.0, help="upper bound on the run (s)")
    parser.add_argument("--policy", default="scripted", help="policy name (default: scripted)")
    parser.add_argument("--instruction", default=DEFAULT_INSTRUCTION)
    parser.add_argument("--out", type=Path, default=Path("runs"), help="folder for run folders")
    parser.add_argument("-p", "--param", action="append", default=[], metavar="NAME=VALUE",
                        help="policy parameter (YAML value), e.g. -p action_head=pose; repeatable")
    parser.add_argument("arguments", nargs="*", help="extra launch arguments name:=value")
    options = parser.parse_args(argv)
    from sparsevideonav_ros.tools.evaluate import parse_values
    from sparsevideonav_ros.tools.launch import parse_launch_arguments
    try:
        params = parse_values(options.param)  # ConfigError (a ValueError) for a bad -p
        arguments = parse_launch_arguments(options.arguments)
        run_dir, summary = run_demo(options.out, options.duration, options.policy, options.instruction,
                                    extra_arguments=arguments, policy_params=params)
    except (ValueError, FileNotFoundError, RuntimeError) as error:  # bad launch arguments, recorder not ready
        print(f"error: {error}", file=sys.stderr)
        return 2
    except SystemExit as error:  # parse_launch_arguments: 'name:=value' expected
        print(f"error: {error}", file=sys.stderr)
        return 2
    status = summary["policy_status"]
    refused = (status.get("state") in REFUSED_STATES and summary["plans_with_waypoints"] == 0
               and summary["cmd_vel_nonzero"] == 0)
    ok = not summary["crashed_nodes"] and summary["plans_out"] > 0 and (
        refused or (summary["cmd_vel_nonzero"] > 0 and summary["robot_path_length_m"] > 0.1))
    if refused:
        print(f"the robot stood still: every plan was a stop in state {status.get('state')} "
              f"({status.get('plan_reason', '')}); with the tiny random models the imagined future is noise")
    print(json.dumps({k: summary[k] for k in ("frames_in", "plans_out", "cmd_vel_messages", "robot_displacement_m",
                                              "robot_path_length_m", "plan_latency_ms", "robot_end_pose")}, indent=2))
    if summary.get("bag"):
        print(f"bag: {summary['bag']}")
    if not ok:
        for line in failure_lines(run_dir / "logs", summary["crashed_nodes"]):
            print(line)
        if not summary["crashed_nodes"]:
            print(f"no node failed, but the robot did not drive: {summary['plans_out']} plans, "
                  f"{summary['cmd_vel_nonzero']} moving cmd_vel, {summary['robot_path_length_m']:.2f} m driven; "
                  f"policy state {status.get('state', 'never reported')}")
    print(f"{'demo finished' if ok else 'DEMO FAILED'}: run folder {run_dir.resolve()}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
