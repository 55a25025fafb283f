"""params/*.yaml, the config dataclasses and real rclpy nodes.

* params/*.yaml and the config dataclasses hold the same keys, defaults and descriptions;
* real rclpy: a node declares exactly its config's parameters and the YAML values reach it, also
  in a namespace and from the runner's command line (stack.ProcessSpec.ros_arguments);
* invalid configs raise ConfigError naming the parameter.
"""
from __future__ import annotations

import dataclasses
import math
import re
from pathlib import Path
from typing import Any, Optional

import pytest
import yaml

from stack_helpers import (PARAMS_DIR, all_config_classes, default_of, extra_params_file,  # noqa: F401 - a fixture
                           fields, load_yaml, ros_parameters, split_policy_blocks)
from sparsevideonav_ros import configs, stack
from sparsevideonav_ros.configs import ConfigError
from sparsevideonav_ros.policies import registry
from sparsevideonav_ros.tools import docs


# -- params/*.yaml <-> config dataclasses ---------------------------------------------------------

def test_every_yaml_block_belongs_to_a_node_and_every_node_has_its_file():
    files = {p.name: p for p in PARAMS_DIR.glob("*.yaml")}
    assert set(files) == {spec.params_file for spec in stack.NODES.values()}
    assert len({spec.params_file for spec in stack.NODES.values()}) == len(stack.NODES)
    for name, path in files.items():
        data = load_yaml(path)
        assert isinstance(data, dict) and len(data) == 1, f"{name}: one node block per file"
        (key,) = data
        assert key.startswith("/**/"), f"{name}: {key!r} must be /**/<node> (any namespace)"
        node = key[len("/**/"):]
        assert node in stack.NODES, f"{name}: {node!r} is not in stack.NODES"
        assert stack.NODES[node].params_file == name
        assert set(data[key]) == {"ros__parameters"}, f"{name}: only ros__parameters under {key}"


def assert_same_keys_and_defaults(where: str, values: dict, config_class: type) -> None:
    known = fields(config_class)
    assert set(values) - set(known) == set(), f"{where}: keys that are no {config_class.__name__} field"
    assert set(known) - set(values) == set(), f"{where}: {config_class.__name__} fields missing from the YAML"
    for name, f in known.items():
        default, value = default_of(f), values[name]
        assert type(value) is type(default), (
            f"{where}.{name}: YAML {value!r} ({type(value).__name__}) vs default {default!r} ({type(default).__name__})"
            " - ROS refuses a parameter whose type differs from its declared default")
        if isinstance(default, list):
            assert [type(v) for v in value] == [type(v) for v in default], f"{where}.{name}: element types"
        assert value == default, f"{where}.{name}: YAML {value!r} != dataclass default {default!r}"


@pytest.mark.parametrize("node_name", sorted(stack.NODES))
def test_yaml_keys_and_defaults_equal_the_config_fields(node_name):
    values = ros_parameters(node_name)
    config_class = stack.NODES[node_name].config_class
    if node_name == "policy_node":
        values, blocks = split_policy_blocks(values)
        assert set(blocks) == set(registry.known_policies()), "one block per registered policy"
        for policy, block in blocks.items():
            assert_same_keys_and_defaults(f"policy.yaml {policy}", block, registry.config_class(policy))
        assert values["policy"] in registry.known_policies()
    assert_same_keys_and_defaults(stack.NODES[node_name].params_file, values, config_class)
    config_class()  # the defaults validate


@pytest.mark.parametrize("config_class", all_config_classes(), ids=lambda c: c.__name__)
def test_every_field_has_a_description_and_a_default(config_class):
    for f in dataclasses.fields(config_class):
        assert f.metadata.get("description", "").strip(), f"{config_class.__name__}.{f.name} has no description"
        default = default_of(f)
        assert isinstance(default, (bool, int, float, str, list)), f"{f.name}: not a ROS parameter type"
        for choice in f.metadata.get("choices", ()):
            assert type(choice) is type(default)
        if f.metadata.get("choices"):
            assert default in f.metadata["choices"], f.name


@pytest.mark.parametrize("node_name", sorted(stack.NODES))
def test_yaml_comments_repeat_the_field_descriptions(node_name):
    """Each key in params/*.yaml sits under a comment with its description (what users read)."""
    lines = (PARAMS_DIR / stack.NODES[node_name].params_file).read_text(encoding="utf-8").splitlines()
    node_class = stack.NODES[node_name].config_class
    current = node_class  # the class whose fields the following keys are
    checked = []
    for index, line in enumerate(lines):
        match = re.match(r"^\s+(\w+):(.*)$", line)
        if not match or match.group(1) == "ros__parameters":
            continue
        key, rest = match.group(1), match.group(2).strip()
        if not rest and key in registry.known_policies():  # a policy block opens
            current = registry.config_class(key)
            continue
        if key not in fields(current):  # back at node level after a policy block
            current = node_class
        assert key in fields(current), f"line {index + 1}: {line!r}"
        description = fields(current)[key].metadata["description"]
        assert lines[index - 1].strip() == f"# {description}", f"line {index + 1}: comment above {key!r}"
        checked.append(key)
    expected = len(fields(node_class))
    if node_name == "policy_node":
        expected += sum(len(fields(registry.config_class(p))) for p in registry.known_policies())
    assert len(checked) == expected


# -- real rclpy: a node declares exactly its config's parameters, and the YAML reaches it --------

@pytest.fixture(scope="module")
def rclpy_ready(request):
    """rclpy's default context: conftest's session fixture when there is one, else our own."""
    import rclpy
    try:
        request.getfixturevalue("ros_context")
        yield rclpy
        return
    except pytest.FixtureLookupError:
        pass
    rclpy.init(args=[])
    try:
        yield rclpy
    finally:
        if rclpy.ok():
            rclpy.shutdown()


@pytest.fixture(scope="module")
def builtin_parameters(rclpy_ready) -> set[str]:
    """Parameters every rclpy node has (use_sim_time; start_type_description_service on Jazzy+)."""
    from rclpy.node import Node
    node = Node("builtin_parameter_probe")
    try:
        return set(node._parameters)
    finally:
        node.destroy_node()


def declare_node_parameters(node) -> dict[str, Any]:
    """What the real node's __init__ declares: its config, and for policy_node the policy's."""
    from sparsevideonav_ros.nodes.common import declare_config
    name = node.get_name()
    config = declare_config(node, stack.NODES[name].config_class)
    result = {"config": config}
    if name == "policy_node":
        result["policy_config"] = declare_config(node, registry.config_class(config.policy),
                                                 prefix=f"{config.policy}.")
    return result


def expected_parameter_names(node_name: str, policy: str = "scripted") -> set[str]:
    names = set(fields(stack.NODES[node_name].config_class))
    if node_name == "policy_node":
        names |= {f"{policy}.{f}" for f in fields(registry.config_class(policy))}
    return names


def make_node(name: str, params_file: Path, namespace: Optional[str] = None, node_name: Optional[str] = None):
    from rclpy.node import Node
    return Node(node_name or name, namespace=namespace, cli_args=["--ros-args", "--params-file", str(params_file)])


@pytest.mark.parametrize("node_name", sorted(stack.NODES))
def test_node_declares_exactly_its_config_parameters(rclpy_ready, builtin_parameters, node_name):
    node = make_node(node_name, PARAMS_DIR / stack.NODES[node_name].params_file)
    try:
        declared = declare_node_parameters(node)
        assert set(node._parameters) - builtin_parameters == expected_parameter_names(node_name)
        assert declared["config"] == stack.NODES[node_name].config_class()
        for f in dataclasses.fields(stack.NODES[node_name].config_class):
            described = node.describe_parameter(f.name)
            assert described.description == docs.field_description(f)
            assert node.get_parameter(f.name).value == default_of(f)
        if node_name == "policy_node":
            for f in dataclasses.fields(registry.config_class("scripted")):
                assert node.get_parameter(f"scripted.{f.name}").value == default_of(f)
    finally:
        node.destroy_node()


CHANGED_VALUES = {
    "camera_node": {"source": "image_folder", "path": "/data/frames", "loop": False, "rate_hz": 7.5, "width": 320, "height": 240,
                    "jpeg_quality": 50, "frame_id": "front_camera"},
    "policy_node": {"image_input": "raw", "history_rate_hz": 2.0, "expected_width": 320,
                    "instruction": "go to the kitchen", "max_pending_frames": 8,
                    "scripted": {"horizon": 3, "waypoints": [2.0, 0.0, 0.0], "require_instruction": True}},
    "controller_node": {"max_vx": 0.7, "min_vx": -0.1, "allow_lateral": False, "odom_frame": "map", "k_angular": 2.0},
    "go2_bridge_node": {"rate_hz": 25.0, "sim_initial_yaw": 1.5, "base_frame": "body", "cmd_timeout_s": 0.25},
}


def write_changed_yaml(node_name: str, directory: Path) -> Path:
    data = load_yaml(PARAMS_DIR / stack.NODES[node_name].params_file)
    block = data[f"/**/{node_name}"]["ros__parameters"]
    for key, value in CHANGED_VALUES[node_name].items():
        if isinstance(value, dict):
            block[key].update(value)
        else:
            block[key] = value
    path = directory / stack.NODES[node_name].params_file
    path.write_text(yaml.safe_dump(data, sort_keys=False), encoding="utf-8")
    return path


def assert_changed_values(node_name: str, declared: dict) -> None:
    for key, value in CHANGED_VALUES[node_name].items():
        if isinstance(value, dict):
            for sub_key, sub_value in value.items():
                assert getattr(declared["policy_config"], sub_key) == sub_value, f"{key}.{sub_key}"
        else:
            assert getattr(declared["config"], key) == value, key


def test_changed_values_cover_every_parameter_type():
    for node_name, changed in CHANGED_VALUES.items():
        defaults = stack.NODES[node_name].config_class()
        for key, value in changed.items():
            if not isinstance(value, dict):
                assert getattr(defaults, key) != value, (node_name, key)
    types_seen = {type(v) for changed in CHANGED_VALUES.values() for v in changed.values() if not isinstance(v, dict)}
    types_seen |= {type(v) for v in CHANGED_VALUES["policy_node"]["scripted"].values()}
    assert types_seen == {str, bool, int, float, list}


@pytest.mark.parametrize("namespace", [None, "/robot7", "/fleet/go2_b"])
@pytest.mark.parametrize("node_name", sorted(stack.NODES))
def test_yaml_values_reach_the_node_in_any_namespace(rclpy_ready, tmp_path, node_name, namespace):
    path = write_changed_yaml(node_name, tmp_path)
    node = make_node(node_name, path, namespace=namespace)
    try:
        expected_fqn = (namespace or "") + "/" + node_name
        assert node.get_fully_qualified_name() == expected_fqn
        assert_changed_values(node_name, declare_node_parameters(node))
    finally:
        node.destroy_node()


def test_yaml_block_is_per_node_name(rclpy_ready, tmp_path):
    """The /**/controller_node block does not configure a node of another name."""
    from rclpy.node import Node
    from sparsevideonav_ros.nodes.common import declare_config
    path = write_changed_yaml("controller_node", tmp_path)
    node = Node("other_controller", cli_args=["--ros-args", "--params-file", str(path)])
    try:
        assert declare_config(node, configs.ControllerNodeConfig) == configs.ControllerNodeConfig()
    finally:
        node.destroy_node()


@pytest.mark.parametrize("node_name,key,value", [
    ("controller_node", "rate_hz", "fast"),   # wrong type
    ("controller_node", "max_vx", -1.0),      # fails validation
    ("camera_node", "jpeg_quality", 500),
    ("go2_bridge_node", "backend", "spot"),
])
def test_bad_yaml_values_raise_config_error_naming_the_parameter(rclpy_ready, tmp_path, node_name, key, value):
    data = load_yaml(PARAMS_DIR / stack.NODES[node_name].params_file)
    data[f"/**/{node_name}"]["ros__parameters"][key] = value
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump(data), encoding="utf-8")
    node = make_node(node_name, path)
    try:
        with pytest.raises(ConfigError, match=key):
            declare_node_parameters(node)
    finally:
        node.destroy_node()


def node_from_command_line(ros_arguments: list[str]):
    """A node in its own rclpy context initialised with exactly these command-line arguments."""
    import rclpy
    from rclpy.context import Context
    from rclpy.node import Node
    context = Context()
    rclpy.init(args=["node_under_test"] + ros_arguments, context=context)
    node = Node("placeholder_name", context=context)  # renamed by -r __node:=
    return context, node


def close_command_line_node(context, node) -> None:
    import rclpy
    try:
        node.destroy_node()
    finally:
        rclpy.shutdown(context=context)


def test_runner_command_line_configures_each_node(rclpy_ready, builtin_parameters, extra_params_file):
    arguments = {"namespace": "robot3", "use_sim_time": "true", "params_file": str(extra_params_file),
                 "policy": "scripted", "instruction": "walk to the door", "camera": "image_folder",
                 "camera_path": "/data/frames"}
    for process in stack.plan_processes("bringup", arguments):
        context, node = node_from_command_line(process.ros_arguments())
        try:
            assert node.get_fully_qualified_name() == f"/robot3/{process.node}"
            declared = declare_node_parameters(node)
            assert set(node._parameters) - builtin_parameters == expected_parameter_names(process.node)
            assert node.get_parameter("use_sim_time").value is True
            config = declared["config"]
            if process.node == "controller_node":
                assert config.max_vx == 0.42  # from params_file:=, applied after the package YAML
            if process.node == "camera_node":
                assert (config.jpeg_quality, config.source, config.path) == (60, "image_folder", "/data/frames")
            if process.node == "policy_node":
                assert (config.history_rate_hz, config.instruction, config.policy) == (2.0, "walk to the door",
                                                                                      "scripted")
        finally:
            close_command_line_node(context, node)


def test_string_launch_arguments_stay_strings(rclpy_ready):
    for instruction in ("yes", "42", "turn left: then stop"):
        (process,) = stack.plan_processes("policy", {"instruction": instruction})
        context, node = node_from_command_line(process.ros_arguments())
        try:
            assert declare_node_parameters(node)["config"].instruction == instruction
        finally:
            close_command_line_node(context, node)


# -- invalid configs raise ConfigError naming the parameter --------------------------------------

INVALID_CONFIGS = [
    (configs.CameraNodeConfig, {"source": "webcam"}, "source"),
    (configs.CameraNodeConfig, {"source": "video"}, "path"),
    (configs.CameraNodeConfig, {"jpeg_quality": 0}, "jpeg_quality"),
    (configs.CameraNodeConfig, {"width": -1}, "width"),
    (configs.CameraNodeConfig, {"width": 320}, "height"),  # both or neither
    (configs.CameraNodeConfig, {"source": "osmo", "width": 640, "height": 480}, "1280x720"),
    (configs.CameraNodeConfig, {"fourcc": "MJPEG"}, "fourcc"),
    (configs.CameraNodeConfig, {"depth": True}, "depth"),
    (configs.CameraNodeConfig, {"timeout_s": 0.0}, "timeout_s"),
    (configs.CameraNodeConfig, {"rate_hz": -1.0}, "rate_hz"),
    (configs.CameraNodeConfig, {"horizontal_fov_deg": math.nan}, "horizontal_fov_deg"),
    (configs.CameraNodeConfig, {"publish_raw": False, "publish_compressed": False}, "publish_raw"),
    (configs.PolicyNodeConfig, {"image_input": "jpeg"}, "image_input"),
    (configs.PolicyNodeConfig, {"history_rate_hz": 0.0}, "history_rate_hz"),
    (configs.PolicyNodeConfig, {"policy": "  "}, "policy"),
    (configs.PolicyNodeConfig, {"expected_width": -1}, "expected_width"),
    (configs.PolicyNodeConfig, {"max_pending_frames": 0}, "max_pending_frames"),
    (configs.PolicyNodeConfig, {"status_rate_hz": math.inf}, "status_rate_hz"),
    (configs.ControllerNodeConfig, {"rate_hz": 0.0}, "rate_hz"),
    (configs.ControllerNodeConfig, {"min_vx": 0.1}, "min_vx"),
    (configs.ControllerNodeConfig, {"min_vx": math.nan}, "min_vx"),
    (configs.ControllerNodeConfig, {"k_linear": -1.0}, "k_linear"),
    (configs.ControllerNodeConfig, {"max_vx": math.nan}, "max_vx"),
    (configs.ControllerNodeConfig, {"lookahead_m": math.inf}, "lookahead_m"),
    (configs.ControllerNodeConfig, {"odom_timeout_s": 0.0}, "odom_timeout_s"),
    (configs.BridgeNodeConfig, {"backend": "spot"}, "backend"),
    (configs.BridgeNodeConfig, {"go2_domain_id": 233}, "go2_domain_id"),
    (configs.BridgeNodeConfig, {"go2_network_interface": "eth0<x/>"}, "go2_network_interface"),
    (configs.BridgeNodeConfig, {"go2_timeout_s": 0.0}, "go2_timeout_s"),
    (configs.BridgeNodeConfig, {"cmd_timeout_s": 0.0}, "cmd_timeout_s"),
    (configs.BridgeNodeConfig, {"min_vx": 0.5}, "min_vx"),
    (configs.BridgeNodeConfig, {"sim_response_time_s": -0.1}, "sim_response_time_s"),
    (configs.BridgeNodeConfig, {"max_wz": -1.0}, "max_wz"),
]


@pytest.mark.parametrize("config_class,values,parameter", INVALID_CONFIGS,
                         ids=[f"{c.__name__}-{'-'.join(v)}" for c, v, _ in INVALID_CONFIGS])
def test_invalid_config_raises_config_error_naming_the_parameter(config_class, values, parameter):
    with pytest.raises(ConfigError, match=re.escape(parameter)):
        config_class(**values)
    with pytest.raises(ConfigError, match=re.escape(parameter)):
        configs.build_config(config_class, values)


@pytest.mark.parametrize("values,parameter", [
    ({"waypoints": [1.0, 2.0]}, "waypoints"),
    ({"waypoints": []}, "waypoints"),
    ({"waypoints": [0.0, 0.0, math.nan]}, "waypoints"),
    ({"horizon": 0}, "horizon"),
    ({"position_tolerance_m": 0.0}, "position_tolerance_m"),
    ({"yaw_tolerance_rad": -0.1}, "yaw_tolerance_rad"),
])
def test_invalid_scripted_config_raises_config_error(values, parameter):
    with pytest.raises(ConfigError, match=re.escape(parameter)):
        registry.make_policy("scripted", values)


@pytest.mark.parametrize("config_class", all_config_classes(), ids=lambda c: c.__name__)
def test_unknown_parameter_is_rejected_with_the_known_ones(config_class):
    with pytest.raises(ConfigError, match="no_such_parameter") as error:
        configs.build_config(config_class, {"no_such_parameter": 1})
    assert dataclasses.fields(config_class)[0].name in str(error.value)


def test_unknown_policy_is_a_config_error():
    with pytest.raises(ConfigError, match="scripted"):  # lists the known ones
        registry.policy_class("no_such_policy")
