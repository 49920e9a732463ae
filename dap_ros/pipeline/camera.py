"""The camera in front of the network: which image pixels each pixel of the output panorama sees.

The network was trained on level equirectangular panoramas. A :class:`Camera` built from a
:class:`~dap_ros.settings.CameraSpec` turns what the camera delivers (a panorama, or two fisheye
lenses) into such a panorama, levelled by the mount rotation (and per frame by an IMU's tilt),
and says which output pixels are not seen by any lens or show the robot itself.

One remap does it all, computed once per (size, rotation) as ``grid_sample`` grids on the
inference device: for every output pixel, its ray in the output frame is turned into the camera
frame and projected into each lens (or the source panorama); lenses blend linearly over their
overlap. The resize to the network size is fused with it: each source is first shrunk with the
antialiased uint8 resize to about the output's angular resolution (the cheap part), then
sampled bilinearly at the output size, so the full-size frame is read once.

Frames (docs/cameras.md): the camera frame C is the panorama's/lenses' body frame; the mount
rotation takes C into the output frame F (``frame_id``); with ``leveling: imu`` the output is a
levelled frame L, F turned by the IMU's roll and pitch. ``view`` below is the rotation taking a ray
of the output panorama into C.
"""
from __future__ import annotations

import math
import warnings
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from dap_ros.errors import CameraFileError, ConfigError, ImageError
from dap_ros.geometry import erp_coordinates, ray_directions_torch
from dap_ros.geometry.fisheye import FisheyeCalibration
from dap_ros.geometry.rotation import rpy_deg_matrix
from dap_ros.pipeline.preprocess import resize_rgb_uint8
from dap_ros.settings import CameraSpec

Images = Sequence[np.ndarray]
_CACHE = 8  # entries kept per cache (see _cached)


@dataclass
class _Remap:
    """Sampling of one output size and view. ``shrunk``: the size each source image is shrunk to.
    A panorama is one ``grid`` (1, h, w, 2) over every output pixel; fisheye lenses are ``parts``:
    per lens, the output pixels it sees (flat indices), where they lie in its source image
    (a (1, 1, N, 2) grid) and their blend weights (summing to 1 over the lenses)."""

    shrunk: list[tuple[int, int]]
    grid: torch.Tensor | None = None
    parts: list[tuple[int, torch.Tensor, torch.Tensor, torch.Tensor]] = field(default_factory=list)
    unseen: torch.Tensor | None = None  # (h, w) bool: no lens sees the pixel


class Camera:
    """The camera of a :class:`CameraSpec`, on ``device``. Not thread-safe (one predictor's)."""

    def __init__(self, spec: CameraSpec, device: torch.device) -> None:
        self.spec = spec
        self.device = device
        fisheye = spec.projection == "dual_fisheye"
        self.calibration = load_calibration(spec.fisheye_calibration) if fisheye else None
        self.mount = rpy_deg_matrix(spec.mount_rpy_deg)  # C -> F
        self.self_mask = _load_self_mask(spec.self_mask) if spec.self_mask else None  # True = the robot
        self._remaps: OrderedDict[tuple, _Remap] = OrderedDict()
        self._masks: OrderedDict[tuple, torch.Tensor] = OrderedDict()
        self._picks: OrderedDict[tuple, tuple] = OrderedDict()
        self._boxes: OrderedDict[tuple, tuple] = OrderedDict()

    @property
    def identity(self) -> bool:
        """The image goes to the network as it is (an unrotated panorama)."""
        return self.spec.identity

    @property
    def filters(self) -> bool:
        """Some output pixels may be invalidated (self filter, or pixels no lens sees)."""
        return self.self_mask is not None or self.spec.box_min is not None or self.calibration is not None

    # --- frames ----------------------------------------------------------------------------------

    def sources(self, frame: np.ndarray | Images) -> list[np.ndarray]:
        """The images of one frame, checked against the calibration: the panorama, the frame with
        both lenses (side_by_side / top_bottom), or the two lens images (two_topics)."""
        if self.calibration is None:
            return [frame]
        two = self.calibration.layout == "two_topics"
        if two != isinstance(frame, (list, tuple)) or (two and len(frame) != 2):
            raise ImageError(f"the {self.calibration.layout} fisheye layout takes "
                             + ("the two lens images of a frame" if two else "one frame with both lenses"))
        images = list(frame) if two else [frame]
        for image in images:
            problem = self.calibration.check_frame(image.shape[1], image.shape[0])
            if problem:
                raise ImageError(problem)
        return images

    def output_size(self, sources: list[np.ndarray]) -> tuple[int, int]:
        """The panorama size of ``output_size: input``: the input panorama's, or for fisheye lenses
        a panorama half as high as one lens image (960x1920 for 1920x1920 lenses)."""
        if self.calibration is None:
            return tuple(sources[0].shape[:2])
        height = max(2, self.calibration.part_size[1] // 2)
        return height, 2 * height

    def view(self, tilt: np.ndarray | None = None) -> np.ndarray:
        """Rotation taking a ray of the output panorama into the camera frame."""
        if self.spec.leveling == "none":
            return np.eye(3)
        if self.spec.leveling == "imu" and tilt is not None:
            return self.mount.T @ tilt.T  # L -> F -> C
        return self.mount.T  # F -> C

    def output_to_frame(self, view: np.ndarray) -> np.ndarray:
        """Rotation taking a ray of the output panorama into the output frame F (the box's frame)."""
        return self.mount @ view  # out -> C -> F

    # --- sampling --------------------------------------------------------------------------------

    def network_input(self, sources: list[np.ndarray], size: tuple[int, int], view: np.ndarray) -> torch.Tensor:
        """Float (1, 3, h, w) on the device, values in [0, 255]: the levelled panorama at ``size``."""
        remap = self._remap(size, view, sources)
        images = [self._shrunk(source, shrunk) for source, shrunk in zip(sources, remap.shrunk)]
        if remap.grid is not None:  # a panorama: it wraps around, so pad a column on each side
            image = torch.cat((images[0][..., -1:], images[0], images[0][..., :1]), dim=-1)
            return F.grid_sample(image, remap.grid, mode="bilinear", padding_mode="border", align_corners=False)
        out = torch.zeros((3, size[0] * size[1]), dtype=torch.float32, device=self.device)
        for index, pixels, grid, weight in remap.parts:
            sample = F.grid_sample(images[index], grid, mode="bilinear", padding_mode="zeros", align_corners=False)
            out.index_add_(1, pixels, sample[0, :, 0] * weight)
        return out.view(1, 3, size[0], size[1])

    def panorama(self, sources: list[np.ndarray], size: tuple[int, int], view: np.ndarray) -> np.ndarray:
        """uint8 (h, w, 3): the levelled panorama, resampled as the network sees it (bilinear)."""
        x = self.network_input(sources, size, view)
        return x[0].round_().clamp_(0, 255).to(torch.uint8).permute(1, 2, 0).cpu().numpy()

    def colors(self, sources: list[np.ndarray], size: tuple[int, int], view: np.ndarray, stride: int = 1) -> np.ndarray:
        """uint8 (rows, cols, 3): the colour of every ``stride``-th row and column of the output
        panorama, the nearest source pixel (what coloured points need, at a fraction of a bilinear
        remap's cost); black where no lens sees."""
        key = (size, view.tobytes(), stride, tuple(s.shape[:2] for s in sources))
        picks = _cached(self._picks, key, lambda: self._build_picks(size, view, stride, sources))
        shape, gathers, unseen = picks
        if len(gathers) == 1 and gathers[0][1] is None:  # every pixel from one image, in output order
            index, _, flat = gathers[0]
            out = np.take(sources[index].reshape(-1, 3), flat, axis=0)
        else:
            out = np.empty((shape[0] * shape[1], 3), dtype=np.uint8)
            for index, pixels, flat in gathers:
                out[pixels] = np.take(sources[index].reshape(-1, 3), flat, axis=0)
        out[unseen] = 0
        return out.reshape(shape + (3,))

    def invalid(self, size: tuple[int, int], view: np.ndarray, sources: list[np.ndarray]) -> torch.Tensor | None:
        """Bool (h, w) on the device: output pixels no lens sees or the self mask marks; None: none."""
        unseen = self._remap(size, view, sources).unseen if self.calibration is not None else None
        mask = self._self_masked(size, view) if self.self_mask is not None else None
        if unseen is None or mask is None:
            return unseen if mask is None else mask
        return unseen | mask

    def in_box(self, range_m: torch.Tensor, size: tuple[int, int], view: np.ndarray) -> torch.Tensor | None:
        """Bool (h, w), on ``range_m``'s device: output pixels whose point (``range_m`` along the
        pixel's ray) lies inside the body box of the spec; None: no box."""
        if self.spec.box_min is None:
            return None
        device = range_m.device  # the host when the range is written into a message in place
        rays, lo, hi = _cached(self._boxes, (size, view.tobytes(), str(device)),
                               lambda: self._box_frame(size, view, device))
        points = range_m[..., None] * rays
        return ((points >= lo) & (points <= hi)).all(dim=-1)

    # --- internals -------------------------------------------------------------------------------

    def _shrink_size(self, shape: tuple[int, ...], size: tuple[int, int]) -> tuple[int, int]:
        """(h', w') of a source image shrunk to the output's angular resolution (never enlarged):
        the antialiased resize does the filtering, the remap then samples about one to one."""
        height, width = shape[:2]
        density = size[1] / (2.0 * math.pi)  # output pixels per radian
        source_density = width / (2.0 * math.pi) if self.calibration is None else min(
            lens.focal for lens in self.calibration.lenses)
        scale = min(1.0, density / source_density)
        return max(2, round(height * scale)), max(2, round(width * scale))

    def _shrunk(self, source: np.ndarray, shrunk: tuple[int, int]) -> torch.Tensor:
        """The source as float (1, 3, h', w') on the device, shrunk with the antialiased resize
        (a view of a lens's half of a frame is read in place where its strides allow)."""
        with warnings.catch_warnings():  # ROS buffers are read-only; torch only reads them here
            warnings.simplefilter("ignore", UserWarning)
            try:
                tensor = torch.from_numpy(source)
            except ValueError:  # negative strides (a BGR view)
                tensor = torch.from_numpy(np.ascontiguousarray(source))
        return resize_rgb_uint8(tensor.to(self.device, non_blocking=True), shrunk).float()

    def _remap(self, size: tuple[int, int], view: np.ndarray, sources: list[np.ndarray]) -> _Remap:
        key = (size, view.tobytes(), tuple(s.shape[:2] for s in sources))
        return _cached(self._remaps, key, lambda: self._build_remap(size, view, sources))

    def _camera_rays(self, size: tuple[int, int], view: np.ndarray) -> torch.Tensor:
        """Unit rays (h, w, 3) of the output pixels in the camera frame (float32: sub-pixel exact)."""
        rays = ray_directions_torch(size[0], size[1], device=self.device)
        return rays @ torch.as_tensor(view.T, dtype=rays.dtype, device=self.device)

    def _build_remap(self, size: tuple[int, int], view: np.ndarray, sources: list[np.ndarray]) -> _Remap:
        rays = self._camera_rays(size, view)
        shrunk = [self._shrink_size(source.shape, size) for source in sources]
        if self.calibration is None:
            # in the shrunk source, padded by one wrapped column on each side (u in [-0.5, W' - 0.5])
            height, width = shrunk[0]
            u, v = erp_coordinates(rays, height, width, xp=torch)
            grid = torch.stack(((u + 1.5) / (width + 2) * 2 - 1, (v + 0.5) / height * 2 - 1), dim=-1)
            return _Remap(shrunk, grid=grid[None].float())
        part_w, part_h = self.calibration.part_size
        weights, coords = [], []
        for i, lens in enumerate(self.calibration.lenses):
            u, v, theta = lens.project(rays, xp=torch)
            inside = (theta < lens.half_fov) & (u > -0.5) & (u < part_w - 0.5) & (v > -0.5) & (v < part_h - 0.5)
            overlap = max(2.0 * (lens.half_fov - math.pi / 2), math.radians(1.0))  # the band both lenses see
            weights.append(torch.clamp((lens.half_fov - theta) / overlap, 0.0, 1.0) * inside)
            coords.append(self._lens_coordinates(i, u, v, sources))
        total = weights[0] + weights[1]
        parts = []
        for weight, (index, x, y) in zip(weights, coords):
            pixels = torch.nonzero((weight > 0).reshape(-1)).reshape(-1)
            grid = torch.stack((x.reshape(-1)[pixels], y.reshape(-1)[pixels]), dim=-1)[None, :, None].float()
            parts.append((index, pixels, grid.permute(0, 2, 1, 3), (weight / total).reshape(-1)[pixels].float()))
        unseen = total <= 0
        return _Remap(shrunk, parts=parts, unseen=unseen if bool(unseen.any()) else None)

    def _build_picks(self, size: tuple[int, int], view: np.ndarray, stride: int, sources: list[np.ndarray]) -> tuple:
        """((rows, cols) of the strided output, [(source index, flat output pixels or None for all,
        flat source pixels)], flat output pixels no lens sees): the nearest source pixel of each
        strided output pixel, from the lens that sees it best. Sources are read as flat (N, 3)
        arrays: one gather in output order is ~4x faster than 2-D fancy indexing and a scatter."""
        rays = self._camera_rays(size, view)[::stride, ::stride]
        shape = tuple(rays.shape[:2])
        if self.calibration is None:
            height, width = sources[0].shape[:2]
            u, v = erp_coordinates(rays, height, width, xp=torch)
            rows = torch.clamp(torch.round(v), 0, height - 1).long()
            cols = torch.round(u).long() % width
            return shape, [(0, None, (rows * width + cols).reshape(-1).cpu().numpy())], np.zeros(0, dtype=np.int64)
        part_w, part_h = self.calibration.part_size
        best, picks = None, []
        for i, lens in enumerate(self.calibration.lenses):
            u, v, theta = lens.project(rays, xp=torch)
            index, x, y = self._lens_coordinates(i, u, v, sources)
            height, width = sources[index].shape[:2]
            rows = torch.clamp(torch.round((y + 1) / 2 * height - 0.5), 0, height - 1).long()
            cols = torch.clamp(torch.round((x + 1) / 2 * width - 0.5), 0, width - 1).long()
            inside = ((theta < lens.half_fov) & (u > -0.5) & (u < part_w - 0.5) & (v > -0.5) & (v < part_h - 0.5))
            score = np.where(inside.reshape(-1).cpu().numpy(), (lens.half_fov - theta).reshape(-1).cpu().numpy(),
                             -np.inf)
            picks.append((index, (rows * width + cols).reshape(-1).cpu().numpy(), score))
            best = score if best is None else np.maximum(best, score)
        first = (picks[0][2] == best) & np.isfinite(best)  # a tie goes to the first lens
        second = (picks[1][2] == best) & np.isfinite(best) & ~first
        unseen = np.flatnonzero(~np.isfinite(best))
        if picks[0][0] == picks[1][0]:  # both lenses in one frame: one gather (unseen pixels read pixel 0)
            flat = np.where(first, picks[0][1], np.where(second, picks[1][1], 0))
            return shape, [(picks[0][0], None, flat)], unseen
        return shape, [(index, np.flatnonzero(take), flat[take])
                       for (index, flat, _), take in zip(picks, (first, second))], unseen

    def _lens_coordinates(self, lens: int, u: torch.Tensor, v: torch.Tensor, sources: list[np.ndarray]) -> tuple:
        """(source index, normalized x, normalized y) of lens pixel coordinates: the lens's part of
        a side_by_side / top_bottom frame, or its own image (two_topics)."""
        part_w, part_h = self.calibration.part_size
        layout = self.calibration.layout
        index = lens if layout == "two_topics" else 0
        du = part_w * lens if layout == "side_by_side" else 0
        dv = part_h * lens if layout == "top_bottom" else 0
        height, width = sources[index].shape[:2]
        return index, (u + du + 0.5) / width * 2 - 1, (v + dv + 0.5) / height * 2 - 1

    def _box_frame(self, size: tuple[int, int], view: np.ndarray,
                   device: torch.device) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """The output pixels' unit rays (h, w, 3) in the output frame F, and the box's corners there."""
        rays = ray_directions_torch(size[0], size[1], device=device)
        rays = rays @ torch.as_tensor(self.output_to_frame(view).T, dtype=rays.dtype, device=device)
        lo, hi = (torch.tensor(corner, dtype=rays.dtype, device=device)
                  for corner in (self.spec.box_min, self.spec.box_max))
        return rays, lo, hi

    def _self_masked(self, size: tuple[int, int], view: np.ndarray) -> torch.Tensor:
        return _cached(self._masks, (size, view.tobytes()), lambda: self._build_self_mask(size, view))

    def _build_self_mask(self, size: tuple[int, int], view: np.ndarray) -> torch.Tensor:
        source = torch.from_numpy(self.self_mask.astype(np.float32))[None, None].to(self.device)
        if self.spec.leveling == "none" and self.calibration is None:  # the output is the camera's panorama
            return F.interpolate(source, size=size, mode="nearest")[0, 0] > 0.5
        height, width = self.self_mask.shape
        u, v = erp_coordinates(self._camera_rays(size, view), height, width, xp=torch)
        grid = torch.stack(((u + 0.5) / width * 2 - 1, (v + 0.5) / height * 2 - 1), dim=-1)[None].float()
        sampled = F.grid_sample(source, grid, mode="nearest", padding_mode="border", align_corners=False)
        return sampled[0, 0] > 0.5


def _cached(cache: OrderedDict, key: tuple, build: Callable[[], Any]) -> Any:
    """``cache[key]``, built on first use; the oldest of more than _CACHE entries is dropped (a
    static mount needs one entry per size, an IMU a new one per rotation)."""
    value = cache.get(key)
    if value is None:
        value = cache[key] = build()
        if len(cache) > _CACHE:
            cache.popitem(last=False)
    return value


def load_calibration(path: str) -> FisheyeCalibration:
    """A lens calibration YAML, validated; CameraFileError naming the file and the key otherwise."""
    from dap_ros.io.yaml_files import read_yaml

    try:
        return FisheyeCalibration.from_dict(read_yaml(path, "fisheye calibration"), path)
    except ConfigError as exc:
        raise CameraFileError(str(exc)) from None


def _load_self_mask(path: str) -> np.ndarray:
    """The self mask image (a panorama of the camera, any 2:1 size): True where it shows the robot (0)."""
    from dap_ros.io import load_rgb

    try:
        image = load_rgb(path)[..., 0]
    except ImageError as exc:
        raise CameraFileError(f"self_mask: {exc}") from None
    height, width = image.shape
    if abs(width - 2 * height) > 1:
        raise CameraFileError(f"self_mask {path} is {width}x{height}: it must be a 2:1 panorama of the camera")
    return image == 0
