"""The ROS 2 side of dap_ros (needs rclpy and the sensor/diagnostic message packages).

The node (``node``, ``params``, ``worker``, ``diagnostics``), its outputs (``outputs`` over
``messages``, ``point_cloud``, ``cdr_publish``), its input (``decoding``), and the code that drives
it from outside (``process``, ``client``). docs/architecture.md lists every module. Nothing is
imported here, so ``import dap_ros.ros`` works without rclpy; import ``dap_ros.ros.node`` to get
the node.
"""
