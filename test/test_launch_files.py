"""launch/*.launch.py and the pip-only runner (tools/launch.py) against the stack description.

The launch files run against the minimal fake `launch` / `launch_ros` of test/fake_launch.py. For
a list of launch-argument sets, each Node action a launch file creates carries the same package,
executable, node name, namespace, parameter files, parameter overrides and log level as the node
command line the runner builds, and both match what the arguments mean (checked independently of
stack.py). That is a check of argument sets, not of identical command lines: real launch_ros
writes the overrides to a temporary parameter file and adds `-r __ns:=/` without a namespace,
which the fake does not model. Also: record:=true and replay start the same recorder / player
options in both (`ros2 bag` there, the rosbags tools here), bad arguments are refused by both
before anything starts, every process a launch file starts brings the launch down when it exits,
and stack.py plans replays only with the alignment launch_plan.py reads from the bag.
"""
from __future__ import annotations

import ast
import datetime
import re
import subprocess
import sys
from pathlib import Path
from typing import Any, Optional

import pytest
import yaml

from fake_launch import (install_fake_launch, load_launch_file, process_exit, ros2_bag_installation,
                         run_launch)
from stack_helpers import LAUNCH_DIR, REPO, extra_params_file, fields  # noqa: F401 - extra_params_file: a fixture
from sparsevideonav_ros import launch_plan, stack
from sparsevideonav_ros.tools import launch as runner


@pytest.fixture
def fake_launch(monkeypatch, tmp_path_factory):
    """The fake launch modules, on a ROS install that has `ros2 bag` with the mcap plugin (PATH and
    AMENT_PREFIX_PATH of this test only)."""
    for key, value in ros2_bag_installation(tmp_path_factory.mktemp("ros")).items():
        monkeypatch.setenv(key, value)
    return install_fake_launch(monkeypatch)


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
def test_launch_files_and_runner_give_each_node_the_same_arguments(fake_launch, launch_name, extra_params_file, small_bag):
    for arguments in argument_sets(launch_name, extra_params_file, small_bag):
        description = load_launch_file(launch_name)
        nodes = run_launch(fake_launch, description, arguments)
        processes = launch_plan.plan_processes(launch_name, arguments)
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
        assert stack.RECORDER_NAME not in [p.node for p in launch_plan.plan_graph(launch_name, dict(base, **arguments))]
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
        graph = launch_plan.plan_graph(launch_name, arguments)
        recording = graph[0]  # the recorder starts first (it should miss nothing)
        assert isinstance(recording, stack.RecordingSpec) and launched.kwargs.get("name") == stack.RECORDER_NAME

        # what the arguments mean, independently of both
        namespace = "/" + arguments["namespace"].strip("/") if arguments.get("namespace") else ""
        topics = [f"{namespace}/{t}" for t in ("camera/image_raw/compressed", "camera/camera_info", "instruction",
                                               "policy/path", "policy/future/compressed", "cmd_vel", "odom",
                                               "policy/status", "controller/status", "go2/status", "estop",
                                               "odom/transform", "camera/transform", "tf", "tf_static")]
        assert list(stack.RECORDED_TOPICS + stack.RECORDED_TF_TOPICS) == [t[len(namespace) + 1:] for t in topics]
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
        graph = launch_plan.plan_graph("replay", arguments)
        assert [p.node for p in graph] == ["policy_node", "controller_node", "go2_bridge_node", stack.PLAYER_NAME]
        playback = graph[-1]
        topics = [f"{namespace}/camera/image_raw/compressed", f"{namespace}/camera/camera_info",
                  f"{namespace}/instruction"]

        # ros2 bag play starts behind tools/play.py --then-run, which waits for the policy to report ready
        gate = parse_tool_command(launched.cmd[:launched.cmd.index("--then-run")] + ["--ros-args"],
                                  "sparsevideonav_ros.tools.play")
        assert gate["--wait-for-ready"] == f"{namespace}/policy/status" and float(gate["--delay"]) == delay
        assert gate["positional"] == [str(small_bag.resolve())]
        parsed = parse_bag_command(launched.cmd[launched.cmd.index("--then-run") + 1:], "play")
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
    assert launch_plan.plan_playback("replay", {"bag": str(no_plans), "namespace": "other"}).start_offset_s == 0.0


def test_replay_rejects_bad_arguments(fake_launch, tmp_path, small_bag):
    with pytest.raises(ValueError, match="bag:="):
        run_launch(fake_launch, load_launch_file("replay"), {})
    with pytest.raises(FileNotFoundError, match="missing"):
        launch_plan.plan_graph("replay", {"bag": str(tmp_path / "missing")})
    with pytest.raises(ValueError, match="replay_rate"):
        launch_plan.plan_graph("replay", {"bag": str(small_bag), "replay_rate": "0"})
    with pytest.raises(ValueError, match="replay_delay"):
        launch_plan.plan_graph("replay", {"bag": str(small_bag), "replay_delay": "-1"})
    with pytest.raises(ValueError, match="replay_start"):
        launch_plan.plan_graph("replay", {"bag": str(small_bag), "replay_start": "soon"})
    with pytest.raises(ValueError, match="record"):
        launch_plan.plan_graph("bringup", {"record": "maybe"})
    with pytest.raises(ValueError, match="robot"):  # a replay drives the sim robot only
        launch_plan.plan_graph("replay", {"bag": str(small_bag), "robot": "go2"})
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
                                                                   monkeypatch, capsys):
    base = base_arguments(launch_name, small_bag)
    known = sorted(a.name for a in stack.launch_arguments_for(launch_name))
    with pytest.raises(ValueError, match=r"unknown launch argument 'polcy'") as refused:
        run_launch(fake_launch, load_launch_file(launch_name), dict(base, polcy="scripted"))
    assert str(known) in str(refused.value)
    assert fake_launch.Node.created == [] and fake_launch.ExecuteProcess.created == []
    capsys.readouterr()
    # the runner refuses it the same way, in one line with exit 2 (no traceback)
    assert runner.main([launch_name, "polcy:=scripted", *[f"{k}:={v}" for k, v in base.items()]]) == 2
    assert "error: unknown launch argument 'polcy'" in capsys.readouterr().err

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
                launch_plan.plan_graph(launch_name, dict(base, log_level=level))
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
    assert isinstance(launch_plan.plan_graph(launch_name, arguments)[0], stack.RecordingSpec)
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
            prefix, _, name = parameter.rpartition(".")
            if prefix:  # a policy's own parameter (policy_node sparsevideonav.camera_mount)
                from sparsevideonav_ros.policies import registry
                assert node == "policy_node" and name in fields(registry.policy_class(prefix).config_class), (
                    argument.name, node, parameter)
                continue
            assert parameter in fields(stack.NODES[node].config_class), (argument.name, node, parameter)


# -- stack.py reads no bag: replay planning is launch_plan.py's ----------------------------------------

def test_stack_imports_no_bag_reader():
    """stack.py is the declarative description: importing it loads neither bags.py nor rosbags."""
    tree = ast.parse((REPO / "sparsevideonav_ros" / "stack.py").read_text(encoding="utf-8"))
    imported = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            imported |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom):
            imported |= {f"{node.module}.{a.name}" for a in node.names} | {node.module or ""}
    assert not {name for name in imported if "bags" in name}, imported
    probe = ("import sys; import sparsevideonav_ros.stack; "
             "print(sorted(m for m in sys.modules if m.startswith(('rosbags', 'sparsevideonav_ros.bags'))))")
    loaded = subprocess.run([sys.executable, "-c", probe], cwd=REPO, capture_output=True, text=True, timeout=60)
    assert loaded.returncode == 0, loaded.stderr
    assert loaded.stdout.strip() == "[]"


def test_stack_plans_a_replay_only_with_its_alignment(small_bag):
    """Without the bag's alignment stack.py refuses to plan a replay; given one, it applies all of it."""
    for planner in (stack.plan_graph, stack.plan_processes, stack.plan_playback):
        with pytest.raises(ValueError, match="launch_plan"):
            planner("replay", {"bag": str(small_bag)})
    alignment = stack.ReplayAlignment(start_offset_s=1.5, grid_anchor_s=1234.25, instruction="go to the door")
    graph = stack.plan_graph("replay", {"bag": str(small_bag)}, replay=alignment)
    policy = next(p for p in graph if getattr(p, "node", "") == "policy_node")
    assert policy.parameters["history_grid_anchor_s"] == 1234.25
    assert policy.parameters["instruction"] == "go to the door"
    assert graph[-1].start_offset_s == 1.5
    # an instruction given on the command line wins over the recorded one
    given = stack.plan_processes("replay", {"bag": str(small_bag), "instruction": "stop"}, replay=alignment)
    assert [p.parameters["instruction"] for p in given if p.node == "policy_node"] == ["stop"]
    # launch_plan reads the alignment from the bag: the bag's only plan frame, no instruction recorded
    read = launch_plan.replay_alignment("replay", {"bag": str(small_bag)})
    assert read.start_offset_s == pytest.approx((FIRST_PLAN_FRAME_NS - BAG_START_NS) // 1000 / 1e6)
    assert read.instruction == "" and read.grid_anchor_s is not None
    assert launch_plan.plan_graph("replay", {"bag": str(small_bag)}) == stack.plan_graph(
        "replay", {"bag": str(small_bag)}, replay=read)


# -- ROS domain ids ------------------------------------------------------------------------------------

def test_domain_ids_stay_in_the_valid_ranges():
    for valid in (0, 1, 101, 215, 232):
        assert stack.loopback_environment(valid, base={})["ROS_DOMAIN_ID"] == str(valid)
    for invalid in (-1, 102, 150, 200, 214, 233):
        with pytest.raises(ValueError, match="0-101 and 215-232"):
            stack.loopback_environment(invalid, base={})
    tests = set(range(1, 101))  # test/conftest.py: 1 + pid % 100
    for ids in (stack.DEMO_DOMAIN_IDS, stack.BENCH_DOMAIN_IDS):
        picked = {stack.pick_domain_id(ids, pid) for pid in range(4 * len(ids))}
        assert picked == set(ids) and all(stack.domain_id_is_valid(i) for i in picked)
        assert not picked & tests, "the demo and the bench never share a domain with the test runs"
    assert not set(stack.DEMO_DOMAIN_IDS) & set(stack.BENCH_DOMAIN_IDS)
