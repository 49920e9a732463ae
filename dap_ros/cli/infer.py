"""``dap-ros infer``: panoramas on disk -> metric range, range mask, colorized depth, point cloud."""
from __future__ import annotations

import argparse
import logging
import os
from pathlib import Path

import numpy as np

from dap_ros.cli.common import (
    add_camera_options,
    add_model_options,
    camera_from_args,
    make_output_dir,
    spec_from_args,
)
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
            "x forward = image centre, y left, z up; out-of-range points dropped). Existing files are "
            "not replaced without --overwrite; inputs with the same name (a/x.png, b/x.png) get "
            "unique names (x, x_2), reported before the run."
        ),
    )
    parser.add_argument("images", nargs="+", type=Path, help="equirectangular images (jpg, png, ...)")
    parser.add_argument("--output-dir", "-o", type=Path, default=Path("dap_output"), help="default: ./dap_output")
    parser.add_argument("--overwrite", action="store_true", help="replace output files that exist already")
    parser.add_argument("--force", action="store_true", help="accept images within 10%% of 2:1")
    parser.add_argument("--no-ply", action="store_true", help="skip the point cloud")
    parser.add_argument("--ply-stride", type=int, default=1, help="keep every N-th row and column in the PLY")
    add_model_options(parser)
    add_camera_options(parser)
    parser.set_defaults(run=run)


def output_files(stem: str, ply: bool) -> dict[str, str]:
    """{kind: file name} that one image writes."""
    names = {"npy": f"{stem}_range.npy", "png": f"{stem}_range_mm.png", "mask": f"{stem}_mask.png",
             "color": f"{stem}_depth_color.png"}
    if ply:
        names["ply"] = f"{stem}.ply"
    return names


def write_outputs(output_dir: Path, stem: str, result, ply: bool, ply_stride: int,
                  rotation: np.ndarray | None = None) -> list[Path]:
    """Write one image's files, all or none: each goes to a hidden ``.NAME.partial`` first and all
    are renamed into place once every one is complete. A failure (disk full) removes the partial
    files and leaves files of an earlier run as they were; the OSError propagates."""
    from PIL import Image

    from dap_ros.geometry import colored_points
    from dap_ros.io import colorize_range, save_mask_png, save_range_npy, save_range_png_mm, write_ply

    paths = {kind: output_dir / name for kind, name in output_files(stem, ply).items()}
    partial = {kind: path.with_name(f".{path.name}.partial") for kind, path in paths.items()}
    try:
        save_range_npy(partial["npy"], result.range_m)
        save_range_png_mm(partial["png"], result.range_m)
        save_mask_png(partial["mask"], result.in_range)
        Image.fromarray(colorize_range(result.range_m)).save(partial["color"], format="PNG")
        if ply:
            points, colors = colored_points(result.range_m, result.rgb, stride=ply_stride, rotation=rotation)
            write_ply(partial["ply"], points, colors)
    except BaseException as exc:
        for path in partial.values():
            path.unlink(missing_ok=True)
        if isinstance(exc, OSError):  # name the file the user asked for, not its partial stand-in
            final = {str(partial[kind]): str(path) for kind, path in paths.items()}
            exc.filename = final.get(str(exc.filename), exc.filename)
        raise
    for kind, path in paths.items():
        os.replace(partial[kind], path)
    return list(paths.values())


def unique_stems(paths: list[Path]) -> list[str]:
    """One output name per input: its stem, or STEM_N (smallest N free) when an earlier input took
    it. Stems the inputs bring themselves are never handed out as STEM_N (a/x, b/x, x_1 -> x, x_2, x_1)."""
    own = {p.stem for p in paths}
    used: set[str] = set()
    stems = []
    for path in paths:
        stem, n = path.stem, 1
        while stem in used or (stem != path.stem and stem in own):
            n += 1
            stem = f"{path.stem}_{n}"
        used.add(stem)
        stems.append(stem)
    return stems


def prepare_output_dir(output_dir: Path, stems: list[str], ply: bool, overwrite: bool) -> None:
    """Create the output directory and refuse to replace files in it unless ``overwrite``; runs
    before the model is loaded, so that these mistakes cost no loading time."""
    make_output_dir(output_dir, "--output-dir")
    names = [name for stem in stems for name in output_files(stem, ply).values()]
    folders = [name for name in names if (output_dir / name).is_dir()]
    if folders:  # not even --overwrite replaces a folder with a file
        raise DapError(f"{output_dir / folders[0]} is a directory where an output file goes; move it or choose "
                       "another --output-dir")
    if overwrite:
        return
    existing = [name for name in names if (output_dir / name).exists()]
    if existing:
        more = f" and {len(existing) - 1} more" if len(existing) > 1 else ""
        raise DapError(f"{output_dir} already holds {existing[0]}{more}; pass --overwrite to replace them, "
                       "or choose another --output-dir")


def run(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from dap_ros.io import check_equirectangular, load_rgb

    if args.ply_stride < 1:
        raise DapError(f"--ply-stride must be >= 1, got {args.ply_stride}")
    if not any(p.is_file() for p in args.images):
        raise DapError("; ".join(f"{p} is a directory, not an image file" if p.is_dir() else f"no such image file: {p}"
                                 for p in args.images))
    from dap_ros.geometry.rotation import rpy_deg_matrix
    from dap_ros.pipeline import DepthPredictor
    from dap_ros.pipeline.camera import load_calibration

    camera = camera_from_args(args)
    # the lens layout decides how images group into frames; read it before the (long) model load
    layout = load_calibration(camera.fisheye_calibration).layout if camera.fisheye_calibration else None
    pairs = layout == "two_topics"
    if pairs and len(args.images) % 2:
        raise DapError("the two_topics fisheye layout takes the images in pairs (lens 0, lens 1), "
                       f"got {len(args.images)} images")
    frames = [args.images[i:i + 2] for i in range(0, len(args.images), 2)] if pairs else [[p] for p in args.images]
    stems = unique_stems([paths[0] for paths in frames])
    prepare_output_dir(args.output_dir, stems, not args.no_ply, args.overwrite)
    for paths, stem in zip(frames, stems):
        if stem != paths[0].stem:
            print(f"dap-ros infer: {paths[0]} -> {stem}_* ({paths[0].stem} is taken by another input)")
    predictor = DepthPredictor.from_spec(spec_from_args(args), camera)
    calibration = predictor.camera.calibration
    # points in the output frame: the mount turns them when the image is used as it is
    rotation = rpy_deg_matrix(camera.mount_rpy_deg) if camera.leveling == "none" and any(camera.mount_rpy_deg) else None
    failures = 0
    progress = tqdm(list(zip(frames, stems)), unit="image", disable=len(frames) < 2, desc="dap-ros infer")
    for paths, stem in progress:
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
        try:
            written = write_outputs(args.output_dir, stem, result, not args.no_ply, args.ply_stride, rotation)
        except OSError as exc:  # disk full, a read-only folder: say so; the other images' results stay
            failures += len(paths)
            where = f" {exc.filename}" if exc.filename else ""
            progress.write(f"dap-ros infer: outputs of {', '.join(map(str, paths))} not written: cannot write{where}: "
                           f"{exc.strerror or exc}")
            continue
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
