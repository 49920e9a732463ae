"""Evaluation: depth metrics (pure numpy, reusable by training), rosbag replay, reports.

- ``metrics``: AbsRel, SqRel, RMSE, RMSE-log, delta1..3, range bands, range-mask scores; no bags,
  no ROS (``from dap_ros.evaluation.metrics import frame_metrics, MetricsAccumulator``).
- ``bags``: reading and writing ROS 2 bags (sqlite3, MCAP) with ``rosbags``.
- ``runner``: the offline ``eval-bag`` loop; ``report`` / ``plots``: metrics.json, report.md, PNGs.
- ``realtime``: replay through rclpy into a running node; ``makebag``: images -> bag.

Nothing heavy is imported here.
"""
