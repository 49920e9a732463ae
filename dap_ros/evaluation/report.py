"""metrics.json (versioned schema), report.md and the plots of an evaluation run."""
from __future__ import annotations

import json
import math
import time
from pathlib import Path
from typing import Any

import numpy as np

from dap_ros import __version__
from dap_ros.evaluation.metrics import DEPTH_METRICS
from dap_ros.evaluation.runner import PIPELINE_STAGES, STAGES, EvalRun, ground_truth_problem, params_dict
from dap_ros.evaluation.timing import latency_summary_ms

SCHEMA = "dap_ros.eval_bag"
SCHEMA_VERSION = 1

DEFINITIONS = {
    "abs_rel": "mean(|pred - gt| / gt)",
    "sq_rel": "mean((pred - gt)^2 / gt)",
    "rmse": "sqrt(mean((pred - gt)^2)) metres (standard definition; the official DAP code's 'RMSE' "
            "is a mean absolute error)",
    "rmse_log": "sqrt(mean((ln pred - ln gt)^2))",
    "delta1": "fraction of pixels with max(pred/gt, gt/pred) < 1.25 (delta2: 1.25^2, delta3: 1.25^3)",
    "aggregation": "top-level and frame_mean: metric per frame, averaged over frames with evaluated "
                   "pixels; pooled, bands and range_mask: over all evaluated pixels of all frames",
    "range_mask": "positive class = beyond range; pred beyond = +Inf pixel; GT beyond = +Inf or > max_range; "
                  "counted over pixels whose GT is valid or beyond range",
}


def exclusions(max_range: float) -> list[str]:
    return [
        f"ground truth NaN, +-Inf, <= 0 m or > {max_range:g} m (max_range) is excluded from the depth metrics",
        f"ground truth +Inf or > {max_range:g} m counts as 'beyond range' for the range-mask metrics",
        f"a prediction of +Inf (beyond range) on valid ground truth is scored as {max_range:g} m, as the "
        "official post-processing does; finite predictions are clamped to [0.001 m, max_range]",
        "a NaN prediction on valid ground truth is excluded and counted (pixels.pred_invalid_on_valid_gt)",
        "16UC1 ground truth is millimetres with 0 = invalid; ground truth of another size is resized "
        "to the prediction's size with nearest-neighbour sampling (no interpolation)",
        "range bands are [lo, hi) on the ground truth; the last band includes max_range",
    ]


def latency_summary(run: EvalRun) -> dict[str, Any]:
    """Per-stage stats of an eval-bag run (:func:`stage_latency`)."""
    return stage_latency([{s: 1e3 * run.timings[s][i] for s in STAGES} for i in range(len(run.frames))],
                         PIPELINE_STAGES, run.wall_s)


def stage_latency(frames_ms: list[dict[str, float]], pipeline_stages: tuple[str, ...],
                  wall_s: float) -> dict[str, Any]:
    """Per-stage stats of per-frame stage times (ms); the first frame (warm-up: allocation, kernel
    selection) is left out when there are more."""
    skip = 1 if len(frames_ms) > 1 else 0
    kept = frames_ms[skip:]
    names = list(frames_ms[0]) if frames_ms else list(pipeline_stages)
    stages = {s: latency_summary_ms([f[s] for f in kept]) for s in names}
    pipe = latency_summary_ms([sum(f[s] for s in pipeline_stages) for f in kept])
    return {
        "warmup_frames_excluded": skip,
        "stages_ms": stages,
        "pipeline_ms": pipe,  # decode + preprocess + inference + postprocess: the node's per-frame work
        "total_ms": latency_summary_ms([sum(f.values()) for f in kept]),
        "pipeline_fps": (1e3 / pipe["mean"]) if pipe["mean"] else None,
        "run_fps": (len(frames_ms) / wall_s) if wall_s > 0 else None,
        "wall_s": wall_s,
    }


def clean(value: Any) -> Any:
    """NaN / Inf -> None, numpy scalars -> Python (strict JSON)."""
    if isinstance(value, dict):
        return {str(k): clean(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [clean(v) for v in value]
    if isinstance(value, (np.floating, float)):
        v = float(value)
        return v if math.isfinite(v) else None
    if isinstance(value, np.integer):
        return int(value)
    if isinstance(value, np.bool_):
        return bool(value)
    return value


def build_metrics(run: EvalRun) -> dict[str, Any]:
    summary = run.accumulator.summary() if len(run.accumulator) else None
    top = summary["frame_mean"] if summary else {name: None for name in DEPTH_METRICS}
    problem = run.read_problem
    doc: dict[str, Any] = {
        "schema": SCHEMA,
        "schema_version": SCHEMA_VERSION,
        **{name: top[name] for name in DEPTH_METRICS},
        "definitions": DEFINITIONS,
        "exclusions": exclusions(run.params.max_range),
        "run": {
            "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            "dap_ros_version": __version__,
            "input_bag": str(run.options.bag),
            "typestore": run.distro,
            "image_topic": run.options.image_topic,
            "gt_topic": run.options.gt_topic,
            "ground_truth_problem": ground_truth_problem(run),
            "frames_in_bag": run.frames_in_bag,
            "max_frames": run.options.max_frames,
            "frames_processed": len(run.frames),
            "frames_with_gt": summary["frames_with_gt"] if summary else 0,
            "frames_failed": len(run.failures),
            "complete": run.complete,
            "interrupted": run.interrupted,
            "read_error": None if problem is None else {
                "kind": problem.kind,
                "message": problem.message,
                "stopped_after_frame": problem.frames_read,  # frames read before the error
                "last_stamp_ns": problem.last_stamp_ns,
            },
            "skipped_messages": run.skipped_messages,
            "gt_unmatched_messages": run.gt_unmatched,
            "failures": run.failures,
            "median_align": run.options.median_align,
        },
        "model": run.model,
        "params": params_dict(run.params),
        "latency": latency_summary(run),
        "realtime": run.realtime,
        "output_bag": run.output_bag,
    }
    if summary:
        doc.update(
            frame_mean=summary["frame_mean"],
            pooled=summary["pooled"],
            bands=summary["bands"],
            range_mask=summary["range_mask"],
            pixels=summary["pixels"],
        )
        if "median_aligned" in summary:
            doc["median_aligned"] = summary["median_aligned"]
        doc["error_vs_range"] = run.accumulator.error_vs_range()
    doc["frames"] = run.frames
    return clean(doc)


def fmt(value: Any, digits: int = 4) -> str:
    """A number for a markdown table: 4 decimals by default, – for None."""
    if value is None:
        return "–"
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    return str(value)


def render_markdown(doc: dict[str, Any], plots: list[str]) -> str:
    r = doc["run"]
    m = doc["model"]
    lines = [
        "# dap-ros eval-bag report",
        "",
        f"- input bag: `{r['input_bag']}` (typestore {r['typestore']}), image topic `{r['image_topic']}`, "
        f"ground truth `{r['gt_topic'] or 'none'}`",
        f"- frames: {r['frames_processed']} processed of {r['frames_in_bag']} in the bag"
        + (f" (--max-frames {r['max_frames']})" if r["max_frames"] else "")
        + f", {r['frames_with_gt']} with ground truth, {r['frames_failed']} failed",
        f"- model: {m['model_config']}, weights `{m['checkpoint'] or 'RANDOM (depth is meaningless)'}`, "
        f"{m['backend']} on {m['device']} {m['precision']}, network input {m['input_size'][0]}x{m['input_size'][1]}, "
        f"max range {m['max_range_m']:g} m",
    ]
    if r["interrupted"]:
        lines.append("- **interrupted (Ctrl-C)**: the numbers cover the frames processed before the interrupt")
    if r["read_error"]:
        e = r["read_error"]
        lines.append(
            f"- **bag reading stopped after frame {e['stopped_after_frame']}** ({e['kind']} error: {e['message']}); "
            "the numbers cover the frames read before it"
        )
    if r["skipped_messages"]:
        lines.append(f"- {len(r['skipped_messages'])} undecodable message(s) skipped")
    lines.append("")
    if doc.get("abs_rel") is not None or "frame_mean" in doc:
        lines += depth_sections(doc)
    else:
        why = r.get("ground_truth_problem")
        lines += ["## Metric depth", "", f"No ground truth: accuracy not measured{f' ({why})' if why else ''}."]
    lines += latency_section(doc["latency"], "decode + preprocess + inference + postprocess",
                             "bag reading, output bag and metrics")
    rt = doc.get("realtime")
    if rt:
        lines += ["", "## Real-time replay through the node", ""]
        if rt.get("error"):
            lines.append(f"Failed: {rt['error']}")
        else:
            lat_rt = rt["latency_ms"]
            lines += [
                f"Replayed {rt['frames_published']} frames at {fmt(rt['rate'], 2)}x the recorded rate "
                f"({fmt(rt['publish_hz'], 2)} Hz) into `{rt['input_topic']}`; outputs on `{rt['output_topic']}`.",
                "",
                "| received | dropped | drop rate | p50 ms | p95 ms | p99 ms | max ms |",
                "|---|---|---|---|---|---|---|",
                f"| {rt['frames_received']} | {rt['frames_dropped']} | {fmt(rt['drop_rate'], 3)} | "
                f"{fmt(lat_rt['p50'], 1)} | {fmt(lat_rt['p95'], 1)} | {fmt(lat_rt['p99'], 1)} | "
                f"{fmt(lat_rt['max'], 1)} |",
                "",
                "Latency = receipt time of the depth message - its header stamp (the input stamp, set to the "
                "publish time on replay). Dropped = published frames with no depth output (the node keeps only "
                "the newest frame when it is busy).",
            ]
    ob = doc.get("output_bag")
    if ob:
        lines += ["", "## Output bag", "", f"`{ob['path']}` ({ob['storage']}), stamps = input stamps, "
                  "bag times = input bag times (play it next to the input bag).", "",
                  "| topic | type | messages | offered QoS |", "|---|---|---|---|"]
        for topic, t in ob["topics"].items():
            q = t["qos"]
            lines.append(f"| `{topic}` | {t['type']} | {t['messages']} | "
                         f"{q['reliability']}, keep last {q['depth']}, {q['durability']} |")
    if plots:
        lines += ["", "## Plots", ""] + [f"![{Path(p).stem}]({Path(p).name})" for p in plots]
    if doc["run"]["failures"]:
        lines += ["", "## Failed frames", ""] + [
            f"- frame {f['index']} ({f['stage']}): {f['error']}" for f in doc["run"]["failures"][:50]
        ]
    return "\n".join(lines) + "\n"


def depth_sections(doc: dict[str, Any]) -> list[str]:
    """Markdown of the standard metrics of a metrics.json document (eval-bag and eval-dataset)."""
    lines = [
        "## Metric depth (no alignment)",
        "",
        "Per-frame metrics averaged over frames (`frame_mean`, the top-level keys of metrics.json) and "
        "over all pixels together (`pooled`). RMSE is the standard root of the mean squared error.",
        "",
        "| aggregation | AbsRel | SqRel | RMSE (m) | RMSE log | δ1 | δ2 | δ3 |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for key in ("frame_mean", "pooled"):
        if key in doc:
            v = doc[key]
            lines.append(f"| {key} | " + " | ".join(fmt(v[n]) for n in DEPTH_METRICS) + " |")
    lines += ["", "### Per range band (ground truth range, pooled)", "",
              "| band | pixels | AbsRel | SqRel | RMSE (m) | RMSE log | δ1 | δ2 | δ3 |",
              "|---|---|---|---|---|---|---|---|---|"]
    for name, v in doc.get("bands", {}).items():
        lines.append(f"| {name} | {v['pixels']} | " + " | ".join(fmt(v[n]) for n in DEPTH_METRICS) + " |")
    mk = doc.get("range_mask")
    if mk:
        lines += [
            "", "### Range mask (positive = beyond range)", "",
            "| precision | recall | IoU | accuracy | TP | FP | FN | TN |", "|---|---|---|---|---|---|---|---|",
            f"| {fmt(mk['precision'])} | {fmt(mk['recall'])} | {fmt(mk['iou'])} | {fmt(mk['accuracy'])} | "
            f"{mk['tp']} | {mk['fp']} | {mk['fn']} | {mk['tn']} |",
        ]
    if "median_aligned" in doc:
        a = doc["median_aligned"]
        lines += [
            "", "### With per-frame median scale alignment (NOT metric; for comparison only)", "",
            f"Scale median(gt)/median(pred): median {fmt(a['scale_median'], 3)}, "
            f"range {fmt(a['scale_min'], 3)}–{fmt(a['scale_max'], 3)}.", "",
            "| aggregation | AbsRel | SqRel | RMSE (m) | RMSE log | δ1 | δ2 | δ3 |",
            "|---|---|---|---|---|---|---|---|",
        ]
        for key in ("frame_mean", "pooled"):
            lines.append(f"| {key} | " + " | ".join(fmt(a[key][n]) for n in DEPTH_METRICS) + " |")
    px = doc.get("pixels", {})
    lines += ["", "### Exclusions", ""] + [f"- {e}" for e in doc["exclusions"]]
    if px:
        lines.append(
            f"- pixels: {px['total']} total, {px['evaluated']} evaluated, {px['gt_beyond_range']} GT beyond range, "
            f"{px['pred_invalid_on_valid_gt']} NaN predictions on valid GT, "
            f"{px['pred_beyond_range_on_valid_gt']} beyond-range predictions on valid GT"
        )
    return lines


def latency_section(lat: dict[str, Any], pipeline: str, whole: str) -> list[str]:
    """Markdown of a latency summary; ``pipeline`` names the stages of the per-frame work, ``whole``
    what the whole-run rate includes besides."""
    lines = [
        "", "## Latency (offline run)", "",
        f"Per frame, first {lat['warmup_frames_excluded']} frame(s) left out as warm-up. "
        f"Pipeline ({pipeline}, what the node does per frame): "
        f"mean {fmt(lat['pipeline_ms']['mean'], 1)} ms = {fmt(lat['pipeline_fps'], 2)} frames/s; "
        f"whole run incl. {whole}: {fmt(lat['run_fps'], 2)} frames/s "
        f"({fmt(lat['wall_s'], 1)} s).", "",
        "| stage | mean ms | p50 | p95 | p99 | max |", "|---|---|---|---|---|---|",
    ]
    for stage, s in lat["stages_ms"].items():
        lines.append(f"| {stage} | {fmt(s['mean'], 2)} | {fmt(s['p50'], 2)} | {fmt(s['p95'], 2)} | "
                     f"{fmt(s['p99'], 2)} | {fmt(s['max'], 2)} |")
    return lines


def write_report(run: EvalRun, report_dir: Path, plots: bool = True) -> dict[str, Any]:
    """Write metrics.json, report.md and the plots; returns the metrics document."""
    report_dir.mkdir(parents=True, exist_ok=True)
    doc = build_metrics(run)
    written: list[str] = []
    if plots:
        from dap_ros.evaluation.plots import write_plots

        written = write_plots(doc, run.grid, run.params.max_range, report_dir)
    doc["plots"] = [Path(p).name for p in written]
    (report_dir / "metrics.json").write_text(json.dumps(doc, indent=2, allow_nan=False) + "\n", encoding="utf-8")
    (report_dir / "report.md").write_text(render_markdown(doc, written), encoding="utf-8")
    return doc
