"""End-to-end latency of the bringup graph, hop by hop (camera -> policy -> controller -> bridge).

Run: .venv/bin/python bench/bench_latency.py [--duration 20] [--json PATH]   (~30 s)

Starts bringup as processes (tools/launch.py's command lines; the launch files give each node the same
arguments) on
loopback only, with the `scripted` policy on a long straight route (the robot keeps moving),
a synthetic 1280x720 camera at 15 Hz and the sim Go2, and watches it from an in-process
GraphMonitor. Per frame that produced a plan (policy/path stamped with the frame's capture stamp):

    capture -> JPEG receipt        camera -> policy hop (camera side: raw Image + JPEG encode + publish,
                                   then DDS transport)
    capture -> path receipt        camera -> plan: JPEG decode, 4 FPS sampling, policy compute, publish
    path receipt -> first cmd_vel  policy -> controller hop: anchoring, tracking, cmd_vel publish
    cmd_vel transport              controller -> bridge: publish -> receipt at the monitor, which
                                   subscribes cmd_vel exactly like the bridge (an approximation)
    policy compute                 compute_ms from policy/status (policy.observe/step only)

and "stack overhead beyond policy compute" = (capture -> first cmd_vel receipt) - policy compute,
next to the 10 ms target. Receipt times are the middleware's reception timestamps (rmw
MessageInfo), so the monitor's own executor lag is left out (it is printed separately);
everything runs on one machine, so the wall clocks of all processes are the same clock.

A benchmark: it prints figures and asserts nothing about time. Exit status 1 only when the
graph produced no plan or a node died.
"""
from __future__ import annotations

import argparse
import bisect
import json
import os
import platform
import shlex
import signal
import sys
import tempfile
import time
from pathlib import Path
from typing import Optional

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a source checkout

import numpy as np  # noqa: E402

from _machine import command_line, cpu_line  # noqa: E402
from sparsevideonav_ros import stack  # noqa: E402

TARGET_OVERHEAD_MS = 10.0
ROUTE = [20.0, 0.0, 0.0]  # 20 m straight ahead: ~40 s of driving at the controller's 0.5 m/s
LOOPBACK_KEYS = ("ROS_DOMAIN_ID", "ROS_AUTOMATIC_DISCOVERY_RANGE", "ROS_LOCALHOST_ONLY")


def params_yaml(width: int, height: int, rate_hz: float, status_rate_hz: float) -> str:
    """Overrides applied after the package params (params_file:=)."""
    route = ", ".join(f"{v:.1f}" for v in ROUTE)
    return (
        "/**/camera_node:\n"
        "  ros__parameters:\n"
        f"    width: {width}\n"
        f"    height: {height}\n"
        f"    rate_hz: {rate_hz:.1f}\n"
        "/**/policy_node:\n"
        "  ros__parameters:\n"
        # policy/status carries compute_ms of the newest plan only; sample it faster than the
        # 4 FPS plans so (nearly) every plan's compute time is seen.
        f"    status_rate_hz: {status_rate_hz:.1f}\n"
        "    scripted:\n"
        f"      waypoints: [{route}]\n"
    )


def make_monitor_class():
    """GraphMonitor that also keeps each message's middleware timestamps (imports rclpy lazily)."""
    from sparsevideonav_ros.nodes import common
    from sparsevideonav_ros.tools.monitor import GraphMonitor

    def stamps(info) -> tuple[float, float]:
        """(source/publish time, reception time) in wall seconds; NaN where the rmw leaves them 0."""
        info = info or {}
        src, rcv = info.get("source_timestamp", 0), info.get("received_timestamp", 0)
        return (src * 1e-9 if src else float("nan")), (rcv * 1e-9 if rcv else float("nan"))

    class LatencyMonitor(GraphMonitor):
        """The two-argument callbacks below make rclpy pass the rmw MessageInfo (GraphMonitor's
        subscriptions call ``self.on_frame`` etc., which resolve to these overrides)."""

        def __init__(self, name: str) -> None:
            super().__init__(name)
            self.frames_t: list[tuple[float, float, float, float]] = []  # (stamp, published, received, callback)
            self.paths_t: list[tuple[float, float, float, float, int]] = []  # (stamp, pub, recv, callback, n)
            self.cmds_t: list[tuple[float, float, float]] = []  # (published, received, callback)
            self.policy_status: list[tuple[float, dict]] = []  # (callback, values)

        def on_frame(self, msg, info) -> None:  # noqa: D102 - see class docstring
            now = time.time()
            super().on_frame(msg)
            self.frames_t.append((common.stamp_to_seconds(msg.header.stamp), *stamps(info), now))

        def on_path(self, msg, info) -> None:  # noqa: D102
            now = time.time()
            super().on_path(msg)
            self.paths_t.append((common.stamp_to_seconds(msg.header.stamp), *stamps(info), now, len(msg.poses)))

        def on_cmd(self, msg, info) -> None:  # noqa: D102
            now = time.time()
            super().on_cmd(msg)
            self.cmds_t.append((*stamps(info), now))

        def on_status(self, topic: str, msg) -> None:  # noqa: D102
            super().on_status(topic, msg)
            if topic == "policy/status":
                self.policy_status.append((time.time(), common.diagnostic_values(msg)))

    return LatencyMonitor


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of a process (Linux /proc; NaN elsewhere or once it has gone)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError):
        return float("nan")


def cpu_snapshot(runner) -> dict[str, float]:
    pids = {name: child.pid for name, child in runner.children.items()}
    pids["monitor (this process)"] = os.getpid()
    return {name: cpu_seconds(pid) for name, pid in pids.items()}


def load_average() -> str:
    try:
        return " ".join(f"{v:.2f}" for v in os.getloadavg())
    except OSError:
        return "n/a"


# -- analysis -------------------------------------------------------------------------------------
def _ms(values) -> dict:
    array = np.asarray([v for v in values if np.isfinite(v)], dtype=float) * 1e3
    if array.size == 0:
        return {"n": 0}
    return {"n": int(array.size), "median_ms": round(float(np.median(array)), 3),
            "p95_ms": round(float(np.percentile(array, 95)), 3), "mean_ms": round(float(array.mean()), 3),
            "max_ms": round(float(array.max()), 3)}


def _nearest(sorted_keys: list[float], value: float, tolerance: float) -> Optional[int]:
    i = bisect.bisect_left(sorted_keys, value)
    best = None
    for j in (i - 1, i):
        if 0 <= j < len(sorted_keys) and abs(sorted_keys[j] - value) <= tolerance:
            if best is None or abs(sorted_keys[j] - value) < abs(sorted_keys[best] - value):
                best = j
    return best


def _float(values: dict, key: str) -> float:
    try:
        return float(values.get(key, "nan"))
    except ValueError:
        return float("nan")


def match_compute(paths: list, statuses: list) -> dict[int, float]:
    """Path index -> policy compute (s). policy/status holds compute_ms and latency_ms (capture ->
    just before the path publish) of the newest plan; its plan is the path whose publish time minus
    capture stamp equals latency_ms (within 3 ms) among the last paths received before the status."""
    compute: dict[int, float] = {}
    receipts = [p[3] for p in paths]  # callback order = receipt order
    for callback_s, values in statuses:
        latency, compute_ms = _float(values, "latency_ms"), _float(values, "compute_ms")
        if not (np.isfinite(latency) and np.isfinite(compute_ms)):
            continue
        last = bisect.bisect_right(receipts, callback_s)
        best, best_err = None, 3.0
        for k in range(max(0, last - 3), last):
            stamp, published = paths[k][0], paths[k][1]
            if np.isfinite(published):
                err = abs((published - stamp) * 1e3 - latency)
                if err <= best_err:
                    best, best_err = k, err
        if best is not None:
            compute.setdefault(best, compute_ms * 1e-3)
    return compute


def analyse(monitor, window_start: float, window_end: float) -> dict:
    frames = sorted(monitor.frames_t)
    frame_stamps = [f[0] for f in frames]
    paths = sorted(monitor.paths_t, key=lambda p: p[3])
    cmds = sorted(monitor.cmds_t, key=lambda c: c[1] if np.isfinite(c[1]) else c[2])
    cmd_recv = [c[1] if np.isfinite(c[1]) else c[2] for c in cmds]
    compute = match_compute(paths, monitor.policy_status)

    hops: dict[str, list[float]] = {k: [] for k in (
        "capture_to_jpeg", "camera_side", "jpeg_transport", "capture_to_path", "policy_compute",
        "policy_node_beyond_compute", "path_transport", "path_to_cmd", "cmd_transport_after_plan",
        "capture_to_cmd", "overhead_beyond_compute")}
    counts = {"plans": 0, "empty_plans": 0, "plans_without_jpeg": 0, "plans_without_cmd": 0,
              "plans_without_compute": 0}
    for k, (stamp, published, received, callback, n_poses) in enumerate(paths):
        if not window_start <= stamp < window_end:
            continue
        counts["plans"] += 1
        counts["empty_plans"] += n_poses == 0
        path_recv = received if np.isfinite(received) else callback
        hops["capture_to_path"].append(path_recv - stamp)
        hops["path_transport"].append(received - published)
        j = _nearest(frame_stamps, stamp, 1e-3)
        jpeg_recv = float("nan")
        if j is None:
            counts["plans_without_jpeg"] += 1
        else:
            _, f_pub, f_recv, f_cb = frames[j]
            jpeg_recv = f_recv if np.isfinite(f_recv) else f_cb
            hops["capture_to_jpeg"].append(jpeg_recv - stamp)
            hops["camera_side"].append(f_pub - stamp)
            hops["jpeg_transport"].append(f_recv - f_pub)
        c = bisect.bisect_right(cmd_recv, path_recv)
        cmd_at = float("nan")
        if c < len(cmds):
            cmd_at = cmd_recv[c]
            hops["path_to_cmd"].append(cmd_at - path_recv)
            hops["cmd_transport_after_plan"].append(cmds[c][1] - cmds[c][0])
            hops["capture_to_cmd"].append(cmd_at - stamp)
        else:
            counts["plans_without_cmd"] += 1
        if k in compute:
            hops["policy_compute"].append(compute[k])
            hops["overhead_beyond_compute"].append(cmd_at - stamp - compute[k])
            # JPEG receipt -> path publish, less compute: decode, sampler, queue/wake-up, Path build
            hops["policy_node_beyond_compute"].append(published - jpeg_recv - compute[k])
        else:
            counts["plans_without_compute"] += 1

    in_window = [f for f in frames if window_start <= f[0] < window_end]
    cmds_in = [c for c, t in zip(cmds, cmd_recv) if window_start <= t < window_end]
    figures = {name: _ms(values) for name, values in hops.items()}
    figures["cmd_transport_all"] = _ms([c[1] - c[0] for c in cmds_in])
    figures["monitor_executor_lag_jpeg"] = _ms([f[3] - f[2] for f in in_window])
    figures["monitor_executor_lag_cmd"] = _ms([c[2] - c[1] for c in cmds_in])
    span = max(window_end - window_start, 1e-9)
    rates = {"frames_hz": round(len(in_window) / span, 2), "plans_hz": round(counts["plans"] / span, 2),
             "cmd_vel_hz": round(len(cmds_in) / span, 2),
             "mean_jpeg_kib": round(float(np.mean([f[2] for f in monitor.record.frames])) / 1024, 1)
             if monitor.record.frames else 0.0}
    return {"figures": figures, "counts": counts, "rates": rates}


# -- report ---------------------------------------------------------------------------------------
ROWS = (  # (key, label, indent)
    ("capture_to_jpeg", "camera -> policy     capture -> JPEG receipt", 0),
    ("camera_side", "camera side: raw Image + JPEG encode + publish", 1),
    ("jpeg_transport", "DDS transport of the JPEG (publish -> receipt)", 1),
    ("capture_to_path", "camera -> plan       capture -> path receipt", 0),
    ("policy_compute", "policy compute (policy/status compute_ms)", 1),
    ("policy_node_beyond_compute", "policy node beyond compute (decode, sampler, queue, Path)", 1),
    ("path_transport", "DDS transport of the path", 1),
    ("path_to_cmd", "policy -> controller path receipt -> first cmd_vel receipt", 0),
    ("cmd_transport_all", "controller -> bridge cmd_vel transport (every cmd_vel) *", 0),
    ("cmd_transport_after_plan", "of the first cmd_vel after each plan *", 1),
    ("capture_to_cmd", "end to end           capture -> first cmd_vel receipt", 0),
    ("overhead_beyond_compute", "STACK OVERHEAD beyond policy compute (target <= 10 ms)", 0),
)


def fmt(value) -> str:
    return f"{value:9.2f}" if isinstance(value, (int, float)) else f"{'-':>9}"


def print_report(result: dict, meta: dict) -> None:
    figures, counts, rates = result["figures"], result["counts"], result["rates"]
    print()
    print(f"bench_latency: bringup, policy scripted, camera synthetic {meta['width']}x{meta['height']} "
          f"@ {meta['rate_hz']:g} Hz, sim Go2, {meta['window_s']:.1f} s measured "
          f"(after {meta['warmup_s']:g} s warm-up){' - INTERRUPTED' if meta.get('interrupted') else ''}")
    print(meta["machine"])
    print(f"host: {meta['cpus']} CPUs, {meta['python']}, rmw {meta['rmw']}, ROS_DOMAIN_ID {meta['domain_id']} "
          f"(loopback only)")
    print(f"rates: {rates['frames_hz']} frames/s ({rates['mean_jpeg_kib']} KiB JPEG), {rates['plans_hz']} plans/s, "
          f"{rates['cmd_vel_hz']} cmd_vel/s; plans measured {counts['plans']} "
          f"(without JPEG match {counts['plans_without_jpeg']}, without compute match "
          f"{counts['plans_without_compute']}, without cmd_vel {counts['plans_without_cmd']}, "
          f"empty {counts['empty_plans']})")
    if meta.get("cpu_percent"):
        cpu = ", ".join(f"{name.replace('_node', '')} {pct:g}%" for name, pct in meta["cpu_percent"].items())
        print(f"CPU during the window (100% = one core): {cpu}; load average "
              f"{meta.get('load_average_start')} -> {meta.get('load_average_end')} (1/5/15 min, whole host)")
    print()
    width = 66
    print(f"{'hop':<{width}} {'n':>4} {'median ms':>9} {'p95 ms':>9} {'max ms':>9}")
    print("-" * (width + 35))
    for key, label, indent in ROWS:
        f = figures.get(key, {})
        text = ("  " * indent + ("- " if indent else "") + label)[:width]
        print(f"{text:<{width}} {f.get('n', 0):>4} {fmt(f.get('median_ms'))} {fmt(f.get('p95_ms'))} "
              f"{fmt(f.get('max_ms'))}")
    print("-" * (width + 35))
    over = figures.get("overhead_beyond_compute", {})
    if over.get("n"):
        verdict = lambda v: "within" if v <= TARGET_OVERHEAD_MS else "OVER"  # noqa: E731
        print(f"stack overhead beyond policy compute: median {over['median_ms']:.2f} ms "
              f"({verdict(over['median_ms'])} the {TARGET_OVERHEAD_MS:g} ms target), "
              f"p95 {over['p95_ms']:.2f} ms ({verdict(over['p95_ms'])})")
    lag_j, lag_c = figures["monitor_executor_lag_jpeg"], figures["monitor_executor_lag_cmd"]
    print(f"* the monitor stands in for the bridge: it subscribes cmd_vel with the same QoS in another "
          f"process on this host,\n  so this is the transport the bridge sees, not a measurement inside the "
          f"bridge. Receipt times are rmw reception\n  timestamps; the monitor's own executor lag "
          f"(reception -> callback) is excluded: median {lag_j.get('median_ms', float('nan')):.2f} ms "
          f"(JPEG), {lag_c.get('median_ms', float('nan')):.2f} ms (cmd_vel).")
    print("  'capture' is the camera_node stamp, taken after the synthetic frame is rendered and before "
          "the raw Image\n  and JPEG are built; policy compute is matched to its plan through policy/status "
          f"(sampled at {meta['status_rate_hz']:g} Hz).")
    print()
    print("command:   " + meta["command"])
    print("graph:     " + meta["launch_equivalent"])
    print("overrides: " + meta["overrides"] + ("" if meta.get("log_dir") else "  (params_file is a temp file, removed)"))
    if meta.get("log_dir"):
        print("node logs: " + meta["log_dir"])


# -- main -----------------------------------------------------------------------------------------
class _Stop(Exception):
    pass


def main(argv: Optional[list[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--duration", type=float, default=20.0, help="measured seconds (default 20)")
    parser.add_argument("--warmup", type=float, default=2.0,
                        help="seconds after the first plan that are not measured (default 2)")
    parser.add_argument("--width", type=int, default=1280)
    parser.add_argument("--height", type=int, default=720)
    parser.add_argument("--rate", type=float, default=15.0, help="camera rate in Hz (default 15)")
    parser.add_argument("--status-rate", type=float, default=10.0,
                        help="policy/status rate in Hz, to see compute_ms of every plan (default 10)")
    parser.add_argument("--startup-timeout", type=float, default=30.0, help="seconds to wait for the first plan")
    parser.add_argument("--domain-id", type=int, default=None,
                        help=f"ROS_DOMAIN_ID (default: one of {stack.BENCH_DOMAIN_IDS.start}-"
                             f"{stack.BENCH_DOMAIN_IDS.stop - 1} by pid)")
    parser.add_argument("--log-dir", type=Path, default=None, help="keep node logs here (default: a temp folder)")
    parser.add_argument("--json", type=Path, default=None, help="also write the figures to this JSON file")
    options = parser.parse_args(argv)
    print(command_line(), flush=True)
    if options.warmup + options.duration > 35.0:
        print(f"note: the {ROUTE[0]:g} m route ends after ~40 s of driving; later plans are 'done' stand-stills",
              file=sys.stderr)

    domain_id = (options.domain_id if options.domain_id is not None
                 else stack.pick_domain_id(stack.BENCH_DOMAIN_IDS, os.getpid()))
    env = stack.loopback_environment(domain_id)
    os.environ.update({k: env[k] for k in LOOPBACK_KEYS})  # before rclpy.init: this process is a participant too

    tmp = tempfile.TemporaryDirectory(prefix="bench_latency_")
    log_dir = options.log_dir or Path(tmp.name) / "logs"
    log_dir.mkdir(parents=True, exist_ok=True)
    params_file = log_dir / "bench_latency_params.yaml"  # kept with the logs when --log-dir is given
    params_file.write_text(params_yaml(options.width, options.height, options.rate, options.status_rate))
    arguments = {"policy": "scripted", "camera": "synthetic", "robot": "sim", "params_file": str(params_file)}
    processes = stack.plan_processes("bringup", arguments)
    python = sys.executable
    if python.startswith(os.getcwd() + os.sep):
        python = os.path.relpath(python)
    command = shlex.join([python, *sys.argv])
    meta = {
        "command": command,
        "launch_equivalent": (f"ROS_DOMAIN_ID={domain_id} ROS_AUTOMATIC_DISCOVERY_RANGE=LOCALHOST ROS_LOCALHOST_ONLY=1 "
                              f"python -m sparsevideonav_ros.tools.launch bringup "
                              + " ".join(f"{k}:={v}" for k, v in arguments.items())),
        "params_yaml": params_file.read_text(),
        "overrides": (f"camera_node width={options.width} height={options.height} rate_hz={options.rate:g}; "
                      f"policy_node status_rate_hz={options.status_rate:g} scripted.waypoints={ROUTE}"),
        "width": options.width, "height": options.height, "rate_hz": options.rate,
        "status_rate_hz": options.status_rate, "warmup_s": options.warmup, "domain_id": domain_id,
        "cpus": os.cpu_count(), "python": f"Python {platform.python_version()}", "machine": cpu_line(),
        "rmw": os.environ.get("RMW_IMPLEMENTATION", "default (rmw_fastrtps_cpp)"),
        "log_dir": str(log_dir) if options.log_dir else "",
        "target_overhead_ms": TARGET_OVERHEAD_MS,
    }

    import rclpy

    from sparsevideonav_ros.tools.launch import GraphRunner
    from sparsevideonav_ros.tools.monitor import spin_for

    def on_sigterm(signum, frame):  # noqa: ARG001
        raise _Stop()

    previous_sigterm = signal.signal(signal.SIGTERM, on_sigterm)
    rclpy.init(args=[])
    monitor = make_monitor_class()("latency_bench_monitor")
    runner = GraphRunner(processes, env=env, log_dir=log_dir)
    interrupted, crashed, exit_codes = False, {}, {}
    window_start = window_end = float("nan")
    try:
        runner.start()
        print(f"started {len(processes)} nodes on ROS_DOMAIN_ID {domain_id}; waiting for the first plan...",
              flush=True)
        got_plan = spin_for(monitor, options.startup_timeout, until=lambda: bool(monitor.paths_t) or runner.exited())
        crashed = runner.exited()
        if got_plan and not crashed:
            window_start = time.time() + options.warmup
            print(f"first plan; measuring {options.warmup:g} s warm-up + {options.duration:g} s...", flush=True)
            spin_for(monitor, options.warmup, until=lambda: bool(runner.exited()))
            cpu_start, meta["load_average_start"] = cpu_snapshot(runner), load_average()
            spin_for(monitor, options.duration, until=lambda: bool(runner.exited()))
            window_end = time.time()
            cpu_end, meta["load_average_end"] = cpu_snapshot(runner), load_average()
            meta["cpu_percent"] = {name: round(100 * (cpu_end[name] - cpu_start[name])
                                               / max(window_end - window_start, 1e-9), 1) for name in cpu_start}
            spin_for(monitor, 0.5)  # plans and cmd_vel of the last frames in the window
            crashed = runner.exited()
    except (KeyboardInterrupt, _Stop):
        interrupted = True
        window_end = time.time()
        print("\ninterrupted: stopping the graph, reporting what was measured", file=sys.stderr)
    finally:
        try:
            exit_codes = runner.stop()
        finally:
            monitor.destroy_node()
            if rclpy.ok():
                rclpy.shutdown()
            signal.signal(signal.SIGTERM, previous_sigterm)

    status = 0
    no_plan = not np.isfinite(window_start) or not monitor.paths_t
    if crashed or (no_plan and not interrupted):
        print(f"node(s) exited during the run: {crashed}" if crashed else
              f"no plan received within {options.startup_timeout:g} s", file=sys.stderr)
        print(f"node exit codes {exit_codes}; last lines of the node logs:", file=sys.stderr)
        for log in sorted(log_dir.glob("*.log")):
            tail = log.read_text(errors="replace").strip().splitlines()[-5:]
            print(f"--- {log.name}\n" + "\n".join(tail), file=sys.stderr)
        status = 1
    if no_plan:
        tmp.cleanup()
        return 130 if interrupted else 1

    window_end = window_end if np.isfinite(window_end) else time.time()
    result = analyse(monitor, window_start, window_end)
    meta["window_s"] = max(window_end - window_start, 0.0)
    meta["node_exit_codes"] = exit_codes
    meta["interrupted"] = interrupted
    print_report(result, meta)
    if options.json:
        options.json.parent.mkdir(parents=True, exist_ok=True)
        options.json.write_text(json.dumps({**result, "meta": meta}, indent=2))
        print(f"json:      {options.json}")
    if result["counts"]["plans"] == 0:
        status = 1
    tmp.cleanup()
    return 130 if interrupted else status


if __name__ == "__main__":
    sys.exit(main())
