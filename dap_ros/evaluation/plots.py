"""PNG plots of an evaluation run (matplotlib, Agg backend: no display needed)."""
from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from dap_ros.io.colorize import colorize_range


def _pyplot():
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    return plt


def write_plots(doc: dict[str, Any], grid: list[Any], max_range: float, out: Path) -> list[str]:
    """The plots of a metrics.json document (eval-bag or eval-dataset) and its frame grid samples."""
    plt = _pyplot()
    written: list[str] = []

    def save(fig: Any, name: str) -> None:
        path = out / name
        fig.savefig(path, dpi=110, bbox_inches="tight")
        plt.close(fig)
        written.append(str(path))

    evr = doc.get("error_vs_range")
    if evr:
        lo, hi = np.asarray(evr["bin_lo"]), np.asarray(evr["bin_hi"])
        abs_rel = np.array([np.nan if v is None else v for v in evr["abs_rel"]])
        pixels = np.asarray(evr["pixels"])
        keep = pixels > 0
        fig, ax = plt.subplots(figsize=(7, 4))
        ax.bar(lo[keep], abs_rel[keep], width=(hi - lo)[keep], align="edge", color="tab:blue", alpha=0.8,
               edgecolor="white")
        ax.set_xlabel("ground-truth range (m)")
        ax.set_ylabel("AbsRel (pooled per bin)")
        ax.set_title("Error vs range")
        if keep.any():
            ax.set_xlim(0, float(hi[keep].max()))
        ax2 = ax.twinx()
        ax2.plot((lo + hi)[keep] / 2, pixels[keep], "k.", ms=4)
        ax2.set_ylabel("pixels (dots)")
        ax2.set_yscale("log")
        save(fig, "error_vs_range.png")

    frames = [f for f in doc["frames"] if f.get("abs_rel") is not None]
    if frames:
        fig, ax = plt.subplots(figsize=(7, 3.5))
        over_time = all("bag_time_s" in f for f in frames)
        t = [f["bag_time_s"] if over_time else f["index"] for f in frames]
        ax.plot(t, [f["abs_rel"] for f in frames], "o-", ms=3, label="AbsRel")
        if any(f.get("aligned_abs_rel") is not None for f in frames):
            ax.plot(t, [f.get("aligned_abs_rel") for f in frames], "s--", ms=3, label="AbsRel, median-aligned")
            ax.legend()
        ax.set_xlabel("bag time (s)" if over_time else "image (split file order)")
        ax.set_ylabel("AbsRel")
        ax.set_title("Per-frame AbsRel")
        ax.grid(alpha=0.3)
        save(fig, "abs_rel_over_time.png")

    pipeline = [sum(f["timings_ms"].get(s, 0.0) for s in ("decode", "preprocess", "inference", "postprocess"))
                for f in doc["frames"] if "timings_ms" in f]
    rt = (doc.get("realtime") or {}).get("latencies_ms") or []
    if pipeline or rt:
        fig, ax = plt.subplots(figsize=(7, 3.5))
        if pipeline:
            ax.hist(pipeline, bins=min(40, max(5, len(pipeline))), alpha=0.7, label="offline pipeline per frame")
        if rt:
            ax.hist(rt, bins=min(40, max(5, len(rt))), alpha=0.7, label="real-time stamp -> depth receipt")
        ax.set_xlabel("latency (ms)")
        ax.set_ylabel("frames")
        ax.set_title("Latency")
        ax.legend()
        save(fig, "latency_hist.png")

    if grid:
        cols = ["RGB", "ground truth", "prediction", "AbsRel error", "range mask"]
        fig, axes = plt.subplots(len(grid), len(cols), figsize=(3.2 * len(cols), 1.8 * len(grid) + 0.4),
                                 squeeze=False)
        for row, s in zip(axes, grid):
            err = None
            if s.gt is not None:
                with np.errstate(invalid="ignore", divide="ignore"):
                    pred = np.where(np.isposinf(s.pred), max_range, s.pred)
                    valid = np.isfinite(s.gt) & (s.gt > 0) & (s.gt <= max_range)
                    err = np.where(valid, np.abs(pred - s.gt) / s.gt, np.nan)
            ref = s.gt if s.gt is not None else s.pred
            with np.errstate(invalid="ignore"):
                finite = ref[np.isfinite(ref) & (ref > 0) & (ref <= max_range)]
            lo, hi = (float(v) for v in np.percentile(finite, [1, 99])) if finite.size else (0.3, max_range)
            hi = max(hi, lo * 1.01)
            panels = [
                s.rgb,
                None if s.gt is None else colorize_range(s.gt, max_range=hi, min_range=lo),
                colorize_range(s.pred, max_range=hi, min_range=lo),
                err,
                s.in_range,
            ]
            for ax, title, panel in zip(row, cols, panels):
                ax.set_axis_off()
                ax.set_title(f"{title} (frame {s.index})" if title == "RGB" else title, fontsize=8)
                if panel is None:
                    ax.text(0.5, 0.5, "no ground truth", ha="center", va="center", fontsize=8)
                elif title == "AbsRel error":
                    im = ax.imshow(panel, cmap="magma", vmin=0.0, vmax=0.5)
                    fig.colorbar(im, ax=ax, fraction=0.025, pad=0.01)
                elif title == "range mask":
                    ax.imshow(panel, cmap="gray", vmin=0, vmax=1)
                else:
                    ax.imshow(panel)
        fig.suptitle("white mask = within range; error clipped at 0.5; depth colours: log scale shared by GT and "
                     "prediction, grey = beyond range", fontsize=8)
        save(fig, "frames_grid.png")
    return written
