"""Panoramic depth datasets in their published layouts, for ``eval-dataset`` and ``make-bag --dataset``.

A split file lists one sample per line, ``RGB DEPTH`` relative to the dataset root: the split files
of the official DAP test configs work as they are. What a depth file holds, per dataset:

=============== ================================================================================
stanford2d3d    16-bit PNG, value / 512 = metres; 0 = missing, 65535 = no return (missing)
matterport3d    EXR, metres (first channel); 0 / NaN = missing
deep360         ``.npz`` (``arr_0``), metres, Cassini projection (RGB too); split paths start
                with ``/`` and are appended to the root as text, as the official loader does
insta23k        ``.npy`` metres (DAP-Test); 0 / NaN = missing
list            the training list format, ``RGB DEPTH SCALE [MASK] [domain=...]``
                (training/DATA_AND_LOSSES.md): any depth file, times SCALE
=============== ================================================================================

:func:`read_depth` returns the file's values in metres with its own codes still in place (what the
official loaders start from); :func:`ground_truth` turns them into dap_ros's ground truth (NaN =
unknown, +Inf and > max range = beyond range). The official protocol's own treatment lives in
:mod:`dap_ros.evaluation.paper`.
"""
from __future__ import annotations

import shlex
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from dap_ros.errors import ConfigError, ImageError

DATASETS = ("stanford2d3d", "matterport3d", "deep360", "insta23k", "list")
STANFORD_UNITS_PER_M = 512.0
STANFORD_NO_RETURN = 65535


@dataclass(frozen=True)
class Sample:
    """One line of a split file: the RGB and depth files, and (list format) the depth scale."""

    index: int  # position in the split file (0-based), the sample's identity for resuming
    name: str  # the RGB path as written in the split file
    rgb: Path
    depth: Path
    scale: float = 1.0  # depth file value x scale = metres (list format; 1 otherwise)


def read_split(dataset: str, root: Path, split_file: Path) -> list[Sample]:
    """The samples a split file lists. ConfigError for an unknown dataset, a missing root or split
    file, or a line that is not ``RGB DEPTH`` (with its line number)."""
    if dataset not in DATASETS:
        raise ConfigError(f"unknown dataset {dataset!r}; one of {', '.join(DATASETS)}")
    if not root.is_dir():
        raise ConfigError(f"dataset root {root} is not a folder")
    try:
        text = split_file.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"cannot read the split file {split_file}: {getattr(exc, 'strerror', None) or exc}") from None
    samples: list[Sample] = []
    for number, line in enumerate(text.splitlines(), 1):
        try:
            cols = shlex.split(line, comments=True)
        except ValueError as exc:
            raise ConfigError(f"{split_file}:{number}: {exc}") from None
        if not cols:
            continue
        if dataset == "list":
            cols = [c for c in cols if not c.startswith("domain=")]
            if len(cols) not in (3, 4):
                raise ConfigError(f"{split_file}:{number}: expected 'RGB DEPTH SCALE [MASK]', got {line.strip()!r}")
            scale = parse_scale(cols[2], f"{split_file}:{number}")
        else:
            if len(cols) < 2:
                raise ConfigError(f"{split_file}:{number}: expected 'RGB DEPTH', got {line.strip()!r}")
            scale = 1.0
        rgb, depth = (_resolve(root, c, dataset) for c in cols[:2])
        samples.append(Sample(len(samples), cols[0], rgb, depth, scale))
    if not samples:
        raise ConfigError(f"the split file {split_file} lists no sample")
    return samples


def _resolve(root: Path, path: str, dataset: str) -> Path:
    if dataset == "deep360":  # "/ep1_500frames/testing/rgb/x.png" lies under the root
        return Path(str(root) + path) if path.startswith("/") else root / path
    return root / path


def parse_scale(token: str, where: str = "scale") -> float:
    """List-format depth scale -> factor to metres: ``m``, ``dm``, ``cm``, ``mm``, ``/N`` (divide),
    ``*N`` or a bare number (multiply)."""
    units = {"m": 1.0, "dm": 0.1, "cm": 0.01, "mm": 0.001}
    t = token.strip().lower()
    try:
        if t in units:
            value = units[t]
        elif t.startswith("/"):
            value = 1.0 / float(t[1:])
        else:
            value = float(t[1:] if t.startswith("*") else t)
    except (ValueError, ZeroDivisionError):
        raise ConfigError(f"{where}: bad depth scale {token!r}: use m, cm, mm, /N, *N or a number") from None
    if not (np.isfinite(value) and value > 0):
        raise ConfigError(f"{where}: depth scale {token!r} must be positive and finite")
    return value


def read_rgb(dataset: str, sample: Sample) -> np.ndarray:
    """uint8 (H, W, 3) ERP panorama (Deep360's Cassini image resampled the official way)."""
    from dap_ros.io import load_rgb

    rgb = load_rgb(sample.rgb)
    return cassini_rgb(rgb, sample.rgb) if dataset == "deep360" else rgb


def cassini_rgb(rgb: np.ndarray, path: Path) -> np.ndarray:
    from dap_ros.geometry.cassini import cassini_to_erp, is_cassini_shape

    if not is_cassini_shape(rgb.shape):
        raise ImageError(f"{path}: a Deep360 image is twice as high as wide (Cassini), got "
                         f"{rgb.shape[1]}x{rgb.shape[0]}")
    return cassini_to_erp(rgb, "bilinear")


def read_depth(dataset: str, sample: Sample, cassini_mode: str = "bilinear") -> np.ndarray:
    """float (H, W) metres as the file holds them, missing codes included (Stanford: 0 and 65535 / 512),
    in ERP (Deep360: resampled from Cassini with ``cassini_mode``). ImageError when unreadable."""
    path = sample.depth
    if not path.is_file():
        raise ImageError(f"depth file not found: {path}")
    if dataset == "stanford2d3d":
        return _read_png(path) / STANFORD_UNITS_PER_M
    if dataset == "matterport3d":
        from dap_ros.io import read_exr_depth

        return read_exr_depth(path)
    if dataset == "deep360":
        from dap_ros.geometry.cassini import cassini_to_erp, is_cassini_shape

        depth = read_depth_array(path)
        if not is_cassini_shape(depth.shape):
            raise ImageError(f"{path}: Deep360 depth is twice as high as wide (Cassini), got "
                             f"{depth.shape[1]}x{depth.shape[0]}")
        return cassini_to_erp(depth, cassini_mode)
    if dataset == "insta23k":
        return read_depth_array(path)
    suffix = path.suffix.lower()
    if suffix == ".exr":
        from dap_ros.io import read_exr_depth

        return read_exr_depth(path) * np.float32(sample.scale)
    if suffix in (".npy", ".npz"):
        return read_depth_array(path) * np.float32(sample.scale)
    raw = _read_png(path)
    return np.where(raw > 0, raw * sample.scale, np.nan)  # an integer image: 0 = missing


def ground_truth(dataset: str, sample: Sample) -> np.ndarray:
    """float32 (H, W) ground truth in dap_ros's meaning (metres; NaN = unknown; +Inf or beyond the
    evaluation's max range = beyond range). Missing codes become NaN: Stanford's 0 and 65535, and
    0 / negative values everywhere. Deep360 is resampled without blending (``nearest``)."""
    raw = read_depth(dataset, sample, cassini_mode="nearest")
    depth = np.asarray(raw, dtype=np.float32).copy()
    if dataset == "stanford2d3d":
        depth[raw >= STANFORD_NO_RETURN / STANFORD_UNITS_PER_M] = np.nan
    with np.errstate(invalid="ignore"):
        depth[~(depth > 0)] = np.nan
    return depth


def _read_png(path: Path) -> np.ndarray:
    """Integer depth image -> float64 raw values."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as image:
            image.load()
            values = np.asarray(image)
    except (OSError, UnidentifiedImageError, ValueError, SyntaxError) as exc:
        raise ImageError(f"cannot read depth image {path}: {str(exc).splitlines()[0] if str(exc) else exc}") from None
    if values.ndim == 3:
        values = values[..., 0]
    if not np.issubdtype(values.dtype, np.integer) or values.dtype == np.uint8:
        raise ImageError(f"{path}: a depth PNG is a 16-bit integer image, got {values.dtype}")
    return values.astype(np.float64)


def read_depth_array(path: Path) -> np.ndarray:
    """``.npy`` or ``.npz`` (``arr_0``, ``depth`` or the first array) -> float32 (H, W)."""
    try:
        if path.suffix.lower() == ".npz":
            with np.load(path) as archive:
                keys = list(archive.keys())
                if not keys:
                    raise ImageError(f"{path} holds no array")
                array = archive[next((k for k in ("arr_0", "depth") if k in keys), keys[0])]
        else:
            array = np.load(path)
    except ImageError:
        raise
    except (OSError, ValueError, EOFError) as exc:
        raise ImageError(f"cannot read depth array {path}: {str(exc).splitlines()[0] if str(exc) else exc}") from None
    array = np.asarray(array)
    if array.ndim == 3 and 1 in (array.shape[0], array.shape[-1]):
        array = array.reshape(array.shape[1:] if array.shape[0] == 1 else array.shape[:-1])
    if array.ndim != 2 or not np.issubdtype(array.dtype, np.number):
        raise ImageError(f"{path}: expected an (H, W) depth array, got {array.dtype} {array.shape}")
    return array.astype(np.float32)
