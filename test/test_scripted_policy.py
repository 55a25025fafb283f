"""The scripted policy, the registry and the plan contract, closed-loop with the real tracker."""
import numpy as np
import pytest

from sparsevideonav_ros.configs import ConfigError
from sparsevideonav_ros.core import se2
from sparsevideonav_ros.core.pose_history import PoseHistory
from sparsevideonav_ros.core.tracking import PathTracker, TrackerGains, TrackerLimits
from sparsevideonav_ros.policies import registry
from sparsevideonav_ros.policies.base import Observation, Plan, PolicyError
from sparsevideonav_ros.robot.sim import SimRobot

FRAME = np.zeros((4, 4, 3), np.uint8)


def drive(policy, seconds=40.0, dt=0.05, frame_every=5, start=(0.0, 0.0, 0.0), delay_steps=2):
    """Closed loop at 20 Hz with 4 FPS plans that arrive ``delay_steps`` late (inference delay)."""
    tracker = PathTracker(TrackerLimits(), TrackerGains())
    robot = SimRobot(start)
    history = PoseHistory()
    in_flight, trace = [], []
    for k in range(int(seconds / dt)):
        now = k * dt
        state = robot.read_state(now)
        history.add(now, state.pose)
        trace.append(state.pose)
        if k % frame_every == 0:
            in_flight.append((k + delay_steps, policy.step(Observation(stamp=now, rgb=FRAME, odom_pose=state.pose))))
        while in_flight and in_flight[0][0] <= k:
            plan = in_flight.pop(0)[1]
            anchored = se2.compose(history.pose_at(plan.stamp), plan.waypoints) if len(plan.waypoints) else plan.waypoints
            tracker.set_plan(anchored, plan.stamp)
            if plan.state == "done":
                return np.array(trace), plan
        out = tracker.compute(state.pose, now, dt)
        robot.send_velocity(out.vx, out.vy, out.wz, now)
    return np.array(trace), plan


def test_square_is_driven_closed_loop_with_delayed_plans():
    policy = registry.make_policy("scripted")
    trace, last = drive(policy)
    assert last.state == "done"
    assert np.linalg.norm(trace[-1][:2]) < 0.2  # back at the start of the 1 m square
    # every corner was visited (no corner cutting)
    for corner in ([1, 0], [1, 1], [0, 1]):
        assert np.min(np.linalg.norm(trace[:, :2] - corner, axis=1)) < 0.15
    assert trace[:, 0].max() < 1.2 and trace[:, 1].max() < 1.2 and trace[:, :2].min() > -0.2


def test_route_is_relative_to_the_start_pose():
    policy = registry.make_policy("scripted", {"waypoints": [1.0, 0.0, 0.0]})
    start = np.array([2.0, -1.0, np.pi / 2])
    trace, last = drive(policy, seconds=10, start=start)
    assert last.state == "done"
    np.testing.assert_allclose(trace[-1][:2], [2.0, 0.0], atol=0.16)


def test_plan_is_in_the_body_frame_at_the_frame_stamp():
    policy = registry.make_policy("scripted", {"waypoints": [1.0, 0.0, 0.0], "horizon": 1})
    policy.step(Observation(stamp=0.0, rgb=FRAME, odom_pose=np.zeros(3)))
    plan = policy.step(Observation(stamp=0.25, rgb=FRAME, odom_pose=np.array([0.4, 0.0, 0.0])))
    np.testing.assert_allclose(plan.waypoints, [[0.6, 0.0, 0.0]], atol=1e-9)
    assert plan.stamp == 0.25


def test_frames_before_odometry_wait_for_it_and_the_route_starts_at_the_first_pose():
    policy = registry.make_policy("scripted", {"waypoints": [1.0, 0.0, 0.0]})
    for k in range(3):  # frames arrive before the first odometry: stand still, no error
        plan = policy.step(Observation(stamp=0.25 * k, rgb=FRAME))
        assert plan.state == "waiting_odometry" and len(plan.waypoints) == 0 and plan.stamp == 0.25 * k
    assert policy.route_progress == (0, 1)
    plan = policy.step(Observation(stamp=1.0, rgb=FRAME, odom_pose=np.array([2.0, 3.0, 0.0])))
    assert plan.state == "ok"
    np.testing.assert_allclose(plan.waypoints, [[1.0, 0.0, 0.0]], atol=1e-9)  # relative to the first known pose
    # odometry lost mid-route (no pose at the frame's stamp): stand still again, progress kept
    assert policy.step(Observation(stamp=1.25, rgb=FRAME)).state == "waiting_odometry"
    plan = policy.step(Observation(stamp=1.5, rgb=FRAME, odom_pose=np.array([2.5, 3.0, 0.0])))
    np.testing.assert_allclose(plan.waypoints, [[0.5, 0.0, 0.0]], atol=1e-9)


def test_waits_for_instruction_when_asked():
    policy = registry.make_policy("scripted", {"require_instruction": True})
    plan = policy.step(Observation(stamp=0.0, rgb=FRAME, odom_pose=np.zeros(3)))
    assert plan.state == "waiting_instruction" and len(plan.waypoints) == 0
    policy.set_instruction("go")
    assert policy.step(Observation(stamp=0.25, rgb=FRAME, odom_pose=np.zeros(3))).state == "ok"


def test_empty_instruction_is_refused():
    policy = registry.make_policy("scripted")
    for text in ("", "   "):
        with pytest.raises(PolicyError, match="empty"):
            policy.set_instruction(text)


def test_reset_restarts_the_route_from_the_new_pose():
    policy = registry.make_policy("scripted", {"waypoints": [1.0, 0.0, 0.0]})
    policy.step(Observation(stamp=0.0, rgb=FRAME, odom_pose=np.zeros(3)))
    policy.reset()
    plan = policy.step(Observation(stamp=1.0, rgb=FRAME, odom_pose=np.array([5.0, 5.0, 0.0])))
    np.testing.assert_allclose(plan.waypoints, [[1.0, 0.0, 0.0]], atol=1e-9)


def test_unknown_policy_lists_known_names():
    with pytest.raises(registry.UnknownPolicyError, match="scripted"):
        registry.make_policy("no_such_policy")


@pytest.mark.parametrize("values", [{"waypoints": [1.0, 0.0]}, {"waypoints": []},
                                    {"waypoints": [float("nan"), 0.0, 0.0]}, {"horizon": 0},
                                    {"bogus": 1}])
def test_bad_scripted_config(values):
    with pytest.raises(ConfigError):
        registry.make_policy("scripted", values)


def test_plan_validation_rejects_unsafe_plans():
    with pytest.raises(PolicyError, match="non-finite"):
        Plan(stamp=0.0, waypoints=np.array([[np.nan, 0, 0]])).validate()
    with pytest.raises(PolicyError, match=r"\(N, 3\)"):
        Plan(stamp=0.0, waypoints=np.zeros((2, 2))).validate()
    with pytest.raises(PolicyError, match="must not carry"):
        Plan(stamp=0.0, waypoints=np.zeros((1, 3)), state="done").validate()


def test_observation_rejects_non_rgb():
    with pytest.raises(PolicyError):
        Observation(stamp=0.0, rgb=np.zeros((4, 4), np.uint8))
