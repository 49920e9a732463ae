#!/usr/bin/env python3
"""End-to-end benchmark of the depth node (not a test).

The node runs in its own process (``python -m dap_ros.node``, the tiny random model on the CPU);
this process publishes 1920x960 rgb8 frames and subscribes to depth, range_mask, points (rgb,
stride 2) and scan, over real DDS on loopback.

1. calibration: frames offered faster than the node can go; the completed-frame rate is the
   sustainable rate R;
2. load: frames offered at 2 x R for --duration seconds. Reported: output rate, end-to-end
   latency (header stamp -> last output of that frame received here) p50/p95/p99 and per third
   of the run (growth = a queue somewhere), frames dropped by the node, the node's own per-stage
   latencies from /diagnostics (overhead = everything but inference), and the node's RSS.

    .venv/bin/python benchmarks/node_benchmark.py --duration 60
"""
from __future__ import annotations

import argparse
import os
import platform
import statistics
import struct
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from dap_ros.evaluation.timing import latency_summary_ms  # noqa: E402
from dap_ros.ros.client import OUTPUTS, NodeClient, qos  # noqa: E402
from dap_ros.ros.messages import header, image_message  # noqa: E402
from dap_ros.ros.process import NodeProcess, default_domain_id, isolated_ros_environment  # noqa: E402

NAMESPACE = "/bench"


CAMERAS = ("erp", "levelled", "dual_fisheye", "dual_fisheye_levelled")


def camera_parameters(args: argparse.Namespace) -> dict[str, object]:
    """The node's camera parameters for --camera: a panorama as it is, levelled (a camera pitched by
    10 degrees), or a side_by_side dual-fisheye frame of the same size (two 190-degree equidistant
    lenses filling the two halves), as it is or levelled."""
    values: dict[str, object] = {}
    if args.camera.endswith("levelled"):
        values.update({"mount_rpy_deg": [0.0, 10.0, 0.0], "leveling": "static"})
    if args.camera.startswith("dual_fisheye"):
        import yaml
        from camera_remap import dual_fisheye_calibration

        path = Path(tempfile.mkdtemp(prefix="dap_bench_")) / "dual_fisheye.yaml"
        path.write_text(yaml.safe_dump(dual_fisheye_calibration(args.width)))
        values.update({"input_projection": "dual_fisheye", "fisheye_calibration": str(path)})
    return values


def node_parameters(args: argparse.Namespace) -> dict[str, object]:
    return {
        "model_config": "tiny", "allow_random_weights": True, "device": "cpu",
        "input_height": args.network_height, "input_width": 2 * args.network_height,
        "points.stride": 2, "points.rgb": True, "publish_colorized": False, "output_size": args.output_size,
        # random weights call every pixel out of range at 0.5: keep them in range so the point
        # cloud is full size (the expensive case)
        "mask_threshold": 0.3,
        **args.camera_values,
    }


def cpu_model() -> str:
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return platform.processor() or platform.machine()


def versions() -> str:
    from importlib.metadata import version

    import torch

    return f"rclpy {version('rclpy')}, torch {torch.__version__}, numpy {np.__version__}"


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024.0
    return float("nan")


def minor_faults(pid: int) -> int:
    """Minor page faults so far (/proc/PID/stat field 10): fresh multi-MB buffers fault per page."""
    return int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[7])


def isolated_work(args: argparse.Namespace, frames: int = 30) -> dict[str, float]:
    """The same-run anchor: the node's per-frame work done alone in this process, after the node
    has stopped (the node's own code: predictor and OutputBuilder with the same parameters and
    frame; no DDS, no client, one thread). Median ms of preprocess, inference, postprocess and
    message building (every output the benchmark subscribes to, as the node builds them)."""
    import torch

    from dap_ros.pipeline import DepthPredictor
    from dap_ros.ros import params as prm
    from dap_ros.ros.memory import tune_malloc_for_large_frames
    from dap_ros.ros.outputs import OutputBuilder, enabled_outputs

    tune_malloc_for_large_frames()  # as the node does
    torch.manual_seed(0)
    p = prm.NodeParams.from_values(node_parameters(args))
    predictor = DepthPredictor.from_spec(p.model_spec(), p.camera_spec())
    rgb = np.random.default_rng(0).integers(0, 256, (args.width // 2, args.width, 3), dtype=np.uint8)
    size = predictor.output_size(rgb) if p.output_size == "input" else predictor.input_size
    outputs, names = OutputBuilder(), enabled_outputs(p)
    samples = []
    for _ in range(frames + 3):  # the first frames warm up
        frame = outputs.begin(p, header(0, "camera"), size, names)
        result = predictor.predict(rgb, size, range_out=frame.range_out)
        t0 = time.perf_counter()
        for name in names:
            frame.build(name, result)
        samples.append({**result.timings, "build": time.perf_counter() - t0})
    return {key: 1e3 * statistics.median(s[key] for s in samples[3:]) for key in samples[0]}


class Camera:
    """Publishes one pre-serialized 1920x960 frame at a rate, only its stamp changing: as light as
    a C++ camera driver, so that the 2 cores go to the node."""

    def __init__(self, client: NodeClient, width: int, height: int) -> None:
        self.client, self.pub = client, client.publisher("image", profile=qos("reliable", 2))
        message, pixels = image_message(header(0, "camera"), (height, width, 3), np.uint8, "rgb8")
        pixels[...] = np.random.default_rng(0).integers(0, 256, (height, width, 3), dtype=np.uint8)
        frame = message.cdr.tobytes()
        self.head, self.tail = frame[:4], frame[12:]  # CDR: 4-byte encapsulation, then the stamp
        self._timer = None

    def offer(self, rate_hz: float) -> None:
        self.stop()
        self._timer = self.client.node.create_timer(1.0 / rate_hz, self._publish)

    def stop(self) -> None:
        if self._timer is not None:
            self.client.node.destroy_timer(self._timer)
            self._timer = None

    def _publish(self) -> None:
        stamp = self.client.new_stamp()
        self.pub.publish(b"".join((self.head, struct.pack("<iI", stamp.sec, stamp.nanosec), self.tail)))


def window(client: NodeClient, t0_ns: int, t1_ns: int) -> list[float]:
    """Latencies (s) of the frames whose last output arrived in [t0, t1) (client clock, ns)."""
    return [(done - stamp) * 1e-9 for stamp, done in list(client.completed) if t0_ns <= done < t1_ns]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--duration", type=float, default=20.0, help="seconds of the load phase")
    parser.add_argument("--load", type=float, default=2.0, help="offered rate in the load phase, x sustainable rate")
    parser.add_argument("--calibrate", type=float, default=10.0, help="seconds to find the sustainable rate")
    parser.add_argument("--width", type=int, default=1920)
    parser.add_argument("--deserialize", action="store_true",
                        help="turn every output into a Python message here (heavier client on the shared cores)")
    parser.add_argument("--network-height", type=int, default=256,
                        help="network input height (width = 2x); the tiny model takes seconds at 512 on 2 cores")
    parser.add_argument("--camera", choices=CAMERAS, default="erp",
                        help="what the camera delivers: a panorama (default), a pitched panorama levelled statically, "
                             "or a side_by_side dual-fisheye frame of --width x --width/2 (levelled)")
    parser.add_argument("--output-size", choices=("input", "network"), default="input",
                        help="the node's output_size (input: the panorama's; a fisheye frame's: half a lens high)")
    args = parser.parse_args()
    args.camera_values = camera_parameters(args)

    with isolated_ros_environment(int(os.environ.get("ROS_DOMAIN_ID") or default_domain_id())) as env:
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH")]))
        log = Path(tempfile.mkdtemp(prefix="dap_node_bench_")) / "node.log"
        node = NodeProcess(node_parameters(args), NAMESPACE, log, env=env, ros_args=("--log-level", "warn"))
        client = NodeClient(NAMESPACE, raw=not args.deserialize, keep_messages=False, process=node,
                            name="node_benchmark")
        client.subscribe(OUTPUTS, qos("reliable", 2))
        client.watch_diagnostics()
        camera = Camera(client, args.width, args.width // 2)
        rss: list[tuple[int, float]] = []
        client.node.create_timer(1.0, lambda: rss.append((client.clock.now().nanoseconds, rss_mb(node.pid))))
        spinner = threading.Thread(target=client.executor.spin, daemon=True)
        try:
            client.wait_until_ready(60.0)
            spinner.start()
            now = client.clock.now

            # 1. calibration: offer 30 Hz, measure completions over the second half
            camera.offer(30.0)
            t0 = now().nanoseconds
            time.sleep(args.calibrate)
            t1 = now().nanoseconds
            sustainable = len(window(client, t0 + (t1 - t0) // 2, t1)) / (args.calibrate / 2)
            if sustainable <= 0:
                raise SystemExit("no frame completed during calibration; node log: " + node.tail())

            # 2. load at --load x the sustainable rate (issue 3: 2x)
            offered = args.load * sustainable
            camera.offer(offered)
            time.sleep(2.0)  # settle
            start = now().nanoseconds
            diag_start = len(client.diagnostics)
            rss_start = rss_mb(node.pid)
            faults_start = minor_faults(node.pid)
            time.sleep(args.duration)
            end = now().nanoseconds
            faults = minor_faults(node.pid) - faults_start
            latencies = window(client, start, end)
            thirds = [window(client, start + i * (end - start) // 3, start + (i + 1) * (end - start) // 3)
                      for i in range(3)]
            diag = client.diagnostics[diag_start:] or client.diagnostics[-1:]
            rss_run = [m for t, m in rss if start <= t <= end]
        finally:
            camera.stop()
            client.executor.shutdown()
            if spinner.is_alive():
                spinner.join(10.0)
            client.close()
            node.stop()
    alone = isolated_work(args)
    seconds = (end - start) * 1e-9

    def diag_mean(key: str) -> float:
        values = [float(d[key]) for d in diag if key in d]
        return statistics.fmean(values) if values else float("nan")

    last = diag[-1] if diag else {}
    print(f"CPU: {cpu_model()}, {os.cpu_count()} cores; Python {platform.python_version()}; {versions()}")
    print(f"input {args.width}x{args.width // 2} rgb8 ({args.camera}), tiny model at {args.network_height}x"
          f"{2 * args.network_height}, outputs depth + range_mask ({args.output_size} size), points (rgb, stride 2), "
          "scan; client: "
          + ("outputs deserialized" if args.deserialize else "light (pre-serialized frame, raw output bytes)"))
    print(f"sustainable rate (calibration, offered 30 Hz): {sustainable:.2f} Hz")
    print(f"load phase: offered {offered:.2f} Hz for {seconds:.0f} s")
    print(f"  output rate (complete frames): {len(latencies) / seconds:.2f} Hz")
    lat = {k: v if v is not None else float("nan") for k, v in latency_summary_ms([1e3 * t for t in latencies]).items()}
    print(f"  end-to-end latency ms: p50 {lat['p50']:.0f}  p95 {lat['p95']:.0f}  p99 {lat['p99']:.0f}"
          f"  max {lat['max']:.0f}")
    print("  latency p50 per third of the run (ms): "
          + ", ".join(f"{latency_summary_ms([1e3 * x for x in t])['p50'] or float('nan'):.0f}" for t in thirds))
    print(f"  node: received {last.get('frames received')}, processed {last.get('frames processed')}, "
          f"dropped {last.get('frames dropped (newest-only)')}, rejected {last.get('frames rejected')}")
    stages = ("decode", "preprocess", "inference", "postprocess", "build", "publish")
    print("  node per-stage latency ms (mean): "
          + ", ".join(f"{s} {diag_mean(f'latency {s} (ms)'):.1f}" for s in stages))
    overhead = diag_mean("node overhead (ms)")
    print(f"  node overhead per frame excluding inference: {overhead:.1f} ms mean; typical frame (p50) "
          f"{diag_mean('node overhead p50 (ms)'):.1f} ms, "
          f"slow frames (p95) {diag_mean('node overhead p95 (ms)'):.1f} ms "
          "(per-50-frame-window percentiles from the node's diagnostics, averaged over the run)")
    alone_overhead = alone["preprocess"] + alone["postprocess"] + alone["build"]
    print(f"  anchor, same run (the same work alone, no DDS, one thread, median ms): "
          f"preprocess {alone['preprocess']:.1f}, inference {alone['inference']:.1f}, "
          f"postprocess {alone['postprocess']:.1f}, message build {alone['build']:.1f}")
    print(f"  node overhead / anchor work without publishing: {overhead / alone_overhead:.2f}x "
          f"({overhead:.1f} / {alone_overhead:.1f} ms); node inference / anchor inference: "
          f"{diag_mean('latency inference (ms)') / alone['inference']:.2f}x")
    print(f"  node minor page faults per output frame: {faults / max(1, len(latencies)):.0f}")
    if rss_run:
        print(f"  node RSS MB: start {rss_start:.0f}, end {rss_run[-1]:.0f}, max {max(rss_run):.0f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
