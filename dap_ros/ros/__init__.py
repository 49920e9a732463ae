"""The ROS 2 node of dap_ros (needs rclpy and the sensor/diagnostic message packages).

Modules: ``node`` (the node and its ``main``), ``params`` (parameter table and validation),
``messages`` (numpy <-> sensor_msgs), ``diagnostics`` (health and DiagnosticArray), ``worker``
(the newest-frame-only inference thread). Nothing is imported here, so ``import dap_ros.ros``
works without rclpy; import ``dap_ros.ros.node`` to get the node.
"""
