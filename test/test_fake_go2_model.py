"""The fake Go2's posture state machine (robot/fake_go2.RobotModel), without DDS."""
import math

import pytest

from sparsevideonav_ros.robot import fake_go2, go2
from sparsevideonav_ros.robot.fake_go2 import BALANCE_STANDING, CROUCH, DAMPING, REGULAR_WALK, STANDING_LOCK

MOVE = {"x": 0.5, "y": 0.0, "z": 0.0}


def walk(robot, seconds, start=0.0, dt=0.02):
    t = start
    while t < start + seconds - 1e-9:
        t += dt
        robot.advance(t, dt)
    return t


def test_move_walks_in_balance_stand_and_the_state_reports_walking():
    robot = fake_go2.RobotModel()
    robot.apply(1008, MOVE, 0.0)
    walk(robot, 0.5)
    assert robot.state == REGULAR_WALK and robot.pose[0] == pytest.approx(0.25, abs=1e-6)
    walk(robot, 1.0, start=0.5)  # a Move is held for move_timeout_s (1 s), then the robot stands still
    assert robot.state == BALANCE_STANDING and robot.pose[0] == pytest.approx(0.5, abs=0.011)  # one 20 ms step


@pytest.mark.parametrize("posture_api,state", [(1004, STANDING_LOCK), (1005, CROUCH), (1001, DAMPING)])
def test_move_is_ignored_until_balance_stand(posture_api, state):
    robot = fake_go2.RobotModel()
    robot.apply(posture_api, {}, 0.0)
    robot.apply(1008, MOVE, 0.01)
    t = walk(robot, 0.5)
    assert robot.state == state and robot.pose == [0.0, 0.0, 0.0]
    robot.apply(1002, {}, t)  # BalanceStand unlocks
    robot.apply(1008, MOVE, t)
    walk(robot, 0.2, start=t)
    assert robot.state == REGULAR_WALK and robot.pose[0] > 0.05


def test_standing_lock_can_end_by_itself_after_its_duration():
    robot = fake_go2.RobotModel(standing_lock_s=2.0)
    robot.apply(1004, {}, 0.0)
    walk(robot, 1.9)
    assert robot.state == STANDING_LOCK
    walk(robot, 0.2, start=1.9)
    assert robot.state == BALANCE_STANDING


def test_stop_move_stops_at_once():
    robot = fake_go2.RobotModel()
    robot.apply(1008, MOVE, 0.0)
    t = walk(robot, 0.2)
    robot.apply(1003, {}, t)
    x = robot.pose[0]
    walk(robot, 0.5, start=t)
    assert robot.pose[0] == x and robot.state == BALANCE_STANDING


def test_bridge_and_fake_agree_on_which_states_take_move():
    assert BALANCE_STANDING in go2.DEFAULT_MOVE_STATES and REGULAR_WALK in go2.DEFAULT_MOVE_STATES
    for state in (STANDING_LOCK, CROUCH, DAMPING):
        assert state not in go2.DEFAULT_MOVE_STATES
        assert go2.ROBOT_STATES[state] in go2.state_name(state)
    assert go2.STANDING_LOCK == STANDING_LOCK
    assert go2.state_name(4242) == "unknown state (error_code 4242)"
    assert math.isinf(fake_go2.RobotModel().standing_lock_s)  # like the real robot: locked until BalanceStand
    assert fake_go2.DEFAULT_DOMAIN != 0  # never the real Go2's domain by default
