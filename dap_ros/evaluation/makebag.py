"""ERP images (+ optional ground-truth depth) -> a ROS 2 bag for ``eval-bag``.

Two sources: image files with ground-truth files (``.npy`` metres, ``.exr`` metres with values >=
1e9 invalid, or a 16-bit ``.png`` divided by ``png_scale``, 0 = invalid), or a dataset in its
published layout with its split file (:mod:`dap_ros.evaluation.datasets`: Stanford2D3D's missing
codes, Deep360's Cassini projection, ...), read exactly as ``eval-dataset --protocol standard``
reads it. In the bag the ground truth becomes ``32FC1`` metres (NaN invalid, +Inf kept) or
``16UC1`` millimetres (0 invalid). Messages are rosbags-native (no rclpy needed).
"""
from __future__ import annotations

import io
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import numpy as np

from dap_ros.errors import DapError
from dap_ros.evaluation import bags

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp")
GT_SUFFIXES = (".npy", ".exr", ".png")
MAX_STAMP_S = 2**31 - 1  # builtin_interfaces/Time.sec is an int32


def list_images(paths: Sequence[Path]) -> list[Path]:
    """Files as given; folders expanded to their image files, sorted by name."""
    out: list[Path] = []
    for p in paths:
        if p.is_dir():
            out.extend(sorted(f for f in p.iterdir() if f.is_file() and f.suffix.lower() in IMAGE_SUFFIXES))
        elif p.is_file():
            out.append(p)
        else:
            raise DapError(f"no such image file or folder: {p}")
    if not out:
        raise DapError("no images found in " + ", ".join(str(p) for p in paths))
    return out


def pair_ground_truth(
    images: list[Path], gt: Sequence[Path], stem_replace: tuple[str, str] | None = None
) -> list[Path | None]:
    """GT file per image: a list of files pairs in order (same count); one folder pairs by stem
    (the image stem with ``stem_replace`` applied, any of .npy/.exr/.png); images without a GT file get None."""
    if not gt:
        return [None] * len(images)
    if len(gt) == 1 and gt[0].is_dir():
        folder = gt[0]
        pairs: list[Path | None] = []
        for image in images:
            stem = image.stem.replace(*stem_replace) if stem_replace else image.stem
            pairs.append(next((folder / f"{stem}{s}" for s in GT_SUFFIXES if (folder / f"{stem}{s}").is_file()), None))
        if not any(pairs):
            raise DapError(f"no ground-truth file in {folder} matches an image stem (e.g. {images[0].stem}.npy)")
        return pairs
    if len(gt) != len(images):
        raise DapError(f"{len(gt)} ground-truth files for {len(images)} images: give one per image, in order, "
                       "or a folder")
    missing = [str(g) for g in gt if not g.is_file()]
    if missing:
        raise DapError(f"no such ground-truth file: {', '.join(missing)}")
    return list(gt)


def load_ground_truth(path: Path, png_scale: float = 1000.0) -> np.ndarray:
    """(H, W) float32 metres, NaN invalid, +Inf beyond range (as stored)."""
    suffix = path.suffix.lower()
    if suffix == ".npy":
        from dap_ros.evaluation.datasets import read_depth_array

        return read_depth_array(path)
    if suffix == ".exr":
        from dap_ros.io import read_exr_depth

        return read_exr_depth(path)
    if suffix == ".png":
        from PIL import Image

        with Image.open(path) as im:
            values = np.asarray(im)
        if values.ndim != 2 or values.dtype not in (np.uint16, np.int32, np.uint8):
            raise DapError(f"{path}: expected a single-channel 16-bit PNG, got {values.dtype} {values.shape}")
        if values.dtype == np.uint8:
            raise DapError(f"{path} is an 8-bit PNG: depth PNGs must be 16-bit")
        v = values.astype(np.float64)
        return np.where(v > 0, v / png_scale, np.nan).astype(np.float32)
    raise DapError(f"{path}: ground truth must be .npy (metres), .exr or a 16-bit .png")


@dataclass(frozen=True)
class BagFrame:
    """One image of the bag to write: its file, and how to read its pixels and ground truth."""

    source: Path
    read_rgb: Callable[[], np.ndarray]
    read_gt: Callable[[], np.ndarray] | None = None
    as_stored: bool = True  # the file's pixels go into the bag unchanged (a JPEG may be passed through)


def file_frames(images: list[Path], gts: list[Path | None], png_scale: float = 1000.0) -> list[BagFrame]:
    """Frames of image files and their ground-truth files (None: no ground truth)."""
    from dap_ros.io import load_rgb

    return [BagFrame(image, partial(load_rgb, image), None if gt is None else partial(load_ground_truth, gt, png_scale))
            for image, gt in zip(images, gts)]


def dataset_frames(dataset: str, root: Path, split: Path) -> list[BagFrame]:
    """Frames of a dataset's split file, read as eval-dataset's standard protocol reads them."""
    from dap_ros.evaluation import datasets

    return [BagFrame(s.rgb, partial(datasets.read_rgb, dataset, s), partial(datasets.ground_truth, dataset, s),
                     as_stored=dataset != "deep360")
            for s in datasets.read_split(dataset, root, split)]


@dataclass
class MadeBag:
    path: Path
    storage: str
    frames: int
    frames_with_gt: int
    image_topic: str
    gt_topic: str | None


def check_stamps(start_time_s: float, rate_hz: float, frames: int) -> None:
    """DapError unless every frame's stamp fits a ROS Time (0 to 2^31 - 1 s since the epoch)."""
    last_s = start_time_s + (frames - 1) / rate_hz
    if not (math.isfinite(start_time_s) and 0.0 <= start_time_s and last_s <= MAX_STAMP_S):
        raise DapError(f"--start-time {start_time_s:g} with --rate {rate_hz:g} gives stamps up to {last_s:g} s; a ROS "
                       f"stamp lies in [0, {MAX_STAMP_S}] s since the epoch")


def make_bag(images: list[Path], gts: list[Path | None], output: Path, *, png_scale: float = 1000.0,
             **options) -> MadeBag:
    """Image files and their ground-truth files -> a bag (:func:`write_bag`'s options)."""
    return write_bag(file_frames(images, gts, png_scale), output, **options)


def write_bag(
    frames: list[BagFrame],
    output: Path,
    *,
    storage: str | None = None,
    image_topic: str = "/camera/image",
    gt_topic: str = "/camera/depth_gt",
    compressed: str | None = None,  # None: sensor_msgs/Image rgb8; "jpeg" / "png": CompressedImage
    gt_encoding: str = "32FC1",
    rate_hz: float = 10.0,
    start_time_s: float = 1_700_000_000.0,
    frame_id: str = "camera",
    distro: str | None = None,
    overwrite: bool = False,
    progress: bool = True,
) -> MadeBag:
    from PIL import Image
    from tqdm import tqdm

    from dap_ros.io.depth_files import range_to_mm

    if not (math.isfinite(rate_hz) and rate_hz > 0):
        raise DapError(f"--rate must be > 0 Hz, got {rate_hz}")
    check_stamps(start_time_s, rate_hz, len(frames))
    if gt_encoding not in ("32FC1", "16UC1"):
        raise DapError(f"ground-truth encoding must be 32FC1 or 16UC1, got {gt_encoding!r}")
    if compressed not in (None, "jpeg", "png"):
        raise DapError(f"compressed format must be jpeg or png, got {compressed!r}")
    qos = bags.qos_profile("reliable", 10)
    has_gt = any(f.read_gt is not None for f in frames)
    with bags.BagWriter(output, storage, distro=distro, overwrite=overwrite) as writer:
        ts = writer.typestore
        writer.add_topic(image_topic, bags.COMPRESSED if compressed else bags.IMAGE, qos)
        if has_gt:
            writer.add_topic(gt_topic, bags.IMAGE, qos)
        start_ns = int(round(start_time_s * 1e9))
        period_ns = int(round(1e9 / rate_hz))
        n_gt = 0
        for i, frame in enumerate(tqdm(frames, unit="image", desc="dap-ros make-bag", disable=not progress)):
            stamp = start_ns + i * period_ns
            rgb = frame.read_rgb()
            if compressed:
                suffix = frame.source.suffix.lower()
                passthrough = frame.as_stored and suffix in {"jpeg": (".jpg", ".jpeg"), "png": (".png",)}[compressed]
                if passthrough:
                    data = frame.source.read_bytes()  # the camera's own bytes, no second compression
                else:
                    buf = io.BytesIO()
                    Image.fromarray(rgb).save(buf, format="JPEG" if compressed == "jpeg" else "PNG", quality=95)
                    data = buf.getvalue()
                msg = bags.compressed_message(ts, stamp, frame_id, data, compressed)
                writer.write(image_topic, stamp, writer.serialize(msg, bags.COMPRESSED))
            else:
                msg = bags.image_message(ts, stamp, frame_id, rgb, "rgb8")
                writer.write(image_topic, stamp, writer.serialize(msg, bags.IMAGE))
            if frame.read_gt is not None:
                depth = frame.read_gt()
                if gt_encoding == "16UC1":
                    gt_msg = bags.image_message(ts, stamp, frame_id, range_to_mm(depth), "16UC1")
                else:
                    gt_msg = bags.image_message(ts, stamp, frame_id, depth.astype(np.float32), "32FC1")
                writer.write(gt_topic, stamp, writer.serialize(gt_msg, bags.IMAGE))
                n_gt += 1
        storage_used = writer.storage
    return MadeBag(output, storage_used, len(frames), n_gt, image_topic, gt_topic if has_gt else None)
