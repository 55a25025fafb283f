"""A real Unitree Go2 over unitree_sdk2py: SportClient for motion, rt/sportmodestate for odometry.

No rclpy here. Every SDK call can block: a request-reply call (StopMove, StandUp, ...) waits up to
its timeout for the answer, and any call waits up to its timeout for a subscriber. So nothing the
bridge calls here touches the network; three threads do, each with its own SportClient:
  * motion: the newest velocity as Move (no-reply, fire-and-forget). A stop is a zero Move first,
    so the stop reaches the robot at once even while a posture call waits for a silent robot;
  * calls:  request-reply calls in order (StopMove jumps the queue): postures and the StopMove that
    follows every zero Move;
  * probe:  the RPC framework's api-version request every link_timeout_s / 4 with a short timeout.
    Move gets no reply, so without it a dead sport service looks healthy while state still flows.
Every non-zero SDK return code is reported by name (3102 RPC_ERR_CLIENT_SEND, 3104
RPC_ERR_CLIENT_API_TIMEOUT, ...): as the future's RobotError for service actions, and through
take_errors() for background calls (Move, StopMove).

Readiness (firmware >= V1.1.6 reports the sport state machine in SportModeState_.error_code; the
table is in docs/go2.md): Move is sent only once a state has arrived and only in the states of
``move_states``. StandUp leaves the robot in Standing Lock (1002), where Move is ignored until
BalanceStand; motion_blocker() says so and names the remedy.

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
from sparsevideonav_ros.robot.base import ACTIONS, MotionBlocker, RobotBackend, RobotError, RobotState

STATE_TOPIC = "rt/sportmodestate"
# SportModeState_.error_code = the sport state machine (Motion Services Interface V2.0, firmware >= V1.1.6)
ROBOT_STATES: dict[int, str] = {
    100: "Agile", 1001: "Damping", 1002: "Standing Lock", 1004: "Crouch", 1006: "Greet/dance action",
    1007: "Sit", 1013: "Balance Standing", 1015: "Regular Walk", 1016: "Regular Run", 1017: "Endurance",
    2006: "Crouch", 2010: "Classic", 2011: "Handstand/flip action", 2012: "Handstand/flip action",
    2013: "Handstand/flip action", 2014: "Handstand/flip action", 2016: "Cross Step", 2017: "Upright",
}
# States that take Move (derived from the V2.0 table, not stated by Unitree: walking and balanced states).
DEFAULT_MOVE_STATES: tuple[int, ...] = (100, 1013, 1015, 1016, 1017, 2010)
STANDING_LOCK = 1002
# action -> SportClient method
SPORT_METHODS = {"stand_up": "StandUp", "stand_down": "StandDown", "balance_stand": "BalanceStand",
                 "damp": "Damp", "stop_move": "StopMove"}
POSTURE_METHODS = ("StandUp", "StandDown", "BalanceStand", "Damp")
_INTERFACE_NAME = re.compile(r"^[A-Za-z0-9_.:@-]{1,64}$")


def state_name(error_code: int) -> str:
    """'Standing Lock (error_code 1002)'; codes outside the table keep their number."""
    return f"{ROBOT_STATES.get(error_code, 'unknown state')} (error_code {error_code})"


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
            "robot_state": ROBOT_STATES.get(int(msg.error_code), "unknown"),
            "roll": round(float(msg.imu_state.rpy[0]), 4), "pitch": round(float(msg.imu_state.rpy[1]), 4),
            "foot_force": list(int(f) for f in msg.foot_force)}
    return pose, velocity, info


class Go2Robot(RobotBackend):
    """SportClients + SportModeState subscriber on ``network_interface`` / ``domain_id``.

    Args:
        network_interface: NIC on the robot's network ('lo' for the fake Go2 in tests).
        domain_id: DDS domain of the robot's channels (a Go2 uses 0).
        timeout_s: request-reply timeout of posture calls and StopMove: no answer -> 3104 after this long.
        state_timeout_s: health() reports an error when no state arrived for this long.
        link_timeout_s: health() reports an error when the sport service answered no probe for this long.
        move_states: error_code values in which Move is sent (DEFAULT_MOVE_STATES).
        clock: monotonic seconds (injectable for tests of the bookkeeping).
    """

    name = "unitree"
    # A no-reply Move waits this long at most for the robot's request reader (SDK Write polls every 0.1 s):
    # when the sport service is gone, the motion thread fails fast instead of stalling the next stop.
    MOVE_SEND_TIMEOUT_S = 0.1
    POSTURE_SETTLE_S = 0.1  # > two state periods of a Go2 (rt/sportmodestate at ~500 Hz; the fake: 50 Hz)

    def __init__(self, network_interface: str, domain_id: int = 0, timeout_s: float = 1.0,
                 state_timeout_s: float = 0.5, link_timeout_s: float = 0.8,
                 move_states: tuple[int, ...] = DEFAULT_MOVE_STATES, clock: Callable[[], float] = time.monotonic) -> None:
        if not timeout_s > 0 or not state_timeout_s > 0 or not link_timeout_s > 0:
            raise ValueError(f"timeouts must be > 0, got {timeout_s}, {state_timeout_s}, {link_timeout_s}")
        self.network_interface, self.domain_id = network_interface, int(domain_id)
        self.timeout_s, self.state_timeout_s = float(timeout_s), float(state_timeout_s)
        self.link_timeout_s = float(link_timeout_s)
        self.move_states = frozenset(int(code) for code in move_states)
        self._clock = clock
        self._subscriber = None
        self._clients: dict[str, object] = {}
        self._state_lock = threading.Lock()
        self._latest: Optional[tuple[np.ndarray, np.ndarray, dict]] = None
        self._latest_received: Optional[float] = None
        self.states_received = 0
        self._started_at: Optional[float] = None
        # One lock, one condition per SDK thread: a velocity update wakes only the motion thread.
        self._lock = threading.Lock()
        self._motion_cv = threading.Condition(self._lock)  # motion
        self._calls_cv = threading.Condition(self._lock)
        self._probe_cv = threading.Condition(self._lock)
        self._velocity: Optional[tuple[float, float, float]] = None  # newest velocity not yet sent
        self._hold_until: Optional[float] = None  # time.monotonic() deadline of the last velocity
        self._deadline_stopped = False  # the motion thread stopped at hold_until, no velocity since
        # A posture call changes the state machine a moment after it answers: no Move until a state received
        # this late shows where the robot is now (time.monotonic / self._clock).
        self._posture_settles_at: Optional[float] = None
        self._calls: collections.deque = collections.deque()  # (action, future or None)
        self._probe_ok_at: Optional[float] = None
        self._probe_error = "no reply yet"
        self._errors: collections.deque = collections.deque(maxlen=100)
        self._threads: list[threading.Thread] = []
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
        for role, timeout in (("motion", self.MOVE_SEND_TIMEOUT_S), ("calls", self.timeout_s),
                              ("probe", self.link_timeout_s / 2)):
            client = sdk.SportClient()
            client.SetTimeout(timeout)
            client.Init()
            self._clients[role] = client
        self._started_at = self._clock()
        for target, name in ((self._motion_loop, "go2_motion"), (self._call_loop, "go2_calls"),
                             (self._probe_loop, "go2_probe")):
            thread = threading.Thread(target=target, name=name, daemon=True)
            thread.start()
            self._threads.append(thread)

    def close(self) -> None:
        """Send what is queued (the final zero Move and StopMove), then stop the threads; bounded by the
        SDK timeout."""
        if not self._threads:
            return
        with self._lock:
            self._closing = True
            kept = collections.deque()
            for action, future in self._calls:  # only the final stop still goes out
                if action == "stop_move" and future is None:
                    kept.append((action, future))
                elif future is not None:
                    future.set_exception(RobotError(f"go2/{action} not sent: the bridge is shutting down"))
            self._calls = kept
            for condition in (self._motion_cv, self._calls_cv, self._probe_cv):
                condition.notify_all()
        for thread in self._threads:
            thread.join(timeout=2 * self.timeout_s + 1.0)
        self._threads = []
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
        problems = []
        clock = self._clock()
        age = self.state_age()
        if age is None:
            waited = clock - self._started_at
            if waited >= self.state_timeout_s:
                problems.append(f"no robot state: nothing on {STATE_TOPIC} for {waited:.1f} s (interface "
                                f"{self.network_interface}, domain {self.domain_id}); is the Go2 on and connected?")
        elif age >= self.state_timeout_s:
            problems.append(f"robot state lost: last {STATE_TOPIC} {age:.2f} s ago (timeout {self.state_timeout_s} s)")
        with self._lock:
            answered_at, probe_error = self._probe_ok_at, self._probe_error
        silent_for = clock - (answered_at if answered_at is not None else self._started_at)
        if silent_for >= self.link_timeout_s:
            problems.append(f"sport service not answering: no reply to the api-version probe for {silent_for:.1f} s "
                            f"(last: {probe_error}); Move is fire-and-forget, so nothing is commanded")
        return "; ".join(problems)

    def motion_blocker(self, now: float) -> Optional[MotionBlocker]:
        with self._state_lock:
            latest = self._latest
        if latest is None:
            return MotionBlocker(f"waiting for the first {STATE_TOPIC}: no Move before the robot's state is known")
        with self._state_lock:
            received, settled_after = self._latest_received, self._posture_settles_at
        if settled_after is not None and received < settled_after:
            return MotionBlocker("waiting for the robot's state after a posture call (its state machine reports "
                                 "the new posture a moment later)")
        code = latest[2]["robot_error_code"]
        if code in self.move_states:
            return None
        if code == STANDING_LOCK:
            return MotionBlocker(f"robot in {state_name(code)}: joints locked after StandUp, Move is ignored; "
                                 f"call go2/balance_stand (or set go2_auto_balance_stand)", remedy="balance_stand")
        return MotionBlocker(f"robot in {state_name(code)}, which does not take Move (go2_move_states: "
                             f"{sorted(self.move_states)}); call go2/balance_stand")

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

    # -- commands (handed to the SDK threads; never block) ---------------------------------------

    def _require_started(self) -> None:
        if not self._threads:
            raise RobotError("Go2 backend not started (or already closed)")

    def send_velocity(self, vx: float, vy: float, wz: float, now: float, hold_until: Optional[float] = None) -> None:
        self._require_started()
        values = (float(vx), float(vy), float(wz))
        if not all(math.isfinite(v) for v in values):
            raise RobotError(f"refusing non-finite velocity {values}")
        with self._state_lock:
            if self._latest is None:
                return  # no Move before the first robot state: we do not know the robot can take it
        with self._motion_cv:
            if self._closing:
                return
            self._velocity = values  # only the newest velocity matters
            self._hold_until = hold_until
            self._deadline_stopped = False
            self._motion_cv.notify_all()

    def stop(self, now: float) -> None:
        """Zero Move now (no-reply: reaches the robot whatever the call thread waits on), then StopMove.
        Not sent twice for one deadline: when the motion thread already stopped at the velocity's
        hold_until and no velocity came since, the bridge's stop at that deadline finds it done."""
        self._require_started()
        with self._lock:
            if self._deadline_stopped:
                self._deadline_stopped = False  # any later stop (an e-stop) goes out again
                return
            self._queue_stop()

    def _queue_stop(self) -> None:
        """(self._lock held) zero Move first, StopMove at the head of the call queue."""
        self._velocity, self._hold_until = (0.0, 0.0, 0.0), None
        if not any(action == "stop_move" and future is None for action, future in self._calls):
            self._calls.appendleft(("stop_move", None))
        self._motion_cv.notify_all()
        self._calls_cv.notify_all()

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
        with self._lock:
            if action in ("stop_move", "stand_down", "damp"):
                self._velocity = None  # a velocity about to be sent must not follow them
            self._calls.append((action, future))
            self._calls_cv.notify_all()
        return future

    def stats(self) -> dict:
        calls = dict(self.calls)  # copy: the SDK threads update it
        with self._lock:
            answered_at = self._probe_ok_at
        return {"sdk_calls": " ".join(f"{name}={count}" for name, count in sorted(calls.items())) or "none",
                "moves_sent": self.moves_sent,
                "sport_service_answered_s_ago": ("never" if answered_at is None
                                                 else round(self._clock() - answered_at, 2))}

    def take_errors(self) -> list[str]:
        errors = []
        while self._errors:
            errors.append(self._errors.popleft())
        return errors

    def _record_error(self, message: str) -> None:
        self._errors.append(message)

    # -- SDK threads ----------------------------------------------------------------------------

    def _motion_loop(self) -> None:
        while True:
            with self._motion_cv:
                while self._velocity is None and not self._closing:
                    if self._hold_until is None:
                        self._motion_cv.wait()
                        continue
                    remaining = self._hold_until - time.monotonic()
                    if remaining <= 0.0:  # the watchdog's deadline, met here rather than a thread away
                        self._queue_stop()
                        self._deadline_stopped = True
                        break
                    self._motion_cv.wait(remaining)
                velocity, self._velocity = self._velocity, None
            if velocity is not None:
                self._call("motion", "Move", velocity, None)
            elif self._closing:
                return

    def _call_loop(self) -> None:
        while True:
            with self._lock:
                while not self._calls and not self._closing:
                    self._calls_cv.wait()
                if not self._calls:
                    return  # closing, and everything queued has been sent
                action, future = self._calls.popleft()
            self._call("calls", SPORT_METHODS[action], (), future)

    def _probe_loop(self) -> None:
        period = self.link_timeout_s / 4
        client = self._clients["probe"]
        while True:
            started = self._clock()
            # Client._CallBase, not the public GetServerApiVersion: that one prints a line on every failure,
            # i.e. several per second for as long as the robot is away.
            try:
                code, _ = client._CallBase(unitree_sdk.API_ID_API_VERSION, "{}", 0, 0)  # noqa: SLF001
            except Exception as error:  # a broken DDS participant raises
                code, error_text = None, repr(error)
            else:
                error_text = unitree_sdk.code_name(code)
            self.calls["probe"] += 1
            with self._lock:
                if code == 0:
                    self._probe_ok_at = self._clock()
                else:
                    self._probe_error = error_text
                while not self._closing and self._clock() < started + period:
                    self._probe_cv.wait(started + period - self._clock())
                if self._closing:
                    return

    def _call(self, role: str, method: str, args: tuple, future: Optional[Future]) -> None:
        described = f"{method}({', '.join(f'{a:.3f}' for a in args)})"
        try:
            code = getattr(self._clients[role], method)(*args)
        except Exception as error:  # the SDK raises from DDS on a broken participant
            message = f"{described} raised {error!r}"
            code = None
        else:
            message = "" if code == 0 else f"{described} failed: {unitree_sdk.code_name(code)}"
        self.calls[method] += 1
        if method == "Move" and code == 0:
            self.moves_sent += 1
        if method in POSTURE_METHODS:
            with self._state_lock:
                self._posture_settles_at = self._clock() + self.POSTURE_SETTLE_S
        if future is not None:
            if message:
                future.set_exception(RobotError(message))
            else:
                future.set_result(f"{method}: {unitree_sdk.code_name(0)}")
        elif message:
            self._record_error(message)
