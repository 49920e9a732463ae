"""``dap-ros make-bag``: ERP images (+ ground-truth depth files) -> a ROS 2 bag for ``eval-bag``."""
from __future__ import annotations

import argparse
from pathlib import Path

from dap_ros.cli.common import finite_float, positive_float


def add_parser(subparsers) -> None:
    parser = subparsers.add_parser(
        "make-bag",
        help="turn equirectangular images (+ ground-truth depth) into a ROS 2 bag",
        description=(
            "Writes one sensor_msgs/Image (rgb8) or CompressedImage per image, and a ground-truth "
            "depth Image with the same header stamp (32FC1 metres, NaN invalid; or 16UC1 millimetres, "
            "0 invalid) when ground truth is given, at a fixed rate. Ground truth: .npy (metres), .exr "
            "(metres) or 16-bit .png divided by --png-scale. Then: dap-ros eval-bag BAG --image-topic ... "
            "--gt-topic ..."
        ),
    )
    parser.add_argument("output", type=Path,
                        help="bag to create: a rosbag2 folder, or one storage file for a NAME.mcap / NAME.db3 name")
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--images", nargs="+", type=Path,
                        help="image files (in this order) or folders (their images, sorted by name)")
    source.add_argument("--dataset", nargs=2, metavar=("NAME", "ROOT"),
                        help="a dataset in its published layout (stanford2d3d, matterport3d, deep360, insta23k, "
                             "list) with --split: read as eval-dataset reads it (docs/evaluation.md)")
    parser.add_argument("--split", type=Path, help="with --dataset: the split file ('RGB DEPTH' per line)")
    parser.add_argument("--gt", nargs="+", type=Path, default=[],
                        help="ground-truth files, one per image in the same order, or one folder matched by stem")
    parser.add_argument("--gt-stem-replace", nargs=2, metavar=("OLD", "NEW"),
                        help="with a GT folder: GT stem = image stem with OLD replaced by NEW (e.g. rgb depth)")
    parser.add_argument("--png-scale", type=positive_float, default=1000.0,
                        help="16-bit PNG ground truth: units per metre (1000 = millimetres, Stanford2D3D: 512)")
    parser.add_argument("--storage", choices=("sqlite3", "mcap"), help="default: mcap for a .mcap name, else sqlite3")
    parser.add_argument("--image-topic", default="/camera/image")
    parser.add_argument("--gt-topic", default="/camera/depth_gt")
    parser.add_argument("--compressed", choices=("jpeg", "png"),
                        help="write sensor_msgs/CompressedImage (jpeg files are stored as they are)")
    parser.add_argument("--gt-encoding", choices=("32FC1", "16UC1"), default="32FC1")
    parser.add_argument("--rate", type=positive_float, default=10.0, help="frames per second (stamps and bag times)")
    parser.add_argument("--start-time", type=finite_float, default=1_700_000_000.0,
                        help="stamp of the first frame, s since the epoch")
    parser.add_argument("--frame-id", default="camera")
    parser.add_argument("--ros-distro", choices=("humble", "jazzy", "kilted"), default="kilted",
                        help="message definitions stored in the bag")
    parser.add_argument("--overwrite", action="store_true",
                        help="replace an existing output bag (only a bag dap-ros could have written)")
    parser.add_argument("--no-progress", action="store_true")
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from dap_ros.errors import ConfigError
    from dap_ros.evaluation.datasets import DATASETS
    from dap_ros.evaluation.makebag import dataset_frames, file_frames, list_images, pair_ground_truth, write_bag

    if args.dataset:
        name, root = args.dataset
        if name not in DATASETS:
            raise ConfigError(f"--dataset: unknown dataset {name!r}; one of {', '.join(DATASETS)}")
        if args.split is None or args.gt:
            raise ConfigError("--dataset NAME ROOT takes its images and ground truth from --split FILE (and no --gt)")
        frames = dataset_frames(name, Path(root), args.split)
    else:
        if args.split is not None:
            raise ConfigError("--split goes with --dataset NAME ROOT")
        images = list_images(args.images)
        gts = pair_ground_truth(images, args.gt, tuple(args.gt_stem_replace) if args.gt_stem_replace else None)
        frames = file_frames(images, gts, args.png_scale)
    made = write_bag(
        frames, args.output, storage=args.storage, image_topic=args.image_topic, gt_topic=args.gt_topic,
        compressed=args.compressed, gt_encoding=args.gt_encoding, rate_hz=args.rate, start_time_s=args.start_time,
        frame_id=args.frame_id, distro=args.ros_distro, overwrite=args.overwrite, progress=not args.no_progress,
    )
    print(
        f"dap-ros make-bag: {made.frames} frames ({made.frames_with_gt} with ground truth) -> {made.path} "
        f"({made.storage}); image topic {made.image_topic}"
        + (f", ground truth {made.gt_topic}" if made.gt_topic else "")
    )
    return 0
