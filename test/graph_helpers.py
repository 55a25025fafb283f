"""Starting (parts of) the real graph as processes for multi-process tests."""
from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Optional

import numpy as np
import yaml

from sparsevideonav_ros import stack
from sparsevideonav_ros.tools.launch import GraphRunner

STRAIGHT_ROUTE = [10.0, 0.0, 0.0]  # long enough that the robot keeps moving during a test


def write_params(path: Path, blocks: dict[str, dict]) -> str:
    """A params_file override: {node: {param: value}} -> YAML with /**/<node> blocks."""
    path.write_text(yaml.safe_dump({f"/**/{node}": {"ros__parameters": values} for node, values in blocks.items()}))
    return str(path)


def start_graph(tmp_path: Path, nodes: Optional[tuple[str, ...]] = None, arguments: Optional[dict] = None,
                overrides: Optional[dict[str, dict]] = None, modules: Optional[dict[str, str]] = None) -> GraphRunner:
    """bringup's processes (or ``nodes`` of them) over loopback; ``modules``: {node: module in test/} runs a
    test entry point in place of a node's own module (the test folder is put on the children's path)."""
    arguments = dict(arguments or {})
    if overrides:
        arguments["params_file"] = write_params(tmp_path / "overrides.yaml", overrides)
    processes = stack.plan_processes("bringup", arguments)
    if nodes is not None:
        processes = [p for p in processes if p.node in nodes]
    env = stack.loopback_environment(int(os.environ["ROS_DOMAIN_ID"]))
    for process in processes:
        if modules and process.node in modules:
            process.module = modules[process.node]
    if modules:
        env["PYTHONPATH"] = os.pathsep.join([str(Path(__file__).resolve().parent), env.get("PYTHONPATH", "")])
    return GraphRunner(processes, env=env, log_dir=tmp_path / "logs").start()


def logs(tmp_path: Path) -> str:
    return "\n".join(p.read_text() for p in sorted((tmp_path / "logs").glob("*.log")))


def moving(odom_entry, threshold=0.05) -> bool:
    return float(np.linalg.norm(odom_entry[3])) > threshold


def stopped_since(record, after_wall: float) -> Optional[float]:
    """Odometry stamp from which the robot stayed still (after ``after_wall``), or None if it moves at the end."""
    entries = [e for e in record.odom if e[0] >= after_wall]
    if not entries or moving(entries[-1]):
        return None
    since = entries[-1][1]
    for entry in reversed(entries):
        if moving(entry):
            break
        since = entry[1]
    return since


def wait_until(predicate, timeout_s: float, node) -> bool:
    from sparsevideonav_ros.tools.monitor import spin_for
    return spin_for(node, timeout_s, until=predicate)


def now() -> float:
    return time.time()
