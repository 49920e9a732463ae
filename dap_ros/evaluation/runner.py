"""Offline bag evaluation: read frames, run the node's pipeline, write the output bag, score.

:func:`evaluate_bag` never loses work: Ctrl-C, a truncated or corrupt bag, or a frame that fails
end the loop (or skip the frame) and the :class:`EvalRun` holds everything measured so far.
"""
from __future__ import annotations

import logging
import math
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from dap_ros.errors import DapError
from dap_ros.evaluation import bags
from dap_ros.evaluation.metrics import MetricsAccumulator, frame_metrics, resize_nearest
from dap_ros.ros.decoding import compressed_to_rgb, image_to_rgb
from dap_ros.ros.params import NodeParams

LOG = logging.getLogger("dap_ros")

STAGES = ("read", "decode", "preprocess", "inference", "postprocess", "outputs", "metrics")
PIPELINE_STAGES = ("decode", "preprocess", "inference", "postprocess")  # what the node does per frame


@dataclass
class EvalOptions:
    bag: Path
    image_topic: str
    gt_topic: str | None = None
    output_bag: Path | None = None
    output_storage: str | None = None  # sqlite3 | mcap (default: from the suffix, else sqlite3)
    output_namespace: str | None = None  # default: the image topic's namespace
    overwrite: bool = False
    distro: str | None = None  # typestore; default from the bag, else kilted
    max_frames: int | None = None
    median_align: bool = False
    gt_tolerance_ms: float = 1.0
    grid_frames: int = 4
    progress: bool = True


@dataclass
class GridSample:
    index: int
    rgb: np.ndarray
    gt: np.ndarray | None
    pred: np.ndarray
    in_range: np.ndarray


@dataclass
class EvalRun:
    options: EvalOptions
    params: NodeParams
    model: dict[str, Any]
    accumulator: MetricsAccumulator = field(default_factory=MetricsAccumulator)
    frames: list[dict[str, Any]] = field(default_factory=list)
    timings: dict[str, list[float]] = field(default_factory=lambda: {s: [] for s in STAGES})
    failures: list[dict[str, Any]] = field(default_factory=list)
    grid: list[GridSample] = field(default_factory=list)
    frames_in_bag: int = 0
    distro: str = bags.DEFAULT_DISTRO
    read_problem: bags.ReadProblem | None = None
    skipped_messages: list[str] = field(default_factory=list)
    gt_unmatched: int = 0
    gt_messages: int = 0
    gt_paired: int = 0  # frames read with their ground truth
    gt_offset_ns: int | None = None  # GT minus image stamp of the closest pair (see ground_truth_problem)
    interrupted: bool = False
    wall_s: float = 0.0
    output_bag: dict[str, Any] | None = None
    realtime: dict[str, Any] | None = None

    @property
    def complete(self) -> bool:
        return not self.interrupted and self.read_problem is None


def output_namespace(image_topic: str) -> str:
    """'/cam/image' -> '/cam'; '/cam/image_raw/compressed' -> '/cam'; '/image' -> ''."""
    parts = [p for p in image_topic.split("/") if p]
    if parts and parts[-1] == "compressed":
        parts = parts[:-1]
    return "/" + "/".join(parts[:-1]) if len(parts) > 1 else ""


def grid_picks(expected: int, count: int) -> set[int]:
    if expected <= 0 or count <= 0:
        return set()
    return {int(i) for i in np.linspace(0, expected - 1, min(count, expected)).round()}


def thumbnail(image: np.ndarray, max_width: int = 512) -> np.ndarray:
    step = max(1, image.shape[1] // max_width)
    return np.ascontiguousarray(image[::step, ::step])


def model_info(predictor: Any, p: NodeParams) -> dict[str, Any]:
    weights = getattr(predictor, "weights", None)
    return {
        "checkpoint": getattr(weights, "path", None),
        "random_weights": getattr(weights, "path", None) is None,
        "model_config": p.model_config,
        "backend": str(getattr(predictor, "backend", "?")),
        "device": str(getattr(predictor, "device", "?")),
        "precision": str(getattr(predictor, "precision", "?")),
        "input_size": list(getattr(predictor, "input_size", p.input_size)),
        "normalization": p.normalization,
        "mask_threshold": p.mask_threshold,
        "max_range_m": p.max_range,
    }


def evaluate_bag(options: EvalOptions, predictor: Any, params: NodeParams) -> EvalRun:
    """Run the whole bag (or ``max_frames``). ``predictor``: a DepthPredictor or anything with
    ``predict(rgb, output_size) -> DepthResult`` (tests pass one whose output they control)."""
    run = EvalRun(options=options, params=params, model=model_info(predictor, params))
    p = params
    gt_tol = int(round(options.gt_tolerance_ms * 1e6))
    source = bags.FrameSource(
        options.bag, options.image_topic, options.gt_topic,
        distro=options.distro, gt_tolerance_ns=gt_tol, max_frames=options.max_frames,
    )
    run.frames_in_bag = source.image_count
    run.distro = source.distro
    writer = outputs = None
    topics: dict[str, str] = {}
    try:
        if options.output_bag is not None:
            from dap_ros.ros.outputs import MSG_TYPES, OutputBuilder

            check_ros_messages()
            outputs = OutputBuilder()
            writer = bags.BagWriter(options.output_bag, options.output_storage, distro=source.distro,
                                    overwrite=options.overwrite, inputs=[options.bag])
            ns = options.output_namespace
            if ns is None:
                ns = output_namespace(options.image_topic)
            ns = "/" + ns.strip("/") if ns.strip("/") else ""
            qos = bags.qos_profile(p.qos_output_reliability, p.qos_output_depth)
            for name in bag_outputs(p):
                topics[name] = f"{ns}/{name}"
                writer.add_topic(topics[name], MSG_TYPES[name], qos)
        _loop(run, source, predictor, outputs, writer, topics)
        if source.frames_read == 0 and source.problem is None and not source.skipped and not run.interrupted:
            # nothing to measure is a failure, as an undecodable bag is; and nothing to report
            raise bags.BagError(f"no frames on topic {options.image_topic} in {options.bag}")
    except BaseException:
        if writer is not None:
            writer.abort()  # no report comes of this run: leave no half-written bag either
        raise
    finally:
        source.close()
    if writer is not None:  # complete, or interrupted (Ctrl-C): the frames done so far are kept
        writer.close()
        run.output_bag = {
            "path": str(options.output_bag),
            "storage": writer.storage,
            "typestore": writer.distro,
            "topics": {
                topics[name]: {
                    "type": MSG_TYPES[name],
                    "messages": writer.counts[topics[name]],
                    "qos": {"reliability": p.qos_output_reliability, "history": "keep_last",
                            "depth": p.qos_output_depth, "durability": "volatile"},
                }
                for name in topics
            },
        }
    run.read_problem = source.problem
    run.skipped_messages = source.skipped
    run.gt_unmatched = source.gt_unmatched
    run.gt_messages, run.gt_paired = source.gt_messages, source.gt_paired
    run.gt_offset_ns = source.nearest_gt_offset_ns()
    return run


def ground_truth_problem(run: EvalRun) -> str | None:
    """Why a ground-truth topic that was asked for measured nothing (None: it paired, or none asked for)."""
    options = run.options
    if options.gt_topic is None or run.gt_paired or not run.frames:
        return None
    if run.gt_messages == 0:
        return f"ground-truth topic {options.gt_topic} has no messages: accuracy not measured"
    offset = run.gt_offset_ns
    where = "" if offset is None else (
        f": the closest ground-truth stamp is {offset / 1e6:+.1f} ms from an image stamp; "
        f"--gt-tolerance-ms {math.ceil(abs(offset) / 1e6)} would pair them (check the clocks first)"
    )
    return (f"no image paired with ground truth on {options.gt_topic} within --gt-tolerance-ms "
            f"{options.gt_tolerance_ms:g}{where}")


def check_ros_messages() -> None:
    """The output bag holds the node's own serialized messages: that needs the ROS 2 message packages."""
    try:
        import rclpy.serialization  # noqa: F401
        import sensor_msgs.msg  # noqa: F401
        import std_msgs.msg  # noqa: F401
    except ImportError as exc:
        raise DapError(
            f"--output-bag needs the ROS 2 Python messages ({exc.name} is missing): source a ROS 2 "
            "installation or pip install 'dap_ros[ros]' (x86_64); metrics alone work without them"
        ) from None


def bag_outputs(p: NodeParams) -> tuple[str, ...]:
    """The node's enabled outputs except the colorized view (for people, not for bags)."""
    from dap_ros.ros.outputs import enabled_outputs

    return tuple(name for name in enabled_outputs(p) if name != "colorized")


def _loop(run: EvalRun, source: bags.FrameSource, predictor: Any, outputs: Any, writer: Any,
          topics: dict[str, str]) -> None:
    from tqdm import tqdm

    p, options = run.params, run.options
    picks = grid_picks(source.expected_frames, options.grid_frames)
    output_size = None if p.output_size == "input" else tuple(predictor.input_size)
    progress = tqdm(total=source.expected_frames, unit="frame", desc="dap-ros eval-bag",
                    disable=not options.progress, dynamic_ncols=True)
    start = time.perf_counter()
    iterator = iter(source)
    try:
        while True:
            t_read = time.perf_counter()
            frame = next(iterator, None)
            if frame is None:
                break
            t0 = time.perf_counter()
            record: dict[str, Any] = {
                "index": frame.index,
                "stamp_ns": frame.stamp_ns,
                "bag_time_s": (frame.log_time_ns - source.start_time_ns) * 1e-9,
                "has_gt": frame.gt is not None,
            }
            try:
                decode = compressed_to_rgb if frame.msgtype == bags.COMPRESSED else image_to_rgb
                rgb = decode(frame.image, p.max_input_width, p.input_projection == "erp")
                size = predictor.output_size(rgb) if output_size is None else output_size
            except DapError as exc:
                run.failures.append({"index": frame.index, "stamp_ns": frame.stamp_ns, "stage": "decode",
                                     "error": str(exc)})
                progress.update(1)
                continue
            t1 = time.perf_counter()
            frame_outputs = None
            if outputs is not None:  # the node's order: the depth message first, the range written into it
                from dap_ros.ros.messages import header

                frame_outputs = outputs.begin(p, header(frame.stamp_ns, p.frame_id or frame.image.header.frame_id),
                                              size, tuple(topics))
            try:
                result = predictor.predict(rgb, output_size, range_out=getattr(frame_outputs, "range_out", None))
            except KeyboardInterrupt:
                raise
            except Exception as exc:  # noqa: BLE001 - as the node: skip the frame, keep going
                run.failures.append({"index": frame.index, "stamp_ns": frame.stamp_ns, "stage": "inference",
                                     "error": f"{type(exc).__name__}: {exc}"})
                progress.update(1)
                continue
            t2 = time.perf_counter()
            if frame_outputs is not None:
                for name in frame_outputs.names:
                    writer.write(topics[name], frame.log_time_ns, frame_outputs.build(name, result).cdr.tobytes())
            t3 = time.perf_counter()
            gt_m = None
            if frame.gt is not None:
                try:
                    gt_m = resize_nearest(bags.depth_image_to_metres(frame.gt), result.range_m.shape)
                except DapError as exc:
                    run.failures.append({"index": frame.index, "stamp_ns": frame.stamp_ns, "stage": "ground_truth",
                                         "error": str(exc)})
                    record["has_gt"] = False
                if gt_m is not None:
                    fm = frame_metrics(result.range_m, gt_m, p.max_range, align=options.median_align)
                    run.accumulator.add(fm)
                    record.update(fm.summary())
            t4 = time.perf_counter()
            stage_s = {
                "read": t0 - t_read,
                "decode": t1 - t0,
                "preprocess": result.timings.get("preprocess", 0.0),
                "inference": result.timings.get("inference", t2 - t1),
                "postprocess": result.timings.get("postprocess", 0.0),
                "outputs": t3 - t2,
                "metrics": t4 - t3,
            }
            for stage, seconds in stage_s.items():
                run.timings[stage].append(seconds)
            record["timings_ms"] = {k: v * 1e3 for k, v in stage_s.items()}
            run.frames.append(record)
            if frame.index in picks:
                gt_thumb = None if gt_m is None else thumbnail(gt_m)
                run.grid.append(GridSample(frame.index, thumbnail(np.asarray(rgb)), gt_thumb,
                                           thumbnail(result.range_m), thumbnail(result.in_range)))
            progress.update(1)
            if "abs_rel" in record and record["abs_rel"] is not None:
                progress.set_postfix(abs_rel=f"{record['abs_rel']:.3f}", refresh=False)
    except KeyboardInterrupt:
        run.interrupted = True
        progress.write("dap-ros eval-bag: interrupted; writing the report for the frames done so far")
    finally:
        run.wall_s = time.perf_counter() - start
        progress.close()


def params_dict(p: NodeParams) -> dict[str, Any]:
    return asdict(p)
