"""The demo's ROS 2 side: start ``python -m dap_ros.node`` and talk to it over real topics.

The node runs in its own process, on loopback only (``ROS_AUTOMATIC_DISCOVERY_RANGE=LOCALHOST``)
and in a ROS domain of its own (``ROS_DOMAIN_ID``), so the demo neither sees nor disturbs other
ROS 2 systems on the network. The player publishes each frame as sensor_msgs/Image (rgb8) on
``<ns>/image`` with the header stamp set to the publish time and waits until ``depth``,
``range_mask``, ``points`` and ``scan`` with that stamp have all arrived (lock-step: every frame is
processed, none is dropped by the node's newest-frame-only policy), so receipt time minus stamp is
the end-to-end latency of each output.
"""
from __future__ import annotations

import contextlib
import os
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator

import numpy as np

from dap_ros.errors import DapError
from dap_ros.ros.process import NodeProcess  # noqa: F401  (re-exported for the demo runner)

OUTPUTS = ("depth", "range_mask", "points", "scan")


def default_domain_id() -> int:
    """A domain in 1..101 (the range whose DDS ports never collide with Linux ephemeral ports),
    derived from the process id so that concurrent demos rarely share one."""
    return 1 + os.getpid() % 101


FASTDDS_PROFILE = Path(__file__).resolve().parents[1] / "assets" / "fastdds.xml"


@contextlib.contextmanager
def ros_environment(domain_id: int) -> Iterator[dict[str, str]]:
    """Set ROS_DOMAIN_ID and localhost-only discovery for this process (restored afterwards) and
    yield the environment for the node's process."""
    keys = {"ROS_DOMAIN_ID": str(domain_id), "ROS_AUTOMATIC_DISCOVERY_RANGE": "LOCALHOST",
            "ROS_LOCALHOST_ONLY": None,
            # a user's own Fast DDS profile wins; else ours (10 ms heartbeats: no 3 s repair stalls)
            "FASTDDS_DEFAULT_PROFILES_FILE": os.environ.get("FASTDDS_DEFAULT_PROFILES_FILE") or str(FASTDDS_PROFILE)}
    saved = {k: os.environ.get(k) for k in keys}
    try:
        for k, v in keys.items():
            if v is None:
                os.environ.pop(k, None)  # deprecated; conflicts with the discovery range on newer distros
            else:
                os.environ[k] = v
        yield dict(os.environ)
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def node_params_yaml(checkpoint: str, model_config: str, device: str, precision: str) -> str:
    import yaml

    params = {
        "checkpoint": checkpoint,
        "model_config": model_config,
        "allow_random_weights": False,
        "device": device,
        "precision": precision,
        "backend": "torch",
        "output_size": "input",
        "publish_colorized": False,
        "points": {"enable": True, "stride": 2, "rgb": True},
        "scan": {"enable": True},
        "qos": {"input": {"reliability": "reliable", "depth": 2},
                "output": {"reliability": "reliable", "depth": 2}},
    }
    return yaml.safe_dump({"/**": {"ros__parameters": params}}, sort_keys=False)


@dataclass
class FrameResult:
    stamp_ns: int
    sent_ns: int
    received_ns: dict[str, int] = field(default_factory=dict)
    depth: np.ndarray | None = None  # (H, W) float32 metres, +Inf beyond range, NaN invalid
    range_mask: np.ndarray | None = None  # (H, W) uint8, 255 = in range
    points: np.ndarray | None = None  # (N, 3) float32, body frame
    scan: np.ndarray | None = None  # (beams,) float32
    scan_angle_min: float = 0.0
    scan_angle_increment: float = 0.0

    def complete(self) -> bool:
        return all(k in self.received_ns for k in OUTPUTS)

    def latency_ms(self, output: str) -> float | None:
        t = self.received_ns.get(output)
        return None if t is None else (t - self.stamp_ns) / 1e6


def image_array(msg: Any) -> np.ndarray:
    """32FC1 or mono8 sensor_msgs/Image -> (H, W) array (a copy)."""
    dtype = {"32FC1": np.float32, "mono8": np.uint8}.get(msg.encoding)
    if dtype is None:
        raise DapError(f"unexpected encoding {msg.encoding!r} from the node")
    itemsize = np.dtype(dtype).itemsize
    data = np.frombuffer(msg.data, dtype=np.uint8)
    rows = data[: msg.step * msg.height].reshape(msg.height, msg.step)[:, : msg.width * itemsize]
    return np.ascontiguousarray(rows).view(dtype).reshape(msg.height, msg.width).copy()


def cloud_xyz(msg: Any) -> np.ndarray:
    """PointCloud2 with float32 x, y, z fields -> (N, 3) float32 (NaN points dropped)."""
    offsets = {f.name: f.offset for f in msg.fields}
    if not {"x", "y", "z"} <= set(offsets):
        raise DapError("the point cloud has no x, y, z fields")
    n = msg.width * msg.height
    raw = np.frombuffer(msg.data, dtype=np.uint8)[: n * msg.point_step].reshape(n, msg.point_step)
    xyz = np.stack([np.ascontiguousarray(raw[:, offsets[c]:offsets[c] + 4]).view(np.float32)[:, 0] for c in "xyz"], 1)
    return xyz[np.isfinite(xyz).all(1)]


class DemoClient:
    """An rclpy node in its own context that plays frames and collects the node's outputs."""

    def __init__(self, namespace: str, domain_id: int) -> None:
        try:
            import rclpy
            from rclpy.context import Context
            from rclpy.executors import SingleThreadedExecutor
            from rclpy.qos import DurabilityPolicy, HistoryPolicy, QoSProfile, ReliabilityPolicy
            from sensor_msgs.msg import Image, LaserScan, PointCloud2
        except ImportError as exc:
            raise DapError(f"the demo needs rclpy and sensor_msgs ({exc.name} missing): source ROS 2 or "
                           "pip install 'dap_ros[ros]'") from None
        self._Image = Image
        self.ns = "/" + namespace.strip("/")
        self.context = Context()
        try:
            rclpy.init(args=[], context=self.context, domain_id=domain_id)
        except TypeError:  # older rclpy: the domain comes from ROS_DOMAIN_ID (set by ros_environment)
            rclpy.init(args=[], context=self.context)
        self.node = rclpy.create_node("dap_demo_player", context=self.context)
        self.executor = SingleThreadedExecutor(context=self.context)
        self.executor.add_node(self.node)
        self.clock = self.node.get_clock()
        qos = QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=5, reliability=ReliabilityPolicy.RELIABLE,
                         durability=DurabilityPolicy.VOLATILE)
        self.input_topic = f"{self.ns}/image"
        self.pub = self.node.create_publisher(Image, self.input_topic, qos)
        self.pending: dict[int, FrameResult] = {}
        for name, cls in (("depth", Image), ("range_mask", Image), ("points", PointCloud2), ("scan", LaserScan)):
            self.node.create_subscription(cls, f"{self.ns}/{name}", self._callback(name), qos)

    def _callback(self, name: str):
        def on_message(msg: Any) -> None:
            now = self.clock.now().nanoseconds
            stamp = msg.header.stamp.sec * 1_000_000_000 + msg.header.stamp.nanosec
            result = self.pending.get(stamp)
            if result is None or name in result.received_ns:
                return
            result.received_ns[name] = now
            if name == "depth":
                result.depth = image_array(msg)
            elif name == "range_mask":
                result.range_mask = image_array(msg)
            elif name == "points":
                result.points = cloud_xyz(msg)
            else:
                result.scan = np.asarray(msg.ranges, dtype=np.float32)
                result.scan_angle_min = float(msg.angle_min)
                result.scan_angle_increment = float(msg.angle_increment)
        return on_message

    def spin_until(self, predicate, timeout: float, what: str, node: NodeProcess | None) -> None:
        deadline = time.monotonic() + timeout
        while not predicate():
            if node is not None:
                node.check_alive()
            if time.monotonic() > deadline:
                extra = f"; node log: {node.tail()}" if node is not None else ""
                raise DapError(f"demo: timed out after {timeout:.0f} s waiting for {what}{extra}")
            self.executor.spin_once(timeout_sec=0.02)

    def wait_for_node(self, timeout: float, node: NodeProcess | None) -> None:
        self.spin_until(
            lambda: self.pub.get_subscription_count() > 0
            and all(self.node.count_publishers(f"{self.ns}/{o}") > 0 for o in OUTPUTS),
            timeout, f"the depth node to subscribe to {self.input_topic} and publish its outputs", node)

    def play(self, rgb: np.ndarray, frame_id: str, timeout: float, node: NodeProcess | None) -> FrameResult:
        """Publish one frame and wait for all four outputs with its stamp."""
        from dap_ros.ros.messages import image_msg
        from std_msgs.msg import Header

        header = Header()
        now = self.clock.now()
        header.stamp = now.to_msg()
        header.frame_id = frame_id
        msg = image_msg(header, np.ascontiguousarray(rgb), "rgb8")
        result = FrameResult(stamp_ns=now.nanoseconds, sent_ns=now.nanoseconds)
        self.pending[result.stamp_ns] = result
        result.sent_ns = self.clock.now().nanoseconds
        self.pub.publish(msg)
        try:
            self.spin_until(result.complete, timeout, "the outputs of a frame (depth, range_mask, points, scan)", node)
        finally:
            self.pending.pop(result.stamp_ns, None)
        return result

    def close(self) -> None:
        import rclpy

        try:
            self.executor.shutdown()
            self.node.destroy_node()
        finally:
            if self.context.ok():
                rclpy.shutdown(context=self.context)


def temp_dir() -> Path:
    return Path(tempfile.mkdtemp(prefix="dap_demo_"))
