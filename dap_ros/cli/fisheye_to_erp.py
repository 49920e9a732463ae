"""``dap-ros fisheye-to-erp``: a dual-fisheye frame (or a bag of them) -> the panorama the model sees."""
from __future__ import annotations

import argparse
from pathlib import Path

from dap_ros.cli.common import parse_size
from dap_ros.errors import DapError


def add_parser(subparsers) -> None:
    parser = subparsers.add_parser(
        "fisheye-to-erp",
        help="convert dual-fisheye frames to equirectangular panoramas with a lens calibration (check it by eye)",
        description=(
            "Resamples dual-fisheye frames through a lens calibration (docs/cameras.md) into the "
            "equirectangular panorama the depth model sees, with the same remap the node uses: lenses "
            "blended over their overlap, black where no lens sees. A straight horizon and seamless "
            "objects across the lens boundary mean the calibration is right. Images: one frame "
            "(side_by_side / top_bottom), or two lens images (two_topics). Bags: --bag and --image-topic "
            "write a new bag with the panoramas (rgb8) on --output-topic."
        ),
    )
    parser.add_argument("images", nargs="*", type=Path, help="a frame, or the two lens images of a two_topics camera")
    parser.add_argument("--calibration", type=Path, required=True, help="the lens calibration YAML")
    parser.add_argument("--output", "-o", type=Path, required=True, help="the panorama PNG, or the bag to write")
    parser.add_argument("--size", type=parse_size, metavar="HxW",
                        help="panorama size (default: half as high as one lens image, e.g. 960x1920)")
    parser.add_argument("--mount-rpy", type=float, nargs=3, metavar=("ROLL", "PITCH", "YAW"), default=(0, 0, 0),
                        help="with --level: the camera's orientation in the output frame, degrees")
    parser.add_argument("--level", action="store_true", help="level the panorama by --mount-rpy (leveling static)")
    parser.add_argument("--bag", type=Path, help="convert every frame of this bag's --image-topic instead")
    parser.add_argument("--image-topic", help="with --bag: the dual-fisheye image topic")
    parser.add_argument("--output-topic", default="/camera/image_erp", help="with --bag: topic of the panoramas")
    parser.add_argument("--max-frames", type=int, help="with --bag: stop after N frames")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing output file or bag")
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    import torch
    from PIL import Image

    from dap_ros.io import load_rgb
    from dap_ros.pipeline.camera import Camera
    from dap_ros.settings import CameraSpec

    spec = CameraSpec(projection="dual_fisheye", fisheye_calibration=str(args.calibration),
                      mount_rpy_deg=tuple(args.mount_rpy), leveling="static" if args.level else "none")
    camera = Camera(spec, torch.device("cpu"))
    view = camera.view()
    if args.output.exists() and not args.overwrite:
        raise DapError(f"{args.output} exists; pass --overwrite to replace it")
    if args.bag is not None:
        return _convert_bag(args, camera, view)
    if not args.images:
        raise DapError("give the frame's image(s), or --bag and --image-topic")
    images = [load_rgb(path) for path in args.images]
    try:
        sources = camera.sources(images if len(images) > 1 else images[0])
    except DapError as exc:
        raise DapError(f"{', '.join(map(str, args.images))}: {exc}") from None
    size = args.size or camera.output_size(sources)
    with torch.inference_mode():
        panorama = camera.panorama(sources, size, view)
    Image.fromarray(panorama).save(args.output)
    print(f"dap-ros fisheye-to-erp: {size[1]}x{size[0]} panorama -> {args.output}")
    return 0


def _convert_bag(args: argparse.Namespace, camera, view) -> int:
    import torch
    from tqdm import tqdm

    from dap_ros.evaluation import bags
    from dap_ros.ros.decoding import compressed_to_rgb, image_to_rgb

    if not args.image_topic:
        raise DapError("--bag needs --image-topic")
    if camera.calibration.layout == "two_topics":
        raise DapError("--bag converts one image topic: the two_topics layout is not supported here")
    converted = 0
    with bags.FrameSource(args.bag, args.image_topic, None, max_frames=args.max_frames) as source:
        with bags.BagWriter(args.output, distro=source.distro, overwrite=args.overwrite,
                            inputs=[args.bag]) as writer:
            writer.add_topic(args.output_topic, bags.IMAGE, bags.qos_profile())
            for frame in tqdm(source, total=source.expected_frames, unit="frame", desc="fisheye-to-erp"):
                decode = compressed_to_rgb if frame.msgtype == bags.COMPRESSED else image_to_rgb
                try:
                    sources = camera.sources(decode(frame.image, 1 << 16, panorama=False))
                except DapError as exc:
                    raise DapError(f"frame {frame.index} of {args.image_topic}: {exc}") from None
                size = args.size or camera.output_size(sources)
                with torch.inference_mode():
                    panorama = camera.panorama(sources, size, view)
                msg = bags.image_message(writer.typestore, frame.stamp_ns, frame.image.header.frame_id, panorama,
                                         "rgb8")
                writer.write(args.output_topic, frame.log_time_ns, writer.serialize(msg, bags.IMAGE))
                converted += 1
        if source.problem is not None:
            print(f"dap-ros fisheye-to-erp: reading stopped early: {source.problem.message}")
    print(f"dap-ros fisheye-to-erp: {converted} frames -> {args.output} ({args.output_topic})")
    return 0
