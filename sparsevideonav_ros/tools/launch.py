"""Start a launch file's graph as plain processes: `ros2 launch` for pip-only installs and CI.

    python -m sparsevideonav_ros.tools.launch bringup policy:=scripted camera:=synthetic

plans its processes with the same functions as launch/*.launch.py (launch_plan.plan_graph over the
stack description), so both start the same nodes with the same names, namespaces, parameter files,
parameter overrides and log levels (launch_ros hands the overrides over in a temporary parameter
file where this runner passes `-p name:=value`, and adds `-r __ns:=/` without a namespace). Ctrl-C / SIGTERM stops every node (the bridge last, so its final
stop reaches the robot after the controller has gone quiet). record:=true adds a rosbags-based
recorder (tools/record.py) where launch files start `ros2 bag record`; `replay bag:=...` plays the
bag with tools/play.py where replay.launch.py starts `ros2 bag play`, and ends when the bag does.
"""
from __future__ import annotations

import argparse
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Optional

from sparsevideonav_ros import launch_plan, stack


def node_command(process) -> list[str]:
    """A node's command line; the bag recorder / player (stack.RecordingSpec / PlaybackSpec) run their
    rosbags-based tools (tools/record.py, tools/play.py) in place of `ros2 bag record / play`."""
    if isinstance(process, stack.ProcessSpec):
        return [sys.executable, "-m", process.module] + process.ros_arguments()
    return [sys.executable, "-m", process.module] + process.runner_arguments()


# The recorder imports rosbags and the message definitions before it subscribes: seconds on a slow machine.
RECORDER_READY_TIMEOUT_S = 30.0


class GraphRunner:
    """Runs launch_plan.plan_graph's processes as children; logs go to ``log_dir/<node>.log`` when given."""

    # Stop order: sources and planners first, the robot bridge last, the bag recorder after everything
    # (it records the final stop).
    STOP_ORDER = (stack.PLAYER_NAME, "camera_node", "policy_node", "controller_node", "go2_bridge_node",
                  stack.RECORDER_NAME)

    def __init__(self, processes: list, env: Optional[dict[str, str]] = None,
                 log_dir: Optional[Path] = None) -> None:
        self.processes = processes
        self.env = env
        self.log_dir = Path(log_dir) if log_dir else None
        self.children: dict[str, subprocess.Popen] = {}
        self._logs = []

    def start(self) -> "GraphRunner":
        """Start every process; the bag recorder first, and the others only once it has subscribed to all its
        topics (RECORDER_READY_TIMEOUT_S, else RuntimeError), so a bag holds the run from its first message.
        The controller refuses motion until then too (controller_node wait_for_recorder, set by record:=true)."""
        if self.log_dir:
            self.log_dir.mkdir(parents=True, exist_ok=True)
        env = dict(os.environ if self.env is None else self.env)
        # Children import this very package, also from a source checkout that is not pip-installed.
        package_root = str(Path(stack.__file__).resolve().parent.parent)
        env["PYTHONPATH"] = os.pathsep.join([package_root] + ([env["PYTHONPATH"]] if env.get("PYTHONPATH") else []))
        env["PYTHONUNBUFFERED"] = "1"
        recorders = [p for p in self.processes if isinstance(p, stack.RecordingSpec)]
        for process in recorders + [p for p in self.processes if p not in recorders]:
            command = node_command(process)
            ready = None
            if process in recorders:
                ready = Path(tempfile.mkdtemp(prefix="svn-recorder-")) / "subscribed"
                command = command[:3] + ["--ready-file", str(ready)] + command[3:]
            self.children[process.node] = subprocess.Popen(command, env=env, **self._output(process.node))
            if ready is not None:
                self._wait_ready(process.node, ready)
        return self

    def _output(self, node: str) -> dict:
        if not self.log_dir:
            return {}
        output = open(self.log_dir / f"{node}.log", "w")
        self._logs.append(output)
        return {"stdout": output, "stderr": subprocess.STDOUT}

    def _wait_ready(self, node: str, ready: Path) -> None:
        deadline = time.monotonic() + RECORDER_READY_TIMEOUT_S
        child = self.children[node]
        while not ready.exists():
            if child.poll() is not None or time.monotonic() > deadline:
                why = (f"exited with {child.returncode}" if child.poll() is not None
                       else f"not subscribed after {RECORDER_READY_TIMEOUT_S:g} s")
                self.stop()
                where = f" (see {self.log_dir / f'{node}.log'})" if self.log_dir else ""
                raise RuntimeError(f"{node} {why}{where}: not starting a graph that would drive unrecorded")
            time.sleep(0.05)
        shutil.rmtree(ready.parent, ignore_errors=True)

    def exited(self) -> dict[str, int]:
        """Nodes that have exited, with their return codes."""
        return {name: child.returncode for name, child in self.children.items() if child.poll() is not None}

    def kill_node(self, name: str, sig: int = signal.SIGKILL) -> None:
        self.children[name].send_signal(sig)
        self.children[name].wait(timeout=10)

    def stop(self, timeout_s: float = 5.0) -> dict[str, int]:
        order = sorted(self.children, key=lambda n: self.STOP_ORDER.index(n) if n in self.STOP_ORDER else -1)
        for name in order:
            child = self.children[name]
            if child.poll() is None:
                child.send_signal(signal.SIGTERM)
                try:
                    child.wait(timeout=timeout_s)
                except subprocess.TimeoutExpired:
                    child.kill()
                    child.wait()
        for log in self._logs:
            log.close()
        return {name: child.returncode for name, child in self.children.items()}

    def __enter__(self) -> "GraphRunner":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()


def parse_launch_arguments(items: list[str]) -> dict[str, str]:
    arguments = {}
    for item in items:
        if ":=" not in item:
            raise SystemExit(f"launch arguments are name:=value, got {item!r}")
        key, value = item.split(":=", 1)
        arguments[key] = value
    return arguments


def check_params_file(arguments: dict[str, str]) -> None:
    """ValueError (one line: file, problem, line) unless params_file:= is a readable YAML mapping: the nodes
    would otherwise each die in rcl's parser with a traceback."""
    import yaml

    path = arguments.get("params_file", "").strip()
    if not path:
        return
    try:
        data = yaml.safe_load(Path(path).expanduser().read_text(encoding="utf-8"))
    except OSError as error:
        raise ValueError(f"params_file:={path}: {error.strerror or error}") from None
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
        raise ValueError(f"params_file:={path} is not valid YAML: {getattr(error, 'problem', None) or error}"
                         f"{where}") from None
    if data is not None and not isinstance(data, dict):
        raise ValueError(f"params_file:={path} must hold '<node>: ros__parameters: ...' blocks, not a "
                         f"{type(data).__name__}")


def main(argv: Optional[list[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("launch_file", choices=sorted(stack.LAUNCH_FILES),
                        help="which graph: bringup (all), robot (robot side), policy (GPU side), replay (a bag)")
    parser.add_argument("arguments", nargs="*", help="launch arguments name:=value")
    parser.add_argument("--duration", type=float, default=0.0, help="stop after this many seconds (0 = run until Ctrl-C)")
    parser.add_argument("--log-dir", type=Path, help="write each node's output to LOG_DIR/<node>.log")
    parser.add_argument("--show-args", action="store_true", help="list the launch arguments and exit")
    options = parser.parse_args(argv)
    if options.show_args:
        for argument in stack.launch_arguments_for(options.launch_file):
            print(f"{argument.name}:={argument.default!r}\n    {argument.description}")
        return 0
    from sparsevideonav_ros.bags import BagError

    arguments = parse_launch_arguments(options.arguments)
    try:  # unusable arguments (a missing or foreign bag, a bad params file...): one line, exit 2, nothing started
        check_params_file(arguments)
        processes = launch_plan.plan_graph(options.launch_file, arguments)
    except (ValueError, FileNotFoundError, BagError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    runner = GraphRunner(processes, log_dir=options.log_dir)
    stop_requested = []
    signal.signal(signal.SIGTERM, lambda *_: stop_requested.append(True))
    signal.signal(signal.SIGINT, lambda *_: stop_requested.append(True))
    try:
        runner.start()
    except RuntimeError as error:  # the recorder did not come up: nothing drives unrecorded
        print(f"error: {error}", file=sys.stderr)
        return 2
    deadline = time.monotonic() + options.duration if options.duration > 0 else float("inf")
    code = 0
    try:
        while not stop_requested and time.monotonic() < deadline:
            exited = runner.exited()
            if exited == {stack.PLAYER_NAME: 0}:
                print("replay finished: the bag has been played; stopping the graph", file=sys.stderr)
                break
            if exited:
                refused = sorted(name for name, rc in exited.items() if rc == 2)
                if refused:  # exit 2 = the node refused its configuration (its one FATAL line says why)
                    print(f"{', '.join(refused)} refused its configuration (exit 2, see the FATAL line"
                          f"{' in ' + str(options.log_dir) if options.log_dir else ' above'}); stopping the graph",
                          file=sys.stderr)
                    code = 2
                else:
                    print(f"node(s) exited: {exited}; stopping the graph", file=sys.stderr)
                    code = 1
                break
            time.sleep(0.1)
    finally:
        runner.stop()
    return code


if __name__ == "__main__":
    raise SystemExit(main())
