"""``dap-ros eval-bag``: accuracy and latency of the node's pipeline on a recorded ROS 2 bag."""
from __future__ import annotations

import argparse
import logging
from dataclasses import replace
from pathlib import Path

from dap_ros.cli.common import (
    add_camera_options,
    add_model_options,
    camera_parameter_overrides,
    make_output_dir,
    node_parameter_overrides,
    non_negative_float,
    positive_float,
)

LOG = logging.getLogger("dap_ros")

def add_parser(subparsers) -> None:
    parser = subparsers.add_parser(
        "eval-bag",
        help="evaluate depth accuracy and latency on a ROS 2 bag (sqlite3 or MCAP)",
        description=(
            "Runs the depth node's pipeline (same parameters file, --params) on every image of a "
            "ROS 2 bag; writes metrics.json, report.md and plots into --report-dir, and optionally an "
            "output bag with depth, range_mask, points and scan carrying the input stamps. With "
            "--gt-topic (32FC1 metres or 16UC1 millimetres) it scores AbsRel, SqRel, RMSE, RMSE-log and "
            "delta1-3 overall and per range band, and the range mask. --realtime also replays the bag "
            "through rclpy into a running node and measures stamp-to-output latency and drops. "
            "Command-line model options override --params, which overrides the node's defaults."
        ),
    )
    parser.add_argument("bag", type=Path, help="input bag: a rosbag2 folder, or a .db3 / .mcap file")
    parser.add_argument("--image-topic", required=True, help="sensor_msgs/Image or CompressedImage topic")
    parser.add_argument("--gt-topic", help="ground-truth depth images (32FC1 m or 16UC1 mm), paired by header stamp")
    parser.add_argument("--report-dir", type=Path, required=True, help="where metrics.json, report.md and plots go")
    parser.add_argument("--params", type=Path, help="the node's parameters file (config/depth.yaml)")
    parser.add_argument("--output-bag", type=Path, help="write the node's outputs into this new bag")
    parser.add_argument("--output-storage", choices=("sqlite3", "mcap"),
                        help="output bag storage (default: mcap for a .mcap name, else sqlite3)")
    parser.add_argument("--output-namespace",
                        help="namespace of the output topics (default: the image topic's, e.g. /cam for /cam/image)")
    parser.add_argument("--overwrite", action="store_true",
                        help="replace an existing output bag (only a bag dap-ros could have written)")
    parser.add_argument("--max-frames", type=int, help="stop after N frames")
    parser.add_argument("--median-align", action="store_true",
                        help="also report metrics after per-frame median scale alignment (separately)")
    parser.add_argument("--gt-tolerance-ms", type=non_negative_float, default=1.0,
                        help="stamp difference allowed when pairing GT (when nothing pairs, the error names "
                             "the offset found)")
    parser.add_argument("--ros-distro", choices=("humble", "jazzy", "kilted"),
                        help="message definitions used to decode (default: from the bag, else kilted)")
    parser.add_argument("--grid-frames", type=int, default=4, help="frames shown in frames_grid.png")
    parser.add_argument("--no-plots", action="store_true")
    parser.add_argument("--no-progress", action="store_true")
    rt = parser.add_argument_group("real-time replay (needs rclpy)")
    rt.add_argument("--realtime", action="store_true",
                    help="after the offline run, replay the bag at the recorded rate into a depth node")
    rt.add_argument("--launch-node", action="store_true",
                    help="start `python -m dap_ros.node` with the same parameters for the replay")
    rt.add_argument("--node-namespace", default="", help="namespace of the node (topics <ns>/image, <ns>/depth)")
    rt.add_argument("--rate", type=positive_float, default=1.0, help="replay speed factor (1 = recorded rate)")
    rt.add_argument("--node-timeout", type=positive_float, default=120.0,
                    help="seconds to wait for the node and its first output")
    rt.add_argument("--drain-timeout", type=non_negative_float, default=5.0,
                    help="seconds after the last frame to wait for outputs before counting drops")
    add_model_options(parser, defaults=False)  # not given: the parameters file or the node's default decides
    add_camera_options(parser)
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from dap_ros.errors import DapError
    from dap_ros.evaluation import bags
    from dap_ros.evaluation.report import write_report
    from dap_ros.evaluation.runner import EvalOptions, evaluate_bag, ground_truth_problem
    from dap_ros.pipeline import DepthPredictor
    from dap_ros.ros.params import resolve_params

    if args.max_frames is not None and args.max_frames < 1:
        raise DapError(f"--max-frames must be >= 1, got {args.max_frames}")
    if not args.bag.exists():
        raise DapError(f"bag not found: {args.bag}")
    if args.output_bag is not None:  # before the model load: a wrong path costs no loading time
        bags.check_output_bag(args.output_bag, overwrite=args.overwrite, inputs=[args.bag])
    make_output_dir(args.report_dir, "--report-dir")
    if args.params is not None:
        check_parameter_names(args.params)
    params = resolve_params(args.params, {**node_parameter_overrides(args), **camera_parameter_overrides(args)})
    options = EvalOptions(
        bag=args.bag,
        image_topic=args.image_topic,
        gt_topic=args.gt_topic,
        output_bag=args.output_bag,
        output_storage=args.output_storage,
        output_namespace=args.output_namespace,
        overwrite=args.overwrite,
        distro=args.ros_distro,
        max_frames=args.max_frames,
        median_align=args.median_align,
        gt_tolerance_ms=args.gt_tolerance_ms,
        grid_frames=args.grid_frames,
        progress=not args.no_progress,
    )
    if params.allow_random_weights and not params.checkpoint:
        import torch

        torch.manual_seed(0)  # random weights: the same numbers on every run (plumbing checks)
    camera = params.camera_spec()
    if camera.leveling == "imu":
        LOG.warning("leveling imu needs the node's IMU topic; eval-bag levels statically (as if frame_id were level)")
        camera = replace(camera, leveling="static")
    predictor = DepthPredictor.from_spec(replace(params.model_spec(), compile=args.compile), camera)
    calibration = predictor.camera.calibration
    if calibration is not None and calibration.layout == "two_topics":
        raise DapError("eval-bag reads one image topic: the two_topics fisheye layout is not supported; record the "
                       "lenses side by side, or evaluate through the node (--realtime)")
    run_result = evaluate_bag(options, predictor, params)
    del predictor
    if args.realtime and not run_result.interrupted:
        from dap_ros.evaluation.realtime import run_realtime

        try:
            run_result.realtime = run_realtime(
                args.bag, args.image_topic, params, rate=args.rate, max_frames=args.max_frames,
                launch_node=args.launch_node, node_namespace=args.node_namespace,
                startup_timeout=args.node_timeout, drain_timeout=args.drain_timeout, distro=args.ros_distro,
                log_dir=args.report_dir, progress=not args.no_progress,
            )
        except KeyboardInterrupt:
            run_result.interrupted = True
            run_result.realtime = {"error": "interrupted"}
        except DapError as exc:
            run_result.realtime = {"error": str(exc)}
    doc = write_report(run_result, args.report_dir, plots=not args.no_plots)
    print(summary_line(doc, args.report_dir))
    if run_result.interrupted:
        return 130
    problem = ground_truth_problem(run_result)
    if problem is not None:  # asked for accuracy and got none: not a success
        raise DapError(f"{problem} (report without accuracy: {args.report_dir}/report.md)")
    failed = (run_result.read_problem is not None or run_result.failures or run_result.skipped_messages
              or (doc.get("realtime") or {}).get("error"))  # frames lost to unreadable messages fail the run too
    return 1 if failed else 0


def check_parameter_names(path: Path) -> None:
    """Refuse names the node does not know: a misspelt parameter would otherwise be ignored silently."""
    import difflib

    from dap_ros.errors import ConfigError
    from dap_ros.ros.params import SPEC_BY_NAME, load_params_file, unknown_names

    unknown = unknown_names(load_params_file(path))
    if not unknown:
        return

    def hint(name: str) -> str:
        close = difflib.get_close_matches(name, SPEC_BY_NAME, n=3)
        return f"{name!r} (did you mean {' or '.join(map(repr, close))}?)" if close else f"{name!r} (no close match)"

    raise ConfigError(f"parameters file {path}: unknown parameter{'s' if len(unknown) > 1 else ''} "
                      f"{', '.join(map(hint, unknown))}; the parameters are listed in docs/ros_node.md (Parameters)")


def summary_line(doc: dict, report_dir: Path) -> str:
    r = doc["run"]
    parts = [f"dap-ros eval-bag: {r['frames_processed']} frames"]
    if doc.get("abs_rel") is not None:
        parts.append(
            f"AbsRel {doc['abs_rel']:.4f}, RMSE {doc['rmse']:.3f} m, delta1 {doc['delta1']:.4f} "
            f"({r['frames_with_gt']} frames with GT)"
        )
    lat = doc["latency"]
    if lat["pipeline_ms"]["mean"] is not None:
        parts.append(f"pipeline {lat['pipeline_ms']['mean']:.1f} ms/frame")
    rt = doc.get("realtime")
    if rt and not rt.get("error"):
        parts.append(f"real-time p50 {rt['latency_ms']['p50'] or float('nan'):.1f} ms, drop rate {rt['drop_rate']:.2f}")
    if r["read_error"]:
        error = r["read_error"]
        parts.append(f"READING STOPPED after frame {error['stopped_after_frame']}: {error['message']}")
    if r["interrupted"]:
        parts.append("INTERRUPTED")
    return "; ".join(parts) + f" -> {report_dir}/report.md"
