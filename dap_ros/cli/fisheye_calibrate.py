"""``dap-ros fisheye-calibrate``: a starting calibration from the image circles of a dual-fisheye frame."""
from __future__ import annotations

import argparse
import math
from pathlib import Path

from dap_ros.errors import DapError


def add_parser(subparsers) -> None:
    parser = subparsers.add_parser(
        "fisheye-calibrate",
        help="estimate each lens's image circle (centre, radius) and write a starting calibration YAML",
        description=(
            "Finds the bright image circle of each lens (the pixels brighter than --threshold: the "
            "circle's surroundings must be black) and writes an equidistant calibration with "
            "focal = radius / (fov/2). A starting point: check it with dap-ros fisheye-to-erp, then "
            "refine (or use a Kannala-Brandt calibration from OpenCV's fisheye module)."
        ),
    )
    parser.add_argument("image", type=Path, help="a dual-fisheye frame (both lenses, side by side or stacked)")
    parser.add_argument("--layout", choices=("side_by_side", "top_bottom"), default="side_by_side")
    parser.add_argument("--fov", type=float, default=200.0, help="the lenses' field of view, degrees (default 200)")
    parser.add_argument("--threshold", type=int, default=24, help="grey level above which a pixel is in the circle")
    parser.add_argument("--output", "-o", type=Path, help="write the YAML here (default: print it)")
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    import yaml

    from dap_ros.geometry.fisheye import MAX_FOV_DEG, FisheyeCalibration, estimate_circle, split_frame
    from dap_ros.io import load_rgb

    if not 90.0 < args.fov <= MAX_FOV_DEG:
        raise DapError(f"--fov must lie in (90, {MAX_FOV_DEG:g}] degrees, got {args.fov:g}")
    frame = load_rgb(args.image)
    height, width = frame.shape[:2]
    lenses = []
    for i, part in enumerate(split_frame(frame, args.layout)):
        try:
            cx, cy, radius = estimate_circle(part, args.threshold)
        except ValueError as exc:
            raise DapError(f"lens {i} of {args.image}: {exc}") from None
        focal = radius / math.radians(args.fov / 2.0)
        lenses.append({"model": "equidistant", "center": [round(cx, 1), round(cy, 1)], "focal": round(focal, 2),
                       "fov_deg": args.fov, "rpy_deg": [0.0, 0.0, 0.0 if i == 0 else 180.0]})
        print(f"lens {i}: centre ({cx:.1f}, {cy:.1f}) px, radius {radius:.1f} px -> focal {focal:.1f} px/rad")
    data = {"layout": args.layout, "image_size": [width, height], "lenses": lenses}
    FisheyeCalibration.from_dict(data, str(args.image))  # the file we write must load
    text = yaml.safe_dump(data, sort_keys=False, default_flow_style=None)
    if args.output:
        args.output.write_text(text, encoding="utf-8")
        print(f"dap-ros fisheye-calibrate: wrote {args.output}; check it with dap-ros fisheye-to-erp")
    else:
        print(text, end="")
    return 0
