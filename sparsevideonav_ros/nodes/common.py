"""Shared rclpy plumbing: parameters from config dataclasses, QoS by name, the spin loop.

Works with Humble, Jazzy and Kilted rclpy (no `with rclpy.init()`, no newer-only APIs).
"""
from __future__ import annotations

import dataclasses
import signal
import sys
import threading
from typing import Any, Callable, Optional

import rclpy
from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus, KeyValue
from rcl_interfaces.msg import ParameterDescriptor
from rclpy.node import Node
from rclpy.qos import (DurabilityPolicy, HistoryPolicy, QoSProfile, ReliabilityPolicy)

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
    raise ValueError(f"unknown QoS profile {profile_name!r}; known: {stack.QOS_PROFILES}")


def topic_qos(topic: str) -> QoSProfile:
    return qos(stack.TOPICS[topic].qos)


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


OK, WARN, ERROR = 0, 1, 2


class StackNode(Node):
    """Base of our nodes: ``on_shutdown`` runs before the node is destroyed (final stop)."""

    def on_shutdown(self) -> None:
        pass


def run_node(factory: Callable[[], StackNode], args: Optional[list[str]] = None) -> int:
    """Init rclpy, build the node, spin until SIGINT/SIGTERM, call on_shutdown, clean up.

    Exit code 2 when the node refuses its configuration (the error is logged, nothing moves).
    """
    rclpy.init(args=sys.argv if args is None else args)
    stop = threading.Event()

    def request_stop(signum, frame):  # noqa: ARG001 - signal handler signature
        stop.set()

    # rclpy installs its own SIGINT handler that raises inside spin; a flag keeps shutdown orderly.
    signal.signal(signal.SIGTERM, request_stop)
    signal.signal(signal.SIGINT, request_stop)
    node = None
    code = 0
    try:
        node = factory()
        while not stop.is_set() and rclpy.ok():
            rclpy.spin_once(node, timeout_sec=0.05)
    except ConfigError as error:
        logger = node.get_logger() if node else rclpy.logging.get_logger("sparsevideonav_ros")
        logger.fatal(f"refusing to start: {error}")
        print(f"[FATAL] refusing to start: {error}", file=sys.stderr, flush=True)
        code = 2
    finally:
        if node is not None:
            try:
                node.on_shutdown()
            finally:
                node.destroy_node()
        if rclpy.ok():
            rclpy.shutdown()
    return code
