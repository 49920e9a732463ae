"""``dap-ros infer``: panoramas on disk -> metric range, range mask, colorized depth, point cloud."""
from __future__ import annotations

import argparse
import logging
from pathlib import Path

import numpy as np

from dap_ros.cli.common import add_camera_options, add_model_options, camera_from_args, spec_from_args
from dap_ros.errors import DapError

LOG = logging.getLogger("dap_ros")


def add_parser(subparsers) -> None:
    parser = subparsers.add_parser(
        "infer",
        help="run DAP on equirectangular images and write depth files",
        description=(
            "For each 2:1 equirectangular image writes into OUTPUT_DIR: NAME_range.npy (float32 metres "
            "along each pixel's ray; +inf beyond range, NaN invalid), NAME_range_mm.png (16-bit, "
            "millimetres, 0 = invalid or beyond range), NAME_mask.png (255 = in range), "
            "NAME_depth_color.png (for viewing) and NAME.ply (binary xyz + rgb, REP 103 body frame: "
            "x forward = image centre, y left, z up; out-of-range points dropped)."
        ),
    )
    parser.add_argument("images", nargs="+", type=Path, help="equirectangular images (jpg, png, ...)")
    parser.add_argument("--output-dir", "-o", type=Path, default=Path("dap_output"), help="default: ./dap_output")
    parser.add_argument("--force", action="store_true", help="accept images within 10%% of 2:1")
    parser.add_argument("--no-ply", action="store_true", help="skip the point cloud")
    parser.add_argument("--ply-stride", type=int, default=1, help="keep every N-th row and column in the PLY")
    add_model_options(parser)
    add_camera_options(parser)
    parser.set_defaults(run=run)


def write_outputs(output_dir: Path, stem: str, result, ply: bool, ply_stride: int,
                  rotation: np.ndarray | None = None) -> list[Path]:
    from PIL import Image

    from dap_ros.geometry import colored_points
    from dap_ros.io import colorize_range, save_mask_png, save_range_npy, save_range_png_mm, write_ply

    paths = {
        "npy": output_dir / f"{stem}_range.npy",
        "png": output_dir / f"{stem}_range_mm.png",
        "mask": output_dir / f"{stem}_mask.png",
        "color": output_dir / f"{stem}_depth_color.png",
    }
    save_range_npy(paths["npy"], result.range_m)
    save_range_png_mm(paths["png"], result.range_m)
    save_mask_png(paths["mask"], result.in_range)
    Image.fromarray(colorize_range(result.range_m)).save(paths["color"])
    if ply:
        points, colors = colored_points(result.range_m, result.rgb, stride=ply_stride, rotation=rotation)
        paths["ply"] = output_dir / f"{stem}.ply"
        write_ply(paths["ply"], points, colors)
    return list(paths.values())


def run(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from dap_ros.io import check_equirectangular, load_rgb

    if args.ply_stride < 1:
        raise DapError(f"--ply-stride must be >= 1, got {args.ply_stride}")
    missing = [str(p) for p in args.images if not p.is_file()]
    if len(missing) == len(args.images):
        raise DapError(f"no such image file: {', '.join(missing)}")
    from dap_ros.geometry.rotation import rpy_deg_matrix
    from dap_ros.pipeline import DepthPredictor

    camera = camera_from_args(args)
    predictor = DepthPredictor.from_spec(spec_from_args(args), camera)
    calibration = predictor.camera.calibration
    pairs = calibration is not None and calibration.layout == "two_topics"
    if pairs and len(args.images) % 2:
        raise DapError("the two_topics fisheye layout takes the images in pairs (lens 0, lens 1), "
                       f"got {len(args.images)} images")
    frames = [args.images[i:i + 2] for i in range(0, len(args.images), 2)] if pairs else [[p] for p in args.images]
    # points in the output frame: the mount turns them when the image is used as it is
    rotation = rpy_deg_matrix(camera.mount_rpy_deg) if camera.leveling == "none" and any(camera.mount_rpy_deg) else None
    try:
        args.output_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise DapError(f"cannot create output directory {args.output_dir}: {exc.strerror}") from None
    failures = 0
    stems: dict[str, int] = {}
    progress = tqdm(frames, unit="image", disable=len(frames) < 2, desc="dap-ros infer")
    for paths in progress:
        path = paths[0]
        try:
            images = [load_rgb(p) for p in paths]
            rgb = images[0]
            if calibration is None:
                check_equirectangular(rgb.shape[0], rgb.shape[1], force=args.force, what=str(path))
            result = predictor.predict(images if pairs else rgb)
        except DapError as exc:  # one bad image never loses the others' results
            failures += len(paths)
            progress.write(f"dap-ros infer: skipped {', '.join(map(str, paths))}: {exc}")
            continue
        stem = path.stem if path.stem not in stems else f"{path.stem}_{stems[path.stem]}"
        stems[path.stem] = stems.get(path.stem, 0) + 1
        written = write_outputs(args.output_dir, stem, result, not args.no_ply, args.ply_stride, rotation)
        finite = result.range_m[np.isfinite(result.range_m)]
        summary = (
            f"{path.name}: {rgb.shape[1]}x{rgb.shape[0]}, "
            f"range {finite.min():.2f}-{finite.max():.2f} m, " if finite.size else f"{path.name}: no in-range pixels, "
        )
        progress.write(
            summary
            + f"{result.in_range.mean() * 100:.1f}% in range, inference {result.timings['inference'] * 1e3:.0f} ms"
            + f" -> {written[0].parent}/{stem}_*"
        )
    done = len(args.images) - failures
    print(f"dap-ros infer: {done} of {len(args.images)} images written to {args.output_dir}")
    return 0 if failures == 0 else 1
