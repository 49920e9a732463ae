"""``dap-ros demo``: run the depth node on the bundled synthetic sequence and write a report."""
from __future__ import annotations

import argparse
from pathlib import Path

from dap_ros.settings import PRECISIONS


def add_parser(subparsers) -> None:
    parser = subparsers.add_parser(
        "demo",
        help="run the depth node on a bundled synthetic 360-degree sequence and write a report",
        description=(
            "Starts the real depth node (python -m dap_ros.node) with the embedded demo model (or "
            "--checkpoint), plays a bundled synthetic sequence (a camera moving through a generated "
            "room, with ground truth) through ROS 2 topics on loopback, receives depth, range_mask, "
            "points and scan, and writes PNG panels, metrics against the ground truth and latency to "
            "a report folder, printed at the end. See docs/demo.md."
        ),
    )
    parser.add_argument("--out", type=Path, default=Path("out/demo"),
                        help="report folder (default: ./out/demo; files in it are replaced)")
    parser.add_argument("--checkpoint", help="DAP weights (the released model.pth); default: the embedded demo model")
    parser.add_argument("--model-config", default="vitl", help="architecture of --checkpoint (default: vitl)")
    parser.add_argument("--device", default="cpu", help="cpu, cuda or cuda:N (default: cpu)")
    parser.add_argument("--precision", default="fp32", choices=PRECISIONS)
    parser.add_argument("--frames", type=int, default=None, help="play only the first N frames")
    parser.add_argument("--panels", type=int, default=4, help="frames drawn as PNG panels (default: 4)")
    parser.add_argument("--sequence", type=Path, help="another sequence folder (scripts/make_demo_sequence.py)")
    parser.add_argument("--domain-id", type=int, help="ROS_DOMAIN_ID (default: 1..101 from the process id)")
    parser.add_argument("--frame-timeout", type=float, help="seconds to wait for one frame's outputs")
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from dap_ros.demo import run_demo

    if args.frames is not None and args.frames < 1:
        from dap_ros.errors import DapError

        raise DapError("--frames must be >= 1")
    m = run_demo(
        args.out, checkpoint=args.checkpoint, model_config=args.model_config, device=args.device,
        precision=args.precision, max_frames=args.frames, panels=args.panels, sequence_dir=args.sequence,
        domain_id=args.domain_id, frame_timeout=args.frame_timeout,
    )
    d, lat = m["depth"], m["latency_ms"]["depth"]

    def f(v, digits=3):
        return "n/a" if v is None else f"{v:.{digits}f}"

    print(f"dap-ros demo: {m['frames']} frames, weights: {m['weights']}")
    print(f"  depth vs ground truth: AbsRel {f(d.get('abs_rel'))}, RMSE {f(d.get('rmse'))} m, "
          f"delta1 {f(d.get('delta1'))}; scan median rel. error {f(m.get('scan_median_rel_error'))}")
    print(f"  latency stamp->depth: p50 {f(lat['p50'], 0)} ms, p95 {f(lat['p95'], 0)} ms; "
          f"wall time {m['wall_s']:.1f} s")
    print(f"report: {Path(args.out).resolve()}")
    return 0
