"""``run_demo``: the whole system end to end on the bundled synthetic sequence.

1. start the real depth node (``python -m dap_ros.node``) with the embedded demo model, or with
   ``checkpoint`` (the released weights), in its own ROS domain on loopback;
2. play the sequence frame by frame through ``<ns>/image`` and receive ``depth``, ``range_mask``,
   ``points`` and ``scan`` over real ROS 2 topics;
3. score the depth against the ground truth (dap_ros.evaluation.metrics), measure the latency
   from header stamp to receipt, and write the report folder.
"""
from __future__ import annotations

import logging
import os
import platform
import time
from pathlib import Path
from typing import Any, Callable

from dap_ros.demo.report import write_report
from dap_ros.demo.ros_client import DemoClient, NodeProcess, default_domain_id, node_params_yaml, ros_environment
from dap_ros.demo.sequence import load_sequence
from dap_ros.errors import DapError

LOG = logging.getLogger("dap_ros")
NAMESPACE = "dap_demo"  # + the process id: concurrent demos never share topics


def _machine() -> str:
    return f"{platform.machine()}, {os.cpu_count()} CPU cores, {platform.system()} {platform.release()}"


def _weights_line(log_path: Path, checkpoint: str | None) -> str:
    try:
        text = log_path.read_text(errors="replace")
    except OSError:
        text = ""
    if "EMBEDDED DEMO MODEL" in text:
        return "EMBEDDED DEMO MODEL (dap_ros/assets/embedded: small, synthetic-only, not for real robots)"
    return f"checkpoint {checkpoint}" if checkpoint else "unknown (see node.log)"


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
    results = []
    info: dict[str, Any] = {}
    with ros_environment(domain) as env:
        say("demo: starting the depth node (python -m dap_ros.node) with "
            + (f"checkpoint {checkpoint}" if checkpoint else "the embedded demo model"))
        node = NodeProcess(node_params_yaml(checkpoint or "", model_config, device, precision), namespace,
                           node_log, node_log.parent / "node_params.yaml", env)
        client = None
        try:
            client = DemoClient(namespace, domain)
            client.wait_for_node(startup_timeout, node)
            client.play(seq.frames[0].rgb, seq.frame_id, max(frame_timeout, startup_timeout), node)  # warm-up
            startup_s = time.monotonic() - t_start
            say(f"demo: node ready after {startup_s:.1f} s; playing {n} frames")
            period = 1.0 / seq.rate_hz
            last = 0.0
            for frame in seq.frames:
                next_time = last + period  # at most rate_hz frames per second
                client.spin_until(lambda: time.monotonic() >= next_time, period + 1.0, "the frame period", node)
                last = time.monotonic()
                res = client.play(frame.rgb, seq.frame_id, frame_timeout, node)
                results.append(res)
                if frame.index % 5 == 0 or frame.index == n - 1:
                    say(f"demo: frame {frame.index + 1}/{n}: depth after {res.latency_ms('depth'):.0f} ms")
            info["startup_s"] = startup_s
        finally:
            if client is not None:
                client.close()
            code = node.stop()
            info["node_exit_code"] = code
    k = max(1, min(panels, n))
    panel_indices = sorted({round(i * (n - 1) / max(1, k - 1)) for i in range(k)}) if k > 1 else [0]
    info.update({
        "weights": _weights_line(node_log, checkpoint),
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
    info["wall_s"] = None
    metrics = write_report(out, seq.frames, results, info, panel_indices)
    metrics["wall_s"] = time.monotonic() - t_start
    import json

    (out / "metrics.json").write_text(json.dumps(metrics, indent=2, default=str) + "\n", encoding="utf-8")
    from dap_ros.demo.report import markdown

    (out / "report.md").write_text(markdown(metrics, panel_indices), encoding="utf-8")
    return metrics
