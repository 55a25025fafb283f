"""What the tests of the stack description share (test_launch_files, test_params, test_interfaces,
test_packaging, test_docs): paths, YAML access, the config classes, and a site params file."""
from __future__ import annotations

import dataclasses
import os
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

# Loopback only, own domain; test/conftest.py normally sets these before any import of rclpy.
os.environ.setdefault("ROS_DOMAIN_ID", str(1 + os.getpid() % 100))
os.environ.setdefault("ROS_AUTOMATIC_DISCOVERY_RANGE", "LOCALHOST")
os.environ.setdefault("ROS_LOCALHOST_ONLY", "1")

from sparsevideonav_ros import stack  # noqa: E402
from sparsevideonav_ros.policies import registry  # noqa: E402

PARAMS_DIR = REPO / "params"
LAUNCH_DIR = REPO / "launch"
NODES_DIR = REPO / "sparsevideonav_ros" / "nodes"



def fields(cls: type) -> dict[str, dataclasses.Field]:
    return {f.name: f for f in dataclasses.fields(cls)}


def default_of(f: dataclasses.Field) -> Any:
    return f.default if f.default is not dataclasses.MISSING else f.default_factory()


def load_yaml(path: Path) -> dict:
    with open(path, encoding="utf-8") as stream:
        return yaml.safe_load(stream)


def ros_parameters(node_name: str) -> dict:
    data = load_yaml(PARAMS_DIR / stack.NODES[node_name].params_file)
    return data[f"/**/{node_name}"]["ros__parameters"]


def split_policy_blocks(values: dict) -> tuple[dict, dict]:
    """policy_node's ros__parameters -> (node parameters, {policy name: policy block})."""
    node_values = {k: v for k, v in values.items() if not isinstance(v, dict)}
    blocks = {k: v for k, v in values.items() if isinstance(v, dict)}
    return node_values, blocks


def all_config_classes() -> list[type]:
    return [spec.config_class for spec in stack.NODES.values()] + [
        registry.config_class(name) for name in registry.known_policies()]


@pytest.fixture(scope="module")
def extra_params_file(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("launch") / "site.yaml"
    path.write_text("/**/controller_node:\n  ros__parameters:\n    max_vx: 0.42\n"
                    "/**/camera_node:\n  ros__parameters:\n    jpeg_quality: 60\n"
                    "/**/policy_node:\n  ros__parameters:\n    history_rate_hz: 2.0\n", encoding="utf-8")
    return path
