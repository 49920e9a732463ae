"""A frame's outputs, each built once, in place, as the serialized message the node publishes.

The node publishes these bytes, ``dap-ros eval-bag`` writes the same bytes into its output bag,
and ``benchmarks/node_benchmark.py`` times exactly this code as the node's message building. One
frame at a time: the messages live in buffers that the next frame reuses (:class:`CdrBuffers`).

Per frame: :meth:`OutputBuilder.begin` lays out the depth image first, so that the predictor
writes the range straight into it (``range_out``); after prediction :meth:`FrameOutputs.build`
makes each wanted output. Message layouts and units: docs/ros_node.md.
"""
from __future__ import annotations

from typing import Any

import numpy as np

from dap_ros.geometry import LaserScanSpec, laser_scan
from dap_ros.geometry.rotation import rpy_matrix
from dap_ros.io.colorize import colorize_range
from dap_ros.ros.messages import CdrBuffers, CdrMessage, image_message, pointcloud_message, scan_message
from dap_ros.ros.params import NodeParams
from dap_ros.ros.point_cloud import PointCloudBuilder

# Build order: the point cloud first (the costliest; the node builds it on a helper thread while
# its own thread makes the others).
OUTPUTS = ("points", "depth", "range_mask", "scan", "colorized")
TOPICS = {"points": "points", "depth": "depth", "range_mask": "range_mask", "scan": "scan",
          "colorized": "depth/colorized"}
MSG_TYPES = {"points": "sensor_msgs/msg/PointCloud2", "depth": "sensor_msgs/msg/Image",
             "range_mask": "sensor_msgs/msg/Image", "scan": "sensor_msgs/msg/LaserScan",
             "colorized": "sensor_msgs/msg/Image"}
COLORIZED_MIN_RANGE_M = 0.3  # fixed colour scale (log, 0.3 m .. max_range): no frame-to-frame flicker


def enabled_outputs(p: NodeParams) -> tuple[str, ...]:
    """The outputs the parameters switch on, in build order."""
    enabled = {"points": p.points_enable, "depth": True, "range_mask": True, "scan": p.scan_enable,
               "colorized": p.publish_colorized}
    return tuple(name for name in OUTPUTS if enabled[name])


class OutputBuilder:
    """Owns the reused message buffers and the point-cloud ray cache of one output stream."""

    def __init__(self) -> None:
        self.buffers = CdrBuffers()
        self.cloud = PointCloudBuilder()
        self._scan: tuple[NodeParams, LaserScanSpec] | None = None

    def scan_spec(self, p: NodeParams) -> LaserScanSpec:
        if self._scan is None or self._scan[0] is not p:
            self._scan = (p, p.scan_spec())
        return self._scan[1]

    def begin(self, p: NodeParams, header: Any, size: tuple[int, int], names: tuple[str, ...]) -> FrameOutputs:
        """Start a frame whose outputs have ``size`` (H, W) and ``header``; ``names``: what to build."""
        return FrameOutputs(self, p, header, size, names)


class FrameOutputs:
    """One frame's messages. ``range_out`` is the depth message's float32 (H, W) payload (None
    when depth is not wanted): hand it to ``DepthPredictor.predict(range_out=...)``."""

    def __init__(self, builder: OutputBuilder, p: NodeParams, header: Any, size: tuple[int, int],
                 names: tuple[str, ...]) -> None:
        self._builder, self.p, self.header, self.size, self.names = builder, p, header, size, names
        self._depth: CdrMessage | None = None
        self.range_out: np.ndarray | None = None
        if "depth" in names:
            self._depth, self.range_out = image_message(header, size, np.float32, "32FC1", builder.buffers, "depth")

    def build(self, name: str, result: Any) -> CdrMessage:
        """The serialized message of output ``name`` for ``result`` (a DepthResult of this frame)."""
        makers = {"points": self._points, "depth": self._depth_image, "range_mask": self._range_mask,
                  "scan": self._scan, "colorized": self._colorized}
        return makers[name](result)

    def _depth_image(self, result: Any) -> CdrMessage:
        if result.range_m is not self.range_out:  # the predictor did not write it in place
            np.copyto(self.range_out, result.range_m)
        return self._depth

    def _range_mask(self, result: Any) -> CdrMessage:
        message, pixels = image_message(self.header, self.size, np.uint8, "mono8", self._builder.buffers, "range_mask")
        np.multiply(result.in_range.view(np.uint8), np.uint8(255), out=pixels)
        return message

    def _colorized(self, result: Any) -> CdrMessage:
        shape = self.size + (3,)
        message, pixels = image_message(self.header, shape, np.uint8, "bgr8", self._builder.buffers, "colorized")
        colours = colorize_range(result.range_m, max_range=self.p.max_range, min_range=COLORIZED_MIN_RANGE_M)
        np.copyto(pixels, colours[..., ::-1])
        return message

    def _points(self, result: Any) -> CdrMessage:
        p = self.p
        made: list[CdrMessage] = []

        def into_message(shape: tuple[int, ...]) -> np.ndarray:
            message, record = pointcloud_message(self.header, shape, organized=p.points_organized,
                                                 buffers=self._builder.buffers)
            made.append(message)
            return record

        roll, pitch, yaw = p.output_rotation  # the camera's mount when its image is used as it is
        rotation = rpy_matrix(roll, pitch, yaw) if roll or pitch else None
        self._builder.cloud.record(
            result.range_m, result.point_colors(p.points_stride) if p.points_rgb else None, stride=p.points_stride,
            min_range=p.points_min_range, max_range=p.points_max_range,
            azimuth_offset_rad=yaw if rotation is None else 0.0, rotation=rotation,
            organized=p.points_organized, allocate=into_message,
        )
        return made[-1]

    def _scan(self, result: Any) -> CdrMessage:
        spec = self._builder.scan_spec(self.p)
        message, ranges = scan_message(self.header, spec, self._builder.buffers)
        ranges[...] = laser_scan(result.range_m, spec, self.p.azimuth_offset_rad)
        return message
