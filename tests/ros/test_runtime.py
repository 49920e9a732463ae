"""Run-time behaviour: parameter changes, newest-frame-only under a burst, bad input, diagnostics."""
from __future__ import annotations

import io
import threading
import time

import numpy as np
import pytest
from builtin_interfaces.msg import Time
from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus
from rclpy.parameter import Parameter
from ros_helpers import rgb_image_msg, send_until_outputs
from sensor_msgs.msg import CompressedImage, Image
from std_msgs.msg import Header

from dap_ros.ros.client import qos, stamp_ns

pytestmark = pytest.mark.ros


def depth_of(msg: Image) -> np.ndarray:
    return np.frombuffer(msg.data, np.float32).reshape(msg.height, msg.width)


def test_runtime_changes_take_effect(harness, make_node, real_sample):
    node = make_node(output_size="network")  # per-pixel thresholds, no resampling of the mask
    harness.subscribe(["depth", "range_mask", "points", "scan"])
    pub = harness.node.create_publisher(Image, "image", qos(depth=10))
    frame = lambda s: rgb_image_msg(real_sample, s, "cam")  # noqa: E731
    topics = {"depth", "range_mask", "points", "scan"}
    _, before = send_until_outputs(harness, pub, frame, topics)
    first = depth_of(before["depth"])
    assert np.isfinite(first).all()

    # max_range at the median: the same frame comes back +Inf exactly where it was farther
    median = float(np.median(first))
    assert node.set_parameters([Parameter("max_range", value=median)])[0].successful
    _, mixed = send_until_outputs(harness, pub, frame, topics)
    depth = depth_of(mixed["depth"])
    far = first > median
    assert 0 < far.sum() < far.size
    assert np.all(np.isposinf(depth[far])) and np.all(np.isfinite(depth[~far]))
    np.testing.assert_array_equal(np.frombuffer(mixed["range_mask"].data, np.uint8).reshape(depth.shape) == 255, ~far)
    sub = depth[::2, ::2]
    assert mixed["points"].width == int(np.isfinite(sub).sum())

    # max_range below every prediction: all +Inf, mask 0, no points, a scan of free space
    results = node.set_parameters([Parameter("max_range", value=1.0), Parameter("frame_id", value="base_link")])
    assert all(r.successful for r in results), [r.reason for r in results]
    _, after = send_until_outputs(harness, pub, frame, topics)
    depth = depth_of(after["depth"])
    assert np.all(depth == np.inf), "beyond max_range must be +Inf (REP 117), never 0 or NaN"
    assert not np.frombuffer(after["range_mask"].data, np.uint8).any()
    assert after["points"].width == 0
    assert np.all(np.isposinf(np.asarray(after["scan"].ranges)))
    assert after["depth"].header.frame_id == "base_link"

    # scan and points options: a coarser scan, points off (no more messages built)
    assert node.set_parameters([Parameter("scan.angle_increment_deg", value=2), Parameter("max_range", value=100),
                                Parameter("points.enable", value=False)])[0].successful
    _, third = send_until_outputs(harness, pub, frame, {"depth", "scan"})
    assert len(third["scan"].ranges) == 180
    built = node.published["points"]
    send_until_outputs(harness, pub, frame, {"depth"})
    assert node.published["points"] == built


@pytest.mark.parametrize(
    "name,value,reason",
    [
        ("input_height", 128, "restart"),
        ("checkpoint", "/tmp/other.pth", "restart"),
        ("input_transport", "compressed", "restart"),
        ("qos.input.reliability", "best_effort", "restart"),
        ("mask_threshold", 1.5, "mask_threshold"),
        ("max_range", "far", "must be a number"),
        ("points.stride", 0, "points.stride"),
        ("scan.elevation_min_deg", 30.0, "scan.elevation_min_deg"),
        ("scan.angle_increment_deg", 1e-9, "at most 16384 beams"),  # once: every frame failed (2.6 TiB)
        ("max_input_width", 64, "at most 256 beams"),  # 720 beams of 0.5 deg on frames <= 64 wide
    ],
)
def test_runtime_changes_rejected_with_reason(harness, make_node, name, value, reason):
    node = make_node()
    before = node.get_parameter(name).value
    result = node.set_parameters([Parameter(name, value=value)])[0]
    assert not result.successful and reason in result.reason, result.reason
    assert node.get_parameter(name).value == before
    assert node.params.value(name) == before


def test_burst_keeps_only_the_newest_frame(harness, make_node, real_sample):
    node = make_node()
    gate = threading.Event()
    predict = node.predictor.predict

    def slow_predict(*args, **kwargs):  # a model slower than the camera: frames pile up
        # held until the burst is over: a gate that opened by itself (a 5 s bound did) would let frames
        # through on a busy machine, where the 20 frames can take that long, and fail the counts
        assert gate.wait(120.0), "the gate was never opened"
        return predict(*args, **kwargs)

    node.predictor.predict = slow_predict
    harness.subscribe(["depth"])
    pub = harness.node.create_publisher(Image, "image", qos(depth=50))
    harness.spin_until(lambda: pub.get_subscription_count() > 0, 10.0, "input subscription")
    harness.spin_until(lambda: node._pubs["depth"].get_subscription_count() > 0, 10.0, "depth subscriber match")

    burst = 20
    stamps = []
    try:
        for i in range(burst):
            msg = rgb_image_msg(real_sample, harness.new_stamp(), "cam")
            stamps.append(stamp_ns(msg.header.stamp))
            pub.publish(msg)
            harness.spin_until(lambda i=i: node.stats.received >= i + 1, 10.0, f"frame {i} to reach the node")
    finally:
        gate.set()  # also when the burst failed: the worker must not hold the node's shutdown
    harness.spin_until(lambda: harness.outputs(stamps[-1]), 20.0, "the newest frame's depth")
    # the node counts a frame as processed after publishing it: wait for the count, not a sleep
    def accounted() -> int:
        snap = node.stats.snapshot(0.0)
        return snap.processed + snap.dropped

    harness.spin_until(lambda: accounted() == burst, 10.0, "the node to account for every frame")
    snap = node.stats.snapshot(0.0)
    assert snap.received == burst
    assert snap.dropped >= burst - 3, f"older frames must be dropped, got {snap}"
    assert snap.processed + snap.dropped == burst
    order = [stamp for stamp, _ in harness.completed]  # depth stamps in arrival order
    assert order == sorted(order), "outputs never go back in time"
    assert len(order) == snap.processed < burst


def _bad_frames(stamp) -> list[tuple[str, Image]]:
    good = np.zeros((32, 64, 3), np.uint8)
    header = Header(stamp=stamp, frame_id="cam")
    frames = []

    def image(**fields) -> Image:
        msg = Image(header=header, height=32, width=64, encoding="rgb8", step=192)
        msg.data = bytes(good.tobytes())
        for key, value in fields.items():
            setattr(msg, key, value)
        return msg

    frames.append(("encoding", image(encoding="yuv422")))
    frames.append(("short_data", image(data=bytes(100))))
    frames.append(("bad_step", image(step=100)))
    frames.append(("not_erp", image(height=64, width=64, step=192, data=bytes(192 * 64))))
    frames.append(("empty", image(height=0, width=0, step=0, data=b"")))
    # an "8K" frame announces 8192x4096: rejected from the header alone, before touching data
    frames.append(("too_large", image(height=4096, width=8192, step=8192 * 3, data=bytes(16))))
    # before 1970: once processed, then failed as "internal" when the node read the stamp
    frames.append(("bad_stamp", image(header=Header(stamp=Time(sec=-5, nanosec=1), frame_id="cam"))))
    return frames


def test_bad_input_never_stops_the_node(harness, make_node, real_sample):
    node = make_node(diagnostics__error_after_failures=3, diagnostics__period_sec=0.2)
    statuses: list[DiagnosticStatus] = []
    name = f"{node.get_fully_qualified_name()}: depth"
    harness.node.create_subscription(
        DiagnosticArray, "/diagnostics", lambda m: statuses.extend(s for s in m.status if s.name == name), 50)
    harness.subscribe(["depth"])
    pub = harness.node.create_publisher(Image, "image", qos(depth=50))
    harness.spin_until(lambda: pub.get_subscription_count() > 0, 10.0, "input subscription")

    for kind, msg in _bad_frames(harness.new_stamp()):
        pub.publish(msg)
        harness.spin_until(lambda kind=kind: node.stats.rejected.get(kind, 0) >= 1, 10.0,
                           f"rejection '{kind}' to be counted")

    # a model failure (e.g. CUDA out of memory) skips that frame only
    predict = node.predictor.predict
    calls = {"n": 0}

    def failing_once(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 1:
            raise RuntimeError("CUDA out of memory. Tried to allocate 2.00 GiB")
        return predict(*args, **kwargs)

    node.predictor.predict = failing_once
    pub.publish(rgb_image_msg(real_sample, harness.new_stamp()))
    harness.spin_until(lambda: node.stats.rejected.get("model", 0) == 1, 10.0, "the model failure to be counted")
    harness.spin_until(lambda: any(s.level == DiagnosticStatus.ERROR for s in statuses), 10.0,
                       "diagnostics ERROR after repeated failures")
    error = next(s for s in statuses if s.level == DiagnosticStatus.ERROR)
    assert "consecutive" in error.message
    # the ERROR may predate the model failure (the bad frames alone are enough failures): read the
    # counts from a status published after the node counted it
    reported = harness.spin_until(
        lambda: [s for s in statuses if any(kv.key == "rejected: model" for kv in s.values)], 10.0,
        "diagnostics to report the model failure")
    values = {kv.key: kv.value for kv in reported[-1].values}
    assert values["rejected: model"] == "1" and values["rejected: too_large"] == "1"

    # the node is alive and processes the next good frame; the status recovers
    msg, out = send_until_outputs(harness, pub, lambda s: rgb_image_msg(real_sample, s), {"depth"})
    assert out["depth"].width == real_sample.shape[1]
    statuses.clear()
    harness.spin_until(lambda: statuses and statuses[-1].level == DiagnosticStatus.OK, 10.0, "status back to OK")


def test_diagnostics_content_and_stale_input_warning(harness, make_node, real_sample):
    node = make_node(diagnostics__period_sec=0.2, diagnostics__stale_input_sec=1.0)
    name = f"{node.get_fully_qualified_name()}: depth"
    statuses: list[DiagnosticStatus] = []
    harness.node.create_subscription(
        DiagnosticArray, "/diagnostics", lambda m: statuses.extend(s for s in m.status if s.name == name), 50)
    harness.subscribe(["depth"])
    pub = harness.node.create_publisher(Image, "image", qos(depth=10))
    send_until_outputs(harness, pub, lambda s: rgb_image_msg(real_sample, s), {"depth"})
    # OK needs a frame within the last stale_input_sec (1 s): frames keep coming (every 0.3 s) until
    # an OK status counts a processed frame. With the last frame sent before the wait, a busy machine
    # (the frame's inference, the next timer tick) could pass the second first: WARN, and no OK after.
    frame = rgb_image_msg(real_sample, harness.new_stamp())
    last_sent = [time.monotonic()]

    def ok_status_while_frames_come() -> bool:
        if time.monotonic() - last_sent[0] > 0.3:
            harness.publish(frame, pub)
            last_sent[0] = time.monotonic()
        return bool(statuses) and statuses[-1].level == DiagnosticStatus.OK and \
            int({kv.key: kv.value for kv in statuses[-1].values}["frames processed"]) >= 1

    harness.spin_until(ok_status_while_frames_come, 10.0, "an OK status counting a processed frame")
    values = {kv.key: kv.value for kv in statuses[-1].values}
    for key in ("input rate (Hz)", "output rate (Hz)", "frames dropped (newest-only)", "latency decode (ms)",
                "latency preprocess (ms)", "latency inference (ms)", "latency postprocess (ms)",
                "latency build (ms)", "latency publish (ms)", "node overhead (ms)", "node overhead p50 (ms)",
                "node overhead p95 (ms)", "output age (ms)",
                "backend", "device", "precision", "model file", "last error"):
        assert key in values, key
    assert values["backend"] == "torch" and values["device"] == "cpu" and "RANDOM" in values["model file"]
    assert float(values["latency inference (ms)"]) > 0
    # no more input: WARN after stale_input_sec
    harness.spin_until(lambda: statuses[-1].level == DiagnosticStatus.WARN, 10.0, "WARN without input")
    assert "no input" in statuses[-1].message


def test_compressed_input_jpeg_png_and_corrupt(harness, make_node, real_sample):
    from PIL import Image as PILImage

    node = make_node(input_transport="compressed")
    harness.subscribe(["depth", "range_mask"])
    pub = harness.node.create_publisher(CompressedImage, "image/compressed", qos(depth=10))

    def encoded(fmt: str):
        buffer = io.BytesIO()
        PILImage.fromarray(real_sample).save(buffer, format=fmt)
        data = buffer.getvalue()
        return lambda s: CompressedImage(header=Header(stamp=s, frame_id="cam"), format=fmt.lower(), data=data)

    for fmt in ("JPEG", "PNG"):
        msg, out = send_until_outputs(harness, pub, encoded(fmt), {"depth", "range_mask"})
        assert (out["depth"].height, out["depth"].width) == real_sample.shape[:2]
        assert out["depth"].header.frame_id == "cam"

    jpeg = encoded("JPEG")(harness.new_stamp())
    corrupt = [
        CompressedImage(header=jpeg.header, format="jpeg", data=b"\xff\xd8\xff\xe0 not really a jpeg"),
        CompressedImage(header=jpeg.header, format="jpeg", data=bytes(jpeg.data[: len(jpeg.data) // 3])),
        CompressedImage(header=jpeg.header, format="jpeg", data=b""),
        encoded("GIF")(jpeg.header.stamp),  # Pillow reads GIF, but the node takes JPEG and PNG only
    ]
    for i, msg in enumerate(corrupt):
        pub.publish(msg)
        harness.spin_until(lambda i=i: sum(node.stats.rejected.values()) >= i + 1, 10.0, f"corrupt frame {i} counted")
    assert node.stats.rejected.get("corrupt", 0) >= 3
    send_until_outputs(harness, pub, encoded("JPEG"), {"depth"})


def test_a_failed_output_waits_for_the_point_cloud_thread(harness, make_node, real_sample, monkeypatch):
    """The next frame reuses the message buffers: a failing output must not leave the helper
    thread still building the point cloud when the frame ends."""
    from dap_ros.ros.outputs import FrameOutputs

    node = make_node()
    events: list[str] = []
    mask_failed = threading.Event()
    build_points = FrameOutputs._points

    def slow_points(self, result):  # finishes only after the mask has failed
        mask_failed.wait(10.0)
        message = build_points(self, result)
        events.append("points built")
        return message

    def failing_mask(self, result):
        mask_failed.set()
        raise RuntimeError("mask build failed")

    monkeypatch.setattr(FrameOutputs, "_points", slow_points)
    monkeypatch.setattr(FrameOutputs, "_range_mask", failing_mask)
    fail = node._fail
    monkeypatch.setattr(node, "_fail", lambda kind, message: (events.append(f"failed: {kind}"), fail(kind, message)))
    harness.subscribe(["points", "range_mask"])
    pub = harness.node.create_publisher(Image, "image", qos(depth=10))
    harness.spin_until(lambda: pub.get_subscription_count() > 0, 10.0, "input subscription")
    harness.spin_until(lambda: all(node._pubs[k].get_subscription_count() for k in ("points", "range_mask")), 10.0,
                       "output subscribers")
    pub.publish(rgb_image_msg(real_sample, harness.new_stamp()))
    harness.spin_until(lambda: "failed: output" in events, 20.0, "the output failure")
    assert events[:2] == ["points built", "failed: output"]
