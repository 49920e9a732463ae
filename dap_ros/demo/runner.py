"""``run_demo``: the whole system end to end on the bundled synthetic sequence.

1. start the real depth node (``python -m dap_ros.node``) with the embedded demo model, or with
   ``checkpoint`` (the released weights), in its own ROS domain on loopback;
2. play the sequence frame by frame through ``<ns>/image`` (lock-step: each frame's depth,
   range_mask, points and scan arrive before the next is sent, so none is dropped) and receive the
   outputs over real ROS 2 topics;
3. score the depth against the ground truth (dap_ros.evaluation.metrics), measure the latency
   from header stamp to receipt, and write the report folder.
"""
from __future__ import annotations

import logging
import os
import platform
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from dap_ros.demo.report import FrameResult, build_report, write_report_files
from dap_ros.demo.sequence import load_sequence
from dap_ros.errors import DapError
from dap_ros.ros.client import OUTPUTS, NodeClient, camera_image
from dap_ros.ros.process import NodeProcess, default_domain_id, isolated_ros_environment

LOG = logging.getLogger("dap_ros")
NAMESPACE = "dap_demo"  # + the process id: concurrent demos never share topics


def _machine() -> str:
    return f"{platform.machine()}, {os.cpu_count()} CPU cores, {platform.system()} {platform.release()}"


SELF_MASK_ELEVATION_DEG = -62.0  # below this the demo's self mask says "robot": a base under a camera mast


def node_params(checkpoint: str | None, model_config: str, device: str, precision: str,
                self_mask: Path | None = None) -> dict[str, Any]:
    """The demo node's parameters (the rest are the node's defaults)."""
    return {
        "checkpoint": checkpoint or "", "model_config": model_config, "allow_random_weights": False,
        "device": device, "precision": precision, "backend": "torch", "output_size": "input",
        "publish_colorized": False, "points.enable": True, "points.stride": 2, "points.rgb": True,
        "scan.enable": True, "self_mask": str(self_mask or ""),
    }


def write_self_mask(path: Path, height: int, width: int) -> float:
    """The demo's self mask (0 = the robot): the nadir of the camera, where a robot's base would be
    seen from a camera on a mast. Returns the share of the panorama it masks."""
    from PIL import Image

    from dap_ros.geometry import azimuth_elevation

    _, elevation = azimuth_elevation(height, width)
    robot = np.degrees(elevation) < SELF_MASK_ELEVATION_DEG
    mask = np.where(robot[:, None], 0, 255).astype(np.uint8).repeat(width, axis=1)
    Image.fromarray(mask).save(path)
    return float(robot.mean())


def run_demo(
    out_dir: str | Path,
    *,
    checkpoint: str | None = None,
    model_config: str = "vitl",
    device: str = "cpu",
    precision: str = "fp32",
    max_frames: int | None = None,
    panels: int = 4,
    sequence_dir: str | Path | None = None,
    domain_id: int | None = None,
    startup_timeout: float = 120.0,
    frame_timeout: float | None = None,
    progress: Callable[[str], None] | None = print,
) -> dict[str, Any]:
    """Run the demo and write the report into ``out_dir``; returns the metrics (also in metrics.json)."""
    t_start = time.monotonic()
    say = progress or (lambda _msg: None)
    out = Path(out_dir).resolve()
    out.mkdir(parents=True, exist_ok=True)
    seq = load_sequence(sequence_dir, max_frames)
    if checkpoint:
        checkpoint = str(Path(checkpoint).expanduser().resolve())
        if not Path(checkpoint).is_file():
            raise DapError(f"checkpoint not found: {checkpoint}")
    if frame_timeout is None:
        frame_timeout = 60.0 if not checkpoint else 900.0  # ViT-L at 512x1024 on a CPU takes a while
    domain = default_domain_id() if domain_id is None else int(domain_id)
    n = len(seq.frames)
    say(f"demo: {n} frames of {seq.folder} ({seq.meta.get('width')}x{seq.meta.get('height')}), "
        f"ROS_DOMAIN_ID={domain}, localhost only; report -> {out}")
    namespace = f"{NAMESPACE}_{os.getpid()}"
    node_log = out / "node.log"
    results: list[FrameResult] = []
    info: dict[str, Any] = {}
    masked = write_self_mask(out / "self_mask.png", seq.frames[0].rgb.shape[0], seq.frames[0].rgb.shape[1])
    with isolated_ros_environment(domain) as env:
        say("demo: starting the depth node (python -m dap_ros.node) with "
            + (f"checkpoint {checkpoint}" if checkpoint else "the embedded demo model"))
        node = NodeProcess(node_params(checkpoint, model_config, device, precision, out / "self_mask.png"),
                           namespace, node_log, node_log.parent / "node_params.yaml", env)
        client = None
        try:
            client = NodeClient(namespace, domain_id=domain, process=node, name="dap_demo_player")
            client.subscribe(OUTPUTS)
            client.watch_diagnostics()
            client.wait_until_ready(startup_timeout)
            client.send(camera_image(seq.frames[0].rgb, None, seq.frame_id), max(frame_timeout, startup_timeout))
            startup_s = time.monotonic() - t_start
            say(f"demo: node ready after {startup_s:.1f} s; playing {n} frames")
            period = 1.0 / seq.rate_hz
            last = 0.0
            for frame in seq.frames:
                client.spin_for(last + period - time.monotonic())  # at most rate_hz frames per second
                last = time.monotonic()
                got = client.send(camera_image(frame.rgb, None, seq.frame_id), frame_timeout)
                results.append(FrameResult.from_received(got))
                if frame.index % 5 == 0 or frame.index == n - 1:
                    say(f"demo: frame {frame.index + 1}/{n}: depth after {results[-1].latency_ms('depth'):.0f} ms")
            info["startup_s"] = startup_s
            status = _diagnostics(client)
            info["weights"] = status.get("model file", "unknown (see node.log)")
            info["self_filter"] = {"mask": "self_mask.png", "masked_share": masked,
                                   "filtered_pixels_last_frame": status.get("self-filtered pixels (last frame)")}
        finally:
            if client is not None:
                client.close()
            info["node_exit_code"] = node.stop()
    k = max(1, min(panels, n))
    panel_indices = sorted({round(i * (n - 1) / max(1, k - 1)) for i in range(k)}) if k > 1 else [0]
    info.update({
        "checkpoint": checkpoint,
        "model_config": model_config if checkpoint else "embedded (assets/embedded/config.json)",
        "sequence": str(seq.folder),
        "scene_seed": seq.meta.get("scene_seed"),
        "namespace": "/" + namespace,
        "domain_id": domain,
        "machine": _machine(),
        "device": device,
    })
    say("demo: writing the report")
    metrics = build_report(out, seq.frames, results, info, panel_indices)
    metrics["wall_s"] = time.monotonic() - t_start
    write_report_files(out, metrics, panel_indices)
    return metrics


def _diagnostics(client: NodeClient) -> dict[str, str]:
    """The node's latest /diagnostics status (its own account of its weights, the self filter)."""
    status = client.spin_until(lambda: client.diagnostics[-1:], 5.0, "the node's diagnostics", required=False)
    return status[0] if status else {}
