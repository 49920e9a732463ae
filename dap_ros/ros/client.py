"""The depth node's other side: publish camera frames, collect the node's outputs by stamp, read its
/diagnostics. Used by ``dap-ros demo``, ``eval-bag --realtime``, the node benchmark and the tests.

A :class:`NodeClient` is an rclpy node with its own executor (and, unless given one, its own rclpy
context and ROS domain). The node it talks to runs in another process (:class:`NodeProcess`) or
in this one (``add_node``: tests). The node copies each input stamp to all its outputs, so outputs
are grouped by stamp and the receipt time minus the stamp is the end-to-end latency. Every wait
is bounded: a timeout raises :class:`ClientTimeout` naming what was awaited, with the tail of the
node's log when the client started the node.
"""
from __future__ import annotations

import struct
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from dap_ros.errors import DapError
from dap_ros.ros.outputs import TOPICS
from dap_ros.ros.process import NodeProcess

OUTPUTS = ("depth", "range_mask", "points", "scan")  # what a robot consumes (colorized: for viewing)


class ClientTimeout(DapError):
    """A bounded wait for the node ended without what was awaited."""


def qos(reliability: str = "reliable", depth: int = 5) -> Any:
    """A keep-last, volatile QoS profile ('reliable' or 'best_effort')."""
    from rclpy.qos import DurabilityPolicy, HistoryPolicy, QoSProfile, ReliabilityPolicy

    policy = ReliabilityPolicy.RELIABLE if reliability == "reliable" else ReliabilityPolicy.BEST_EFFORT
    return QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=depth, reliability=policy,
                      durability=DurabilityPolicy.VOLATILE)


def camera_image(pixels: np.ndarray, stamp: Any = None, frame_id: str = "camera", encoding: str = "rgb8") -> Any:
    """sensor_msgs/Image of (H, W[, C]) uint8 ``pixels``, as a camera driver publishes it
    (``stamp``: a builtin_interfaces/Time; None leaves it zero for :meth:`NodeClient.publish`)."""
    from builtin_interfaces.msg import Time
    from sensor_msgs.msg import Image
    from std_msgs.msg import Header

    pixels = np.ascontiguousarray(pixels)
    channels = pixels.shape[2] if pixels.ndim == 3 else 1
    return Image(header=Header(stamp=stamp or Time(), frame_id=frame_id), height=pixels.shape[0],
                 width=pixels.shape[1], encoding=encoding, is_bigendian=False, step=pixels.shape[1] * channels,
                 data=pixels.tobytes())


def image_array(msg: Any) -> np.ndarray:
    """A 32FC1, mono8 or bgr8 sensor_msgs/Image from the node -> (H, W[, 3]) array (a copy)."""
    layouts = {"32FC1": (np.float32, 1), "mono8": (np.uint8, 1), "bgr8": (np.uint8, 3)}
    if msg.encoding not in layouts:
        raise DapError(f"unexpected encoding {msg.encoding!r} from the node")
    dtype, channels = layouts[msg.encoding]
    row = msg.width * channels * np.dtype(dtype).itemsize
    data = np.frombuffer(msg.data, dtype=np.uint8)
    rows = data[: msg.step * msg.height].reshape(msg.height, msg.step)[:, :row]
    shape = (msg.height, msg.width) + ((channels,) if channels > 1 else ())
    return np.ascontiguousarray(rows).view(dtype).reshape(shape).copy()


def cloud_xyz(msg: Any) -> np.ndarray:
    """PointCloud2 with float32 x, y, z fields -> (N, 3) float32 (NaN points dropped)."""
    offsets = {f.name: f.offset for f in msg.fields}
    if not {"x", "y", "z"} <= set(offsets):
        raise DapError("the point cloud has no x, y, z fields")
    n = msg.width * msg.height
    raw = np.frombuffer(msg.data, dtype=np.uint8)[: n * msg.point_step].reshape(n, msg.point_step)
    xyz = np.stack([np.ascontiguousarray(raw[:, offsets[c]:offsets[c] + 4]).view(np.float32)[:, 0] for c in "xyz"], 1)
    return xyz[np.isfinite(xyz).all(1)]


def stamp_ns(stamp: Any) -> int:
    return int(stamp.sec) * 1_000_000_000 + int(stamp.nanosec)


@dataclass
class Received:
    """The outputs of one input frame that have arrived so far."""

    stamp_ns: int
    messages: dict[str, Any] = field(default_factory=dict)  # output name -> message (CDR bytes when raw)
    receipt_ns: dict[str, int] = field(default_factory=dict)  # output name -> client clock at receipt

    def latency_ms(self, name: str) -> float | None:
        t = self.receipt_ns.get(name)
        return None if t is None else (t - self.stamp_ns) / 1e6


class NodeClient:
    """Talks to one depth node in ``namespace``.

    ``context``: an initialised rclpy Context to share (tests); None: a new one in ``domain_id``
    (None: the environment's). ``raw``: keep outputs as CDR bytes (a light client: nothing is
    deserialized, the stamp is read from the bytes); ``keep_messages=False`` keeps receipt times only.
    ``process``: the node's process, checked while waiting and quoted when a wait fails.
    """

    def __init__(self, namespace: str = "", *, context: Any = None, domain_id: int | None = None,
                 raw: bool = False, keep_messages: bool = True, process: NodeProcess | None = None,
                 name: str = "dap_client") -> None:
        try:
            import rclpy
            from rclpy.context import Context
            from rclpy.executors import SingleThreadedExecutor
        except ImportError as exc:
            raise DapError(f"talking to the node needs rclpy and sensor_msgs ({exc.name} missing): source ROS 2 "
                           "or pip install 'dap_ros[ros]'") from None
        self.namespace = "/" + namespace.strip("/") if namespace.strip("/") else ""
        self.process = process
        self.raw, self.keep_messages = raw, keep_messages
        self._own_context = context is None
        if context is None:
            context = Context()
            try:
                rclpy.init(args=[], context=context, domain_id=domain_id)
            except TypeError:  # an rclpy without domain_id: ROS_DOMAIN_ID decides
                rclpy.init(args=[], context=context)
        self.context = context
        self.node = rclpy.create_node(name, namespace=self.namespace or None, context=context)
        self.executor = SingleThreadedExecutor(context=context)
        self.executor.add_node(self.node)
        self.clock = self.node.get_clock()
        self._lock = threading.Lock()  # callbacks may run on a spinning thread (the benchmark)
        self._received: dict[int, Received] = {}
        self._subscribed: dict[str, Any] = {}
        self._publishers: dict[tuple[str, bool], Any] = {}
        self._last_stamp = 0
        self.completed: list[tuple[int, int]] = []  # (stamp ns, receipt ns of its last output), in order
        self.diagnostics: list[dict[str, str]] = []  # this node's statuses, oldest first
        self._in_process: list[Any] = []

    # --- topics ------------------------------------------------------------------------------------

    def topic(self, name: str) -> str:
        """Full name of an output ('depth', 'colorized', ...) or any relative topic of the node."""
        return f"{self.namespace}/{TOPICS.get(name, name)}"

    def subscribe(self, names: Iterable[str], profile: Any = None) -> None:
        """Collect the outputs ``names`` (subscribing twice to one output is a no-op)."""
        from sensor_msgs.msg import Image, LaserScan, PointCloud2

        types = {"depth": Image, "range_mask": Image, "colorized": Image, "points": PointCloud2, "scan": LaserScan}
        for name in names:
            if name not in self._subscribed:
                self._subscribed[name] = self.node.create_subscription(
                    types[name], self.topic(name), self._callback(name), profile or qos(), raw=self.raw)

    def watch_diagnostics(self, node_name: str = "dap_depth") -> None:
        """Keep the /diagnostics statuses of the node ``<namespace>/<node_name>`` in ``diagnostics``."""
        from diagnostic_msgs.msg import DiagnosticArray

        prefix = f"{self.namespace}/{node_name}:"

        def on_array(msg: Any) -> None:
            for status in msg.status:
                if status.name.startswith(prefix):
                    values = {kv.key: kv.value for kv in status.values}
                    with self._lock:
                        self.diagnostics.append({**values, "_level": str(status.level[0] if isinstance(
                            status.level, bytes) else status.level), "_message": status.message})

        self.node.create_subscription(DiagnosticArray, "/diagnostics", on_array, 20)

    def publisher(self, topic: str = "image", compressed: bool = False, profile: Any = None) -> Any:
        """The publisher of camera frames on the node's ``topic`` (Image, or CompressedImage)."""
        from sensor_msgs.msg import CompressedImage, Image

        key = (topic, compressed)
        if key not in self._publishers:
            self._publishers[key] = self.node.create_publisher(
                CompressedImage if compressed else Image, self.topic(topic), profile or qos())
        return self._publishers[key]

    def add_node(self, node: Any) -> Any:
        """Spin an in-process node with this client's executor (tests)."""
        self._in_process.append(node)
        self.executor.add_node(node)
        return node

    # --- waiting -----------------------------------------------------------------------------------

    def spin_until(self, predicate: Callable[[], Any], timeout: float, what: str, required: bool = True) -> Any:
        """Spin until ``predicate()`` is truthy and return its value. After ``timeout`` seconds:
        ClientTimeout naming ``what``, or None when not ``required``."""
        deadline = time.monotonic() + timeout
        while True:
            value = predicate()
            if value:
                return value
            if self.process is not None:
                self.process.check_alive()
            if time.monotonic() > deadline:
                if not required:
                    return None
                node = f"; {self.process.describe()}" if self.process is not None else ""
                raise ClientTimeout(f"timed out after {timeout:.0f} s waiting for {what}{node}")
            self.executor.spin_once(timeout_sec=0.02)

    def spin_for(self, seconds: float) -> None:
        """Keep spinning for a while (only to let something NOT happen, or to pace a replay)."""
        deadline = time.monotonic() + seconds
        while (left := deadline - time.monotonic()) > 0:
            self.executor.spin_once(timeout_sec=min(left, 0.02))

    def wait_until_ready(self, timeout: float, topic: str = "image", compressed: bool = False) -> None:
        """Until the node subscribes to the input and publishes every subscribed output."""
        pub = self.publisher(topic, compressed)
        self.spin_until(
            lambda: pub.get_subscription_count() > 0
            and all(self.node.count_publishers(self.topic(n)) > 0 for n in self._subscribed),
            timeout, f"the depth node to subscribe to {pub.topic_name} and publish {sorted(self._subscribed)}")

    # --- frames ------------------------------------------------------------------------------------

    def new_stamp(self) -> Any:
        """A builtin_interfaces/Time near now, never equal to an earlier one of this client."""
        ns = max(self.clock.now().nanoseconds, self._last_stamp + 1000)  # distinct at the microsecond
        self._last_stamp = ns
        from builtin_interfaces.msg import Time

        return Time(sec=ns // 1_000_000_000, nanosec=ns % 1_000_000_000)

    def publish(self, msg: Any, publisher: Any = None, restamp: bool = True) -> int:
        """Publish a camera message (its stamp set to now unless ``restamp`` is False); returns the stamp in ns."""
        if restamp:
            msg.header.stamp = self.new_stamp()
        (publisher or self.publisher()).publish(msg)
        return stamp_ns(msg.header.stamp)

    def outputs(self, stamp: int, names: Iterable[str] | None = None) -> Received | None:
        """What arrived for ``stamp`` when it holds every output in ``names`` (default: the subscribed)."""
        wanted = set(self._subscribed if names is None else names)
        with self._lock:
            got = self._received.get(stamp)
            return got if got is not None and wanted <= set(got.receipt_ns) else None

    def wait_for_outputs(self, stamp: int, timeout: float, names: Iterable[str] | None = None) -> Received:
        names = sorted(self._subscribed if names is None else names)
        return self.spin_until(lambda: self.outputs(stamp, names), timeout, f"outputs {names} of one frame")

    def send(self, msg: Any, timeout: float, names: Iterable[str] | None = None) -> Received:
        """Publish ``msg`` with a fresh stamp and wait for its outputs (lock-step: none is dropped)."""
        stamp = self.publish(msg)
        try:
            return self.wait_for_outputs(stamp, timeout, names)
        finally:
            self.forget(stamp)

    def send_until_outputs(self, make_msg: Callable[[Any], Any], names: Iterable[str] | None = None,
                           timeout: float = 20.0, publisher: Any = None, period: float = 0.3) -> tuple[Any, Received]:
        """Publish a fresh-stamped frame every ``period`` s until one stamp has all outputs ``names``.

        Repeating covers the start-up window where DDS has not matched every endpoint yet (the node
        builds an output only once it sees a subscriber). ``timeout`` bounds the whole call, the
        wait for the node's subscription included (a node process may still be starting: a fixed
        10 s for it failed on a busy machine). Returns (the input message, its outputs).
        """
        deadline = time.monotonic() + timeout
        publisher = publisher or self.publisher()
        names = sorted(self._subscribed if names is None else names)
        self.spin_until(lambda: publisher.get_subscription_count() > 0, timeout,
                        f"the node to subscribe to {publisher.topic_name}")
        sent: list[Any] = []
        last = [0.0]

        def ready() -> Any:
            for msg in sent:
                got = self.outputs(stamp_ns(msg.header.stamp), names)
                if got:
                    return msg, got
            if time.monotonic() - last[0] > period:
                msg = make_msg(self.new_stamp())
                self.publish(msg, publisher, restamp=False)
                sent.append(msg)
                last[0] = time.monotonic()
            return None

        return self.spin_until(ready, max(deadline - time.monotonic(), 2 * period),
                               f"outputs {names} for one input frame")

    def forget(self, stamp: int) -> None:
        with self._lock:
            self._received.pop(stamp, None)

    def _callback(self, name: str) -> Callable[[Any], None]:
        subscribed = self._subscribed

        def on_message(msg: Any) -> None:
            now = self.clock.now().nanoseconds
            if isinstance(msg, bytes):  # CDR: 4 bytes of encapsulation, then the header's stamp
                stamp = struct.unpack_from("<iI" if msg[1] == 1 else ">iI", msg, 4)
                key = stamp[0] * 1_000_000_000 + stamp[1]
            else:
                key = stamp_ns(msg.header.stamp)
            with self._lock:
                got = self._received.setdefault(key, Received(key))
                if name in got.receipt_ns:
                    return
                got.receipt_ns[name] = now
                if self.keep_messages:
                    got.messages[name] = msg
                if len(got.receipt_ns) == len(subscribed) and set(got.receipt_ns) == set(subscribed):
                    self.completed.append((key, now))

        return on_message

    def close(self) -> None:
        import rclpy

        for node in self._in_process:
            self.executor.remove_node(node)
            node.close() if hasattr(node, "close") else node.destroy_node()
        self._in_process.clear()
        try:
            self.executor.shutdown()
            self.node.destroy_node()
        finally:
            if self._own_context and self.context.ok():
                rclpy.shutdown(context=self.context)
