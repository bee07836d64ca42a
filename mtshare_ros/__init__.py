"""mtshare_ros: multi-task dense perception with computation sharing, for ROS 2.

The package root and everything outside ``mtshare_ros.ros`` import without rclpy.
"""

__version__ = "0.1.0"
