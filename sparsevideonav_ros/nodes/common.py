"""Shared rclpy plumbing: parameters from config dataclasses, QoS by name, the spin loop.

Works with Humble, Jazzy and Kilted rclpy (no `with rclpy.init()`, no newer-only APIs).
"""
from __future__ import annotations

import dataclasses
import difflib
import os
import signal
import sys
import threading
from typing import Any, Callable, Optional

import rclpy
from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus, KeyValue
from rcl_interfaces.msg import ParameterDescriptor
from rclpy.executors import MultiThreadedExecutor, SingleThreadedExecutor
from rclpy.node import Node
from rclpy.qos import (DurabilityPolicy, HistoryPolicy, QoSProfile, ReliabilityPolicy)
from rclpy.signals import SignalHandlerOptions

from sparsevideonav_ros import stack
from sparsevideonav_ros.configs import ConfigError, build_config


def qos(profile_name: str) -> QoSProfile:
    if profile_name == "sensor_data":
        return QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=5, reliability=ReliabilityPolicy.BEST_EFFORT,
                          durability=DurabilityPolicy.VOLATILE)
    if profile_name == "reliable":
        return QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=10, reliability=ReliabilityPolicy.RELIABLE,
                          durability=DurabilityPolicy.VOLATILE)
    if profile_name == "latched":
        return QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=1, reliability=ReliabilityPolicy.RELIABLE,
                          durability=DurabilityPolicy.TRANSIENT_LOCAL)
    if profile_name == "best_effort":
        return QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=10, reliability=ReliabilityPolicy.BEST_EFFORT,
                          durability=DurabilityPolicy.VOLATILE)
    raise ValueError(f"unknown QoS profile {profile_name!r}; known: {stack.QOS_PROFILES}")


def topic_qos(topic: str) -> QoSProfile:
    """The QoS our publishers of ``topic`` use (and its subscribers, for single-profile topics)."""
    return qos(stack.TOPICS[topic].qos)


def subscribe(node: Node, msg_type: Any, topic: str, callback: Callable, callback_group: Any = None) -> list:
    """One subscription per profile in stack.TOPICS[topic].subscription_profiles, all to ``callback``.

    Inputs users publish to (estop, instruction, cmd_vel, odom) must match every publisher they have,
    whatever its reliability and durability (see stack.LATCHED_INPUT); the callback may therefore see
    one message once per matching subscription and must be idempotent.
    """
    return [node.create_subscription(msg_type, topic, callback, qos(profile), callback_group=callback_group)
            for profile in stack.TOPICS[topic].subscription_profiles]


def declare_config(node: Node, cls: type, prefix: str = "", dynamic: tuple[str, ...] = ()) -> Any:
    """Declare one ROS parameter per dataclass field (with its description) and build ``cls``.

    Parameters are read-only except the ``dynamic`` ones the node handles at run time: a
    `ros2 param set` that would change nothing (e.g. a speed limit) is refused instead of
    pretending to succeed. Raises ConfigError (naming the parameter) when a value does not validate.
    """
    values = {}
    for f in dataclasses.fields(cls):
        default = f.default if f.default is not dataclasses.MISSING else f.default_factory()
        description = f.metadata.get("description", "")
        choices = f.metadata.get("choices", ())
        if choices:
            description += f" One of: {', '.join(choices)}."
        name = prefix + f.name
        try:
            descriptor = ParameterDescriptor(description=description, read_only=f.name not in dynamic)
            value = node.declare_parameter(name, default, descriptor).value
        except Exception as error:  # rclpy raises type-mismatch errors of several classes across distros
            raise ConfigError(f"parameter {name!r}: {error}") from error
        values[f.name] = value
    return build_config(cls, values)


# Parameters rclpy itself, or ROS tooling, may pass to any node.
_ROS_OWN_PARAMETERS = ("use_sim_time", "start_type_description_service")
_ROS_OWN_PREFIXES = ("qos_overrides.",)


def check_unknown_parameters(node: Node) -> None:
    """ConfigError naming every parameter given to the node (params file, -p) that it did not declare.

    rclpy silently ignores an override nobody declares, so `max_vxx: 0.1` in a params file would leave
    the speed limit at its default; call this after every declare_config of the node. The nearest
    declared name is suggested.
    """
    overrides = getattr(node, "_parameter_overrides", {})  # rclpy keeps them there (Humble..Kilted)
    declared = [name for name in node._parameters]  # noqa: SLF001 - no public list of declared names
    ignored = _ROS_OWN_PREFIXES + tuple(getattr(node, "inactive_parameter_prefixes", ()))
    unknown = sorted(name for name in overrides
                     if not node.has_parameter(name) and name not in _ROS_OWN_PARAMETERS
                     and not name.startswith(ignored))
    if not unknown:
        return
    hints = []
    for name in unknown:
        close = difflib.get_close_matches(name, declared, n=1, cutoff=0.6)
        hints.append(f"{name!r}" + (f" (did you mean {close[0]!r}?)" if close else ""))
    raise ConfigError(f"unknown parameter(s) for {node.get_name()}: {', '.join(hints)}; "
                      f"`ros2 param list {node.get_fully_qualified_name()}` lists the known ones")


def stamp_to_seconds(stamp: Any) -> float:
    return stamp.sec + stamp.nanosec * 1e-9


def seconds_to_stamp(seconds: float, stamp_cls: Any = None) -> Any:
    from builtin_interfaces.msg import Time
    stamp = (stamp_cls or Time)()
    sec = int(seconds // 1)
    stamp.sec = sec
    stamp.nanosec = min(int(round((seconds - sec) * 1e9)), 999_999_999)
    return stamp


def now_seconds(node: Node) -> float:
    return node.get_clock().now().nanoseconds * 1e-9


def diagnostics(node: Node, name: str, level: int, message: str, values: dict[str, Any]) -> DiagnosticArray:
    """A DiagnosticArray with one status; level is DiagnosticStatus.OK/WARN/ERROR."""
    status = DiagnosticStatus(level=bytes([level]) if isinstance(DiagnosticStatus().level, bytes) else level,
                              name=name, message=message, hardware_id=node.get_fully_qualified_name())
    status.values = [KeyValue(key=str(k), value=str(v)) for k, v in values.items()]
    array = DiagnosticArray()
    array.header.stamp = node.get_clock().now().to_msg()
    array.status = [status]
    return array


def diagnostic_values(array: DiagnosticArray) -> dict[str, str]:
    return {kv.key: kv.value for status in array.status for kv in status.values}


from sparsevideonav_ros.core.status import ERROR, OK, WARN  # noqa: E402,F401 - the levels nodes publish


class StackNode(Node):
    """Base of our nodes: ``on_shutdown`` runs before the node is destroyed (final stop).

    ``inactive_parameter_prefixes``: parameter blocks that may be present but are not in effect (the
    policy node's blocks of the policies it does not run); check_unknown_parameters skips them.
    """

    inactive_parameter_prefixes: tuple[str, ...] = ()
    executor_threads: int = 1  # > 1: spin on a multi-threaded executor (callback groups run in parallel)

    def on_shutdown(self) -> None:
        pass

    def busy_threads(self) -> list[str]:
        """Names of the node's worker threads still running after on_shutdown (run_node then exits the
        process without finalizing the interpreter, which a thread in native code would abort)."""
        return []

    def check_health(self) -> None:
        """Called by run_node between spins; raise ConfigError to end the node with exit 2 (one FATAL
        line), e.g. for a start-up step a worker thread finished after the constructor (weights)."""




def run_node(factory: Callable[[], StackNode], args: Optional[list[str]] = None) -> int:
    """Init rclpy, build the node, spin until SIGINT/SIGTERM, call on_shutdown, clean up.

    Exit code 2 when the node refuses its configuration (one FATAL line, nothing moves).

    Signals: rclpy's own handlers are off (SignalHandlerOptions.NO); ours only set a flag and stay
    installed until the process exits, so a second Ctrl-C (terminal and `ros2 launch` both signal)
    cannot interrupt on_shutdown, which sends the robot's final stop: the node exits 0, not -2.
    A node with ``executor_threads`` > 1 spins on a multi-threaded executor, so that it can keep slow
    service callbacks (a posture call to a robot that does not answer) away from its safety callbacks
    through callback groups.
    """
    stop = threading.Event()

    def request_stop(signum, frame):  # noqa: ARG001 - signal handler signature
        stop.set()

    signal.signal(signal.SIGTERM, request_stop)
    signal.signal(signal.SIGINT, request_stop)
    rclpy.init(args=sys.argv if args is None else args, signal_handler_options=SignalHandlerOptions.NO)
    node = None
    executor = None
    code = 0
    try:
        node = factory()
        check_unknown_parameters(node)
        threads = getattr(node, "executor_threads", 1)
        # rclpy's multi-threaded executor costs several times the CPU per callback: only where it is needed.
        executor = MultiThreadedExecutor(num_threads=threads) if threads > 1 else SingleThreadedExecutor()
        executor.add_node(node)
        while not stop.is_set() and rclpy.ok():
            executor.spin_once(timeout_sec=0.05)
            node.check_health()
    except ConfigError as error:
        logger = node.get_logger() if node else rclpy.logging.get_logger("sparsevideonav_ros")
        logger.fatal(f"refusing to start: {error}")
        code = 2
    finally:
        if node is not None:
            try:
                node.on_shutdown()
            finally:
                if executor is not None:
                    executor.shutdown(timeout_sec=1.0)
                node.destroy_node()
        if rclpy.ok():
            rclpy.shutdown()
        # Python's finalization puts SIG_DFL back for every handler set with signal.signal (not for
        # SIG_IGN), and the DDS threads keep the process alive for tens of ms after we return: a second
        # Ctrl-C then killed it with -2 after the robot had stopped. Nothing is left to stop now, so
        # further SIGINTs are ignored; SIGTERM still ends a finalization that hangs.
        signal.signal(signal.SIGINT, signal.SIG_IGN)
    if node is not None and node.busy_threads():
        # A worker still inside a native call (a policy step in torch) when the interpreter finalizes
        # aborts the process ("terminate called without an active exception", exit -6). Everything the
        # node owes the graph is done by now (final stop, node destroyed, rclpy shut down): leave at once.
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)
    return code
