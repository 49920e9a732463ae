"""Helpers of the ROS node tests: an executor harness, output collection, frame building.

Imported by conftest.py after it has set the ROS environment (domain, localhost discovery).
"""
from __future__ import annotations

import itertools
import os
import time
from pathlib import Path
from typing import Any, Callable

import numpy as np
import pytest
import rclpy
from rclpy.executors import SingleThreadedExecutor
from rclpy.qos import QoSProfile, ReliabilityPolicy
from sensor_msgs.msg import Image, LaserScan, PointCloud2
from std_msgs.msg import Header
from builtin_interfaces.msg import Time as TimeMsg

REPO = Path(__file__).resolve().parents[2]
REAL_SAMPLE = Path(__file__).resolve().parents[2].parent / "shared/reference/real_sample/matterport3d_rgb.png"

# A tiny random DAP at 64x128: a few ms per frame on CPU.
TINY = {
    "model_config": "tiny",
    "allow_random_weights": True,
    "input_height": 64,
    "input_width": 128,
    "device": "cpu",
    # the random net says "out of range" with probability ~0.5-0.7 everywhere and ~53 m otherwise:
    # 0.3 keeps pixels in range; tests move max_range to get +Inf
    "mask_threshold": 0.3,
}
OUTPUTS = {"depth": Image, "range_mask": Image, "points": PointCloud2, "scan": LaserScan, "depth/colorized": Image}
_names = itertools.count()


def unique_namespace() -> str:
    return f"/t{os.getpid()}_{next(_names)}"


def rgb_image_msg(rgb: np.ndarray, stamp: TimeMsg, frame_id: str = "camera", encoding: str = "rgb8",
                  pad: int = 0) -> Image:
    """Build an Image the way a driver would: bytes, optional row padding, any channel order."""
    from dap_ros.ros.messages import image_msg

    channels = {"rgb8": rgb, "bgr8": rgb[..., ::-1], "rgba8": np.dstack([rgb, np.full(rgb.shape[:2], 7, np.uint8)]),
                "bgra8": np.dstack([rgb[..., ::-1], np.full(rgb.shape[:2], 7, np.uint8)]),
                "mono8": rgb[..., 0]}[encoding]
    if pad:
        row = channels.reshape(rgb.shape[0], -1)
        channels = np.concatenate([row, np.full((rgb.shape[0], pad), 0xAB, np.uint8)], axis=1)
        msg = image_msg(Header(stamp=stamp, frame_id=frame_id), channels, "mono8")
        msg.encoding, msg.width = encoding, rgb.shape[1]
        return msg
    return image_msg(Header(stamp=stamp, frame_id=frame_id), np.ascontiguousarray(channels), encoding)


class Harness:
    """One executor spun by the test thread, a helper node for test publishers/subscribers/clients."""

    def __init__(self, context: Context, namespace: str) -> None:
        self.context = context
        self.namespace = namespace
        self.executor = SingleThreadedExecutor(context=context)
        self.helper = rclpy.create_node("test_helper", namespace=namespace, context=context)
        self.executor.add_node(self.helper)
        self._stamps = itertools.count(1)
        self.nodes: list[Any] = []

    def add(self, node: Any) -> Any:
        self.nodes.append(node)
        self.executor.add_node(node)
        return node

    def spin_until(self, predicate: Callable[[], Any], timeout: float, what: str) -> Any:
        deadline = time.monotonic() + timeout
        while True:
            value = predicate()
            if value:
                return value
            if time.monotonic() > deadline:
                pytest.fail(f"timed out after {timeout:.0f} s waiting for {what}")
            self.executor.spin_once(timeout_sec=0.02)

    def spin_for(self, seconds: float) -> None:
        """Keep the executor running for a while (used only to let something NOT happen)."""
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            self.executor.spin_once(timeout_sec=0.02)

    def next_stamp(self) -> TimeMsg:
        # distinct, recognisable stamps near "now" so output ages stay meaningful
        now = self.helper.get_clock().now().to_msg()
        return TimeMsg(sec=now.sec, nanosec=(now.nanosec // 1000) * 1000 + next(self._stamps) % 1000)

    def reliable(self, depth: int = 10) -> QoSProfile:
        return QoSProfile(depth=depth, reliability=ReliabilityPolicy.RELIABLE)

    def close(self) -> None:
        for node in self.nodes:
            self.executor.remove_node(node)
            node.close() if hasattr(node, "close") else node.destroy_node()
        self.executor.remove_node(self.helper)
        self.helper.destroy_node()
        self.executor.shutdown()


class OutputCollector:
    """Subscribes to the node's outputs and groups the messages by header stamp."""

    def __init__(self, harness: Harness, topics: dict[str, type] | None = None) -> None:
        self.harness = harness
        self.by_stamp: dict[tuple[int, int], dict[str, Any]] = {}
        self.order: list[tuple[int, int]] = []  # stamps of depth messages in arrival order
        self.subs = []
        for topic, msg_type in (topics or OUTPUTS).items():
            self.subs.append(harness.helper.create_subscription(
                msg_type, topic, lambda m, t=topic: self._on(t, m), harness.reliable()))

    def _on(self, topic: str, msg: Any) -> None:
        key = (msg.header.stamp.sec, msg.header.stamp.nanosec)
        self.by_stamp.setdefault(key, {})[topic] = msg
        if topic == "depth":
            self.order.append(key)

    def complete(self, stamp: TimeMsg, topics: set[str]) -> dict[str, Any] | None:
        got = self.by_stamp.get((stamp.sec, stamp.nanosec), {})
        return got if topics <= set(got) else None


def send_until_outputs(harness: Harness, publisher: Any, make_msg: Callable[[TimeMsg], Any],
                       collector: OutputCollector, topics: set[str] | None = None,
                       timeout: float = 20.0) -> tuple[Any, dict[str, Any]]:
    """Publish fresh-stamped frames (every 0.3 s) until one stamp has all ``topics``.

    Repeating covers the start-up window where DDS has not matched every endpoint yet (the node
    builds an output only once it sees a subscriber). Returns (the input message, its outputs).
    """
    topics = set(OUTPUTS) if topics is None else topics
    harness.spin_until(lambda: publisher.get_subscription_count() > 0, 10.0, "the node to subscribe to the input")
    sent: list[Any] = []
    last = [0.0]

    def ready() -> Any:
        for msg in sent:
            got = collector.complete(msg.header.stamp, topics)
            if got:
                return msg, got
        if time.monotonic() - last[0] > 0.3:
            msg = make_msg(harness.next_stamp())
            publisher.publish(msg)
            sent.append(msg)
            last[0] = time.monotonic()
        return None

    return harness.spin_until(ready, timeout, f"outputs {sorted(topics)} for one input frame")


