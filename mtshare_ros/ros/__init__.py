"""The thin ROS 2 layer: message conversion, the lifecycle node. Everything else is ROS-free."""
