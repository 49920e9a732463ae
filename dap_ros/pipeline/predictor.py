"""DepthPredictor: uint8 RGB panorama of any 2:1 size -> metric range (m) + range mask.

The one code path shared by the CLI, the ROS node, bag evaluation, the demo and the benchmarks.
"""
from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np
import torch

from dap_ros.errors import ImageError
from dap_ros.pipeline.camera import Camera
from dap_ros.pipeline.loading import Progress, Weights, load_runner
from dap_ros.pipeline.postprocess import postprocess
from dap_ros.pipeline.preprocess import Preprocessor, resize_rgb_uint8
from dap_ros.runtime import Runner
from dap_ros.settings import (
    DEPTH_SCALE_M,
    CameraSpec,
    ModelSpec,
    check_input_size,
    check_mask_threshold,
    check_max_range,
)

Frame = np.ndarray | Sequence[np.ndarray]  # one image, or the two lens images of a two-topic fisheye camera


@dataclass
class DepthResult:
    """One frame's output. ``range_m``: float32 (H, W) metres along each pixel's ray, +Inf beyond
    range / sky, NaN invalid (also where the self filter or a blind spot between lenses removed a
    pixel: ``filtered`` counts those). ``in_range``: bool (H, W). ``timings``: seconds per stage."""

    range_m: np.ndarray
    in_range: np.ndarray
    timings: dict[str, float]
    source_rgb: np.ndarray = field(repr=False)
    filtered: int = 0
    colors: Callable[[tuple[int, int], int], np.ndarray] | None = field(default=None, repr=False)

    @cached_property
    def rgb(self) -> np.ndarray:
        """The panorama's colours at the output size (the input array itself when sizes agree)."""
        size = self.range_m.shape
        if self.colors is not None:  # a resampled camera: the nearest camera pixel of each output pixel
            return self.colors(size, 1)
        if self.source_rgb.shape[:2] == size:
            return self.source_rgb
        return resize_rgb_uint8(self.source_rgb, size)[0].permute(1, 2, 0).numpy()

    def point_colors(self, stride: int) -> np.ndarray:
        """Colours for a point cloud of every ``stride``-th row and column: :attr:`rgb` (which the
        point builder strides), or for a resampled camera only the strided pixels' colours."""
        if self.colors is None or stride == 1:
            return self.rgb
        return self.colors(self.range_m.shape, stride)


IN_MEMORY = Weights("module")  # a network handed to the constructor by code


class DepthPredictor:
    """A runner (any backend) with pre- and post-processing. Not thread-safe: one caller at a time.

    ``mask_threshold`` and ``max_range`` may be changed between frames (the node's run-time
    parameters); everything else is fixed at construction. ``camera`` maps what the camera delivers
    (a panorama or two fisheye lenses, mounted and levelled) to the panorama the network sees.
    """

    def __init__(
        self,
        runner: Runner,
        *,
        input_size: tuple[int, int],
        normalization: str = "imagenet",
        mask_threshold: float = 0.5,
        max_range: float = DEPTH_SCALE_M,
        weights: Weights = IN_MEMORY,
        camera: Camera | None = None,
        fallback: str | None = None,
    ) -> None:
        self.runner = runner
        self.input_size = check_input_size(input_size, runner.patch_size)
        self.preprocessor = Preprocessor(self.input_size, normalization, runner.device, runner.input_dtype)
        self.mask_threshold = mask_threshold
        self.max_range = max_range
        self.weights = weights
        self.camera = camera or Camera(CameraSpec(), runner.device)
        self.fallback = fallback  # why backend auto runs something other than the TensorRT it chose

    @classmethod
    def from_spec(cls, spec: ModelSpec, camera: CameraSpec | None = None,
                  progress: Progress | None = None) -> DepthPredictor:
        """Load what ``spec`` describes, for the ``camera`` (default: a level panorama). Raises
        ConfigError / CheckpointError / DapError with a one-line message. ``progress``: messages of
        long start-up steps (a TensorRT engine build)."""
        camera_model = Camera(camera or CameraSpec(), torch.device("cpu"))  # its files checked before the model loads
        loaded = load_runner(spec, progress)
        if loaded.runner.device != camera_model.device:
            camera_model = Camera(camera_model.spec, loaded.runner.device)
        return cls(loaded.runner, input_size=loaded.input_size, normalization=spec.normalization,
                   mask_threshold=spec.mask_threshold, max_range=spec.max_range, weights=loaded.weights,
                   camera=camera_model, fallback=loaded.fallback)

    @classmethod
    def create(cls, checkpoint: str | Path | None = None, model_config: str = "vitl", *,
               camera: CameraSpec | None = None, progress: Progress | None = None, **options: Any) -> DepthPredictor:
        """Shorthand for ``from_spec(ModelSpec(checkpoint, model_config, **options), camera)``; the
        options are the fields of :class:`dap_ros.settings.ModelSpec` (device, precision, input_size,
        backend, ...)."""
        return cls.from_spec(ModelSpec(checkpoint=checkpoint, model_config=model_config, **options), camera, progress)

    @property
    def mask_threshold(self) -> float:
        return self._mask_threshold

    @mask_threshold.setter
    def mask_threshold(self, value: float) -> None:
        self._mask_threshold = check_mask_threshold(value)

    @property
    def max_range(self) -> float:
        return self._max_range

    @max_range.setter
    def max_range(self, value: float) -> None:
        self._max_range = check_max_range(value)

    @property
    def backend(self) -> str:
        return self.runner.name

    @property
    def device(self) -> torch.device:
        return self.runner.device

    @property
    def precision(self) -> str:
        return self.runner.precision

    @property
    def normalization(self) -> str:
        return self.preprocessor.normalization

    def _sync(self) -> None:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)

    @staticmethod
    def check_image(rgb: np.ndarray) -> None:
        if not isinstance(rgb, np.ndarray) or rgb.dtype != np.uint8 or rgb.ndim != 3 or rgb.shape[2] != 3:
            shape = getattr(rgb, "shape", None)
            raise ImageError(f"expected a uint8 (H, W, 3) RGB array, got {type(rgb).__name__} {shape}")
        if rgb.shape[0] == 0 or rgb.shape[1] == 0:
            raise ImageError(f"image has zero size {rgb.shape[1]}x{rgb.shape[0]}")

    def output_size(self, frame: Frame) -> tuple[int, int]:
        """The output panorama's size for ``frame`` when none is asked for: the input panorama's,
        or for fisheye lenses a panorama half as high as one lens image."""
        return self.camera.output_size(self.camera.sources(frame))

    @torch.inference_mode()
    def predict(
        self,
        frame: Frame,
        output_size: tuple[int, int] | None = None,
        range_out: np.ndarray | None = None,
        tilt: np.ndarray | None = None,
    ) -> DepthResult:
        """Run one frame: a uint8 (H, W, 3) RGB panorama or fisheye frame (or the two lens images of
        a two-topic camera); outputs at ``output_size`` (default: :meth:`output_size`).

        ``range_out``: a writable float32 array of the output size that receives the range (the
        node passes its depth message's payload, saving a 7 MB copy per frame at 1920x960).
        ``tilt``: with ``leveling: imu``, the rotation that levels the output frame this frame
        (:func:`dap_ros.geometry.rotation.tilt_matrix` of the IMU's orientation); None: static.
        """
        for image in frame if isinstance(frame, (list, tuple)) else [frame]:
            self.check_image(image)
        sources = self.camera.sources(frame)
        size = self.camera.output_size(sources) if output_size is None else (int(output_size[0]), int(output_size[1]))
        out = None
        if range_out is not None:
            if range_out.shape != size or range_out.dtype != np.float32 or not range_out.flags.c_contiguous:
                raise ValueError(f"range_out must be a contiguous float32 array of shape {size}")
            out = torch.from_numpy(range_out)
        t0 = time.perf_counter()
        view = self.camera.view(tilt)
        if self.camera.identity:
            x = self.preprocessor(sources[0])
        else:
            x = self.preprocessor.normalize(self.camera.network_input(sources, self.input_size, view))
        self._sync()
        t1 = time.perf_counter()
        pred_depth, pred_mask = self.runner(x)
        self._sync()
        t2 = time.perf_counter()
        range_t, in_range_t = postprocess(pred_depth, pred_mask, size, self.mask_threshold, self.max_range, out)
        filtered = self._filter(range_t, in_range_t, size, view, sources) if self.camera.filters else 0
        range_m = range_out if range_out is not None else range_t.cpu().numpy()
        in_range = in_range_t.cpu().numpy()
        t3 = time.perf_counter()
        timings = {"preprocess": t1 - t0, "inference": t2 - t1, "postprocess": t3 - t2}
        colors = None if self.camera.identity else (lambda s, k: self.camera.colors(sources, s, view, k))
        return DepthResult(range_m=range_m, in_range=in_range, timings=timings, source_rgb=sources[0],
                           filtered=filtered, colors=colors)

    @torch.inference_mode()
    def network_outputs(self, rgb: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """The network's own outputs for a uint8 RGB panorama already at the network size: float32
        (h, w) depth / 100 m and beyond-range probability, before any post-processing (for
        evaluation protocols that define their own, such as the paper's)."""
        self.check_image(rgb)
        if rgb.shape[:2] != tuple(self.input_size) or not self.camera.identity:
            raise ImageError(f"network_outputs takes a level panorama of the network size {self.input_size}, "
                             f"got {rgb.shape[1]}x{rgb.shape[0]}")
        depth, mask = self.runner(self.preprocessor(rgb))
        return depth[0, 0].float().cpu().numpy(), mask[0, 0].float().cpu().numpy()

    def _filter(self, range_t: torch.Tensor, in_range_t: torch.Tensor, size: tuple[int, int], view: np.ndarray,
                sources: list[np.ndarray]) -> int:
        """Invalidate (NaN) the pixels no lens sees, the self mask's and those inside the body box."""
        invalid = self.camera.invalid(size, view, sources)
        inside = self.camera.in_box(range_t, size, view)
        if inside is not None:
            invalid = inside if invalid is None else invalid | inside
        if invalid is None:
            return 0
        invalid = invalid.to(range_t.device)
        range_t.masked_fill_(invalid, torch.nan)
        in_range_t.masked_fill_(invalid.to(in_range_t.device), False)
        return int(invalid.sum())
