"""``eval-bag --realtime``: replay a bag through real rclpy into a running depth node.

Frames are published at the recorded rate (bag time, scaled by ``rate``) on the node's input
topic (``<ns>/image``, or ``<ns>/image/compressed`` for CompressedImage bags) with the header
stamp set to the publish time; the node copies the stamp to its outputs (DESIGN.md section 4), so
the receipt time of ``<ns>/depth`` minus its stamp is the end-to-end latency (decode, inference,
message building, DDS transport both ways). A published frame whose depth never arrives (within
``drain_timeout`` after the last publish) is a drop: the node keeps only the newest frame when busy.

The node is either already running (started by the user, e.g. ``ros2 launch``), or started here
with ``launch_node=True``: ``python -m dap_ros.node`` with the same parameters as the offline run.
"""
from __future__ import annotations

import logging
import tempfile
import time
from pathlib import Path
from typing import Any


from dap_ros.errors import DapError
from dap_ros.evaluation import bags
from dap_ros.ros.params import SPECS, NodeParams, field_name
from dap_ros.evaluation.timing import latency_summary_ms
from dap_ros.ros.process import NodeProcess

LOG = logging.getLogger("dap_ros")
WARMUP_FRAMES = 2


def params_yaml(p: NodeParams, **overrides: Any) -> str:
    """A ROS 2 parameters file (``/**: ros__parameters:``) holding every value of ``p``."""
    import yaml

    tree: dict[str, Any] = {}
    for spec in SPECS:
        value = overrides.get(spec.name, getattr(p, field_name(spec.name)))
        node = tree
        *parents, leaf = spec.name.split(".")
        for part in parents:
            node = node.setdefault(part, {})
        node[leaf] = value
    return yaml.safe_dump({"/**": {"ros__parameters": tree}}, sort_keys=False)


def _ns_topic(namespace: str, name: str) -> str:
    ns = namespace.strip("/")
    return f"/{ns}/{name}" if ns else f"/{name}"


def load_frames(bag: Path, image_topic: str, max_frames: int | None, distro: str | None) -> tuple[str, list[tuple[int, bytes]]]:
    """(msgtype, [(bag time ns, CDR bytes)]) of the image topic, loaded up front so disk reads
    never disturb the replay timing."""
    frames: list[tuple[int, bytes]] = []
    with bags.FrameSource(bag, image_topic, None, distro=distro, max_frames=max_frames) as source:
        for frame in source:
            frames.append((frame.log_time_ns, bytes(source.typestore.serialize_cdr(frame.image, frame.msgtype))))
        msgtype = source.image_msgtype
        if source.problem is not None:
            LOG.warning("real-time replay: bag reading stopped after %d frames: %s", len(frames), source.problem.message)
    return msgtype, frames


def run_realtime(
    bag: Path,
    image_topic: str,
    params: NodeParams,
    *,
    rate: float = 1.0,
    max_frames: int | None = None,
    launch_node: bool = False,
    node_namespace: str = "",
    startup_timeout: float = 120.0,
    drain_timeout: float = 5.0,
    distro: str | None = None,
    log_dir: Path | None = None,
    progress: bool = True,
) -> dict[str, Any]:
    """Replay and measure; returns the ``realtime`` section of metrics.json."""
    try:
        import rclpy
        from rclpy.context import Context
        from rclpy.executors import SingleThreadedExecutor
        from rclpy.qos import DurabilityPolicy, HistoryPolicy, QoSProfile, ReliabilityPolicy
        from rclpy.serialization import deserialize_message
        from sensor_msgs.msg import CompressedImage, Image
    except ImportError as exc:
        raise DapError(f"--realtime needs rclpy and sensor_msgs ({exc.name} missing): source ROS 2 or "
                       "pip install 'dap_ros[ros]'") from None
    if rate <= 0:
        raise DapError(f"--rate must be > 0, got {rate}")
    msgtype, raw_frames = load_frames(bag, image_topic, max_frames, distro)
    if len(raw_frames) < 1:
        raise DapError(f"no frames on {image_topic} to replay")
    compressed = msgtype == bags.COMPRESSED
    msg_cls = CompressedImage if compressed else Image
    messages = [(t, deserialize_message(data, msg_cls)) for t, data in raw_frames]
    input_topic = _ns_topic(node_namespace, "image/compressed" if compressed else "image")
    output_topic = _ns_topic(node_namespace, "depth")

    node_proc = None
    if launch_node:
        log_path = (log_dir or Path(tempfile.gettempdir())) / "depth_node.log"
        log_path.parent.mkdir(parents=True, exist_ok=True)
        params_text = params_yaml(params, lifecycle=False, input_transport="compressed" if compressed else "raw")
        node_proc = NodeProcess(params_text, node_namespace, log_path, log_path.with_suffix(".params.yaml"))
    context = Context()
    rclpy.init(args=[], context=context)
    node = executor = None
    try:
        node = rclpy.create_node("dap_eval_replay", context=context)
        executor = SingleThreadedExecutor(context=context)
        executor.add_node(node)
        clock = node.get_clock()
        pub = node.create_publisher(msg_cls, input_topic, QoSProfile(
            history=HistoryPolicy.KEEP_LAST, depth=max(1, params.qos_input_depth),
            reliability=ReliabilityPolicy.RELIABLE if params.qos_input_reliability == "reliable" else ReliabilityPolicy.BEST_EFFORT,
            durability=DurabilityPolicy.VOLATILE))
        received: dict[int, int] = {}  # stamp ns -> receipt ns

        def on_depth(msg: Any) -> None:
            now = clock.now().nanoseconds
            received.setdefault(bags.stamp_ns(msg.header), now)

        node.create_subscription(Image, output_topic, on_depth, QoSProfile(
            history=HistoryPolicy.KEEP_LAST, depth=50,
            reliability=ReliabilityPolicy.RELIABLE if params.qos_output_reliability == "reliable" else ReliabilityPolicy.BEST_EFFORT,
            durability=DurabilityPolicy.VOLATILE))

        def spin_until(predicate: Any, deadline: float, what: str) -> None:
            while not predicate():
                if node_proc is not None:
                    node_proc.check_alive()
                if time.monotonic() > deadline:
                    extra = f"; node log: {node_proc.tail()}" if node_proc else ""
                    raise DapError(f"real-time replay: timed out waiting for {what}{extra}")
                executor.spin_once(timeout_sec=0.05)

        spin_until(lambda: pub.get_subscription_count() > 0 and node.count_publishers(output_topic) > 0,
                   time.monotonic() + startup_timeout,
                   f"a depth node subscribed to {input_topic} and publishing {output_topic}")

        def publish(msg: Any) -> int:
            now = clock.now()
            msg.header.stamp = now.to_msg()
            pub.publish(msg)
            return now.nanoseconds

        for i in range(min(WARMUP_FRAMES, len(messages))):  # model warm-up; not measured
            stamp = publish(messages[i][1])
            spin_until(lambda: stamp in received, time.monotonic() + startup_timeout, "the warm-up frame's depth")
        received.clear()

        from tqdm import tqdm

        bar = tqdm(total=len(messages), unit="frame", desc="real-time replay", disable=not progress)
        sent: list[int] = []
        t0_bag = messages[0][0]
        t0 = time.monotonic()
        for bag_time, msg in messages:
            target = t0 + (bag_time - t0_bag) * 1e-9 / rate
            while (remaining := target - time.monotonic()) > 0:  # the replay clock, not a synchronization
                executor.spin_once(timeout_sec=min(remaining, 0.02))
            sent.append(publish(msg))
            bar.update(1)
            if node_proc is not None:
                node_proc.check_alive()
        replay_s = time.monotonic() - t0
        bar.close()
        pending = set(sent)
        drain_end = time.monotonic() + drain_timeout
        while not pending <= received.keys() and time.monotonic() < drain_end:  # late outputs
            executor.spin_once(timeout_sec=0.05)
        latencies = [(received[s] - s) * 1e-6 for s in sent if s in received]
        dropped = sum(1 for s in sent if s not in received)
        span = (messages[-1][0] - t0_bag) * 1e-9
        return {
            "input_topic": input_topic,
            "output_topic": output_topic,
            "launched_node": launch_node,
            "node_log": str(node_proc.log_path) if node_proc else None,
            "rate": rate,
            "recorded_hz": (len(messages) - 1) / span if span > 0 else None,
            "publish_hz": (len(messages) - 1) / replay_s if replay_s > 0 and len(messages) > 1 else None,
            "warmup_frames": min(WARMUP_FRAMES, len(messages)),
            "frames_published": len(sent),
            "frames_received": len(latencies),
            "frames_dropped": dropped,
            "drop_rate": dropped / len(sent) if sent else None,
            "latency_ms": latency_summary_ms(latencies),
            "latencies_ms": latencies,
            "params": {"qos_input": params.qos_input_reliability, "qos_output": params.qos_output_reliability},
        }
    finally:
        if node is not None:
            node.destroy_node()
        if executor is not None:
            executor.shutdown()
        rclpy.try_shutdown(context=context)
        if node_proc is not None:
            node_proc.stop()

