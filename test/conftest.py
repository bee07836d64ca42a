"""Shared test set-up: the shipped Fast DDS profile for every process, and a private ROS domain."""

import os

from mtshare_ros.ros.resources import use_fastdds_profile

use_fastdds_profile()
# Keep the tests' topics away from anything else on this machine (demo, benchmarks, other runs).
os.environ.setdefault("ROS_DOMAIN_ID", str(40 + os.getpid() % 50))
os.environ.setdefault("ROS_AUTOMATIC_DISCOVERY_RANGE", "LOCALHOST")


import pytest  # noqa: E402


@pytest.fixture(scope="session")
def ros_session():
    """One rclpy context for the whole test session (rclpy.init may only run once per context)."""
    import rclpy

    rclpy.init()
    yield
    rclpy.try_shutdown()
