"""``dap-ros make-self-mask``: a starting self mask (0 = the robot) from frames of a static scene."""
from __future__ import annotations

import argparse
from dataclasses import replace
from pathlib import Path

from dap_ros.cli.common import add_camera_options, add_model_options, camera_from_args, spec_from_args
from dap_ros.errors import DapError


def add_parser(subparsers) -> None:
    parser = subparsers.add_parser(
        "make-self-mask",
        help="a starting self mask (0 = the robot) from a few frames of the camera on the robot",
        description=(
            "Runs the model on a few frames (images, in the camera's own format) and marks the pixels "
            "whose range stays below --near metres and changes less than --spread between frames: the "
            "robot, the mount, the operator's hand. Drive or turn the robot between frames so the world "
            "changes. The mask is a panorama of the camera itself (not levelled), 0 = robot, 255 = "
            "world; edit it in any image editor and give it to the node as self_mask."
        ),
    )
    parser.add_argument("images", nargs="+", type=Path, help="frames (pairs of lens images for two_topics)")
    parser.add_argument("--output", "-o", type=Path, required=True, help="the mask PNG to write")
    parser.add_argument("--near", type=float, default=1.0, help="metres: the robot is nearer than this (default 1)")
    parser.add_argument("--spread", type=float, default=0.1,
                        help="largest relative change of a robot pixel's range between frames (default 0.1)")
    parser.add_argument("--grow", type=int, default=2, help="grow the mask by this many pixels (default 2)")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing mask file")
    add_model_options(parser)
    add_camera_options(parser)
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from PIL import Image

    from dap_ros.geometry.self_mask import self_mask_from_ranges
    from dap_ros.io import load_rgb
    from dap_ros.pipeline import DepthPredictor

    if args.output.exists() and not args.overwrite:
        raise DapError(f"{args.output} exists; pass --overwrite to replace it")
    if args.near <= 0 or args.spread <= 0 or args.grow < 0:
        raise DapError("--near and --spread must be > 0 and --grow >= 0")
    # the camera's own panorama: no levelling, no mount, no filters
    camera = replace(camera_from_args(args), mount_rpy_deg=(0.0, 0.0, 0.0), leveling="none",
                     self_mask=None, box_min=None, box_max=None)
    predictor = DepthPredictor.from_spec(spec_from_args(args), camera)
    calibration = predictor.camera.calibration
    step = 2 if calibration is not None and calibration.layout == "two_topics" else 1
    ranges = []
    for i in range(0, len(args.images) - step + 1, step):
        images = [load_rgb(path) for path in args.images[i:i + step]]
        ranges.append(predictor.predict(images if step == 2 else images[0]).range_m)
    mask = self_mask_from_ranges(ranges, args.near, args.spread, args.grow)
    Image.fromarray(mask).save(args.output)
    share = float((mask == 0).mean())
    print(f"dap-ros make-self-mask: {len(ranges)} frames, {share:.1%} of the panorama marked as the robot "
          f"-> {args.output} ({mask.shape[1]}x{mask.shape[0]})")
    return 0
