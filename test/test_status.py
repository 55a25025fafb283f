"""core/status.ErrorLog: what a node's status says about its errors, on a clock the test controls."""
from __future__ import annotations

import math

import pytest
from diagnostic_msgs.msg import DiagnosticStatus

from sparsevideonav_ros.core import status
from sparsevideonav_ros.core.status import ERROR, ERROR_HOLD_S, OK, ErrorLog


def test_levels_are_the_diagnostic_levels():
    def as_int(level):
        return level[0] if isinstance(level, bytes) else level
    assert (status.OK, status.WARN, status.ERROR) == tuple(
        as_int(level) for level in (DiagnosticStatus.OK, DiagnosticStatus.WARN, DiagnosticStatus.ERROR))


def test_no_error_yet_is_ok_with_empty_values():
    errors = ErrorLog()
    assert errors.level(100.0) == OK
    assert errors.values(100.0) == {"last_error": "", "last_error_age_s": "", "active_errors": "", "errors": "0"}


def test_a_one_off_error_is_error_for_the_hold_time_then_ok_and_still_readable():
    errors = ErrorLog(hold_s=5.0)
    errors.report("rejected frame: yuv422", now=10.0)
    assert errors.level(10.0) == ERROR and errors.level(14.9) == ERROR
    assert errors.level(15.0) == OK and errors.level(1000.0) == OK
    values = errors.values(22.5)
    assert values["last_error"] == "rejected frame: yuv422"
    assert values["last_error_age_s"] == "12.5"
    assert values["errors"] == "1"


def test_a_repeated_error_keeps_the_level_and_the_age_counts_from_the_latest():
    errors = ErrorLog(hold_s=5.0)
    for t in range(10, 30):
        errors.report(f"policy failed at {t}", now=float(t))
        assert errors.level(t + 0.5) == ERROR
    assert errors.values(31.0)["last_error"] == "policy failed at 29"
    assert errors.values(31.0)["last_error_age_s"] == "2.0"
    assert errors.level(34.0) == OK
    assert errors.values(34.0)["errors"] == "20"


def test_an_active_cause_is_error_beyond_the_hold_time_until_cleared():
    errors = ErrorLog(hold_s=5.0)
    errors.report("robot link lost", now=0.0, cause="link")
    assert errors.level(60.0) == ERROR
    assert errors.values(60.0)["active_errors"] == "link"
    assert errors.clear_cause("link") is True
    assert errors.clear_cause("link") is False  # clearing twice is harmless
    assert errors.level(60.0) == OK  # reported 60 s ago: beyond the hold time
    assert errors.values(60.0)["active_errors"] == ""
    assert errors.values(60.0)["last_error"] == "robot link lost"


def test_clearing_a_cause_keeps_a_recent_report_visible_for_the_hold_time():
    errors = ErrorLog(hold_s=5.0)
    errors.report("no odometry", now=0.0, cause="odom")
    errors.clear_cause("odom")
    assert errors.level(1.0) == ERROR  # a glitch shorter than a status period is still seen
    assert errors.level(5.0) == OK


def test_causes_are_independent():
    errors = ErrorLog(hold_s=1.0)
    errors.report("link lost", now=0.0, cause="link")
    errors.report("state lost", now=0.0, cause="state")
    errors.clear_cause("link")
    assert errors.level(10.0) == ERROR and errors.active_causes == ("state",)
    errors.clear_cause("state")
    assert errors.level(10.0) == OK


def test_default_hold_time_is_the_documented_constant():
    assert ErrorLog().hold_s == ERROR_HOLD_S == 5.0


def test_zero_hold_time_counts_only_active_causes():
    errors = ErrorLog(hold_s=0.0)
    errors.report("one-off", now=1.0)
    assert errors.level(1.0) == OK
    errors.report("ongoing", now=1.0, cause="c")
    assert errors.level(1.0) == ERROR


@pytest.mark.parametrize("hold_s", [-1.0, math.nan, math.inf])
def test_invalid_hold_time_is_refused(hold_s):
    with pytest.raises(ValueError, match="hold_s"):
        ErrorLog(hold_s=hold_s)
