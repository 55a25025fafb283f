"""policy_node loads its weights in the worker, after the node is up (real rclpy process, loopback DDS).

A load failure (here a checkpoint folder that does not exist) must still end the node with exit code 2
and exactly one FATAL line naming the problem, as a refused configuration does; until then the node
is up and says 'loading' (checked in test_policy_runner for the runner; here only the exit).
"""
from __future__ import annotations

import os
import re
import subprocess

from sparsevideonav_ros import stack
from sparsevideonav_ros.tools.launch import node_command

FATAL_LINE = re.compile(r"^\[FATAL\] \[[0-9.]+\] \[[\w/]+\]: refusing to start: (.*)$", re.MULTILINE)


def run_policy_node(parameters: dict, timeout_s: float = 180.0) -> subprocess.CompletedProcess:
    (process,) = [p for p in stack.plan_processes("policy", {}) if p.node == "policy_node"]
    process.parameters.update(parameters)
    env = stack.loopback_environment(int(os.environ["ROS_DOMAIN_ID"]))
    env["PYTHONPATH"] = str(stack.share_dir())
    return subprocess.run(node_command(process), env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                          text=True, timeout=timeout_s)


def test_missing_checkpoint_fails_in_the_worker_with_exit_2_and_one_fatal_line(tmp_path):
    missing = tmp_path / "no-such-model"
    result = run_policy_node({"policy": "sparsevideonav", "sparsevideonav.checkpoint": str(missing)})
    assert result.returncode == 2, result.stdout
    reasons = FATAL_LINE.findall(result.stdout)
    assert len(reasons) == 1 and result.stdout.count("refusing to start") == 1, result.stdout
    assert "failed to load" in reasons[0] and str(missing) in reasons[0], reasons[0]
    assert "loading" in result.stdout  # the node came up first and said so, then the worker failed


def test_history_rate_contradicting_the_policy_is_refused_at_start():
    result = run_policy_node({"policy": "sparsevideonav", "history_rate_hz": 2.0})
    assert result.returncode == 2, result.stdout
    (reason,) = FATAL_LINE.findall(result.stdout)
    assert "history_rate_hz 2 contradicts policy 'sparsevideonav'" in reason and "4 FPS" in reason
