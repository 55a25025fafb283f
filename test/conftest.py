"""Test-wide ROS setup: loopback only, a ROS_DOMAIN_ID of this run's own, one rclpy context.

The environment is set at import time, before any test imports rclpy, so this process and every
node process the tests start stay on this machine and away from other runs' graphs.
"""
from __future__ import annotations

import os
import sys
import tempfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

# Own domain per test run (0..101 and 215..232 are the valid ranges on Linux; stay well inside).
TEST_DOMAIN_ID = int(os.environ.get("SVN_TEST_DOMAIN_ID", 1 + os.getpid() % 100))
os.environ["ROS_DOMAIN_ID"] = str(TEST_DOMAIN_ID)
os.environ["ROS_AUTOMATIC_DISCOVERY_RANGE"] = "LOCALHOST"
os.environ["ROS_LOCALHOST_ONLY"] = "1"
# The tiny SparseVideoNav model set is built once per test run, here, and shared with child nodes.
os.environ.setdefault("SPARSEVIDEONAV_CACHE", tempfile.mkdtemp(prefix="svn-cache-"))


@pytest.fixture(scope="session")
def ros_context():
    """rclpy initialised once for the session (Humble/Jazzy/Kilted style, no context manager)."""
    import rclpy
    rclpy.init(args=[])
    yield
    if rclpy.ok():
        rclpy.shutdown()
