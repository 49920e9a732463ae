"""The library's Python log records as ROS log messages, while a node loads its model.

Model loading (backend choice, engine build progress, a TensorRT fallback) reports through the
``dap_ros`` Python logger so that the CLI and the node share it; inside a node those lines belong
in the node's ROS log (console and /rosout) at their severity, once each.
"""
from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator
from typing import Any

LIBRARY_LOGGER = "dap_ros"


class RosLogHandler(logging.Handler):
    """Forwards records to an rclpy logger, INFO and above."""

    def __init__(self, ros_logger: Any) -> None:
        super().__init__(logging.INFO)
        self.ros_logger = ros_logger

    def emit(self, record: logging.LogRecord) -> None:
        try:
            text = self.format(record)
            if record.levelno >= logging.ERROR:
                self.ros_logger.error(text)
            elif record.levelno >= logging.WARNING:
                self.ros_logger.warning(text)
            else:
                self.ros_logger.info(text)
        except Exception:  # noqa: BLE001 - logging must never take the node down
            self.handleError(record)


@contextlib.contextmanager
def library_log_to(ros_logger: Any) -> Iterator[None]:
    """Within the block, ``dap_ros`` records of INFO and above go to ``ros_logger`` (only there)."""
    library = logging.getLogger(LIBRARY_LOGGER)
    handler = RosLogHandler(ros_logger)
    saved = library.level, library.propagate
    library.addHandler(handler)
    library.setLevel(logging.INFO)
    library.propagate = False
    try:
        yield
    finally:
        library.removeHandler(handler)
        library.setLevel(saved[0])
        library.propagate = saved[1]
