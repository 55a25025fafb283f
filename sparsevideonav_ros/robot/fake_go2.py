"""A fake Unitree Go2 that is a real DDS peer, built with unitree_sdk2py itself.

Two processes, like the two faults a real Go2 link has:
  * the **sport service** (the SDK's own RPC ``Server("sport")`` on rt/api/sport/request ->
    rt/api/sport/response). It honours the request header: a ``noreply`` request (Move) gets no
    response; other requests are answered with the code configured for their api id (fault
    injection), or not at all for ``silent`` api ids (a robot that stops answering).
  * the **robot**: integrates the accepted commands, runs the posture state machine and publishes
    SportModeState_ on rt/sportmodestate.
Kill or freeze either one (their pids are printed) and the other goes on: "state lost, service
alive" and "service dead, state alive" are separate faults. A launcher process starts both and
ends both on SIGINT/SIGTERM.

    python -m sparsevideonav_ros.robot.fake_go2 [--interface lo] [--domain 150] [--record requests.jsonl]
    # then: robot.launch.py robot:=go2 with go2_network_interface:=lo go2_domain_id:=150

The default domain is 150, not 0 (the real Go2's), so a fake started by mistake on a robot's network
never answers for the robot, and the loopback interface is the default for the same reason.

Posture state machine (SportModeState_.error_code as firmware >= V1.1.6 reports the state; mode as
older firmware documented it), facts in docs/go2.md:
  1013 Balance Standing (mode 1)  - accepts Move; walking reports 1015 Regular Walk (mode 3)
  1002 Standing Lock (mode 6)     - after StandUp: joints locked, Move ignored until BalanceStand
                                    (or ``standing_lock_s`` elapsed; default: until BalanceStand)
  1004 Crouch (mode 5)            - after StandDown: Move ignored
  1001 Damping (mode 7)           - after Damp: Move ignored
Move sets the body velocity at once and holds it for ``move_timeout_s`` (a Go2 keeps walking on its
last Move); StopMove zeroes it.

Record file (``--record``): one JSON line per event, written by both processes:
  {"kind": "request", "t", "api_id", "name", "parameter", "noreply"}  every request as it arrives
      (a tap reader of its own: seen even when the service is frozen or silent)
  {"kind": "response", "t", "api_id", "code"}                         every response sent
  {"kind": "state", "t", "x", "y", "yaw", "vx_odom", "vy_odom", "wz", "error_code", "mode"}
"""
from __future__ import annotations

import argparse
import json
import math
import multiprocessing
import os
import queue
import signal
import sys
import threading
import time
from dataclasses import dataclass, field
from typing import Optional

from sparsevideonav_ros.robot import unitree_sdk

DEFAULT_DOMAIN = 150
API_NAMES = {1: "GetApiVersion", 1001: "Damp", 1002: "BalanceStand", 1003: "StopMove", 1004: "StandUp",
             1005: "StandDown", 1008: "Move"}
# error_code (robot state) -> old-firmware mode, for the fake's SportModeState_
BALANCE_STANDING, REGULAR_WALK, STANDING_LOCK, CROUCH, DAMPING = 1013, 1015, 1002, 1004, 1001
MODE_OF_STATE = {BALANCE_STANDING: 1, REGULAR_WALK: 3, STANDING_LOCK: 6, CROUCH: 5, DAMPING: 7}
STATE_AFTER_API = {1001: DAMPING, 1002: BALANCE_STANDING, 1004: STANDING_LOCK, 1005: CROUCH}


class EventLog:
    """Appends JSON lines to one file from several processes (O_APPEND: each line lands whole)."""

    def __init__(self, path: Optional[str]) -> None:
        self._fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644) if path else None

    def write(self, entry: dict) -> None:
        if self._fd is not None:
            os.write(self._fd, (json.dumps(entry) + "\n").encode())

    def close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None


# -- the robot: state machine + integration --------------------------------------------------------

@dataclass
class RobotModel:
    """Posture state machine and planar integration; no DDS (unit-testable).

    pose: x, y (m), yaw (rad) in odom. command: body vx, vy (m/s), wz (rad/s).
    """

    move_timeout_s: float = 1.0
    standing_lock_s: float = math.inf
    state: int = BALANCE_STANDING
    pose: list = field(default_factory=lambda: [0.0, 0.0, 0.0])
    command: tuple = (0.0, 0.0, 0.0)
    command_time: float = -math.inf
    locked_since: float = -math.inf

    def apply(self, api_id: int, parameter: dict, now: float) -> None:
        """A request the sport service accepted."""
        if api_id == 1008:
            if self.state in (BALANCE_STANDING, REGULAR_WALK):
                self.command = (float(parameter["x"]), float(parameter["y"]), float(parameter["z"]))
                self.command_time = now
            return  # locked, lying or damped: Move is ignored (the SDK call still "succeeds": no reply)
        self.command, self.command_time = (0.0, 0.0, 0.0), -math.inf
        if api_id in STATE_AFTER_API:
            self.state = STATE_AFTER_API[api_id]
            if self.state == STANDING_LOCK:
                self.locked_since = now

    def advance(self, now: float, dt: float) -> tuple[float, float, float]:
        """Integrate dt seconds ending at now; returns the body velocity (vx, vy, wz) it moved with."""
        if self.state == STANDING_LOCK and now - self.locked_since >= self.standing_lock_s:
            self.state = BALANCE_STANDING
        fresh = now - self.command_time < self.move_timeout_s
        vx, vy, wz = self.command if fresh else (0.0, 0.0, 0.0)
        if self.state in (BALANCE_STANDING, REGULAR_WALK):
            self.state = REGULAR_WALK if (vx, vy, wz) != (0.0, 0.0, 0.0) else BALANCE_STANDING
        x, y, yaw = self.pose
        mid = yaw + 0.5 * wz * dt  # body velocity -> odom at the mid-step heading
        self.pose = [x + (vx * math.cos(mid) - vy * math.sin(mid)) * dt,
                     y + (vx * math.sin(mid) + vy * math.cos(mid)) * dt,
                     math.atan2(math.sin(yaw + wz * dt), math.cos(yaw + wz * dt))]
        return vx, vy, wz


def run_robot(domain_id: int, interface: str, commands: "multiprocessing.Queue", record: Optional[str],
              rate_hz: float, move_timeout_s: float, standing_lock_s: float, ready: "multiprocessing.Event") -> None:
    """The robot process: accepted requests from the sport service in, SportModeState_ out."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the launcher ends us (SIGTERM)
    signal.signal(signal.SIGTERM, lambda *_: os._exit(0))
    sdk = unitree_sdk.init_channels(domain_id, interface)
    log = EventLog(record)
    publisher = sdk.ChannelPublisher("rt/sportmodestate", sdk.SportModeState_)
    publisher.Init()
    message = sdk.default_sport_mode_state()
    robot = RobotModel(move_timeout_s=move_timeout_s, standing_lock_s=standing_lock_s)
    ready.set()
    period = 1.0 / rate_hz
    last = next_tick = time.monotonic()
    while True:
        next_tick += period
        time.sleep(max(0.0, next_tick - time.monotonic()))
        now = time.monotonic()
        while True:
            try:
                api_id, parameter = commands.get_nowait()
            except queue.Empty:
                break
            robot.apply(api_id, parameter, now)
        vx, vy, wz = robot.advance(now, now - last)
        last = now
        x, y, yaw = robot.pose
        vx_odom, vy_odom = vx * math.cos(yaw) - vy * math.sin(yaw), vx * math.sin(yaw) + vy * math.cos(yaw)
        wall = time.time()
        message.stamp.sec, message.stamp.nanosec = int(wall), int((wall % 1.0) * 1e9)
        message.error_code, message.mode = robot.state, MODE_OF_STATE[robot.state]
        message.gait_type = 1 if robot.state == REGULAR_WALK else 0
        message.body_height = 0.08 if robot.state in (CROUCH, DAMPING) else 0.32
        message.position[0], message.position[1], message.position[2] = x, y, message.body_height
        message.velocity[0], message.velocity[1], message.velocity[2] = vx_odom, vy_odom, 0.0
        message.yaw_speed = wz
        message.imu_state.rpy[2] = yaw
        # Unitree quaternions are (w, x, y, z)
        message.imu_state.quaternion[0], message.imu_state.quaternion[3] = math.cos(yaw / 2), math.sin(yaw / 2)
        message.imu_state.gyroscope[2] = wz
        publisher.Write(message)
        log.write({"kind": "state", "t": wall, "x": x, "y": y, "yaw": yaw, "vx_odom": vx_odom, "vy_odom": vy_odom,
                   "wz": wz, "error_code": robot.state, "mode": MODE_OF_STATE[robot.state]})


# -- the sport service ------------------------------------------------------------------------------

def run_sport_service(domain_id: int, interface: str, commands: "multiprocessing.Queue", record: Optional[str],
                      codes: dict[int, int], silent: frozenset, ready: "multiprocessing.Event") -> None:
    """The sport service process: the SDK's RPC server, plus a tap that logs every request on arrival."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, lambda *_: os._exit(0))
    sdk = unitree_sdk.init_channels(domain_id, interface)
    log = EventLog(record)

    def tap(request) -> None:  # SDK reader thread: log first, whatever the server does with it
        try:
            parameter = json.loads(request.parameter) if request.parameter else {}
        except json.JSONDecodeError:
            parameter = {"unparsed": request.parameter}
        api_id = int(request.header.identity.api_id)
        log.write({"kind": "request", "t": time.time(), "api_id": api_id, "name": API_NAMES.get(api_id, "?"),
                   "parameter": parameter, "noreply": bool(request.header.policy.noreply)})

    request_tap = sdk.ChannelSubscriber(f"rt/api/{sdk.sport_api.SPORT_SERVICE_NAME}/request", sdk.Request_)
    request_tap.Init(tap, 100)

    def handle(api_id: int, parameter: str) -> tuple[int, str]:
        code = codes.get(api_id, 0)
        if code == 0:
            try:
                values = json.loads(parameter) if parameter else {}
            except json.JSONDecodeError:
                return unitree_sdk.RPC_ERR_SERVER_API_PARAMETER, ""
            commands.put((api_id, values))
        return code, ""

    class SportServer(sdk.Server):
        def __init__(self) -> None:
            super().__init__(sdk.sport_api.SPORT_SERVICE_NAME)

        def Init(self) -> None:  # noqa: N802 - the SDK's method name
            self._SetApiVersion(sdk.sport_api.SPORT_API_VERSION)
            for api_id in API_NAMES:
                if api_id >= 100:  # 1 (api version) is answered by the SDK's Server itself
                    self._RegistHandler(api_id, lambda parameter, api_id=api_id: handle(api_id, parameter), False)

        def _SendResponse(self, response) -> None:  # noqa: N802 - SDK hook; noreply requests never get here
            api_id = int(response.header.identity.api_id)
            if api_id in silent or "all" in silent:
                return  # a robot that does not answer: the client times out (3104)
            log.write({"kind": "response", "t": time.time(), "api_id": api_id,
                       "code": int(response.header.status.code)})
            super()._SendResponse(response)

    server = SportServer()
    server.Init()
    server.Start(False)
    ready.set()
    threading.Event().wait()  # serve until terminated


# -- launcher ---------------------------------------------------------------------------------------

def _parse_codes(items: list[str]) -> dict[int, int]:
    codes = {}
    for item in items:
        api, _, code = item.partition("=")
        try:
            codes[int(api)] = int(code)
        except ValueError:
            raise SystemExit(f"--code wants API_ID=CODE (e.g. 1004=4202), got {item!r}") from None
    return codes


def _parse_silent(items: list[str]) -> frozenset:
    try:
        return frozenset("all" if item == "all" else int(item) for item in items)
    except ValueError:
        raise SystemExit(f"--silent wants an api id (e.g. 1004) or 'all', got {items!r}") from None


def main(argv: Optional[list[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--interface", default="lo", help="network interface (default lo: this machine only)")
    parser.add_argument("--domain", type=int, default=DEFAULT_DOMAIN,
                        help=f"DDS domain id of the unitree channels (default {DEFAULT_DOMAIN}; a real Go2 uses 0)")
    parser.add_argument("--rate", type=float, default=50.0, help="SportModeState rate in Hz (default 50)")
    parser.add_argument("--move-timeout", type=float, default=1.0, help="seconds a Move is held (default 1)")
    parser.add_argument("--standing-lock", type=float, default=math.inf,
                        help="seconds the Standing Lock after StandUp lasts (default: until BalanceStand)")
    parser.add_argument("--record", help="append one JSON line per request, response and state to this file")
    parser.add_argument("--code", action="append", default=[], metavar="API_ID=CODE",
                        help="answer this api id with this return code (fault injection), repeatable")
    parser.add_argument("--silent", action="append", default=[], metavar="API_ID",
                        help="never answer this api id ('all': no response at all), repeatable")
    args = parser.parse_args(argv)
    codes, silent = _parse_codes(args.code), _parse_silent(args.silent)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    spawn = multiprocessing.get_context("spawn")  # each process initialises its own DDS participant
    commands = spawn.Queue()  # unbounded: a frozen robot process never blocks the service
    robot_ready, service_ready = spawn.Event(), spawn.Event()
    robot = spawn.Process(target=run_robot, name="fake_go2_robot", daemon=True,
                          args=(args.domain, args.interface, commands, args.record, args.rate, args.move_timeout,
                                args.standing_lock, robot_ready))
    service = spawn.Process(target=run_sport_service, name="fake_go2_sport", daemon=True,
                            args=(args.domain, args.interface, commands, args.record, codes, silent, service_ready))
    robot.start()
    service.start()
    if not (robot_ready.wait(30) and service_ready.wait(30)):
        print("fake Go2 failed to start", file=sys.stderr, flush=True)
        return 1
    print(f"fake Go2 ready on {args.interface}, domain {args.domain}: sport service pid {service.pid}, "
          f"robot state pid {robot.pid}", flush=True)
    while not stop.wait(0.2):
        pass
    for child in (service, robot):
        if child.is_alive():
            os.kill(child.pid, signal.SIGCONT)  # a frozen child must be able to die
            child.terminate()
            child.join(timeout=5)
    return 0


if __name__ == "__main__":
    sys.exit(main())
