"""The demo report: PNG panels, metrics against ground truth, latency, a Markdown summary.

Panels are drawn with Pillow only (no matplotlib): per selected frame one PNG with the input RGB,
the ground-truth range, the predicted range (same colour scale), the range mask, the AbsRel error
and a top-down view of the point cloud and the laser scan.
"""
from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from dap_ros.evaluation.metrics import MetricsAccumulator, frame_metrics, resize_nearest
from dap_ros.evaluation.timing import latency_summary_ms
from dap_ros.geometry import LaserScanSpec, laser_scan
from dap_ros.io.colorize import colorize_range
from dap_ros.settings import DEPTH_SCALE_M

OUTPUTS = ("depth", "range_mask", "points", "scan")


@dataclass
class FrameResult:
    """One played frame's outputs as arrays, with their receipt latency."""

    latency: dict[str, float | None] = field(default_factory=dict)  # output -> stamp-to-receipt ms
    depth: np.ndarray | None = None  # (H, W) float32 metres, +Inf beyond range, NaN invalid
    range_mask: np.ndarray | None = None  # (H, W) uint8, 255 = in range
    points: np.ndarray | None = None  # (N, 3) float32, body frame
    scan: np.ndarray | None = None  # (beams,) float32
    scan_angle_min: float = 0.0
    scan_angle_increment: float = 0.0

    @classmethod
    def from_received(cls, got: Any) -> FrameResult:
        """From a :class:`dap_ros.ros.client.Received` holding the four outputs."""
        from dap_ros.ros.client import cloud_xyz, image_array

        scan = got.messages["scan"]
        return cls(
            latency={name: got.latency_ms(name) for name in OUTPUTS},
            depth=image_array(got.messages["depth"]),
            range_mask=image_array(got.messages["range_mask"]),
            points=cloud_xyz(got.messages["points"]),
            scan=np.asarray(scan.ranges, dtype=np.float32),
            scan_angle_min=float(scan.angle_min),
            scan_angle_increment=float(scan.angle_increment),
        )

    def latency_ms(self, output: str) -> float | None:
        return self.latency.get(output)


def _label(img, text: str):
    from PIL import ImageDraw

    draw = ImageDraw.Draw(img)
    box = draw.textbbox((4, 3), text)
    draw.rectangle((box[0] - 3, box[1] - 2, box[2] + 3, box[3] + 2), fill=(0, 0, 0))
    draw.text((4, 3), text, fill=(255, 255, 255))
    return img


def _tile(array: np.ndarray, size: tuple[int, int], text: str):
    from PIL import Image

    img = Image.fromarray(array)
    if img.size != size:
        img = img.resize(size, Image.NEAREST)
    return _label(img.convert("RGB"), text)


def error_image(pred: np.ndarray, gt: np.ndarray, limit: float = 0.5) -> np.ndarray:
    """|pred - gt| / gt as grey (black = 0, white >= ``limit``); blue where there is no GT or no prediction."""
    with np.errstate(invalid="ignore", divide="ignore"):
        err = np.abs(pred - gt) / gt
    ok = np.isfinite(err)
    v = np.clip(np.where(ok, err, 0) / limit, 0, 1)
    out = np.repeat((v * 255).astype(np.uint8)[..., None], 3, axis=2)
    out[~ok] = (30, 40, 90)
    return out


def top_down(points: np.ndarray | None, scan: np.ndarray | None, gt_scan: np.ndarray | None, angle_min: float,
             angle_increment: float, camera_height: float | None, size: tuple[int, int], extent: float):
    """Bird's-eye view (x forward = up, y left = left) of the obstacle points (between the floor and
    0.5 m above the camera: the floor and ceiling are left out), the predicted scan (red) and the
    scan of the ground truth (green). Grid every metre."""
    from PIL import Image, ImageDraw

    w, h = size
    img = Image.new("RGB", size, (16, 16, 20))
    draw = ImageDraw.Draw(img)
    cx, cy = w / 2, h / 2
    scale = (min(w, h) / 2 - 6) / extent

    def px(x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        return cx - y * scale, cy - x * scale

    for m in range(-int(extent), int(extent) + 1):
        a, _ = px(np.array(0.0), np.array(float(m)))
        _, b = px(np.array(float(m)), np.array(0.0))
        draw.line([(a, cy - extent * scale), (a, cy + extent * scale)], fill=(36, 36, 44))
        draw.line([(cx - extent * scale, b), (cx + extent * scale, b)], fill=(36, 36, 44))
    if points is not None and len(points):
        p = points
        floor = -(camera_height - 0.15) if camera_height else np.percentile(p[:, 2], 5) + 0.15
        keep = (p[:, 2] > floor) & (p[:, 2] < 0.5)
        u, v = px(p[keep, 0], p[keep, 1])
        inside = (u >= 0) & (u < w) & (v >= 0) & (v < h)
        arr = np.asarray(img).copy()
        arr[v[inside].astype(int), u[inside].astype(int)] = (150, 150, 160)
        img = Image.fromarray(arr)
        draw = ImageDraw.Draw(img)
    for ranges, colour in ((gt_scan, (60, 220, 90)), (scan, (255, 60, 50))):
        if ranges is None:
            continue
        ang = angle_min + angle_increment * np.arange(len(ranges))
        ok = np.isfinite(ranges) & (ranges > 0)
        u, v = px(ranges[ok] * np.cos(ang[ok]), ranges[ok] * np.sin(ang[ok]))
        for a, b in zip(u, v):
            draw.rectangle((a - 1, b - 1, a + 1, b + 1), fill=colour)
    draw.polygon([(cx, cy - 7), (cx - 4, cy + 4), (cx + 4, cy + 4)], fill=(255, 255, 255))
    _label(img, f"top-down, {2 * extent:.0f} m across: points grey, scan red, GT scan green")
    return img


def frame_panel(rgb: np.ndarray, gt: np.ndarray, result: Any, gt_scan: np.ndarray | None,
                camera_height: float | None, title: str):
    """One PNG: 3 rows x 2 columns of (H, W) tiles."""
    from PIL import Image

    h, w = rgb.shape[:2]
    size = (w, h)
    finite_gt = gt[np.isfinite(gt)]
    lo = 0.3
    hi = float(np.percentile(finite_gt, 99)) * 1.2 if finite_gt.size else DEPTH_SCALE_M
    depth = result.depth
    if depth.shape != gt.shape:
        depth = resize_nearest(depth, gt.shape)
    mask = result.range_mask if result.range_mask is not None else np.zeros(gt.shape, np.uint8)
    extent = float(np.clip(np.nanpercentile(finite_gt, 95) if finite_gt.size else 10.0, 4.0, 30.0))
    tiles = [
        _tile(rgb, size, title),
        _tile(colorize_range(gt, max_range=hi, min_range=lo), size, f"ground truth range ({lo}-{hi:.0f} m, log)"),
        _tile(colorize_range(depth, max_range=hi, min_range=lo), size, "predicted range (same scale)"),
        _tile(np.repeat(mask[..., None], 3, axis=2), size, "range mask (white = within range)"),
        _tile(error_image(depth, gt), size, "AbsRel error (black 0, white >= 0.5)"),
        top_down(result.points, result.scan, gt_scan, result.scan_angle_min, result.scan_angle_increment,
                 camera_height, size, extent),
    ]
    sheet = Image.new("RGB", (2 * w + 4, 3 * h + 8), (0, 0, 0))
    for i, t in enumerate(tiles):
        sheet.paste(t, ((i % 2) * (w + 4), (i // 2) * (h + 4)))
    return sheet


def gt_scan_of(gt: np.ndarray, result: Any) -> np.ndarray | None:
    """The node's scan computed from the ground truth (same beams, default elevation band)."""
    if result.scan is None or result.scan_angle_increment <= 0:
        return None
    spec = LaserScanSpec(angle_increment=result.scan_angle_increment)
    g = np.where(np.isfinite(gt), gt, np.inf).astype(np.float32)
    return laser_scan(g, spec)


def scan_error(scan: np.ndarray | None, gt_scan: np.ndarray | None) -> float | None:
    """Median |scan - GT scan| / GT scan over beams where both are finite."""
    if scan is None or gt_scan is None or len(scan) != len(gt_scan):
        return None
    ok = np.isfinite(scan) & np.isfinite(gt_scan) & (gt_scan > 0)
    if not ok.any():
        return None
    return float(np.median(np.abs(scan[ok] - gt_scan[ok]) / gt_scan[ok]))


def build_report(out_dir: Path, frames: list, results: list, info: dict[str, Any], panel_indices: list[int]) -> dict:
    """Score the frames and draw panels/frame_NNN.png; returns the metrics (see write_report_files)."""
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "panels").mkdir(exist_ok=True)
    for old in (out_dir / "panels").glob("frame_*.png"):  # from an earlier run into the same folder
        old.unlink()
    acc = MetricsAccumulator(error_bins=None)
    per_frame = []
    scan_errors = []
    for frame, res in zip(frames, results):
        depth = res.depth
        if depth.shape != frame.gt_m.shape:
            depth = resize_nearest(depth, frame.gt_m.shape)
        fm = frame_metrics(depth.astype(np.float64), frame.gt_m.astype(np.float64), DEPTH_SCALE_M, error_bins=None)
        acc.add(fm)
        gscan = gt_scan_of(frame.gt_m, res)
        serr = scan_error(res.scan, gscan)
        if serr is not None:
            scan_errors.append(serr)
        s = fm.summary()
        per_frame.append({
            "frame": frame.index,
            "abs_rel": s.get("abs_rel"), "rmse": s.get("rmse"), "delta1": s.get("delta1"),
            "scan_median_rel_error": serr,
            "points": int(len(res.points)) if res.points is not None else 0,
            "latency_ms": {o: res.latency_ms(o) for o in OUTPUTS},
        })
        if frame.index in panel_indices:
            cam_h = frame.pose.get("z")
            frame_panel(frame.rgb, frame.gt_m, res, gscan, cam_h, f"frame {frame.index}: input RGB").save(
                out_dir / "panels" / f"frame_{frame.index:03d}.png", optimize=True)
    summary = acc.summary()
    metrics = {
        "frames": len(results),
        "depth": summary["frame_mean"],
        "range_mask": summary["range_mask"],
        "scan_median_rel_error": float(np.mean(scan_errors)) if scan_errors else None,
        "latency_ms": {o: latency_summary_ms([r.latency_ms(o) for r in results if r.latency_ms(o) is not None])
                       for o in OUTPUTS},
        "per_frame": per_frame,
        **info,
    }
    return metrics


def write_report_files(out_dir: Path, metrics: dict, panel_indices: list[int]) -> None:
    """metrics.json and report.md (next to the panels)."""
    (out_dir / "metrics.json").write_text(json.dumps(metrics, indent=2, default=_json_default) + "\n", encoding="utf-8")
    (out_dir / "report.md").write_text(markdown(metrics, panel_indices), encoding="utf-8")


def _self_filter_line(self_filter: dict | None) -> str:
    if not self_filter:
        return "- self filter: none"
    return (f"- self filter: `{self_filter['mask']}` marks {self_filter['masked_share']:.1%} of the panorama as the "
            "robot (the nadir, where a robot's base would be); those pixels are NaN in depth (black in the panels) "
            f"and absent from points and scan; the node reports {self_filter.get('filtered_pixels_last_frame')} "
            "filtered pixels in its last frame")


def _json_default(value: Any) -> Any:
    if isinstance(value, (np.floating, np.integer)):
        return value.item()
    if isinstance(value, Path):
        return str(value)
    raise TypeError(f"not JSON serializable: {type(value).__name__}")


def _fmt(v: Any, digits: int = 3) -> str:
    if v is None or (isinstance(v, float) and not math.isfinite(v)):
        return "n/a"
    return f"{v:.{digits}f}" if isinstance(v, float) else str(v)


def markdown(m: dict, panel_indices: list[int]) -> str:
    d, lat = m["depth"], m["latency_ms"]
    lines = [
        "# dap-ros demo report",
        "",
        f"- weights: {m.get('weights')}",
        f"- sequence: {m.get('sequence')} ({m['frames']} frames played through ROS 2 topics)",
        f"- node: `python -m dap_ros.node`, namespace `{m.get('namespace')}`, ROS_DOMAIN_ID {m.get('domain_id')}, "
        "localhost-only discovery",
        f"- machine: {m.get('machine')}",
        f"- wall time: {_fmt(m.get('wall_s'), 1)} s (node start-up to first outputs {_fmt(m.get('startup_s'), 1)} s)",
        _self_filter_line(m.get("self_filter")),
        "",
        "## Depth against the ground truth (per-frame means, no alignment)",
        "",
        "| AbsRel | RMSE (m) | δ1 | δ2 | δ3 | range-mask IoU | scan median rel. error |",
        "|---|---|---|---|---|---|---|",
        f"| {_fmt(d.get('abs_rel'))} | {_fmt(d.get('rmse'))} | {_fmt(d.get('delta1'))} | {_fmt(d.get('delta2'))} | "
        f"{_fmt(d.get('delta3'))} | {_fmt(m['range_mask'].get('iou'))} | {_fmt(m.get('scan_median_rel_error'))} |",
        "",
        "## Latency, header stamp to receipt (ms)",
        "",
        "| output | p50 | p95 | max |",
        "|---|---|---|---|",
    ]
    for name, s in lat.items():
        lines.append(f"| {name} | {_fmt(s['p50'], 1)} | {_fmt(s['p95'], 1)} | {_fmt(s['max'], 1)} |")
    lines += ["", "## Panels", ""]
    for i in panel_indices:
        lines.append(f"![frame {i}](panels/frame_{i:03d}.png)")
    lines.append("")
    return "\n".join(lines)
