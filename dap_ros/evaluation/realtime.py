"""``eval-bag --realtime``: replay a bag through real rclpy into a running depth node.

Frames are published at the recorded rate (bag time, scaled by ``rate``) on the node's input
topic (``<ns>/image``, or ``<ns>/image/compressed`` for CompressedImage bags) with the header
stamp set to the publish time; the node copies the stamp to its outputs (docs/ros_node.md), so
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
from dap_ros.evaluation.timing import latency_summary_ms
from dap_ros.ros.params import NodeParams
from dap_ros.ros.process import NodeProcess

LOG = logging.getLogger("dap_ros")
WARMUP_FRAMES = 2


def load_frames(
    bag: Path, image_topic: str, max_frames: int | None, distro: str | None
) -> tuple[str, list[tuple[int, bytes]]]:
    """(msgtype, [(bag time ns, CDR bytes)]) of the image topic, loaded up front so disk reads
    never disturb the replay timing."""
    frames: list[tuple[int, bytes]] = []
    with bags.FrameSource(bag, image_topic, None, distro=distro, max_frames=max_frames) as source:
        for frame in source:
            frames.append((frame.log_time_ns, bytes(source.typestore.serialize_cdr(frame.image, frame.msgtype))))
        msgtype = source.image_msgtype
        if source.problem is not None:
            LOG.warning("real-time replay: bag reading stopped after %d frames: %s", len(frames),
                        source.problem.message)
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
        from rclpy.serialization import deserialize_message
        from sensor_msgs.msg import CompressedImage, Image

        from dap_ros.ros.client import NodeClient, qos
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
    input_name = "image/compressed" if compressed else "image"
    node = _launch(params, compressed, node_namespace, log_dir) if launch_node else None
    client = None
    try:
        client = NodeClient(node_namespace, process=node, name="dap_eval_replay")
        client.subscribe(["depth"], qos(params.qos_output_reliability, 50))
        input_qos = qos(params.qos_input_reliability, max(1, params.qos_input_depth))
        pub = client.publisher(input_name, compressed, input_qos)
        client.wait_until_ready(startup_timeout, input_name, compressed)
        for _, msg in messages[:WARMUP_FRAMES]:  # model warm-up; not measured
            client.send_until_outputs(lambda stamp, m=msg: _stamped(m, stamp), ["depth"], startup_timeout, pub)
        sent, replay_s = _replay(client, pub, messages, rate, progress)
        client.spin_until(lambda: all(client.outputs(s) for s in sent), drain_timeout, "late outputs", required=False)
        latencies = [got.latency_ms("depth") for s in sent if (got := client.outputs(s)) is not None]
        dropped = len(sent) - len(latencies)
        span = (messages[-1][0] - messages[0][0]) * 1e-9
        return {
            "input_topic": client.topic(input_name),
            "output_topic": client.topic("depth"),
            "launched_node": launch_node,
            "node_log": str(node.log_path) if node else None,
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
        if client is not None:
            client.close()
        if node is not None:
            node.stop()


def _launch(params: NodeParams, compressed: bool, namespace: str, log_dir: Path | None) -> NodeProcess:
    """``python -m dap_ros.node`` with the offline run's parameters, on the bag's transport."""
    log_path = (log_dir or Path(tempfile.gettempdir())) / "depth_node.log"
    log_path.parent.mkdir(parents=True, exist_ok=True)
    values = {**params.values(), "lifecycle": False, "input_transport": "compressed" if compressed else "raw"}
    return NodeProcess(values, namespace, log_path)


def _stamped(msg: Any, stamp: Any) -> Any:
    msg.header.stamp = stamp
    return msg


def _replay(
    client: Any, pub: Any, messages: list[tuple[int, Any]], rate: float, progress: bool
) -> tuple[list[int], float]:
    """Publish every message at its bag time (scaled by ``rate``), stamped with the publish time;
    returns (the stamps sent, the replay's duration in seconds)."""
    from tqdm import tqdm

    bar = tqdm(total=len(messages), unit="frame", desc="real-time replay", disable=not progress)
    sent: list[int] = []
    t0_bag, t0 = messages[0][0], time.monotonic()
    for bag_time, msg in messages:
        client.spin_for(t0 + (bag_time - t0_bag) * 1e-9 / rate - time.monotonic())  # the replay clock
        sent.append(client.publish(msg, pub))
        bar.update(1)
        if client.process is not None:
            client.process.check_alive()
    bar.close()
    return sent, time.monotonic() - t0
