"""metrics.json (schema ``dap_ros.eval_dataset``), report.md and plots of an ``eval-dataset`` run."""
from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

from dap_ros import __version__
from dap_ros.evaluation import paper
from dap_ros.evaluation.dataset_runner import PIPELINE_STAGES, DatasetRun
from dap_ros.evaluation.metrics import DEPTH_METRICS
from dap_ros.evaluation.report import (
    DEFINITIONS,
    clean,
    depth_sections,
    exclusions,
    fmt,
    latency_section,
    stage_latency,
)

SCHEMA = "dap_ros.eval_dataset"
SCHEMA_VERSION = 1


def build_metrics(run: DatasetRun) -> dict[str, Any]:
    o = run.options
    doc: dict[str, Any] = {
        "schema": SCHEMA,
        "schema_version": SCHEMA_VERSION,
        "protocol": o.protocol,
        "dataset": {"name": o.dataset, "root": str(o.root), "split": str(o.split), "images_listed": len(run.samples)},
        "run": {
            "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            "dap_ros_version": __version__,
            "max_frames": o.max_frames,
            "images_selected": len(run.selected),
            "images_done": len(run.frames),
            "images_resumed": run.resumed,  # done by an earlier, interrupted run of the same settings
            "failures": run.failures,
            "complete": run.complete,
            "interrupted": run.interrupted,
            "median_align": o.median_align,
        },
        "model": run.model,
        "latency": stage_latency([f["timings_ms"] for f in run.frames], PIPELINE_STAGES, run.wall_s),
    }
    if o.protocol == "paper":
        doc["paper"] = {
            **paper.summary(run.paper_images),
            "units": "normalized depth: 1 = 100 m (abs_, sq_rel, rms)",
            "ground_truth_clamp_m": paper.GT_CLAMP_M[o.dataset],
            "definitions": paper.DEFINITIONS,
        }
    elif len(run.accumulator):
        summary = run.accumulator.summary()
        doc.update({name: summary["frame_mean"][name] for name in DEPTH_METRICS})
        doc.update(definitions=DEFINITIONS, exclusions=exclusions(run.max_range), frame_mean=summary["frame_mean"],
                   pooled=summary["pooled"], bands=summary["bands"], range_mask=summary["range_mask"],
                   pixels=summary["pixels"], error_vs_range=run.accumulator.error_vs_range())
        if "median_aligned" in summary:
            doc["median_aligned"] = summary["median_aligned"]
    doc["frames"] = run.frames
    return clean(doc)


def _model_line(m: dict[str, Any]) -> str:
    weights = (f"weights `{m['checkpoint']}`" if m.get("checkpoint") else
               "RANDOM weights (depth is meaningless)" if m.get("random_weights") else "the embedded demo model")
    size = m.get("input_size")
    size = f"{size[0]}x{size[1]}" if isinstance(size, list) else size
    return ", ".join(str(v) for v in (m.get("model_config"), weights, m.get("backend"), m.get("precision"),
                                      size and f"network input {size}") if v)


def render_markdown(doc: dict[str, Any], plots: list[str]) -> str:
    d, r, m = doc["dataset"], doc["run"], doc["model"]
    lines = [
        f"# dap-ros eval-dataset report: {d['name']}, {doc['protocol']} protocol",
        "",
        f"- dataset `{d['root']}`, split `{d['split']}`: {d['images_listed']} images listed, "
        f"{r['images_selected']} selected" + (f" (--max-frames {r['max_frames']})" if r["max_frames"] else "")
        + f", {r['images_done']} done ({r['images_resumed']} by an earlier run), {len(r['failures'])} failed",
        f"- model: {_model_line(m)}",
    ]
    if r["interrupted"]:
        lines.append("- **interrupted (Ctrl-C)**: the numbers cover the images done; rerun the command to resume")
    if not r["complete"] and not r["interrupted"]:
        lines.append("- **incomplete**: images failed (below); rerun the command to retry them")
    lines.append("")
    if "paper" in doc:
        p = doc["paper"]
        lines += [
            "## Paper protocol (the official test/eval.py; units of 100 m)",
            "",
            "| " + " | ".join(paper.PAPER_METRICS) + " |",
            "|" + "---|" * len(paper.PAPER_METRICS),
            "| " + " | ".join(fmt(p[name]) for name in paper.PAPER_METRICS) + " |",
            "",
            f"{p['images']} images scored, {p['images_without_valid_gt']} without an evaluated pixel (left out). "
            f"Ground truth above {p['ground_truth_clamp_m']:g} m is set to it; evaluated where 0 < gt <= 100 m.",
            "",
        ] + [f"- `{k}`: {v}" for k, v in p["definitions"].items()]
    elif "frame_mean" in doc:
        lines += depth_sections(doc)
    else:
        lines += ["## Metric depth", "", "No image was evaluated."]
    lines += latency_section(doc["latency"], "preprocess + inference + postprocess",
                             "reading the files and scoring")
    if plots:
        lines += ["", "## Plots", ""] + [f"![{Path(p).stem}]({Path(p).name})" for p in plots]
    if r["failures"]:
        lines += ["", "## Failed images", ""] + [f"- {f['name']}: {f['error']}" for f in r["failures"][:50]]
    return "\n".join(lines) + "\n"


def write_report(run: DatasetRun, plots: bool = True) -> dict[str, Any]:
    """Write metrics.json, report.md and the plots into the run's report folder."""
    out = run.options.report_dir
    doc = build_metrics(run)
    written: list[str] = []
    if plots:
        from dap_ros.evaluation.plots import write_plots

        written = write_plots(doc, run.grid, run.max_range, out)
    doc["plots"] = [Path(p).name for p in written]
    (out / "metrics.json").write_text(json.dumps(doc, indent=2, allow_nan=False) + "\n", encoding="utf-8")
    (out / "report.md").write_text(render_markdown(doc, written), encoding="utf-8")
    return doc
