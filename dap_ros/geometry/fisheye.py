"""Fisheye lenses of 360° cameras: the calibration file, projection and unprojection.

A lens at rpy 0 looks along the camera frame's +x (REP 103 body frame: x forward, y left, z up).
A lens-frame ray (x, y, z) at angle θ from +x lands at

    u = cx + r(θ) · (−y) / ρ,   v = cy + r(θ) · (−z) / ρ,   ρ = √(y² + z²)

(image right = −y, image down = −z), with r(θ) = f · θ (``equidistant``) or
r(θ) = f · (θ + k1 θ³ + k2 θ⁵ + k3 θ⁷ + k4 θ⁹) (``kannala_brandt``, OpenCV's fisheye model).
``rpy_deg`` turns the lens in the camera frame (ROS fixed-axis roll, pitch, yaw): a lens-frame ray
d is R · d in the camera frame. An Insta360-style pair is rpy [0, 0, 0] and [0, 0, 180].

The calibration file is YAML (docs/cameras.md has the reference and the Insta360 X3/X4 example;
:func:`FisheyeCalibration.from_dict` validates its content)::

    layout: side_by_side          # side_by_side | top_bottom | two_topics
    image_size: [3840, 1920]      # width, height of a frame (each topic's frame for two_topics)
    lenses:                       # in image order (left/top first; for two_topics: lens0, lens1)
      - {model: equidistant, center: [960, 960], focal: 550.0, fov_deg: 200, rpy_deg: [0, 0, 0]}
      - {model: kannala_brandt, center: [960, 960], focal: 550.0, k: [0.01, 0, 0, 0], fov_deg: 200,
         rpy_deg: [0, 0, 180]}

``center`` is in pixels of that lens's part of the frame (the left or right half for
side_by_side), at pixel-centre convention (the first pixel's centre is 0, 0). The projection
functions take numpy or torch arrays alike (``xp`` is the array module).
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from dap_ros.errors import ConfigError
from dap_ros.geometry.rotation import rpy_deg_matrix

MODELS = ("equidistant", "kannala_brandt")
LAYOUTS = ("side_by_side", "top_bottom", "two_topics")
MAX_FOV_DEG = 250.0  # wider than any real lens; r(θ) of the models stays meaningful below
_LENS_KEYS = {"model", "center", "focal", "k", "fov_deg", "rpy_deg"}
_FILE_KEYS = {"layout", "image_size", "lenses"}


@dataclass(frozen=True)
class FisheyeLens:
    model: str
    center: tuple[float, float]
    focal: float  # pixels per radian
    fov_deg: float
    rpy_deg: tuple[float, float, float] = (0.0, 0.0, 0.0)
    k: tuple[float, float, float, float] = (0.0, 0.0, 0.0, 0.0)
    rotation: np.ndarray = field(init=False, repr=False, compare=False)  # lens -> camera frame

    def __post_init__(self) -> None:
        object.__setattr__(self, "rotation", rpy_deg_matrix(self.rpy_deg))

    @property
    def half_fov(self) -> float:
        """Radians from the axis to the edge of the image circle."""
        return math.radians(self.fov_deg) / 2.0

    def radius(self, theta: Any) -> Any:
        """r(θ) in pixels (θ in radians from the lens axis; array or float)."""
        if self.model == "equidistant":
            return self.focal * theta
        k1, k2, k3, k4 = self.k
        t2 = theta * theta
        return self.focal * theta * (1 + t2 * (k1 + t2 * (k2 + t2 * (k3 + t2 * k4))))

    def angle(self, radius: np.ndarray) -> np.ndarray:
        """θ of a radius in pixels: the inverse of :meth:`radius` (Newton's method for Kannala–Brandt)."""
        theta = np.asarray(radius, dtype=np.float64) / self.focal
        if self.model == "equidistant":
            return theta
        for _ in range(20):
            h = 1e-6
            slope = (self.radius(theta + h) - self.radius(theta - h)) / (2 * h)
            theta = theta - (self.radius(theta) - radius) / slope
        return theta

    def project(self, rays: Any, xp: Any = np) -> tuple[Any, Any, Any]:
        """Camera-frame unit rays (..., 3) -> (u, v, θ): pixel coordinates in this lens's part of
        the frame and the angle from the lens axis (u, v are meaningful where θ ≤ half_fov)."""
        m = xp.asarray(self.rotation.T, dtype=rays.dtype) if xp is np else _torch_matrix(self.rotation.T, rays)
        lens = rays @ m.T  # (..., 3) in the lens frame
        x, y, z = lens[..., 0], lens[..., 1], lens[..., 2]
        rho = xp.sqrt(y * y + z * z)
        theta = xp.arctan2(rho, x)  # precise near the axis, unlike arccos(x)
        scale = self.radius(theta) / xp.where(rho > 1e-12, rho, 1.0)
        return self.center[0] - y * scale, self.center[1] - z * scale, theta

    def unproject(self, u: np.ndarray, v: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Pixel coordinates -> (camera-frame unit rays (..., 3), θ from the lens axis)."""
        du, dv = np.asarray(u, np.float64) - self.center[0], np.asarray(v, np.float64) - self.center[1]
        r = np.hypot(du, dv)
        theta = self.angle(r)
        sin_t = np.sin(theta) / np.where(r > 1e-12, r, 1.0)
        lens = np.stack([np.cos(theta), -du * sin_t, -dv * sin_t], axis=-1)
        return lens @ self.rotation.T, theta


def _torch_matrix(matrix: np.ndarray, like: Any) -> Any:
    import torch

    return torch.as_tensor(matrix, dtype=like.dtype, device=like.device)


@dataclass(frozen=True)
class FisheyeCalibration:
    layout: str
    image_size: tuple[int, int]  # width, height of one frame
    lenses: tuple[FisheyeLens, FisheyeLens]
    source: str = ""

    @property
    def part_size(self) -> tuple[int, int]:
        """(width, height) of one lens's part of a frame."""
        width, height = self.image_size
        parts = {"side_by_side": (width // 2, height), "top_bottom": (width, height // 2)}
        return parts.get(self.layout, (width, height))

    def check_frame(self, width: int, height: int) -> str | None:
        """None when a frame of this size fits the calibration, else why not."""
        if (width, height) != tuple(self.image_size):
            return (f"frame is {width}x{height} but the fisheye calibration {self.source} is for "
                    f"{self.image_size[0]}x{self.image_size[1]}")
        return None

    @classmethod
    def from_dict(cls, data: Any, source: str = "calibration") -> FisheyeCalibration:
        def bad(key: str, problem: str) -> ConfigError:
            return ConfigError(f"fisheye calibration {source}: {key} {problem}")

        if not isinstance(data, dict):
            raise bad("(top level)", "must be a mapping with layout, image_size and lenses")
        unknown = sorted(set(data) - _FILE_KEYS)
        if unknown:
            raise bad(unknown[0], f"is not a calibration key (expected {', '.join(sorted(_FILE_KEYS))})")
        for key in sorted(_FILE_KEYS):
            if key not in data:
                raise bad(key, "is missing")
        layout = data["layout"]
        if layout not in LAYOUTS:
            raise bad("layout", f"must be one of {', '.join(LAYOUTS)}, got {layout!r}")
        size = _numbers(data["image_size"], 2, "image_size", bad)
        if any(v <= 0 or v != int(v) for v in size):
            raise bad("image_size", f"must be [width, height] in whole pixels > 0, got {data['image_size']!r}")
        lenses = data["lenses"]
        if not isinstance(lenses, list) or len(lenses) != 2:
            raise bad("lenses", "must list the two lenses in image order")
        calibration = cls(layout, (int(size[0]), int(size[1])),
                          tuple(_lens(entry, f"lenses[{i}]", bad) for i, entry in enumerate(lenses)), source)
        part_w, part_h = calibration.part_size
        for i, lens in enumerate(calibration.lenses):
            if not (0 <= lens.center[0] < part_w and 0 <= lens.center[1] < part_h):
                raise bad(f"lenses[{i}].center", f"{list(lens.center)} lies outside the lens's {part_w}x{part_h} "
                                                  "part of the frame")
        return calibration


def split_frame(frame: np.ndarray, layout: str) -> list[np.ndarray]:
    """The two lens images (views, no copy) of one side_by_side (left, right) or top_bottom
    (top, bottom) frame."""
    height, width = frame.shape[:2]
    if layout == "side_by_side":
        return [frame[:, : width // 2], frame[:, width // 2: 2 * (width // 2)]]
    return [frame[: height // 2], frame[height // 2: 2 * (height // 2)]]


def _numbers(value: Any, count: int, key: str, bad: Any) -> list[float]:
    if not isinstance(value, (list, tuple)) or len(value) != count:
        raise bad(key, f"must be a list of {count} numbers, got {value!r}")
    try:
        numbers = [float(v) for v in value]
    except (TypeError, ValueError):
        raise bad(key, f"must be a list of {count} numbers, got {value!r}") from None
    if not all(math.isfinite(v) for v in numbers) or any(isinstance(v, bool) for v in value):
        raise bad(key, f"must be a list of {count} finite numbers, got {value!r}")
    return numbers


def _lens(entry: Any, key: str, bad: Any) -> FisheyeLens:
    if not isinstance(entry, dict):
        raise bad(key, "must be a mapping (model, center, focal, fov_deg, rpy_deg[, k])")
    unknown = sorted(set(entry) - _LENS_KEYS)
    if unknown:
        raise bad(f"{key}.{unknown[0]}", f"is not a lens key (expected {', '.join(sorted(_LENS_KEYS))})")
    for name in ("model", "center", "focal", "fov_deg"):
        if name not in entry:
            raise bad(f"{key}.{name}", "is missing")
    model = entry["model"]
    if model not in MODELS:
        raise bad(f"{key}.model", f"must be one of {', '.join(MODELS)}, got {model!r}")
    center = _numbers(entry["center"], 2, f"{key}.center", bad)
    focal = _numbers([entry["focal"]], 1, f"{key}.focal", bad)[0]
    if focal <= 0:
        raise bad(f"{key}.focal", f"must be > 0 pixels per radian, got {entry['focal']!r}")
    fov = _numbers([entry["fov_deg"]], 1, f"{key}.fov_deg", bad)[0]
    if not 90.0 < fov <= MAX_FOV_DEG:
        raise bad(f"{key}.fov_deg", f"must lie in (90, {MAX_FOV_DEG:g}] degrees (one lens of a 360° pair), got {fov:g}")
    rpy = _numbers(entry.get("rpy_deg", [0, 0, 0]), 3, f"{key}.rpy_deg", bad)
    k = [0.0] * 4
    if model == "kannala_brandt":
        if "k" not in entry:
            raise bad(f"{key}.k", "is missing (kannala_brandt needs [k1, k2, k3, k4])")
        k = _numbers(entry["k"], 4, f"{key}.k", bad)
    elif "k" in entry and any(_numbers(entry["k"], 4, f"{key}.k", bad)):
        raise bad(f"{key}.k", "is for the kannala_brandt model; an equidistant lens has none")
    lens = FisheyeLens(model, (center[0], center[1]), focal, fov, (rpy[0], rpy[1], rpy[2]), (k[0], k[1], k[2], k[3]))
    theta = np.linspace(0.0, lens.half_fov, 512)
    if np.any(np.diff(lens.radius(theta)) <= 0):
        raise bad(f"{key}.k", f"{k} makes r(theta) stop growing before fov_deg/2: not a lens this model describes")
    return lens


def estimate_circle(part: np.ndarray, threshold: int = 24) -> tuple[float, float, float]:
    """(cx, cy, radius) in pixels of the bright image circle of one lens's part of a frame: the
    pixels brighter than ``threshold`` (the circle's surroundings are black), their centroid and the
    radius of a disc of the same area. A starting point for a calibration, not a calibration."""
    grey = np.asarray(part, dtype=np.float32)
    grey = grey.mean(axis=2) if grey.ndim == 3 else grey
    inside = grey > threshold
    count = int(inside.sum())
    if count < 100:
        raise ValueError(f"no image circle found (only {count} pixels brighter than {threshold})")
    rows, cols = np.nonzero(inside)
    return float(cols.mean()), float(rows.mean()), math.sqrt(count / math.pi)
