"""go2_bridge_node: cmd_vel -> robot backend, guarded by the watchdog; odometry out.

Zero velocity (and one StopMove) on: no cmd_vel for cmd_timeout_s, e-stop, non-finite command,
robot link faults (no state for go2_state_timeout_s, sport service silent for go2_link_timeout_s),
a robot state that takes no Move (Standing Lock, lying, damped), shutdown. The e-stop is latched:
`estop` True from any publisher (reliable or best effort, volatile or transient local) engages it,
only the `estop/release` service clears it.

Threads, so that nothing delays a stop:
  * the control thread owns the loop: at rate_hz it sends the watchdog's command, and it wakes at
    the instant the last cmd_vel expires, so the stop goes out at the bound, not a tick later;
  * executor threads run callbacks: e-stop and cmd_vel in the safety group (they only touch the
    watchdog and hand the stop to the backend, which never blocks), posture services in their own
    group (they wait for the robot's answer; one at a time, so they can never take every thread).
Everything that touches the watchdog or the backend holds `self.lock`; no call made under it waits
on the network (the Go2 backend hands SDK calls to threads of its own).
"""
from __future__ import annotations

import math
import sys
import threading
import time
from typing import Optional

from diagnostic_msgs.msg import DiagnosticArray
from geometry_msgs.msg import TransformStamped, Twist
from nav_msgs.msg import Odometry
from rclpy.callback_groups import MutuallyExclusiveCallbackGroup, ReentrantCallbackGroup
from std_msgs.msg import Bool, Header
from std_srvs.srv import Trigger

from sparsevideonav_ros.configs import BridgeNodeConfig
from sparsevideonav_ros.core import se2
from sparsevideonav_ros.core.status import ErrorLog
from sparsevideonav_ros.core.watchdog import SafetyWatchdog, VelocityLimits
from sparsevideonav_ros.nodes import common, convert
from sparsevideonav_ros.robot.base import MotionBlocker, RobotBackend, RobotError, RobotState
from sparsevideonav_ros.robot.unitree_sdk import SdkUnavailable

NAME = "go2_bridge_node"

try:  # /tf needs tf2_msgs, present on a ROS install but not among the PyPI wheels
    from tf2_msgs.msg import TFMessage
except ImportError:  # pragma: no cover - depends on the install
    TFMessage = None

# The stop is handed to the robot this long before cmd_timeout_s (counted from the cmd_vel's arrival)
# expires, so that it reaches the robot within cmd_timeout_s of the cmd_vel being *sent*: the cmd_vel's
# own delivery and executor dispatch, the hand-off to the SDK thread and the robot's DDS read add up
# to 2-7 ms on a loaded 2-core machine (test_go2.py measures the whole chain, publisher to robot).
STOP_LEAD_S = 0.015
# Actions that move the body: refused while the e-stop is engaged (stop_move and damp stay allowed).
MOTION_ACTIONS = ("stand_up", "stand_down", "balance_stand")
AUTO_BALANCE_RETRY_S = 3.0  # go2_auto_balance_stand: at most one BalanceStand per this many seconds
UNMEASURED_VARIANCE = 1e6  # covariance convention for what the odometry does not estimate (z, roll, pitch)


def make_backend(config: BridgeNodeConfig) -> RobotBackend:
    if config.backend == "sim":
        from sparsevideonav_ros.robot.sim import SimRobot
        return SimRobot((config.sim_initial_x, config.sim_initial_y, config.sim_initial_yaw),
                        response_time_s=config.sim_response_time_s)
    if config.backend in ("unitree", "go2"):
        from sparsevideonav_ros.robot.go2 import Go2Robot
        return Go2Robot(config.go2_network_interface, config.go2_domain_id, timeout_s=config.go2_timeout_s,
                        state_timeout_s=config.go2_state_timeout_s, link_timeout_s=config.go2_link_timeout_s,
                        move_states=tuple(config.go2_move_states))
    raise common.ConfigError(f"unknown robot backend {config.backend!r}")


def odometry_covariances(config: BridgeNodeConfig) -> tuple[list[float], list[float]]:
    """Row-major 6x6 pose and twist covariances (x, y, z, roll, pitch, yaw) of the published odometry."""
    pose = [0.0] * 36
    twist = [0.0] * 36
    for index, variance in enumerate((config.odom_position_stddev_m ** 2, config.odom_position_stddev_m ** 2,
                                      UNMEASURED_VARIANCE, UNMEASURED_VARIANCE, UNMEASURED_VARIANCE,
                                      config.odom_yaw_stddev_rad ** 2)):
        pose[7 * index] = variance
    for index, variance in enumerate((config.odom_velocity_stddev_mps ** 2, config.odom_velocity_stddev_mps ** 2,
                                      UNMEASURED_VARIANCE, UNMEASURED_VARIANCE, UNMEASURED_VARIANCE,
                                      config.odom_yaw_rate_stddev_radps ** 2)):
        twist[7 * index] = variance
    return pose, twist


class Go2BridgeNode(common.StackNode):
    # e-stop/cmd_vel callbacks, posture calls waiting for the robot, the status timer: in parallel
    executor_threads = 4

    def __init__(self) -> None:
        super().__init__(NAME)
        self.config: BridgeNodeConfig = common.declare_config(self, BridgeNodeConfig)
        limits = VelocityLimits(max_vx=self.config.max_vx, min_vx=self.config.min_vx, max_vy=self.config.max_vy,
                                max_wz=self.config.max_wz)
        # The watchdog runs on the monotonic clock: with use_sim_time a paused /clock must not keep a command alive.
        self.watchdog = SafetyWatchdog(limits, cmd_timeout_s=self.config.cmd_timeout_s)
        self.backend = make_backend(self.config)
        try:
            self.backend.start()
        except (RobotError, SdkUnavailable) as error:
            raise common.ConfigError(f"robot backend {self.config.backend!r} failed to start: {error}") from error
        self.lock = threading.RLock()
        self.wake = threading.Condition(self.lock)
        self.closing = False
        self.state = "idle"
        self.reason = ""  # why the robot is not moving, when it is not obvious from the state
        self.errors = ErrorLog()
        self.robot_problem = ""  # '' while the robot link is healthy
        self.motion_sent = False  # the last velocity handed to the backend was non-zero
        self.last_auto_balance = -math.inf
        self.posture_call: Optional[str] = None
        self.robot_info: dict = {}
        self.last_seq: Optional[int] = None
        self.pose_covariance, self.twist_covariance = odometry_covariances(self.config)

        self.odom_pub = self.create_publisher(Odometry, "odom", common.topic_qos("odom"))
        self.transform_pub = self.create_publisher(TransformStamped, "odom/transform",
                                                   common.topic_qos("odom/transform"))
        # Relative "tf": /tf without a namespace, /<robot>/tf per robot (the usual multi-robot remap).
        # odom -> base_link is published here, where odometry is made: with every Odometry message, from the same
        # state, so the two never disagree; building it is a few attribute copies on the control thread (no wait).
        self.tf_pub = (self.create_publisher(TFMessage, "tf", common.qos("reliable"))
                       if TFMessage is not None else None)
        if self.tf_pub is None:
            self.get_logger().info("tf2_msgs is not installed (pip-only): no /tf; odom -> base_link is on "
                                   "odom/transform (the Foxglove live view, foxglove:=true, and record:=true turn it "
                                   "into /tf)")
        self.status_pub = self.create_publisher(DiagnosticArray, "go2/status", common.topic_qos("go2/status"))
        safety = ReentrantCallbackGroup()
        postures = ReentrantCallbackGroup()
        common.subscribe(self, Twist, "cmd_vel", self.on_cmd_vel, callback_group=safety)
        common.subscribe(self, Bool, "estop", self.on_estop, callback_group=safety)
        self.create_service(Trigger, "estop/release", self.on_release, callback_group=safety)
        self.create_service(Trigger, "estop/engage", self.on_engage, callback_group=safety)
        self.create_service(Trigger, "go2/stand_up", lambda q, r: self.run_action("stand_up", r),
                            callback_group=postures)
        self.create_service(Trigger, "go2/stand_down", lambda q, r: self.run_action("stand_down", r),
                            callback_group=postures)
        self.create_service(Trigger, "go2/balance_stand", lambda q, r: self.run_action("balance_stand", r),
                            callback_group=postures)
        self.create_service(Trigger, "go2/damp", lambda q, r: self.run_action("damp", r), callback_group=postures)
        self.create_service(Trigger, "go2/stop_move", lambda q, r: self.run_action("stop_move", r),
                            callback_group=postures)
        self.create_timer(0.5, self.publish_status, callback_group=MutuallyExclusiveCallbackGroup())
        # Python hands the GIL over every 5 ms by default: a control process wants its stop thread to run
        # within a millisecond of its deadline even while executor threads convert messages.
        sys.setswitchinterval(0.0005)
        self.control_thread = threading.Thread(target=self.control_loop, name="go2_bridge_control", daemon=True)
        self.control_thread.start()
        self.get_logger().info(f"backend {self.backend.name}, cmd_timeout {self.config.cmd_timeout_s} s")

    # -- inputs (executor threads) --------------------------------------------------------------

    def on_cmd_vel(self, msg: Twist) -> None:
        with self.lock:
            error = self.watchdog.on_cmd(time.monotonic(), *convert.twist_values(msg))
            if error:
                self.errors.report(f"cmd_vel rejected, stopping: {error}", time.monotonic())
                self.get_logger().error(f"cmd_vel rejected, stopping: {error}", throttle_duration_sec=1.0)
                self.control_step()  # stop now rather than at the next tick

    def on_estop(self, msg: Bool) -> None:
        if msg.data:
            self.engage("estop topic")
        elif self.watchdog.estopped:
            self.get_logger().warn("estop False ignored: the e-stop is latched, call the estop/release service",
                                   throttle_duration_sec=1.0)

    def engage(self, reason: str) -> None:
        with self.lock:
            if not self.watchdog.estopped:
                self.get_logger().warn(f"E-STOP engaged ({reason})")
            self.watchdog.engage_estop(reason)
            self.control_step()  # act within this callback, not a control period later

    def on_engage(self, request, response):
        self.engage("estop/engage service")
        response.success, response.message = True, "e-stop engaged"
        return response

    def on_release(self, request, response):
        with self.lock:
            was = self.watchdog.estopped
            self.watchdog.release_estop()
        self.get_logger().warn("E-STOP released" if was else "estop/release: e-stop was not engaged")
        response.success, response.message = True, "e-stop released" if was else "e-stop was not engaged"
        return response

    def run_action(self, action: str, response):
        """A posture action on the robot; answers when the robot did (or the SDK timed out). Runs in the
        posture callback group: it may wait, nothing else waits for it."""
        with self.lock:
            if self.watchdog.estopped and action in MOTION_ACTIONS:
                response.success = False
                response.message = f"go2/{action} refused: the e-stop is engaged (call estop/release first)"
                return response
            if self.posture_call is not None:
                response.success = False
                response.message = f"go2/{action} refused: go2/{self.posture_call} is still waiting for the robot"
                return response
            self.posture_call = action
            self.get_logger().info(f"go2/{action} requested")
            future = self.backend.run_action(action, common.now_seconds(self))
        try:
            # The call may queue behind the StopMoves of an e-stop or a link fault (each up to go2_timeout_s).
            response.message = future.result(timeout=3 * self.config.go2_timeout_s + 1.0)
            response.success = True
        except RobotError as error:
            response.success, response.message = False, str(error)
            self.errors.report(f"go2/{action}: {error}", time.monotonic())
            self.get_logger().error(f"go2/{action}: {error}")
        except TimeoutError:
            response.success, response.message = False, (f"go2/{action}: no result from the robot within "
                                                          f"{3 * self.config.go2_timeout_s + 1.0:g} s")
            self.errors.report(response.message, time.monotonic())
        finally:
            with self.lock:
                self.posture_call = None
        return response

    # -- control (control thread; also called from the e-stop / rejection callbacks) -------------

    def control_loop(self) -> None:
        period = 1.0 / self.config.rate_hz
        next_tick = time.monotonic()
        while True:
            with self.lock:
                while not self.closing:
                    now = time.monotonic()
                    expiry = self.watchdog.command_expiry()
                    wake_at = next_tick
                    if expiry is not None and self.motion_sent:  # already due: step at once
                        wake_at = min(wake_at, expiry - STOP_LEAD_S)
                    if now >= wake_at:
                        break
                    self.wake.wait(wake_at - now)
                if self.closing:
                    return
                ticked = time.monotonic() >= next_tick
                before = (self.state, self.reason.split(":")[0])  # the kind of reason, not its changing numbers
                self.control_step()
                changed = (self.state, self.reason.split(":")[0]) != before
            if changed:  # a change of state is published at once, not at the next 2 Hz status
                self.publish_status()
            if ticked:
                self.publish_new_odometry()
                next_tick += period
                if next_tick < time.monotonic():  # fell behind (a loaded machine): no burst of catch-up ticks
                    next_tick = time.monotonic() + period

    def control_step(self) -> None:
        """Decide and hand over this instant's command (call with self.lock held; never blocks)."""
        now = time.monotonic()
        stamp = common.now_seconds(self)
        command = self.watchdog.output(now + STOP_LEAD_S)
        previous_problem = self.robot_problem
        try:
            problem = self.backend.health(stamp)
            blocker = None if problem else self.backend.motion_blocker(stamp)
            send_motion = False
            if problem:
                self.state, self.reason = "robot_error", problem
                if not previous_problem:
                    self.get_logger().error(f"{problem}; zero command and StopMove until it is back")
            elif command.state == "moving" and blocker is not None:
                self.state, self.reason = "robot_not_ready", blocker.reason
                self.maybe_remedy(blocker, now)
            else:
                self.state, self.reason = command.state, ""
                send_motion = command.state == "moving"
            if previous_problem and not problem:
                self.get_logger().info("robot link is back")
                self.errors.clear_cause("robot_link")
            if problem and problem.split(":")[0] != previous_problem.split(":")[0]:
                self.errors.report(problem, now, cause="robot_link")  # once per kind of problem, not per tick
            self.robot_problem = problem
            if send_motion:
                expiry = self.watchdog.command_expiry()
                self.backend.send_velocity(command.vx, command.vy, command.wz, stamp,
                                           hold_until=None if expiry is None else expiry - STOP_LEAD_S)
                self.motion_sent = True
            elif self.motion_sent or command.stop_edge or (problem and not previous_problem):
                self.backend.stop(stamp)
                self.motion_sent = False
        except RobotError as error:
            self.errors.report(f"robot backend: {error}", now)
            self.get_logger().error(f"robot backend: {error}", throttle_duration_sec=1.0)
        for error in self.backend.take_errors():  # background SDK calls (Move, StopMove): each reported once
            self.errors.report(f"robot backend: {error}", now)
            self.get_logger().error(f"robot backend: {error}", throttle_duration_sec=1.0)

    def maybe_remedy(self, blocker: MotionBlocker, now: float) -> None:
        """go2_auto_balance_stand: BalanceStand once when a command meets a Standing Lock."""
        if (not self.config.go2_auto_balance_stand or blocker.remedy != "balance_stand"
                or self.watchdog.estopped or self.posture_call is not None
                or now - self.last_auto_balance < AUTO_BALANCE_RETRY_S):
            return
        self.last_auto_balance = now
        self.get_logger().warn(f"{blocker.reason.split(';')[0]}: calling BalanceStand (go2_auto_balance_stand)")
        future = self.backend.run_action("balance_stand", common.now_seconds(self))

        def report_failure(done) -> None:
            if done.exception() is not None:
                self.errors.report(f"go2_auto_balance_stand: {done.exception()}", time.monotonic())

        future.add_done_callback(report_failure)

    # -- outputs --------------------------------------------------------------------------------

    def publish_new_odometry(self) -> None:
        stamp = common.now_seconds(self)
        if stamp <= 0.0:
            return  # use_sim_time before the first /clock: there is no time to stamp odometry with
        try:
            with self.lock:  # the sim backend integrates on every call: one caller at a time
                robot = self.backend.read_state(stamp)
        except RobotError as error:
            self.errors.report(f"robot backend: {error}", time.monotonic())
            return
        if robot is None or not robot.healthy or (robot.seq is not None and robot.seq == self.last_seq):
            return  # no new state: publish nothing rather than a stale pose with a new stamp
        self.last_seq = robot.seq
        self.robot_info = robot.info
        self.publish_odometry(robot)

    def publish_odometry(self, robot: RobotState) -> None:
        header = Header(stamp=common.seconds_to_stamp(robot.stamp), frame_id=self.config.odom_frame)
        qx, qy, qz, qw = se2.quaternion_from_yaw(float(robot.pose[2]))
        odom = Odometry(header=header, child_frame_id=self.config.base_frame)
        odom.pose.pose.position.x, odom.pose.pose.position.y = float(robot.pose[0]), float(robot.pose[1])
        odom.pose.pose.orientation.x, odom.pose.pose.orientation.y = qx, qy
        odom.pose.pose.orientation.z, odom.pose.pose.orientation.w = qz, qw
        odom.pose.covariance = self.pose_covariance
        odom.twist.twist = convert.twist_msg(*robot.velocity)
        odom.twist.covariance = self.twist_covariance
        self.odom_pub.publish(odom)
        transform = TransformStamped(header=header, child_frame_id=self.config.base_frame)
        transform.transform.translation.x = float(robot.pose[0])
        transform.transform.translation.y = float(robot.pose[1])
        transform.transform.rotation = odom.pose.pose.orientation
        self.transform_pub.publish(transform)
        if self.tf_pub is not None:
            self.tf_pub.publish(TFMessage(transforms=[transform]))

    def publish_status(self) -> None:
        now = time.monotonic()
        with self.lock:
            state, reason = self.state, self.reason
            values = {"state": state, "reason": reason or "-", "backend": self.backend.name,
                      "estopped": self.watchdog.estopped, "rejected_commands": self.watchdog.rejected_count,
                      "robot": self.robot_problem or "ok", "posture_call": self.posture_call or "-",
                      **self.errors.values(now), **self.backend.stats(), **self.robot_info}
            if state in ("estop", "rejected", "robot_error"):
                level = common.ERROR
            elif state == "robot_not_ready":
                level = common.WARN
            else:
                level = self.errors.level(now)
        message = f"{state}: {reason}" if reason else state
        self.status_pub.publish(common.diagnostics(self, NAME, level, message, values))

    def on_shutdown(self) -> None:
        with self.lock:
            self.closing = True
            self.wake.notify_all()
        self.control_thread.join(timeout=2.0)
        stamp = common.now_seconds(self)
        self.watchdog.shutdown_command()
        try:
            self.backend.stop(stamp)
            robot = self.backend.read_state(stamp)
            if robot is not None:
                self.publish_odometry(robot)  # the stopped state, for recorders
        finally:
            self.backend.close()  # sends the queued zero Move and StopMove first
            for error in self.backend.take_errors():
                self.get_logger().error(f"robot backend: {error}")
        self.get_logger().info("shutdown: robot stopped")


def main(args=None) -> int:
    return common.run_node(Go2BridgeNode, args)


if __name__ == "__main__":
    raise SystemExit(main())
