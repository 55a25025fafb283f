"""A real Unitree Go2 over unitree_sdk2py: SportClient for motion, rt/sportmodestate for odometry.

No rclpy here. The SDK blocks for up to its timeout when the robot does not answer (Move waits for
a subscriber, request/response calls for the reply), so every SDK call runs on one worker thread:
the bridge's control loop and services never wait on the network. Calls run in order; a queued
Move is replaced by a newer one and dropped by a stop, so the robot never gets a stale velocity.
Every non-zero SDK return code is reported by name (3102 RPC_ERR_CLIENT_SEND, 3104
RPC_ERR_CLIENT_API_TIMEOUT, ...): as the future's RobotError for service actions, and through
take_errors() for background calls (Move, StopMove).

State convention (Go2 sport mode): position (x, y, z) and velocity (vx, vy, vz) in the odometry
frame, yaw from imu_state.rpy[2], yaw_speed = body yaw rate. Odometry twist is body-frame, so the
velocity is rotated by -yaw.
"""
from __future__ import annotations

import collections
import math
import re
import socket
import threading
import time
from concurrent.futures import Future
from typing import Callable, Optional

import numpy as np

from sparsevideonav_ros.robot import unitree_sdk
from sparsevideonav_ros.robot.base import ACTIONS, RobotBackend, RobotError, RobotState

STATE_TOPIC = "rt/sportmodestate"
# action -> SportClient method
SPORT_METHODS = {"stand_up": "StandUp", "stand_down": "StandDown", "balance_stand": "BalanceStand",
                 "damp": "Damp", "stop_move": "StopMove"}
_INTERFACE_NAME = re.compile(r"^[A-Za-z0-9_.:@-]{1,64}$")


def network_interfaces() -> list[str]:
    return sorted(name for _, name in socket.if_nameindex())


def check_interface(interface: str) -> None:
    """RobotError unless ``interface`` is a network interface of this machine (names the ones there are)."""
    if not _INTERFACE_NAME.match(interface or ""):
        raise RobotError(f"network interface {interface!r} is not a valid interface name")
    available = network_interfaces()
    if interface not in available:
        raise RobotError(f"network interface {interface!r} does not exist on this machine; available: "
                         f"{', '.join(available)} (the Go2 is on 192.168.123.0/24: `ip -br addr` shows which NIC)")


def state_from_message(msg) -> tuple[np.ndarray, np.ndarray, dict]:
    """SportModeState_ -> pose (x, y, yaw), body velocity (vx, vy, wz), robot info for diagnostics."""
    yaw = float(msg.imu_state.rpy[2])
    vx_odom, vy_odom = float(msg.velocity[0]), float(msg.velocity[1])
    cos_yaw, sin_yaw = math.cos(yaw), math.sin(yaw)
    velocity = np.array([cos_yaw * vx_odom + sin_yaw * vy_odom, -sin_yaw * vx_odom + cos_yaw * vy_odom,
                         float(msg.yaw_speed)])
    pose = np.array([float(msg.position[0]), float(msg.position[1]), yaw])
    info = {"robot_mode": int(msg.mode), "gait_type": int(msg.gait_type), "body_height": round(float(msg.body_height), 3),
            "robot_error_code": int(msg.error_code), "progress": round(float(msg.progress), 3),
            "roll": round(float(msg.imu_state.rpy[0]), 4), "pitch": round(float(msg.imu_state.rpy[1]), 4),
            "foot_force": list(int(f) for f in msg.foot_force)}
    return pose, velocity, info


class Go2Robot(RobotBackend):
    """SportClient + SportModeState subscriber on ``network_interface`` / ``domain_id``.

    Args:
        network_interface: NIC on the robot's network ('lo' for the fake Go2 in tests).
        domain_id: DDS domain of the robot's channels (a Go2 uses 0).
        timeout_s: SportClient timeout: no subscriber -> 3102, no answer -> 3104 after this long.
        state_timeout_s: health() reports an error when no state arrived for this long.
        clock: monotonic seconds (injectable for tests of the bookkeeping).
    """

    name = "unitree"

    def __init__(self, network_interface: str, domain_id: int = 0, timeout_s: float = 1.0,
                 state_timeout_s: float = 0.5, clock: Callable[[], float] = time.monotonic) -> None:
        if not timeout_s > 0 or not state_timeout_s > 0:
            raise ValueError(f"timeout_s and state_timeout_s must be > 0, got {timeout_s}, {state_timeout_s}")
        self.network_interface, self.domain_id = network_interface, int(domain_id)
        self.timeout_s, self.state_timeout_s = float(timeout_s), float(state_timeout_s)
        self._clock = clock
        self._client = None
        self._subscriber = None
        self._state_lock = threading.Lock()
        self._latest: Optional[tuple[np.ndarray, np.ndarray, dict]] = None
        self._latest_received: Optional[float] = None
        self.states_received = 0
        self._started_at: Optional[float] = None
        self._ops: collections.deque = collections.deque()
        self._cv = threading.Condition()
        self._errors: collections.deque = collections.deque(maxlen=100)
        self._worker: Optional[threading.Thread] = None
        self._closing = False
        self.moves_sent = 0
        self.calls: collections.Counter = collections.Counter()  # SDK calls made, by method name

    # -- connection -----------------------------------------------------------------------------

    def start(self) -> None:
        check_interface(self.network_interface)
        try:
            sdk = unitree_sdk.init_channels(self.domain_id, self.network_interface)
        except (unitree_sdk.SdkUnavailable, RuntimeError) as error:
            raise RobotError(str(error)) from error
        self._subscriber = sdk.ChannelSubscriber(STATE_TOPIC, sdk.SportModeState_)
        self._subscriber.Init(self._on_state, 10)
        client = sdk.SportClient()
        client.SetTimeout(self.timeout_s)
        client.Init()
        self._client = client
        self._started_at = self._clock()
        self._worker = threading.Thread(target=self._work, name="go2_sdk_calls", daemon=True)
        self._worker.start()

    def close(self) -> None:
        """Send what is queued (the final StopMove), then stop the worker; bounded by the SDK timeout."""
        worker = self._worker
        if worker is None:
            return
        with self._cv:
            self._closing = True
            self._drop_queued_moves()
            self._ops.append(("close", None, None))
            self._cv.notify()
        worker.join(timeout=2 * self.timeout_s + 1.0)
        self._worker = None
        if self._subscriber is not None:
            self._subscriber.Close()
            self._subscriber = None

    # -- state ----------------------------------------------------------------------------------

    def _on_state(self, msg) -> None:  # SDK reader thread
        try:
            latest = state_from_message(msg)
        except Exception as error:  # a malformed sample must not kill the SDK's reader thread
            self._record_error(f"bad {STATE_TOPIC} sample: {error!r}")
            return
        with self._state_lock:
            self._latest, self._latest_received = latest, self._clock()
            self.states_received += 1

    def state_age(self) -> Optional[float]:
        with self._state_lock:
            received = self._latest_received
        return None if received is None else self._clock() - received

    def health(self, now: float) -> str:
        if self._started_at is None:
            return "Go2 backend not started"
        age = self.state_age()
        if age is None:
            waited = self._clock() - self._started_at
            if waited < self.state_timeout_s:
                return ""
            return (f"no robot state: nothing on {STATE_TOPIC} for {waited:.1f} s (interface "
                    f"{self.network_interface}, domain {self.domain_id}); is the Go2 on and connected?")
        if age >= self.state_timeout_s:
            return f"robot state lost: last {STATE_TOPIC} {age:.2f} s ago (timeout {self.state_timeout_s} s)"
        return ""

    def read_state(self, now: float) -> Optional[RobotState]:
        with self._state_lock:
            latest, received, seq = self._latest, self._latest_received, self.states_received
        if latest is None:
            return None
        pose, velocity, info = latest
        age = self._clock() - received
        return RobotState(stamp=now - age, pose=pose.copy(), velocity=velocity.copy(),
                          healthy=age < self.state_timeout_s, seq=seq,
                          info={**info, "state_age_s": round(age, 3), "states_received": seq})

    # -- commands (queued for the worker thread) -------------------------------------------------

    def _require_started(self) -> None:
        if self._client is None or self._worker is None:
            raise RobotError("Go2 backend not started (or already closed)")

    def send_velocity(self, vx: float, vy: float, wz: float, now: float) -> None:
        self._require_started()
        values = (float(vx), float(vy), float(wz))
        if not all(math.isfinite(v) for v in values):
            raise RobotError(f"refusing non-finite velocity {values}")
        with self._cv:
            if self._closing:
                return
            if self._ops and self._ops[-1][0] == "move":
                self._ops[-1] = ("move", values, None)  # only the newest velocity matters
            else:
                self._ops.append(("move", values, None))
            self._cv.notify()

    def stop(self, now: float) -> None:
        self._require_started()
        with self._cv:
            self._drop_queued_moves()
            self._ops.append(("call", "stop_move", None))
            self._cv.notify()

    def run_action(self, action: str, now: float) -> "Future[str]":
        future: Future = Future()
        if action not in ACTIONS:
            future.set_exception(RobotError(f"unknown action {action!r}; known: {sorted(ACTIONS)}"))
            return future
        try:
            self._require_started()
        except RobotError as error:
            future.set_exception(error)
            return future
        with self._cv:
            if action in ("stop_move", "stand_down", "damp"):
                self._drop_queued_moves()
            self._ops.append(("call", action, future))
            self._cv.notify()
        return future

    def _drop_queued_moves(self) -> None:
        self._ops = collections.deque(op for op in self._ops if op[0] != "move")

    def stats(self) -> dict:
        calls = dict(self.calls)  # copy: the worker thread updates it
        return {"sdk_calls": " ".join(f"{name}={count}" for name, count in sorted(calls.items())) or "none",
                "moves_sent": self.moves_sent}

    def take_errors(self) -> list[str]:
        errors = []
        while self._errors:
            errors.append(self._errors.popleft())
        return errors

    def _record_error(self, message: str) -> None:
        self._errors.append(message)

    # -- worker ---------------------------------------------------------------------------------

    def _work(self) -> None:
        while True:
            with self._cv:
                while not self._ops:
                    self._cv.wait()
                kind, payload, future = self._ops.popleft()
            if kind == "close":
                return
            if kind == "move":
                self._call("Move", payload, None)
            else:
                self._call(SPORT_METHODS[payload], (), future)

    def _call(self, method: str, args: tuple, future: Optional[Future]) -> None:
        described = f"{method}({', '.join(f'{a:.3f}' for a in args)})"
        try:
            code = getattr(self._client, method)(*args)
        except Exception as error:  # the SDK raises from DDS on a broken participant
            message = f"{described} raised {error!r}"
            code = None
        else:
            message = "" if code == 0 else f"{described} failed: {unitree_sdk.code_name(code)}"
        self.calls[method] += 1
        if method == "Move" and code == 0:
            self.moves_sent += 1
        if future is not None:
            if message:
                future.set_exception(RobotError(message))
            else:
                future.set_result(f"{method}: {unitree_sdk.code_name(0)}")
        elif message:
            self._record_error(message)
