"""A minimal stand-in for `launch` / `launch_ros` (not installable without a ROS install), for tests
of launch/*.launch.py.

What it checks: the launch files build their actions with the constructor signatures of upstream
launch and launch_ros (keyword-only where they are, no unknown keyword), and for a set of
launch-argument sets which Node / ExecuteProcess actions come out, with which package,
executable, name, namespace, parameter files, overrides, arguments and on_exit. What it does not
show: the exact command line real launch_ros builds (it writes the overrides to a temporary
params file and adds `-r __ns:=/` without a namespace) or anything about running processes.

The pieces of upstream behaviour the launch files rely on are modelled after the upstream sources
(ros2/launch, ros2/launch_ros):

* `ros2 launch <package> <file> name:=value ...` sets each item as a launch configuration and keeps
  the items in ``context.argv`` (ros2launch/api/api.py: LaunchService(argv=...),
  IncludeLaunchDescription(launch_arguments=...)); run_launch does the same and puts that command
  line in sys.argv.
* ``on_exit`` of ExecuteProcess / Node: a callable called with the ProcessExited event and the
  context, or a list of actions (launch/actions/execute_local.py, event_handlers/on_action_event_base.py).
* LaunchService (launch/launch_service.py): an exception out of an action or event handler shuts the
  launch down and makes run() return 1; a Shutdown ends it with 0. process_exit models that outcome.
"""
from __future__ import annotations

import sys
import types
from pathlib import Path
from typing import Any, Optional

REPO = Path(__file__).resolve().parent.parent
LAUNCH_DIR = REPO / "launch"
PACKAGE = "sparsevideonav_ros"

# Keyword arguments of launch.actions.ExecuteProcess (and, through **kwargs, of launch_ros Node).
EXECUTE_PROCESS_KWARGS = {"prefix", "name", "cwd", "env", "additional_env", "shell", "sigterm_timeout",
                          "sigkill_timeout", "emulate_tty", "output", "output_format", "cached_output", "log_cmd",
                          "on_exit", "respawn", "respawn_delay", "respawn_max_retries", "condition"}


class FakeLaunchContext:
    """What the launch files read from a LaunchContext: launch configurations, argv, is_shutdown."""

    def __init__(self, launch_configurations: dict[str, str], argv: Optional[list[str]] = None,
                 is_shutdown: bool = False) -> None:
        self.launch_configurations = dict(launch_configurations)
        self.argv = list(argv or [])
        self.is_shutdown = is_shutdown


class ProcessExited:
    """launch.events.process.ProcessExited: the process's final name, pid, action and return code."""

    def __init__(self, *, returncode: int, action: Any, name: str, cmd: list, cwd=None, env=None, pid: int) -> None:
        self.returncode, self.action, self.process_name, self.cmd, self.pid = returncode, action, name, cmd, pid
        self.cwd, self.env = cwd, env


def _check_on_exit(on_exit: Any, entity_types: tuple) -> None:
    """As OnActionEventBase: a callable, or one action, or an iterable of actions."""
    if on_exit is None or callable(on_exit):
        return
    entities = on_exit if isinstance(on_exit, (list, tuple)) else [on_exit]
    assert all(isinstance(e, entity_types) for e in entities), f"on_exit must be actions or a callable: {on_exit!r}"


def install_fake_launch(monkeypatch) -> types.SimpleNamespace:
    """Register fake `launch`, `launch.actions`, `launch.substitutions`, `launch_ros.actions`,
    `launch_ros.parameter_descriptions` in sys.modules; returns their classes and the helpers."""
    launch = types.ModuleType("launch")
    actions = types.ModuleType("launch.actions")
    substitutions = types.ModuleType("launch.substitutions")
    launch_ros = types.ModuleType("launch_ros")
    launch_ros_actions = types.ModuleType("launch_ros.actions")
    parameter_descriptions = types.ModuleType("launch_ros.parameter_descriptions")

    class Action:
        pass

    class LaunchDescription:
        def __init__(self, initial_entities=None) -> None:
            self.entities = list(initial_entities or [])

    class DeclareLaunchArgument(Action):
        def __init__(self, name, *, default_value=None, description=None, choices=None, **kwargs) -> None:
            assert not kwargs, f"unexpected DeclareLaunchArgument kwargs {kwargs}"
            self.name, self.default_value, self.description, self.choices = name, default_value, description, choices

    class OpaqueFunction(Action):
        def __init__(self, *, function, args=None, kwargs=None) -> None:
            self.function, self.args, self.kwargs = function, list(args or []), dict(kwargs or {})

        def execute(self, context):
            return self.function(context, *self.args, **self.kwargs)

    class Shutdown(Action):
        """launch.actions.Shutdown: emits the Shutdown event with a reason (keyword-only)."""

        def __init__(self, *, reason="reason not given", **kwargs) -> None:
            assert not kwargs, f"unexpected Shutdown kwargs {kwargs}"
            self.reason = reason

    class LaunchConfiguration:
        def __init__(self, variable_name, *, default=None) -> None:
            self.variable_name, self.default = variable_name, default

        def perform(self, context) -> str:
            if self.variable_name in context.launch_configurations:
                return context.launch_configurations[self.variable_name]
            if self.default is not None:
                return self.default
            raise LookupError(f"launch configuration {self.variable_name!r} does not exist")

    class ExecuteProcess(Action):
        created: list = []

        def __init__(self, *, cmd, **kwargs) -> None:
            unknown = set(kwargs) - EXECUTE_PROCESS_KWARGS
            assert not unknown, f"unexpected ExecuteProcess kwargs {unknown}"
            assert all(isinstance(part, str) for part in cmd), cmd
            _check_on_exit(kwargs.get("on_exit"), (Action,))
            self.cmd, self.kwargs = list(cmd), kwargs
            ExecuteProcess.created.append(self)

    class Node(Action):
        """launch_ros.actions.Node: its own keywords, the rest go to ExecuteProcess."""

        created: list = []

        def __init__(self, *, executable, package=None, name=None, namespace=None, exec_name=None,
                     parameters=None, remappings=None, ros_arguments=None, arguments=None, **kwargs) -> None:
            unknown = set(kwargs) - EXECUTE_PROCESS_KWARGS
            assert not unknown, f"unexpected Node kwargs {unknown}"
            _check_on_exit(kwargs.get("on_exit"), (Action,))
            self.kwargs = dict(executable=executable, package=package, name=name, namespace=namespace,
                               exec_name=exec_name, parameters=parameters, remappings=remappings,
                               ros_arguments=ros_arguments, arguments=arguments, **kwargs)
            Node.created.append(self)

    class ParameterValue:
        def __init__(self, value, *, value_type=None) -> None:
            self.value, self.value_type = value, value_type

    launch.LaunchDescription = LaunchDescription
    launch.actions, launch.substitutions = actions, substitutions
    actions.DeclareLaunchArgument, actions.OpaqueFunction = DeclareLaunchArgument, OpaqueFunction
    actions.ExecuteProcess, actions.Shutdown = ExecuteProcess, Shutdown
    substitutions.LaunchConfiguration = LaunchConfiguration
    launch_ros.actions, launch_ros.parameter_descriptions = launch_ros_actions, parameter_descriptions
    launch_ros_actions.Node = Node
    parameter_descriptions.ParameterValue = ParameterValue
    for name, module in (("launch", launch), ("launch.actions", actions), ("launch.substitutions", substitutions),
                         ("launch_ros", launch_ros), ("launch_ros.actions", launch_ros_actions),
                         ("launch_ros.parameter_descriptions", parameter_descriptions)):
        monkeypatch.setitem(sys.modules, name, module)
    return types.SimpleNamespace(LaunchDescription=LaunchDescription, DeclareLaunchArgument=DeclareLaunchArgument,
                                 OpaqueFunction=OpaqueFunction, Node=Node, ExecuteProcess=ExecuteProcess,
                                 Shutdown=Shutdown)


def load_launch_file(launch_name: str):
    """generate_launch_description() of launch/<launch_name>.launch.py; remembers the file it came from."""
    import importlib.util

    path = LAUNCH_DIR / f"{launch_name}.launch.py"
    spec = importlib.util.spec_from_file_location(f"_launch_file_{launch_name}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    description = module.generate_launch_description()
    description.launch_file = path
    return description


def ros2_launch_command_line(description, argv: list[str]) -> list[str]:
    """sys.argv of `ros2 launch sparsevideonav_ros <file> <argv...>`."""
    return ["/opt/ros/jazzy/bin/ros2", "launch", PACKAGE, description.launch_file.name, *argv]


def run_launch(fake, description, overrides: dict[str, str], processes: Optional[list] = None,
               argv: Optional[list[str]] = None, command_line: Optional[list[str]] = None) -> list:
    """Process the description like `ros2 launch`: command-line values first, then declared
    defaults, then the OpaqueFunction; returns the Node actions (ExecuteProcess actions, the bag
    recorder and player, go to ``processes`` when given).

    ``argv``: context.argv (default: the overrides as name:=value items); ``command_line``: sys.argv
    while the description runs (default: `ros2 launch` of this very file with ``argv``).
    """
    configurations = dict(overrides)
    argv = [f"{k}:={v}" for k, v in overrides.items()] if argv is None else list(argv)
    nodes = []
    saved_argv = sys.argv
    sys.argv = list(command_line) if command_line is not None else ros2_launch_command_line(description, argv)
    try:
        for entity in description.entities:
            if isinstance(entity, fake.DeclareLaunchArgument):
                if entity.name not in configurations and entity.default_value is not None:
                    configurations[entity.name] = entity.default_value
            elif isinstance(entity, fake.OpaqueFunction):
                produced = entity.execute(FakeLaunchContext(configurations, argv))
                for action in produced or []:
                    if isinstance(action, fake.ExecuteProcess):
                        if processes is not None:
                            processes.append(action)
                        continue
                    assert isinstance(action, fake.Node), f"unexpected action {action!r}"
                    nodes.append(action)
            else:
                raise AssertionError(f"unexpected launch entity {entity!r}")
    finally:
        sys.argv = saved_argv
    return nodes


def process_exit(action, returncode: int, shutting_down: bool = False) -> types.SimpleNamespace:
    """What the launch makes of ``action``'s process exiting with ``returncode``.

    Calls the action's on_exit as ExecuteLocal's OnProcessExit handler does, then applies the
    LaunchService rules: an exception shuts the launch down and `ros2 launch` exits 1; a returned
    Shutdown ends it with 0 (unless shutting down already). Returns exception, actions, shuts_down
    and exit_code (None: the launch goes on as before).
    """
    on_exit = action.kwargs.get("on_exit")
    name = action.kwargs.get("name") or "process"
    event = ProcessExited(returncode=returncode, action=action, name=f"{name}-1", cmd=[], pid=4242)
    context = FakeLaunchContext({}, is_shutdown=shutting_down)
    outcome = types.SimpleNamespace(exception=None, actions=[], shuts_down=False, exit_code=None)
    try:
        if callable(on_exit):
            produced = on_exit(event, context)
        else:
            produced = on_exit
    except Exception as error:  # noqa: BLE001 - LaunchService catches every exception
        outcome.exception, outcome.shuts_down, outcome.exit_code = error, True, 1
        return outcome
    produced = [] if produced is None else (list(produced) if isinstance(produced, (list, tuple)) else [produced])
    outcome.actions = produced
    if any(type(a).__name__ == "Shutdown" for a in produced) and not shutting_down:
        outcome.shuts_down, outcome.exit_code = True, 0
    return outcome


def ros2_bag_installation(root: Path, packages: tuple[str, ...] = ("ros2bag", "rosbag2_storage_mcap"),
                          with_ros2: bool = True) -> dict[str, str]:
    """PATH and AMENT_PREFIX_PATH of a ROS prefix holding ``packages`` in its ament resource index
    (share/ament_index/resource_index/packages/<name>, what ament_index_python looks up) and a
    `ros2` executable on PATH (never run: the tests only build launch actions)."""
    prefix = root / "ros_prefix"
    index = prefix / "share" / "ament_index" / "resource_index" / "packages"
    index.mkdir(parents=True, exist_ok=True)
    for package in packages:
        (index / package).write_text("")
    bin_dir = prefix / "bin"
    bin_dir.mkdir(exist_ok=True)
    if with_ros2:
        ros2 = bin_dir / "ros2"
        ros2.write_text("#!/bin/sh\necho 'fake ros2: not to be run in tests' >&2\nexit 99\n")
        ros2.chmod(0o755)
    return {"PATH": str(bin_dir), "AMENT_PREFIX_PATH": str(prefix)}
