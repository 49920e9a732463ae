"""``eval-dataset``: a checkpoint on a dataset folder in its published layout, under the paper's
protocol or the standard one, resumable.

Each finished image is appended to ``REPORT_DIR/images.jsonl`` (:mod:`results_log`) before the next
starts, with everything the report needs (metric sums, official per-image numbers, timings); the
thumbnails of the report's frame grid go to ``REPORT_DIR/grid/``. A rerun with the same settings
skips the images done and writes the report a single run would have written. An image that cannot
be read is listed as a failure and retried on the next run; Ctrl-C keeps what is done.
"""
from __future__ import annotations

import hashlib
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from dap_ros.errors import ConfigError, DapError
from dap_ros.evaluation import datasets, paper
from dap_ros.evaluation.metrics import FrameMetrics, MetricsAccumulator, frame_metrics, resize_nearest
from dap_ros.evaluation.report import clean
from dap_ros.evaluation.results_log import ResultsLog
from dap_ros.evaluation.runner import GridSample, grid_picks, thumbnail

PROTOCOLS = ("standard", "paper")
STAGES = ("read", "preprocess", "inference", "postprocess", "metrics")
PIPELINE_STAGES = ("preprocess", "inference", "postprocess")
IMAGES_FILE = "images.jsonl"
GRID_DIR = "grid"


@dataclass
class DatasetOptions:
    dataset: str
    root: Path
    split: Path
    report_dir: Path
    protocol: str = "standard"
    max_frames: int | None = None
    median_align: bool = False
    grid_frames: int = 4
    progress: bool = True
    restart: bool = False  # discard the results of an earlier run in report_dir


@dataclass
class DatasetRun:
    options: DatasetOptions
    samples: list[datasets.Sample]
    model: dict[str, Any]
    max_range: float
    log: ResultsLog
    grid_dir: Path
    accumulator: MetricsAccumulator = field(default_factory=MetricsAccumulator)
    paper_images: list[dict[str, float] | None] = field(default_factory=list)
    frames: list[dict[str, Any]] = field(default_factory=list)
    failures: list[dict[str, Any]] = field(default_factory=list)
    grid: list[GridSample] = field(default_factory=list)
    resumed: int = 0
    interrupted: bool = False
    wall_s: float = 0.0

    @property
    def selected(self) -> list[datasets.Sample]:
        return self.samples[: self.options.max_frames] if self.options.max_frames else self.samples

    @property
    def complete(self) -> bool:
        return not self.interrupted and not self.failures and len(self.frames) == len(self.selected)


def file_sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def run_settings(options: DatasetOptions, model: dict[str, Any]) -> dict[str, Any]:
    """What must not change between a run and its resumption."""
    return {
        "dataset": options.dataset,
        "root": str(options.root.resolve()),
        "split_sha256": file_sha256(options.split),
        "protocol": options.protocol,
        "median_align": options.median_align,
        "model": model,
    }


def open_run(options: DatasetOptions, model: dict[str, Any], max_range: float) -> DatasetRun:
    """Everything that needs no model: the split file read, the report folder and its results
    file opened (resumed, or refused when written with other settings). ``model``: the settings
    that identify the model (part of what a resumption must match)."""
    if options.protocol not in PROTOCOLS:
        raise ConfigError(f"unknown protocol {options.protocol!r}; one of {', '.join(PROTOCOLS)}")
    if options.protocol == "paper" and options.median_align:
        raise ConfigError("--median-align is not part of the paper protocol (its metrics are metric); "
                          "use it with --protocol standard")
    samples = datasets.read_split(options.dataset, options.root, options.split)
    options.report_dir.mkdir(parents=True, exist_ok=True)
    log = ResultsLog(options.report_dir / IMAGES_FILE, run_settings(options, model), restart=options.restart)
    grid_dir = options.report_dir / GRID_DIR
    if options.restart:
        shutil.rmtree(grid_dir, ignore_errors=True)
    grid_dir.mkdir(exist_ok=True)
    return DatasetRun(options, samples, model, max_range, log, grid_dir)


def evaluate(run: DatasetRun, predictor: Any) -> DatasetRun:
    """Evaluate the selected samples not done yet. ``predictor``: a DepthPredictor (``predict``
    for the standard protocol, ``network_outputs`` for the paper's)."""
    try:
        _loop(run, predictor)
    finally:
        run.log.close()
    return run


def _loop(run: DatasetRun, predictor: Any) -> None:
    from tqdm import tqdm

    options, log, grid_dir = run.options, run.log, run.grid_dir
    selected = run.selected
    picks = grid_picks(len(selected), options.grid_frames)
    progress = tqdm(total=len(selected), unit="image", desc=f"dap-ros eval-dataset {options.dataset}",
                    disable=not options.progress, dynamic_ncols=True)
    start = time.perf_counter()
    try:
        for position, sample in enumerate(selected):
            record = log.done.get(sample.index)
            if record is not None:
                run.resumed += 1
            else:
                try:
                    record, grid = _evaluate(run, predictor, sample, position in picks)
                except KeyboardInterrupt:
                    raise
                except Exception as exc:  # noqa: BLE001 - as eval-bag: list the image, go on, retry next run
                    error = str(exc) if isinstance(exc, DapError) else f"{type(exc).__name__}: {exc}"
                    run.failures.append({"index": sample.index, "name": sample.name, "error": error})
                    progress.update(1)
                    continue
                if grid is not None:
                    np.savez_compressed(grid_dir / f"{sample.index:06d}.npz", **grid)
                record = clean(record)
                log.append(record)
            _account(run, record)
            if position in picks:
                _load_grid(run, grid_dir, sample.index)
            progress.update(1)
            if record.get("abs_rel") is not None:
                progress.set_postfix(abs_rel=f"{record['abs_rel']:.3f}", refresh=False)
    except KeyboardInterrupt:
        run.interrupted = True
        progress.write("dap-ros eval-dataset: interrupted; the images done are kept, a rerun resumes")
    finally:
        run.wall_s = time.perf_counter() - start
        progress.close()


def _account(run: DatasetRun, record: dict[str, Any]) -> None:
    if "stats" in record:
        run.accumulator.add(FrameMetrics.from_dict(record["stats"]))
    if "paper" in record:
        run.paper_images.append(record["paper"])
    run.frames.append({k: v for k, v in record.items() if k != "stats"})


def _load_grid(run: DatasetRun, grid_dir: Path, index: int) -> None:
    path = grid_dir / f"{index:06d}.npz"
    if not path.is_file():
        return
    with np.load(path) as g:
        run.grid.append(GridSample(index, g["rgb"], g["gt"], g["pred"], g["in_range"]))


def _evaluate(run: DatasetRun, predictor: Any, sample: datasets.Sample,
              keep_grid: bool) -> tuple[dict[str, Any], dict[str, np.ndarray] | None]:
    if run.options.protocol == "paper":
        return _evaluate_paper(run, predictor, sample, keep_grid)
    return _evaluate_standard(run, predictor, sample, keep_grid)


def _evaluate_standard(run: DatasetRun, predictor: Any, sample: datasets.Sample,
                       keep_grid: bool) -> tuple[dict[str, Any], dict[str, np.ndarray] | None]:
    dataset = run.options.dataset
    t0 = time.perf_counter()
    rgb = datasets.read_rgb(dataset, sample)
    gt = datasets.ground_truth(dataset, sample)
    t1 = time.perf_counter()
    result = predictor.predict(rgb)
    t2 = time.perf_counter()
    gt_m = resize_nearest(gt, result.range_m.shape)
    fm = frame_metrics(result.range_m, gt_m, run.max_range, align=run.options.median_align)
    t3 = time.perf_counter()
    timings = {"read": t1 - t0, **{s: result.timings.get(s, 0.0) for s in PIPELINE_STAGES}, "metrics": t3 - t2}
    record = {"index": sample.index, "name": sample.name, **fm.summary(), "stats": fm.to_dict(),
              "timings_ms": {k: 1e3 * v for k, v in timings.items()}}
    grid = None
    if keep_grid:
        grid = {"rgb": thumbnail(rgb), "gt": thumbnail(gt_m), "pred": thumbnail(result.range_m),
                "in_range": thumbnail(result.in_range)}
    return record, grid


def _evaluate_paper(run: DatasetRun, predictor: Any, sample: datasets.Sample,
                    keep_grid: bool) -> tuple[dict[str, Any], dict[str, np.ndarray] | None]:
    dataset = run.options.dataset
    size = tuple(predictor.input_size)
    t0 = time.perf_counter()
    rgb = paper.read_rgb(sample.rgb, dataset)
    gt, valid = paper.ground_truth(datasets.read_depth(dataset, sample), dataset, size)
    t1 = time.perf_counter()
    image = paper.network_input(rgb, size)
    t2 = time.perf_counter()
    depth, mask = predictor.network_outputs(image)
    t3 = time.perf_counter()
    pred = paper.prediction(depth, mask)
    t4 = time.perf_counter()
    metrics = paper.image_metrics(pred, gt, valid)
    t5 = time.perf_counter()
    timings = {"read": t1 - t0, "preprocess": t2 - t1, "inference": t3 - t2, "postprocess": t4 - t3,
               "metrics": t5 - t4}
    record = {"index": sample.index, "name": sample.name, "paper": metrics,
              "abs_rel": None if metrics is None else metrics["abs_rel"], "valid_pixels": int(valid.sum()),
              "timings_ms": {k: 1e3 * v for k, v in timings.items()}}
    grid = None
    if keep_grid:
        within = paper.within_range(mask)
        scale = np.float32(100.0)
        grid = {"rgb": thumbnail(image), "gt": thumbnail(np.where(valid, gt * scale, np.nan)),
                "pred": thumbnail(np.where(within, pred * scale, np.inf)), "in_range": thumbnail(within)}
    return record, grid
