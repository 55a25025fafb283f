"""A fake Unitree Go2 that is a real DDS peer, built with unitree_sdk2py itself.

It serves the sport API (rt/api/sport/request -> rt/api/sport/response) with the SDK's own RPC
server, records every request, integrates the commanded velocity and publishes SportModeState_ on
rt/sportmodestate, so the bridge's Go2 backend is exercised through the real library and real DDS,
without a robot. Loopback only by default.

    python -m sparsevideonav_ros.robot.fake_go2 --interface lo --domain 0 [--record requests.jsonl]
    # then: robot.launch.py robot:=go2 network_interface:=lo   (go2_domain_id must match --domain)

Model (what tests can rely on): Move sets the body velocity at once and holds it for
``move_timeout_s`` (a Go2 keeps walking on its last Move); StopMove zeroes it; StandDown/Damp make
it ignore Move until StandUp/BalanceStand. State convention as in robot/go2.py: position and
velocity in the odometry frame, yaw in imu_state.rpy[2], yaw_speed = body yaw rate.
"""
from __future__ import annotations

import argparse
import json
import math
import signal
import sys
import threading
import time
from typing import Optional, TextIO

from sparsevideonav_ros.robot import unitree_sdk

API_NAMES = {1001: "Damp", 1002: "BalanceStand", 1003: "StopMove", 1004: "StandUp", 1005: "StandDown",
             1008: "Move"}
# SportModeState_.mode values the fake reports
MODE_BALANCE_STAND, MODE_LOCOMOTION, MODE_STAND_DOWN, MODE_LOCKED_STAND, MODE_DAMPING = 1, 3, 5, 6, 7


class FakeGo2:
    """Sport API server + state publisher; ``requests`` holds every request as a dict.

    Args:
        rate_hz: SportModeState publish (and integration) rate.
        move_timeout_s: a Move's velocity is held this long.
        codes: api id -> return code to answer with instead of 0 (fault injection, e.g. {1004: 4202}).
        record: text stream that gets one JSON line per request and per published state.
    """

    def __init__(self, rate_hz: float = 50.0, move_timeout_s: float = 1.0, codes: Optional[dict[int, int]] = None,
                 record: Optional[TextIO] = None) -> None:
        self.rate_hz, self.move_timeout_s = float(rate_hz), float(move_timeout_s)
        self.codes = dict(codes or {})
        self.record = record
        self.requests: list[dict] = []
        self.lock = threading.Lock()
        self.pose = [0.0, 0.0, 0.0]  # x, y, yaw in odom
        self.command = (0.0, 0.0, 0.0)
        self.command_time = -math.inf
        self.mode = MODE_BALANCE_STAND
        self.states_published = 0
        self._stop = threading.Event()
        self._thread: Optional[threading.Thread] = None
        self._record_lock = threading.Lock()

    def start(self, domain_id: int, interface: str = "lo") -> "FakeGo2":
        sdk = unitree_sdk.init_channels(domain_id, interface)
        fake = self

        class SportServer(sdk.Server):
            def __init__(self) -> None:
                super().__init__(sdk.sport_api.SPORT_SERVICE_NAME)

            def Init(self) -> None:
                self._SetApiVersion(sdk.sport_api.SPORT_API_VERSION)
                for api_id in API_NAMES:
                    self._RegistHandler(api_id, lambda parameter, api_id=api_id: fake.handle(api_id, parameter),
                                        False)

        self._server = SportServer()
        self._server.Init()
        self._server.Start(False)
        self._publisher = sdk.ChannelPublisher("rt/sportmodestate", sdk.SportModeState_)
        self._publisher.Init()
        self._message = sdk.default_sport_mode_state()
        self._thread = threading.Thread(target=self._run, name="fake_go2_state", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=2.0)

    # -- sport API ------------------------------------------------------------------------------

    def handle(self, api_id: int, parameter: str) -> tuple[int, str]:
        now = time.monotonic()
        try:
            values = json.loads(parameter) if parameter else {}
        except json.JSONDecodeError:
            values = {"unparsed": parameter}
        entry = {"kind": "request", "t": time.time(), "api_id": api_id, "name": API_NAMES.get(api_id, "?"),
                 "parameter": values}
        code = self.codes.get(api_id, 0)
        entry["code"] = code
        with self.lock:
            self.requests.append(entry)
            if code == 0:
                self._apply(api_id, values, now)
        self._write(entry)
        return code, ""

    def _apply(self, api_id: int, values: dict, now: float) -> None:
        if api_id == 1008:
            if self.mode in (MODE_STAND_DOWN, MODE_DAMPING):
                return  # lying or damped: Move does nothing
            self.command = (float(values["x"]), float(values["y"]), float(values["z"]))
            self.command_time = now
            self.mode = MODE_LOCOMOTION
        elif api_id == 1003:
            self.command, self.command_time = (0.0, 0.0, 0.0), -math.inf
        else:
            self.command, self.command_time = (0.0, 0.0, 0.0), -math.inf
            self.mode = {1001: MODE_DAMPING, 1002: MODE_BALANCE_STAND, 1004: MODE_LOCKED_STAND,
                         1005: MODE_STAND_DOWN}[api_id]

    # -- state ----------------------------------------------------------------------------------

    def _run(self) -> None:
        period = 1.0 / self.rate_hz
        last = time.monotonic()
        next_tick = last
        while not self._stop.is_set():
            next_tick += period
            self._stop.wait(max(0.0, next_tick - time.monotonic()))
            now = time.monotonic()
            dt, last = now - last, now
            with self.lock:
                fresh = now - self.command_time < self.move_timeout_s
                vx, vy, wz = self.command if fresh else (0.0, 0.0, 0.0)
                x, y, yaw = self.pose
                # body velocity -> odom, integrated at the mid-step heading
                mid = yaw + 0.5 * wz * dt
                vx_odom, vy_odom = vx * math.cos(mid) - vy * math.sin(mid), vx * math.sin(mid) + vy * math.cos(mid)
                self.pose = [x + vx_odom * dt, y + vy_odom * dt, math.atan2(math.sin(yaw + wz * dt),
                                                                          math.cos(yaw + wz * dt))]
                if not fresh and self.mode == MODE_LOCOMOTION:
                    self.mode = MODE_BALANCE_STAND
                pose, mode = list(self.pose), self.mode
            yaw = pose[2]
            vx_odom, vy_odom = vx * math.cos(yaw) - vy * math.sin(yaw), vx * math.sin(yaw) + vy * math.cos(yaw)
            self._publish(pose, (vx_odom, vy_odom), wz, mode)

    def _publish(self, pose, velocity_odom, wz: float, mode: int) -> None:
        msg = self._message
        now = time.time()
        msg.stamp.sec, msg.stamp.nanosec = int(now), int((now % 1.0) * 1e9)
        msg.mode, msg.gait_type = mode, 1 if mode == MODE_LOCOMOTION else 0
        msg.body_height = 0.08 if mode in (MODE_STAND_DOWN, MODE_DAMPING) else 0.32
        msg.position[0], msg.position[1], msg.position[2] = pose[0], pose[1], msg.body_height
        msg.velocity[0], msg.velocity[1], msg.velocity[2] = velocity_odom[0], velocity_odom[1], 0.0
        msg.yaw_speed = wz
        yaw = pose[2]
        msg.imu_state.rpy[0], msg.imu_state.rpy[1], msg.imu_state.rpy[2] = 0.0, 0.0, yaw
        # Unitree quaternions are (w, x, y, z)
        msg.imu_state.quaternion[0], msg.imu_state.quaternion[3] = math.cos(yaw / 2), math.sin(yaw / 2)
        msg.imu_state.gyroscope[2] = wz
        self._publisher.Write(msg)
        self.states_published += 1
        self._write({"kind": "state", "t": now, "x": pose[0], "y": pose[1], "yaw": yaw, "vx_odom": velocity_odom[0],
                     "vy_odom": velocity_odom[1], "wz": wz, "mode": mode})

    def _write(self, entry: dict) -> None:
        if self.record is None:
            return
        with self._record_lock:
            self.record.write(json.dumps(entry) + "\n")
            self.record.flush()


def _parse_codes(items: list[str]) -> dict[int, int]:
    codes = {}
    for item in items:
        api, _, code = item.partition("=")
        try:
            codes[int(api)] = int(code)
        except ValueError:
            raise SystemExit(f"--code wants API_ID=CODE (e.g. 1004=4202), got {item!r}") from None
    return codes


def main(argv: Optional[list[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--interface", default="lo", help="network interface (default lo: this machine only)")
    parser.add_argument("--domain", type=int, default=0, help="DDS domain id of the unitree channels (default 0)")
    parser.add_argument("--rate", type=float, default=50.0, help="SportModeState rate in Hz (default 50)")
    parser.add_argument("--move-timeout", type=float, default=1.0, help="seconds a Move is held (default 1)")
    parser.add_argument("--record", help="append one JSON line per request and per state to this file")
    parser.add_argument("--code", action="append", default=[], metavar="API_ID=CODE",
                        help="answer this api id with this return code (fault injection), repeatable")
    args = parser.parse_args(argv)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    record = open(args.record, "a", encoding="utf-8") if args.record else None
    try:
        fake = FakeGo2(rate_hz=args.rate, move_timeout_s=args.move_timeout, codes=_parse_codes(args.code),
                       record=record).start(args.domain, args.interface)
        print(f"fake Go2 ready on {args.interface}, domain {args.domain}", flush=True)
        while not stop.wait(0.2):
            pass
        fake.stop()
    finally:
        if record is not None:
            record.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
