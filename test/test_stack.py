"""The graph description (stack.py) against everything that restates it.

* launch/*.launch.py, run against the minimal fake `launch` / `launch_ros` of test/fake_launch.py
  for a set of launch-argument sets, plan the same processes as the pip-only runner
  (tools/launch.py): same node, namespace, parameter files, overrides and log level; they refuse
  what the runner refuses, and every process they start brings the launch down when it fails;
* params/*.yaml and the config dataclasses hold the same keys, defaults and descriptions;
* real rclpy: a node declares exactly its config's parameters and the YAML values reach it, also
  in a namespace and from the runner's exact command line;
* setup.py installs one console script per node plus launch/ and params/;
* every topic and service the nodes create is in stack.TOPICS / stack.SERVICES with its type;
* invalid configs raise ConfigError naming the parameter;
* the README's generated tables (tools/docs.py) are up to date.
"""
from __future__ import annotations

import ast
import dataclasses
import datetime
import importlib
import importlib.util
import math
import os
import re
import runpy
import sys
from pathlib import Path
from typing import Any, Optional

import pytest
import yaml

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

# Loopback only, own domain; test/conftest.py normally sets these before any import of rclpy.
os.environ.setdefault("ROS_DOMAIN_ID", str(1 + os.getpid() % 100))
os.environ.setdefault("ROS_AUTOMATIC_DISCOVERY_RANGE", "LOCALHOST")
os.environ.setdefault("ROS_LOCALHOST_ONLY", "1")

from fake_launch import (install_fake_launch, load_launch_file, process_exit, ros2_bag_installation,  # noqa: E402
                         run_launch)
from sparsevideonav_ros import configs, stack  # noqa: E402
from sparsevideonav_ros.configs import ConfigError  # noqa: E402
from sparsevideonav_ros.policies import registry  # noqa: E402
from sparsevideonav_ros.tools import docs  # noqa: E402
from sparsevideonav_ros.tools import launch as runner  # noqa: E402

PARAMS_DIR = REPO / "params"
LAUNCH_DIR = REPO / "launch"
NODES_DIR = REPO / "sparsevideonav_ros" / "nodes"

# Global topics a node may use without a stack.TOPICS entry (absolute names, ROS conventions).
EXTERNAL_TOPICS = {"tf": "tf2_msgs/msg/TFMessage"}


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


# =============================================================================================
# Launch files and the runner start the same processes
# =============================================================================================

@pytest.fixture
def fake_launch(monkeypatch, tmp_path_factory):
    """The fake launch modules, on a ROS install that has `ros2 bag` with the mcap plugin (PATH and
    AMENT_PREFIX_PATH of this test only)."""
    for key, value in ros2_bag_installation(tmp_path_factory.mktemp("ros")).items():
        monkeypatch.setenv(key, value)
    return install_fake_launch(monkeypatch)


@pytest.fixture(scope="module")
def extra_params_file(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("launch") / "site.yaml"
    path.write_text("/**/controller_node:\n  ros__parameters:\n    max_vx: 0.42\n"
                    "/**/camera_node:\n  ros__parameters:\n    jpeg_quality: 60\n"
                    "/**/policy_node:\n  ros__parameters:\n    history_rate_hz: 2.0\n", encoding="utf-8")
    return path


def argument_sets(launch_name: str, extra_params: Path, bag: Optional[Path] = None) -> list[dict[str, str]]:
    candidates = [
        {},
        {"policy": "scripted", "instruction": "walk forward and stop by the wooden door"},
        {"camera": "video", "camera_path": "/data/clip.mp4"},
        {"camera": "osmo", "camera_path": "/dev/video2", "robot": "go2"},
        {"camera": "d455", "camera_path": "215122254321", "robot": "unitree"},
        {"namespace": "robot1/"},
        {"namespace": "/fleet/go2_a", "use_sim_time": "true", "log_level": "debug"},
        {"use_sim_time": "True"},
        {"params_file": str(extra_params), "robot": "sim", "camera": "synthetic"},
    ]
    known = {a.name for a in stack.launch_arguments_for(launch_name)}
    if "bag" in known:  # a replay needs its bag
        candidates = [dict(args, bag=str(bag)) for args in candidates]
    return [{k: v for k, v in args.items() if k in known} for args in candidates]


def parse_node_command(command: list[str], module: str) -> dict:
    """The runner's command line -> node name, namespace, params files, -p overrides, log level."""
    assert command[:3] == [sys.executable, "-m", module], command
    rest = command[3:]
    assert rest[0] == "--ros-args", command
    parsed: dict[str, Any] = {"remap": {}, "params_files": [], "overrides": {}, "log_level": None}
    i = 1
    while i < len(rest):
        flag, value = rest[i], rest[i + 1]
        i += 2
        if flag == "-r":
            key, _, target = value.partition(":=")
            parsed["remap"][key] = target
        elif flag == "--params-file":
            parsed["params_files"].append(value)
        elif flag == "-p":
            key, _, text = value.partition(":=")
            parsed["overrides"][key] = text
        elif flag == "--log-level":
            parsed["log_level"] = value
        else:
            raise AssertionError(f"unexpected runner argument {flag} {value}")
    return parsed


def launch_value(value: Any) -> Any:
    """A launch_ros parameter dict value: plain, or wrapped in ParameterValue(value, value_type=...)."""
    return value.value if hasattr(value, "value_type") else value


def command_value(text: str) -> Any:
    """What ROS makes of `-p name:=text`: the text parsed as YAML."""
    return yaml.safe_load(text)


@pytest.mark.parametrize("launch_name", sorted(stack.LAUNCH_FILES))
def test_launch_file_declares_the_stack_arguments(fake_launch, launch_name):
    description = load_launch_file(launch_name)
    declared = [e for e in description.entities if isinstance(e, fake_launch.DeclareLaunchArgument)]
    expected = stack.launch_arguments_for(launch_name)
    assert [d.name for d in declared] == [a.name for a in expected]
    for argument, declaration in zip(expected, declared):
        assert declaration.description and declaration.description.strip(), argument.name
        assert declaration.description == argument.description
        assert declaration.default_value == argument.default, argument.name
    assert sum(isinstance(e, fake_launch.OpaqueFunction) for e in description.entities) == 1


@pytest.mark.parametrize("launch_name", sorted(stack.LAUNCH_FILES))
def test_launch_files_and_runner_start_the_same_processes(fake_launch, launch_name, extra_params_file, small_bag):
    for arguments in argument_sets(launch_name, extra_params_file, small_bag):
        description = load_launch_file(launch_name)
        nodes = run_launch(fake_launch, description, arguments)
        processes = stack.plan_processes(launch_name, arguments)
        assert [p.node for p in processes] == list(stack.LAUNCH_FILES[launch_name]), arguments
        assert len(nodes) == len(processes), arguments
        for node, process in zip(nodes, processes):
            kwargs = node.kwargs
            spec = stack.NODES[process.node]
            # launch_ros side
            assert kwargs["package"] == stack.PACKAGE
            assert kwargs["executable"] == process.executable == spec.executable
            assert kwargs["name"] == process.node
            assert (kwargs["namespace"] or "") == process.namespace
            files = [p for p in kwargs["parameters"] if not isinstance(p, dict)]
            dicts = [p for p in kwargs["parameters"] if isinstance(p, dict)]
            assert [str(f) for f in files] == process.params_files
            assert len(dicts) <= 1
            overrides = {k: launch_value(v) for k, v in (dicts[0] if dicts else {}).items()}
            assert overrides == process.parameters
            arguments_list = list(kwargs["arguments"] or []) + list(kwargs["ros_arguments"] or [])
            assert "--log-level" in arguments_list
            assert arguments_list[arguments_list.index("--log-level") + 1] == process.log_level
            assert not kwargs["remappings"]

            # what the arguments mean, independently of both
            expected_ns = "/" + arguments["namespace"].strip("/") if arguments.get("namespace", "").strip("/") else ""
            assert process.namespace == expected_ns
            assert Path(process.params_files[0]) == REPO / "params" / spec.params_file
            assert Path(process.params_files[0]).is_file()
            if arguments.get("params_file"):
                assert process.params_files[1:] == [str(Path(arguments["params_file"]).resolve())]
            else:
                assert process.params_files[1:] == []
            wanted = {}
            # a replay runs on the bag's clock, from the recorded JPEG frames, into the sim robot only
            if arguments.get("use_sim_time", "true" if launch_name == "replay" else "false").lower() == "true":
                wanted["use_sim_time"] = True
            for argument in stack.launch_arguments_for(launch_name):
                for target, parameter in argument.sets:
                    if target == process.node and arguments.get(argument.name):
                        wanted[parameter] = arguments[argument.name]
            if launch_name == "replay":
                wanted.update({"go2_bridge_node": {"backend": "sim"},
                               "policy_node": {"image_input": "compressed"}}.get(process.node, {}))
                if process.node == "policy_node" and "replay_start" not in arguments and not expected_ns:
                    # aligned: the grid the bag's only plan frame lies on (tick 2 of it, within its window);
                    # in another namespace the bag has no plans on the replayed topics: no anchor
                    anchor = process.parameters.get("history_grid_anchor_s")
                    plan = (FIRST_PLAN_FRAME_NS - 3_000_000) / 1e9
                    assert isinstance(anchor, float) and plan - 0.6875 - 1e-6 < anchor <= plan - 0.4375 + 1e-6
                    wanted["history_grid_anchor_s"] = anchor
            assert process.parameters == wanted, (arguments, process.node)
            assert process.log_level == arguments.get("log_level", "info")

            # runner side: the same node as a command line
            parsed = parse_node_command(runner.node_command(process), spec.module)
            assert parsed["remap"].get("__node") == kwargs["name"]
            assert parsed["remap"].get("__ns", "") == (kwargs["namespace"] or "")
            assert set(parsed["remap"]) <= {"__node", "__ns"}
            assert parsed["params_files"] == [str(f) for f in files]
            assert {k: command_value(v) for k, v in parsed["overrides"].items()} == overrides
            assert parsed["log_level"] == process.log_level


# -- record:=true and replay: `ros2 bag record / play` in launch files, rosbags tools in the runner ---

BAG_START_NS = 1_700_000_000_000_000_000
FIRST_PLAN_FRAME_NS = BAG_START_NS + 1_234_567_891  # the third frame: the first one a plan was made from


@pytest.fixture(scope="module")
def small_bag(tmp_path_factory) -> Path:
    """A real mcap bag: four frames, the first plan made from the third (receive times a few ms later)."""
    from nav_msgs.msg import Path as PathMsg
    from rclpy.serialization import serialize_message
    from sensor_msgs.msg import CompressedImage

    from sparsevideonav_ros import bags
    from sparsevideonav_ros.nodes import common

    folder = tmp_path_factory.mktemp("replay") / "run"
    writer = bags.open_writer(folder)
    frames = bags.add_connection(writer, "/camera/image_raw/compressed", "sensor_msgs/msg/CompressedImage")
    plans = bags.add_connection(writer, "/policy/path", "nav_msgs/msg/Path")
    times = [BAG_START_NS, BAG_START_NS + 600_000_000, FIRST_PLAN_FRAME_NS, FIRST_PLAN_FRAME_NS + 66_000_000]
    for bag_ns in times:
        msg = CompressedImage(format="jpeg", data=b"\xff\xd8")
        msg.header.stamp = common.seconds_to_stamp((bag_ns - 3_000_000) / 1e9)  # captured 3 ms before
        writer.write(frames, bag_ns, serialize_message(msg))
    path = PathMsg()
    path.header.stamp = common.seconds_to_stamp((FIRST_PLAN_FRAME_NS - 3_000_000) / 1e9)
    writer.write(plans, FIRST_PLAN_FRAME_NS + 20_000_000, serialize_message(path))
    writer.close()
    return folder


class FixedDatetime:
    """Stands in for the datetime module in stack.py: recordings are named by a known time."""

    class datetime(datetime.datetime):  # noqa: N801 - mirrors the module attribute
        @classmethod
        def now(cls, tz=None):
            return cls(2025, 6, 1, 14, 30, 5)


def parse_bag_command(command: list[str], verb: str) -> dict:
    """`ros2 bag record|play ...` -> its options (independently of stack.py)."""
    assert command[:3] == ["ros2", "bag", verb], command
    parsed: dict[str, Any] = {"flags": set(), "positional": []}
    rest, i = command[3:], 0
    while i < len(rest):
        item = rest[i]
        if item == "--topics":
            parsed["topics"] = rest[i + 1:]
            break
        if item in ("--use-sim-time", "--disable-keyboard-controls"):
            parsed["flags"].add(item)
            i += 1
        elif item.startswith("-"):
            parsed[item] = rest[i + 1]
            i += 2
        else:
            parsed["positional"].append(item)
            i += 1
    return parsed


def parse_tool_command(command: list[str], module: str) -> dict:
    """The runner's recorder / player command line -> options, positionals and ROS arguments."""
    assert command[:3] == [sys.executable, "-m", module], command
    rest = command[3:]
    ros = rest[rest.index("--ros-args") + 1:]
    rest = rest[:rest.index("--ros-args")]
    parsed: dict[str, Any] = {"positional": [], "ros_args": ros}
    i = 0
    while i < len(rest):
        if rest[i] == "--topics":
            parsed["topics"] = rest[i + 1:]
            break
        if rest[i].startswith("--"):
            parsed[rest[i]] = rest[i + 1]
            i += 2
        else:
            parsed["positional"].append(rest[i])
            i += 1
    return parsed


@pytest.mark.parametrize("launch_name", sorted(stack.LAUNCH_FILES))
@pytest.mark.parametrize("distro", ["jazzy", "humble"])
def test_record_true_starts_the_same_recorder_in_launch_files_and_runner(fake_launch, launch_name, distro, tmp_path,
                                                                         small_bag, monkeypatch):
    monkeypatch.setattr(stack, "datetime", FixedDatetime)
    monkeypatch.setenv("ROS_DISTRO", distro)
    known = {a.name for a in stack.launch_arguments_for(launch_name)}
    base = {"bag": str(small_bag)} if "bag" in known else {}
    for arguments in ({}, {"record": "false"}):
        processes: list = []
        run_launch(fake_launch, load_launch_file(launch_name), dict(base, **arguments), processes)
        assert [p for p in processes if p.cmd[:3] == ["ros2", "bag", "record"]] == []
        assert stack.plan_recording(launch_name, dict(base, **arguments)) is None
        assert stack.RECORDER_NAME not in [p.node for p in stack.plan_graph(launch_name, dict(base, **arguments))]
    cases = [
        {"record": "true", "record_dir": str(tmp_path / "bags")},
        {"record": "True", "record_dir": str(tmp_path / "bags"), "namespace": "/fleet/go2_a", "use_sim_time": "true",
         "policy": "scripted", "instruction": "Walk forward, then stop by the wooden door!"},
    ]
    for arguments in cases:
        arguments = dict(base, **{k: v for k, v in arguments.items() if k in known})
        processes = []
        run_launch(fake_launch, load_launch_file(launch_name), arguments, processes)
        (launched,) = [p for p in processes if p.cmd[:3] == ["ros2", "bag", "record"]]
        graph = stack.plan_graph(launch_name, arguments)
        recording = graph[0]  # the recorder starts first (it should miss nothing)
        assert isinstance(recording, stack.RecordingSpec) and launched.kwargs.get("name") == stack.RECORDER_NAME

        # what the arguments mean, independently of both
        namespace = "/" + arguments["namespace"].strip("/") if arguments.get("namespace") else ""
        topics = [f"{namespace}/{t}" for t in ("camera/image_raw/compressed", "camera/camera_info", "instruction",
                                               "policy/path", "policy/future/compressed", "cmd_vel", "odom",
                                               "policy/status", "controller/status", "go2/status", "estop")]
        assert list(stack.RECORDED_TOPICS) == [t[len(namespace) + 1:] for t in topics]
        if "policy_node" in stack.LAUNCH_FILES[launch_name]:
            name = "20250601-143005-scripted" + ("-walk-forward-then-stop-by-the-wooden-door"
                                                 if arguments.get("instruction") else "")
        else:
            name = f"20250601-143005-{launch_name}"
        folder = str((tmp_path / "bags" / name).resolve())
        sim_time = arguments.get("use_sim_time", "true" if launch_name == "replay" else "false").lower() == "true"

        # ros2 bag record in the launch file
        parsed = parse_bag_command(launched.cmd, "record")
        assert parsed["-s"] == "mcap" and parsed["-o"] == folder
        assert ("--use-sim-time" in parsed["flags"]) == sim_time
        if distro == "humble":  # positional topics only
            assert parsed["positional"] == topics and "topics" not in parsed
        else:
            assert parsed["topics"] == topics and parsed["positional"] == []
        # the runner's rosbags recorder
        command = runner.node_command(recording)
        tool = parse_tool_command(command, "sparsevideonav_ros.tools.record")
        assert tool["--output"] == folder and tool["--storage"] == "mcap" and tool["positional"] == topics
        assert ("-p" in tool["ros_args"] and "use_sim_time:=true" in tool["ros_args"]) == sim_time
        assert tool["ros_args"][:2] == ["-r", f"__node:={stack.RECORDER_NAME}"]
        from sparsevideonav_ros.tools import record  # its own parser accepts exactly this command line
        captured = {}
        monkeypatch.setattr(record.common, "run_node", lambda factory, argv: captured.update(argv=argv) or 0)
        assert record.main(command[3:]) == 0 and captured["argv"][1:] == command[3:]


def test_replay_plays_the_same_bag_in_launch_file_and_runner(fake_launch, small_bag, tmp_path):
    cases = [
        ({}, (FIRST_PLAN_FRAME_NS - BAG_START_NS) // 1000 / 1e6, 1.0, 3.0, ""),
        ({"replay_start": "0", "replay_rate": "2", "replay_delay": "0", "namespace": "robot1"}, 0.0, 2.0, 0.0,
         "/robot1"),
        ({"replay_start": "4.5", "replay_rate": "0.5"}, 4.5, 0.5, 3.0, ""),
    ]
    for extra, start, rate, delay, namespace in cases:
        arguments = dict(bag=str(small_bag), **extra)
        processes: list = []
        nodes = run_launch(fake_launch, load_launch_file("replay"), arguments, processes)
        assert [n.kwargs["name"] for n in nodes] == ["policy_node", "controller_node", "go2_bridge_node"]
        (launched,) = processes
        graph = stack.plan_graph("replay", arguments)
        assert [p.node for p in graph] == ["policy_node", "controller_node", "go2_bridge_node", stack.PLAYER_NAME]
        playback = graph[-1]
        topics = [f"{namespace}/camera/image_raw/compressed", f"{namespace}/camera/camera_info",
                  f"{namespace}/instruction"]

        parsed = parse_bag_command(launched.cmd, "play")
        assert parsed["positional"] == [str(small_bag.resolve())] and parsed["topics"] == topics
        assert float(parsed["--clock"]) == 100.0 and float(parsed["--rate"]) == rate
        assert "--disable-keyboard-controls" in parsed["flags"]
        assert float(parsed.get("--delay", 0.0)) == delay  # ros2 bag play refuses --delay 0
        assert float(parsed.get("--start-offset", 0.0)) == pytest.approx(start, abs=1e-6)
        if "replay_start" not in extra:  # aligned: at the (only) plan's frame, never past it
            assert BAG_START_NS + float(parsed["--start-offset"]) * 1e9 <= FIRST_PLAN_FRAME_NS + 1

        tool = parse_tool_command(runner.node_command(playback), "sparsevideonav_ros.tools.play")
        assert tool["positional"] == [str(small_bag.resolve())] and tool["topics"] == topics
        assert float(tool["--clock"]) == 100.0 and float(tool["--rate"]) == rate
        assert float(tool["--delay"]) == delay
        assert float(tool["--start-offset"]) == pytest.approx(start, abs=1e-6)
        assert tool["ros_args"] == ["-r", f"__node:={stack.PLAYER_NAME}"]
    # a bag without plans starts at its beginning
    no_plans = tmp_path / "no_plans.mcap"
    import shutil
    shutil.copy(next(small_bag.glob("*.mcap")), no_plans)
    assert stack.plan_playback("replay", {"bag": str(no_plans), "namespace": "other"}).start_offset_s == 0.0


def test_replay_rejects_bad_arguments(fake_launch, tmp_path, small_bag):
    with pytest.raises(ValueError, match="bag:="):
        run_launch(fake_launch, load_launch_file("replay"), {})
    with pytest.raises(FileNotFoundError, match="missing"):
        stack.plan_graph("replay", {"bag": str(tmp_path / "missing")})
    with pytest.raises(ValueError, match="replay_rate"):
        stack.plan_graph("replay", {"bag": str(small_bag), "replay_rate": "0"})
    with pytest.raises(ValueError, match="replay_delay"):
        stack.plan_graph("replay", {"bag": str(small_bag), "replay_delay": "-1"})
    with pytest.raises(ValueError, match="replay_start"):
        stack.plan_graph("replay", {"bag": str(small_bag), "replay_start": "soon"})
    with pytest.raises(ValueError, match="record"):
        stack.plan_graph("bringup", {"record": "maybe"})
    with pytest.raises(ValueError, match="robot"):  # a replay drives the sim robot only
        stack.plan_graph("replay", {"bag": str(small_bag), "robot": "go2"})
    for launch_name in ("bringup", "robot", "policy"):
        with pytest.raises(ValueError, match="bag"):
            stack.plan_processes(launch_name, {"bag": str(small_bag)})


def test_launch_rejects_what_the_runner_rejects(fake_launch, tmp_path):
    description = load_launch_file("bringup")
    with pytest.raises(FileNotFoundError):
        run_launch(fake_launch, description, {"params_file": str(tmp_path / "missing.yaml")})
    with pytest.raises(ValueError, match="use_sim_time"):
        run_launch(fake_launch, load_launch_file("bringup"), {"use_sim_time": "maybe"})
    with pytest.raises(ValueError, match="camera"):
        stack.plan_processes("policy", {"camera": "video"})  # the policy launch file has no camera


# -- fail safe: refused arguments, missing `ros2 bag`, processes that exit -------------------------

def base_arguments(launch_name: str, bag: Path) -> dict[str, str]:
    """What a launch file needs to start at all (a replay needs its bag)."""
    return {"bag": str(bag)} if "bag" in {a.name for a in stack.launch_arguments_for(launch_name)} else {}


@pytest.mark.parametrize("launch_name", sorted(stack.LAUNCH_FILES))
def test_misspelled_launch_argument_is_refused_with_the_known_ones(fake_launch, launch_name, small_bag, tmp_path,
                                                                   monkeypatch):
    base = base_arguments(launch_name, small_bag)
    known = sorted(a.name for a in stack.launch_arguments_for(launch_name))
    with pytest.raises(ValueError, match=r"unknown launch argument 'polcy'") as refused:
        run_launch(fake_launch, load_launch_file(launch_name), dict(base, polcy="scripted"))
    assert str(known) in str(refused.value)
    assert fake_launch.Node.created == [] and fake_launch.ExecuteProcess.created == []
    with pytest.raises(ValueError, match="polcy"):  # the runner refuses it the same way
        runner.main([launch_name, "polcy:=scripted", *[f"{k}:={v}" for k, v in base.items()]])

    # `ros2 launch path/to/<file>.launch.py polcy:=...` (single-file mode) is judged too
    argv = ["polcy:=scripted", *[f"{k}:={v}" for k, v in base.items()]]
    with pytest.raises(ValueError, match="polcy"):
        run_launch(fake_launch, load_launch_file(launch_name), dict(base, polcy="scripted"), argv=argv,
                   command_line=["ros2", "launch", str(LAUNCH_DIR / f"{launch_name}.launch.py"), *argv])
    with pytest.raises(ValueError, match="polcy"):  # argv as (name, value) pairs, from a LaunchService caller
        run_launch(fake_launch, load_launch_file(launch_name), dict(base, polcy="scripted"),
                   argv=[("polcy", "scripted"), *base.items()], command_line=["ros2", "launch", stack.PACKAGE,
                                                                              f"{launch_name}.launch.py"])
    # launch's own configurations are valid on any command line
    own = dict(base, sigterm_timeout="10", sigkill_timeout="10", emulate_tty="false")
    assert [n.kwargs["name"] for n in run_launch(fake_launch, load_launch_file(launch_name), own)] == \
        list(stack.LAUNCH_FILES[launch_name])
    # included from another launch file: context.argv holds that file's arguments, not ours to judge
    monkeypatch.chdir(tmp_path)
    for parent in (["ros2", "launch", "site_bringup", "site.launch.py", *argv],
                   ["ros2", "launch", "site_bringup", f"{launch_name}.launch.py", *argv]):
        nodes = run_launch(fake_launch, load_launch_file(launch_name), base, argv=argv, command_line=parent)
        assert [n.kwargs["name"] for n in nodes] == list(stack.LAUNCH_FILES[launch_name]), parent


def test_log_level_is_validated_by_launch_files_and_runner(fake_launch, small_bag):
    for launch_name in sorted(stack.LAUNCH_FILES):
        fake_launch.Node.created.clear()
        base = base_arguments(launch_name, small_bag)
        for level in ("verbose", "warning", "", "info,debug"):
            with pytest.raises(ValueError, match="log_level") as refused:
                run_launch(fake_launch, load_launch_file(launch_name), dict(base, log_level=level))
            assert "debug, info, warn, error, fatal" in str(refused.value)
            with pytest.raises(ValueError, match="log_level"):
                stack.plan_graph(launch_name, dict(base, log_level=level))
        assert fake_launch.Node.created == []
        for level in ("WARN", "Debug", "fatal", "error"):  # ROS takes any case; passed on as typed
            nodes = run_launch(fake_launch, load_launch_file(launch_name), dict(base, log_level=level))
            assert {n.kwargs["arguments"][-1] for n in nodes} == {level}


@pytest.mark.parametrize("launch_name", sorted(stack.LAUNCH_FILES))
@pytest.mark.parametrize("installed", ["nothing", "ros2 without rosbag2", "rosbag2 without mcap"])
def test_record_without_ros2_bag_fails_before_any_node_with_the_install_command(
        fake_launch, launch_name, installed, small_bag, tmp_path, monkeypatch):
    packages, with_ros2 = {"nothing": ((), False), "ros2 without rosbag2": ((), True),
                           "rosbag2 without mcap": (("ros2bag", "rosbag2_storage_sqlite3"), True)}[installed]
    for key, value in ros2_bag_installation(tmp_path, packages, with_ros2).items():
        monkeypatch.setenv(key, value)
    monkeypatch.setenv("ROS_DISTRO", "jazzy")
    arguments = dict(base_arguments(launch_name, small_bag), record="true", record_dir=str(tmp_path / "bags"))
    with pytest.raises(RuntimeError, match="record:=true needs `ros2 bag`") as refused:
        run_launch(fake_launch, load_launch_file(launch_name), arguments, [])
    assert "sudo apt install ros-jazzy-rosbag2 ros-jazzy-rosbag2-storage-mcap" in str(refused.value)
    assert "mcap" in str(refused.value)
    assert fake_launch.Node.created == [] and fake_launch.ExecuteProcess.created == []
    assert not (tmp_path / "bags").exists()
    monkeypatch.delenv("ROS_DISTRO")
    with pytest.raises(RuntimeError, match=re.escape("sudo apt install ros-$ROS_DISTRO-rosbag2 "
                                                     "ros-$ROS_DISTRO-rosbag2-storage-mcap")):
        run_launch(fake_launch, load_launch_file(launch_name), arguments, [])
    # the pip-only runner records with rosbags: unaffected
    assert isinstance(stack.plan_graph(launch_name, arguments)[0], stack.RecordingSpec)
    if launch_name != "replay":  # without record:=true nothing needs ros2 bag
        assert len(run_launch(fake_launch, load_launch_file(launch_name), {})) == len(stack.LAUNCH_FILES[launch_name])


def test_replay_without_ros2_bag_fails_before_any_node(fake_launch, small_bag, tmp_path, monkeypatch):
    for key, value in ros2_bag_installation(tmp_path, ("ros2bag",)).items():
        monkeypatch.setenv(key, value)
    with pytest.raises(RuntimeError, match="a replay needs `ros2 bag` with the mcap storage plugin"):
        run_launch(fake_launch, load_launch_file("replay"), {"bag": str(small_bag)})
    assert fake_launch.Node.created == [] and fake_launch.ExecuteProcess.created == []


@pytest.mark.parametrize("launch_name", sorted(stack.LAUNCH_FILES))
def test_every_launched_process_brings_the_launch_down_when_it_exits(fake_launch, launch_name, small_bag, tmp_path):
    arguments = dict(base_arguments(launch_name, small_bag), record="true", record_dir=str(tmp_path / "bags"))
    processes: list = []
    nodes = run_launch(fake_launch, load_launch_file(launch_name), arguments, processes)
    names = [p.kwargs["name"] for p in processes]
    assert names == [stack.RECORDER_NAME] + ([stack.PLAYER_NAME] if launch_name == "replay" else [])
    for action in nodes + processes:
        name = action.kwargs["name"]
        for code in (2, 1, -11, -9):  # refused start, crash, segfault, killed
            outcome = process_exit(action, code)
            assert outcome.exit_code == 1 and outcome.shuts_down, (name, code)  # `ros2 launch` exits 1
            assert f"{name} exited with code {code}" in str(outcome.exception)
            assert ("FATAL" in str(outcome.exception)) == (code == 2)
            # also while the launch shuts down: a node that needed a signal to die is reported
            assert process_exit(action, code, shutting_down=True).exit_code == 1
        stopped = process_exit(action, 0)  # stopped on its own while the launch runs: the graph goes down
        assert stopped.exit_code == 0 and [type(a).__name__ for a in stopped.actions] == ["Shutdown"], name
        if name == stack.PLAYER_NAME:
            assert "replay finished" in stopped.actions[0].reason
        else:
            assert name in stopped.actions[0].reason
        ended = process_exit(action, 0, shutting_down=True)  # the normal end of Ctrl-C
        assert ended.exit_code is None and ended.actions == [] and ended.exception is None, name


@pytest.mark.parametrize("launch_name", sorted(stack.LAUNCH_FILES))
def test_runner_show_args_lists_the_launch_arguments(capsys, launch_name):
    assert runner.main([launch_name, "--show-args"]) == 0
    shown = re.findall(r"^(\w+):=", capsys.readouterr().out, flags=re.MULTILINE)
    assert shown == [a.name for a in stack.launch_arguments_for(launch_name)]


def test_every_launch_file_is_described_and_exists():
    on_disk = {p.name[: -len(".launch.py")] for p in LAUNCH_DIR.glob("*.launch.py")}
    assert on_disk == set(stack.LAUNCH_FILES)
    for launch_name, nodes in stack.LAUNCH_FILES.items():
        assert nodes and set(nodes) <= set(stack.NODES), launch_name
    for argument in stack.LAUNCH_ARGUMENTS.values():
        assert argument.description.strip(), argument.name
        for node, parameter in argument.sets:
            assert parameter in fields(stack.NODES[node].config_class), (argument.name, node, parameter)


# =============================================================================================
# params/*.yaml <-> config dataclasses
# =============================================================================================

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


def all_config_classes() -> list[type]:
    return [spec.config_class for spec in stack.NODES.values()] + [
        registry.config_class(name) for name in registry.known_policies()]


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


# =============================================================================================
# Real rclpy: a node declares exactly its config's parameters, and the YAML reaches it
# =============================================================================================

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


# =============================================================================================
# setup.py: console scripts and data files
# =============================================================================================

@pytest.fixture
def setup_kwargs(monkeypatch) -> dict:
    import setuptools
    captured: dict = {}
    monkeypatch.setattr(setuptools, "setup", lambda **kwargs: captured.update(kwargs))
    monkeypatch.chdir(REPO)
    runpy.run_path(str(REPO / "setup.py"), run_name="__main__")
    assert captured, "setup.py did not call setuptools.setup"
    return captured


def module_defines_main(module: str) -> bool:
    spec = importlib.util.find_spec(module)
    assert spec is not None and spec.origin, f"{module} not found"
    tree = ast.parse(Path(spec.origin).read_text(encoding="utf-8"))
    return any(isinstance(n, ast.FunctionDef) and n.name == "main" for n in tree.body)


def test_setup_installs_one_console_script_per_node(setup_kwargs):
    scripts = {}
    for line in setup_kwargs["entry_points"]["console_scripts"]:
        name, _, target = (part.strip() for part in line.partition("="))
        assert name not in scripts, f"duplicate console script {name}"
        scripts[name] = target
    for node_name, spec in stack.NODES.items():
        assert scripts.get(spec.executable) == f"{stack.PACKAGE}.nodes.{node_name}:main", node_name
        assert spec.module == f"{stack.PACKAGE}.nodes.{node_name}"
        module = importlib.import_module(spec.module)
        assert callable(getattr(module, "main", None)), f"{spec.module} has no main()"
        assert module.NAME == node_name
    for name, target in scripts.items():
        module, _, function = target.partition(":")
        assert function == "main" and module_defines_main(module), f"console script {name} -> {target}"
    assert setup_kwargs["name"] == stack.PACKAGE


def test_setup_installs_launch_and_params(setup_kwargs):
    data_files = {destination: set(files) for destination, files in setup_kwargs["data_files"]}
    share = f"share/{stack.PACKAGE}"
    assert data_files[f"{share}/launch"] == {f"launch/{name}.launch.py" for name in stack.LAUNCH_FILES}
    assert data_files[f"{share}/params"] == {f"params/{spec.params_file}" for spec in stack.NODES.values()}
    assert "package.xml" in data_files[share]
    assert data_files["share/ament_index/resource_index/packages"] == {f"resource/{stack.PACKAGE}"}
    assert (REPO / "resource" / stack.PACKAGE).is_file()


def test_message_packages_are_dependencies():
    packages = {t.msg_type.split("/")[0] for t in stack.TOPICS.values()}
    packages |= {s.srv_type.split("/")[0] for s in stack.SERVICES.values()}
    package_xml = (REPO / "package.xml").read_text(encoding="utf-8")
    requirements = (REPO / "requirements.txt").read_text(encoding="utf-8")
    for package in sorted(packages):
        assert f"<exec_depend>{package}</exec_depend>" in package_xml, package
        assert re.search(rf"^ros-\w+-{package.replace('_', '-')}\b", requirements, re.MULTILINE), package


# =============================================================================================
# Topics and services in nodes/*.py <-> stack.TOPICS / stack.SERVICES
# =============================================================================================

@dataclasses.dataclass
class Endpoint:
    node: str
    kind: str  # publisher | subscription | service
    name: Optional[str]  # None: not a string literal
    interface: Optional[str]  # "pkg/msg/Type" from the module's imports, None when unknown
    local_type: Optional[str]
    qos_topic: Optional[str]  # the topic whose QoS it uses: the literal in common.topic_qos("..."), or common.subscribe's
    profiles: tuple[str, ...]  # stack QoS profiles it is created with (common.subscribe: one subscription each)
    line: int


# method -> (kind, position of the type argument, position of the QoS argument or None)
CREATE_CALLS = {"create_publisher": ("publisher", 0, 2), "create_subscription": ("subscription", 0, 3),
                "create_service": ("service", 0, None),
                # common.subscribe(self, Type, "topic", callback[, callback_group=...]): one subscription per
                # profile of stack.TOPICS[topic].subscription_profiles, so its QoS is the stack's by construction
                "subscribe": ("subscription", 1, None)}


def is_create_call(call: ast.AST) -> bool:
    if not (isinstance(call, ast.Call) and isinstance(call.func, ast.Attribute) and call.func.attr in CREATE_CALLS):
        return False
    if call.func.attr == "subscribe":  # only ours, not some other object's subscribe()
        return isinstance(call.func.value, ast.Name) and call.func.value.id == "common"
    return True


def scan_node_module(path: Path) -> tuple[str, list[Endpoint]]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    imports: dict[str, str] = {}
    node_name = None
    for statement in tree.body:
        if isinstance(statement, ast.ImportFrom) and statement.module:
            match = re.fullmatch(r"(\w+)\.(msg|srv)", statement.module)
            if match:
                for alias in statement.names:
                    imports[alias.asname or alias.name] = f"{match.group(1)}/{match.group(2)}/{alias.name}"
        elif isinstance(statement, ast.Try):  # optional imports (tf2_msgs)
            for inner in statement.body:
                if isinstance(inner, ast.ImportFrom) and inner.module and re.fullmatch(r"\w+\.(msg|srv)", inner.module):
                    package, kind = inner.module.split(".")
                    for alias in inner.names:
                        imports[alias.asname or alias.name] = f"{package}/{kind}/{alias.name}"
        elif (isinstance(statement, ast.Assign) and len(statement.targets) == 1
              and isinstance(statement.targets[0], ast.Name) and statement.targets[0].id == "NAME"):
            node_name = ast.literal_eval(statement.value)
    endpoints = []
    for call in ast.walk(tree):
        if not is_create_call(call):
            continue
        kind, type_index, qos_index = CREATE_CALLS[call.func.attr]
        keywords = {k.arg: k.value for k in call.keywords}
        type_node = (call.args[type_index] if len(call.args) > type_index
                     else keywords.get("msg_type", keywords.get("srv_type")))
        name_node = (call.args[type_index + 1] if len(call.args) > type_index + 1
                     else keywords.get("topic", keywords.get("srv_name")))
        name = name_node.value if isinstance(name_node, ast.Constant) and isinstance(name_node.value, str) else None
        local_type = type_node.id if isinstance(type_node, ast.Name) else None
        qos_topic, profiles = None, ()
        if call.func.attr == "subscribe":
            qos_topic = name
            profiles = stack.TOPICS[name].subscription_profiles if name in stack.TOPICS else ()
        elif qos_index is not None:
            qos_node = call.args[qos_index] if len(call.args) > qos_index else keywords.get("qos_profile")
            if (isinstance(qos_node, ast.Call) and isinstance(qos_node.func, ast.Attribute)
                    and qos_node.func.attr == "topic_qos" and qos_node.args
                    and isinstance(qos_node.args[0], ast.Constant)):
                qos_topic = qos_node.args[0].value
                profiles = (stack.TOPICS[qos_topic].qos,) if qos_topic in stack.TOPICS else ()
        endpoints.append(Endpoint(node=node_name, kind=kind, name=name, interface=imports.get(local_type),
                                  local_type=local_type, qos_topic=qos_topic, profiles=profiles, line=call.lineno))
    return node_name, endpoints


def node_modules() -> dict[str, Path]:
    return {path.stem: path for path in sorted(NODES_DIR.glob("*.py")) if path.stem in stack.NODES}


def import_interface(interface: str):
    package, kind, name = interface.split("/")
    return getattr(importlib.import_module(f"{package}.{kind}"), name)


def test_every_node_has_a_module():
    assert set(node_modules()) == set(stack.NODES)


@pytest.mark.parametrize("module_name", sorted(stack.NODES))
def test_node_topics_and_services_are_in_the_stack(module_name):
    path = node_modules()[module_name]
    node_name, endpoints = scan_node_module(path)
    assert node_name == module_name, f"{path.name}: NAME = {node_name!r}"
    assert endpoints, f"{path.name} creates no topics"
    module = importlib.import_module(stack.NODES[module_name].module)
    for endpoint in endpoints:
        where = f"{path.name}:{endpoint.line}"
        assert endpoint.name is not None, f"{where}: topic/service names must be string literals from stack.py"
        assert endpoint.interface is not None, f"{where}: type {endpoint.local_type!r} not imported from a msg/srv"
        if endpoint.kind == "service":
            assert endpoint.name in stack.SERVICES, f"{where}: service {endpoint.name!r} missing from stack.SERVICES"
            service = stack.SERVICES[endpoint.name]
            assert endpoint.interface == service.srv_type, where
            assert service.server == node_name, where
            declared_type = service.srv_type
        elif endpoint.name in EXTERNAL_TOPICS:
            assert endpoint.interface == EXTERNAL_TOPICS[endpoint.name], where
            continue  # optional dependency (tf2_msgs), not a stack topic
        else:
            assert endpoint.name in stack.TOPICS, f"{where}: topic {endpoint.name!r} missing from stack.TOPICS"
            topic = stack.TOPICS[endpoint.name]
            assert endpoint.interface == topic.msg_type, f"{where}: {endpoint.interface} vs {topic.msg_type}"
            assert endpoint.qos_topic == endpoint.name, f"{where}: QoS must be common.topic_qos({endpoint.name!r})"
            # A user-facing input subscribed with its publisher profile alone (create_subscription + topic_qos)
            # would miss the publishers of other QoS (a latched reader never matches `ros2 topic pub` on Jazzy).
            expected = (topic.qos,) if endpoint.kind == "publisher" else topic.subscription_profiles
            assert endpoint.profiles == expected, (
                f"{where}: {endpoint.kind} of {endpoint.name!r} with QoS {endpoint.profiles}, stack.TOPICS says "
                f"{expected}" + (f"; subscribe it with common.subscribe(self, {endpoint.local_type}, "
                                 f"{endpoint.name!r}, callback)" if endpoint.kind == "subscription" else ""))
            role = topic.publishers if endpoint.kind == "publisher" else topic.subscribers
            assert node_name in role, f"{where}: stack.TOPICS[{endpoint.name!r}] does not list {node_name} " \
                                      f"as a {endpoint.kind}"
            declared_type = topic.msg_type
        # the type named in stack.py imports, and is the very class the node uses
        assert import_interface(declared_type) is getattr(module, endpoint.local_type), where


def test_stack_roles_are_implemented_by_the_nodes():
    """Reverse direction: a publisher/subscriber/server that stack.py names exists in the code."""
    created = set()
    for path in node_modules().values():
        node_name, endpoints = scan_node_module(path)
        created |= {(node_name, e.kind, e.name) for e in endpoints}
    for topic in stack.TOPICS.values():
        assert topic.qos in stack.QOS_PROFILES, topic.name
        assert topic.subscription_profiles and set(topic.subscription_profiles) <= set(stack.QOS_PROFILES), topic.name
        assert not topic.name.startswith("/"), f"{topic.name}: stack topics are relative (namespaced)"
        import_interface(topic.msg_type)
        for node in topic.publishers:
            assert (node, "publisher", topic.name) in created, (topic.name, node)
        for node in topic.subscribers:
            assert (node, "subscription", topic.name) in created, (topic.name, node)
    for service in stack.SERVICES.values():
        import_interface(service.srv_type)
        assert (service.server, "service", service.name) in created, service.name


# =============================================================================================
# Invalid configs raise ConfigError naming the parameter
# =============================================================================================

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


# =============================================================================================
# Generated docs (tools/docs.py) and the README
# =============================================================================================

def test_docs_cover_every_name():
    text = docs.render()
    for name in list(stack.TOPICS) + list(stack.SERVICES) + list(stack.LAUNCH_ARGUMENTS):
        assert f"`{name}`" in text, name
    for launch_name in stack.LAUNCH_FILES:
        assert f"#### {launch_name}.launch.py" in text
    for config_class in all_config_classes():
        for f in dataclasses.fields(config_class):
            assert f"| `{f.name}` | " in text, f.name
    widths = set()
    for line in text.splitlines():
        if line.startswith("|"):
            cells = re.split(r"(?<!\\)\|", line)[1:-1]  # unescaped pipes only
            widths.add(len(cells))
            assert all(c.startswith(" ") or set(c) <= set("-") for c in cells), line
        elif widths:
            assert len(widths) == 1, f"table rows with differing column counts before {line!r}"
            widths = set()
    assert docs.render() == text  # deterministic


def test_docs_check_and_write(tmp_path, capsys):
    readme = tmp_path / "README.md"
    readme.write_text(f"# Title\n\nintro\n\n{docs.BEGIN_MARKER}\nold tables\n{docs.END_MARKER}\n\n## After\n",
                      encoding="utf-8")
    assert docs.main(["--check", str(readme)]) == 1
    assert "old tables" in capsys.readouterr().err
    assert docs.main(["--write", str(readme)]) == 0
    text = readme.read_text(encoding="utf-8")
    assert text.startswith("# Title\n\nintro\n\n" + docs.BEGIN_MARKER + "\n")
    assert text.endswith(docs.END_MARKER + "\n\n## After\n")
    assert docs.extract_section(text).strip("\n") == docs.render().strip("\n")
    assert docs.main(["--check", str(readme)]) == 0
    assert docs.main(["--write", str(readme)]) == 0
    assert readme.read_text(encoding="utf-8") == text  # idempotent
    no_markers = tmp_path / "plain.md"
    no_markers.write_text("# nothing here\n", encoding="utf-8")
    assert docs.main(["--check", str(no_markers)]) == 1
    assert docs.main(["--write", str(no_markers)]) == 2
    assert no_markers.read_text(encoding="utf-8") == "# nothing here\n"
    capsys.readouterr()
    assert docs.main([]) == 0
    assert capsys.readouterr().out == docs.render()


def test_readme_tables_are_up_to_date():
    readme = REPO / "README.md"
    if not readme.is_file():
        pytest.skip("no README.md")
    text = readme.read_text(encoding="utf-8")
    if not docs.has_markers(text):
        pytest.skip(f"README.md has no {docs.BEGIN_MARKER} / {docs.END_MARKER} section")
    assert docs.is_up_to_date(text), (
        "README.md's stack tables are stale; run `python -m sparsevideonav_ros.tools.docs --write README.md`\n"
        + docs.section_diff(text))
