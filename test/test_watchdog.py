import numpy as np
import pytest

from sparsevideonav_ros.core.watchdog import SafeCommand, SafetyWatchdog, VelocityLimits

NAN, INF = float("nan"), float("inf")


def vel(c):
    return (c.vx, c.vy, c.wz)


def test_idle_before_any_command():
    w = SafetyWatchdog()
    out = w.output(0.0)
    assert vel(out) == (0.0, 0.0, 0.0) and out.state == "idle" and not out.stop_edge


def test_moving_then_zero_gives_one_stop_edge():
    w = SafetyWatchdog()
    assert w.on_cmd(0.0, 0.2, 0.1, 0.3) is None
    out = w.output(0.1)
    assert out == SafeCommand(0.2, 0.1, 0.3, "moving", False)
    w.on_cmd(0.2, 0.0, 0.0, 0.0)
    out = w.output(0.2)
    assert out.state == "zero" and vel(out) == (0.0, 0.0, 0.0) and out.stop_edge
    assert not w.output(0.3).stop_edge  # only once
    w.on_cmd(0.4, 0.0, 0.0, 0.0)
    assert not w.output(0.4).stop_edge


def test_idle_zero_command_has_no_stop_edge():
    w = SafetyWatchdog()
    w.on_cmd(0.0, 0.0, 0.0, 0.0)
    out = w.output(0.0)
    assert out.state == "zero" and not out.stop_edge


def test_clamping():
    lim = VelocityLimits()
    w = SafetyWatchdog(lim)
    w.on_cmd(0.0, 5.0, -5.0, 9.0)
    assert vel(w.output(0.0)) == (lim.max_vx, -lim.max_vy, lim.max_wz)
    w.on_cmd(0.0, -5.0, 5.0, -9.0)
    out = w.output(0.0)
    assert vel(out) == (lim.min_vx, lim.max_vy, -lim.max_wz) and out.state == "moving"
    # A command that clamps to zero is a stop, not motion.
    w2 = SafetyWatchdog(VelocityLimits(min_vx=0.0))
    w2.on_cmd(0.0, -0.2, 0.0, 0.0)
    assert w2.output(0.0).state == "zero"


def test_timeout_boundary():
    w = SafetyWatchdog(cmd_timeout_s=0.5)
    w.on_cmd(1.0, 0.3, 0.0, 0.0)
    assert w.output(1.499).state == "moving"
    out = w.output(1.5)  # exactly cmd_timeout_s without a command: timed out
    assert out.state == "timeout" and vel(out) == (0.0, 0.0, 0.0) and out.stop_edge
    assert not w.output(1.6).stop_edge
    w.on_cmd(2.0, 0.3, 0.0, 0.0)  # a new command resumes motion
    assert w.output(2.0).state == "moving"


def test_clock_backwards_or_nan_now_is_timeout():
    w = SafetyWatchdog()
    w.on_cmd(10.0, 0.3, 0.0, 0.0)
    assert w.output(9.0).state == "timeout"
    w.on_cmd(10.0, 0.3, 0.0, 0.0)
    assert w.output(NAN).state == "timeout"


@pytest.mark.parametrize("bad", [(NAN, 0.0, 0.0), (0.0, INF, 0.0), (0.0, 0.0, -INF),
                                 (np.float32("nan"), 0.0, 0.0), (None, 0.0, 0.0)])
def test_non_finite_rejected(bad):
    w = SafetyWatchdog()
    w.on_cmd(0.0, 0.3, 0.0, 0.0)
    assert w.output(0.0).state == "moving"
    err = w.on_cmd(0.1, *bad)
    assert isinstance(err, str) and "non-finite" in err
    assert w.rejected_count == 1
    out = w.output(0.1)
    assert out.state == "rejected" and vel(out) == (0.0, 0.0, 0.0) and out.stop_edge
    # Stays stopped (not the old command) until a valid one arrives.
    assert w.output(0.2).state == "rejected"
    assert w.on_cmd(0.3, 0.1, 0.0, 0.0) is None
    assert w.output(0.3).state == "moving"
    assert w.rejected_count == 1


def test_non_finite_stamp_rejected():
    w = SafetyWatchdog()
    assert w.on_cmd(NAN, 0.1, 0.0, 0.0) is not None
    assert w.rejected_count == 1 and w.output(0.0).state == "rejected"


def test_numpy_scalars_accepted():
    w = SafetyWatchdog()
    assert w.on_cmd(np.float64(0.0), np.float32(0.25), np.int64(0), 0) is None
    out = w.output(0.0)
    assert out.state == "moving" and out.vx == pytest.approx(0.25)
    assert all(type(v) is float for v in vel(out))


def test_estop_latched():
    w = SafetyWatchdog()
    w.on_cmd(0.0, 0.3, 0.0, 0.5)
    assert w.output(0.0).state == "moving"
    w.engage_estop("operator button")
    assert w.estopped and w.estop_reason == "operator button"
    out = w.output(0.05)
    assert out.state == "estop" and vel(out) == (0.0, 0.0, 0.0) and out.stop_edge
    # Commands are ignored but their arrival is recorded; the estop stays latched.
    assert w.on_cmd(0.1, 0.3, 0.0, 0.0) is None
    assert w.last_cmd_stamp == 0.1
    out = w.output(0.1)
    assert out.state == "estop" and not out.stop_edge
    w.engage_estop("again")
    assert not w.output(0.15).stop_edge  # re-engaging a latched estop is not a new edge
    # Release: the old command is forgotten, so the robot does not resume it.
    w.release_estop()
    assert not w.estopped
    out = w.output(0.2)
    assert out.state == "idle" and vel(out) == (0.0, 0.0, 0.0)
    w.on_cmd(0.3, 0.2, 0.0, 0.0)
    assert w.output(0.3).state == "moving"


def test_estop_edge_while_already_stopped():
    w = SafetyWatchdog()
    w.engage_estop("bumper")
    assert w.output(0.0).stop_edge  # first estop output always asks for StopMove
    assert not w.output(0.1).stop_edge
    w.release_estop()
    w.engage_estop("bumper again")
    assert w.output(0.2).stop_edge


def test_shutdown_command():
    w = SafetyWatchdog()
    w.on_cmd(0.0, 0.3, 0.0, 0.0)
    w.output(0.0)
    out = w.shutdown_command()
    assert vel(out) == (0.0, 0.0, 0.0) and out.stop_edge


def test_bad_timeout():
    with pytest.raises(ValueError):
        SafetyWatchdog(cmd_timeout_s=0.0)


def test_command_expiry_is_the_instant_the_command_times_out():
    w = SafetyWatchdog(cmd_timeout_s=0.5)
    assert w.command_expiry() is None  # nothing stored: nothing to wake up for
    w.on_cmd(10.0, 0.2, 0.0, 0.0)
    assert w.command_expiry() == pytest.approx(10.5)
    assert w.output(10.499).state == "moving" and w.output(10.5).state == "timeout"
    w.on_cmd(10.2, 0.2, 0.0, 0.0)
    assert w.command_expiry() == pytest.approx(10.7)  # each command pushes the bound
    w.engage_estop("test")
    assert w.command_expiry() is None  # e-stopped: no command can move the robot
    w.release_estop()
    w.on_cmd(11.0, NAN, 0.0, 0.0)
    assert w.command_expiry() is None  # rejected
