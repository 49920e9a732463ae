"""The node's output messages for the output bag, built by the node's own builders.

``dap_ros.ros.messages`` builds the serialized depth, range_mask and points messages exactly as the
node publishes them (the scan is serialized here with ``rclpy.serialization``): the CDR bytes
rosbag2 stores. So the
output bag holds byte-for-byte what a subscriber of the running node would receive. This needs
the ROS 2 Python message packages (a ROS install, or ``pip install dap_ros[ros]`` on x86_64);
reading bags and computing metrics do not.
"""
from __future__ import annotations

from typing import Any

from dap_ros.errors import DapError
from dap_ros.geometry import laser_scan
from dap_ros.ros import messages as msgs
from dap_ros.ros.params import NodeParams

OUTPUT_TYPES = {
    "depth": "sensor_msgs/msg/Image",
    "range_mask": "sensor_msgs/msg/Image",
    "points": "sensor_msgs/msg/PointCloud2",
    "scan": "sensor_msgs/msg/LaserScan",
}


def check_available() -> None:
    try:
        import rclpy.serialization  # noqa: F401
        import sensor_msgs.msg  # noqa: F401
        import std_msgs.msg  # noqa: F401
    except ImportError as exc:
        raise DapError(
            f"--output-bag needs the ROS 2 Python messages ({exc.name} is missing): source a ROS 2 "
            "installation or pip install 'dap_ros[ros]' (x86_64); metrics alone work without them"
        ) from None


def enabled_outputs(p: NodeParams) -> list[str]:
    names = ["depth", "range_mask"]
    if p.points_enable:
        names.append("points")
    if p.scan_enable:
        names.append("scan")
    return names


class OutputBuilder:
    """Serialized output messages of one frame, as the node would publish them."""

    def __init__(self, p: NodeParams) -> None:
        check_available()
        from rclpy.serialization import serialize_message

        self.p = p
        self.names = enabled_outputs(p)
        self.spec = p.scan_spec()
        self._cloud = msgs.PointCloudBuilder()
        self._serialize = serialize_message

    def build(self, stamp_ns: int, frame_id: str, result: Any) -> dict[str, bytes]:
        from builtin_interfaces.msg import Time
        from std_msgs.msg import Header

        p = self.p
        header = Header(
            stamp=Time(sec=stamp_ns // 1_000_000_000, nanosec=stamp_ns % 1_000_000_000),
            frame_id=p.frame_id or frame_id,
        )
        out: dict[str, bytes] = {}
        for name in self.names:  # the node's own builders: the bytes it would publish
            if name == "depth":
                out[name] = msgs.depth_cdr(header, result.range_m)
            elif name == "range_mask":
                out[name] = msgs.mask_cdr(header, result.in_range)
            elif name == "points":
                out[name] = msgs.points_cdr_for(self._cloud, header, result, p)
            else:
                scan = laser_scan(result.range_m, self.spec, p.azimuth_offset_rad)
                out[name] = self._serialize(msgs.scan_msg(header, scan, self.spec))
        return out
