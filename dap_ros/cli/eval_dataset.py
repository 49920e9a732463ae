"""``dap-ros eval-dataset``: a model on a panoramic depth dataset in its published layout, under the
DAP paper's protocol or dap_ros's standard one (docs/evaluation.md)."""
from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from dap_ros.cli.common import add_model_options, make_output_dir, spec_from_args


def add_parser(subparsers) -> None:
    from dap_ros.evaluation.datasets import DATASETS

    parser = subparsers.add_parser(
        "eval-dataset",
        help="evaluate on Stanford2D3D / Matterport3D / Deep360 / DAP-Test or a list file (paper or standard protocol)",
        description=(
            "Scores a model on a dataset folder in its own layout with the split file the official DAP "
            "configs use (lines 'RGB DEPTH' relative to ROOT). --protocol paper reproduces the official "
            "test/eval.py (cv2 bicubic input resize, ground truth at the network size, per-image metrics "
            "averaged, official names and units: a 'paper' block in metrics.json); --protocol standard "
            "(default) gives eval-bag's metrics (RMSE in metres, range bands, range mask). Each image's "
            "result is saved as it finishes: rerunning the same command after a kill or Ctrl-C resumes."
        ),
    )
    parser.add_argument("dataset", choices=DATASETS, help="the dataset's layout (docs/evaluation.md)")
    parser.add_argument("root", type=Path, help="the dataset's root folder")
    parser.add_argument("--split", type=Path, required=True, help="split file: 'RGB DEPTH' per line, relative to ROOT")
    parser.add_argument("--protocol", choices=("standard", "paper"), default="standard")
    parser.add_argument("--report-dir", type=Path, required=True,
                        help="metrics.json, report.md, plots and images.jsonl (the per-image results) go here")
    parser.add_argument("--max-frames", type=int, help="evaluate the first N images of the split only")
    parser.add_argument("--median-align", action="store_true",
                        help="standard protocol: also report metrics after per-image median scale alignment")
    parser.add_argument("--restart", action="store_true",
                        help="discard the results of an earlier run in --report-dir instead of resuming it")
    parser.add_argument("--grid-frames", type=int, default=4, help="images shown in frames_grid.png")
    parser.add_argument("--no-plots", action="store_true")
    parser.add_argument("--no-progress", action="store_true")
    add_model_options(parser)  # --input-size plays the official config's height / width
    parser.set_defaults(run=run)


def model_identity(args: argparse.Namespace) -> dict[str, Any]:
    """The model settings a resumed run must share with the run it continues."""
    def path(value: str | None) -> str | None:
        return None if value is None else str(Path(value).resolve())

    size = args.input_size
    return {
        "checkpoint": path(args.checkpoint), "random_weights": bool(args.random_weights),
        "model_config": args.model_config, "backend": args.backend, "onnx": path(args.onnx),
        "engine": path(args.engine), "precision": args.precision,
        "input_size": None if size is None else f"{size[0]}x{size[1]}", "normalization": args.normalization,
        "mask_threshold": args.mask_threshold, "max_range": args.max_range,
    }


def run(args: argparse.Namespace) -> int:
    from dap_ros.errors import ConfigError
    from dap_ros.evaluation.dataset_report import write_report
    from dap_ros.evaluation.dataset_runner import DatasetOptions, evaluate, open_run
    from dap_ros.pipeline import DepthPredictor

    if args.max_frames is not None and args.max_frames < 1:
        raise ConfigError(f"--max-frames must be >= 1, got {args.max_frames}")
    if args.protocol == "paper":
        from dap_ros.evaluation.paper import cv2_module

        cv2_module()  # the protocol is defined by OpenCV's resizes: missing is an error before the model loads
    make_output_dir(args.report_dir, "--report-dir")
    options = DatasetOptions(
        dataset=args.dataset, root=args.root, split=args.split, report_dir=args.report_dir, protocol=args.protocol,
        max_frames=args.max_frames, median_align=args.median_align, grid_frames=args.grid_frames,
        progress=not args.no_progress, restart=args.restart,
    )
    model = model_identity(args)
    dataset_run = open_run(options, model, args.max_range)  # split file and resumption checked before the load
    if args.random_weights and not args.checkpoint:
        import torch

        torch.manual_seed(0)  # random weights: the same numbers on every run (plumbing checks)
    predictor = DepthPredictor.from_spec(spec_from_args(args))
    dataset_run.model = {**model, "backend": predictor.backend, "device": str(predictor.device),
                         "precision": predictor.precision, "input_size": list(predictor.input_size),
                         "checkpoint": getattr(predictor.weights, "path", None) and str(predictor.weights.path)}
    evaluate(dataset_run, predictor)
    doc = write_report(dataset_run, plots=not args.no_plots)
    print(summary_line(doc, args.report_dir))
    if dataset_run.interrupted:
        return 130
    return 0 if dataset_run.complete else 1


def summary_line(doc: dict[str, Any], report_dir: Path) -> str:
    r = doc["run"]
    parts = [f"dap-ros eval-dataset {doc['dataset']['name']} ({doc['protocol']}): {r['images_done']} of "
             f"{r['images_selected']} images"]
    if "paper" in doc and doc["paper"]["abs_rel"] is not None:
        p = doc["paper"]
        parts.append(f"abs_rel {p['abs_rel']:.4f}, rms {p['rms']:.4f}, a1 {p['a1']:.4f} (official definitions)")
    elif doc.get("abs_rel") is not None:
        parts.append(f"AbsRel {doc['abs_rel']:.4f}, RMSE {doc['rmse']:.3f} m, delta1 {doc['delta1']:.4f}")
    if r["failures"]:
        parts.append(f"{len(r['failures'])} FAILED (rerun to retry)")
    if r["interrupted"]:
        parts.append("INTERRUPTED (rerun to resume)")
    return "; ".join(parts) + f" -> {report_dir}/report.md"
