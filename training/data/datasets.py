"""Datasets: synthetic panoramas and the public panoramic depth sets, all yielding the sample dict of
:mod:`training.data.sample`.

Robustness contract: a sample that cannot be read (missing / corrupt file, wrong size, not 2:1,
RGB and depth of different aspect, no usable pixel) is reported once with its path and the reason
(logging, logger ``training.data``), counted in ``dataset.skipped`` (per process: each DataLoader
worker counts its own copy), and replaced by the next good sample (index + 1, + 2, ... wrapping
around). Only when ``max_tries`` consecutive samples fail does ``__getitem__`` raise.

Augmentation randomness is a pure function of (seed, epoch, index): call ``set_epoch(epoch)`` each
epoch for new draws; the result does not depend on DataLoader workers.
"""
from __future__ import annotations

import logging
import os
import shlex
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import ConcatDataset, Dataset

from dap_ros.errors import ImageError
from dap_ros.evaluation.datasets import parse_scale, read_depth_array
from dap_ros.geometry.cassini import cassini_to_erp, is_cassini_shape
from training.data.augment import AugmentConfig
from training.data.sample import make_sample

log = logging.getLogger("training.data")

DOMAINS = ("indoor", "outdoor", "unknown")
# RGB input resize: "bilinear" = antialiased bilinear (training.data.sample), "cubic" = the official
# loaders' cv2.INTER_CUBIC (datasets/*.py in Insta360-Research-Team/DAP). Depth is always nearest.
RESIZE_MODES = ("bilinear", "cubic")
ASPECT_TOLERANCE = 0.02


class SampleError(Exception):
    """A sample cannot be used; the message is the reason (the path is added by the dataset)."""


class PanoramaDataset(Dataset):
    """Base class: subclasses implement ``__len__``, ``describe(index)`` and ``load(index)``.

    ``load`` returns a dict(rgb uint8 (h, w, 3), range_m float (h', w') metres with +inf = beyond /
    NaN = unknown, optional valid_mask / beyond_mask bool (h', w'), optional domain) or raises.
    """

    def __init__(self, height: int = 512, width: int = 1024, augment: Any = False, seed: int = 0,
                 domain: str = "unknown", max_tries: int = 50, resize: str = "bilinear"):
        if int(height) <= 0 or int(width) <= 0:
            raise ValueError(f"height and width must be positive, got {height}x{width}")
        if domain not in DOMAINS:
            raise ValueError(f"domain must be one of {DOMAINS}, got {domain!r}")
        if resize not in RESIZE_MODES:
            raise ValueError(f"resize must be one of {RESIZE_MODES}, got {resize!r}")
        self.resize = resize
        self.height, self.width = int(height), int(width)
        self.augment = AugmentConfig.from_spec(augment)
        self.seed = int(seed)
        self.domain = domain
        self.epoch = 0
        self.max_tries = int(max_tries)
        self.skipped = 0
        self._reported: set[str] = set()

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def describe(self, index: int) -> str:  # path(s) for messages and ``source``
        return f"#{index}"

    def load(self, index: int) -> dict:
        raise NotImplementedError

    def _rng(self, index: int) -> np.random.Generator:
        return np.random.default_rng([self.seed, self.epoch, index, 0x5EED])

    def get_sample(self, index: int) -> dict:
        """Load one sample or raise (SampleError or any reading error)."""
        raw = self.load(index)
        rgb, rng_m = raw["rgb"], raw["range_m"]
        check_pair(rgb, rng_m)
        if self.resize == "cubic":
            rgb = resize_rgb_cubic(rgb, self.height, self.width)
        sample = make_sample(rgb, rng_m, height=self.height, width=self.width,
                             domain=raw.get("domain", self.domain), source=raw.get("source", self.describe(index)),
                             valid_mask=raw.get("valid_mask"), beyond_mask=raw.get("beyond_mask"),
                             augment=self.augment, rng=self._rng(index))
        if not bool(sample["valid"].any() | (sample["beyond"] > 0).any()):
            raise SampleError("no usable ground-truth pixel (all depth missing)")
        return sample

    def __getitem__(self, index: int) -> dict:
        n = len(self)
        if n == 0:
            raise IndexError("empty dataset")
        index = int(index)
        if index < 0:
            index += n
        if not 0 <= index < n:
            raise IndexError(f"index {index} out of range for {n} samples")
        last = ""
        for k in range(min(self.max_tries, n)):
            i = (index + k) % n
            try:
                return self.get_sample(i)
            except Exception as exc:  # noqa: BLE001 - never crash a long run on one bad sample
                reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
                where = self.describe(i)
                self.skipped += 1
                last = f"{where}: {reason}"
                if where not in self._reported:
                    self._reported.add(where)
                    log.warning("skipping sample %s: %s", where, reason)
        raise RuntimeError(f"{min(self.max_tries, n)} consecutive samples failed from index {index}; last: {last}")


def resize_rgb_cubic(rgb: np.ndarray, height: int, width: int) -> np.ndarray:
    """uint8 (h, w, 3) -> uint8 (height, width, 3) by bicubic interpolation as the official loaders'
    ``cv2.resize(rgb, (W, H), interpolation=cv2.INTER_CUBIC)``: Keys kernel a = -0.75, pixel-centre
    alignment, replicated borders, no antialiasing, rounded back to uint8 (OpenCV's fixed-point
    arithmetic can differ by one grey level)."""
    if rgb.shape[:2] == (height, width):
        return rgb
    x = torch.from_numpy(np.ascontiguousarray(rgb)).permute(2, 0, 1)[None].float()
    y = F.interpolate(x, size=(height, width), mode="bicubic", align_corners=False)
    return y[0].permute(1, 2, 0).round_().clamp_(0, 255).to(torch.uint8).numpy()


def check_pair(rgb: np.ndarray, range_m: np.ndarray) -> None:
    """RGB (h, w, 3) and range (h', w') must both be 2:1 ERP (RGB and depth sizes may differ)."""
    if rgb.ndim != 3 or rgb.shape[2] != 3 or rgb.dtype != np.uint8:
        raise SampleError(f"RGB must be uint8 (H, W, 3), got {rgb.dtype} {rgb.shape}")
    if range_m.ndim != 2:
        raise SampleError(f"depth must be a 2-D image, got shape {range_m.shape}")
    for what, (h, w) in (("RGB", rgb.shape[:2]), ("depth", range_m.shape)):
        if h == 0 or w == 0 or abs(w / h - 2.0) > 2.0 * ASPECT_TOLERANCE:
            raise SampleError(f"{what} is {w}x{h}, not a 2:1 equirectangular image")


# ----------------------------------------------------------------------------------------------
# Synthetic
# ----------------------------------------------------------------------------------------------


class SyntheticDataset(PanoramaDataset):
    """Procedural panoramas (training.data.synthetic), rendered on the fly at the target size.

    Sample i uses scene seed ``seed * 1_000_003 + i``; it is indoor with probability
    ``indoor_fraction`` (drawn from that seed), so every sample is reproducible.
    """

    def __init__(self, num_samples: int, seed: int = 0, height: int = 256, width: int = 512,
                 indoor_fraction: float = 0.5, augment: Any = False, shadows: bool = True, **kw):
        super().__init__(height, width, augment, seed, **kw)
        if int(num_samples) < 0:
            raise ValueError("num_samples must be >= 0")
        if not 0.0 <= float(indoor_fraction) <= 1.0:
            raise ValueError("indoor_fraction must be in [0, 1]")
        self.num_samples = int(num_samples)
        self.indoor_fraction = float(indoor_fraction)
        self.shadows = bool(shadows)

    def __len__(self) -> int:
        return self.num_samples

    def scene_seed(self, index: int) -> int:
        return self.seed * 1_000_003 + int(index)

    def describe(self, index: int) -> str:
        return f"synthetic:{self.scene_seed(index)}"

    def kind(self, index: int) -> str:
        u = np.random.default_rng([self.scene_seed(index), 0xD0]).random()
        return "indoor" if u < self.indoor_fraction else "outdoor"

    def load(self, index: int) -> dict:
        from training.data.synthetic import make_scene, render_scene

        kind = self.kind(index)
        out = render_scene(make_scene(self.scene_seed(index), kind), self.height, self.width, shadows=self.shadows)
        return {"rgb": out["rgb"], "range_m": out["range_m"], "domain": kind}


# ----------------------------------------------------------------------------------------------
# File-based datasets
# ----------------------------------------------------------------------------------------------


@dataclass
class Item:
    rgb: str
    depth: str
    decode: Callable[[str], tuple[np.ndarray, dict]]  # path -> (range metres, extras)
    mask: str | None = None
    mask_kind: str = "valid"  # "valid" (nonzero = usable) or "sky" (nonzero = beyond range)
    domain: str | None = None
    extra: dict = field(default_factory=dict)


class FileDataset(PanoramaDataset):
    """A list of :class:`Item` (RGB path, depth path, depth decoder, optional mask)."""

    rgb_converter: Callable[[np.ndarray], np.ndarray] | None = None

    def __init__(self, items: list[Item], height: int = 512, width: int = 1024, augment: Any = False,
                 seed: int = 0, domain: str = "unknown", **kw):
        super().__init__(height, width, augment, seed, domain, **kw)
        self.items = list(items)

    def __len__(self) -> int:
        return len(self.items)

    def describe(self, index: int) -> str:
        it = self.items[index]
        return f"{it.rgb} | {it.depth}"

    def load(self, index: int) -> dict:
        from dap_ros.io import load_rgb

        it = self.items[index]
        rgb = load_rgb(it.rgb)
        if self.rgb_converter is not None:
            rgb = self.rgb_converter(rgb)
        range_m, extras = it.decode(it.depth)
        out = {"rgb": rgb, "range_m": range_m, **extras}
        if it.mask is not None:
            mask = read_mask(it.mask)
            if mask.shape != range_m.shape:
                raise SampleError(f"mask {it.mask} is {mask.shape[1]}x{mask.shape[0]}, depth is "
                                  f"{range_m.shape[1]}x{range_m.shape[0]}")
            out["beyond_mask" if it.mask_kind == "sky" else "valid_mask"] = mask
        if it.domain is not None:
            out["domain"] = it.domain
        return out


def read_mask(path: str) -> np.ndarray:
    """8/16-bit image or .npy -> bool (H, W), nonzero = True."""
    p = Path(path)
    if p.suffix.lower() == ".npy":
        arr = np.load(p)
    else:
        from PIL import Image

        with Image.open(p) as im:
            arr = np.asarray(im)
    if arr.ndim == 3:
        arr = arr[..., 0]
    return arr != 0


def _read_png_int(path: str) -> np.ndarray:
    """Integer depth PNG (8 or 16 bit) -> float64 raw values (H, W)."""
    from PIL import Image

    p = Path(path)
    if not p.is_file():
        raise SampleError(f"depth file not found: {p}")
    with Image.open(p) as im:
        im.load()
        arr = np.asarray(im)
    if arr.ndim == 3:
        arr = arr[..., 0]
    if not np.issubdtype(arr.dtype, np.integer):
        raise SampleError(f"depth PNG {p} is not an integer image (dtype {arr.dtype})")
    return arr.astype(np.float64)


def decode_png_scaled(divisor: float, missing: tuple[int, ...] = (0,)) -> Callable[[str], tuple[np.ndarray, dict]]:
    """Integer PNG: metres = value / divisor; values in ``missing`` are unknown (NaN)."""

    def decode(path: str) -> tuple[np.ndarray, dict]:
        raw = _read_png_int(path)
        r = raw / divisor
        for m in missing:
            r[raw == m] = np.nan
        return r.astype(np.float32), {}

    return decode


def decode_exr_metres(path: str) -> tuple[np.ndarray, dict]:
    """EXR metres (dap_ros.io.read_exr_depth: >= 1e9 / non-finite -> NaN); 0 = missing."""
    from dap_ros.io import read_exr_depth

    r = read_exr_depth(path)
    r[r <= 0] = np.nan
    return r, {}


def read_npz_depth(path: str) -> np.ndarray:
    """``.npy`` / ``.npz`` depth (dap_ros.evaluation.datasets.read_depth_array) -> float32 (H, W)."""
    p = Path(path)
    if not p.is_file():
        raise SampleError(f"depth file not found: {p}")
    try:
        return read_depth_array(p)
    except ImageError as exc:
        raise SampleError(str(exc)) from None


def _read_split(split_file: str | os.PathLike, root: Path) -> list[tuple[str, ...]]:
    """Split file: one sample per line, whitespace-separated paths relative to ``root`` (RGB first,
    depth second, more columns ignored); '#' starts a comment."""
    rows = []
    text = Path(split_file).read_text()
    for line in text.splitlines():
        line = line.split("#", 1)[0].strip()
        if not line:
            continue
        cols = shlex.split(line)
        if len(cols) < 2:
            raise ValueError(f"{split_file}: a line needs an RGB and a depth path: {line!r}")
        rows.append(tuple(str(root / c) for c in cols))
    return rows


def _discover(root: Path, rgb_glob: str, to_depth: Callable[[Path], list[Path]]) -> list[tuple[str, str]]:
    pairs = []
    for rgb in sorted(root.glob(rgb_glob)):
        cands = [c for c in to_depth(rgb) if c.is_file()]
        pairs.append((str(rgb), str(cands[0] if cands else to_depth(rgb)[0])))
    return pairs


def _stanford_depth(rgb: Path) -> list[Path]:
    # area_N/pano/rgb/camera_..._domain_rgb.png -> area_N/pano/depth/camera_..._domain_depth.png
    name = rgb.name[: -len("_rgb.png")] + "_depth.png"
    return [rgb.parent.parent / "depth" / name, rgb.parent / name]


def _matterport_depth(rgb: Path) -> list[Path]:
    stem = rgb.name[: -len("_rgb.png")] if rgb.name.endswith("_rgb.png") else rgb.stem
    return [rgb.parent / f"{stem}_depth.exr", rgb.parent / f"{stem}_depth.png"]


def _structured3d_depth(rgb: Path) -> list[Path]:
    return [rgb.parent / "depth.png"]


def _matterport_decode(path: str) -> tuple[np.ndarray, dict]:
    if path.lower().endswith(".exr"):
        return decode_exr_metres(path)
    return decode_png_scaled(4000.0)(path)


def _deep360_decode(path: str) -> tuple[np.ndarray, dict]:
    """Deep360 ``.npz`` (Cassini, metres) -> ERP range on the official loader's grid, nearest (values
    are copied, never blended across an edge); see :mod:`dap_ros.geometry.cassini`."""
    r = read_npz_depth(path)
    if not is_cassini_shape(r.shape, ASPECT_TOLERANCE):
        raise SampleError(f"Deep360 depth is {r.shape[1]}x{r.shape[0]}, expected a 1:2 Cassini image")
    r = r.astype(np.float32)
    r[~(r > 0) & ~np.isposinf(r)] = np.nan
    return cassini_to_erp(r, mode="nearest"), {}


def _deep360_rgb(rgb: np.ndarray) -> np.ndarray:
    """Deep360 Cassini RGB -> ERP, resampled as the official loader does (bilinear, uint8 truncated)."""
    if not is_cassini_shape(rgb.shape, ASPECT_TOLERANCE):
        raise SampleError(f"Deep360 RGB is {rgb.shape[1]}x{rgb.shape[0]}, expected a 1:2 Cassini image")
    return cassini_to_erp(rgb, mode="bilinear")


# name -> (domain, decoder, discovery glob, depth-path rule or None, RGB converter)
DATASETS: dict[str, tuple] = {
    "stanford2d3d": ("indoor", decode_png_scaled(512.0, missing=(0, 65535)), "**/*_rgb.png", _stanford_depth, None),
    "matterport3d": ("indoor", _matterport_decode, "**/*_rgb.png", _matterport_depth, None),
    "structured3d": ("indoor", decode_png_scaled(1000.0), "**/panorama/full/rgb_rawlight.png", _structured3d_depth,
                     None),
    "deep360": ("outdoor", _deep360_decode, None, None, _deep360_rgb),
}


class PublicDataset(FileDataset):
    """One of the public sets (see DATASETS and training/DATA_AND_LOSSES.md)."""

    def __init__(self, name: str, root: str, split_file: str | None = None, **kw):
        if name not in DATASETS:
            raise ValueError(f"unknown dataset {name!r}; known: {sorted(DATASETS)}")
        domain, decode, rgb_glob, depth_rule, converter = DATASETS[name]
        root_p = Path(root)
        if split_file is not None:
            pairs = [(r[0], r[1]) for r in _read_split(split_file, root_p)]
        elif rgb_glob is not None:
            if not root_p.is_dir():
                raise ValueError(f"{name}: root directory not found: {root_p}")
            pairs = _discover(root_p, rgb_glob, depth_rule)
        else:
            raise ValueError(f"{name} needs a split_file (lines 'rgb_path depth_path' relative to root)")
        kw.setdefault("domain", domain)
        super().__init__([Item(r, d, decode) for r, d in pairs], **kw)
        self.name = name
        self.rgb_converter = converter


# ----------------------------------------------------------------------------------------------
# Generic list format
# ----------------------------------------------------------------------------------------------


def decode_generic(factor: float) -> Callable[[str], tuple[np.ndarray, dict]]:
    """Depth file of any supported type times ``factor`` -> metres.

    Integer images (PNG/TIFF, 8/16/32 bit): 0 = missing. Float files (.exr, .npy, .npz, float
    TIFF): NaN / <= 0 = missing, +inf = beyond range.
    """

    def decode(path: str) -> tuple[np.ndarray, dict]:
        suffix = Path(path).suffix.lower()
        if not Path(path).is_file():
            raise SampleError(f"depth file not found: {path}")
        if suffix == ".exr":
            from dap_ros.io import read_exr_depth

            r = read_exr_depth(path).astype(np.float64)
            missing = ~(r > 0)
        elif suffix in (".npy", ".npz"):
            r = read_npz_depth(path).astype(np.float64)
            missing = ~(r > 0)
        else:
            from PIL import Image

            with Image.open(path) as im:
                im.load()
                arr = np.asarray(im)
            if arr.ndim == 3:
                arr = arr[..., 0]
            r = arr.astype(np.float64)
            missing = (r == 0) if np.issubdtype(arr.dtype, np.integer) else ~(r > 0)
        r = r * factor
        r[missing] = np.nan
        return r.astype(np.float32), {}

    return decode


def read_list_file(list_file: str | os.PathLike, root: str | os.PathLike | None = None) -> list[Item]:
    """Generic list format (training/DATA_AND_LOSSES.md): per line

        RGB_PATH  DEPTH_PATH  SCALE  [MASK_PATH | valid:MASK_PATH | sky:MASK_PATH]  [domain=indoor|outdoor]

    Relative paths are relative to ``root`` (default: the list file's folder). Shell-style quoting
    for paths with spaces; '#' starts a comment.
    """
    lf = Path(list_file)
    base = Path(root) if root is not None else lf.parent
    items = []
    for n, raw in enumerate(lf.read_text().splitlines(), 1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        cols = shlex.split(line, comments=True)
        domain = None
        rest = []
        for c in cols:
            if c.startswith("domain="):
                domain = c.split("=", 1)[1]
                if domain not in DOMAINS:
                    raise ValueError(f"{lf}:{n}: domain must be one of {DOMAINS}, got {domain!r}")
            else:
                rest.append(c)
        if len(rest) not in (3, 4):
            raise ValueError(f"{lf}:{n}: expected 'rgb depth scale [mask]', got {line!r}")
        factor = parse_scale(rest[2], f"{lf}:{n}")  # ConfigError (a ValueError) naming the line
        mask, kind = None, "valid"
        if len(rest) == 4:
            m = rest[3]
            for prefix in ("valid:", "sky:"):
                if m.startswith(prefix):
                    kind, m = prefix[:-1], m[len(prefix):]
            mask = str(base / m)
        items.append(Item(str(base / rest[0]), str(base / rest[1]), decode_generic(factor), mask, kind, domain))
    return items


class ListDataset(FileDataset):
    def __init__(self, list_file: str, root: str | None = None, **kw):
        super().__init__(read_list_file(list_file, root), **kw)


# ----------------------------------------------------------------------------------------------
# Factory
# ----------------------------------------------------------------------------------------------


class ConcatDatasets(ConcatDataset):
    """ConcatDataset that forwards ``set_epoch`` and sums ``skipped``."""

    def set_epoch(self, epoch: int) -> None:
        for d in self.datasets:
            if hasattr(d, "set_epoch"):
                d.set_epoch(epoch)

    @property
    def skipped(self) -> int:
        return sum(getattr(d, "skipped", 0) for d in self.datasets)


_COMMON = {"height", "width", "augment", "seed", "domain", "max_tries", "resize"}


def build_dataset(spec: dict | list) -> Dataset:
    """Dataset from a YAML-style spec (see training/DATA_AND_LOSSES.md); a list of specs (or a spec
    ``{"type": "concat", "datasets": [...]}``) gives a :class:`ConcatDatasets`."""
    if isinstance(spec, (list, tuple)):
        return ConcatDatasets([build_dataset(s) for s in spec])
    if not isinstance(spec, dict) or "type" not in spec:
        raise ValueError(f"a dataset spec must be a dict with a 'type', got {spec!r}")
    spec = dict(spec)
    kind = str(spec.pop("type")).lower()
    if kind == "concat":
        return ConcatDatasets([build_dataset(s) for s in spec.pop("datasets")])
    if kind == "synthetic":
        allowed = _COMMON | {"num_samples", "indoor_fraction", "shadows"}
        _check_keys(kind, spec, allowed)
        spec.setdefault("num_samples", 1000)
        return SyntheticDataset(**spec)
    if kind in DATASETS:
        _check_keys(kind, spec, _COMMON | {"root", "split_file"})
        if "root" not in spec:
            raise ValueError(f"{kind}: 'root' is required")
        return PublicDataset(kind, **spec)
    if kind == "list":
        _check_keys(kind, spec, _COMMON | {"root", "list_file"})
        if "list_file" not in spec:
            raise ValueError("list: 'list_file' is required")
        return ListDataset(**spec)
    raise ValueError(f"unknown dataset type {kind!r}; known: synthetic, list, concat, {', '.join(sorted(DATASETS))}")


def _check_keys(kind: str, spec: dict, allowed: set[str]) -> None:
    unknown = set(spec) - allowed
    if unknown:
        raise ValueError(f"{kind}: unknown keys {sorted(unknown)}; allowed: {sorted(allowed)}")
