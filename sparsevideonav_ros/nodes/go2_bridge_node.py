"""go2_bridge_node: cmd_vel -> robot backend, guarded by the watchdog; odometry out.

Zero velocity (and one StopMove) on: no cmd_vel for cmd_timeout_s, e-stop, non-finite command,
no robot state for go2_state_timeout_s (real Go2), shutdown. The e-stop is latched: `estop` True
engages it, only the `estop/release` service clears it. Posture services (go2/stand_up, ...) run
as coroutines so a robot that does not answer never blocks the control loop or the e-stop.
"""
from __future__ import annotations

from typing import Optional

from diagnostic_msgs.msg import DiagnosticArray
from geometry_msgs.msg import TransformStamped, Twist
from nav_msgs.msg import Odometry
from std_msgs.msg import Bool, Header
from std_srvs.srv import Trigger

from sparsevideonav_ros.configs import BridgeNodeConfig
from sparsevideonav_ros.core import se2
from sparsevideonav_ros.core.watchdog import SafetyWatchdog, VelocityLimits
from sparsevideonav_ros.nodes import common, convert
from sparsevideonav_ros.robot.base import RobotBackend, RobotError, RobotState
from sparsevideonav_ros.robot.unitree_sdk import SdkUnavailable

NAME = "go2_bridge_node"

try:  # /tf needs tf2_msgs, present on a ROS install but not among the PyPI wheels
    from tf2_msgs.msg import TFMessage
except ImportError:  # pragma: no cover - depends on the install
    TFMessage = None


def make_backend(config: BridgeNodeConfig) -> RobotBackend:
    if config.backend == "sim":
        from sparsevideonav_ros.robot.sim import SimRobot
        return SimRobot((config.sim_initial_x, config.sim_initial_y, config.sim_initial_yaw),
                        response_time_s=config.sim_response_time_s)
    if config.backend in ("unitree", "go2"):
        from sparsevideonav_ros.robot.go2 import Go2Robot
        return Go2Robot(config.go2_network_interface, config.go2_domain_id, timeout_s=config.go2_timeout_s,
                        state_timeout_s=config.go2_state_timeout_s)
    raise common.ConfigError(f"unknown robot backend {config.backend!r}")


class _Yield:
    """Awaitable that hands control back to the executor once (it resumes the coroutine next spin)."""

    def __await__(self):
        yield


class Go2BridgeNode(common.StackNode):
    def __init__(self) -> None:
        super().__init__(NAME)
        self.config: BridgeNodeConfig = common.declare_config(self, BridgeNodeConfig)
        limits = VelocityLimits(max_vx=self.config.max_vx, min_vx=self.config.min_vx, max_vy=self.config.max_vy,
                                max_wz=self.config.max_wz)
        self.watchdog = SafetyWatchdog(limits, cmd_timeout_s=self.config.cmd_timeout_s)
        self.backend = make_backend(self.config)
        try:
            self.backend.start()
        except (RobotError, SdkUnavailable) as error:
            raise common.ConfigError(f"robot backend {self.config.backend!r} failed to start: {error}") from error
        self.state = "idle"
        self.last_error = ""
        self.robot_problem = ""  # '' while the backend is healthy
        self.robot_info: dict = {}
        self.sdk_errors = 0
        self.last_seq: Optional[int] = None
        self.odom_pub = self.create_publisher(Odometry, "odom", common.topic_qos("odom"))
        self.transform_pub = self.create_publisher(TransformStamped, "odom/transform",
                                                   common.topic_qos("odom/transform"))
        # Relative "tf": /tf without a namespace, /<robot>/tf per robot (the usual multi-robot remap).
        self.tf_pub = (self.create_publisher(TFMessage, "tf", common.qos("reliable"))
                       if TFMessage is not None else None)
        self.status_pub = self.create_publisher(DiagnosticArray, "go2/status", common.topic_qos("go2/status"))
        self.create_subscription(Twist, "cmd_vel", self.on_cmd_vel, common.topic_qos("cmd_vel"))
        self.create_subscription(Bool, "estop", self.on_estop, common.topic_qos("estop"))
        self.create_service(Trigger, "estop/release", self.on_release)
        self.create_service(Trigger, "estop/engage", self.on_engage)
        self.create_service(Trigger, "go2/stand_up", self.on_stand_up)
        self.create_service(Trigger, "go2/stand_down", self.on_stand_down)
        self.create_service(Trigger, "go2/balance_stand", self.on_balance_stand)
        self.create_service(Trigger, "go2/damp", self.on_damp)
        self.create_service(Trigger, "go2/stop_move", self.on_stop_move)
        self.create_timer(1.0 / self.config.rate_hz, self.step)
        self.create_timer(0.5, self.publish_status)
        self.get_logger().info(f"backend {self.backend.name}, cmd_timeout {self.config.cmd_timeout_s} s")

    def on_cmd_vel(self, msg: Twist) -> None:
        error = self.watchdog.on_cmd(common.now_seconds(self), *convert.twist_values(msg))
        if error:
            self.last_error = error
            self.get_logger().error(f"cmd_vel rejected, stopping: {error}", throttle_duration_sec=1.0)
            self.step()  # stop now rather than at the next tick

    def on_estop(self, msg: Bool) -> None:
        if msg.data:
            self.engage("estop topic")
        elif self.watchdog.estopped:
            self.get_logger().warn("estop False ignored: the e-stop is latched, call the estop/release service")

    def engage(self, reason: str) -> None:
        if not self.watchdog.estopped:
            self.get_logger().warn(f"E-STOP engaged ({reason})")
        self.watchdog.engage_estop(reason)
        self.step()  # act within this callback, not a control period later

    def on_engage(self, request, response):
        self.engage("estop/engage service")
        response.success, response.message = True, "e-stop engaged"
        return response

    def on_release(self, request, response):
        was = self.watchdog.estopped
        self.watchdog.release_estop()
        self.get_logger().warn("E-STOP released" if was else "estop/release: e-stop was not engaged")
        response.success, response.message = True, "e-stop released" if was else "e-stop was not engaged"
        return response

    async def run_action(self, action: str, response):
        """Run a posture action on the robot; the service answers when the robot did (or the SDK timed out)."""
        self.get_logger().info(f"go2/{action} requested")
        future = self.backend.run_action(action, common.now_seconds(self))
        while not future.done():
            await _Yield()
        try:
            response.message = future.result()
            response.success = True
        except RobotError as error:
            response.success, response.message = False, str(error)
            self.report_error(f"go2/{action}: {error}")
        return response

    async def on_stand_up(self, request, response):
        return await self.run_action("stand_up", response)

    async def on_stand_down(self, request, response):
        return await self.run_action("stand_down", response)

    async def on_balance_stand(self, request, response):
        return await self.run_action("balance_stand", response)

    async def on_damp(self, request, response):
        return await self.run_action("damp", response)

    async def on_stop_move(self, request, response):
        return await self.run_action("stop_move", response)

    def report_error(self, message: str) -> None:
        self.last_error = message
        self.sdk_errors += 1
        self.get_logger().error(message, throttle_duration_sec=1.0)

    def report_backend_errors(self) -> None:
        for error in self.backend.take_errors():  # background SDK calls (Move, StopMove): each reported once
            self.report_error(f"robot backend: {error}")

    def step(self) -> None:
        now = common.now_seconds(self)
        command = self.watchdog.output(now)
        robot = None
        try:
            problem = self.backend.health(now)
            if problem:
                # No robot state: zero command, one StopMove, error status until the state is back.
                self.state = "robot_error"
                if not self.robot_problem:
                    self.get_logger().error(f"{problem}; zero command and StopMove until it is back")
                    self.last_error = problem
                    self.backend.stop(now)
            else:
                if self.robot_problem:
                    self.get_logger().info("robot state is back")
                self.state = command.state
                if command.stop_edge:
                    self.backend.stop(now)
                if command.state == "moving":
                    self.backend.send_velocity(command.vx, command.vy, command.wz, now)
            self.robot_problem = problem
            robot = self.backend.read_state(now)
        except RobotError as error:
            self.report_error(f"robot backend: {error}")
        self.report_backend_errors()
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
        odom.twist.twist = convert.twist_msg(*robot.velocity)
        self.odom_pub.publish(odom)
        transform = TransformStamped(header=header, child_frame_id=self.config.base_frame)
        transform.transform.translation.x = float(robot.pose[0])
        transform.transform.translation.y = float(robot.pose[1])
        transform.transform.rotation = odom.pose.pose.orientation
        self.transform_pub.publish(transform)
        if self.tf_pub is not None:
            self.tf_pub.publish(TFMessage(transforms=[transform]))

    def publish_status(self) -> None:
        level = common.ERROR if self.state in ("estop", "rejected", "robot_error") or self.last_error else common.OK
        values = {"state": self.state, "backend": self.backend.name, "estopped": self.watchdog.estopped,
                  "rejected_commands": self.watchdog.rejected_count, "robot": self.robot_problem or "ok",
                  "sdk_errors": self.sdk_errors, "last_error": self.last_error, **self.backend.stats(),
                  **self.robot_info}
        self.status_pub.publish(common.diagnostics(self, NAME, level, self.state, values))

    def on_shutdown(self) -> None:
        now = common.now_seconds(self)
        self.watchdog.shutdown_command()
        try:
            self.backend.stop(now)
            robot = self.backend.read_state(now)
            if robot is not None:
                self.publish_odometry(robot)  # the stopped state, for recorders
        finally:
            self.backend.close()  # sends the queued StopMove first
            self.report_backend_errors()
        self.get_logger().info("shutdown: robot stopped")


def main(args=None) -> int:
    return common.run_node(Go2BridgeNode, args)


if __name__ == "__main__":
    raise SystemExit(main())
